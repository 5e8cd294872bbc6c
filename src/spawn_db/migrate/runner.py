"""Running planned migrations through psql sessions: render, stream, record.

``apply`` decides what runs, under the migration lock; this module runs it:
each migration is rendered into a spool and streamed into a psql session,
and its history rows are written on the way.

How a run uses psql, and why it is both fast and crash-safe:

* A **control session** (psql connected to ``spawn_database``) holds the
  migration lock from before the state check until after the last history
  row, reads the state, and writes the rows that cannot go elsewhere.
* A **runner session** (psql connected where the target's command connects)
  runs the migrations one after the other. Each migration is rendered whole
  into a spool first (``rendered.py``; a template error stops before anything
  of it reaches the database) and checked with ``engine.psqlscan``: only plain SQL that
  ends cleanly shares the runner; anything else gets a psql of its own.
* Between two shared migrations the runner executes ``DISCARD ALL`` (which
  also fails, ending psql, if the migration left a transaction open), so the
  next one starts as in a fresh session.
* When the tracking tables live in the runner's database, the bookkeeping
  goes through the runner too: ``ATTEMPTED`` row, migration, outcome row
  (in one message and one transaction with the next migration's ``ATTEMPTED``
  row, which is written only while this run's control session still holds the
  lock: ``chained_message``), each proven by a marker the statement itself
  returns. The lock check is a try-lock on the random run key the control
  session took with the migration lock (``tracking.run_key_check``), not a
  read of ``pg_locks``, which copies the server's whole lock table. psql
  stops at the first error (``ON_ERROR_STOP``), so nothing after a failure
  runs, and spawn records the failure through the control session. Several
  migrations can be queued ahead in psql's input, because psql dies with
  spawn (parent-death signal) and would otherwise never run what is queued
  without spawn there to see it.
* In that shared, inline case a migration's own commits are asynchronous
  (``synchronous_commit = off``, set in a message before it and undone by
  the reset after it, unless the migration sets it itself), and only the
  ``ATTEMPTED`` rows commit durably, with the session's own setting: WAL is
  one ordered stream per cluster, so the next ``ATTEMPTED`` row (or the
  run's closing barrier) flushes the migration and its outcome row with it,
  and a crash before that flush leaves the migration ``ATTEMPTED``. One WAL
  flush per migration, as in one psql session running the same files.
* Otherwise (``spawn_database`` elsewhere), the control session writes the
  rows between migrations, and migrations commit with the session's setting.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from spawn_db.config import Config
from spawn_db.db.engine import Engine
from spawn_db.db.psql import (
    Exit,
    PsqlProcess,
    marker_literal,
)
from spawn_db.db.psqlscan import INCOMPLETE
from spawn_db.db.target import (
    PSQL_PREAMBLE,
    SESSION_PIN,
    SESSION_SETTINGS,
    display_command,
    mask_secrets,
)
from spawn_db.errors import (
    ControlError,
    DatabaseError,
    LockLost,
    MigrationFailed,
    MigrationStillRunning,
    NotRecorded,
    SpawnError,
)
from spawn_db.escape import escape_literal
from spawn_db.migrate.rendered import Rendered, render_migration, uses_pin
from spawn_db.migrate.tracking import (
    ASYNC_COMMIT,
    BACKEND_PATIENCE,
    ELAPSED,
    LOCK_LOST_SETTING,
    USER_NAMESPACE,
    Activity,
    LockHolder,
    Record,
    Tracking,
    run_key_check,
    run_key_free,
    runner_key,
)

if TYPE_CHECKING:
    from spawn_db.migrate.hooks import Hooks
    from spawn_db.migrate.verify import ApplyVerifier

LOOKAHEAD = 3
# What DISCARD ALL does, except DISCARD PLANS (cached plans are invisible to SQL, and
# replanning every bookkeeping and foreign-key query after each migration costs more
# than a small migration's own commit) and the advisory unlock, which returns a row and
# so goes in the closing SELECT. DISCARD ALL itself cannot share a message. RESET ALL
# returns client_encoding and standard_conforming_strings to the database's defaults
# when a wrapper dropped PGCLIENTENCODING/PGOPTIONS, so the session settings follow it.
RESET_SESSION = (
    "CLOSE ALL", "SET SESSION AUTHORIZATION DEFAULT", "RESET ALL", *SESSION_SETTINGS,
    "DEALLOCATE ALL", "UNLISTEN *", "DISCARD TEMP", "DISCARD SEQUENCES",
)
# Inside a transaction block now() is the time the block began, while
# statement_timestamp() is when this message arrived: a migration that left its
# transaction open makes the message fail, psql exit, and PostgreSQL roll it back.
OPEN_TRANSACTION_SETTING = "spawn.migration left a transaction open"
OPEN_TRANSACTION_NOTE = (
    "the migration ended inside a transaction block (a BEGIN without COMMIT); "
    "PostgreSQL rolled it back, as it does when psql reaches the end of a script"
)
OPEN_TRANSACTION_CHECK = (
    "CASE WHEN now() <> statement_timestamp() "
    f"THEN current_setting({escape_literal(OPEN_TRANSACTION_SETTING)}) END AS spawn_open"
)
RESET_CHECKS = f"u.spawn_unlock, {OPEN_TRANSACTION_CHECK}"
# A statement of a migration failed while it had ON_ERROR_STOP off: never a SUCCESS.
STATEMENT_FAILED_SETTING = "spawn.a statement of the migration failed"
STATEMENT_FAILED_NOTE = (
    "(the migration turned ON_ERROR_STOP off, so psql went on after this error: check which "
    "of its statements committed before you retry or adopt it)"
)
APPLICATION = "spawn apply"
# The note of a FAILURE row after a psql that ended abnormally (killed, crashed): spawn ended
# the migration's session before writing it (MigrationRun.end_session).
ENDED_NOTE = (
    "psql ended before the migration did (killed, crashed, or its connection lost); spawn made "
    "sure its server session had ended before writing this row, so nothing of it runs any "
    "more. Statements it had finished before psql ended may have committed (the one running "
    "then too, if its commit came first): check what it changed (`spawn migration drift` "
    "shows schema objects it left) before you run it again"
)
# After psql stopped at an error, how long its session may take to end by itself before spawn
# ends it.
ERROR_EXIT_GRACE = 1.0
# Every migration session keeps its backend's pid in this psql variable and prints it after
# this marker kind (``backend_marker``), so that spawn can end the session when psql dies.
BACKEND_PID_VARIABLE = "spawn_pid"
BACKEND_PID_MARKER = "p"
# The settings spawn connects with besides SessionSetup.options (target.session_env), and the
# psql variable saying whether the runner's connection kept them (SessionSetup.resets_to_setup).
CONNECT_SETTINGS = (("client_encoding", "UTF8"), ("standard_conforming_strings", "on"))
RESETS_VARIABLE = "spawn_resets"
# A shared runner that also writes the history runs each migration with asynchronous commits
# and commits each ATTEMPTED row with the session's original setting, kept at its start in
# the psql variable spawn_sync: one WAL flush per migration (see MigrationRun.migration_settings).
SESSION_SYNC_VARIABLE = "spawn_sync"
SESSION_SYNC = "current_setting('synchronous_commit')"
MIGRATION_COMMIT = "SET synchronous_commit = off"
DURABLE_COMMIT = f"SET LOCAL synchronous_commit = :'{SESSION_SYNC_VARIABLE}'"
# After a chained message whose ATTEMPTED row was not written because the lock is gone: an
# error naming LOCK_LOST_SETTING, so that psql stops before the next migration.
STOP_IF_LOCK_LOST = (
    f"\\if :spawn_lost\nSELECT current_setting({escape_literal(LOCK_LOST_SETTING)});\n\\endif\n"
)
# After a migration in its own psql: errors stop psql again, output goes back to spawn,
# and psql's LAST_ERROR_SQLSTATE (set by any failed statement) exists for the check.
ISOLATED_EPILOGUE = (
    "\n\\set ON_ERROR_STOP on\n\\o\n\\set QUIET on\n"
    "\\if :{?LAST_ERROR_SQLSTATE}\n\\else\n\\set LAST_ERROR_SQLSTATE 00000\n\\endif\n"
)
STATEMENT_FAILED_CHECK = (
    ", CASE WHEN :'LAST_ERROR_SQLSTATE' <> '00000' "
    f"THEN current_setting({escape_literal(STATEMENT_FAILED_SETTING)}) END AS spawn_failed"
)


# -- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class MigrationOutcome:
    """One migration (or down script) that ran: its ``name``, how long it took
    (``seconds``) and the size of its rendered SQL (``rendered_bytes``)."""

    name: str
    seconds: float
    rendered_bytes: int = 0


class ApplyReporter(Protocol):
    """Where a run reports progress; the CLI prints it, tests collect it."""

    def waiting_for_lock(self, holders: Sequence[LockHolder], waited: float) -> None: ...

    def started(self, name: str, position: int, total: int, elapsed: float) -> None: ...

    def finished(self, outcome: MigrationOutcome, position: int, total: int,
                 elapsed: float) -> None: ...

    def output(self, text: str) -> None: ...


# -- the run -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SessionSetup:
    """What every migration session runs first, and a shared runner again after each reset.

    Server-side timeouts spawn can switch off for itself are off (an idle runner
    must not be ended between two migrations), a backend whose psql is gone stops
    within a second (``client_connection_check_interval``), and the session holds
    the runner key, so a later spawn can see a migration that is still running.
    """

    settings: tuple[str, ...]
    runner_key: tuple[int, int]
    lock_check: str
    lock_gone: str = "false"  # SQL, true once the lock is gone (the check, without the error)
    # The server settings among ``settings`` as (name, value): a runner connects with them
    # where the engine can pass them (``Engine.carries_options``), and RESET ALL keeps them.
    options: tuple[tuple[str, str], ...] = ()

    @classmethod
    def for_tracking(cls, tracking: Tracking) -> SessionSetup:
        version = int(str(tracking.session.info.get("server_version_num", 0)))
        options = [("idle_in_transaction_session_timeout", "0")]
        if version >= 140000:
            options += [("idle_session_timeout", "0"), ("client_connection_check_interval", "1000")]
        settings = tuple(f"SET {name} = {value}" for name, value in options)
        return cls(settings, runner_key(tracking.session.database, tracking.schema),
                   run_key_check(tracking.run_key), run_key_free(tracking.run_key),
                   options=tuple(options))

    def after_reset(self, carried: bool) -> list[str]:
        """What a shared runner runs after a migration: the reset, then the settings it
        undid. A runner that connected with ``options`` (``carried``) gets them back, and
        its session settings (``PGCLIENTENCODING``, ``PGOPTIONS``), from ``RESET ALL``
        itself, which returns every setting to its value at connect time: only the rest is
        set again (five statements less per migration)."""
        if not carried:
            return [*RESET_SESSION, *self.settings]
        given = {f"SET {name} = {value}" for name, value in self.options}
        return [*(s for s in RESET_SESSION if s not in SESSION_SETTINGS),
                *(s for s in self.settings if s not in given)]

    def lock_runner(self) -> str:
        k1, k2 = self.runner_key
        return f"pg_advisory_lock_shared({k1}, {k2})"

    def opening(self, *, check_reset: bool = False) -> str:
        """psql input that sets the session up, printing nothing; it keeps the session's
        own ``synchronous_commit`` in the psql variable ``spawn_sync`` and its backend's pid
        in ``spawn_pid`` (for ``backend_marker``: one more column, no more round trips),
        and, with ``check_reset``, ``resets_to_setup`` in ``spawn_resets``."""
        check = f", {self.resets_to_setup()} AS {RESETS_VARIABLE}" if check_reset else ""
        statements = [*self.settings, f"SELECT {self.lock_runner()} AS spawn_runner_lock, "
                      f"{SESSION_SYNC} AS {SESSION_SYNC_VARIABLE}, "
                      f"pg_catalog.pg_backend_pid() AS {BACKEND_PID_VARIABLE}{check}"]
        return " \\;\n".join(statements) + " \\gset\n"

    def resets_to_setup(self) -> str:
        """SQL, true when ``RESET ALL`` returns the session to spawn's settings: it
        connected (``pg_settings.reset_val``) with the setup's ``options`` and with UTF-8
        and standard-conforming strings (``CONNECT_SETTINGS``).

        spawn passes them in the environment (``PGOPTIONS``, ``PGCLIENTENCODING``), which a
        conninfo ``client_encoding`` or ``options`` outranks, and which a wrapper may
        replace; a runner connected otherwise gets its settings set again after each
        migration (``after_reset``), or the next migration's UTF-8 would be read as LATIN1.
        """
        pairs = [*self.options, *CONNECT_SETTINGS]
        wanted = ", ".join(f"({escape_literal(name)}, {escape_literal(value)})"
                           for name, value in pairs)
        return (f"(SELECT count(*) = {len(pairs)} FROM pg_catalog.pg_settings "
                f"WHERE (name, reset_val) IN ({wanted}))")


def backend_marker(process: PsqlProcess, kind: str = BACKEND_PID_MARKER, then: str = "") -> str:
    """psql input printing the marker ``kind`` followed by the session's backend pid (set
    by ``SessionSetup.opening``), e.g. ``nonce'p4242``, and ``then``.

    psql writes it out before it sends the next statement, so a psql that dies without
    having printed it never started the migration; one that printed it names the server
    session spawn must see ended before it writes the migration's outcome
    (``MigrationRun.end_session``)."""
    return f"\\echo {marker_literal(process.nonce, kind)}:{BACKEND_PID_VARIABLE}{then}\n"


def backend_pid(markers: Iterable[tuple[str, int, float | None]]) -> int | None:
    """The pid ``backend_marker`` printed, among a finished psql's ``markers``."""
    return next((number for kind, number, _ in markers if kind == BACKEND_PID_MARKER), None)


def application_name(migration: str | None = None) -> str:
    return f"{APPLICATION} {migration}" if migration else APPLICATION


def start_runner(engine: Engine, setup: SessionSetup) -> PsqlProcess:
    """Start a runner psql; it connects while spawn does other work."""
    process = engine.script_session(application_name(), setup.options)
    process.write(PSQL_PREAMBLE)
    process.write(setup.opening(check_reset=True))
    process.write(_connected(process))
    process.pump(0)
    return process


def _connected(process: PsqlProcess) -> str:
    """psql input printing ``nonce'c<backend pid> <t|f> <database>``: the runner is
    connected, and whether ``RESET ALL`` returns it to spawn's settings."""
    return backend_marker(process, "c", f" :{RESETS_VARIABLE} :DBNAME")


def _connected_fields(text: str) -> tuple[int | None, bool, str]:
    """What ``_connected`` printed after its marker: (backend pid, resets, database)."""
    pid, resets, dbname = [*text.split(" ", 2), "", ""][:3]
    return int(pid) if pid.isdigit() else None, resets == "t", dbname.strip() or "?"


CONNECT_POLL = 1.0


class _Runner:
    """A shared psql session for migrations, and what it has confirmed so far."""

    def __init__(self, run: MigrationRun, process: PsqlProcess | None = None) -> None:
        self.run = run
        self.process = process or start_runner(run.engine, run.setup)
        # Started by start_runner, with the setup's options where the engine passes them
        # and the connection kept them (read with the pid below).
        self.carried = False
        self.process.on_output = run.reporter.output
        self.process.on_stderr = run.notice
        self.queued: deque[Rendered] = deque()
        self.confirmed: set[int] = set()
        self.dbname = ""
        self.pid: int | None = None  # the backend's, which ``MigrationRun.fail`` ends
        head = f"{self.process.nonce}'c"
        while True:
            for line in list(self.process.lines):
                self.process.lines.popleft()
                if head in line:
                    self.pid, resets, self.dbname = _connected_fields(line.split(head, 1)[1])
                    self.carried = run.engine.carries_options and resets
            if self.dbname:
                break
            if self.process.exit is not None:
                raise DatabaseError(
                    f"cannot start psql ({display_command(self.process.argv)}): exit code "
                    f"{self.process.exit.code}: {mask_secrets(self.process.exit.stderr.strip())}"
                )
            before = len(self.process.lines)
            run.pump(self.process, CONNECT_POLL)
            if len(self.process.lines) == before and not self.process.pending:
                self.process.write(_connected(self.process))

    def confirm(self, position: int) -> None:
        self.confirmed.add(position)
        while self.queued and self.queued[0].position in self.confirmed:
            self.queued.popleft()

    @property
    def pending(self) -> int:
        return len(self.queued)

    def first_pending(self) -> int | None:
        return self.queued[0].position if self.queued else None


class MigrationRun:
    """Applies the planned migrations; see the module docstring for the design.

    ``namespace`` is where the run's migrations are registered: ``default`` for the
    versioned migrations, ``repeatable`` for ``migrate/repeatable.py``'s subclass.
    """

    namespace = USER_NAMESPACE

    def __init__(self, config: Config, engine: Engine, tracking: Tracking,
                 reporter: ApplyReporter, names: Sequence[str], *, pinned: bool,
                 variables: Any, first_history_id: int, setup: SessionSetup,
                 runner: PsqlProcess | None = None, activity: Activity = "APPLY",
                 unpinned_from_tree: bool = False, hooks: Hooks | None = None) -> None:
        self.config = config
        self.engine = engine
        self.tracking = tracking
        self.reporter = reporter
        self.names = list(names)
        self.pinned = pinned
        self.unpinned_from_tree = unpinned_from_tree
        self.variables = variables
        self.first_history_id = first_history_id
        self.total = len(names)
        self.start = time.monotonic()
        self.outcomes: list[MigrationOutcome] = []
        self.pending_records: list[Record] = []
        self.by_position: dict[int, Rendered] = {}
        self.runner: _Runner | None = None
        self.inline = False
        self.write_ahead = engine.stops_with_spawn
        self.interrupted = False
        self.notices: list[str] = []
        self.ids: dict[str, int] = {}
        self.early_runner = runner
        self.setup = setup
        # What the run does with each migration: APPLY runs up.sql, REVERT down.sql; the
        # history rows carry the activity, the checksum is the rendered script's.
        self.activity: Activity = activity
        self.script = "down.sql" if activity == "REVERT" else "up.sql"
        # before_each_migration / after_each_migration hooks (apply only): with any, every
        # migration runs in a psql of its own, its SQL hooks in that session.
        self.hooks = hooks if hooks is not None and hooks.around_each() else None

    # -- plumbing ------------------------------------------------------------------------

    def shown(self, name: str) -> str:
        """``name`` as people and hooks see it (a source's run: ``audit:<name>``)."""
        return name

    def notice(self, text: str) -> None:
        self.notices.append(text)

    def flush_notices(self) -> None:
        if self.notices:
            self.reporter.output("".join(self.notices))
            self.notices.clear()

    def pump(self, process: PsqlProcess, timeout: float | None = None) -> None:
        try:
            process.pump(timeout)
        except KeyboardInterrupt:
            if self.interrupted:
                process.kill()
            else:
                self.interrupted = True
                process.interrupt()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def render(self, position: int) -> Rendered:
        name = self.names[position - 1]
        rendered = render_migration(self.config, name, pinned=self.pinned_for(name),
                                    variables=self.variables, position=position,
                                    script=self.script)
        rendered.activity = self.activity
        rendered.migration_id = self.ids.get(name)
        if self.activity == "APPLY" and not os.path.isfile(
                os.path.join(self.migrations_dir, name, "up.sql")):
            from spawn_db.migrate.steps import folder_steps

            rendered.steps = folder_steps(self.config.migrations_dir / name)
        if (self.hooks is not None or rendered.steps) and rendered.shape.shareable:
            rendered.shape = dataclasses.replace(rendered.shape, shareable=False)
        self.by_position[position] = rendered
        self.verifier.prepare(rendered)
        return rendered

    @functools.cached_property
    def migrations_dir(self) -> str:
        """The migrations folder as a string, built once: a path per migration costs more
        than the checks it serves."""
        return str(self.config.migrations_dir)

    def pinned_for(self, name: str) -> bool:
        """Render from the pin, except an unpinned migration where pins are optional."""
        return uses_pin(self.config, name, self.pinned, self.unpinned_from_tree)

    @functools.cached_property
    def verifier(self) -> ApplyVerifier:
        from spawn_db.migrate.verify import ApplyVerifier

        return ApplyVerifier(self)

    # -- main loop -----------------------------------------------------------------------

    def execute(self) -> list[MigrationOutcome]:
        try:
            if not self.names:
                return []
            current: Rendered | None = self.render(1)
            self.ids = self.tracking.register(self.names, namespace=self.namespace)
            for rendered in self.by_position.values():
                rendered.migration_id = self.ids.get(rendered.name)
            while current is not None:
                current = self.step(current)
            self.drain()
            self.close_runner()
        finally:
            for rendered in self.by_position.values():
                rendered.close()
            self.verifier.close()
            for leftover in (self.runner.process if self.runner else None, self.early_runner):
                if leftover is not None:
                    leftover.stop()
            self.settle()
        return self.outcomes

    def settle(self) -> None:
        """Write what is still pending and make the history durable, even when stopping.

        Called from ``execute``'s ``finally``: when an error is already on its way
        out, a failure here must not replace it; when the run succeeded, it must
        not be hidden either, or spawn would report a run whose lock was lost.
        """
        stopping = sys.exc_info()[0] is not None
        try:
            if self.tracking.session.process.exit is not None:
                raise DatabaseError("the control session has ended")
            self.tracking.write(self.take_pending(), durable=True)
            self.tracking.forget_unused(list(self.ids.values()))
            self.tracking.barrier()
        except SpawnError as exc:
            if stopping:
                return
            raise LockLost(
                f"the migration lock of database {self.tracking.session.database} was lost "
                f"before the run ended ({exc.message}); {len(self.outcomes)} of {self.total} "
                "migrations ran, recorded by their own session: check `spawn migration "
                "status` before you apply again"
            ) from None

    def step(self, current: Rendered) -> Rendered | None:
        """Queue ``current`` for psql, render the next one, and return it.

        Chained (bookkeeping in the runner, psql stops with spawn), the next
        migration is rendered first, so that ``current`` can be queued whole,
        its outcome row batched with the next ATTEMPTED row, while psql is
        still busy with the migrations queued before it. Otherwise the next
        one is rendered while psql runs ``current``. Nothing is queued behind a
        migration that has a verify script: it runs once the migration is done.
        """
        if not current.shape.shareable:
            self.drain()
            # A scripted migration's SQL hooks run in sessions of their own, its steps' own.
            scripted = current.steps is not None
            if self.hooks is not None:
                self.hooks.run("before_each_migration", migration=self.shown(current.name),
                               sql=scripted)
            if current.steps is not None:
                from spawn_db.migrate.steps import run_steps

                run_steps(self, current, current.steps)
            else:
                self.run_isolated(current)
            self.verifier.after(current)
            if self.hooks is not None:
                self.hooks.run("after_each_migration", migration=self.shown(current.name),
                               sql=scripted)
            return self.render_next(current)
        runner = self.ensure_runner()
        if self.inline and self.write_ahead:
            following, error = self.try_render_next(current)
            chained = (following is not None and following.shape.shareable
                       and not current.shape.restart_after and not self.verifier.wants(current))
            self.queue(runner, current, following if chained else None)
            if chained and error is None:
                self.wait(lambda: runner.pending <= LOOKAHEAD)
                return following
        else:
            self.queue(runner, current, None)
            following, error = self.try_render_next(current)
        self.drain()
        if current.shape.restart_after:
            self.close_runner()
        self.verifier.after(current)
        if error is not None:
            raise error
        return following

    def try_render_next(self, current: Rendered) -> tuple[Rendered | None, SpawnError | None]:
        try:
            return self.render_next(current), None
        except SpawnError as exc:
            return None, exc

    def render_next(self, current: Rendered) -> Rendered | None:
        if current.position >= self.total:
            return None
        return self.render(current.position + 1)

    def queue(self, runner: _Runner, current: Rendered, following: Rendered | None) -> None:
        """Write ``current``'s whole block to the runner: ATTEMPTED row (unless the block
        before recorded it), migration, reset, outcome (and ``following``'s ATTEMPTED row)."""
        nonce = runner.process.nonce
        process = runner.process
        if not current.attempted:
            if self.inline:
                self.queue_attempted(process, current)
            else:
                self.tracking.write([*self.take_pending(), current.record("ATTEMPTED")],
                                    durable=True)
            current.attempted = True
        if not self.inline:
            process.write(" \\;\n".join(self.migration_settings(current)) + ";\n")
        process.echo_marker(f"s{current.position}")
        process.write_stream(current.spool)
        process.write("\n")
        process.echo_marker(f"e{current.position}")
        runner.queued.append(current)
        records = []
        if self.inline:
            records.append(current.record("SUCCESS", since_attempt=True))
        mark = marker_literal(nonce, f"r{current.position}")
        if self.inline:
            mark = f"{mark} || ' ' || extract(epoch FROM {ELAPSED})::text"
        if self.inline and following is not None and following.migration_id is not None:
            process.statement_marker(self.chained_message(current, following, mark, runner.carried))
            process.write(STOP_IF_LOCK_LOST)
            following.attempted = True
        else:
            process.statement_marker(self.runner_message(records, mark, reset=True,
                                                         carried=runner.carried))
            if self.inline and following is not None:
                self.queue_attempted(process, following)
                following.attempted = True
        self.pump(process, 0)

    def chained_message(self, done: Rendered, following: Rendered, mark: str,
                        carried: bool = False) -> str:
        """One message, one transaction, between two chained migrations: the session reset
        after ``done``, its SUCCESS row, ``following``'s settings and its ATTEMPTED row,
        committed durably (one WAL flush, which also carries ``done``'s asynchronous
        commits), and ``done``'s marker.

        The ATTEMPTED row is written only while this run's control session holds the lock;
        the lock is probed once for the row and again for ``spawn_lost``, after which psql
        stops (``STOP_IF_LOCK_LOST``) before ``following`` starts. The SUCCESS row is
        written either way, as when it had a message of its own: a lost lock never
        takes back the outcome of a migration that ran under it. Should the lock go in the
        microseconds between the two probes, ``following`` is left ATTEMPTED without having
        started, which is what ATTEMPTED allows (it may have started: nothing runs it again
        unasked). Any error rolls back both rows: ``done`` then stays ATTEMPTED and
        ``following`` never starts.
        """
        lost = self.setup.lock_gone
        statements = [*self.setup.after_reset(carried),
                      *self.migration_settings(following), DURABLE_COMMIT,
                      *self.tracking.history_statements([done.record("SUCCESS",
                                                                     since_attempt=True)]),
                      self.tracking.insert_where(following.record("ATTEMPTED"), f"NOT {lost}"),
                      f"SELECT now() AS spawn_t0, {mark} AS spawn_mark, {lost} AS spawn_lost, "
                      f"{self.setup.lock_runner()} AS spawn_runner_lock, {RESET_CHECKS} FROM "
                      "(SELECT pg_advisory_unlock_all() AS spawn_unlock OFFSET 0) u"]
        return " \\;\n".join(statements)

    def migration_settings(self, current: Rendered) -> list[str]:
        """What a shared migration starts with: its name in ``pg_stat_activity`` and, when
        the runner also writes the history, ``synchronous_commit`` off for the session
        (``RESET ALL`` after the migration undoes it; a migration that sets it keeps its own).

        The migration's commits then need no WAL flush of their own: the next ATTEMPTED row
        (or the run's closing barrier) is committed durably in the same cluster, and WAL is
        one ordered stream, so that flush carries them, and a crash before it leaves the
        migration ATTEMPTED.
        """
        settings = [f"SET application_name = {escape_literal(application_name(current.name))}"]
        if self.inline:
            settings.append(MIGRATION_COMMIT)
        return settings

    def queue_attempted(self, process: PsqlProcess, rendered: Rendered) -> None:
        """The ATTEMPTED row in a message of its own, committed durably before the migration
        starts (its effects may write no WAL), and only while the lock is still held.

        The message also starts the migration's settings (``migration_settings``), which
        saves a round trip: the session-level ``SET synchronous_commit = off`` comes before
        the ``SET LOCAL`` that gives this transaction, and so its commit, the session's own
        setting (read when the session started), whatever the migration before it set. This
        one flush per migration also makes the previous migration's asynchronous commits
        durable."""
        message = self.runner_message(
            [rendered.record("ATTEMPTED")], marker_literal(process.nonce, f"a{rendered.position}"),
            reset=False)
        process.statement_marker(" \\;\n".join([*self.migration_settings(rendered), message]))

    def runner_message(self, records: Sequence[Record], mark: str, *, reset: bool,
                       extra: str = "", carried: bool = False) -> str:
        """One message, one transaction: reset the session (after a migration), write
        ``records``, and return the marker (and the time, for the next execution_time).

        Outcome rows may commit asynchronously (the next ATTEMPTED row's synchronous
        commit flushes them); a message with an ATTEMPTED row commits with the session's
        original ``synchronous_commit`` and also checks the lock, and fails, writing
        nothing, when it is gone. ``carried``: the session connected with the setup's
        options (``SessionSetup.after_reset``).
        """
        statements = self.setup.after_reset(carried) if reset else []
        attempted = any(r.status == "ATTEMPTED" for r in records)
        if records:
            statements.append(DURABLE_COMMIT if attempted else ASYNC_COMMIT)
            statements.extend(self.tracking.history_statements(records))
        final = f"now() AS spawn_t0, {mark} AS spawn_mark{extra}"
        if attempted:
            final += f", {self.setup.lock_check} AS spawn_lock"
        if reset:
            statements.append(f"SELECT {final}, {self.setup.lock_runner()} AS spawn_runner_lock, "
                              f"{RESET_CHECKS} FROM (SELECT pg_advisory_unlock_all() "
                              "AS spawn_unlock OFFSET 0) u")
        else:
            statements.append(f"SELECT {final}")
        return " \\;\n".join(statements)

    def ensure_runner(self) -> _Runner:
        self.fail_if_ended_with_queue()
        if self.runner is None or self.runner.process.exit is not None:
            early, self.early_runner = self.early_runner, None
            self.runner = _Runner(self, early)
            self.inline = self.runner.dbname == self.tracking.session.database
        return self.runner

    def fail_if_ended_with_queue(self) -> None:
        """A runner session that ended with migrations queued stopped at one of them: that
        is the run's outcome, so it is never replaced by a new session; only a session that
        ended with nothing queued may be."""
        runner = self.runner
        if runner is not None and runner.process.exit is not None:
            self.handle_markers(runner)
            if runner.pending:
                self.fail(runner)

    def close_runner(self) -> None:
        if self.runner is None:
            return
        runner, self.runner = self.runner, None
        runner.process.close_input()
        while runner.process.exit is None:
            self.pump(runner.process)
            self.handle_markers(runner)
        self.handle_markers(runner)
        if runner.pending:
            self.fail(runner)

    # -- waiting and markers ---------------------------------------------------------------

    def drain(self) -> None:
        runner = self.runner
        if runner is not None:
            self.wait(lambda: not runner.pending)

    def wait(self, done: Callable[[], bool]) -> None:
        runner = self.runner
        assert runner is not None
        while True:
            self.handle_markers(runner)
            # An ended session is the run's outcome whenever migrations were queued in it,
            # even when ``done`` holds already.
            if runner.process.exit is not None and (runner.pending or not done()):
                self.fail(runner)
            if done():
                return
            self.pump(runner.process)

    def handle_markers(self, runner: _Runner) -> None:
        for kind, position, measured in runner.process.markers():
            rendered = self.by_position.get(position)
            if rendered is None:
                continue
            rendered.seen.add(kind)
            if kind == "s":
                rendered.started = time.monotonic()
                self.reporter.started(rendered.name, position, self.total, self.elapsed())
            elif kind == "r":
                runner.confirm(position)
                seconds = measured if measured is not None else \
                    time.monotonic() - (rendered.started or time.monotonic())
                if not self.inline:
                    self.pending_records.append(
                        rendered.record("SUCCESS", execution_seconds=seconds))
                self.succeeded(rendered, seconds)

    def succeeded(self, rendered: Rendered, seconds: float) -> None:
        outcome = MigrationOutcome(rendered.name, seconds, rendered.size)
        self.outcomes.append(outcome)
        self.flush_notices()
        self.reporter.finished(outcome, rendered.position, self.total, self.elapsed())
        rendered.close()

    def take_pending(self) -> list[Record]:
        pending, self.pending_records = self.pending_records, []
        return pending

    # -- failures ------------------------------------------------------------------------

    def fail(self, runner: _Runner) -> None:
        """psql ended before confirming everything: record what happened, then raise.

        The first unconfirmed migration is the one psql was on. Its ``s`` marker
        means it started; its ``e`` marker means all its statements succeeded
        and psql failed in spawn's message after it: either the migration left
        a transaction open, or its outcome could not be recorded.
        """
        exit = runner.process.exit
        assert exit is not None
        self.handle_markers(runner)
        self.runner = None
        error = _error_text(exit.stderr) or f"psql exited with code {exit.code}"
        if LOCK_LOST_SETTING in error:
            raise self.lock_lost()
        position = runner.first_pending()
        rendered = self.by_position.get(position or 0)
        if rendered is None:
            raise DatabaseError(f"psql stopped unexpectedly: {error}")
        note = self.end_session(rendered, runner.pid, exit, error)
        if "e" in rendered.seen:
            if OPEN_TRANSACTION_SETTING in error:
                self.record_failure(rendered, OPEN_TRANSACTION_NOTE)
            raise not_recorded(rendered.name, self.tracking, error, rendered.activity)
        if "s" in rendered.seen:
            self.record_failure(rendered, note)
        if not self.started_in_this_run(rendered):
            raise DatabaseError(
                f"psql stopped before migration {rendered.name} started (nothing of it ran or "
                f"was recorded): {error}"
            )
        self.record_failure(rendered, f"psql stopped before the migration started: {error}")

    def end_session(self, rendered: Rendered, pid: int | None, exit: Exit, error: str) -> str:
        """Make sure the server session of ``rendered``'s psql, which ended with ``exit``
        saying ``error``, is gone before spawn writes the migration's outcome (a statement
        still running there would commit after a FAILURE row that says it failed); return
        the note for that row (``ended_note``). Raise ``MigrationStillRunning``, writing
        nothing, when the session cannot be confirmed gone.

        ``pid`` is the backend ``backend_marker`` printed; None when psql died before it
        printed it, and so before it sent any of the migration. A psql that exited 0 read
        all its input and closed its connection itself. After an error the server reported
        (exit code 3) the session ends by itself at once: spawn waits a moment before it
        ends it, so a role that may not end sessions still gets its FAILURE row.
        """
        if pid is None or exit.code == 0:
            return error
        grace = 0.0 if _ended_abnormally(exit) else ERROR_EXIT_GRACE
        try:
            if self.tracking.end_backend(pid, grace=grace):
                return ended_note(exit, error)
            why = (f"it was still there {BACKEND_PATIENCE:g} s after spawn asked PostgreSQL "
                   "to end it")
        except DatabaseError as exc:
            why = f"spawn could not end it: {exc.message}"
        raise self.still_running(rendered, pid, exit, why)

    def still_running(self, rendered: Rendered, pid: int, exit: Exit,
                      why: str) -> MigrationStillRunning:
        """The error that leaves ``rendered`` ATTEMPTED because its session may live on
        (the commands it names are the default namespace's; a tenant's, a source's or a
        repeatable's run is retried the way its command runs it)."""
        name, s = self.shown(rendered.name), self.tracking.schema
        if rendered.activity == "REVERT":
            what, then = (f"the down script of migration {name}",
                          f"then run `spawn migration revert {name} --retry`")
        elif self.namespace == USER_NAMESPACE:
            what, then = (f"migration {name}", f"then run `spawn migration apply {name} "
                          f"--retry`, or `spawn migration adopt {name}` if it completed")
        else:
            what, then = (f"migration {name} (namespace {self.namespace})",
                          "then run the same command again with `--retry`")
        return MigrationStillRunning(
            f"psql running {what} exited with code {exit.code}, and its server session "
            f"(pid {pid}) may still be running a statement that can commit, so spawn did not "
            f"record a FAILURE: the history shows it ATTEMPTED in {s}.migration_history. "
            f"Wait until `SELECT pid FROM pg_stat_activity WHERE pid = {pid}` returns no row "
            f"(or end it as a role allowed to: `SELECT pg_terminate_backend({pid})`), check "
            f"what it changed, {then}. Why the session is not known to be gone: {why}"
        )

    def lock_lost(self) -> LockLost:
        done = len(self.outcomes)
        return LockLost(
            f"the migration lock of database {self.tracking.session.database} was lost "
            f"(spawn's control session ended) after {done} of {self.total} migrations; spawn "
            "stopped before starting the next one. Another deployment may hold the lock now: "
            "check `spawn migration status`, then apply again"
        )

    def started_in_this_run(self, rendered: Rendered) -> bool:
        row = self.tracking.latest(self.namespace).get(rendered.name)
        return row is not None and row.history_id > self.first_history_id \
            and row.status == "ATTEMPTED"

    def record_failure(self, rendered: Rendered, note: str, said: str = "psql said") -> None:
        seconds = time.monotonic() - (rendered.started or time.monotonic())
        record = rendered.record("FAILURE", status_note=note, execution_seconds=seconds)
        try:
            self.tracking.write([*self.take_pending(), record], durable=True)
        except (ControlError, DatabaseError) as exc:
            raise NotRecorded(
                f"migration {rendered.name} failed, and spawn could not record the failure "
                f"({exc}); its history shows it ATTEMPTED. psql said:\n{note}"
            ) from None
        raise self.failure(rendered, note, said)

    def counted(self) -> tuple[int, int]:
        """How many migrations ran before the current one, of how many (a run over
        several sources counts the whole run: ``sources.SourceRun``)."""
        return len(self.outcomes), self.total

    def failure(self, rendered: Rendered, note: str, said: str = "psql said"
                ) -> MigrationFailed:
        """The error that ends the run once ``rendered``'s FAILURE row is written;
        ``said`` introduces ``note`` (a scripted migration's step is not psql)."""
        why = "interrupted" if self.interrupted else "failed"
        done, total = self.counted()
        if self.activity == "REVERT":
            return MigrationFailed(
                f"reverting migration {rendered.name} {why} ({done} of {total} reverted "
                f"before it); recorded as REVERT FAILURE in {self.tracking.schema}."
                f"migration_history. {said}:\n{note}\n"
                f"Fix its down.sql (re-pin it if you change its components), then run "
                f"`spawn migration revert {rendered.name} --retry`; apply refuses to run until "
                "then"
            )
        return MigrationFailed(
            f"migration {rendered.name} {why} ({done} of {total} applied before it); "
            f"recorded as FAILURE in {self.tracking.schema}.migration_history. "
            f"{said}:\n{note}\n"
            f"Fix the migration (re-pin it if you change its components), then run "
            f"`spawn migration apply {rendered.name} --retry`; if you completed it by hand, "
            f"run `spawn migration adopt {rendered.name}`"
        )

    # -- isolated migrations ---------------------------------------------------------------

    def run_isolated(self, rendered: Rendered) -> None:
        """A migration in a psql of its own: meta-commands, variables, odd endings, size."""
        self.tracking.write([*self.take_pending(), rendered.record("ATTEMPTED")], durable=True)
        rendered.attempted = True
        process = self.engine.script_session(application_name(rendered.name))
        process.on_output = self.reporter.output
        process.on_stderr = self.notice
        rendered.started = time.monotonic()
        self.reporter.started(rendered.name, rendered.position, self.total, self.elapsed())
        process.write(PSQL_PREAMBLE)
        process.write(self.setup.opening())
        process.write(backend_marker(process))
        hooks = self.hooks if self.hooks is not None and self.hooks.has_session_sql() else None
        if hooks is not None:
            process.write(hooks.session_sql("before_each_migration", _marker(process, "b")))
            process.echo_marker("m")
        process.write(rendered.secret_input)
        process.write_stream(rendered.spool)
        checked = rendered.shape.clean_end or rendered.shape.reason == INCOMPLETE
        if checked:
            # Ends a last statement that has no ``;`` as psql would at the end of input
            # (the scanner stops at a script's first meta-command, so it cannot tell);
            # after a complete one it is an empty query, which does nothing.
            if not rendered.ends_in_copy_data:
                process.write("\n;")
            process.write(ISOLATED_EPILOGUE)
            extra = STATEMENT_FAILED_CHECK
            if hooks is not None:
                # The migration's own checks before its after hooks, which see its session.
                process.statement_marker(
                    f"SELECT {marker_literal(process.nonce, 'd')} AS spawn_mark, "
                    f"{OPEN_TRANSACTION_CHECK}{STATEMENT_FAILED_CHECK}")
                # Spawn sends the hooks' text as UTF-8 with standard strings, whatever
                # client_encoding or string syntax the migration left in the session.
                process.write(SESSION_PIN)
                process.write(hooks.session_sql("after_each_migration", _marker(process, "k")))
                extra = ""
            process.statement_marker(self.runner_message(
                [], marker_literal(process.nonce, "r0"), reset=True, extra=extra))
        process.close_input()
        while process.exit is None:
            self.pump(process)
        markers = list(process.markers())
        note = self.end_session(rendered, backend_pid(markers), process.exit,
                                _isolated_error(process.exit))
        seen = [(kind, number) for kind, number, _ in markers]
        confirmed = any(kind == "r" for kind, _ in seen)
        if hooks is not None and not (process.exit.code == 0 and confirmed):
            self.hook_failed_in_session(rendered, hooks, seen, process.exit)
        if process.exit.code == 0 and (confirmed or not checked):
            seconds = time.monotonic() - rendered.started
            self.tracking.write([rendered.record("SUCCESS", execution_seconds=seconds)],
                                durable=True)
            self.succeeded(rendered, seconds)
            if hooks is not None and not checked:
                # Nothing can follow a script that ends unfinished in its session.
                hooks.run("after_each_migration", migration=self.shown(rendered.name),
                          commands=False)
            return
        self.record_failure(rendered, note)

    def hook_failed_in_session(self, rendered: Rendered, hooks: Hooks,
                               seen: list[tuple[str, int]], exit: Exit) -> None:
        """psql stopped in a migration's session that also runs its SQL hooks: when a
        hook's marker was the last one read, that hook failed. Before the migration: it
        did not run (FAILURE, naming the hook); after it: it succeeded (SUCCESS). Then
        raise the hook's failure. Otherwise the migration failed, as without hooks."""
        kinds = [kind for kind, _ in seen]
        last = seen[-1] if seen else None
        if last is None or last[0] not in ("b", "k"):
            return
        hook = hooks.session_hook("before_each_migration" if last[0] == "b"
                                  else "after_each_migration", last[1])
        error = _error_text(exit.stderr) or f"psql exited with code {exit.code}"
        failure = hooks.failed_in_session(hook, error, self.shown(rendered.name))
        if last[0] == "b" and "m" not in kinds:
            seconds = time.monotonic() - (rendered.started or time.monotonic())
            note = f"not run: {hook.label} failed before it: {error}"
            self.tracking.write([rendered.record("FAILURE", status_note=note,
                                                 execution_seconds=seconds)], durable=True)
            raise failure
        if last[0] == "k" and "d" in kinds:
            seconds = time.monotonic() - (rendered.started or time.monotonic())
            self.tracking.write([rendered.record("SUCCESS", execution_seconds=seconds)],
                                durable=True)
            self.succeeded(rendered, seconds)
            raise failure


def _marker(process: PsqlProcess, kind: str) -> Callable[[int], str]:
    return lambda index: f"\\echo {marker_literal(process.nonce, f'{kind}{index}')}\n"


def _ended_abnormally(exit: Exit) -> bool:
    """psql ended neither at the end of its input (0) nor at an error the server reported
    (3, ``ON_ERROR_STOP``): killed, crashed, or its connection lost (a wrapper passes the
    code of the psql it runs on, or its own when it dies)."""
    return exit.code not in (0, 3)


def ended_note(exit: Exit, error: str) -> str:
    """A FAILURE row's note: ``error``, and, when psql ended abnormally (its session ended
    since: ``MigrationRun.end_session``), what that means for the migration's statements."""
    return f"{error}\n{ENDED_NOTE}" if _ended_abnormally(exit) else error


def _isolated_error(exit: Exit) -> str:
    """What went wrong in a migration's own psql, in the words that explain it."""
    error = _error_text(exit.stderr) or f"psql exited with code {exit.code}"
    if OPEN_TRANSACTION_SETTING in error:
        return OPEN_TRANSACTION_NOTE
    if STATEMENT_FAILED_SETTING in error:
        earlier = exit.stderr[: exit.stderr.rfind(STATEMENT_FAILED_SETTING)]
        earlier = earlier[: earlier.rfind("ERROR:")] if "ERROR:" in earlier else earlier
        return f"{_error_text(earlier)}\n{STATEMENT_FAILED_NOTE}"
    return error


def _error_text(stderr: str) -> str:
    """psql's last error and what follows it (DETAIL, HINT, LINE...), else its last lines;
    secret values masked (psql's LINE shows the statement with variables substituted)."""
    from spawn_db.secret.values import mask

    lines = mask(stderr).rstrip().splitlines()
    for index in range(len(lines) - 1, -1, -1):
        line = lines[index]
        if any(word in line for word in ("ERROR:", "FATAL:", "error:", "PANIC:")):
            return "\n".join(lines[index:])
    return "\n".join(lines[-10:])


def not_recorded(name: str, tracking: Tracking, detail: str,
                 activity: Activity = "APPLY") -> NotRecorded:
    s = tracking.schema
    if activity == "REVERT":
        return NotRecorded(
            f"the down script of migration {name} ran successfully, but spawn could not "
            f"record it ({detail}). Its history shows the revert ATTEMPTED, so apply refuses "
            f"to run. To resolve: 1. check that the migration's changes are gone; 2. make the "
            f"down script safe to run again if needed and run `spawn migration revert {name} "
            f"--retry`; 3. check that the database accepts writes to {s}.migration_history "
            "(disk space, permissions, read-only mode)"
        )
    return NotRecorded(
        f"migration {name} ran successfully, but spawn could not record it ({detail}). "
        f"Its history still shows it ATTEMPTED. To resolve: 1. check that the migration's "
        f"changes are in the database; 2. run `spawn migration adopt {name}` to record it as "
        f"applied (it will not run again); 3. check that the database accepts writes to "
        f"{s}.migration_history (disk space, permissions, read-only mode) before the next apply"
    )
