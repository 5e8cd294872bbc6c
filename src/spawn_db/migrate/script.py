"""Ad-hoc scripts: ``<spawn_folder>/scripts/<name>.sql``, rendered from the working tree
and run once through psql on the target (``spawn script new|run``).

A script is not a migration: it is not pinned, has no history row and may run any
number of times. ``--record`` keeps a row in ``<schema>.script_run`` (internal
migration ``003-script-run``), a table of its own so the Rust tool's tables keep
exactly the rows it expects.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spawn_db.config import DEFAULT_LOCK_TIMEOUT, Config
from spawn_db.errors import NotFoundError, UsageError
from spawn_db.escape import escape_bytea, escape_literal
from spawn_db.fsutil import atomic_write_text
from spawn_db.project import Project, validate_name

SCRIPTS_FOLDER = "scripts"
STARTER_SCRIPT = """\
-- Script {name}: run it with `spawn script run {name}` (add --print to see the SQL
-- first). It renders from the working tree like a migration, runs once through
-- psql on the target and is not recorded unless you pass --record.

SELECT 1 AS answer;
"""


def scripts_dir(config: Config) -> Path:
    return config.spawn_folder / SCRIPTS_FOLDER


def new_script(config: Config, name: str) -> Path:
    """Create ``scripts/<name>.sql`` with a starter; refuse to overwrite one."""
    validate_name(name, "script")
    path = scripts_dir(config) / f"{name}.sql"
    if path.exists():
        raise UsageError(f"{path} already exists; choose another name or edit it")
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, STARTER_SCRIPT.format(name=name))
    return path


def find_script(config: Config, name_or_path: str, cwd: Path | None = None) -> Path:
    """``scripts/<name>.sql`` for a plain name, else a path (relative to ``cwd``)."""
    if "/" not in name_or_path and not name_or_path.endswith(".sql"):
        validate_name(name_or_path, "script")
        path = scripts_dir(config) / f"{name_or_path}.sql"
        if not path.is_file():
            raise NotFoundError(
                f"no script {name_or_path!r}: {path} does not exist; create it with `spawn "
                f"script new {name_or_path}` or pass the path of a .sql file")
        return path
    path = Path(name_or_path)
    path = path if path.is_absolute() else (cwd or Path.cwd()) / path
    if not path.is_file():
        raise NotFoundError(f"script file {name_or_path} does not exist (looked for {path})")
    return path


def script_name(config: Config, path: Path) -> str:
    """How a script is named in messages and in ``script_run``: its path from the project
    folder when it is inside it, else as given."""
    return Project(config).display(path)


def render_script(config: Config, path: Path, variables: Any) -> str:
    """The script rendered from the working tree (components, variables, ``env``)."""
    from spawn_db.render.template import WorkingTreeSource, compile_template, template_context

    try:
        text = path.read_bytes().decode("utf-8")  # not read_text: it would turn CRLF into LF
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path} is not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    renderer = compile_template(text, script_name(config, path),
                                WorkingTreeSource(config.components_dir))
    return renderer.render(template_context(config, variables or {}))


@dataclass(frozen=True)
class ScriptRun:
    exit_code: int
    seconds: float


def run_script(config: Config, sql: str) -> ScriptRun:
    """``sql`` through psql on the target, its output on this process's stdout and stderr;
    psql stops at the first error (exit 3), as with a migration."""
    from spawn_db.db.target import PSQL_PREAMBLE, psql_argv, session_env

    argv = psql_argv(config)
    started = time.monotonic()
    try:
        done = subprocess.run(argv, input=f"{PSQL_PREAMBLE}{sql}\n;\n".encode(),
                              env=session_env(PGAPPNAME="spawn script"), check=False)
    except OSError as exc:
        from spawn_db.errors import CommandUnavailable

        raise CommandUnavailable.starting(repr(argv[0]), exc) from None
    return ScriptRun(done.returncode, time.monotonic() - started)


def record_run(config: Config, name: str, sql: str, run: ScriptRun, *,
               lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
    """One ``script_run`` row: name, checksum of the rendered SQL, environment, exit code.

    The tracking schema is brought up to date first (``003-script-run`` on a database
    an older spawn or the Rust tool created), under the migration lock as apply does.
    """
    from spawn_db.migrate.apply import NullReporter, _locked, tracking_session
    from spawn_db.migrate.tracking import checksum, current_user

    with tracking_session(config) as tracking, \
            _locked(tracking, lock_timeout, NullReporter()):
        tracking.ensure()
        tracking.session.query(
            f"INSERT INTO {tracking.s}.script_run (name, checksum, environment, exit_code, "
            f"created_by, execution_time) VALUES ({escape_literal(name)}, "
            f"{escape_bytea(checksum(sql.encode()))}, {escape_literal(config.environment)}, "
            f"{int(run.exit_code)}, {escape_literal(current_user())}, "
            f"{escape_literal(f'{run.seconds:.6f} seconds')}::interval)",
            what=f"recording script {name} in {tracking.schema}.script_run")
