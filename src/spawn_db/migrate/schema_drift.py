"""Schema drift: does the target's schema still match what its applied migrations say?

``migrate.drift`` compares *files* with the history (a migration edited after it
was applied); this module compares the *database* with the migrations: someone
ran an ``ALTER TABLE`` by hand, a hotfix replaced a function, an index was
dropped in an incident. The migrations the history says are applied (or
adopted) are rendered from their pins, their checksums checked against the
history (otherwise the files no longer say what was applied, and the
comparison would be meaningless), and run in order on a scratch database
created on the target's server. Then one catalog query per side
(``db.catalog``) reads both schemas and they are compared object by object.
It reports; it fixes nothing.

The scratch database is named by a hash of what went into it (the target
database's name, the environment, each applied migration's name, checksum and
pin) and kept: the next run with the same applied migrations reads it instead
of building it again, which is most of a run's time (and dropping a database
of hundreds of tables costs a checkpoint and thousands of file deletions).
One is kept per target database: building a new one drops the one before. A
build that fails is dropped at once.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn

from spawn_db.config import Config
from spawn_db.db.catalog import CatalogObject, catalog_query, parse_catalog
from spawn_db.db.engine import Engine, engine_for
from spawn_db.db.psql import ControlSession, marker_literal
from spawn_db.db.target import PSQL_PREAMBLE, SESSION_PIN
from spawn_db.errors import ControlError, DriftCheckFailed, NotPinned, SpawnError
from spawn_db.escape import escape_identifier, escape_literal
from spawn_db.migrate.plan import is_done, state_of
from spawn_db.migrate.rendered import Rendered, render_migration
from spawn_db.migrate.tracking import HistoryRow
from spawn_db.project import Project

SCRATCH_PREFIX = "spawn_drift_"
# Bumped when what a scratch database holds changes for the same inputs (how migrations
# are run there), so one kept by an older spawn is not read.
SCRATCH_FORMAT = "1"
# The first half of the two-int advisory key of a scratch build ("spwD"); the fresh test
# templates use "spwT", apply's lock the one-bigint form.
SCRATCH_LOCK_CLASS = 0x73707744
APPLICATION = "spawn drift"
FAST_COMMITS = "SET synchronous_commit = off;\n"
# Raises the error of a migration that failed on the scratch database, given what psql said.
Failed = Callable[[Rendered, str], NoReturn]


@dataclass(frozen=True)
class Difference:
    """One object that differs: ``+`` only in the database, ``-`` only in the migrations,
    ``~`` in both with different ``attributes`` (name -> (database, migrations))."""

    change: str
    kind: str
    name: str
    attributes: dict[str, tuple[Any, Any]]

    def line(self) -> str:
        """``+ table public.t``, ``~ function public.f(integer): definition``."""
        text = f"{self.change} {self.kind} {self.name}"
        return f"{text}: {', '.join(self.attributes)}" if self.attributes else text


@dataclass(frozen=True)
class DriftReport:
    """The comparison of the target's schema with the one its migrations build."""

    database: str
    migrations: tuple[str, ...]
    differences: tuple[Difference, ...]
    seconds: float

    @property
    def drifted(self) -> bool:
        return bool(self.differences)


# -- comparing -------------------------------------------------------------------------------


def compare(live: dict[str, CatalogObject], built: dict[str, CatalogObject]
            ) -> list[Difference]:
    """The differences between the database (``live``) and the migrations (``built``).

    An object whose parent (its table) is itself added or removed is not listed
    again: ``+ table public.t`` says it all.
    """
    gone = {key for key in built if key not in live}
    new = {key for key in live if key not in built}
    found: list[Difference] = []
    for key in sorted(live.keys() | built.keys(), key=_order):
        item = live.get(key) or built[key]
        if item.parent in gone or item.parent in new:
            continue
        if key in new:
            found.append(Difference("+", item.kind, item.name, {}))
        elif key in gone:
            found.append(Difference("-", item.kind, item.name, {}))
        else:
            changed = _changed(live[key].attrs, built[key].attrs)
            if changed:
                found.append(Difference("~", item.kind, item.name, changed))
    return found


def _order(key: str) -> tuple[str, str]:
    kind, name = key.split(" ", 1)
    return name, kind


def _changed(live: dict[str, Any], built: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {name: (live.get(name), built.get(name))
            for name in sorted(live.keys() | built.keys())
            if live.get(name) != built.get(name)}


# -- the run -----------------------------------------------------------------------------------


def schema_drift(config: Config, *, pinned: bool = True, variables: Any = None) -> DriftReport:
    """Build the applied migrations on a scratch database and compare the target with it."""
    from spawn_db.migrate.apply import tracking_session
    from spawn_db.migrate.sources import Sources

    started = time.monotonic()
    target = config.target()
    sources = Sources(config)
    with tracking_session(config, target) as tracking:
        rows = sources.latest(tracking)
    applied = from_baseline(config, sorted(
        (row for row in rows.values() if is_done(state_of(row))),
        key=lambda row: row.history_id))
    scripts: list[Rendered] = []
    engine = engine_for(config, target)
    query = catalog_query((target.spawn_schema,))
    try:
        for row in applied:
            source, bare = sources.split(row.name)
            scripts.append(_render_checked(source.config, bare, row, pinned=pinned,
                                           variables=variables))
        control = engine.control_session(None)
        try:
            database = control.database
            scratch = scratch_name(database, config.environment, scripts)
            live_text, built = _build_and_read(engine, control, scripts, query, scratch)
            live = parse_catalog(live_text)
        finally:
            control.close()
    finally:
        for script in scripts:
            script.close()
    differences = tuple(compare(live, built))
    return DriftReport(database, tuple(row.name for row in applied), differences,
                       time.monotonic() - started)


def scratch_name(database: str, environment: str, scripts: list[Rendered]) -> str:
    """``spawn_drift_`` and 32 hex digits of the build's inputs: 44 bytes, below 63."""
    import xxhash

    digest = xxhash.xxh3_128()
    digest.update(f"spawn drift {SCRATCH_FORMAT}\0{database}\0{environment}\0".encode())
    for script in scripts:
        digest.update(f"{script.name}\0{script.checksum.hex()}\0{script.pin or ''}\0".encode())
    return f"{SCRATCH_PREFIX}{digest.hexdigest()}"


def scratch_comment(database: str) -> str:
    """The comment a complete scratch database carries: it marks it complete (a build cut
    short has none) and says whose it is, so the next build can drop it."""
    return (f"spawn migration drift: the schema of the migrations applied to {database}; "
            "kept to be read by the next run, safe to drop")


def from_baseline(config: Config, applied: list[HistoryRow]) -> list[HistoryRow]:
    """``applied`` as apply builds it on an empty database: from the newest applied baseline
    (``baseline = true``), which replaces every migration older than it, then the newer
    ones. Whether the database ran the baseline or adopted it, the scratch database is built
    from it, so drift also says whether a baseline still matches the migrations it replaced."""
    from spawn_db.migrate.settings import load_settings

    baselines = [row.name for row in applied if _own(row)
                 and (config.migrations_dir / row.name).is_dir()
                 and load_settings(config, row.name).baseline]
    if not baselines:
        return applied
    newest = max(baselines)
    first = [row for row in applied if row.name == newest]
    # A baseline replaces the main folder's older migrations; a source's are its own.
    return first + [row for row in applied if not _own(row) or row.name > newest]


def _own(row: HistoryRow) -> bool:
    """Whether ``row`` is the main folder's (a ``[[sources]]`` one's is ``audit:<m>``)."""
    from spawn_db.migrate.sources import SEPARATOR

    return SEPARATOR not in row.name


def _render_checked(config: Config, bare: str, row: HistoryRow, *, pinned: bool,
                    variables: Any) -> Rendered:
    """``row``'s migration (``bare`` in ``config``'s folder: a source's for ``audit:<m>``)
    rendered as apply would, its checksum matching the history's; named as ``row`` is."""
    folder = config.migrations_dir / bare
    if not (folder / "up.sql").is_file():
        raise DriftCheckFailed(
            f"migration {row.name} is applied but {Project(config).display(folder)} has no "
            "up.sql, so the schema it built cannot be rebuilt; restore the migration's folder"
        )
    try:
        rendered = render_migration(config, bare, pinned=pinned, variables=variables)
    except NotPinned:
        raise NotPinned(
            f"migration {row.name} is not pinned (no lock.toml), so it cannot be rendered "
            "from a pin; pass --no-pin to render it from the working tree"
        ) from None
    now = rendered.checksum.hex()
    if row.activity == "APPLY" and row.checksum and now != row.checksum:
        rendered.close()
        source = "its pin" if rendered.pin else "the working tree"
        raise DriftCheckFailed(
            f"migration {row.name} now renders (from {source}) to checksum {now}, but "
            f"{row.checksum} was applied: the files no longer say what was applied, so the "
            "schema cannot be rebuilt from them; restore its up.sql, components or pin (see "
            "`spawn migration status`), or pass the --variables it was applied with"
        )
    return dataclasses.replace(rendered, name=row.name)


def _build_and_read(engine: Engine, control: ControlSession, scripts: list[Rendered],
                    query: str, scratch: str) -> tuple[str, dict[str, CatalogObject]]:
    """The target's catalog text, and the schema ``scripts`` build, read from ``scratch``:
    kept from an earlier run with the same inputs, or built now (under an advisory lock,
    so two runs build it once). The target is read on ``control`` meanwhile: on a server
    with a core to spare the read costs no time."""
    if not _complete(control, scratch):
        with _scratch_lock(control, scratch):
            if not _complete(control, scratch):
                return _build(engine, control, scripts, query, scratch)
    return _read_both(engine, control, query, scratch)


def _complete(control: ControlSession, scratch: str) -> bool:
    found = control.query(
        "SELECT pg_catalog.shobj_description(oid, 'pg_database') FROM pg_catalog.pg_database "
        f"WHERE datname = {escape_literal(scratch)}", what="look for the scratch database")
    return found == scratch_comment(control.database)


@contextmanager
def _scratch_lock(control: ControlSession, scratch: str) -> Iterator[None]:
    """The advisory lock of ``scratch``'s build, held in ``control``'s session."""
    import xxhash

    key = (SCRATCH_LOCK_CLASS, xxhash.xxh32_intdigest(scratch.encode()) & 0x7FFFFFFF)
    with advisory_lock(control, key, "scratch build"):
        yield


@contextmanager
def advisory_lock(control: ControlSession, key: tuple[int, int], what: str) -> Iterator[None]:
    """Hold the session-level advisory lock ``key`` in ``control``'s session while the block
    runs (another process waits here); released unless the session died, which releases
    it anyway. Also the fresh test templates' build lock."""
    pair = f"{key[0]}, {key[1]}"
    control.query(f"SELECT pg_advisory_lock({pair})", what=f"wait for the {what} lock")
    try:
        yield
    finally:
        if control.process.exit is None:
            control.query(f"SELECT pg_advisory_unlock({pair})",
                          what=f"release the {what} lock")


def _read_both(engine: Engine, control: ControlSession, query: str,
               scratch: str) -> tuple[str, dict[str, CatalogObject]]:
    """Both catalogs, the target's on ``control`` while the scratch one is read."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1) as pool:
        live = pool.submit(control.query, query, what="read the target's schema")
        try:
            built = _read_scratch(engine, query, scratch)
        finally:
            live.exception()  # waited for, whatever happened: the session is ours again
        return live.result(), built


def _read_scratch(engine: Engine, query: str, scratch: str) -> dict[str, CatalogObject]:
    session = engine.control_session(scratch)
    try:
        return parse_catalog(session.query(query, what="read the scratch schema"))
    finally:
        session.close()


def _build(engine: Engine, control: ControlSession, scripts: list[Rendered], query: str,
           scratch: str) -> tuple[str, dict[str, CatalogObject]]:
    """Create ``scratch`` (dropping a build cut short), run ``scripts`` there and read
    both catalogs; then mark it complete and drop the target's earlier one. A failed
    build is dropped."""
    from concurrent.futures import ThreadPoolExecutor

    from spawn_db.lint.database import _drop

    _drop(control, scratch)
    create_scratch(control, SCRATCH_PREFIX, lambda name, exc: DriftCheckFailed(
        f"cannot create the scratch database {name} on the target's server, where the "
        "applied migrations are rebuilt to compare with; the user spawn connects as "
        f"(the target's command) needs CREATEDB. {exc.message}"), name=scratch)
    with ThreadPoolExecutor(max_workers=1) as pool:
        live = pool.submit(control.query, query, what="read the target's schema")
        try:
            build_scratch(engine, scratch, scripts)
            built = _read_scratch(engine, query, scratch)
            live_text = live.result()
        except BaseException:
            live.exception()  # the control session is free again before the drop
            _drop(control, scratch)
            raise
    control.query(f"COMMENT ON DATABASE {escape_identifier(scratch)} IS "
                  f"{escape_literal(scratch_comment(control.database))}",
                  what="mark the scratch database complete")
    _drop_earlier(control, scratch)
    return live_text, built


def _drop_earlier(control: ControlSession, scratch: str) -> None:
    """Drop the scratch databases earlier runs kept for this target database."""
    from spawn_db.lint.database import _drop

    rows = control.query(
        "SELECT datname FROM pg_catalog.pg_database WHERE datname LIKE 'spawn\\_drift\\_%' "
        f"AND datname <> {escape_literal(scratch)} AND pg_catalog.shobj_description(oid, "
        f"'pg_database') = {escape_literal(scratch_comment(control.database))}",
        what="look for earlier scratch databases")
    for name in rows.splitlines():
        if name:
            _drop(control, name)


def create_scratch(control: ControlSession, prefix: str,
                   refused: Callable[[str, ControlError], SpawnError],
                   name: str | None = None) -> str:
    """Create a database ``name``, by default ``prefix<random>``, through ``control`` and
    return its name; ``refused`` makes the error when the server will not (no CREATEDB,
    say)."""
    import secrets

    scratch = name or f"{prefix}{secrets.token_hex(6)}"
    try:
        control.query(f"CREATE DATABASE {escape_identifier(scratch)}",
                      what="create the scratch database")
    except ControlError as exc:
        raise refused(scratch, exc) from None
    return scratch


def build_scratch(engine: Engine, scratch: str, scripts: list[Rendered],
                  failed: Failed | None = None) -> None:
    """Run ``scripts`` in order on the database ``scratch``; ``failed`` makes the error of
    a migration that fails (by default drift's, which says no comparison was made)."""
    for shared, batch in _batches(scripts):
        (_run_shared if shared else _run_alone)(engine, scratch, batch, failed or _failed)


def _batches(scripts: list[Rendered]) -> list[tuple[bool, list[Rendered]]]:
    """Runs of consecutive migrations that may share one psql (plain SQL ending cleanly, as
    apply's runner decides), and each other migration alone: a psql start and connection
    per migration would cost more than most migrations."""
    batches: list[tuple[bool, list[Rendered]]] = []
    for script in scripts:
        shared = script.shape.shareable and not script.shape.restart_after
        if shared and batches and batches[-1][0]:
            batches[-1][1].append(script)
        else:
            batches.append((shared, [script]))
    return batches


def _opening(scratch: str) -> str:
    """psql input that moves the session to ``scratch``; the scratch database is thrown
    away, so its commits need not wait for the disk."""
    return f"\\connect {escape_identifier(scratch)}\n{SESSION_PIN}{FAST_COMMITS}"


def _run_shared(engine: Engine, scratch: str, batch: list[Rendered], failed: Failed) -> None:
    """Stream ``batch`` through one psql connected to ``scratch``; each migration is followed
    by a marker and ``DISCARD ALL`` (so the next starts as in a fresh session, and one that
    left a transaction open fails)."""
    from spawn_db.migrate.runner import _error_text

    process = engine.script_session(APPLICATION)
    try:
        process.write(PSQL_PREAMBLE)
        process.write(_opening(scratch))
        for index, script in enumerate(batch):
            process.write_stream(script.spool)
            process.write(f"\\echo {marker_literal(process.nonce, 'd')}{index}\n"
                          f"DISCARD ALL;\n{SESSION_PIN}{FAST_COMMITS}")
        process.close_input()
        while process.exit is None:
            process.pump(None)
    finally:
        process.stop()
    assert process.exit is not None
    done = sum(1 for line in process.lines if f"{process.nonce}'d" in line)
    if process.exit.code == 0 and done == len(batch):
        return
    said = _error_text(process.exit.stderr) or f"psql exited with code {process.exit.code}"
    failed(batch[min(done, len(batch) - 1)], said)


def _run_alone(engine: Engine, scratch: str, batch: list[Rendered], failed: Failed) -> None:
    """Run one migration that cannot share a session (meta-commands, COPY from stdin, an
    unclean end) in a psql of its own, checked to its end as verify scripts are."""
    from spawn_db.migrate.verify import run_verify

    for script in batch:
        error = run_verify(engine, script, opening=_opening(scratch))
        if error is not None:
            failed(script, error)


def _failed(script: Rendered, said: str) -> NoReturn:
    raise DriftCheckFailed(
        f"migration {script.name} failed on the scratch database, so the schema its "
        f"migrations build cannot be compared; fix what psql reports:\n{said}"
    )
