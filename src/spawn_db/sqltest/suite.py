"""Golden-file tests (SPEC §7): create, render, run, expect and compare.

A test is ``tests/<name>/test.sql``, rendered like a migration (components
from the working tree) and streamed into psql after the preamble; psql's
stdout and stderr, merged in the order psql wrote them, are the output. A
test whose SQL fails still has an output, compared like any other, so only
problems spawn itself cannot get past (a template error, a timeout) are
reported as errors rather than differences.
"""

from __future__ import annotations

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
    CommandUnavailable,
    DatabaseUnreachable,
    SpawnError,
    TestError,
    UsageError,
)
from spawn_db.fsutil import atomic_write, atomic_write_text
from spawn_db.project import Project, validate_name
from spawn_db.render.template import WorkingTreeSource
from spawn_db.sqltest.golden import Diff
from spawn_db.sqltest.golden import diff as golden_diff

if TYPE_CHECKING:
    from spawn_db.sqltest.runner import OutputSink

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


def build_test(config: Config, name: str, *, variables: Any = None) -> Iterator[str]:
    """Chunks of the rendered ``test.sql`` (components from the working tree)."""
    from spawn_db.render.template import compile_template, template_context

    project = Project(config)
    path = project.find_test(name) / "test.sql"
    renderer = compile_template(
        path.read_bytes().decode("utf-8"),  # not read_text: it would turn CRLF into LF
        project.display(path),
        WorkingTreeSource(config.components_dir),
    )
    return renderer.generate(template_context(config, variables or {}))


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
    # Called with the test's name before it runs (the CLI's ``before_test`` hooks); what
    # it raises is the test's error.
    before: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        from spawn_db.db.target import psql_argv

        if not self.argv:
            self.argv = psql_argv(self.config)
        self.project = Project(self.config)

    def run(
        self, name: str, *, sink: OutputSink | None = None, cancel: threading.Event | None = None
    ) -> TestRun:
        """Render and run the test; template errors raise before psql starts when possible."""
        from spawn_db.db.target import PSQL_PREAMBLE
        from spawn_db.sqltest.runner import RenderFailed, application_name, make_reaper, run_script

        if self.before is not None:
            self.before(name)
        app_name = application_name(name)
        script = _script(self.config, name, self.variables, app_name)
        try:
            done = run_script(
                self.argv, script, app_name=app_name, timeout=self.timeout,
                cancel=cancel, sink=sink, reaper=make_reaper(self.argv, PSQL_PREAMBLE),
            )
        except RenderFailed as exc:
            raise exc.error from None
        if done.exit_code == 2 and done.output.startswith(CONNECTION_FAILED):
            raise _unreachable(name, done.output)
        return TestRun(name, done.output, done.exit_code, done.duration, done.timed_out)

    def expect(self, name: str, *, cancel: threading.Event | None = None) -> ExpectResult:
        """Run the test and write its output to ``expected``; nothing is written on timeout."""
        path = self.config.tests_dir / name / "expected"
        try:
            done = self.run(name, cancel=cancel)
        except (TestError, CommandUnavailable, DatabaseUnreachable):
            raise
        except SpawnError as exc:
            return ExpectResult(name, path, None, exc.message)
        if done.timed_out:
            return ExpectResult(name, path, done, self.timeout_note())
        if done.exit_code is None:
            return ExpectResult(name, path, done, "was interrupted")
        atomic_write(path, done.output)
        return ExpectResult(name, path, done)

    def compare(self, name: str, *, cancel: threading.Event | None = None) -> TestOutcome:
        """Run the test and diff its output against ``expected``.

        Whatever the test does is an outcome; only ``TestError`` (the target's
        command cannot be started, which no other test will get past) raises.
        """
        path = self.config.tests_dir / name / "expected"
        start = time.monotonic()
        try:
            done = self.run(name, cancel=cancel)
        except (TestError, CommandUnavailable, DatabaseUnreachable):
            raise
        except SpawnError as exc:
            return TestOutcome(name, "error", "", None, NO_DIFF, time.monotonic() - start,
                               exc.message)
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


def _script(config: Config, name: str, variables: Any, app_name: str) -> Iterator[bytes]:
    """The preamble, a silent ``SET application_name``, and the rendered test, as bytes.

    The ``SET`` names the session even when the target's command does not pass
    ``PGAPPNAME`` on (``docker exec``, ``ssh``), so a stopped test's backend can
    still be found and terminated; with ``QUIET on`` it prints nothing.

    Up to ``PREFETCH_BYTES`` of the render happen before psql starts, so a
    template error in any test of ordinary size stops before anything reaches
    the database; larger renders stream.
    """
    from spawn_db.db.target import PSQL_PREAMBLE
    from spawn_db.escape import escape_literal

    chunks = build_test(config, name, variables=variables)
    opening = f"{PSQL_PREAMBLE}SET application_name = {escape_literal(app_name)};\n"
    head: list[bytes] = [opening.encode("utf-8")]
    size = 0
    for chunk in chunks:
        data = chunk.encode("utf-8")
        head.append(data)
        size += len(data)
        if size >= PREFETCH_BYTES:
            break
    return itertools.chain(head, (chunk.encode("utf-8") for chunk in chunks))


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
