"""Hooks: ``[[hooks.<event>]]`` entries of spawn.toml run around apply, revert and tests.

A hook is a SQL template under ``<spawn_folder>/hooks/`` (rendered from the working
tree, run through psql on the target) or a command (an argv, no shell) run from the
project folder with ``SPAWN_*`` variables that say where and why it runs. Hooks write
no history rows. ``before_each_migration`` / ``after_each_migration`` SQL hooks run in
the migration's own psql session (``runner.py`` asks for them with ``session_sql``), so
what a ``SET`` changes carries into the migration; their commands run as processes
between migrations.

A hook with ``on_error = "fail"`` (the default) that fails raises ``HookFailed``,
naming it; one with ``"warn"`` is reported and the command goes on.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from spawn_db.config import HOOKS_FOLDER, Config, HookConfig
from spawn_db.errors import ConfigError, HookFailed
from spawn_db.fsutil import is_inside

# What a plugin hook is told (the SPAWN_* variables a command hook gets, lower-cased).
PLUGIN_INFO = ("TARGET", "ENVIRONMENT", "EVENT", "MIGRATION", "TEST", "PSQL")
# How many lines of a failing hook's error output its message quotes.
ERROR_LINES = 10


@dataclass
class Hooks:
    """The hooks of one command run; ``enabled`` False (``--no-hooks``) runs none.

    ``output`` receives what hooks print (and the warnings of ``warn`` hooks), so the
    CLI shows it where its progress goes.
    """

    config: Config
    variables: Any = None
    enabled: bool = True
    output: Callable[[str], None] = field(default=lambda text: None)
    _rendered: dict[str, str] = field(default_factory=dict)

    def active(self, event: str) -> tuple[HookConfig, ...]:
        """The hooks of ``event`` that apply in this environment, in spawn.toml's order."""
        if not self.enabled:
            return ()
        environment = self.config.environment
        return tuple(h for h in self.config.hooks.get(event, ())
                     if not h.environments or environment in h.environments)

    def run(self, event: str, *, migration: str | None = None, test: str | None = None,
            sql: bool = True, commands: bool = True) -> None:
        """Run every active hook of ``event`` in order; ``sql`` / ``commands`` False skips
        that kind (a migration's SQL hooks run inside its session)."""
        for hook in self.active(event):
            if hook.plugin is not None:
                if commands:
                    self.run_plugin(hook, migration=migration, test=test)
            elif hook.sql is None:
                if commands:
                    self.run_command(hook, migration=migration, test=test)
            elif sql:
                self.run_sql(hook)

    def around_each(self) -> bool:
        """Whether any hook runs around each migration."""
        return bool(self.active("before_each_migration") or self.active("after_each_migration"))

    def run_quietly(self, event: str, *, migration: str | None = None) -> None:
        """``run`` for ``after_apply_error``: a failing hook is reported, never raised, so
        the error that ended the apply stays the one the user sees."""
        try:
            self.run(event, migration=migration)
        except HookFailed as exc:
            self.output(f"warning: {exc.message}\n")

    # -- SQL hooks ------------------------------------------------------------------------

    def render(self, hook: HookConfig) -> str:
        """The hook's template rendered from the working tree (once per run)."""
        assert hook.sql is not None
        if hook.sql not in self._rendered:
            from spawn_db.render.template import (
                WorkingTreeSource,
                compile_template,
                template_context,
            )

            path = hook_path(self.config, hook)
            renderer = compile_template(_read(path, hook), hook.sql,
                                        WorkingTreeSource(self.config.components_dir))
            context = template_context(self.config, self.variables or {})
            text = renderer.render(context)
            used = context.secrets.used if context.secrets is not None else []
            self._rendered[hook.sql] = self._with_secrets(hook, text, used) + text
        return self._rendered[hook.sql]

    def _with_secrets(self, hook: HookConfig, text: str, used: list[str]) -> str:
        """psql input setting the secrets the hook's SQL references (it is run after them,
        in the same session), checked as a migration's are."""
        if not used:
            return ""
        from spawn_db.db.psqlscan import unsubstituted_lines
        from spawn_db.errors import TemplateError
        from spawn_db.secret.values import VARIABLE_PREFIX, fetch, set_commands

        lines = unsubstituted_lines(text.encode("utf-8"), f":'{VARIABLE_PREFIX}".encode())
        if lines:
            raise TemplateError(
                f"{hook.label}: secret() is used inside a quoted or dollar-quoted body or a "
                f"comment (rendered line {lines[0]}), where psql does not substitute "
                "variables; pass the secret outside the body")
        return set_commands(fetch(self.config, used, self.variables))

    def run_sql(self, hook: HookConfig) -> None:
        """The hook's SQL through a psql of its own on the target, stopping at an error."""
        from spawn_db.db.target import PSQL_PREAMBLE, psql_argv, session_env

        text = self.render(hook)
        argv = psql_argv(self.config)
        done = _run(argv, hook, input=f"{PSQL_PREAMBLE}{text}\n;\n".encode(),
                    env=session_env(PGAPPNAME=f"spawn hook {hook.event}"),
                    cwd=self.config.project_dir)
        self.finish(hook, done)

    def session_sql(self, event: str, marker: Callable[[int], str]) -> str:
        """psql input that runs ``event``'s SQL hooks inside a migration's session.

        Each hook is preceded by ``marker(i)`` (an ``\\echo`` of a marker), so when psql
        stops, the last marker read says which hook failed. A ``warn`` hook runs with
        ``ON_ERROR_STOP`` off and leaves psql's ``LAST_ERROR_SQLSTATE`` as it found it,
        so its error is shown but counts neither as the migration's nor as the hook's
        failure.
        """
        parts: list[str] = []
        for index, hook in enumerate(self.active(event)):
            if hook.sql is None:
                continue
            parts.append(marker(index))
            body = f"{self.render(hook)}\n;\n"
            if hook.on_error == "warn":
                parts.append("\\set spawn_hook_state :LAST_ERROR_SQLSTATE\n"
                             "\\set ON_ERROR_STOP off\n" + body +
                             "\\set ON_ERROR_STOP on\n"
                             "\\set LAST_ERROR_SQLSTATE :spawn_hook_state\n")
            else:
                parts.append(body)
        return "".join(parts)

    def has_session_sql(self) -> bool:
        """Whether a migration's session has hook SQL to run (it then gets a psql of its
        own, where the hooks and the migration share the session)."""
        return any(h.sql is not None for event in ("before_each_migration",
                                                    "after_each_migration")
                   for h in self.active(event))

    def session_hook(self, event: str, index: int) -> HookConfig:
        return self.active(event)[index]

    def failed_in_session(self, hook: HookConfig, error: str, migration: str) -> HookFailed:
        return HookFailed(
            f"{hook.label} failed in the session of migration {migration}: {error}\n"
            f"Fix {self.config.spawn_folder.name}/{hook.sql} (or set on_error = \"warn\" on "
            "it), or run with --no-hooks")

    # -- plugins --------------------------------------------------------------------------

    def run_plugin(self, hook: HookConfig, *, migration: str | None = None,
                   test: str | None = None) -> None:
        """Call the ``spawn.hooks`` entry point the hook names with the event and what a
        command would get in its ``SPAWN_*`` variables (a mapping of their values)."""
        from spawn_db import plugins

        function = plugins.load("spawn.hooks").get(str(hook.plugin))
        if function is None or not callable(function):
            self.fail(hook, f"no spawn.hooks plugin named {hook.plugin!r} is installed (or "
                      "plugins are turned off: --no-plugins, SPAWN_NO_PLUGINS); `spawn "
                      "plugins` lists them")
            return
        env = self.environment(hook.event, migration=migration, test=test)
        info = {key.lower(): env[f"SPAWN_{key}"] for key in PLUGIN_INFO
                if f"SPAWN_{key}" in env}
        try:
            function(hook.event, info)
        except Exception as exc:  # the plugin's failure is the hook's failure
            self.fail(hook, f"{type(exc).__name__}: {exc}")

    # -- commands -------------------------------------------------------------------------

    def run_command(self, hook: HookConfig, *, migration: str | None = None,
                    test: str | None = None, cwd: Path | None = None) -> None:
        env = self.environment(hook.event, migration=migration, test=test)
        done = _run(list(hook.command), hook, env=env, cwd=cwd or self.config.project_dir)
        self.finish(hook, done)

    def environment(self, event: str, *, migration: str | None = None,
                    test: str | None = None) -> dict[str, str]:
        """What a command learns about its run: ``SPAWN_TARGET``, ``SPAWN_ENVIRONMENT``,
        ``SPAWN_EVENT``, ``SPAWN_MIGRATION`` / ``SPAWN_TEST`` when there is one, and
        ``SPAWN_PSQL``, a shell command line that opens psql on the target (a password
        of the target's command goes in ``PGPASSWORD``, never in that line)."""
        from spawn_db.db.target import psql_argv, session_env

        line, extra = psql_command_line(psql_argv(self.config))
        env = session_env()
        env.update(extra)
        for key in ("SPAWN_MIGRATION", "SPAWN_TEST"):
            env.pop(key, None)
        env.update(SPAWN_TARGET=self.config.target().name,
                   SPAWN_ENVIRONMENT=self.config.environment,
                   SPAWN_EVENT=event, SPAWN_PSQL=line)
        if migration is not None:
            env["SPAWN_MIGRATION"] = migration
        if test is not None:
            env["SPAWN_TEST"] = test
        return env

    def finish(self, hook: HookConfig, done: subprocess.CompletedProcess[bytes]) -> None:
        """Pass on what the hook printed; a failure raises or warns by its ``on_error``."""
        printed = (done.stdout or b"").decode("utf-8", "replace")
        errors = (done.stderr or b"").decode("utf-8", "replace")
        if printed:
            self.output(printed)
        if done.returncode == 0:
            if errors:
                self.output(errors)
            return
        self.fail(hook, f"exit code {done.returncode}" + _quoted(errors))

    def fail(self, hook: HookConfig, why: str) -> None:
        if hook.on_error == "warn":
            self.output(f"warning: {hook.label} failed ({why}); going on (on_error = "
                        "\"warn\")\n")
            return
        fix = f"fix {self.config.spawn_folder.name}/{hook.sql}" if hook.sql \
            else "fix the command"
        raise HookFailed(f"{hook.label} failed: {why}\n{fix} (or set on_error = \"warn\" "
                         "on it), or run with --no-hooks")


def hook_path(config: Config, hook: HookConfig) -> Path:
    """The hook's template, refused when a link takes it out of ``<spawn_folder>/hooks/``."""
    assert hook.sql is not None
    folder = config.spawn_folder / HOOKS_FOLDER
    path = config.spawn_folder / hook.sql
    if not is_inside(os.path.realpath(path), os.path.realpath(folder)):
        raise ConfigError(
            f"{config.path}: [[hooks.{hook.event}]] #{hook.number} `sql` = {hook.sql!r} "
            f"resolves outside {folder} (through a symbolic link); keep hook templates "
            f"inside {HOOKS_FOLDER}/")
    return path


def _read(path: Path, hook: HookConfig) -> str:
    try:
        return path.read_bytes().decode("utf-8")  # not read_text: it would turn CRLF into LF
    except FileNotFoundError:
        raise ConfigError(
            f"{hook.label}: {path} does not exist; create it or fix `sql` in spawn.toml"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{hook.label}: cannot read {path} ({exc}); it must be UTF-8 "
                          "text") from None


def _run(argv: list[str], hook: HookConfig, *, env: Mapping[str, str], cwd: Path,
         input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """Run a hook's process; a program that cannot start is the hook's failure."""
    try:
        return subprocess.run(argv, input=input, capture_output=True, env=dict(env),
                              cwd=cwd, check=False,
                              stdin=None if input is not None else subprocess.DEVNULL)
    except OSError as exc:
        from spawn_db.db.target import display_command

        return subprocess.CompletedProcess(
            argv, 127, b"", f"cannot run {display_command(argv[:1])}: {exc.strerror}".encode())


def _quoted(errors: str) -> str:
    from spawn_db.db.target import mask_secrets

    lines = errors.strip().splitlines()[-ERROR_LINES:]
    return (": " + mask_secrets("\n".join(lines))) if lines else ""


# -- SPAWN_PSQL -----------------------------------------------------------------------------

_URI = re.compile(r"(?i)^(postgres(?:ql)?://[^:/?#@\s]*):([^@/\s]*)@")
_KEYWORD = re.compile(r"(?i)(?:^|\s)password\s*=\s*('(?:[^'\\]|\\.)*'|[^\s']*)")
_QUERY = re.compile(r"(?i)([?&])password=([^&#\s]*)&?")
_ENV_ASSIGNMENT = re.compile(r"^PGPASSWORD=(.*)$", re.S)


def psql_command_line(argv: Sequence[str]) -> tuple[str, dict[str, str]]:
    """``argv`` as a shell-quoted command line with any password taken out of it, and the
    environment that carries the password instead (``PGPASSWORD``).

    A command line ends up in logs and process listings, so a password in a
    connection URI (``postgresql://user:pw@host``), a conninfo ``password=`` or an
    ``env PGPASSWORD=…`` word of the target's command moves to the environment.
    """
    words: list[str] = []
    password: str | None = None
    for word in argv:
        found = _ENV_ASSIGNMENT.match(word)
        if found:
            password = found.group(1)
            continue
        uri = _URI.match(word)
        if uri:
            password = unquote(uri.group(2))
            word = f"{uri.group(1)}@{word[uri.end():]}"
        query = _QUERY.search(word) if "://" in word else None
        if query:
            password = unquote(query.group(2))
            word = (word[: query.start()] + query.group(1) + word[query.end():]).rstrip("?&")
        keyword = _KEYWORD.search(word)
        if keyword and "://" not in word:
            value = keyword.group(1)
            password = value[1:-1].replace("\\'", "'").replace("\\\\", "\\") \
                if value.startswith("'") else value
            word = (word[: keyword.start()] + word[keyword.end():]).strip()
        words.append(word)
    extra = {"PGPASSWORD": password} if password is not None else {}
    return shlex.join(words), extra
