"""Schema drift: does the target's schema still match what its applied migrations say?

``migrate.drift`` compares *files* with the history (a migration edited after it
was applied); this module compares the *database* with the migrations: someone
ran an ``ALTER TABLE`` by hand, a hotfix replaced a function, an index was
dropped in an incident. The migrations the history says are applied (or
adopted) are rendered from their pins, their checksums checked against the
history (otherwise the files no longer say what was applied, and the
comparison would be meaningless), and run in order, each in a psql of its own,
on a scratch database created on the target's server and dropped afterwards,
error or not. Then one catalog query per side (``db.catalog``) reads both
schemas and they are compared object by object. It reports; it fixes nothing.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

from spawn_db.config import Config
from spawn_db.db.catalog import CatalogObject, catalog_query, parse_catalog
from spawn_db.db.engine import Engine, engine_for
from spawn_db.db.psql import ControlSession, marker_literal
from spawn_db.db.target import PSQL_PREAMBLE, SESSION_PIN
from spawn_db.errors import ControlError, DriftCheckFailed, NotPinned, SpawnError
from spawn_db.escape import escape_identifier
from spawn_db.migrate.plan import is_done, state_of
from spawn_db.migrate.runner import Rendered, render_migration
from spawn_db.migrate.tracking import HistoryRow
from spawn_db.project import Project

SCRATCH_PREFIX = "spawn_drift_"
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

    started = time.monotonic()
    target = config.target()
    with tracking_session(config, target) as tracking:
        rows = tracking.latest() if tracking.exists() else {}
    applied = from_baseline(config, sorted(
        (row for row in rows.values() if is_done(state_of(row))),
        key=lambda row: row.history_id))
    scripts: list[Rendered] = []
    engine = engine_for(config, target)
    query = catalog_query((target.spawn_schema,))
    try:
        for row in applied:
            scripts.append(_render_checked(config, row, pinned=pinned, variables=variables))
        control = engine.control_session(None)
        try:
            live_text, built = _build_and_read(engine, control, scripts, query)
            live = parse_catalog(live_text)
            database = control.database
        finally:
            control.close()
    finally:
        for script in scripts:
            script.close()
    differences = tuple(compare(live, built))
    return DriftReport(database, tuple(row.name for row in applied), differences,
                       time.monotonic() - started)


def from_baseline(config: Config, applied: list[HistoryRow]) -> list[HistoryRow]:
    """``applied`` as apply builds it on an empty database: from the newest applied baseline
    (``baseline = true``), which replaces every migration older than it, then the newer
    ones. Whether the database ran the baseline or adopted it, the scratch database is built
    from it, so drift also says whether a baseline still matches the migrations it replaced."""
    from spawn_db.migrate.settings import load_settings

    baselines = [row.name for row in applied
                 if (config.migrations_dir / row.name).is_dir()
                 and load_settings(config, row.name).baseline]
    if not baselines:
        return applied
    newest = max(baselines)
    first = [row for row in applied if row.name == newest]
    return first + [row for row in applied if row.name > newest]


def _render_checked(config: Config, row: HistoryRow, *, pinned: bool,
                    variables: Any) -> Rendered:
    """``row``'s migration rendered as apply would, its checksum matching the history's."""
    folder = config.migrations_dir / row.name
    if not (folder / "up.sql").is_file():
        raise DriftCheckFailed(
            f"migration {row.name} is applied but {Project(config).display(folder)} has no "
            "up.sql, so the schema it built cannot be rebuilt; restore the migration's folder"
        )
    try:
        rendered = render_migration(config, row.name, pinned=pinned, variables=variables)
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
    return rendered


def _build_and_read(engine: Engine, control: ControlSession, scripts: list[Rendered],
                    query: str) -> tuple[str, dict[str, CatalogObject]]:
    """The target's catalog text, and the schema ``scripts`` build on a new scratch
    database (dropped afterwards, whatever happened). The target is read on ``control``
    while psql builds the scratch database: on a server with a core to spare the read
    costs no time."""
    from concurrent.futures import ThreadPoolExecutor

    from spawn_db.lint.database import _drop

    scratch = create_scratch(control, SCRATCH_PREFIX, lambda scratch, exc: DriftCheckFailed(
        f"cannot create the scratch database {scratch} on the target's server, where the "
        "applied migrations are rebuilt to compare with; the user spawn connects as "
        f"(the target's command) needs CREATEDB. {exc.message}"))
    with ThreadPoolExecutor(max_workers=1) as pool:
        live = pool.submit(control.query, query, what="read the target's schema")
        try:
            build_scratch(engine, scratch, scripts)
            session = engine.control_session(scratch)
            try:
                built = parse_catalog(session.query(query, what="read the scratch schema"))
            finally:
                session.close()
            return live.result(), built
        finally:
            live.exception()  # the control session is free again before the drop
            _drop(control, scratch)


def create_scratch(control: ControlSession, prefix: str,
                   refused: Callable[[str, ControlError], SpawnError]) -> str:
    """Create a database ``prefix<random>`` through ``control`` and return its name;
    ``refused`` makes the error when the server will not (no CREATEDB, say)."""
    scratch = f"{prefix}{secrets.token_hex(6)}"
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
