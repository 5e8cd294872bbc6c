"""Verify scripts: a migration's own checks, run when it is applied and again on demand.

A migration folder may hold ``verify.sql`` beside ``up.sql``: a template
rendered exactly as ``up.sql`` is (pinned by the same ``lock.toml``, or from the
working tree with ``--no-pin``) that checks what the migration did. It runs in
a fresh psql session of its own, connected where the target's command
connects, with spawn's preamble (``ON_ERROR_STOP`` on) and session settings:

* during apply, right after the migration's SUCCESS is recorded and before the
  next migration starts (the runner queues nothing behind a migration that has
  one); a failure is recorded as a FAILURE row of the migration, with
  ``verify failed: <psql error>``, and stops the run;
* ``spawn migration verify`` re-runs the scripts of applied migrations at any
  time, writing nothing and taking no lock.

How a verify script fails: psql stops at the first error and exits non-zero
(a ``DO`` block that raises, a failed ``ASSERT``, a syntax error). ``\\quit``
always exits 0 in psql 15 and 18 (``\\quit 1`` only earns an "extra argument
ignored" warning), so spawn ends every script with a statement of its own and
counts the script as passed only when that statement's marker comes back: a
``\\quit`` before the end (``\\if`` ... ``\\warn`` ... ``\\quit`` ... ``\\endif``) fails
it, and so does any statement that failed while the script had turned
``ON_ERROR_STOP`` off.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from spawn_db.config import Config
from spawn_db.db.engine import Engine, engine_for
from spawn_db.db.psql import Exit, PsqlProcess, marker_literal
from spawn_db.db.psqlscan import INCOMPLETE
from spawn_db.db.target import PSQL_PREAMBLE
from spawn_db.errors import (
    ControlError,
    DatabaseError,
    MigrationFailed,
    NotPinned,
    NotRecorded,
    UsageError,
)
from spawn_db.migrate.migration import VERIFY
from spawn_db.migrate.plan import is_done, state_of
from spawn_db.migrate.rendered import Rendered, render_migration
from spawn_db.migrate.runner import SessionSetup, _error_text
from spawn_db.project import Project

if TYPE_CHECKING:
    from spawn_db.migrate.runner import MigrationRun
    from spawn_db.migrate.sources import Sources

APPLICATION = "spawn verify"
QUIT_NOTE = "verify.sql stopped at a \\quit before its end"
STATEMENT_FAILED_NOTE = "(verify.sql turned ON_ERROR_STOP off, and a statement failed)"

# The status_note of a FAILURE row written because the verify script failed: the
# migration itself committed (revert may undo it).
VERIFY_FAILED = "verify failed: "


@dataclass(frozen=True)
class VerifyOutcome:
    """One verify script's run: ``error`` is psql's error (None when it passed)."""

    name: str
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class VerifyReport:
    """What ``spawn migration verify`` ran, in application order."""

    outcomes: tuple[VerifyOutcome, ...]
    applied: int

    @property
    def failed(self) -> list[VerifyOutcome]:
        return [o for o in self.outcomes if not o.ok]


# -- one script ----------------------------------------------------------------------------


def has_verify(config: Config, name: str) -> bool:
    return (config.migrations_dir / name / VERIFY).is_file()


def render_verify(config: Config, name: str, *, pinned: bool, variables: Any) -> Rendered:
    """``name``'s verify.sql rendered whole, exactly as apply renders its up.sql."""
    return render_migration(config, name, pinned=pinned, variables=variables, script=VERIFY)


def run_verify(engine: Engine, script: Rendered, *, opening: str,
               pump: Callable[[PsqlProcess], None] | None = None,
               on_output: Callable[[str], None] | None = None,
               on_stderr: Callable[[str], None] | None = None) -> str | None:
    """Run the rendered ``script`` in a psql of its own; None when it passed, else the error.

    ``opening`` is the session setup written after spawn's preamble; ``pump`` waits
    for psql (the apply run's, so Ctrl-C cancels a verify as it cancels a migration).
    """
    process = engine.script_session(f"{APPLICATION} {script.name}")
    process.on_output = on_output
    process.on_stderr = on_stderr
    checked = script.shape.clean_end or script.shape.reason == INCOMPLETE
    try:
        process.write(PSQL_PREAMBLE)
        process.write(opening)
        process.write(script.secret_input)
        process.write_stream(script.spool)
        if checked:
            process.write(_epilogue(process.nonce))
        process.close_input()
        while process.exit is None:
            if pump is None:
                process.pump(None)
            else:
                pump(process)
    finally:
        process.stop()
    assert process.exit is not None
    return _verdict(process.exit, _end_state(process), checked)


def _epilogue(nonce: str) -> str:
    """What follows the script: a ``;`` that sends a last statement left without one (an
    empty query otherwise), then, in meta-commands only (no SQL, so it works in any
    transaction state), the end marker with psql's last error state.

    psql runs the script in order and exits at an error (``ON_ERROR_STOP``), so
    reaching the marker proves the whole script ran.
    """
    return (
        "\n;\n\\o\n"
        "\\if :{?LAST_ERROR_SQLSTATE}\n\\else\n\\set LAST_ERROR_SQLSTATE 00000\n\\endif\n"
        f"\\echo {marker_literal(nonce, 'v')} :LAST_ERROR_SQLSTATE\n"
    )


def _end_state(process: PsqlProcess) -> str | None:
    """psql's LAST_ERROR_SQLSTATE as the end marker printed it; None if never printed."""
    head = f"{process.nonce}'v"
    for line in process.lines:
        if head in line:
            return line.split(head, 1)[1].strip()
    return None


def _verdict(exit: Exit, end_state: str | None, checked: bool) -> str | None:
    """What went wrong, from psql's exit code, the end marker and its stderr."""
    if exit.code != 0:
        return _error_text(exit.stderr) or f"psql exited with code {exit.code}"
    if not checked or end_state == "00000":
        return None
    said = _error_text(exit.stderr) if exit.stderr.strip() else ""
    if end_state is not None:
        return f"{said}\n{STATEMENT_FAILED_NOTE}" if said else STATEMENT_FAILED_NOTE
    return f"{said}\n({QUIT_NOTE})" if said else QUIT_NOTE


# -- during apply ---------------------------------------------------------------------------


class ApplyVerifier:
    """The verify scripts of one apply run.

    Each is rendered together with its migration (so a template error stops the
    run before the migration starts, as for up.sql) and run once the migration
    succeeded; a failure becomes the migration's FAILURE row and ends the run.
    """

    def __init__(self, run: MigrationRun) -> None:
        self.run = run
        self.scripts: dict[int, Rendered] = {}

    def prepare(self, rendered: Rendered) -> None:
        """Render ``rendered``'s verify.sql, if it has one and the run applies it (a run
        of down scripts verifies nothing)."""
        run = self.run
        if rendered.record("SUCCESS").activity != "APPLY":
            return
        if has_verify(run.config, rendered.name):
            self.scripts[rendered.position] = render_verify(
                run.config, rendered.name, pinned=run.pinned_for(rendered.name),
                variables=run.variables)

    def wants(self, rendered: Rendered) -> bool:
        """Whether ``rendered`` has a verify script, so nothing may be queued behind it."""
        return rendered.position in self.scripts

    def after(self, rendered: Rendered) -> None:
        """Run ``rendered``'s verify script, if any; it has succeeded and nothing runs."""
        script = self.scripts.pop(rendered.position, None)
        if script is None:
            return
        run = self.run
        started = time.monotonic()
        stderr: list[str] = []
        try:
            error = run_verify(run.engine, script, opening=run.setup.opening(), pump=run.pump,
                               on_output=run.reporter.output, on_stderr=stderr.append)
        finally:
            script.close()
        seconds = time.monotonic() - started
        if error is not None:
            self.record_failure(rendered, error, seconds)
        if stderr:
            run.reporter.output("".join(stderr))
        run.reporter.output(f"  {run.shown(rendered.name)}: verify.sql passed "
                            f"({seconds * 1000:.0f} ms)")

    def record_failure(self, rendered: Rendered, error: str, seconds: float) -> None:
        run = self.run
        name = run.shown(rendered.name)
        note = f"{VERIFY_FAILED}{error}"
        record = rendered.record("FAILURE", status_note=note, execution_seconds=seconds)
        try:
            run.tracking.write([*run.take_pending(), record], durable=True)
        except (ControlError, DatabaseError) as exc:
            raise NotRecorded(
                f"migration {name} ran, but its verify.sql failed, and spawn could not "
                f"record the failure ({exc}); its history shows it applied. psql said:\n{error}"
            ) from None
        why = "was interrupted" if run.interrupted else "failed"
        done, total = run.counted()
        path = Project(run.config).display(run.config.migrations_dir / rendered.name / VERIFY)
        raise MigrationFailed(
            f"migration {name} ran, but its verify script {path} {why} ({done - 1} of "
            f"{total} applied before it); recorded as FAILURE in "
            f"{run.tracking.schema}.migration_history, and the run stopped. psql said:\n"
            f"{error}\nThe migration's changes are committed: fix what verify.sql found "
            f"(or verify.sql itself), then run `spawn migration apply {name} --retry` "
            f"(which runs up.sql again), or, if the database is right as it is, "
            f"`spawn migration adopt {name}`"
        )

    def close(self) -> None:
        for script in self.scripts.values():
            script.close()
        self.scripts.clear()


# -- spawn migration verify -----------------------------------------------------------------


def verify_applied(
    config: Config,
    migration: str | None = None,
    *,
    pinned: bool = True,
    variables: Any = None,
    each: Callable[[VerifyOutcome], None] | None = None,
    on_output: Callable[[str], None] | None = None,
) -> VerifyReport:
    """Run the verify scripts of applied (or adopted) migrations: ``migration``, or every
    one that has a verify.sql, in the order they were applied.

    Writes nothing and takes no lock: a verify script only reads. ``each`` gets every
    outcome as it comes; ``on_output`` what the scripts printed (of a passing one).
    """
    from spawn_db.migrate.apply import tracking_session
    from spawn_db.migrate.sources import Sources

    sources = Sources(config)
    named = sources.resolve(migration) if migration else None
    target = config.target()
    with tracking_session(config, target) as tracking:
        states = sources.latest(tracking)
        settings = SessionSetup.for_tracking(tracking).settings
    applied = sorted((row for row in states.values() if is_done(state_of(row))),
                     key=lambda row: row.history_id)
    if named is not None:
        names = [_check_named(sources, named, states)]
    else:
        on_disk = set(sources.names)
        names = [r.name for r in applied if r.name in on_disk and _has_verify(sources, r.name)]
    engine = engine_for(config, target)
    opening = "".join(f"{statement};\n" for statement in settings)
    outcomes = []
    for name in names:
        source, bare = sources.split(name)
        outcome = _verify_one(source.config, engine, bare, opening, pinned=pinned,
                              variables=variables, on_output=on_output)
        outcome = replace(outcome, name=name)
        outcomes.append(outcome)
        if each is not None:
            each(outcome)
    return VerifyReport(tuple(outcomes), len(applied))


def _has_verify(sources: Sources, qualified: str) -> bool:
    source, bare = sources.split(qualified)
    return has_verify(source.config, bare)


def _check_named(sources: Sources, name: str, states: dict[str, Any]) -> str:
    state = state_of(states.get(name))
    if not is_done(state):
        again = " --retry" if state in ("failed", "attempted") else ""
        raise UsageError(
            f"migration {name} is not applied (its state: {state}); `spawn migration verify` "
            f"re-runs the verify scripts of applied migrations: apply it first (`spawn "
            f"migration apply {name}{again}` runs its verify.sql too)"
        )
    if not _has_verify(sources, name):
        path = Project(sources.config).display(sources.folder(name) / VERIFY)
        raise UsageError(f"migration {name} has no verify script; create {path} beside its "
                         "up.sql to check what it did")
    return name


def _verify_one(config: Config, engine: Engine, name: str, opening: str, *, pinned: bool,
                variables: Any, on_output: Callable[[str], None] | None) -> VerifyOutcome:
    try:
        script = render_verify(config, name, pinned=pinned, variables=variables)
    except NotPinned:
        raise NotPinned(
            f"migration {name} is not pinned (no lock.toml), so its verify.sql cannot be "
            "rendered from a pin; pass --no-pin to render it from the working tree"
        ) from None
    started = time.monotonic()
    printed: list[str] = []
    try:
        error = run_verify(engine, script, opening=opening, on_output=printed.append,
                           on_stderr=printed.append)
    finally:
        script.close()
    if error is None and printed and on_output is not None:
        on_output("".join(printed))
    return VerifyOutcome(name, error, time.monotonic() - started)
