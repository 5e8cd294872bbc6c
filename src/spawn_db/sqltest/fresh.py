"""Fresh test databases: a template built from the migrations, one copy per test.

With ``[tests] database = "fresh"`` every test runs in its own database,
``CREATE DATABASE spawn_testdb_… TEMPLATE spawn_tpl_…``, on the target's
server. The template is built by applying the migrations, from their pins as
``spawn migration apply`` would (the pin rule decides whether an unpinned one
renders from the working tree), in apply's order, to a new database, which is
then marked ``IS_TEMPLATE``. Its name is a hash of what went into it (each
migration's name, rendered checksum and pin, and the environment; the checksum
covers the variables), so an unchanged project reuses it and a changed one
gets a new one. A build takes an advisory lock first, so two spawn processes
(or the threads of one ``-j`` run) build it once; the other waits and reuses it.

A copy costs one ``CREATE DATABASE`` (a file copy of a small database), far
less than applying the migrations per test. A test's psql reaches its copy
with ``\\connect`` (``db.target.reconnect_input``), which keeps everything else
the target's command connects with.

This module is also the Python API the pytest plugin (``spawn_db.pytest_plugin``) builds
on: ``FreshDatabases`` (``ensure_template``: project -> template name, ``copy_template``:
template -> a new database, ``drop_database``), and ``run_on`` (migrations, or their
down scripts, run on a given database).
"""

from __future__ import annotations

import dataclasses
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from spawn_db.config import Config
from spawn_db.errors import (
    ControlError,
    MigrationFailed,
    NotFoundError,
    NotPinned,
    SpawnError,
    TemplateBuildFailed,
)
from spawn_db.escape import escape_identifier, escape_literal
from spawn_db.project import Project
from spawn_db.render.sqlvalue import SqlMarkup

if TYPE_CHECKING:
    from spawn_db.db.engine import Engine
    from spawn_db.db.psql import ControlSession
    from spawn_db.migrate.rendered import Rendered
    from spawn_db.migrate.sources import Sources

TEMPLATE_PREFIX = "spawn_tpl_"
COPY_PREFIX = "spawn_testdb_"
MAX_DATABASE_NAME = 63
# Bumped when what a template holds changes for the same inputs, so old ones are not reused.
TEMPLATE_FORMAT = "1"
# The first half of the two-int advisory key of a template build ("spwT"); the second is
# derived from the template's name. apply's migration lock uses the one-bigint form, so the
# two never meet in pg_locks.
BUILD_LOCK_CLASS = 0x73707754


@dataclass(frozen=True)
class TemplateInputs:
    """Everything a template is built from; its name is their hash."""

    environment: str
    # (name, rendered checksum in hex, pin hash or "") in apply order.
    migrations: tuple[tuple[str, str, str], ...]
    # The tablespace the template is created in ("": the server's default, and then the
    # hash is what it was before tablespaces), so changing it builds a new template.
    tablespace: str = ""

    @property
    def name(self) -> str:
        """``spawn_tpl_`` and 32 hex digits of the inputs' hash: 42 bytes, below 63."""
        import xxhash

        digest = xxhash.xxh3_128()
        digest.update(f"spawn template {TEMPLATE_FORMAT}\0{self.environment}\0".encode())
        for name, checksum, pin in self.migrations:
            digest.update(f"{name}\0{checksum}\0{pin}\0".encode())
        if self.tablespace:
            digest.update(f"tablespace\0{self.tablespace}\0".encode())
        return f"{TEMPLATE_PREFIX}{digest.hexdigest()}"


@dataclass
class TemplateBuild:
    """The rendered migrations of one template, ready to run; ``close`` frees them."""

    inputs: TemplateInputs
    scripts: list[Rendered] = field(default_factory=list)
    repeatables: set[str] = field(default_factory=set)

    def close(self) -> None:
        for script in self.scripts:
            script.close()


# -- which migrations -------------------------------------------------------------------------


def template_migrations(config: Config, migrate_to: str | None = None) -> list[str]:
    """The migrations a fresh database gets, in the order apply would run them on an empty
    one (drafts left out, ``requires`` honoured); up to ``migrate_to`` when given."""
    from spawn_db.migrate.apply import Planner

    names = list(Planner.load(config, None).plan({}).to_run)
    if migrate_to is None:
        return names
    if migrate_to not in names:
        raise NotFoundError(
            f"migrate_to {migrate_to!r} is not a migration apply would run on a new database "
            f"(it is missing, or a draft); pick one of {_shown(names)}"
        )
    return names[:names.index(migrate_to) + 1]


def _shown(names: list[str]) -> str:
    more = f" and {len(names) - 5} more" if len(names) > 5 else ""
    return (", ".join(names[:5]) + more) if names else "(no migrations)"


def render_template(config: Config, names: list[str], *, variables: Any = None,
                    repeatables: bool = True) -> TemplateBuild:
    """``names`` rendered as apply renders them: from the pin, or from the working tree
    for an unpinned migration where the pin rule makes pins optional; then, unless
    ``repeatables`` is False (a template built only up to ``migrate_to``), every
    repeatable migration in ``requires`` order, from the working tree, as apply runs
    them after the migrations."""
    from spawn_db.migrate.apply import pins_optional
    from spawn_db.migrate.sources import Sources

    optional = pins_optional(config, True)
    sources = Sources(config)
    build = TemplateBuild(TemplateInputs(config.environment, ()))
    try:
        for position, name in enumerate(names, 1):
            build.scripts.append(_render_one(sources, name, optional, variables, position))
        if repeatables:
            _render_repeatables(config, build, variables)
    except BaseException:
        build.close()
        raise
    build.inputs = TemplateInputs(config.environment, tuple(
        (f"repeatable:{s.name}" if s.name in build.repeatables else s.name,
         s.checksum.hex(), s.pin or "") for s in build.scripts))
    return build


def _render_one(sources: Sources, name: str, optional: bool, variables: Any,
                position: int, script: str = "up.sql") -> Rendered:
    """Migration ``name`` (``audit:<m>``: from that source's folder, components and pins)
    rendered as apply renders it, named as given, so a template's hash and its errors
    tell the sources apart."""
    from spawn_db.migrate.rendered import render_migration, uses_pin

    source, bare = sources.split(name)
    from_pin = uses_pin(source.config, bare, True, optional)
    if from_pin and not (source.config.migrations_dir / bare / "lock.toml").is_file():
        raise NotPinned(
            f"migration {name} is not pinned (no lock.toml), and fresh test databases "
            "are built from pins; run `spawn migration pin "
            f"{name}`, or make pins optional for this target "
            '(`pin = "optional"` in its [targets.<name>] table)'
        )
    rendered = render_migration(source.config, bare, pinned=from_pin, variables=variables,
                                position=position, script=script)
    rendered.name = name
    return rendered


def _render_repeatables(config: Config, build: TemplateBuild, variables: Any) -> None:
    from spawn_db.migrate.repeatable import (
        in_order,
        load_all,
        render_repeatable,
        repeatable_names,
    )

    for name in in_order(load_all(config, repeatable_names(config))):
        build.scripts.append(render_repeatable(config, name, variables=variables,
                                               position=len(build.scripts) + 1))
        build.repeatables.add(name)


# -- the template -----------------------------------------------------------------------------


def ensure_template(config: Config, *, migrate_to: str | None = None, variables: Any = None,
                    engine: Engine | None = None,
                    on_build: Callable[[str], None] | None = None) -> str:
    """The name of a template database holding the migrations (up to ``migrate_to``),
    built now unless one with the same inputs exists; ``on_build`` hears the name when
    this call builds it."""
    from spawn_db.db.engine import engine_for

    engine = engine or engine_for(config)
    build = render_template(config, template_migrations(config, migrate_to),
                            variables=variables, repeatables=migrate_to is None)
    try:
        control = engine.control_session(None)
        try:
            from spawn_db.sqltest.tablespace import template_tablespace

            tablespace = template_tablespace(config, control)
            build.inputs = dataclasses.replace(build.inputs, tablespace=tablespace or "")
            name = build.inputs.name
            if is_template(control, name):
                return name
            with _build_lock(control, name):
                if is_template(control, name):
                    return name
                if on_build is not None:
                    on_build(name)
                _build(config, engine, control, name, build, variables)
            return name
        finally:
            control.close()
    finally:
        build.close()


def is_template(control: ControlSession, name: str) -> bool:
    """Whether ``name`` exists and is marked as a template (a build that died half way
    leaves a database that is not)."""
    found = control.query(
        "SELECT datistemplate FROM pg_catalog.pg_database WHERE datname = "
        f"{escape_literal(name)}", what="look for the template database")
    return found == "t"


def build_lock_key(name: str) -> tuple[int, int]:
    """The two-int advisory key a build of template ``name`` holds, in the database the
    target's command connects to (advisory locks are per database)."""
    import xxhash

    return BUILD_LOCK_CLASS, xxhash.xxh32_intdigest(name.encode()) & 0x7FFFFFFF


@contextmanager
def _build_lock(control: ControlSession, name: str) -> Iterator[None]:
    """Hold the advisory lock of ``name``'s build in ``control``'s session: a second
    builder waits here, then finds the template made."""
    from spawn_db.migrate.schema_drift import advisory_lock

    with advisory_lock(control, build_lock_key(name), "template build"):
        yield


def _build(config: Config, engine: Engine, control: ControlSession, name: str,
           build: TemplateBuild, variables: Any) -> None:
    """Create ``name``, run the migrations on it and mark it a template; on any failure
    the half-built database is dropped and the migration's error raised."""
    drop_database(control, name)
    where = build.inputs.tablespace
    try:
        control.query(f"CREATE DATABASE {escape_identifier(name)}"
                      + (f" TABLESPACE {escape_identifier(where)}" if where else ""),
                      what="create the template database")
    except ControlError as exc:
        raise TemplateBuildFailed(
            f"cannot create the template database {name} on the target's server: the user "
            f"the target's command connects as needs CREATEDB. {exc.message}"
        ) from None
    try:
        for script in build.scripts:
            kind = "repeatable" if script.name in build.repeatables else "migration"
            _run_migration(engine, name, script, kind)
        control.query(f"ALTER DATABASE {escape_identifier(name)} IS_TEMPLATE true",
                      what="mark the template database")
    except BaseException:
        drop_database(control, name)
        raise


def _run_migration(engine: Engine, database: str, script: Rendered,
                   kind: str = "migration") -> None:
    """One migration in a psql of its own connected to ``database``, checked to its end
    (as apply checks a verify script); its error, as psql printed it, otherwise."""
    error = script_error(engine, database, script)
    if error is not None:
        raise TemplateBuildFailed(
            f"{kind} {script.name} failed while building the template database "
            f"{database} for fresh test databases, so no test ran; fix the {kind} "
            f"(psql said:)\n{error}"
        )


def script_error(engine: Engine, database: str, script: Rendered) -> str | None:
    """Run ``script`` in a psql of its own connected to ``database``, checked to its end
    (as apply checks a verify script); psql's error, or None when it ran cleanly."""
    from spawn_db.db.target import reconnect_input
    from spawn_db.migrate.verify import run_verify

    return run_verify(engine, script, opening=reconnect_input(database))


def run_on(config: Config, engine: Engine, database: str, names: list[str], *,
           variables: Any = None, down: bool = False, repeatables: bool = False) -> None:
    """Run migrations ``names`` (``down``: their ``down.sql``) on ``database``, rendered
    and checked as a template build runs them, with no tracking rows: how the pytest
    plugin takes a ``spawn_db_at`` database, or a check's scratch database, one migration
    further (or back). ``repeatables`` runs every repeatable after ``names``, as a
    template build does."""
    if down:
        from spawn_db.migrate.apply import pins_optional
        from spawn_db.migrate.migration import DOWN
        from spawn_db.migrate.sources import Sources

        optional = pins_optional(config, True)
        sources = Sources(config)
        for name in names:
            rendered = _render_one(sources, name, optional, variables, 1, DOWN)
            try:
                _run_step(engine, database, rendered, "the down.sql of migration")
            finally:
                rendered.close()
        return
    build = render_template(config, names, variables=variables, repeatables=repeatables)
    try:
        for script in build.scripts:
            kind = "repeatable" if script.name in build.repeatables else "migration"
            _run_step(engine, database, script, kind)
    finally:
        build.close()


def _run_step(engine: Engine, database: str, script: Rendered, what: str) -> None:
    error = script_error(engine, database, script)
    if error is not None:
        raise MigrationFailed(f"{what} {script.name} failed on database {database}; fix it "
                              f"(psql said:)\n{error}")


# -- copies -----------------------------------------------------------------------------------


def copy_name(label: str) -> str:
    """``spawn_testdb_<random>_<label>``, cut to PostgreSQL's 63 bytes (never inside a
    UTF-8 character), unique per call."""
    name = f"{COPY_PREFIX}{secrets.token_hex(4)}_{label}"
    return name.encode("utf-8")[:MAX_DATABASE_NAME].decode("utf-8", "ignore")


def copy_template(control: ControlSession, template: str, label: str) -> str:
    """A new database copied from ``template``; its name, for ``drop_database`` later."""
    name = copy_name(label)
    control.query(f"CREATE DATABASE {escape_identifier(name)} TEMPLATE "
                  f"{escape_identifier(template)}", what=f"copy the template for {label}")
    return name


def drop_database(control: ControlSession, name: str, *, attempts: int = 50) -> None:
    """Drop ``name`` if it exists (a template is unmarked first). The session that used
    it has ended but its server process may not have yet, so PostgreSQL 13+ is told to
    end it (``FORCE``) and older servers are asked again for a few seconds (``attempts``
    tries, 0.1 s apart)."""
    quoted = escape_identifier(name)
    literal = escape_literal(name)
    control.query(
        "DO $spawn$ BEGIN IF EXISTS (SELECT FROM pg_catalog.pg_database WHERE datname = "
        f"{literal} AND datistemplate) THEN EXECUTE format('ALTER DATABASE %I IS_TEMPLATE "
        f"false', {literal}::text); END IF; END $spawn$", what=f"unmark template {name}")
    force = int(str(control.info.get("server_version_num", 0))) >= 130000
    sql = f"DROP DATABASE IF EXISTS {quoted}" + (" WITH (FORCE)" if force else "")
    for attempt in range(attempts):
        try:
            control.query(sql, what=f"drop database {name}")
            return
        except ControlError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.1)


def rename_database(control: ControlSession, old: str, new: str) -> None:
    """Rename ``old`` (nobody connected to it) to ``new``: a catalog update, far cheaper
    than the copy it renames."""
    control.query(f"ALTER DATABASE {escape_identifier(old)} RENAME TO "
                  f"{escape_identifier(new)}", what=f"name the test database {new}")


POOL_LABEL = "ready"
# Drops queued for the dropper beyond which the makers stop making copies and drop too.
MAX_PENDING_DROPS = 8


class FreshDatabases:
    """The templates and copies of one test run; safe to use from the threads of ``-j``.

    A copy takes a server-side ``CREATE DATABASE … TEMPLATE`` of tens of
    milliseconds, and a drop about as long. Neither needs to be on a test's
    path: once ``expect_copies`` says how many copies of a template the run
    will ask for, ``makers`` background threads (each with a control session
    of its own; one could not keep up with ``-j 2`` of short tests) keep up to
    ``ahead`` of them made ahead, named ``spawn_testdb_…_ready``; ``copy``
    takes one and renames it after its test (a catalog update), and ``drop``
    hands the copy to one more thread (a drop waits for a checkpoint; the
    makers help only once ``close`` began or when drops pile up). They never
    make more copies than were announced, so a finished
    run leaves nothing; a killed one may leave ready copies, which ``spawn
    test clean`` finds by their prefix like any other test database.

    ``copy_seconds`` records how long each ``copy`` kept its test waiting
    (bench/tests.py reports them). ``close`` waits for the drops and raises the
    first that failed.
    """

    def __init__(self, config: Config, engine: Engine, variables: Any = None,
                 on_build: Callable[[str], None] | None = None, ahead: int = 2,
                 makers: int = 2) -> None:
        import threading

        self.config = config
        self.engine = engine
        self.variables = variables
        self.on_build = on_build
        self.ahead = ahead
        self.makers = makers
        self.templates: dict[str | None, str] = {}
        self.copy_seconds: list[float] = []
        self._control: ControlSession | None = None
        self._session_lock = threading.Lock()
        self._building = threading.Lock()
        # Guards everything below; the background threads wait on it for work.
        self._state = threading.Condition()
        self._wanted: dict[str, int] = {}  # copies still to be asked for, per template
        self._ready: dict[str, list[str]] = {}
        self._making: dict[str, int] = {}
        self._drops: list[str] = []
        self._errors: list[SpawnError] = []
        self._closing = False
        self._workers: list[threading.Thread] = []

    def template(self, migrate_to: str | None = None) -> str:
        """The template for ``migrate_to`` (None: every migration), built at most once."""
        with self._building:
            if migrate_to not in self.templates:
                self.templates[migrate_to] = ensure_template(
                    self.config, migrate_to=migrate_to, variables=self.variables,
                    engine=self.engine, on_build=self.on_build)
            return self.templates[migrate_to]

    def expect_copies(self, template: str, count: int) -> None:
        """The run will ask for ``count`` (more) copies of ``template``: start making them."""
        with self._session_lock:
            self._session()  # started on this thread, for the same reason as in _wake
        with self._state:
            self._wanted[template] = self._wanted.get(template, 0) + count
            self._wake()

    def copy(self, template: str, label: str) -> str:
        """A new database copied from ``template``, named after ``label``: one made ahead
        when there is one (or one being made), else made now."""
        started = time.monotonic()
        with self._state:
            self._wanted[template] = max(0, self._wanted.get(template, 0) - 1)
            while not self._ready.get(template) and self._making.get(template):
                self._state.wait()
            made = self._ready[template].pop(0) if self._ready.get(template) else None
            self._wake()
        with self._session_lock:
            if made is None:
                name = copy_template(self._session(), template, label)
            else:
                name = self._rename(made, label)
        self.copy_seconds.append(time.monotonic() - started)
        return name

    def _rename(self, made: str, label: str) -> str:
        name = copy_name(label)
        try:
            rename_database(self._session(), made, name)
        except BaseException:
            self.drop(made)
            raise
        return name

    def drop(self, name: str) -> None:
        """Drop ``name`` soon, off the caller's path; ``close`` waits for it."""
        with self._state:
            self._drops.append(name)
            self._wake()

    def query(self, sql: str, *, what: str = "query") -> str:
        """``sql`` in the control session (on the database the target connects to)."""
        with self._session_lock:
            return self._session().query(sql, what=what)

    def _session(self) -> ControlSession:
        """The session of the renames, which are on each test's path. Its commits do not
        wait for the disk: on a durable server (``fsync = on``, the embedded server's
        default) a synchronous rename waits for a WAL flush (median 4-5 ms against 0.3 ms
        on this machine, bench/README.md). A rename lost in a crash is harmless: the copy
        keeps its ``_ready`` name, which ``spawn test clean`` finds. ``CREATE`` and
        ``DROP DATABASE`` still wait, as PostgreSQL makes them."""
        if self._control is None:
            from spawn_db.migrate.schema_drift import FAST_COMMITS

            control = self.engine.control_session(None)
            try:
                control.query(FAST_COMMITS, what="make the copies' renames asynchronous")
            except BaseException:
                control.close()
                raise
            self._control = control
        return self._control

    # -- the background thread --

    def _wake(self) -> None:
        """Start the threads if there is work for them, and tell them (``_state`` held)."""
        import threading

        if not self._workers and (self._drops or self._fill_needed() is not None):
            # The sessions (psql processes) are started here, not in the threads: a thread
            # that forks while the main thread is in ThreadPoolExecutor.submit (``-j``)
            # can break that executor's lock ("release unlocked lock", seen in CI runs).
            # One more session than makers: the one that drops. A drop waits for a
            # checkpoint (PostgreSQL forces one), which on a durable server means the disk:
            # a maker doing it would leave tests waiting for copies meanwhile.
            sessions = [self.engine.control_session(None)
                        for _ in range(max(1, self.makers) + 1)]
            for number, session in enumerate(sessions):
                worker = threading.Thread(target=self._work, args=(session, number == 0),
                                          daemon=True, name=f"spawn-fresh-copies-{number}")
                self._workers.append(worker)
                worker.start()
        self._state.notify_all()

    def _fill_needed(self) -> str | None:
        """A template with fewer copies made or being made than ``ahead`` and its
        remaining demand allow (``_state`` held)."""
        if self._closing:
            return None
        for template, wanted in self._wanted.items():
            have = len(self._ready.get(template, ())) + self._making.get(template, 0)
            if have < min(self.ahead, wanted):
                return template
        return None

    def _work(self, session: ControlSession, dropper: bool) -> None:
        """The dropper drops; the others make copies ahead (a test may be waiting for one),
        and help with the drops once ``close`` began; all end when ``close`` says so and
        nothing is left to drop."""
        try:
            while (task := self._next_task(dropper)) is not None:
                kind, name = task
                if kind == "make":
                    self._make_ahead(session, name)
                else:
                    self._drop_now(session, name)
        finally:
            session.close()

    def _next_task(self, dropper: bool) -> tuple[str, str] | None:
        """("make", template) or ("drop", database), waiting for one; None at the end.

        Makers also drop once ``close`` began, and when drops pile up (a slow pool must
        not pile up copies on the server's disk)."""
        with self._state:
            while True:
                piled = len(self._drops) >= MAX_PENDING_DROPS
                template = None if dropper or piled else self._fill_needed()
                if template is not None:
                    self._making[template] = self._making.get(template, 0) + 1
                    return "make", template
                if self._drops and (dropper or piled or self._closing):
                    self._state.notify_all()
                    return "drop", self._drops.pop(0)
                if self._closing:
                    return None
                self._state.wait()

    def _make_ahead(self, session: ControlSession, template: str) -> None:
        made: str | None = None
        try:
            made = copy_template(session, template, POOL_LABEL)
        except SpawnError:
            # ``copy`` then makes its own copy and reports what goes wrong with it.
            with self._state:
                self._wanted[template] = 0
        finally:
            with self._state:
                self._making[template] -= 1
                if made is not None:
                    # After ``close`` began, no test will take it.
                    (self._drops if self._closing
                     else self._ready.setdefault(template, [])).append(made)
                self._state.notify_all()

    def _drop_now(self, session: ControlSession, name: str) -> None:
        try:
            drop_database(session, name)
        except SpawnError as exc:
            with self._state:
                self._errors.append(exc)

    def close(self) -> None:
        """Drop the copies made ahead that no test took, wait for every drop, end the
        sessions; the first drop that failed is raised."""
        with self._state:
            self._closing = True
            for names in self._ready.values():
                self._drops.extend(names)
            self._ready.clear()
            self._state.notify_all()
            workers = list(self._workers)
        for worker in workers:
            worker.join()
        with self._state:
            self._workers.clear()
            self._closing = False
            self._wanted.clear()
        with self._session_lock:
            if self._control is not None:
                self._control.close()
                self._control = None
        errors, self._errors = self._errors, []
        if errors:
            raise errors[0]


# -- spawn test clean -------------------------------------------------------------------------


@dataclass(frozen=True)
class Cleaned:
    """What ``spawn test clean`` dropped, by kind, in name order."""

    templates: tuple[str, ...]
    copies: tuple[str, ...]
    # The scratch databases ``spawn migration drift`` keeps (``migrate.schema_drift``).
    scratch: tuple[str, ...] = ()
    # The embedded server's RAM folder, when its tablespace was dropped with it.
    ram_folder: str | None = None


def spawn_databases(control: ControlSession) -> tuple[list[str], list[str]]:
    """The templates and test databases spawn made on this server, by name prefix."""
    templates, copies, _scratch = _by_prefix(control, TEMPLATE_PREFIX, COPY_PREFIX)
    return templates, copies


def _by_prefix(control: ControlSession, *prefixes: str) -> list[list[str]]:
    """The databases on the server whose names start with each of ``prefixes`` and the
    drift scratch prefix (the last list), in name order."""
    from spawn_db.migrate.schema_drift import SCRATCH_PREFIX

    every = (*prefixes, SCRATCH_PREFIX)
    wanted = " OR ".join(f"datname LIKE {escape_literal(_like_prefix(p))}" for p in every)
    rows = control.query(
        f"SELECT datname FROM pg_catalog.pg_database WHERE {wanted} ORDER BY datname",
        what="list spawn's test databases")
    names = [row for row in rows.splitlines() if row]
    return [[n for n in names if n.startswith(prefix)] for prefix in every]


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("_", "\\_").replace("%", "\\%") + "%"


def clean(config: Config, *, engine: Engine | None = None) -> Cleaned:
    """Drop every template and test database spawn made on the target's server, and the
    scratch databases ``spawn migration drift`` kept there."""
    from spawn_db.db.engine import engine_for
    from spawn_db.sqltest.tablespace import drop_if_empty, forget_lost_copies, ram_place

    engine = engine or engine_for(config)
    place = ram_place(config)
    control = engine.control_session(None)
    try:
        templates, copies, scratch = _by_prefix(control, TEMPLATE_PREFIX, COPY_PREFIX)
        location = forget_lost_copies(control, place, (TEMPLATE_PREFIX, COPY_PREFIX))
        for name in copies + templates + scratch:
            drop_database(control, name)
        dropped = location is not None and drop_if_empty(control, location)
    finally:
        control.close()
    return Cleaned(tuple(templates), tuple(copies), tuple(scratch),
                   location if dropped else None)


# -- apply_migration() in tests ---------------------------------------------------------------


def apply_migration_function(config: Config, variables: Any) -> Callable[[Any], SqlMarkup]:
    """``{{ apply_migration("<m>") }}`` for test templates: the migration's SQL as
    ``spawn migration build --pinned`` renders it, inlined. Only pinned migrations: a
    test must not depend on a working tree that no deploy will ever run."""
    project = Project(config)

    def apply_migration(name: Any) -> SqlMarkup:
        from spawn_db.migrate.rendered import render_migration
        from spawn_db.migrate.sources import Sources

        if not isinstance(name, str) or not name:
            raise NotFoundError(f"apply_migration() takes a migration's folder name as a "
                                f"string, not {name!r}")
        source, bare = Sources(config).split(name)  # audit:<m>: a [[sources]] folder's
        folder = source.config.migrations_dir / bare
        if not (folder / "up.sql").is_file():
            raise NotFoundError(
                f"apply_migration({name!r}): there is no migration {name} "
                f"({project.display(folder)}/up.sql does not exist); use a folder name from "
                "`spawn migration list`")
        if not (folder / "lock.toml").is_file():
            raise NotPinned(
                f"apply_migration({name!r}): migration {name} is not pinned (no lock.toml), "
                f"and tests inline migrations from their pins; run `spawn migration pin {name}`")
        rendered = render_migration(source.config, bare, pinned=True, variables=variables)
        try:
            rendered.spool.seek(0)
            return SqlMarkup(rendered.spool.read().decode("utf-8"))
        finally:
            rendered.close()

    return apply_migration
