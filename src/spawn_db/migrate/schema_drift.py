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
from dataclasses import dataclass
from typing import Any

from spawn_db.config import Config
from spawn_db.db.catalog import CatalogObject, catalog_query, parse_catalog
from spawn_db.db.engine import Engine, engine_for
from spawn_db.db.psql import ControlSession
from spawn_db.db.target import SESSION_PIN
from spawn_db.errors import DriftCheckFailed, NotPinned
from spawn_db.escape import escape_identifier
from spawn_db.migrate.plan import is_done, state_of
from spawn_db.migrate.runner import Rendered, render_migration
from spawn_db.migrate.tracking import HistoryRow
from spawn_db.project import Project

SCRATCH_PREFIX = "spawn_drift_"
APPLICATION = "spawn drift"


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
    applied = sorted((row for row in rows.values() if is_done(state_of(row))),
                     key=lambda row: row.history_id)
    scripts = [_render_checked(config, row, pinned=pinned, variables=variables)
               for row in applied]
    engine = engine_for(config, target)
    query = catalog_query((target.spawn_schema,))
    try:
        control = engine.control_session(None)
        try:
            live = parse_catalog(control.query(query, what="read the target's schema"))
            built = _build_and_read(engine, control, scripts, query)
            database = control.database
        finally:
            control.close()
    finally:
        for script in scripts:
            script.close()
    differences = tuple(compare(live, built))
    return DriftReport(database, tuple(row.name for row in applied), differences,
                       time.monotonic() - started)


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
                    query: str) -> dict[str, CatalogObject]:
    """Run ``scripts`` on a new scratch database and read its schema; the database is
    dropped afterwards, whatever happened."""
    from spawn_db.lint.database import _drop

    scratch = f"{SCRATCH_PREFIX}{secrets.token_hex(6)}"
    control.query(f"CREATE DATABASE {escape_identifier(scratch)}",
                  what="create the scratch database")
    try:
        for script in scripts:
            _run_on(engine, scratch, script)
        session = engine.control_session(scratch)
        try:
            return parse_catalog(session.query(query, what="read the scratch schema"))
        finally:
            session.close()
    finally:
        _drop(control, scratch)


def _run_on(engine: Engine, scratch: str, script: Rendered) -> None:
    """Stream ``script`` through a psql of its own connected to ``scratch``."""
    from spawn_db.migrate.verify import run_verify

    opening = f"\\connect {escape_identifier(scratch)}\n{SESSION_PIN}"
    error = run_verify(engine, script, opening=opening)
    if error is not None:
        raise DriftCheckFailed(
            f"migration {script.name} failed on the scratch database, so the schema its "
            f"migrations build cannot be compared; fix what psql reports:\n{error}"
        )
