"""Scripted migrations: ``[[steps]]`` in ``migration.toml`` instead of an ``up.sql``.

Each step is a SQL template of the migration's ``steps/`` folder (rendered like
``up.sql``: components from the pin, or the working tree with ``--no-pin``) or a
command (an argv, no shell) run from the migration's folder with the hooks' ``SPAWN_*``
variables. Nothing runs at render time: a render is the steps' SQL, each after a
header line, with each command as a header of its own; that text is what ``migration
build`` prints and what the checksum covers (every step's SQL and every command's argv).

Apply runs the steps in order, under the migration lock, each SQL step in a psql of
its own; the migration gets one ATTEMPTED row and one outcome row, and a failure
records ``step N: <error>``. The Rust tool lists a migration by its ``up.sql``, so it
never sees a scripted one and cannot half-apply it.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from spawn_db.errors import MigrationSettingsError

if TYPE_CHECKING:
    from spawn_db.migrate.rendered import Rendered
    from spawn_db.migrate.runner import MigrationRun

STEPS_FOLDER = "steps"
STEP_KEYS = ("sql", "command")
HEADER = "-- spawn step {number}/{total}: {what}\n"


@dataclass(frozen=True)
class Step:
    """One ``[[steps]]`` entry; ``number`` counts from 1."""

    number: int
    sql: str | None = None
    command: tuple[str, ...] = ()

    def header(self, total: int) -> str:
        """The line before the step in a render: the SQL file, or the command's argv as a
        JSON list (one line whatever the argv holds, and a different line for each argv)."""
        what = self.sql if self.sql is not None else \
            "command " + json.dumps(list(self.command), ensure_ascii=False)
        return HEADER.format(number=self.number, total=total, what=what)


def parse_steps(raw: Any, path: Path | str) -> tuple[Step, ...]:
    """``steps`` of a ``migration.toml``: a list of tables, each with ``sql`` or ``command``."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not raw or not all(isinstance(s, dict) for s in raw):
        raise MigrationSettingsError(
            f"{path}: `steps` must be a list of [[steps]] tables, each with "
            f'`sql = "{STEPS_FOLDER}/01.sql"` or `command = ["python", "backfill.py"]`')
    return tuple(_step(number, entry, path) for number, entry in enumerate(raw, 1))


def _step(number: int, entry: Mapping[str, Any], path: Path | str) -> Step:
    where = f"[[steps]] #{number}"
    unknown = [k for k in entry if k not in STEP_KEYS]
    sql, command = entry.get("sql"), entry.get("command")
    if unknown or (sql is None) == (command is None):
        raise MigrationSettingsError(
            f"{path}: {where} needs exactly one of `sql` (a template in the migration's "
            f'{STEPS_FOLDER}/ folder, e.g. `sql = "{STEPS_FOLDER}/01.sql"`) and `command` (an '
            'argv list, e.g. `command = ["python", "backfill.py"]`), and no other key')
    if sql is not None:
        parts = PurePosixPath(sql).parts if isinstance(sql, str) else ()
        if (not isinstance(sql, str) or "\\" in sql or PurePosixPath(sql).is_absolute()
                or len(parts) < 2 or parts[0] != STEPS_FOLDER or ".." in parts
                or not sql.endswith(".sql") or "\n" in sql):
            raise MigrationSettingsError(
                f"{path}: {where} `sql` = {sql!r} must name a .sql template inside the "
                f'migration\'s {STEPS_FOLDER}/ folder, e.g. `sql = "{STEPS_FOLDER}/01.sql"` '
                "(no absolute path, no `..`)")
        return Step(number, sql=sql)
    if not isinstance(command, list) or not command or not all(
            isinstance(a, str) and a for a in command):
        raise MigrationSettingsError(
            f"{path}: {where} `command` must be a non-empty list of non-empty strings (the "
            'program and its arguments, run without a shell from the migration\'s folder), '
            'e.g. `command = ["python", "backfill.py"]`')
    return Step(number, command=tuple(command))


# -- the template ------------------------------------------------------------------------------


def folder_steps(folder: Path) -> tuple[Step, ...] | None:
    """The steps of the migration in ``folder`` when it is a scripted migration (no
    ``up.sql``, ``[[steps]]`` in ``migration.toml``), else None."""
    from spawn_db.migrate.settings import SETTINGS_FILE, load_settings_file

    if (folder / "up.sql").exists():
        return None
    steps = load_settings_file(folder / SETTINGS_FILE).steps
    return steps or None


def steps_template(folder: Path, steps: Sequence[Step]) -> str:
    """The one template a scripted migration renders as: each step's header line, then
    its SQL template (ending with a newline). Steps render in order as one template, so
    what a step sets (``{% set %}``) later steps see."""
    from spawn_db.migrate.migration import _read_template

    parts: list[str] = []
    for step in steps:
        header = step.header(len(steps))
        if any(mark in header for mark in ("{{", "{%", "{#")):
            header = "{% raw %}" + header + "{% endraw %}"
        parts.append(header)
        if step.sql is not None:
            path = folder / step.sql
            if not os.path.realpath(path).startswith(os.path.realpath(folder) + os.sep):
                raise MigrationSettingsError(
                    f"{folder / 'migration.toml'}: [[steps]] #{step.number} `sql` = "
                    f"{step.sql!r} resolves outside the migration's folder (through a "
                    "symbolic link); keep step templates inside it")
            text = _read_template(path)
            parts.append(text if text.endswith("\n") or not text else text + "\n")
    return "".join(parts)


def split_rendered(text: str, steps: Sequence[Step]) -> list[str]:
    """The rendered SQL of each step, cut out of the whole render at the header lines (the
    text the checksum covers is exactly what runs); "" for a command."""
    bounds: list[tuple[int, int]] = []
    start = 0
    for step in steps:
        header = step.header(len(steps))[:-1]  # the render's last newline is dropped
        found = text.find(header, start)
        if found < 0:
            raise MigrationSettingsError(
                f"step {step.number}'s header line ({header}) is missing from the rendered "
                "migration; a template must not remove or change it")
        end = found + len(header) + (text.startswith("\n", found + len(header)))
        bounds.append((found, end))
        start = end
    pieces = []
    for index, (_, end) in enumerate(bounds):
        following = bounds[index + 1][0] if index + 1 < len(bounds) else len(text)
        pieces.append(text[end:following])
    return pieces


# -- running -----------------------------------------------------------------------------------


def run_steps(run: MigrationRun, rendered: Rendered, steps: Sequence[Step]) -> None:
    """Run a scripted migration's steps in order: its ATTEMPTED row first, then each step
    (SQL in a psql of its own, a command as a process), then SUCCESS, or FAILURE with
    ``step N: <error>`` at the first step that fails."""
    rendered.spool.seek(0)
    pieces = split_rendered(rendered.spool.read().decode("utf-8"), steps)
    run.tracking.write([*run.take_pending(), rendered.record("ATTEMPTED")], durable=True)
    rendered.attempted = True
    rendered.started = time.monotonic()
    run.reporter.started(rendered.name, rendered.position, run.total, run.elapsed())
    folder = run.config.migrations_dir / rendered.name
    for step, sql in zip(steps, pieces, strict=True):
        error = _run_sql(run, rendered, sql) if step.sql is not None else \
            _run_command(run, rendered, step, folder)
        if error is not None:
            said = "psql said" if step.sql is not None else "its step said"
            run.record_failure(rendered, f"step {step.number}: {error}", said)
    seconds = time.monotonic() - rendered.started
    run.tracking.write([rendered.record("SUCCESS", execution_seconds=seconds)], durable=True)
    run.succeeded(rendered, seconds)


def _run_sql(run: MigrationRun, rendered: Rendered, sql: str) -> str | None:
    """One SQL step in a psql of its own, checked like an isolated migration (a statement
    that failed, a transaction left open); the error, or None."""
    from spawn_db.db.psql import marker_literal
    from spawn_db.db.target import PSQL_PREAMBLE
    from spawn_db.migrate.runner import (
        ISOLATED_EPILOGUE,
        STATEMENT_FAILED_CHECK,
        _isolated_error,
        application_name,
        backend_marker,
        backend_pid,
    )

    process = run.engine.script_session(application_name(rendered.name))
    process.on_output = run.reporter.output
    process.on_stderr = run.notice
    process.write(PSQL_PREAMBLE)
    process.write(run.setup.opening())
    process.write(backend_marker(process))
    process.write(rendered.secret_input)  # the \set lines of the secrets the steps use
    process.write(sql)
    process.write("\n;")
    process.write(ISOLATED_EPILOGUE)
    process.statement_marker(run.runner_message(
        [], marker_literal(process.nonce, "r0"), reset=True, extra=STATEMENT_FAILED_CHECK))
    process.close_input()
    while process.exit is None:
        run.pump(process)
    markers = list(process.markers())
    confirmed = any(kind == "r" for kind, _, _ in markers)
    run.flush_notices()
    if process.exit.code == 0 and confirmed:
        return None
    return run.end_session(rendered, backend_pid(markers), process.exit,
                           _isolated_error(process.exit))


def _run_command(run: MigrationRun, rendered: Rendered, step: Step, folder: Path) -> str | None:
    """One command step, from the migration's folder, with the hooks' ``SPAWN_*`` variables
    (``SPAWN_EVENT=step``, ``SPAWN_STEP=N``); what it prints is passed on."""
    from spawn_db.db.target import display_command
    from spawn_db.migrate.hooks import Hooks

    env = Hooks(run.config).environment("step", migration=run.shown(rendered.name))
    env["SPAWN_STEP"] = str(step.number)
    try:
        done = subprocess.run(list(step.command), cwd=folder, env=env, capture_output=True,
                              stdin=subprocess.DEVNULL, check=False)
    except OSError as exc:
        return f"cannot run {display_command(step.command[:1])}: {exc.strerror}"
    output = (done.stdout + done.stderr).decode("utf-8", "replace")
    if output:
        run.reporter.output(output)
    if done.returncode == 0:
        return None
    tail = "\n".join(done.stderr.decode("utf-8", "replace").strip().splitlines()[-10:])
    said = f": {tail}" if tail else ""
    return f"command {display_command(step.command)} exited with code {done.returncode}{said}"
