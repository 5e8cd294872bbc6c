"""Fresh test databases in a tablespace: ``[tests] tablespace``, and on the embedded server
(the default target) spawn's own tablespace in RAM, ``spawn_ram`` in /dev/shm, which spawn
repairs when its folder is lost (a reboot, or emptied by hand). Against the real embedded
server and the suite's server, through the real ``spawn``."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.config import Overrides, load_config
from spawn_db.db import embedded
from spawn_db.db.target import psql_argv
from spawn_db.sqltest.fresh import TemplateInputs
from spawn_db.sqltest.tablespace import RAM_MARKER, RAM_TABLESPACE
from tests.conftest import SPAWN_DATABASES, EmbeddedProject, PgServer
from tests.helpers import Result

# Reports, from inside a test's database, the tablespace it is in, then those of the
# templates on the server, one per line.
WHERE_SQL = (
    "\\pset format unaligned\n\\pset tuples_only on\n"
    "SELECT t.spcname || '|' || pg_tablespace_location(t.oid)\n"
    "  FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace\n"
    " WHERE d.datname = current_database();\n"
    "SELECT t.spcname\n"
    "  FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace\n"
    " WHERE d.datistemplate AND d.datname LIKE 'spawn\\_tpl\\_%' ORDER BY 1;\n"
)
MIGRATION = "20240101000000-t"


@pytest.fixture(autouse=True)
def _drop_spawn_databases(pg_server: PgServer) -> Iterator[None]:
    """Templates live on the worker's server, which its tests share one after another
    (``WHERE_SQL`` lists them): none before a test here, none left after it."""
    pg_server.drop_databases_like(*SPAWN_DATABASES)
    yield
    pg_server.drop_databases_like(*SPAWN_DATABASES)


def where_expected(spcname: str, location: str, templates_in: tuple[str, ...] = ()) -> str:
    """``WHERE_SQL``'s output when the test's database is in ``spcname`` and the templates
    in ``templates_in`` (default: its template alone, in ``spcname``)."""
    rows = "".join(f"{t}\n" for t in templates_in or (spcname,))
    return f"{spcname}|{location}\n{rows}"


def fresh_setup(root: Path, tests_table: str = "") -> None:
    """``root`` in fresh mode (plus ``tests_table`` lines in [tests]), with one pinned
    migration and the test ``where``."""
    with (root / "spawn.toml").open("a", encoding="utf-8") as config:
        config.write(f'\n[tests]\ndatabase = "fresh"\n{tests_table}')
    spawn_dir = root / "spawn"
    folder = spawn_dir / "migrations" / MIGRATION
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text(f"-- {root}\nCREATE TABLE t (id int);\n")
    test = spawn_dir / "tests" / "where"
    test.mkdir(parents=True)
    (test / "test.sql").write_text(WHERE_SQL)


def ram_folder(root: Path) -> Path:
    config = load_config(Overrides(config_file=str(root / "spawn.toml")))
    folder = embedded.ram_folder(embedded.project_cluster(config, config.target()))
    assert folder is not None, "/dev/shm is a writable tmpfs on every machine the suite runs on"
    return folder


def embedded_query(root: Path, sql: str) -> str:
    """``sql`` on the project's embedded server (started if needed), as -At output."""
    config = load_config(Overrides(config_file=str(root / "spawn.toml")))
    done = subprocess.run([*psql_argv(config), "-At", "-c", sql], capture_output=True,
                          text=True, check=True)
    return done.stdout


def built(stderr: str) -> list[str]:
    """The templates a run said it built."""
    return [line.split()[3] for line in stderr.splitlines()
            if line.startswith("Building template database ")]


def expect_where(project: Any, tests_table: str = "") -> Result:
    """``fresh_setup``, the migration pinned, then `spawn test expect where`, which passes."""
    fresh_setup(project.root, tests_table)
    assert project.run("migration", "pin", MIGRATION).exit_code == 0
    result: Result = project.run("test", "expect", "where")
    assert result.exit_code == 0, result.stderr
    return result


def test_fresh_tests_run_in_the_embedded_servers_tablespace_in_ram(
        embedded_project: EmbeddedProject) -> None:
    root = embedded_project.root
    expect_where(embedded_project)
    folder = ram_folder(root)
    assert folder.parent == Path("/dev/shm")
    assert folder.name.startswith(f"spawn-{os.geteuid()}-")
    expected = (root / "spawn" / "tests" / "where" / "expected").read_text()
    assert expected == where_expected(RAM_TABLESPACE, str(folder))
    compared = embedded_project.run("test", "compare")
    assert (compared.exit_code, compared.stdout.splitlines()[0]) == (0, "[PASS] where")
    # The folder is the server's OS user's alone (postgres when spawn runs as root).
    info = folder.lstat()
    data_owner = (root / ".spawn" / "postgres").stat().st_uid
    assert stat.S_ISDIR(info.st_mode) and stat.S_IMODE(info.st_mode) == 0o700
    assert info.st_uid == data_owner
    if os.geteuid() == 0:
        assert data_owner != 0
    oid = embedded_query(root, f"SELECT oid FROM pg_tablespace WHERE spcname = "
                               f"'{RAM_TABLESPACE}'").strip()
    assert (folder / RAM_MARKER).read_text() == f"{oid}\n"


def _crash(root: Path) -> None:
    """SIGKILL the embedded server and every process of it, as a power cut would."""
    postmaster = int((root / ".spawn" / "postgres" / "postmaster.pid").read_text().split()[0])
    os.kill(postmaster, signal.SIGSTOP)  # it must not restart its children meanwhile
    children = [int(p) for p in os.listdir("/proc") if p.isdigit()
                and _parent_of(int(p)) == postmaster]
    for pid in [*children, postmaster]:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _parent_of(postmaster) is not None and time.monotonic() < deadline:
        time.sleep(0.01)


def _parent_of(pid: int) -> int | None:
    """The parent pid of a live (not zombie) process, else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None if fields[0] in ("Z", "X") else int(fields[1])


def test_a_lost_ram_folder_is_rebuilt_and_the_tests_pass(
        embedded_project: EmbeddedProject) -> None:
    """Emptied by hand while the server runs, lost in a reboot (server stopped first) and
    lost in a power cut (server killed): each next run drops what was in it, rebuilds the
    template, passes, no error; `spawn test clean` then leaves nothing."""
    root = embedded_project.root
    [template] = built(expect_where(embedded_project).stderr)
    folder = ram_folder(root)
    for lose in ("by hand", "reboot", "power cut"):
        # Copies made ahead that a killed run left: made since the last checkpoint, their
        # pages are in the server's memory only, and in the WAL a crash replays.
        for number in (1, 2):
            embedded_query(root, f"CREATE DATABASE spawn_testdb_left{number}_ready "
                                 f"TEMPLATE {template}")
        if lose == "reboot":
            assert embedded_project.run("db", "stop").exit_code == 0
        elif lose == "power cut":
            _crash(root)
        shutil.rmtree(folder)
        again = embedded_project.run("test", "compare")
        assert (again.exit_code, again.stdout.splitlines()[0]) == (0, "[PASS] where"), \
            (lose, again.stdout, again.stderr)
        assert built(again.stderr) == [template], lose
        assert (folder / RAM_MARKER).is_file()
        assert embedded_query(root, "SELECT datname FROM pg_database WHERE datname LIKE "
                                    "'spawn%' ORDER BY 1") == f"{template}\n", lose
    cleaned = embedded_project.run("test", "clean")
    assert cleaned.exit_code == 0, cleaned.stderr
    assert cleaned.stdout == (f"Dropped template {template}\n"
                              f"Dropped tablespace {RAM_TABLESPACE} and its folder {folder}\n")
    assert not os.path.lexists(folder)
    left = embedded_query(root, "SELECT datname FROM pg_database WHERE datname LIKE 'spawn%' "
                                "UNION ALL SELECT spcname FROM pg_tablespace "
                                "WHERE spcname NOT LIKE 'pg\\_%'")
    assert left == ""


def test_pg_default_keeps_them_on_disk_under_another_template_name(
        embedded_project: EmbeddedProject) -> None:
    root = embedded_project.root
    in_ram = expect_where(embedded_project)
    with (root / "spawn.toml").open("a", encoding="utf-8") as config:
        config.write('tablespace = "pg_default"\n')
    on_disk = embedded_project.run("test", "expect", "where")
    assert on_disk.exit_code == 0, on_disk.stderr
    [ram_template], [disk_template] = built(in_ram.stderr), built(on_disk.stderr)
    assert ram_template != disk_template
    expected = (root / "spawn" / "tests" / "where" / "expected").read_text()
    assert expected == where_expected("pg_default", "", ("pg_default", RAM_TABLESPACE))
    # Without a tablespace the name is what it was before tablespaces.
    assert disk_template == _name_without_tablespace(root)


def _name_without_tablespace(root: Path) -> str:
    from spawn_db.sqltest.fresh import render_template, template_migrations

    config = load_config(Overrides(config_file=str(root / "spawn.toml")))
    build = render_template(config, template_migrations(config))
    build.close()
    return build.inputs.name


@contextmanager
def server_tablespace(pg_server: PgServer) -> Iterator[tuple[str, Path]]:
    """A tablespace in /dev/shm on the suite's server, of the server's OS user; dropped,
    with every database in it, afterwards."""
    name = f"spawn_test_ts_{secrets.token_hex(4)}"
    folder = Path("/dev/shm") / name
    folder.mkdir(mode=0o700)
    if pg_server.data_dir is not None:
        owner = pg_server.data_dir.stat()
        os.chown(folder, owner.st_uid, owner.st_gid)
    try:
        pg_server.query(f"CREATE TABLESPACE {name} LOCATION '{folder}'")
        yield name, folder
    finally:
        names = pg_server.query(
            "SELECT string_agg(quote_ident(d.datname), ' ') FROM pg_database d JOIN "
            f"pg_tablespace t ON t.oid = d.dattablespace WHERE t.spcname = '{name}'").split()
        for database in names:
            pg_server.query(f"ALTER DATABASE {database} IS_TEMPLATE false")
            pg_server.query(f"DROP DATABASE {database} WITH (FORCE)")
        pg_server.query(f"DROP TABLESPACE IF EXISTS {name}")
        shutil.rmtree(folder, ignore_errors=True)


def test_a_named_tablespace_holds_the_template_and_its_copies(
        db_project: Any, pg_server: PgServer) -> None:
    with server_tablespace(pg_server) as (name, folder):
        result = expect_where(db_project, f'tablespace = "{name}"\n')
        expected = (db_project.spawn_dir / "tests" / "where" / "expected").read_text()
        assert expected == where_expected(name, str(folder))
        [template] = built(result.stderr)
        assert template != _name_without_tablespace(db_project.root)
        cleaned = db_project.run("test", "clean")
        assert cleaned.stdout == f"Dropped template {template}\n"


def test_a_named_tablespace_missing_on_the_server_is_a_clear_error(db_project: Any) -> None:
    fresh_setup(db_project.root, 'tablespace = "nowhere"\n')
    assert db_project.run("migration", "pin", MIGRATION).exit_code == 0
    result = db_project.run("test", "run", "where")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {db_project.config_path}: [tests] tablespace 'nowhere' does not exist on "
        "the server of target 'local'; create it there (`CREATE TABLESPACE \"nowhere\" "
        "LOCATION '/dev/shm/…'` as a superuser), or remove the key (`tablespace = "
        "\"pg_default\"` keeps templates on the server's default)\n")
    assert db_project.database.query(
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'spawn\\_tpl\\_%' AND "
        "NOT datistemplate") == "0"


@settings(max_examples=100, deadline=None)
@given(st.text(min_size=1, max_size=63), st.text(min_size=1, max_size=63))
def test_the_template_name_changes_with_the_tablespace(first: str, second: str) -> None:
    migrations = (("20240101000000-t", "ab" * 16, ""),)
    plain = TemplateInputs("dev", migrations)
    one, two = (TemplateInputs("dev", migrations, tablespace) for tablespace in (first, second))
    assert plain.name != one.name
    assert (one.name == two.name) == (first == second)
    assert TemplateInputs("dev", migrations, "").name == plain.name


def test_a_dev_shm_without_room_keeps_the_templates_on_the_disk() -> None:
    """A container's /dev/shm is often 64 MB, which a few copies would fill mid-run: spawn
    uses it only with ``RAM_MIN_FREE`` free, measured on the real file system."""
    shm = os.statvfs(embedded.RAM_ROOT)
    free = shm.f_bavail * shm.f_frsize
    assert embedded.has_room(embedded.RAM_ROOT, need=free // 2)
    assert not embedded.has_room(embedded.RAM_ROOT, need=free + (1 << 30))
    assert not embedded.has_room(embedded.RAM_ROOT / "missing" / "folder", need=1)
    assert embedded.RAM_MIN_FREE == 1 << 30
