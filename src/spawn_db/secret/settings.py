"""``[secrets]`` in spawn.toml: the age recipients, and where each named secret comes from."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from spawn_db.errors import SecretError

if TYPE_CHECKING:
    from spawn_db.config import Config

ProviderKind = Literal["env", "file", "command", "variable", "plugin"]
PROVIDERS: tuple[ProviderKind, ...] = ("env", "file", "command", "variable")
# A secret becomes the psql variable spawn_secret_<name>: psql's variable-name rules.
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,40}")


@dataclass(frozen=True)
class SecretSpec:
    """One ``[secrets.<name>]``: exactly one provider and its argument."""

    name: str
    kind: ProviderKind
    source: Any
    plugin: str | None = None  # the spawn.secrets entry point, for kind "plugin"


@dataclass(frozen=True)
class SecretsSettings:
    recipients: tuple[str, ...]
    declared: Mapping[str, SecretSpec]


def secrets_settings(config: Config) -> SecretsSettings:
    """The checked ``[secrets]`` table; an error names the key and the fix."""
    table = config.secrets_table
    where = f"{config.path} [secrets]"
    recipients = table.get("recipients", [])
    if not isinstance(recipients, list) or not all(isinstance(r, str) for r in recipients):
        raise SecretError(f'{where}: `recipients` must be a list of age public keys, e.g. '
                          '`recipients = ["age1..."]`')
    declared = {name: _spec(name, value, where) for name, value in table.items()
                if name != "recipients"}
    return SecretsSettings(tuple(recipients), declared)


def _spec(name: str, value: Any, where: str) -> SecretSpec:
    if not NAME.fullmatch(name):
        raise SecretError(
            f"{where}: secret name {name!r} must be letters, digits and underscores (at most "
            "41, not starting with a digit): it becomes the psql variable spawn_secret_<name>")
    if not isinstance(value, Mapping):
        raise SecretError(f'{where}: `{name}` must be a table: [secrets.{name}] then one of '
                          '`env = "VAR"`, `file = "path"`, `command = [...]`, `variable = "a.b"`')
    given = [kind for kind in PROVIDERS if kind in value]
    unknown = sorted(set(value) - set(PROVIDERS))
    if len(unknown) == 1 and not given:
        from spawn_db import plugins

        if unknown[0] in plugins.load("spawn.secrets"):
            return SecretSpec(name, "plugin", value[unknown[0]], plugin=unknown[0])
    if unknown or len(given) != 1:
        problem = (f"has unknown key(s) {', '.join(unknown)}" if unknown else
                   f"names {len(given)} providers")
        raise SecretError(f"{where}: [secrets.{name}] {problem}; give exactly one of "
                          f"{', '.join(PROVIDERS)} (or the name of an installed spawn.secrets "
                          "plugin)")
    kind = given[0]
    source = value[kind]
    if kind == "command":
        if (not isinstance(source, list) or not source
                or not all(isinstance(word, str) for word in source)):
            raise SecretError(f"{where}: [secrets.{name}] `command` must be a non-empty list "
                              'of strings (no shell), e.g. `command = ["pass", "show", "db"]`')
        return SecretSpec(name, kind, tuple(source))
    if not isinstance(source, str) or not source:
        raise SecretError(f"{where}: [secrets.{name}] `{kind}` must be a non-empty string")
    return SecretSpec(name, kind, source)
