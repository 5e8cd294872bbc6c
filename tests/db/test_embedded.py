"""The embedded server, end to end: real initdb, real postgres, the real ``spawn`` CLI.

Every project here is a fresh ``spawn init`` (the embedded target is the
default) in a folder the unprivileged server user can enter; the fixture stops
its server afterwards.
"""

from __future__ import annotations

import json
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from spawn_db.config import Overrides, load_config
from spawn_db.db import embedded
from spawn_db.db.pgbin import BIN_ENV, find_binaries, origin
from spawn_db.db.target import psql_argv
from spawn_db.escape import escape_identifier
from tests.conftest import DbProject, EmbeddedProject, PgServer, TestDatabase
from tests.helpers import Result, run_spawn

# What the spawn processes the tests start will find: SPAWN_POSTGRES_BIN reaches them
# (tests/helpers.py), so .ci/pg-versions runs these tests on each major.
BINS = find_binaries()
ROOT = os.geteuid() == 0


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr
    return result


def _status(project: EmbeddedProject) -> dict[str, object]:
    loaded: dict[str, object] = json.loads(_ok(project.run("db", "status", "--format", "json"))
                                           .stdout)
    return loaded


def _pid(project: EmbeddedProject) -> int:
    return int((project.root / ".spawn/postgres/postmaster.pid").read_text().split("\n")[0])


def _owner(pid: int) -> str:
    return pwd.getpwuid(os.stat(f"/proc/{pid}").st_uid).pw_name


def _server_user() -> str:
    return "postgres" if ROOT else pwd.getpwuid(os.geteuid()).pw_name


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state == "Z":
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} did not exit")


def _starts(project: EmbeddedProject) -> int:
    return (project.root / ".spawn/postgres.log").read_text().count("starting PostgreSQL")


# -- first use ----------------------------------------------------------------------------


def test_first_command_creates_starts_and_connects(embedded_project: EmbeddedProject) -> None:
    root = embedded_project.root
    assert ".spawn/" in (root / ".gitignore").read_text().splitlines()
    before = _status(embedded_project)
    assert (before["running"], before["initialized"]) == (False, False)

    result = _ok(embedded_project.run("db", "shell", "-c", "select 1"))
    assert result.stdout == " ?column? \n----------\n        1\n(1 row)\n\n"
    assert (root / ".spawn/postgres/PG_VERSION").read_text().strip() == BINS.major
    assert (root / ".spawn/run" / ".s.PGSQL.5432").is_socket()
    pid = _pid(embedded_project)
    assert _owner(pid) == _server_user()
    assert pwd.getpwuid((root / ".spawn/postgres").stat().st_uid).pw_name == _server_user()

    settings = _ok(embedded_project.run(
        "db", "shell", "-At", "-c",
        "select current_user, current_setting('listen_addresses') = '', "
        "current_setting('server_encoding'), datcollate from pg_database "
        "where datname = current_database()"))
    assert settings.stdout == "postgres|t|UTF8|C\n"


def test_migration_commands_use_the_embedded_server(embedded_project: EmbeddedProject) -> None:
    config = load_config(Overrides(config_file=str(embedded_project.root / "spawn.toml")))
    argv = psql_argv(config)
    socket_dir = str(embedded_project.root / ".spawn/run")
    assert argv == [str(BINS.psql), "-X", "-h", socket_dir, "-p", "5432", "-U", "postgres",
                    "-d", "postgres"]
    done = subprocess.run([*argv, "-Atc", "select 40 + 2"], capture_output=True, text=True,
                          check=True)
    assert done.stdout == "42\n"


def test_target_database_is_created_on_first_use(embedded_project: EmbeddedProject) -> None:
    config_path = embedded_project.root / "spawn.toml"
    config_path.write_text(config_path.read_text().replace(
        'command = { kind = "embedded" }', 'command = { kind = "embedded", database = "app" }'))
    result = _ok(embedded_project.run("db", "shell", "-At", "-c", "select current_database()"))
    assert result.stdout == "app\n"
    other = _ok(embedded_project.run("db", "shell", "postgres", "-At", "-c",
                                     "select current_database()"))
    assert other.stdout == "postgres\n"


# -- start / stop / status ----------------------------------------------------------------


def test_start_twice_stop_twice(embedded_project: EmbeddedProject) -> None:
    root = embedded_project.root
    first = _ok(embedded_project.run("db", "start"))
    pid = _pid(embedded_project)
    assert first.stdout == (
        f"Created a PostgreSQL {BINS.version} cluster in {root}/.spawn/postgres\n"
        f"Started PostgreSQL {BINS.version} (pid {pid}) on socket {root}/.spawn/run\n"
    )
    second = _ok(embedded_project.run("db", "start"))
    assert second.stdout == (
        f"PostgreSQL is already running (pid {pid}) on socket {root}/.spawn/run\n"
    )
    stopped = _ok(embedded_project.run("db", "stop"))
    assert stopped.stdout == f"Stopped PostgreSQL (pid {pid})\n"
    assert not (root / ".spawn/postgres/postmaster.pid").exists()
    assert "database system is shut down" in (root / ".spawn/postgres.log").read_text()
    assert _ok(embedded_project.run("db", "stop")).stdout == "PostgreSQL is not running\n"
    again = _ok(embedded_project.run("db", "start"))
    assert again.stdout.startswith(f"Started PostgreSQL {BINS.version} (pid ")


def test_status_text(embedded_project: EmbeddedProject) -> None:
    root = embedded_project.root
    fresh = _ok(embedded_project.run("db", "status")).stdout.splitlines()
    assert fresh[0] == "Status:     not created yet (any command that needs the database " \
                       "creates it)"
    _ok(embedded_project.run("db", "start"))
    pid = _pid(embedded_project)
    server_version = _ok(embedded_project.run("db", "shell", "-Atc", "show server_version"))
    lines = _ok(embedded_project.run("db", "status")).stdout.splitlines()
    psql = f"{BINS.psql} -h {root}/.spawn/run -p 5432 -U postgres -d postgres"
    assert lines == [
        f"Status:     running (pid {pid})",
        f"Data dir:   {root}/.spawn/postgres (PostgreSQL {BINS.major})",
        f"Socket:     {root}/.spawn/run (port 5432, no TCP)",
        f"Server:     PostgreSQL {server_version.stdout.strip()}",
        f"Binaries:   {BINS.bin_dir} (PostgreSQL {BINS.version}, found via {BINS.source})",
        f"Runs as:    OS user {_server_user()}; superuser role postgres",
        f"Log:        {root}/.spawn/postgres.log",
        f"Connect:    spawn db shell  (or: {psql})",
    ]
    _ok(embedded_project.run("db", "stop"))
    stopped = _ok(embedded_project.run("db", "status")).stdout.splitlines()
    assert stopped[0] == "Status:     stopped (any command that needs the database starts it)"
    assert not any(line.startswith("Server:") for line in stopped)


def test_status_of_a_running_server_only_reads(embedded_project: EmbeddedProject) -> None:
    """A warm status is cheap because it starts, creates and restarts nothing."""
    _ok(embedded_project.run("db", "start"))
    pid = _pid(embedded_project)
    log = sorted((embedded_project.root / ".spawn").rglob("*.log"))
    sizes = [p.stat().st_size for p in log]
    status = _status(embedded_project)
    assert status["running"] is True
    assert _pid(embedded_project) == pid
    assert [p.stat().st_size for p in log] == sizes


# -- concurrency and recovery -------------------------------------------------------------


def test_four_concurrent_starters_start_one_server(embedded_project: EmbeddedProject) -> None:
    def first_query(_: int) -> Result:
        return embedded_project.run("db", "shell", "-Atc", "select pg_postmaster_start_time()")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(first_query, range(4)))
    for result in results:
        _ok(result)
    assert len({r.stdout for r in results}) == 1
    assert _starts(embedded_project) == 1


def test_sigkilled_server_recovers_on_next_command(embedded_project: EmbeddedProject) -> None:
    _ok(embedded_project.run("db", "shell", "-c", "create table kept(x int); "
                                                 "insert into kept values (7)"))
    old = _pid(embedded_project)
    os.kill(old, signal.SIGKILL)
    _wait_gone(old)
    result = _ok(embedded_project.run("db", "shell", "-Atc", "select x from kept"))
    assert result.stdout == "7\n"
    assert _pid(embedded_project) != old
    assert _starts(embedded_project) == 2


def test_sigkill_with_a_session_open_recovers(embedded_project: EmbeddedProject) -> None:
    _ok(embedded_project.run("db", "start"))
    config = load_config(Overrides(config_file=str(embedded_project.root / "spawn.toml")))
    argv = psql_argv(config)
    session = subprocess.Popen([*argv, "-c", "select pg_sleep(30)"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.3)
        old = _pid(embedded_project)
        os.kill(old, signal.SIGKILL)
        result = _ok(embedded_project.run("db", "shell", "-Atc", "select 'back'"))
        assert result.stdout == "back\n"
    finally:
        session.kill()
        session.communicate()


def test_stale_pid_reused_by_another_program(embedded_project: EmbeddedProject) -> None:
    """After a reboot the old postmaster pid may belong to some other process."""
    _ok(embedded_project.run("db", "start"))
    old = _pid(embedded_project)
    os.kill(old, signal.SIGKILL)
    _wait_gone(old)
    impostor = subprocess.Popen(["sleep", "60"], user="postgres" if ROOT else None)
    try:
        pidfile = embedded_project.root / ".spawn/postgres/postmaster.pid"
        lines = pidfile.read_text().split("\n")
        pidfile.write_text("\n".join([str(impostor.pid), *lines[1:]]))
        result = _ok(embedded_project.run("db", "shell", "-Atc", "select 1"))
        assert result.stdout == "1\n"
        assert impostor.poll() is None
        assert _pid(embedded_project) not in (old, impostor.pid)
    finally:
        impostor.kill()
        impostor.wait()


# -- errors ---------------------------------------------------------------------------------


def test_newer_major_data_dir_is_refused_untouched(embedded_project: EmbeddedProject) -> None:
    root = embedded_project.root
    _ok(embedded_project.run("db", "start"))
    _ok(embedded_project.run("db", "stop"))
    version_file = root / ".spawn/postgres/PG_VERSION"
    version_file.write_text("99\n")
    result = embedded_project.run("db", "start")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {root}/.spawn/postgres was created by PostgreSQL 99, newer than the binaries "
        f"in {BINS.bin_dir} (PostgreSQL {BINS.version}, {origin(BINS)}), which cannot read it; "
        "install PostgreSQL 99 and point `postgres_bin` in the target or SPAWN_POSTGRES_BIN at "
        "its bin directory (nothing was changed)\n"
    )
    assert version_file.read_text() == "99\n"
    assert not (root / ".spawn/postgres/postmaster.pid").exists()

    version_file.write_text("9.6\n")
    older = embedded_project.run("db", "shell", "-c", "select 1")
    assert older.exit_code == 1
    assert older.stderr == (
        f"error: {root}/.spawn/postgres was created by PostgreSQL 9.6 but the binaries in "
        f"{BINS.bin_dir} (PostgreSQL {BINS.version}, {origin(BINS)}) are newer; point "
        "`postgres_bin` in the target or SPAWN_POSTGRES_BIN at a PostgreSQL 9.6 bin directory "
        "(install it if needed), upgrade the cluster with pg_upgrade, or delete "
        f"{root}/.spawn/postgres to start a fresh one\n"
    )


def test_missing_binaries_give_install_message(embedded_project: EmbeddedProject,
                                               tmp_path: Path) -> None:
    result = embedded_project.run("db", "shell", "-c", "select 1",
                                  env={BIN_ENV: str(tmp_path)})
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {BIN_ENV}={tmp_path} has no PostgreSQL binaries (missing: postgres, initdb, "
        "psql); install them:\n"
        "  Debian/Ubuntu: sudo apt-get install postgresql\n"
        "  macOS:         brew install postgresql@16\n"
        f'or set `postgres_bin = "/path/to/bin"` in the target (or {BIN_ENV}), or point the '
        "target at an existing server instead:\n"
        '  command = { kind = "direct", direct = ["psql", "-h", "localhost", "-U", "postgres", '
        '"mydb"] }\n'
    )
    assert not (embedded_project.root / ".spawn/postgres").exists()


def test_postgres_bin_in_target(embedded_project: EmbeddedProject, tmp_path: Path) -> None:
    config_path = embedded_project.root / "spawn.toml"
    text = config_path.read_text()
    config_path.write_text(text.replace('engine = "postgres-psql"',
                                        f'engine = "postgres-psql"\npostgres_bin = "{tmp_path}"'))
    unset = {BIN_ENV: ""}  # SPAWN_POSTGRES_BIN would win over postgres_bin
    result = embedded_project.run("db", "start", env=unset)
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: `postgres_bin` {tmp_path} has no PostgreSQL binaries (missing: postgres, "
        "initdb, psql); install them:\n  Debian/Ubuntu: sudo apt-get install postgresql\n")

    config_path.write_text(text.replace(
        'engine = "postgres-psql"', f'engine = "postgres-psql"\npostgres_bin = "{BINS.bin_dir}"'))
    status = json.loads(_ok(embedded_project.run("db", "status", "--format", "json",
                                                 env=unset)).stdout)
    assert status["binaries"] == {
        "bin_dir": str(BINS.bin_dir), "version": BINS.version, "source": "postgres_bin"}
    assert _ok(embedded_project.run("db", "shell", "-Atc", "select 5", env=unset)).stdout == "5\n"


def test_db_commands_need_an_embedded_target(db_project: DbProject) -> None:
    for command in (["start"], ["stop"], ["status"], ["shell", "-c", "select 1"]):
        result = db_project.run("db", *command)
        assert result.exit_code == 2
        assert result.stderr == (
            f"error: {db_project.config_path}: target 'local' uses command kind 'direct'; "
            "`spawn db` manages only the embedded server, so select an embedded target with "
            '--target NAME or set `command = { kind = "embedded" }`\n'
        )


def test_non_cluster_data_dir_is_refused(embedded_project: EmbeddedProject) -> None:
    data = embedded_project.root / ".spawn/postgres"
    data.mkdir(parents=True)
    (data / "notes.txt").write_text("mine\n")
    result = embedded_project.run("db", "start")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {data} exists but is not a PostgreSQL data directory (no PG_VERSION); move it "
        "away or delete it, and spawn will create a fresh cluster there\n"
    )
    assert (data / "notes.txt").read_text() == "mine\n"


# -- where things live --------------------------------------------------------------------


def test_long_project_path_moves_the_socket_to_tmp(long_project: EmbeddedProject) -> None:
    status = _status(long_project)
    socket_dir = str(status["socket_dir"])
    assert socket_dir.startswith("/tmp/spawn-") and len(socket_dir) == len("/tmp/spawn-") + 16
    assert status["data_dir"] == str(long_project.root / ".spawn/postgres")
    notes = status["notes"]
    assert isinstance(notes, list) and len(notes) == 1
    assert notes[0].endswith(f"is too long for a socket path (107 bytes), so the socket is in "
                             f"{socket_dir}")
    assert _ok(long_project.run("db", "shell", "-Atc", "select 1")).stdout == "1\n"
    assert Path(socket_dir, ".s.PGSQL.5432").is_socket()
    assert (Path(socket_dir).stat().st_mode & 0o777) == 0o700


def test_planted_tmp_socket_dir_is_refused(long_project: EmbeddedProject) -> None:
    config = load_config(Overrides(config_file=str(long_project.root / "spawn.toml")))
    socket_dir = embedded.project_cluster(config, config.target()).socket_dir
    socket_dir.mkdir()
    os.chmod(socket_dir, 0o777)
    result = long_project.run("db", "start")
    assert result.exit_code == 1
    problem = "belongs to root, not postgres" if ROOT else "may be written by other users " \
        "(mode 0777)"
    assert result.stderr == (
        f"error: {socket_dir} {problem}, so spawn will not put its server's socket or files "
        "there (whoever controls that folder could reach the server as superuser); remove it "
        f"(`rm -r {socket_dir}`, as root if another user owns it) and retry\n"
    )
    socket_dir.rmdir()
    assert _ok(long_project.run("db", "shell", "-Atc", "select 1")).stdout == "1\n"


def test_server_user_and_private_project_folder() -> None:
    """As root the server runs as ``postgres``, and a project inside a folder it cannot
    enter (mode 0700, owned by root) keeps its cluster in /var/tmp. As a normal user the
    server runs as that user, in the project."""
    base = Path(tempfile.mkdtemp(prefix="spawn-private-"))
    assert base.stat().st_mode & 0o777 == 0o700
    root = base / "project"
    root.mkdir()
    _ok(run_spawn("init", cwd=root))
    config = load_config(Overrides(config_file=str(root / "spawn.toml")))
    cluster = embedded.project_cluster(config, config.target())
    try:
        result = _ok(run_spawn("db", "shell", "-Atc", "select current_user", cwd=root))
        assert result.stdout == "postgres\n"
        status = json.loads(_ok(run_spawn("db", "status", "--format", "json", cwd=root)).stdout)
        server_pid = status["pid"]
        assert isinstance(server_pid, int)
        assert _owner(server_pid) == _server_user() == status["os_user"]
        if not ROOT:
            assert status["data_dir"] == str(root / ".spawn/postgres")
            assert status["notes"] == []
            return
        data = Path(status["data_dir"])
        assert data == cluster.data_dir
        assert data.parent.name.startswith("spawn-") and data.parent.parent == Path("/var/tmp")
        assert status["notes"] == [
            f"the server user postgres cannot enter {root}, so the cluster lives in "
            f"{data.parent}"
        ]
        assert pwd.getpwuid(data.stat().st_uid).pw_name == "postgres"
        assert not (root / ".spawn/postgres").exists()
    finally:
        embedded.stop(cluster)
        if cluster.data_dir.parent.parent == Path("/var/tmp"):
            shutil.rmtree(cluster.data_dir.parent, ignore_errors=True)
        shutil.rmtree(base, ignore_errors=True)


# -- the test suite's own database fixtures -----------------------------------------------


def test_database_fixture_is_fresh_and_private(database: TestDatabase,
                                               pg_server: PgServer) -> None:
    assert database.query("select current_database()") == database.name
    assert database.query("select count(*) from pg_class where relnamespace = "
                          "'public'::regnamespace") == "0"
    assert database.env == {"PGHOST": pg_server.host, "PGPORT": str(pg_server.port),
                            "PGUSER": pg_server.user, "PGDATABASE": database.name}
    assert database.psql_argv() == [pg_server.psql, "-X", "-h", pg_server.host, "-p",
                                    str(pg_server.port), "-U", pg_server.user, "-d",
                                    database.name]
    with pytest.raises(RuntimeError, match="division by zero"):
        database.query("select 1/0")
    template = pg_server.query("select datname from pg_database where datistemplate is false "
                               f"and datname = '{pg_server.template}'")
    assert template == pg_server.template


def test_db_project_fixture(db_project: DbProject) -> None:
    first = db_project.add_migration("create-users", "BEGIN;\nCREATE TABLE users();\nCOMMIT;\n")
    second = db_project.add_migration("later", "SELECT 1;\n", pin=False)
    assert (first, second) == ("20240101000000-create-users", "20240101000001-later")
    migrations = db_project.spawn_dir / "migrations"
    assert (migrations / first / "lock.toml").read_text().startswith('pin = "')
    assert not (migrations / second / "lock.toml").exists()
    built = _ok(db_project.run("migration", "build", first))
    assert built.stdout == "BEGIN;\nCREATE TABLE users();\nCOMMIT;\n"
    assert db_project.database.query("select 1") == "1"


def _databases(pg_server: PgServer) -> set[str]:
    """Databases, minus this session's own (created and dropped in the background)."""
    ours = f"spawn_test_{os.getpid()}_"
    return {name for name in pg_server.query("select datname from pg_database").splitlines()
            if not name.startswith(ours)}


def _run_suite_on(pg_server: PgServer, **env: str) -> subprocess.CompletedProcess[str]:
    dsn = f"host={pg_server.host} port={pg_server.port} user={pg_server.user}"
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         f"{__file__}::test_database_fixture_is_fresh_and_private"],
        cwd=Path(__file__).parents[2], capture_output=True, text=True, check=False,
        env={**os.environ, "SPAWN_TEST_DSN": dsn, **env}, timeout=300,
    )


def test_suite_runs_against_an_existing_server(pg_server: PgServer) -> None:
    before = _databases(pg_server)
    done = _run_suite_on(pg_server)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 passed" in done.stdout
    assert _databases(pg_server) == before


def test_keep_db_keeps_and_says_how_to_connect(pg_server: PgServer) -> None:
    before = _databases(pg_server)
    done = _run_suite_on(pg_server, SPAWN_TEST_KEEP_DB="1")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "databases kept (SPAWN_TEST_KEEP_DB=1)" in done.stdout
    prefix = "tests/db/test_embedded.py::test_database_fixture_is_fresh_and_private: "
    [line] = [line for line in done.stdout.splitlines() if line.startswith(prefix)]
    argv = shlex.split(line.removeprefix(prefix))
    assert argv[:-1] == [pg_server.psql, "-X", "-h", pg_server.host, "-p", str(pg_server.port),
                         "-U", pg_server.user, "-d"]
    kept = _databases(pg_server) - before
    try:
        assert argv[-1] in kept
        assert subprocess.run([*argv, "-Atc", "select current_database()"], capture_output=True,
                              text=True, check=True).stdout == f"{argv[-1]}\n"
    finally:
        for name in kept:
            pg_server.query(f"DROP DATABASE {escape_identifier(name)}")
