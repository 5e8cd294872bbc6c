"""The pytest plugin (entry point ``pytest11``: ``spawn``): a migrated database per test.

An application's test suite asks for ``spawn_db`` and gets a new database copied from a
template that holds every migration (from its pin) and repeatable of the project:
``sqltest/fresh.py``'s machinery, the template named by a hash of its inputs, so it is
built once per change of the migrations (not once per run), under an advisory lock, so
pytest-xdist workers build it once. A copy is one ``CREATE DATABASE ... TEMPLATE``.

The plugin is active wherever spawn is installed, spawn's own test suite included, so it
registers options and fixtures only: nothing is loaded, read or started until a test
asks for a spawn fixture or ``--spawn-checks`` is given. ``-p no:spawn`` turns it off.
docs/pytest.md is the user's page.
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from spawn_db.api import Project
    from spawn_db.config import Config
    from spawn_db.db.engine import Engine
    from spawn_db.sqltest.fresh import FreshDatabases

KEPT_SECTION = "spawn: kept databases"
DEFAULT_TARGET = "spawn-pytest"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("spawn", "spawn: migrated PostgreSQL databases for tests")
    group.addoption("--spawn-project", metavar="PATH", default=None,
                    help="The spawn project (a folder or its spawn.toml; default: the "
                    "nearest spawn.toml from pytest's rootdir).")
    group.addoption("--spawn-target", metavar="NAME", default=None,
                    help="The target of spawn.toml whose server holds the test databases "
                    "(default: the project's embedded server).")
    group.addoption("--spawn-keep-failed", action="store_true", default=False,
                    help="Keep the spawn_db database of a failed test and name it in the "
                    "report (`spawn test clean` drops them).")
    group.addoption("--spawn-checks", action="store_true", default=False,
                    help="Add spawn's migration checks as test items: each migration "
                    "applies, down.sql round-trips, everything pinned, `spawn test "
                    "compare` passes, no drift from the template.")


# -- the session: project, server, template -------------------------------------------------


@dataclass
class SpawnSession:
    """What the spawn fixtures share in one pytest process (an xdist worker has its own):
    the project, its engine and the ``FreshDatabases`` that make and drop copies."""

    project: Project
    fresh: FreshDatabases
    engine: Engine
    argv: list[str]
    scratch: list[str] = field(default_factory=list)
    ladder: _Ladder | None = None
    _dsn_base: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def dsn(self, database: str) -> str:
        """A libpq connection string for ``database`` on the target's server: where the
        server says it listens (its socket folder, or its address) and the role spawn
        connects as. A password is not included: libpq reads ``PGPASSWORD`` or
        ``~/.pgpass`` as usual."""
        with self._lock:
            if self._dsn_base is None:
                self._dsn_base = _ask_dsn_base(self.fresh)
        return f"{self._dsn_base} dbname={_conninfo_value(database)}"

    def close(self) -> None:
        """Drop the checks' scratch databases; end the control session."""
        import contextlib

        from spawn_db.errors import SpawnError

        for name in self.scratch:
            # The server may be gone already; `spawn test clean` finds what is left.
            with contextlib.suppress(SpawnError):
                self.fresh.drop(name)
        self.fresh.close()

    def new_database(self, label: str) -> str:
        """An empty database (``CREATE DATABASE``, from ``template1``), dropped at the
        end of the session."""
        from spawn_db.escape import escape_identifier
        from spawn_db.sqltest.fresh import copy_name

        name = copy_name(label)
        self.fresh.query(f"CREATE DATABASE {escape_identifier(name)}",
                         what=f"create database {name}")
        self.scratch.append(name)
        return name

    def catalog(self, database: str) -> dict[str, Any]:
        """``database``'s schema as ``spawn migration drift`` reads it (spawn's tracking
        schema left out)."""
        from spawn_db.db.catalog import catalog_query, parse_catalog

        schema = self.project.config.target().spawn_schema
        control = self.engine.control_session(database)
        try:
            return parse_catalog(control.query(catalog_query((schema,)),
                                               what=f"read the schema of {database}"))
        finally:
            control.close()


def _ask_dsn_base(fresh: FreshDatabases) -> str:
    """``host=... port=... user=...`` as the server reports them."""
    row = fresh.query(
        "SELECT coalesce(host(inet_server_addr()), split_part(current_setting("
        "'unix_socket_directories'), ',', 1)) || '|' || current_setting('port') || '|' || "
        "current_user")
    host, port, user = row.split("|")
    return (f"host={_conninfo_value(host.strip())} port={port} "
            f"user={_conninfo_value(user)}")


def _shell_word(text: str) -> str:
    import shlex

    return shlex.quote(text)


def _conninfo_value(value: str) -> str:
    """A libpq conninfo value, quoted when it needs to be."""
    if value and re.fullmatch(r"[A-Za-z0-9_./:-]+", value):
        return value
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def load_project(config: pytest.Config) -> Project:
    """The project of ``--spawn-project`` (else the nearest spawn.toml from the rootdir),
    on ``--spawn-target``'s server, else on the project's embedded server."""
    import dataclasses

    from spawn_db.api import Project

    where = config.getoption("spawn_project") or config.rootpath
    target = config.getoption("spawn_target")
    project = Project.load(Path(where), target=target)
    if target is not None:
        project.config.target()  # an unknown name fails here, naming the targets
        return project
    return dataclasses.replace(project, config=_embedded(project.config))


def _embedded(config: Config) -> Config:
    """``config`` on the project's embedded server: the selected target when it is
    embedded, else a copy of it (environment, variables, pin rule kept) whose command is
    ``{ kind = "embedded" }``, so tests never reach a shared database by default."""
    import dataclasses

    from spawn_db.config import CommandSpec, TargetConfig

    selected = config.target() if config.target_name is not None else None
    if selected is not None and selected.command.kind == "embedded":
        return config
    base = selected or TargetConfig(name=DEFAULT_TARGET, engine="postgres-psql",
                                    command=CommandSpec("embedded"))
    target = dataclasses.replace(base, name=DEFAULT_TARGET, command=CommandSpec("embedded"),
                                 spawn_database=None)
    return dataclasses.replace(config, targets={**config.targets, DEFAULT_TARGET: target},
                               target_override=DEFAULT_TARGET)


SESSION_KEY = pytest.StashKey["SpawnSession"]()


def spawn_session(config: pytest.Config) -> SpawnSession:
    """The process's ``SpawnSession``, made on first use (the fixtures and the checks
    share it) and closed when pytest ends (``pytest_unconfigure``)."""
    found = config.stash.get(SESSION_KEY, None)
    if found is not None:
        return found
    from spawn_db.db.psql import PsqlEngine
    from spawn_db.db.target import psql_argv
    from spawn_db.sqltest.fresh import FreshDatabases

    project = load_project(config)
    argv = psql_argv(project.config)
    engine = PsqlEngine(argv)
    variables = project.variables()
    made = SpawnSession(project, FreshDatabases(project.config, engine, variables), engine,
                        argv)
    config.stash[SESSION_KEY] = made
    return made


def pytest_unconfigure(config: pytest.Config) -> None:
    """Close the session; a database that cannot be dropped now (the server went away)
    is said on stderr, not raised: the run's result is the tests'."""
    from spawn_db.errors import SpawnError

    found = config.stash.get(SESSION_KEY, None)
    if found is None:
        return
    try:
        found.close()
    except SpawnError as exc:
        import sys

        sys.stderr.write(f"spawn: {exc.message}; `spawn test clean` drops what is left\n")


@pytest.fixture(scope="session")
def _spawn_session(pytestconfig: pytest.Config) -> SpawnSession:
    return spawn_session(pytestconfig)


@pytest.fixture(scope="session")
def spawn_project(_spawn_session: SpawnSession) -> Project:
    """The loaded ``spawn_db.Project`` the fixtures use (target: see ``--spawn-target``)."""
    return _spawn_session.project


@dataclass(frozen=True)
class SpawnTemplate:
    """The template database: every migration (from its pin) and repeatable applied.
    ``name`` is ``spawn_tpl_`` and a hash of its inputs."""

    name: str
    dsn: str


@pytest.fixture(scope="session")
def spawn_template(_spawn_session: SpawnSession) -> SpawnTemplate:
    """The template ``spawn_db`` copies, built now unless one with the same inputs
    exists (on this server, from an earlier run or another xdist worker)."""
    name = _spawn_session.fresh.template(None)
    return SpawnTemplate(name, _spawn_session.dsn(name))


# -- one database per test ------------------------------------------------------------------


@dataclass(frozen=True)
class SpawnDatabase:
    """A test's own database. ``dsn`` is a libpq connection string (psycopg, SQLAlchemy
    with ``postgresql+psycopg://``'s ``connect_args``, asyncpg via its parts); ``name`` is
    the database's name; ``psql(sql)`` runs SQL through the target's psql."""

    name: str
    dsn: str
    session: SpawnSession = field(repr=False)

    def psql(self, sql: str) -> str:
        """Run ``sql`` in a psql of its own on this database (stopping at the first
        error); what it printed, unaligned and without headers (``-At``), the final
        newline removed. An error raises ``spawn_db.errors.PsqlError`` with psql's
        message."""
        from spawn_db.db.target import PSQL_PREAMBLE, reconnect_input, session_env
        from spawn_db.errors import PsqlError

        script = (f"{PSQL_PREAMBLE}\\pset format unaligned\n\\pset tuples_only on\n"
                  f"{reconnect_input(self.name)}\\set QUIET off\n{sql}\n")
        done = subprocess.run([*self.session.argv, "-X", "-q"], input=script,
                              capture_output=True, text=True, check=False,
                              env=session_env())
        if done.returncode != 0:
            said = done.stderr.strip()
            raise PsqlError(f"psql failed on database {self.name} (exit {done.returncode}): "
                            f"{said}", exit_code=done.returncode, stderr=said)
        return done.stdout.removesuffix("\n")

    def apply(self, migration: str) -> None:
        """Run ``migration`` (a name or unique suffix; from its pin, as apply would) on this
        database: a ``spawn_db_at`` database taken one migration further, to test a data
        migration on seeded rows."""
        from spawn_db.migrate.sources import Sources
        from spawn_db.sqltest.fresh import run_on

        config = self.session.project.config
        name = Sources(config).resolve(migration)  # audit:<m>: a [[sources]] folder's
        run_on(config, self.session.engine, self.name, [name],
               variables=self.session.project.variables())


KEEP_KEY = pytest.StashKey[list[str]]()
FAILED_KEY = pytest.StashKey[bool]()


def _label(node: pytest.Item) -> str:
    return re.sub(r"[^a-z0-9_]+", "_", node.name.lower()).strip("_") or "test"


class _Databases:
    """The databases one test made; dropped at its end unless kept."""

    def __init__(self, session: SpawnSession, request: pytest.FixtureRequest) -> None:
        self.session = session
        self.request = request
        self.made: list[str] = []
        request.node.stash[KEEP_KEY] = self.made

    def copy(self, template: str, *, ahead: bool = True) -> SpawnDatabase:
        """A copy of ``template`` named after the test; with ``ahead`` the next test's copy
        is started now (``FreshDatabases``' background makers), so a test waits for a copy
        only when tests follow each other faster than the server copies."""
        fresh = self.session.fresh
        name = fresh.copy(template, _label(self.request.node))
        if ahead:
            fresh.expect_copies(template, 1)
        self.made.append(name)
        return SpawnDatabase(name, self.session.dsn(name), self.session)

    def finish(self) -> None:
        keep = (self.request.config.getoption("spawn_keep_failed")
                and self.request.node.stash.get(FAILED_KEY, False))
        if keep:
            return
        for name in self.made:
            self.session.fresh.drop(name)


@pytest.fixture
def spawn_db(_spawn_session: SpawnSession, spawn_template: SpawnTemplate,
             request: pytest.FixtureRequest) -> Iterator[SpawnDatabase]:
    """A new database with every migration applied, copied from ``spawn_template``;
    dropped after the test (kept on failure with ``--spawn-keep-failed``)."""
    made = _Databases(_spawn_session, request)
    try:
        yield made.copy(spawn_template.name)
    finally:
        made.finish()


@pytest.fixture
def spawn_db_at(_spawn_session: SpawnSession, request: pytest.FixtureRequest
                ) -> Iterator[Callable[[str], SpawnDatabase]]:
    """``spawn_db_at("<migration>")``: a new database migrated only up to that migration
    (included; no repeatables), from a template of its own, reused like ``spawn_template``.
    Seed it, ``db.apply("<next migration>")``, then assert."""
    from spawn_db.migrate.sources import Sources

    made = _Databases(_spawn_session, request)
    sources = Sources(_spawn_session.project.config)

    def at(migration: str) -> SpawnDatabase:
        template = _spawn_session.fresh.template(sources.resolve(migration))
        return made.copy(template, ahead=False)

    try:
        yield at
    finally:
        made.finish()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, Any, None]:
    """Mark a failed test, so its spawn databases are kept with ``--spawn-keep-failed``,
    and name them in its report."""
    outcome = yield
    _mark_kept(item, outcome.get_result())


def _mark_kept(item: pytest.Item, report: pytest.TestReport) -> None:
    if report.when == "teardown" or not report.failed:
        return
    made = item.stash.get(KEEP_KEY, None)
    if not made or not item.config.getoption("spawn_keep_failed"):
        return
    item.stash[FAILED_KEY] = True
    session = spawn_session(item.config)
    lines = "".join(f"kept database {name}: psql {_shell_word(session.dsn(name))} "
                    "(`spawn test clean` drops it)\n" for name in made)
    report.sections.append((KEPT_SECTION, lines))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Repeat the kept databases' names at the end of the run (xdist workers' too)."""
    kept = [line for report in terminalreporter.stats.get("failed", [])
            for title, text in getattr(report, "sections", ()) if title == KEPT_SECTION
            for line in text.splitlines()]
    if kept:
        terminalreporter.write_sep("-", "spawn: databases kept for failed tests")
        for line in kept:
            terminalreporter.write_line(line)


# -- --spawn-checks -------------------------------------------------------------------------


class CheckFailed(Exception):
    """A migration check found a problem; its message is the whole failure report."""


class SpawnCheck(pytest.Item):
    """One of spawn's migration checks as a test item (``--spawn-checks``)."""

    def __init__(self, *, check: Callable[[SpawnSession], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.check = check

    def runtest(self) -> None:
        self.check(spawn_session(self.config))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> str:
        from spawn_db.errors import SpawnError

        if isinstance(excinfo.value, CheckFailed | SpawnError):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, self.name


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    """With ``--spawn-checks``, spawn's migration checks become test items: added before
    ``-k`` and ``-m`` select (``tryfirst``), and reported as collected so that pytest's
    counts include them."""
    if not config.getoption("spawn_checks"):
        return
    from spawn_db.sqltest.fresh import template_migrations

    project = load_project(config)
    names = template_migrations(project.config)
    checks: list[tuple[str, Callable[[SpawnSession], None]]] = [("pinned", _check_pinned)]
    checks += [(f"applies[{name}]", _applies(index)) for index, name in enumerate(names)]
    checks += [(f"round-trip[{name}]", _round_trip(index)) for index, name in enumerate(names)
               if (project.config.migrations_dir / name / "down.sql").is_file()]
    checks += [("template-drift", _check_template), ("compare", _check_compare)]
    made = [SpawnCheck.from_parent(session, name=name, nodeid=f"spawn-checks::{name}",
                                   check=check)
            for name, check in checks]
    config.hook.pytest_collectreport(report=pytest.CollectReport(
        "spawn-checks", "passed", None, list(made)))
    items.extend(made)


def _check_pinned(session: SpawnSession) -> None:
    """Every migration but a draft has a readable lock.toml."""
    entries = session.project.migrations()
    unpinned = [e.name for e in entries if e.pin is None and not e.draft]
    broken = [e.lock_problem for e in entries if e.lock_problem is not None]
    if unpinned:
        raise CheckFailed(f"{len(unpinned)} migration(s) not pinned: {', '.join(unpinned)}; "
                          "run `spawn migration pin --all` and commit the lock.toml files")
    if broken:
        raise CheckFailed("broken pins:\n" + "\n".join(p for p in broken if p))


@dataclass
class _Ladder:
    """One scratch database taking the migrations one at a time, in apply's order: the
    ``applies[...]`` checks climb it, whatever order xdist hands them out in."""

    database: str
    names: list[str]
    done: int = 0
    failed: tuple[str, str] | None = None  # (migration, psql's message)


def _applies(index: int) -> Callable[[SpawnSession], None]:
    def check(session: SpawnSession) -> None:
        from spawn_db.errors import SpawnError
        from spawn_db.sqltest.fresh import run_on, template_migrations

        config = session.project.config
        ladder = _ladder(session, template_migrations(config))
        name = ladder.names[index]
        while ladder.done <= index and ladder.failed is None:
            step = ladder.names[ladder.done]
            try:
                run_on(config, session.engine, ladder.database, [step],
                       variables=session.project.variables())
            except SpawnError as exc:
                ladder.failed = (step, exc.message)
            else:
                ladder.done += 1
        if ladder.failed is None or ladder.done > index:
            return
        step, said = ladder.failed
        if step == name:
            raise CheckFailed(f"migration {name} does not apply to a database holding the "
                              f"migrations before it: {said}")
        raise CheckFailed(f"migration {name} was not tried: migration {step}, before it, "
                          "failed (see its own check)")

    return check


def _ladder(session: SpawnSession, names: list[str]) -> _Ladder:
    if session.ladder is None:
        session.ladder = _Ladder(session.new_database("checks"), names)
    return session.ladder


def _round_trip(index: int) -> Callable[[SpawnSession], None]:
    def check(session: SpawnSession) -> None:
        from spawn_db.sqltest.fresh import run_on, template_migrations

        config = session.project.config
        names = template_migrations(config)
        name = names[index]
        if index == 0:
            database = session.new_database("roundtrip")
        else:
            database = session.fresh.copy(session.fresh.template(names[index - 1]),
                                          "roundtrip")
            session.scratch.append(database)
        variables = session.project.variables()
        before = session.catalog(database)
        run_on(config, session.engine, database, [name], variables=variables)
        applied = session.catalog(database)
        run_on(config, session.engine, database, [name], variables=variables, down=True)
        _same(session.catalog(database), before,
              f"migration {name}: its down.sql does not undo its up.sql; after up.sql then "
              "down.sql the schema differs from the one before up.sql (+ left behind by "
              "down.sql, - removed and not restored, ~ changed)")
        run_on(config, session.engine, database, [name], variables=variables)
        _same(session.catalog(database), applied,
              f"migration {name}: applied again after its down.sql, it builds another schema "
              "than the first time (+ only the second time, - only the first, ~ changed)")

    return check


def _same(live: dict[str, Any], built: dict[str, Any], message: str) -> None:
    from spawn_db.migrate.schema_drift import compare

    differences = compare(live, built)
    if differences:
        raise CheckFailed(message + ":\n" + "\n".join(d.line() for d in differences))


def _check_template(session: SpawnSession) -> None:
    """A database built now from every migration and repeatable has the template's
    schema: a reused template that someone changed would hand every test that change."""
    from spawn_db.sqltest.fresh import run_on, template_migrations

    config = session.project.config
    template = session.fresh.template(None)
    database = session.new_database("built")
    run_on(config, session.engine, database, template_migrations(config),
           variables=session.project.variables(), repeatables=True)
    _same(session.catalog(template), session.catalog(database),
          f"the template database {template} differs from a database built from every "
          "migration now (+ only in the template, - only in the new build, ~ changed); drop "
          "it with `spawn test clean` so that the next run rebuilds it")


def _check_compare(session: SpawnSession) -> None:
    """``spawn test compare``: every golden-file test's output matches its expected."""
    report = session.project.compare()
    if report.passed:
        return
    lines = []
    for outcome in report.outcomes:
        if outcome.passed:
            continue
        lines.append(f"{outcome.name}: {outcome.status}"
                     + (f" ({outcome.error})" if outcome.error else ""))
        lines += list(outcome.diff.render())
    raise CheckFailed(f"`spawn test compare`: {len(report.failed)} of "
                      f"{len(report.outcomes)} test(s) failed:\n" + "\n".join(lines))
