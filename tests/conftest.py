"""The test suite's PostgreSQL: one throwaway cluster per session, one database per test.

The cluster is created and started with spawn's own embedded-server code
(``spawn_db.db.embedded``) in a short temporary folder under /tmp, with
durability switched off (``fsync``, ``synchronous_commit``,
``full_page_writes``) because nothing in it outlives the session, and stopped
and deleted at the end. Running as root (CI), the folder and the server belong
to the unprivileged ``postgres`` user, and psql, run as root, connects over
the socket as the superuser role ``postgres``.

Each test that asks for ``database`` gets a fresh, uniquely named database
created ``WITH TEMPLATE spawn_test_template`` (cheap: no cluster start, no
initdb), dropped after the test.

Environment variables:

``SPAWN_TEST_DSN``
    Run against an existing server instead of a throwaway cluster, e.g.
    ``postgresql://postgres@localhost:5432/postgres`` or
    ``host=/var/run/postgresql port=5432 user=postgres``. The role must be
    allowed to create databases; its password, if any, is passed to psql
    through ``PGPASSWORD``. The template database gets a per-process name and
    is dropped at the end.
``SPAWN_TEST_KEEP_DB=1``
    Keep every test database (and the throwaway cluster, still running) and
    print at the end of the run how to connect to each.
``SPAWN_TEST_PSQL``
    The psql binary to use with ``SPAWN_TEST_DSN`` (default: the psql beside
    the PostgreSQL binaries spawn finds, else ``psql`` on PATH).
``SPAWN_POSTGRES_BIN``
    The PostgreSQL bin directory to build the throwaway cluster with
    (default: what ``spawn --version`` reports); the ``spawn`` processes the
    tests run get it too, so their embedded servers use it (``.ci/pg-versions``
    runs a subset of the suite this way on each PostgreSQL major).

Fixtures: ``pg_server`` (session), ``database``, ``db_project`` and
``embedded_project`` (function scope); see their classes below.
"""

from __future__ import annotations

import itertools
import os
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from spawn_db.config import toml_string
from spawn_db.db import embedded
from spawn_db.db.pgbin import find_binaries
from spawn_db.errors import PostgresNotFound
from spawn_db.escape import escape_literal
from tests.helpers import Result, run_spawn

TEMPLATE = "spawn_test_template"
KEEP = os.environ.get("SPAWN_TEST_KEEP_DB") == "1"
FAST_SETTINGS = (
    ("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off"),
    ("wal_level", "minimal"), ("max_wal_senders", "0"), ("max_connections", "100"),
)
_kept: list[str] = []
_counter = itertools.count(1)


def psql_run(argv: list[str], sql: str) -> str:
    """Run one statement with psql; stripped stdout, or an error carrying psql's stderr."""
    done = subprocess.run([*argv, "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                          capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"psql failed (exit {done.returncode}) on {sql!r}: "
                           f"{done.stderr.strip()}")
    return done.stdout.strip()


# Every database spawn keeps on a server between commands (templates, test copies, drift's
# scratch databases): `spawn test clean` lists them all, so tests that check its output start
# from none on their worker's server (``PgServer.drop_databases_like``).
SPAWN_DATABASES = ("spawn\\_tpl\\_%", "spawn\\_testdb\\_%", "spawn\\_drift\\_%")

@dataclass
class PgServer:
    """The session's server: throwaway cluster (``data_dir`` set) or ``SPAWN_TEST_DSN``."""

    bin_dir: Path
    host: str
    port: int
    user: str
    psql: str
    template: str = TEMPLATE
    maintenance_db: str = "postgres"
    data_dir: Path | None = None
    cluster: embedded.Cluster | None = None
    base_dir: Path | None = None

    def psql_argv(self, dbname: str | None = None) -> list[str]:
        return [self.psql, "-X", "-h", self.host, "-p", str(self.port), "-U", self.user,
                "-d", dbname or self.maintenance_db]

    def query(self, sql: str, dbname: str | None = None) -> str:
        return psql_run(self.psql_argv(dbname), sql)

    def connect_hint(self, dbname: str) -> str:
        return shlex.join(self.psql_argv(dbname))

    def drop_databases_like(self, *patterns: str) -> None:
        """Drop every database whose name is ``LIKE`` one of ``patterns`` (templates too):
        what spawn keeps on the worker's server (drift's scratch databases, test
        templates and kept copies) between the tests that share it."""
        where = " OR ".join(f"datname LIKE {escape_literal(p)}" for p in patterns)
        names = self.query(
            f"SELECT string_agg(quote_ident(datname), ' ') FROM pg_database WHERE {where}")
        for name in names.split():
            self.query(f"ALTER DATABASE {name} IS_TEMPLATE false")
            self.query(f"DROP DATABASE {name} WITH (FORCE)")


@dataclass
class TestDatabase:
    """A fresh database for one test, cloned from the session's template."""

    __test__ = False

    name: str
    server: PgServer

    @property
    def env(self) -> dict[str, str]:
        """libpq variables pointing at this database, for subprocesses."""
        return {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
                "PGDATABASE": self.name}

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def user(self) -> str:
        return self.server.user

    @property
    def psql(self) -> str:
        return self.server.psql

    def psql_argv(self, dbname: str | None = None) -> list[str]:
        return self.server.psql_argv(dbname or self.name)

    def query(self, sql: str, dbname: str | None = None) -> str:
        """``psql -X -At -v ON_ERROR_STOP=1 -c sql``; stripped stdout, RuntimeError on failure."""
        return psql_run(self.psql_argv(dbname), sql)

    def wait_until(self, sql: str, timeout: float = 30, poll: float = 0.02) -> None:
        """Poll ``sql`` (a boolean query) until it says ``t``; fail after ``timeout``."""
        import time

        deadline = time.monotonic() + timeout
        while self.query(sql) != "t":
            assert time.monotonic() < deadline, f"timed out waiting for: {sql}"
            time.sleep(poll)


@dataclass
class DbProject:
    """A project from ``spawn init`` whose target ``local`` is the test's database."""

    root: Path
    database: TestDatabase
    config_path: Path
    spawn_dir: Path
    _stamps: Iterator[int] = field(default_factory=lambda: itertools.count(0))

    def run(self, *args: str, input: str | None = None,
            env: dict[str, str] | None = None) -> Result:
        return run_spawn(*args, cwd=self.root, input=input, env=env)

    def add_migration(self, name: str, sql: str, *, pin: bool = True) -> str:
        """Write ``<timestamp>-<name>/up.sql`` (timestamps 20240101000000, …01, …); pin it."""
        from datetime import datetime, timedelta

        stamp = datetime(2024, 1, 1) + timedelta(seconds=next(self._stamps))
        folder = f"{stamp:%Y%m%d%H%M%S}-{name}"
        path = self.spawn_dir / "migrations" / folder
        path.mkdir(parents=True)
        (path / "up.sql").write_text(sql, encoding="utf-8")
        if pin:
            from spawn_db.config import Overrides, load_config
            from spawn_db.migrate.migration import pin_migration

            pin_migration(load_config(Overrides(config_file=str(self.config_path))), folder)
        return folder

    def add_component(self, relpath: str, text: str) -> Path:
        path = self.spawn_dir / "components" / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def add_test(self, name: str, sql: str) -> Path:
        path = self.spawn_dir / "tests" / name / "test.sql"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(sql, encoding="utf-8")
        return path


# -- the session server --------------------------------------------------------------------


def _throwaway_server() -> PgServer:
    bins = find_binaries()
    base = Path(tempfile.mkdtemp(prefix="spawn-pytest-", dir="/tmp"))
    os.chmod(base, 0o755)
    cluster = embedded.Cluster(
        data_dir=base / "data", socket_dir=base / "run", log_path=base / "postgres.log",
        lock_path=base / "lock", settings=FAST_SETTINGS, postgres_bin=str(bins.bin_dir),
    )
    running = embedded.ensure_running(cluster)
    return PgServer(bin_dir=bins.bin_dir, host=str(running.socket_dir), port=running.port,
                    user=cluster.superuser, psql=str(bins.psql), data_dir=cluster.data_dir,
                    cluster=cluster, base_dir=base)


def _dsn_server(dsn: str) -> PgServer:
    params = _parse_dsn(dsn)
    if params.get("password"):
        os.environ["PGPASSWORD"] = params["password"]
    psql = os.environ.get("SPAWN_TEST_PSQL")
    if not psql:
        try:
            psql = str(find_binaries().psql)
        except PostgresNotFound:
            psql = shutil.which("psql") or "psql"
    return PgServer(
        bin_dir=Path(psql).parent,
        host=params.get("host") or os.environ.get("PGHOST") or "localhost",
        port=int(params.get("port") or os.environ.get("PGPORT") or 5432),
        user=params.get("user") or os.environ.get("PGUSER") or "postgres",
        psql=psql,
        template=f"{TEMPLATE}_{os.getpid()}",
        maintenance_db=params.get("dbname") or "postgres",
    )


def _parse_dsn(dsn: str) -> dict[str, str]:
    """A libpq URI or ``key=value`` string; only host, port, user, password, dbname matter."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        return {
            "host": unquote(parts.hostname or query.get("host", "")),
            "port": str(parts.port or query.get("port", "")),
            "user": unquote(parts.username or ""),
            "password": unquote(parts.password or ""),
            "dbname": unquote(parts.path.lstrip("/")),
        }
    return {k: v.strip("'") for k, v in (w.split("=", 1) for w in shlex.split(dsn) if "=" in w)}


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    dsn = os.environ.get("SPAWN_TEST_DSN")
    server = _dsn_server(dsn) if dsn else _throwaway_server()
    try:
        server.query(f"DROP DATABASE IF EXISTS {_ident(server.template)}")
        server.query(f"CREATE DATABASE {_ident(server.template)} TEMPLATE template0 "
                     "ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
        yield server
    finally:
        _teardown(server)


def _teardown(server: PgServer) -> None:
    if KEEP:
        if server.data_dir is not None and server.base_dir is not None:
            _kept.append(
                f"server left running: data {server.data_dir}; stop and delete it with: "
                f"kill -INT $(head -1 {server.data_dir}/postmaster.pid); rm -rf {server.base_dir}"
            )
        return
    if server.cluster is None:
        server.query(f"DROP DATABASE IF EXISTS {_ident(server.template)}")
        return
    embedded.stop(server.cluster)
    if server.base_dir is not None:
        shutil.rmtree(server.base_dir, ignore_errors=True)


def _ident(name: str) -> str:
    from spawn_db.escape import escape_identifier

    return escape_identifier(name)


# -- per-test fixtures ---------------------------------------------------------------------


class DatabaseFactory:
    """Creates each test database one test ahead, and drops them, in background psql runs.

    ``CREATE DATABASE`` copies the template's ~7 MB of catalogs and takes
    0.1-0.4 s on a busy machine; overlapped with the previous test it costs
    the suite almost nothing.
    """

    def __init__(self, server: PgServer) -> None:
        self.server = server
        self.ahead: tuple[str, subprocess.Popen[str]] | None = None
        self.drops: list[tuple[str, subprocess.Popen[str]]] = []
        self.failures: list[str] = []

    def _run(self, sql: str) -> subprocess.Popen[str]:
        argv = [*self.server.psql_argv(), "-At", "-v", "ON_ERROR_STOP=1", "-c", sql]
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)

    def _create(self) -> tuple[str, subprocess.Popen[str]]:
        name = f"spawn_test_{os.getpid()}_{next(_counter)}"
        sql = f"CREATE DATABASE {_ident(name)} TEMPLATE {_ident(self.server.template)}"
        return name, self._run(sql)

    def take(self) -> str:
        name, proc = self.ahead or self._create()
        _, err = proc.communicate(timeout=300)
        if proc.returncode != 0:
            self.ahead = None
            raise RuntimeError(f"cannot create test database {name}: {err.strip()}")
        self.ahead = self._create()
        self._reap(block=False)
        return name

    def drop(self, name: str) -> None:
        self.drops.append((name, self._run(f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")))

    def _reap(self, *, block: bool) -> None:
        keep: list[tuple[str, subprocess.Popen[str]]] = []
        for name, proc in self.drops:
            if not block and proc.poll() is None:
                keep.append((name, proc))
                continue
            _, err = proc.communicate(timeout=300)
            if proc.returncode != 0:
                self.failures.append(f"{name}: {err.strip()}")
        self.drops = keep

    def close(self) -> None:
        if self.ahead is not None:
            name, proc = self.ahead
            proc.communicate(timeout=300)
            if proc.returncode == 0:
                self.drop(name)
            self.ahead = None
        self._reap(block=True)
        if self.failures:
            raise RuntimeError("could not drop test databases: " + "; ".join(self.failures))


@pytest.fixture(scope="session")
def _database_factory(pg_server: PgServer) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(pg_server)
    yield factory
    factory.close()


@pytest.fixture
def database(
    _database_factory: DatabaseFactory, pg_server: PgServer, request: pytest.FixtureRequest
) -> Iterator[TestDatabase]:
    name = _database_factory.take()
    yield TestDatabase(name=name, server=pg_server)
    if KEEP:
        _kept.append(f"{request.node.nodeid}: {pg_server.connect_hint(name)}")
    else:
        _database_factory.drop(name)


@pytest.fixture
def db_project(database: TestDatabase, tmp_path: Path) -> DbProject:
    from spawn_db.project import init_project

    root = tmp_path / "project"
    init = init_project(root)
    direct = ", ".join(toml_string(a) for a in database.psql_argv())
    init.config_path.write_text(
        'spawn_folder = "spawn"\n'
        'target = "local"\n'
        "\n"
        "[targets.local]\n"
        'engine = "postgres-psql"\n'
        'environment = "dev"\n'
        f"command = {{ kind = \"direct\", direct = [{direct}] }}\n",
        encoding="utf-8",
    )
    return DbProject(root=root, database=database, config_path=init.config_path,
                     spawn_dir=root / "spawn")


@dataclass
class EmbeddedProject:
    """A project from ``spawn init`` with the default embedded target, in a folder the
    unprivileged server user can enter; its server is stopped and deleted afterwards."""

    root: Path

    def run(self, *args: str, input: str | None = None,
            env: dict[str, str] | None = None) -> Result:
        return run_spawn(*args, cwd=self.root, input=input, env=env)


@pytest.fixture
def embedded_project() -> Iterator[EmbeddedProject]:
    base = Path(tempfile.mkdtemp(prefix="spawn-proj-", dir="/tmp"))
    os.chmod(base, 0o755)
    root = base / "project"
    root.mkdir()
    from spawn_db.project import init_project

    init_project(root)
    try:
        yield EmbeddedProject(root)
    finally:
        _stop_project_server(root)
        shutil.rmtree(base, ignore_errors=True)


def _stop_project_server(root: Path) -> None:
    from spawn_db.config import Overrides, load_config

    try:
        config = load_config(Overrides(config_file=str(root / "spawn.toml")))
        for target in config.targets.values():
            if target.command.kind == "embedded":
                cluster = embedded.project_cluster(config, target)
                embedded.stop(cluster)
                # Its tablespace in RAM (fresh test databases) outlives the project.
                ram = embedded.ram_folder(cluster)
                if ram is not None:
                    shutil.rmtree(ram, ignore_errors=True)
    except Exception as exc:  # teardown must not hide the test's own failure
        print(f"warning: could not stop the embedded server of {root}: {exc}")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not _kept:
        return
    terminalreporter.section("databases kept (SPAWN_TEST_KEEP_DB=1)")
    for line in _kept:
        terminalreporter.write_line(line)
