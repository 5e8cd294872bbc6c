"""The ``_spawn`` tracking schema (SPEC §6): internal migrations, the lock, history rows.

The tables, namespaces, checksum and lock key are the Rust tool's, so either
tool can take over a database the other deployed. Every statement here is
built with ``spawn_db.escape``: names, notes and hashes are quoted literals,
the schema a quoted identifier.

A migration's state is its latest history row (highest
``migration_history_id``). Spawn writes an ``ATTEMPTED`` row before a
migration runs and an outcome row after; the Rust tool writes only the
outcome row, and both read the latest row, so the two agree.

Durability of the bookkeeping: an ``ATTEMPTED`` row is committed durably
(the session's own ``synchronous_commit``) before its migration starts,
because a migration's effects may write no WAL. Outcome rows are committed
with ``synchronous_commit`` off, and so, in a shared runner that writes the
history itself, are the migration's own commits (the runner's part). That
gives up nothing: WAL is one ordered stream per cluster, so the next durable
commit (the next ``ATTEMPTED`` row, or the ``barrier`` before spawn reports
success) flushes them too, and a crash before it leaves the migration
``ATTEMPTED``: one WAL flush per migration. Rows around a migration that runs
on its own psql (which may ``\\connect`` anywhere), and every row written
through the control session while the history is in another database, are
committed durably.
"""

from __future__ import annotations

import getpass
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import xxhash

from spawn_db.errors import LockUnavailable
from spawn_db.escape import Identifier, ascii_bytea, ascii_literal, escape_literal

if TYPE_CHECKING:
    from spawn_db.db.psql import ControlSession

LOCK_NAME = b"SPAWN_MIGRATION_LOCK"
LOCK_SEED = 1234
LOCK_KEY = -6823468568242361246
USER_NAMESPACE = "default"
SPAWN_NAMESPACE = "spawn"
MAX_NAME_LENGTH = 256
ASYNC_COMMIT = "SET LOCAL synchronous_commit = off"
# How long spawn waits for a migration's session to end once it asked PostgreSQL to end it.
BACKEND_PATIENCE = 10.0
# Named in the error a runner statement raises when the control session lost the lock.
LOCK_LOST_SETTING = "spawn.the migration lock was lost"
# In a runner session: the time since its last ATTEMPTED row (psql variable spawn_t0).
ELAPSED = "clock_timestamp() - :'spawn_t0'::timestamptz"

Activity = Literal["APPLY", "ADOPT", "REVERT"]
Status = Literal["SUCCESS", "ATTEMPTED", "FAILURE"]


def lock_key() -> int:
    """xxHash64 of ``SPAWN_MIGRATION_LOCK`` with seed 1234, as PostgreSQL's signed bigint."""
    value = int(xxhash.xxh64_intdigest(LOCK_NAME, seed=LOCK_SEED))
    return value - (1 << 64) if value >= 1 << 63 else value


def runner_key(database: str, schema: str) -> tuple[int, int]:
    """The two-int advisory key every runner session holds (shared) while it can commit.

    Derived from where the history lives, so that runners of other projects on the
    same server are not mistaken for ours. A runner holds it in its own database,
    which may not be ``spawn_database``: ``pg_locks`` shows every database's locks.
    """
    value = int(xxhash.xxh64_intdigest(f"{database}\0{schema}".encode(), seed=LOCK_SEED))
    return (value >> 32) & 0x7FFFFFFF, value & 0x7FFFFFFF


def new_run_key() -> tuple[int, int]:
    """A random two-int advisory key that one control session holds, exclusively, for as
    long as it holds the migration lock (see ``run_key_check``)."""
    return secrets.randbits(31), secrets.randbits(31)


def run_key_check(key: tuple[int, int]) -> str:
    """An SQL expression that fails, naming ``LOCK_LOST_SETTING``, unless the control
    session that took ``key`` with the migration lock still holds it: it gates each
    migration's start.

    The control session takes the migration lock and then this run's random key, and
    lets go of both only together (``unlock``, or when it ends), so "someone holds the run
    key" means "our control session still holds the migration lock". A shared try-lock on
    it fails exactly while that exclusive holder exists; when it succeeds, the lock is
    gone and the expression raises. It costs one lock-table probe, where reading
    ``pg_locks`` copied the whole lock table of the server, about a third of the server's
    bookkeeping work per migration. Advisory locks belong to a database: the check must
    run in ``spawn_database``, as the runner that writes the history does.
    """
    lost = escape_literal(LOCK_LOST_SETTING)
    return f"CASE WHEN {run_key_free(key)} THEN current_setting({lost}) END"


def run_key_free(key: tuple[int, int]) -> str:
    """An SQL expression, true once the control session holding ``key`` has let go of it
    (see ``run_key_check``)."""
    k1, k2 = key
    return f"pg_catalog.pg_try_advisory_xact_lock_shared({int(k1)}, {int(k2)})"


def current_user() -> str:
    """``created_by``: the OS user running spawn."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


# -- internal migrations -----------------------------------------------------------------


def _base_migration_table(s: str) -> list[str]:
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"""CREATE TABLE IF NOT EXISTS {s}.migration (
    migration_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name VARCHAR(256),
    namespace TEXT NOT NULL DEFAULT 'default',
    CONSTRAINT name_namespace_uq UNIQUE (name, namespace))""",
        f"CREATE TABLE IF NOT EXISTS {s}.activity(activity_id TEXT PRIMARY KEY "
        "CHECK (UPPER(activity_id) = activity_id))",
        f"CREATE TABLE IF NOT EXISTS {s}.status(status_id TEXT PRIMARY KEY "
        "CHECK (UPPER(status_id) = status_id))",
        f"""CREATE TABLE IF NOT EXISTS {s}.migration_history (
    migration_history_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    migration_id_migration BIGINT NOT NULL REFERENCES {s}.migration (migration_id),
    activity_id_activity TEXT NOT NULL REFERENCES {s}.activity (activity_id),
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    description TEXT NOT NULL,
    status_note TEXT NOT NULL,
    status_id_status TEXT NOT NULL REFERENCES {s}.status (status_id),
    checksum BYTEA NOT NULL,
    pin_hash TEXT,
    execution_time interval NOT NULL)""",
        f"INSERT INTO {s}.activity VALUES ('APPLY'), ('ADOPT'), ('REVERT') "
        "ON CONFLICT DO NOTHING",
        f"INSERT INTO {s}.status VALUES ('SUCCESS'), ('ATTEMPTED'), ('FAILURE') "
        "ON CONFLICT DO NOTHING",
    ]


def _history_lookup_index(s: str) -> list[str]:
    """Finding a migration's latest row without scanning the whole history."""
    return [
        "CREATE INDEX IF NOT EXISTS migration_history_migration_idx "
        f"ON {s}.migration_history (migration_id_migration, migration_history_id)",
    ]


def _script_run(s: str) -> list[str]:
    """``spawn script run --record``'s log: one row per recorded ad-hoc script. A table of
    its own, so the tables the Rust tool reads (``migration``, ``migration_history``)
    keep exactly the rows it expects."""
    return [
        f"""CREATE TABLE IF NOT EXISTS {s}.script_run (
    script_run_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name TEXT NOT NULL,
    checksum BYTEA NOT NULL,
    environment TEXT NOT NULL,
    exit_code INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    execution_time INTERVAL NOT NULL)""",
    ]


@dataclass(frozen=True)
class InternalMigration:
    name: str
    statements: Callable[[str], list[str]]

    def sql(self, schema: str) -> str:
        """The migration's text: its statements, each ended by ``;`` and a newline."""
        return "".join(f"{stmt};\n" for stmt in self.statements(str(Identifier.of(schema))))


INTERNAL_MIGRATIONS = (
    InternalMigration("001-base-migration-table", _base_migration_table),
    InternalMigration("002-migration-history-lookup-index", _history_lookup_index),
    InternalMigration("003-script-run", _script_run),
)


# -- history rows --------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryRow:
    """The latest history row of one migration, as read back from the database."""

    name: str
    namespace: str
    history_id: int
    activity: str
    status: str
    checksum: str
    pin_hash: str | None
    created_at: str
    created_by: str
    description: str
    status_note: str
    execution_seconds: float


@dataclass(frozen=True)
class Record:
    """One history row to write. ``since_attempt`` measures the execution time on the
    server, from the ``spawn_t0`` psql variable its ATTEMPTED row set, to now."""

    name: str
    activity: Activity
    status: Status
    checksum: bytes = b""
    pin_hash: str | None = None
    description: str = ""
    status_note: str = ""
    execution_seconds: float = 0.0
    since_attempt: bool = False
    namespace: str = USER_NAMESPACE
    created_by: str = ""
    migration_id: int | None = None


@dataclass(frozen=True)
class LockHolder:
    pid: int
    application_name: str | None
    client: str | None
    user: str | None
    backend_start: str | None
    state: str | None

    def describe(self) -> str:
        parts = [f"pid {self.pid}"]
        if self.application_name:
            parts.append(f"application {self.application_name!r}")
        if self.user:
            parts.append(f"user {self.user}")
        parts.append(f"from {self.client}" if self.client else "over a local socket")
        if self.backend_start:
            parts.append(f"connected since {self.backend_start}")
        return ", ".join(parts)


class Tracking:
    """Reads and writes the tracking schema through one control session."""

    def __init__(self, session: ControlSession, schema: str) -> None:
        self.session = session
        self.schema = schema
        self.s = str(Identifier.of(schema))
        self.created_by = current_user()
        self.locked = False
        self.run_key = new_run_key()

    # -- schema --------------------------------------------------------------------------

    def exists(self) -> bool:
        return self.session.query(
            "SELECT count(*) = 2 FROM pg_catalog.pg_tables WHERE schemaname = "
            f"{escape_literal(self.schema)} AND tablename IN ('migration', 'migration_history')",
            what="looking for the tracking tables",
        ) == "t"

    def ensure(self) -> list[str]:
        """Apply the internal migrations this database lacks; return their names.

        Each one runs as one implicit transaction together with its history row,
        so it is applied and recorded, or neither. Call it holding the lock.
        """
        rows = self.latest(SPAWN_NAMESPACE) if self.exists() else {}
        done = {name for name, row in rows.items() if row.status == "SUCCESS"}
        applied = []
        for internal in INTERNAL_MIGRATIONS:
            if internal.name in done:
                continue
            started = time.monotonic()
            sql = internal.sql(self.schema)
            statements = [*internal.statements(self.s)]
            record = Record(
                internal.name, "APPLY", "SUCCESS", checksum=checksum(sql.encode()),
                namespace=SPAWN_NAMESPACE, execution_seconds=time.monotonic() - started,
            )
            statements.append(self.insert_sql([record], durable=True))
            self.session.query(" \\;\n".join(statements),
                               what=f"internal migration {internal.name} in schema {self.schema}")
            applied.append(internal.name)
        return applied

    # -- reads ---------------------------------------------------------------------------

    def latest(self, namespace: str = USER_NAMESPACE) -> dict[str, HistoryRow]:
        """The latest history row of every migration of ``namespace`` that has one."""
        rows = self.latest_rows(f"m.namespace = {escape_literal(namespace)}")
        return {row.name: row for row in rows}

    def latest_rows(self, condition: str) -> list[HistoryRow]:
        """The latest history row of every migration whose ``migration`` row (``m``) meets
        ``condition`` (SQL built by the caller with ``spawn_db.escape``), in one query:
        the tenant phase reads every namespace it needs at once (``fleet/tenants.py``)."""
        s = self.s
        text = self.session.query(
            "SELECT coalesce(json_agg(r ORDER BY r.name), '[]') FROM ("
            "SELECT DISTINCT ON (h.migration_id_migration) m.name, m.namespace, "
            "h.migration_history_id AS history_id, h.activity_id_activity AS activity, "
            "h.status_id_status AS status, encode(h.checksum, 'hex') AS checksum, h.pin_hash, "
            "h.created_at, h.created_by, h.description, h.status_note, "
            "extract(epoch FROM h.execution_time)::float8 AS execution_seconds "
            f"FROM {s}.migration_history h JOIN {s}.migration m "
            "ON m.migration_id = h.migration_id_migration "
            f"WHERE {condition} "
            "ORDER BY h.migration_id_migration, h.migration_history_id DESC) r",
            what="reading the migration history",
        )
        return [HistoryRow(**row) for row in json.loads(text or "[]")]

    def last_history_id(self) -> int:
        return int(self.session.query(
            f"SELECT coalesce(max(migration_history_id), 0) FROM {self.s}.migration_history",
            what="reading the migration history",
        ))

    # -- writes --------------------------------------------------------------------------

    def insert_sql(self, records: Sequence[Record], *, durable: bool) -> str:
        """One psql request writing ``records``: one transaction, whole or not at all.

        The statements are joined with psql's ``\\;``, which sends them as one
        message: PostgreSQL runs such a message as one implicit transaction.
        """
        statements = [] if durable else [ASYNC_COMMIT]
        return " \\;\n".join([*statements, *self.history_statements(records)])

    def history_statements(self, records: Sequence[Record]) -> list[str]:
        """INSERTs for ``records``: rows of migrations whose id is known (see ``register``)
        share one plain ``VALUES`` list; the others also insert their ``migration`` row."""
        known = [r for r in records if r.migration_id is not None]
        statements = [self._insert_new(r) for r in records if r.migration_id is None]
        if known:
            rows = ", ".join(f"({r.migration_id}, {self._values(r)})" for r in known)
            statements.append(f"{self._insert_into()}VALUES {rows}")
        return statements

    def insert_where(self, record: Record, condition: str) -> str:
        """An INSERT of ``record`` (its migration id known) that writes it only when the SQL
        ``condition`` holds, evaluated once, in the same statement."""
        assert record.migration_id is not None
        return (f"{self._insert_into()}SELECT {record.migration_id}, {self._values(record)} "
                f"WHERE {condition}")

    def _insert_into(self) -> str:
        """``created_at`` is the wall clock, not ``now()``: an outcome row and the next
        ATTEMPTED row share a transaction but mark different moments."""
        return (
            f"INSERT INTO {self.s}.migration_history (migration_id_migration, "
            "activity_id_activity, created_by, description, status_note, status_id_status, "
            "checksum, pin_hash, execution_time, created_at) "
        )

    def _values(self, rec: Record) -> str:
        """The row's values in pure ASCII (``ascii_literal``): a shared runner writes them
        in the message that resets the session after a migration, which PostgreSQL reads
        with the client encoding and string syntax the migration left."""
        if rec.since_attempt:
            elapsed = ELAPSED
        else:
            elapsed = f"{escape_literal(f'{rec.execution_seconds:.6f} seconds')}::interval"
        return ", ".join((
            ascii_literal(rec.activity), ascii_literal(rec.created_by or self.created_by),
            ascii_literal(rec.description), ascii_literal(rec.status_note),
            ascii_literal(rec.status), ascii_bytea(rec.checksum),
            "NULL" if rec.pin_hash is None else ascii_literal(rec.pin_hash), elapsed,
            "clock_timestamp()",
        ))

    def _insert_new(self, rec: Record) -> str:
        s = self.s
        name, ns = ascii_literal(rec.name), ascii_literal(rec.namespace)
        return (
            f"WITH new AS (INSERT INTO {s}.migration (name, namespace) VALUES ({name}, {ns}) "
            "ON CONFLICT (name, namespace) DO NOTHING RETURNING migration_id) "
            f"{self._insert_into()}SELECT coalesce((SELECT migration_id FROM new), "
            f"(SELECT migration_id FROM {s}.migration WHERE name = {name} AND namespace = {ns})), "
            f"{self._values(rec)}"
        )

    def register(self, names: Sequence[str], *,
                 namespace: str = USER_NAMESPACE) -> dict[str, int]:
        """Make sure every migration in ``names`` has its ``migration`` row (in
        ``namespace``); return the ids.

        Done once per run so that each history row is a plain INSERT; rows
        left without history by a run that stops early are removed by
        ``forget_unused``.
        """
        if not names:
            return {}
        s = self.s
        array = "ARRAY[" + ", ".join(escape_literal(n) for n in names) + "]::text[]"
        ns = escape_literal(namespace)
        text = self.session.query(
            f"WITH new AS (INSERT INTO {s}.migration (name, namespace) SELECT n, {ns} "
            f"FROM unnest({array}) n ON CONFLICT (name, namespace) DO NOTHING "
            "RETURNING name, migration_id) "
            "SELECT coalesce(json_object_agg(name, migration_id), '{}') FROM ("
            "SELECT name, migration_id FROM new UNION ALL SELECT name, migration_id "
            f"FROM {s}.migration WHERE namespace = {ns} AND name = ANY({array})) ids",
            what=f"registering migrations in {self.schema}.migration",
        )
        ids: dict[str, int] = json.loads(text)
        return ids

    def forget_unused(self, ids: Sequence[int]) -> None:
        """Remove ``migration`` rows this run registered but never wrote history for."""
        if not ids:
            return
        s = self.s
        self.session.query(
            f"DELETE FROM {s}.migration m WHERE m.migration_id = ANY(ARRAY["
            + ", ".join(str(int(i)) for i in ids)
            + f"]::bigint[]) AND NOT EXISTS (SELECT 1 FROM {s}.migration_history h "
            "WHERE h.migration_id_migration = m.migration_id)",
            what=f"cleaning up {self.schema}.migration",
        )

    def write(self, records: Sequence[Record], *, durable: bool = True) -> None:
        if records:
            names = ", ".join(r.name for r in records)
            self.session.query(self.insert_sql(records, durable=durable),
                               what=f"recording {names} in {self.schema}.migration_history")

    def barrier(self) -> None:
        """Make every row written so far durable with one synchronous commit."""
        self.session.query("SELECT txid_current()", what="flushing the migration history")

    # -- lock ----------------------------------------------------------------------------

    def try_lock(self) -> bool:
        return self.session.query(
            f"SELECT pg_try_advisory_lock({lock_key()})", what="taking the migration lock"
        ) == "t"

    def lock(
        self,
        timeout: float,
        on_wait: Callable[[list[LockHolder], float], None] | None = None,
        *,
        poll: float = 0.2,
        report_every: float = 5.0,
    ) -> None:
        """Take the migration lock, polling; never blocks inside a transaction.

        A blocking ``pg_advisory_lock`` would keep a transaction open while it
        waits, and a migration running ``CREATE INDEX CONCURRENTLY`` waits for
        every open transaction: the waiter and the deployer would deadlock.
        """
        started = time.monotonic()
        next_report = started
        while not self.try_lock():
            waited = time.monotonic() - started
            if waited >= timeout:
                holders = self.lock_holders()
                who = "; ".join(h.describe() for h in holders) or "a session that just ended"
                raise LockUnavailable(
                    f"the migration lock of database {self.session.database} is still held "
                    f"after {timeout:g} s by {who}; wait for that deployment to finish "
                    "(or stop it), then run the command again, or pass a longer --lock-timeout"
                )
            if on_wait is not None and time.monotonic() >= next_report:
                on_wait(self.lock_holders(), waited)
                next_report += report_every
            time.sleep(min(poll, max(timeout - waited, 0.01)))
        self.locked = True
        k1, k2 = self.run_key
        self.session.query(f"SELECT pg_advisory_lock({k1}, {k2})",
                           what="taking the migration lock")

    def unlock(self) -> None:
        if self.locked and self.session.process.exit is None:
            k1, k2 = self.run_key
            self.session.query(f"SELECT pg_advisory_unlock({lock_key()}), "
                               f"pg_advisory_unlock({k1}, {k2})",
                               what="releasing the migration lock")
        self.locked = False

    def runner_holders(self) -> list[LockHolder]:
        """Backends holding the runner key: while spawn holds the migration lock, any of
        them is a migration still running (ours, or one a stopped spawn left behind)."""
        k1, k2 = runner_key(self.session.database, self.schema)
        return self._holders(f"l.objsubid = 2 AND l.classid = {k1} AND l.objid = {k2}")

    def end_runners(self, *, patience: float = 5.0) -> None:
        """Make sure no runner backend outlives the lock: cancel, then terminate, what is
        left of this run's runners (psql has ended; a backend may still be finishing)."""
        deadline = time.monotonic() + patience
        stage = "wait"
        while holders := self.runner_holders():
            if time.monotonic() < deadline:
                time.sleep(0.02)
                continue
            if stage == "terminated":
                pids = ", ".join(str(h.pid) for h in holders)
                raise LockUnavailable(
                    f"spawn could not end its own migration sessions (pid {pids}); the "
                    "migration lock stays with them until they end"
                )
            function = "pg_cancel_backend" if stage == "wait" else "pg_terminate_backend"
            for holder in holders:
                self.session.query(f"SELECT {function}({holder.pid})",
                                   what="ending a migration session")
            stage = "cancelled" if stage == "wait" else "terminated"
            deadline = time.monotonic() + patience

    def end_backend(self, pid: int, *, grace: float = 0.0, patience: float = BACKEND_PATIENCE,
                    poll: float = 0.01) -> bool:
        """Make sure backend ``pid`` (a migration's session whose psql has ended) is gone:
        wait up to ``grace`` seconds for it to leave ``pg_stat_activity`` by itself, then
        terminate it and wait up to ``patience`` seconds more. True once it has left, False
        if it is still there; ControlError when PostgreSQL refuses to end it (the control
        session's role may not signal it).

        A backend outlives its psql until it next checks its client (within
        ``client_connection_check_interval``; never on PostgreSQL 13) or its statement
        ends, and a statement that ends commits: a migration's outcome may be written only
        once its session is gone. A backend aborts its transaction before it leaves
        ``pg_stat_activity``. PostgreSQL 13's ``pg_terminate_backend`` has no timeout, so
        this polls.
        """
        where = f"FROM pg_catalog.pg_stat_activity WHERE pid = {int(pid)}"
        what = f"ending migration session {int(pid)}"
        started = time.monotonic()
        terminated = False
        while True:
            waited = time.monotonic() - started
            if not terminated and waited >= grace:
                count = f"count(pg_catalog.pg_terminate_backend(pid)) {where}"
                terminated = True
            else:
                count = f"count(*) {where}"
            if self.session.query(f"SELECT {count}", what=what) == "0":
                return True
            if waited >= grace + patience:
                return False
            time.sleep(poll)

    def lock_holders(self) -> list[LockHolder]:
        key = lock_key() & 0xFFFFFFFFFFFFFFFF
        return self._holders(f"l.objsubid = 1 AND l.classid = {key >> 32} "
                             f"AND l.objid = {key & 0xFFFFFFFF} AND l.database = (SELECT oid "
                             "FROM pg_catalog.pg_database WHERE datname = current_database())")

    def _holders(self, condition: str) -> list[LockHolder]:
        text = self.session.query(
            "SELECT coalesce(json_agg(json_build_object('pid', a.pid, "
            "'application_name', a.application_name, 'client', host(a.client_addr), "
            "'user', a.usename, 'backend_start', "
            "to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), 'state', a.state) "
            "ORDER BY a.pid), '[]') "
            "FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid "
            f"WHERE l.locktype = 'advisory' AND l.granted AND {condition}",
            what="looking up who holds the migration lock",
        )
        return [LockHolder(**row) for row in json.loads(text or "[]")]


def checksum(data: bytes) -> bytes:
    """xxHash3-128 of the rendered migration, as the 16 bytes of its canonical (big-endian)
    form: the same digits as the pin store's hex hashes."""
    return bytes(xxhash.xxh3_128_digest(data))
