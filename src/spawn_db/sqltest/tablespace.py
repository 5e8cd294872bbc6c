"""Where fresh test databases live: the tablespace of the templates, so of their copies.

``[tests] tablespace`` names one the server has; unset, on the embedded server,
spawn keeps its own, ``spawn_ram``, in a folder of /dev/shm: a copy of a small
template costs the server about 17 ms in RAM against 30-240 ms on this VM's disk
(bench/README.md), and test databases are disposable. RAM is lost at a reboot
and /dev/shm can be emptied by hand, so before using ``spawn_ram`` spawn checks
that its folder is the one it made (a marker holding the tablespace's oid) and
otherwise drops what was in it and makes it again; ``spawn test clean``
(``fresh.clean``) removes it once it is empty.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from spawn_db.config import Config
from spawn_db.errors import ConfigError, ControlError
from spawn_db.escape import escape_identifier, escape_literal
from spawn_db.sqltest.fresh import build_lock_key, drop_database

if TYPE_CHECKING:
    from spawn_db.db.embedded_proc import RunAs
    from spawn_db.db.psql import ControlSession

DEFAULT_TABLESPACE = "pg_default"
RAM_TABLESPACE = "spawn_ram"
# In the RAM folder, beside PostgreSQL's PG_<version>_<catalog> folder: the tablespace's oid,
# written once it was made. A folder without it was emptied (by hand, or by a reboot and
# ``embedded.restore_ram_folders``): what the catalog says is in it is gone or incomplete.
RAM_MARKER = "spawn-tablespace"


@dataclass(frozen=True)
class RamPlace:
    """Where the embedded server's tablespace in RAM is, and who its server runs as."""

    folder: Path
    run_as: RunAs | None


def template_tablespace(config: Config, control: ControlSession) -> str | None:
    """The tablespace templates (so their copies) are created in: ``[tests] tablespace``,
    which must exist on the server ("pg_default": None); unset, the embedded server's
    tablespace in RAM, made or repaired now, when /dev/shm allows one; else None (the
    server's default). A copy of a small template on a disk costs 30-240 ms, mostly
    creating files; in RAM about 17 ms (bench/README.md)."""
    chosen = config.tests_tablespace
    if chosen == DEFAULT_TABLESPACE:
        return None
    if chosen is not None:
        if tablespace_row(control, chosen) is None:
            raise ConfigError(
                f"{config.path}: [tests] tablespace {chosen!r} does not exist on the server "
                f"of target {config.target().name!r}; create it there (`CREATE TABLESPACE "
                f"{escape_identifier(chosen)} LOCATION '/dev/shm/…'` as a superuser), or "
                f'remove the key (`tablespace = "{DEFAULT_TABLESPACE}"` keeps templates on '
                "the server's default)")
        return chosen
    place = ram_place(config)
    if place is None:
        return None
    ensure_ram_tablespace(control, place)
    return RAM_TABLESPACE


def ram_place(config: Config) -> RamPlace | None:
    """The RAM folder of the selected target's embedded server, or None (another kind
    of target, or no writable tmpfs at /dev/shm)."""
    target = config.target()
    if target.command.kind != "embedded":
        return None
    from spawn_db.db.embedded import project_cluster, ram_folder
    from spawn_db.db.embedded_proc import server_user

    cluster = project_cluster(config, target)
    folder = ram_folder(cluster)
    return None if folder is None else RamPlace(folder, server_user(cluster.data_dir))


def ensure_ram_tablespace(control: ControlSession, place: RamPlace) -> None:
    """``spawn_ram`` at ``place``, intact: made when missing; when its folder was
    emptied or lost, the databases that were in it are dropped, and it is made again
    (under a lock, so concurrent spawn processes repair it once)."""
    if ram_intact(tablespace_row(control, RAM_TABLESPACE), place):
        return
    from spawn_db.migrate.schema_drift import advisory_lock

    with advisory_lock(control, build_lock_key(RAM_TABLESPACE), "RAM tablespace"):
        row = tablespace_row(control, RAM_TABLESPACE)
        if ram_intact(row, place):
            return
        if row is not None:
            _drop_ram_tablespace(control, row[1])
        _create_ram_tablespace(control, place)


def tablespace_row(control: ControlSession, name: str) -> tuple[str, str] | None:
    """(oid, location) of tablespace ``name`` (location "" for pg_default), or None."""
    found = control.query(
        "SELECT oid || '|' || coalesce(pg_catalog.pg_tablespace_location(oid), '') FROM "
        f"pg_catalog.pg_tablespace WHERE spcname = {escape_literal(name)}",
        what=f"look for tablespace {name}")
    if not found:
        return None
    oid, _, location = found.partition("|")
    return oid, location


def ram_intact(row: tuple[str, str] | None, place: RamPlace) -> bool:
    """Whether the tablespace is at ``place`` and its folder is the one made for it."""
    if row is None or row[1] != str(place.folder):
        return False
    try:
        return (place.folder / RAM_MARKER).read_text(encoding="ascii").strip() == row[0]
    except (OSError, UnicodeDecodeError):
        return False


def _create_ram_tablespace(control: ControlSession, place: RamPlace) -> None:
    """The folder made empty and private, the tablespace in it, then a checkpoint: a
    crash must never replay the tablespace's creation, which stops at a folder that a
    reboot took away. The marker last: a half-made one is repaired next time."""
    import shutil

    from spawn_db.db.embedded_proc import private_dir
    from spawn_db.fsutil import atomic_write_text

    shutil.rmtree(place.folder, ignore_errors=True)
    private_dir(place.folder, place.run_as)
    control.query(f"CREATE TABLESPACE {RAM_TABLESPACE} LOCATION "
                  f"{escape_literal(str(place.folder))}", what="create the RAM tablespace")
    control.query("CHECKPOINT", what="checkpoint after creating the RAM tablespace")
    row = tablespace_row(control, RAM_TABLESPACE)
    if row is not None:
        atomic_write_text(place.folder / RAM_MARKER, row[0] + "\n", durable=False)


def _drop_ram_tablespace(control: ControlSession, location: str) -> None:
    """Drop every database in ``spawn_ram`` (their files may be gone), then the
    tablespace, then its folder."""
    drop_lost(control, databases_in(control, RAM_TABLESPACE))
    control.query(f"DROP TABLESPACE IF EXISTS {RAM_TABLESPACE}",
                  what="drop the RAM tablespace")
    remove_ram_folder(location)


def databases_in(control: ControlSession, tablespace: str) -> list[str]:
    rows = control.query(
        "SELECT d.datname FROM pg_catalog.pg_database d JOIN pg_catalog.pg_tablespace t "
        f"ON t.oid = d.dattablespace WHERE t.spcname = {escape_literal(tablespace)} "
        "ORDER BY 1", what=f"list the databases in tablespace {tablespace}")
    return [row for row in rows.splitlines() if row]


def drop_lost(control: ControlSession, names: list[str]) -> None:
    """Drop databases whose files may have vanished. ``DROP DATABASE`` forgets a
    database's buffers, then asks for a checkpoint, which fails while another lost
    database still has dirty buffers (PostgreSQL 15 and 18: "checkpoint request
    failed"); so each is tried once, then the ones that failed again, their buffers
    gone by then."""
    left = list(names)
    for _ in range(3):
        failed = []
        for name in left:
            try:
                drop_database(control, name, attempts=1)
            except ControlError:
                failed.append(name)
        if not failed:
            return
        left = failed
    for name in left:
        drop_database(control, name)


def remove_ram_folder(location: str) -> None:
    """Remove a RAM folder spawn made (only one named so, in /dev/shm)."""
    import shutil

    from spawn_db.db.embedded import is_ram_folder

    folder = Path(location)
    if is_ram_folder(folder) and not folder.is_symlink():
        shutil.rmtree(folder, ignore_errors=True)


def forget_lost_copies(control: ControlSession, place: RamPlace | None,
                       prefixes: tuple[str, ...]) -> str | None:
    """For ``spawn test clean``: the location of ``spawn_ram`` (None when there is none);
    when its folder was lost, the databases named with ``prefixes`` that were in it are
    dropped first (each may need a retry, ``drop_lost``)."""
    row = tablespace_row(control, RAM_TABLESPACE) if place is not None else None
    if place is None or row is None:
        return None
    if not ram_intact(row, place):
        drop_lost(control, [n for n in databases_in(control, RAM_TABLESPACE)
                            if n.startswith(prefixes)])
    return row[1]


def drop_if_empty(control: ControlSession, location: str) -> bool:
    """Drop ``spawn_ram`` and its folder when no database is left in it; whether it was."""
    if databases_in(control, RAM_TABLESPACE):
        return False
    try:
        control.query(f"DROP TABLESPACE IF EXISTS {RAM_TABLESPACE}",
                      what="drop the RAM tablespace")
    except ControlError:  # something else of the user's is in it: it stays, as it is
        return False
    remove_ram_folder(location)
    return True
