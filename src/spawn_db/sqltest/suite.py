"""Golden-file tests (SPEC §7): create, render, run, expect and compare.

A test is ``tests/<name>/test.sql``, rendered like a migration (components
from the working tree) and streamed into psql after the preamble; psql's
stdout and stderr, merged in the order psql wrote them, are the output. A
test whose SQL fails still has an output, compared like any other, so only
problems spawn itself cannot get past (a template error, a timeout) are
reported as errors rather than differences.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from spawn_db.config import DEFAULT_TEST_TIMEOUT, Config
from spawn_db.errors import (
    ConfigError,
    DatabaseUnreachable,
    SpawnError,
    TemplateBuildFailed,
    TestError,
    UsageError,
)
from spawn_db.fsutil import atomic_write, atomic_write_text
from spawn_db.project import Project, validate_name
from spawn_db.render.template import WorkingTreeSource
from spawn_db.sqltest.golden import Diff
from spawn_db.sqltest.golden import diff as golden_diff

if TYPE_CHECKING:
    from spawn_db.render.template import RenderContext
    from spawn_db.sqltest.fresh import FreshDatabases
    from spawn_db.sqltest.runner import OutputSink, ScriptRun
    from spawn_db.sqltest.sessions import SessionPlan
    from spawn_db.sqltest.settings import TestSettings

STARTER_TEST = """\
-- Test {name}: psql runs this script; its output (stdout and stderr, merged)
-- is compared with the `expected` file next to it.
-- Write assertions as queries, always with ORDER BY, and avoid printing
-- timestamps or generated ids. Run `spawn test expect {name}` to record the
-- output, then `spawn test compare {name}` to check it.
\\set VERBOSITY terse

SELECT 1 AS answer;
"""


def new_test(config: Config, name: str) -> str:
    """Create ``tests/<name>/test.sql`` with a starter script; return its folder name."""
    validate_name(name, "test")
    folder = config.tests_dir / name
    if folder.exists():
        raise UsageError(f"{folder} already exists; choose another name")
    folder.mkdir(parents=True)
    atomic_write_text(folder / "test.sql", STARTER_TEST.format(name=name))
    return name


def build_test(
    config: Config, name: str, *, variables: Any = None, sessions: SessionPlan | None = None,
    context: RenderContext | None = None,
) -> Iterator[str]:
    """Chunks of the rendered ``test.sql`` (components from the working tree); ``context``
    when the caller wants to see which secrets it used.

    ``bg``, ``step`` and ``wait`` record into ``sessions``; without one (``spawn
    test build``) they render as comments saying what they would do. A deterministic
    test (``freeze_time``/``seed`` in ``test.toml``) renders with seeded uuid functions
    and whole, so its time keywords can be rewritten.
    """
    import copy

    from spawn_db.render.template import compile_template, template_context
    from spawn_db.sqltest.fresh import apply_migration_function
    from spawn_db.sqltest.sessions import SessionPlan

    project = Project(config)
    path = project.find_test(name) / "test.sql"
    source = WorkingTreeSource(config.components_dir)
    renderer = compile_template(
        path.read_bytes().decode("utf-8"),  # not read_text: it would turn CRLF into LF
        project.display(path),
        source,
    )
    context = context or template_context(config, variables or {})
    context["apply_migration"] = apply_migration_function(config, variables or {})
    plan = sessions if sessions is not None else SessionPlan(preview=True)
    plan.attach(path.parent, project.display, source, copy.copy(context))
    context.update(plan.functions())
    settings = settings_of(config, name)
    if not settings.deterministic:
        return renderer.generate(context)
    from spawn_db.sqltest.determinism import render_globals, rewrite_keywords

    renderer.template.environment.globals.update(render_globals(settings, name))
    return iter([rewrite_keywords(renderer.render(context))])


def settings_of(config: Config, name: str) -> TestSettings:
    """``tests/<name>/test.toml``, read on each run so an edit counts at once."""
    from spawn_db.sqltest.settings import SETTINGS_FILE, load_test_settings

    project = Project(config)
    folder = project.find_test(name)
    return load_test_settings(folder, project.display(folder / SETTINGS_FILE))


PREFETCH_BYTES = 1 << 20
NO_DIFF = Diff((), 1)


def default_jobs() -> int:
    """The number of CPUs this process may run on."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class TestRun:
    """One run of a test: psql's merged stdout and stderr, and how it ended."""

    __test__ = False

    name: str
    output: bytes
    exit_code: int | None
    duration: float
    timed_out: bool = False
    database: str | None = None

    @property
    def text(self) -> str:
        return decode(self.output)


TestStatus = Literal["pass", "fail", "missing", "timeout", "error"]


@dataclass(frozen=True)
class TestOutcome:
    """The result of comparing one test's output with its ``expected`` file."""

    __test__ = False

    name: str
    status: TestStatus
    output: str
    expected: str | None
    diff: Diff
    duration: float
    error: str | None = None
    exit_code: int | None = None
    kept_database: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True)
class ExpectResult:
    """``expected`` written for a test, or why it was not (``error``)."""

    name: str
    path: Path
    run: TestRun | None
    error: str | None = None
    kept_database: str | None = None

    @property
    def written(self) -> bool:
        return self.error is None


def decode(data: bytes) -> str:
    """Text for diffs and reports; bytes that are not UTF-8 stay distinguishable."""
    return data.decode("utf-8", errors="backslashreplace")


def select_tests(config: Config, name: str | None = None) -> list[str]:
    """``[name]`` after checking it exists, or every test of the project, sorted."""
    project = Project(config)
    if name is not None:
        project.find_test(name)
        return [name]
    return project.test_names()


@dataclass
class TestRunner:
    """Runs a project's tests against the selected target; safe to use from threads.

    The psql command is resolved once, up front: a provider command runs once
    per invocation, and the embedded server is started before any test does.
    """

    __test__ = False

    config: Config
    variables: Any = None
    timeout: float | None = DEFAULT_TEST_TIMEOUT
    argv: list[str] = field(default_factory=list)
    on_build: Callable[[str], None] | None = None
    # Called with the test's name before it runs (the CLI's ``before_test`` hooks); what
    # it raises is the test's error.
    before: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        from spawn_db.db.target import psql_argv

        if not self.argv:
            self.argv = psql_argv(self.config)
        self.project = Project(self.config)
        self._settings: dict[str, TestSettings] = {}
        self._fresh: FreshDatabases | None = None

    # -- fresh databases ([tests] database = "fresh", sqltest.fresh) --

    def settings(self, name: str) -> TestSettings:
        """The test's ``test.toml``, read once."""
        from spawn_db.sqltest.settings import load_test_settings

        if name not in self._settings:
            folder = self.config.tests_dir / name
            self._settings[name] = load_test_settings(
                folder, self.project.display(folder / "test.toml"))
        return self._settings[name]

    def check_settings(self, names: list[str]) -> list[str]:
        """Read every test's ``test.toml`` (a bad one stops the run before anything
        else); the warnings to show."""
        return [w for name in names for w in self.settings(name).warnings]

    def prepare(self, names: list[str]) -> None:
        """Build the templates the fresh tests among ``names`` need, before any test
        runs: a template that fails to build stops the run. Then the copies they will
        take start being made ahead."""
        counts: dict[str, int] = {}
        for name in names:
            template = self._template_key(name)
            if template is not False:
                built = self.fresh.template(template)
                counts[built] = counts.get(built, 0) + 1
        for built, count in counts.items():
            self.fresh.expect_copies(built, count)

    def _template_key(self, name: str) -> str | Literal[False] | None:
        """False when ``name`` runs on the target; else its ``migrate_to`` (resolved to a
        folder name; None: every migration)."""
        settings = self.settings(name)
        mode = settings.database or self.config.tests_database
        if mode == "target" and settings.migrate_to is None:
            return False
        if settings.migrate_to is None:
            return None
        from spawn_db.migrate.sources import Sources

        try:  # audit:<m> names a [[sources]] folder's migration
            return Sources(self.config).resolve(settings.migrate_to)
        except SpawnError as exc:
            raise type(exc)(f"{self.project.display(self.config.tests_dir / name)}/test.toml: "
                            f"migrate_to: {exc.message}") from None

    @property
    def fresh(self) -> FreshDatabases:
        if self._fresh is None:
            from spawn_db.db.psql import PsqlEngine
            from spawn_db.sqltest.fresh import FreshDatabases

            self._fresh = FreshDatabases(self.config, PsqlEngine(self.argv), self.variables,
                                         on_build=self.on_build)
        return self._fresh

    def _database_for(self, name: str) -> str | None:
        """A fresh copy of the test's template, or None when it runs on the target."""
        template = self._template_key(name)
        if template is False:
            return None
        return self.fresh.copy(self.fresh.template(template), name)

    def settle(self, done: TestRun | None, *, keep: bool) -> str | None:
        """Drop ``done``'s fresh database, or keep it (its name returned) to inspect."""
        if done is None or done.database is None:
            return None
        if keep:
            return done.database
        self.fresh.drop(done.database)
        return None

    def close(self) -> None:
        """End the session that created the fresh databases."""
        if self._fresh is not None:
            self._fresh.close()

    def run(
        self, name: str, *, sink: OutputSink | None = None, cancel: threading.Event | None = None
    ) -> TestRun:
        """Render and run the test; template errors raise before psql starts when possible.

        A test in a fresh database gets its copy first; the caller ``settle``s it. When
        the test cannot run at all the copy is dropped here."""
        database = self._database_for(name)
        try:
            return self._run(name, database, sink, cancel)
        except BaseException:
            if database is not None:
                with contextlib.suppress(SpawnError):  # the first error is the one to report
                    self.fresh.drop(database)
            raise

    def _run(self, name: str, database: str | None, sink: OutputSink | None,
             cancel: threading.Event | None) -> TestRun:
        from spawn_db.db.target import PSQL_PREAMBLE
        from spawn_db.sqltest.runner import RenderFailed, application_name, make_reaper, run_script
        from spawn_db.sqltest.sessions import SessionPlan

        if self.before is not None:
            self.before(name)
        app_name = application_name(name)
        plan = SessionPlan()
        script = _script(self.config, name, self.variables, app_name, plan, database)
        if plan.used:
            done = self._run_sessions(self.argv, script, plan, app_name, cancel, sink)
        else:
            plan.closed = True
            try:
                done = run_script(
                    self.argv, script, app_name=app_name, timeout=self.timeout,
                    cancel=cancel, sink=sink, reaper=make_reaper(self.argv, PSQL_PREAMBLE),
                )
            except RenderFailed as exc:
                raise exc.error from None
        if done.exit_code == 2 and done.output.startswith(CONNECTION_FAILED):
            raise _unreachable(name, done.output)
        return TestRun(name, done.output, done.exit_code, done.duration, done.timed_out,
                       database)

    def _run_sessions(
        self, argv: list[str], script: Iterator[bytes], plan: SessionPlan, app_name: str,
        cancel: threading.Event | None, sink: OutputSink | None,
    ) -> ScriptRun:
        """A test that uses ``bg``/``step``/``wait``: rendered whole, cut at its control
        points and run by ``sessions`` (docs/testing.md#concurrent-sessions). Every
        session connects with ``argv``, the test's own; the first chunk of ``script``,
        the test's opening (preamble, application_name), starts each of them too."""
        from spawn_db.db.target import PSQL_PREAMBLE
        from spawn_db.sqltest.runner import make_reaper
        from spawn_db.sqltest.sessions import run_sessions

        opening, *rest = script
        items = plan.split(b"".join(rest).decode("utf-8"))
        return run_sessions(
            argv, items, opening=opening.decode("utf-8"), app_name=app_name,
            timeout=self.timeout, cancel=cancel, sink=sink,
            reaper=make_reaper(argv, PSQL_PREAMBLE, prefix=True),
        )

    def expect(self, name: str, *, cancel: threading.Event | None = None) -> ExpectResult:
        """Run the test and write its output to ``expected``; nothing is written on timeout."""
        path = self.config.tests_dir / name / "expected"
        try:
            done = self.run(name, cancel=cancel)
        except (TestError, ConfigError, DatabaseUnreachable, TemplateBuildFailed):
            raise
        except SpawnError as exc:
            return ExpectResult(name, path, None, exc.message)
        kept = self.settle(done, keep=done.timed_out)
        if done.timed_out:
            return ExpectResult(name, path, done, self.timeout_note(), kept)
        if done.exit_code is None:
            return ExpectResult(name, path, done, "was interrupted", kept)
        atomic_write(path, done.output)
        return ExpectResult(name, path, done, kept_database=kept)

    def compare(self, name: str, *, cancel: threading.Event | None = None) -> TestOutcome:
        """Run the test and diff its output against ``expected``.

        Whatever the test does is an outcome; only ``TestError`` (the target's
        command cannot be started, which no other test will get past) raises.
        """
        path = self.config.tests_dir / name / "expected"
        start = time.monotonic()
        try:
            done = self.run(name, cancel=cancel)
        except (TestError, ConfigError, DatabaseUnreachable, TemplateBuildFailed):
            raise
        except SpawnError as exc:
            return TestOutcome(name, "error", "", None, NO_DIFF, time.monotonic() - start,
                               exc.message)
        outcome = self._outcome(name, done, path)
        kept = self.settle(done, keep=outcome.status in ("fail", "timeout"))
        return dataclasses.replace(outcome, kept_database=kept) if kept else outcome

    def _outcome(self, name: str, done: TestRun, path: Path) -> TestOutcome:
        expected_bytes = path.read_bytes() if path.is_file() else None
        expected = None if expected_bytes is None else decode(expected_bytes)
        actual = done.text
        if done.timed_out:
            return TestOutcome(name, "timeout", actual, expected, NO_DIFF, done.duration,
                               self.timeout_note(), done.exit_code)
        if done.exit_code is None:
            return TestOutcome(name, "error", actual, expected, NO_DIFF, done.duration,
                               "was interrupted")
        if expected_bytes is None or expected is None:
            return TestOutcome(
                name, "missing", actual, None, NO_DIFF, done.duration,
                f"{self.project.display(path)} does not exist; run `spawn test expect {name}` "
                "to record the current output", done.exit_code,
            )
        if expected_bytes == done.output:
            return TestOutcome(name, "pass", actual, expected, NO_DIFF, done.duration,
                               None, done.exit_code)
        return TestOutcome(name, "fail", actual, expected, golden_diff(expected, actual),
                           done.duration, _exit_note(done.exit_code), done.exit_code)

    def timeout_message(self, name: str) -> str:
        return f"test {name} {self.timeout_note()}"

    def timeout_note(self) -> str:
        return (
            f"did not finish within {self.timeout:g}s and was stopped (its session was "
            "terminated); make it faster or raise --timeout"
        )


# What psql prints, and nothing before it, when it cannot connect at start-up (exit 2);
# a failed \connect inside a test reads "\connect: ..." instead.
CONNECTION_FAILED = b"psql: error: connection to server"


def _unreachable(name: str, output: bytes) -> DatabaseUnreachable:
    from spawn_db.db.target import mask_secrets

    said = mask_secrets(decode(output).strip())
    return DatabaseUnreachable(
        f"cannot connect to the database to run test {name}: {said}\nstart the server (for an "
        "embedded target: spawn db start) or fix the target's `command` in spawn.toml"
    )


def _exit_note(exit_code: int | None) -> str | None:
    """psql exits 2 when the connection failed or was lost, which explains most diffs."""
    if exit_code in (1, 2):
        return f"psql exited with code {exit_code}: the connection failed or was lost"
    return None


def _script(
    config: Config, name: str, variables: Any, app_name: str,
    sessions: SessionPlan | None = None, database: str | None = None,
) -> Iterator[bytes]:
    """The preamble, a silent ``SET application_name``, and the rendered test, as bytes.

    The ``SET`` names the session even when the target's command does not pass
    ``PGAPPNAME`` on (``docker exec``, ``ssh``), so a stopped test's backend can
    still be found and terminated; with ``QUIET on`` it prints nothing.

    A test in a fresh ``database`` moves there with ``\\connect`` first (quietly: the
    preamble has set ``QUIET``), so its output is the same as on the target.

    Up to ``PREFETCH_BYTES`` of the render happen before psql starts, so a
    template error in any test of ordinary size stops before anything reaches
    the database; larger renders stream.
    """
    from spawn_db.db.target import PSQL_PREAMBLE, reconnect_input
    from spawn_db.escape import escape_literal
    from spawn_db.render.template import template_context

    context = template_context(config, variables or {})
    chunks = build_test(config, name, variables=variables, sessions=sessions, context=context)
    move = reconnect_input(database) if database is not None else ""
    opening = f"{PSQL_PREAMBLE}{move}SET application_name = {escape_literal(app_name)};\n"
    settings = settings_of(config, name)
    if settings.deterministic:
        from spawn_db.sqltest.determinism import session_sql

        opening += session_sql(settings)
    head: list[bytes] = [opening.encode("utf-8")]
    size = 0
    for chunk in chunks:
        data = chunk.encode("utf-8")
        head.append(data)
        size += len(data)
        if size >= PREFETCH_BYTES:
            break
    used = list(context.secrets.used) if context.secrets is not None else []
    if used:
        from spawn_db.secret.values import fetch, set_commands

        # Part of the opening: every background session starts with the opening too.
        head[0] += set_commands(fetch(config, used, variables)).encode("utf-8")
    rest = (chunk.encode("utf-8") for chunk in chunks)
    return itertools.chain(head, _no_new_secrets(rest, context, len(used), name))


def _no_new_secrets(chunks: Iterator[bytes], context: RenderContext, known: int,
                    name: str) -> Iterator[bytes]:
    """The rest of a large test's render; a secret first used past the prefetched part
    could not be set before the script started, so it is an error, not an unset
    variable."""
    for chunk in chunks:
        if context.secrets is not None and len(context.secrets.used) > known:
            raise TestError(
                f"test {name} uses secret({context.secrets.used[known]!r}) only after its "
                f"first {PREFETCH_BYTES >> 20} MiB of rendered text, after psql started; "
                "use it once near the top of test.sql")
        yield chunk


T = TypeVar("T")


def run_ordered(
    names: list[str], work: Callable[[str, threading.Event], T], *, jobs: int
) -> Iterator[T]:
    """``work`` over ``names`` on ``jobs`` threads; results come in the order of ``names``.

    Each result is yielded as soon as it and all before it are done. Closing
    the iterator early (or an interrupt) sets the cancel event, which stops the
    running tests and terminates their sessions.
    """
    cancel = threading.Event()
    if jobs <= 1 or len(names) <= 1:
        for name in names:
            yield work(name, cancel)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="spawn-test") as pool:
        futures = [pool.submit(work, name, cancel) for name in names]
        try:
            for future in futures:
                yield future.result()
        finally:
            cancel.set()
            for future in futures:
                future.cancel()


def compare_tests(
    runner: TestRunner, names: list[str], *, jobs: int = 1
) -> Iterator[TestOutcome]:
    """Outcomes of ``names`` in that order, run ``jobs`` at a time."""
    return run_ordered(names, lambda n, c: runner.compare(n, cancel=c), jobs=jobs)


def expect_tests(
    runner: TestRunner, names: list[str], *, jobs: int = 1
) -> Iterator[ExpectResult]:
    """Write ``expected`` for ``names`` in that order, run ``jobs`` at a time."""
    return run_ordered(names, lambda n, c: runner.expect(n, cancel=c), jobs=jobs)
