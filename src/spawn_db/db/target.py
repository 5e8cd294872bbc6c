"""Turning a target's ``command`` into the psql argv to run (SPEC §2).

``provider`` commands (e.g. ``gcloud compute ssh --dry-run``) can be slow, so
their result is cached for the life of the process: resolved once per spawn
invocation, however many sessions the command opens.
"""

from __future__ import annotations

import shlex
import subprocess

from spawn_db.config import Config, TargetConfig
from spawn_db.errors import ConfigError

PSQL_PREAMBLE = "\\set QUIET on\n\\pset pager off\n\\set ON_ERROR_STOP on\n"

_resolved: dict[tuple[str, str], tuple[str, ...]] = {}


def psql_argv(config: Config, target: TargetConfig | None = None) -> list[str]:
    """The argv of a psql-like command for ``target`` (the selected one by default)."""
    target = target or config.target()
    key = (str(config.path), target.name)
    if key not in _resolved:
        _resolved[key] = tuple(_resolve(config, target))
    return list(_resolved[key])


def _resolve(config: Config, target: TargetConfig) -> list[str]:
    command = target.command
    if command.kind == "direct":
        return list(command.direct)
    if command.kind == "provider":
        return run_provider(target) + list(command.append)
    from spawn_db.db.embedded import psql_argv_for_target

    return psql_argv_for_target(config, target)


def run_provider(target: TargetConfig) -> list[str]:
    """Run the provider and split its stdout like a POSIX shell splits words."""
    argv = list(target.command.provider)
    where = f"target {target.name!r}"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot run provider command {argv[0]!r}: {exc.strerror}; check "
            "`provider` in spawn.toml"
        ) from None
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1:] or ["(no error output)"]
        raise ConfigError(
            f"{where}: provider command {shlex.join(argv)} exited with {done.returncode}: "
            f"{detail[0]}"
        )
    try:
        words = shlex.split(done.stdout)
    except ValueError as exc:
        raise ConfigError(
            f"{where}: cannot split the provider's output as a shell command line ({exc})"
        ) from None
    if not words:
        raise ConfigError(f"{where}: provider command {shlex.join(argv)} printed no command")
    return words
