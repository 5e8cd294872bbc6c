"""A secret's value: fetched from its provider only when a session needs it, handed to psql
as a variable set before the script, and masked in every message spawn shows."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spawn_db.errors import SecretError
from spawn_db.secret.settings import SecretSpec, secrets_settings

if TYPE_CHECKING:
    from spawn_db.config import Config

MASK = "****"
VARIABLE_PREFIX = "spawn_secret_"
# Every value this process fetched: messages, tracebacks and psql's error output are
# searched for them (psql echoes a failing statement's line with variables substituted).
_REVEALED: set[str] = set()


def psql_variable(name: str) -> str:
    return f"{VARIABLE_PREFIX}{name}"


@dataclass
class SecretReferences:
    """What a render may use (the declared names) and what it used, in order."""

    declared: frozenset[str]
    where: str
    used: list[str] = field(default_factory=list)

    def reference(self, name: Any) -> str:
        """The psql reference the template gets instead of the value."""
        if not isinstance(name, str) or name not in self.declared:
            known = ", ".join(sorted(self.declared)) or "none"
            raise SecretError(
                f"secret({name!r}) is not declared; add [secrets.{name}] with one of env, "
                f"file, command or variable to {self.where} (declared: {known})")
        if name not in self.used:
            self.used.append(name)
        return f":'{psql_variable(name)}'"


def references(config: Config) -> SecretReferences:
    settings = secrets_settings(config)
    return SecretReferences(frozenset(settings.declared), str(config.path))


def fetch(config: Config, names: Iterable[str], variables: Any) -> dict[str, str]:
    """The values of ``names`` from their providers; an unavailable one is an error naming
    it (nothing has run yet)."""
    declared = secrets_settings(config).declared
    values = {}
    for name in names:
        spec = declared.get(name)
        if spec is None:
            raise SecretError(f"secret {name!r} is not declared in {config.path} [secrets]")
        value = _fetch(spec, config.project_dir, variables)
        if "\x00" in value:
            raise SecretError(f"secret {name!r} contains a NUL character, which psql cannot "
                              "send")
        reveal(value)
        values[name] = value
    return values


def _fetch(spec: SecretSpec, base: Path, variables: Any) -> str:
    label = f"secret {spec.name!r} ({spec.plugin or spec.kind} provider)"
    if spec.kind == "env":
        value = os.environ.get(str(spec.source))
        if value is None:
            raise SecretError(f"{label}: environment variable {spec.source} is not set; set "
                              "it, or change [secrets] in spawn.toml")
        return value
    if spec.kind == "file":
        path = base / str(spec.source)
        try:
            return path.read_text(encoding="utf-8").rstrip("\r\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(f"{label}: cannot read {path}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from None
    if spec.kind == "command":
        return _run(spec, label, base)
    if spec.kind == "plugin":
        return _from_plugin(spec, label)
    return _variable(spec, label, variables)


def _from_plugin(spec: SecretSpec, label: str) -> str:
    from spawn_db import plugins

    provider = plugins.load("spawn.secrets").get(str(spec.plugin))
    if provider is None or not callable(provider):
        raise SecretError(f"{label}: plugin {spec.plugin} is not available (not installed, "
                          "turned off, or not callable)")
    try:
        value = provider(spec.source)
    except Exception as exc:  # the plugin's failure, reported without its traceback
        raise SecretError(f"{label}: plugin {spec.plugin} failed: {type(exc).__name__} "
                          "(its message is not shown: it may hold the secret)") from None
    if not isinstance(value, str):
        raise SecretError(f"{label}: plugin {spec.plugin} returned "
                          f"{type(value).__name__}, not a string")
    return value


def _run(spec: SecretSpec, label: str, base: Path) -> str:
    argv = list(spec.source)
    try:
        done = subprocess.run(argv, cwd=base, capture_output=True, check=False, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SecretError(f"{label}: cannot run {argv[0]!r}: {exc}") from None
    if done.returncode != 0:
        raise SecretError(f"{label}: {argv[0]} exited with code {done.returncode} (its output "
                          "is not shown: it may hold the secret)")
    try:
        return done.stdout.decode("utf-8").rstrip("\r\n")
    except UnicodeDecodeError:
        raise SecretError(f"{label}: {argv[0]} printed text that is not UTF-8") from None


def _variable(spec: SecretSpec, label: str, variables: Any) -> str:
    value = variables
    for key in str(spec.source).split("."):
        if not isinstance(value, Mapping) or key not in value:
            raise SecretError(f"{label}: the variables file has no {spec.source}; pass the "
                              "--variables file that holds it")
        value = value[key]
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise SecretError(f"{label}: {spec.source} in the variables file is not a string")
    return str(value)


def reveal(value: str) -> None:
    """Remember ``value`` so that ``mask`` hides it from now on."""
    if value:
        _REVEALED.add(value)


def mask(text: str) -> str:
    """``text`` with every secret value this process fetched replaced by ``****`` (longest
    first, so a secret containing another is hidden whole)."""
    for value in sorted(_REVEALED, key=len, reverse=True):
        if value in text:
            text = text.replace(value, MASK)
    return text


def set_commands(values: Mapping[str, str]) -> str:
    """psql input that sets each secret's variable, quoted for psql's meta-command lexer
    (psql then quotes the value as a literal wherever ``:'spawn_secret_<name>'`` stands)."""
    return "".join(f"\\set {psql_variable(name)} '{_meta_quoted(value)}'\n"
                   for name, value in values.items())


def _meta_quoted(value: str) -> str:
    return (value.replace("\\", "\\\\").replace("'", "''").replace("\n", "\\n")
            .replace("\r", "\\r").replace("\t", "\\t").replace("\b", "\\b")
            .replace("\f", "\\f"))
