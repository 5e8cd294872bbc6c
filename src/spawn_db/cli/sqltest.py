"""``spawn test ...``: golden-file tests."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from spawn_db.cli.context import App, complete_tests, pass_app
from spawn_db.cli.migration import load_variables_option, no_hooks_option, variables_option
from spawn_db.cli.output import (
    LineBuffer,
    LiveBar,
    echo,
    emit_json,
    info,
    note,
    paint,
    stream_complete,
    use_color,
    warn,
)
from spawn_db.config import DEFAULT_TEST_TIMEOUT
from spawn_db.errors import FileAccessError, UsageError

if TYPE_CHECKING:
    from spawn_db.api import Project, TestReport
    from spawn_db.config import Config
    from spawn_db.project import Project as Files
    from spawn_db.sqltest.suite import ExpectResult, TestOutcome


@click.group()
def test() -> None:
    """Create, run and compare golden-file SQL tests."""


@test.command("new")
@click.argument("name")
@pass_app
def new(app: App, name: str) -> None:
    """Create tests/NAME/test.sql with a starter script."""
    from spawn_db.sqltest.suite import new_test

    config = app.config()
    new_test(config, name)
    info(f"Created {config.tests_dir / name / 'test.sql'}")


@test.command("build")
@click.argument("name", shell_complete=complete_tests)
@variables_option
@pass_app
def build(app: App, name: str, variables_path: str | None) -> None:
    """Render tests/NAME/test.sql to stdout."""
    from spawn_db.sqltest.suite import build_test

    config = app.config()
    chunks = build_test(config, name, variables=load_variables_option(config, variables_path))
    stream_complete(chunks, trailer="\n")


jobs_option = click.option(
    "-j", "--jobs", type=click.IntRange(min=1), default=None, metavar="N",
    help="Tests to run at the same time (default: the number of CPUs).",
)
timeout_option = click.option(
    "--timeout", type=click.FloatRange(min=0), default=DEFAULT_TEST_TIMEOUT, show_default=True,
    metavar="SECONDS",
    help="Stop a test that runs longer and terminate its session (0: no limit).",
)


class CliTestReporter:
    """The test commands' progress (``api.TestReporter``): the notes about templates
    being built, test.toml warnings, the live bar while the tests run, hooks' output on
    stderr (so the tests' own output on stdout stays what psql printed); ``show`` prints
    each result as it comes, ``done`` the report of ``compare``."""

    def __init__(self, verb: str, names: Sequence[str] = (),
                 show: Callable[[Any], None] | None = None,
                 done: Callable[[TestReport], None] | None = None) -> None:
        self.verb = verb
        self.names = list(names)
        self.results: list[Any] = []
        self.bar: LiveBar | None = None
        self.sink: Callable[[bytes | None], None] | None = None
        self._show = show
        self._done = done

    def building(self, template: str) -> None:
        note(f"Building template database {template} from the migrations (fresh test "
             "databases)")

    def warning(self, text: str) -> None:
        warn(text)

    def running(self, names: Sequence[str]) -> None:
        self.bar = LiveBar(len(names), self.verb)
        self.sink = _output_sink(self.bar)

    def started(self, name: str) -> None:
        if self.bar is not None:
            self.bar.begin(name)

    def ended(self, name: str) -> None:
        if self.bar is not None:
            self.bar.end(name)

    def result(self, result: Any) -> None:
        self.results.append(result)
        if self._show is not None:
            self._show(result)

    def stopped(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def finished(self, report: TestReport) -> None:
        if self._done is not None:
            self._done(report)

    def output(self, text: str) -> None:
        echo(text.rstrip("\n"), err=True)

    def stream(self, data: bytes | None) -> None:
        """``test run``'s sink: psql's output as it comes (``_output_sink``)."""
        assert self.sink is not None  # made when the test starts running
        self.sink(data)


def _project(app: App, variables_path: str | None) -> Project:
    """The project the test commands run through (``--variables`` read when a runner is
    made, after the tests named were found, as before)."""
    from spawn_db.api import Project

    return Project(app.config(), variables_path)


def _kept_line(database: str) -> str:
    return (f"note: database {database} was kept to inspect; `spawn test clean` drops it")


def _jobs(jobs: int | None) -> int:
    from spawn_db.sqltest.suite import default_jobs

    return jobs or default_jobs()


@test.command("run")
@click.argument("name", shell_complete=complete_tests)
@timeout_option
@variables_option
@no_hooks_option
@pass_app
def run(app: App, name: str, timeout: float, variables_path: str | None,
        no_hooks: bool) -> None:
    """Run tests/NAME/test.sql and print its output (stdout and stderr merged)."""
    from spawn_db.sqltest.suite import TestRun

    def kept(done: TestRun) -> None:
        if done.timed_out and done.database is not None:
            note(_kept_line(done.database))

    reporter = CliTestReporter("running", show=kept)
    _project(app, variables_path).run_test(name, timeout=timeout, hooks=not no_hooks,
                                           reporter=reporter, sink=reporter.stream)


def _output_sink(bar: LiveBar) -> Callable[[bytes | None], None]:
    """Where ``test run`` streams psql's output: stdout, byte for byte; ``None`` flushes.

    While a live bar may be drawn on the same terminal, the output goes above the bar a
    whole line at a time (a half line would be drawn over), decoded as UTF-8 as the
    terminal would.
    """
    import sys

    sys.stdout.flush()
    out = sys.stdout.buffer
    if not bar.enabled or not sys.stdout.isatty():
        def raw(data: bytes | None) -> None:
            if data:
                out.write(data)
                out.flush()

        return raw
    lines = LineBuffer()

    def by_line(data: bytes | None) -> None:
        for line in lines.feed(data) if data is not None else lines.end():
            echo(line)

    return by_line


@test.command("expect")
@click.argument("name", required=False, shell_complete=complete_tests)
@click.option("-y", "--yes", is_flag=True, help="Rewrite every test without asking.")
@jobs_option
@timeout_option
@variables_option
@no_hooks_option
@pass_app
def expect(
    app: App, name: str | None, yes: bool, jobs: int | None, timeout: float,
    variables_path: str | None, no_hooks: bool,
) -> None:
    """Run NAME (or every test) and write its output to tests/NAME/expected."""
    from spawn_db.project import Project as Files

    project = _project(app, variables_path)
    config = project.config
    if name is None and not project.tests():
        note(f"No tests in {config.tests_dir}.")
        return
    files = Files(config)
    report = project.expect(
        name, jobs=_jobs(jobs), timeout=timeout, hooks=not no_hooks,
        reporter=CliTestReporter("running", show=lambda r: _report_expected(files, r)),
        confirm=None if name is not None else lambda names: _confirm_rewrite(names, yes))
    if report.cancelled or report.failed:
        raise SystemExit(1)


def _report_expected(files: Files, result: ExpectResult) -> None:
    _report_written(files, result)
    if result.kept_database:
        note(_kept_line(result.kept_database))


def _report_written(files: Files, result: ExpectResult) -> None:
    if result.written:
        assert result.run is not None
        lines = result.run.output.count(b"\n")
        info(f"Wrote {files.display(result.path)} ({_plural(lines, 'line')})")
        if result.run.exit_code not in (0, 3):
            warn(f"psql exited with code {result.run.exit_code} for {result.name} (the "
                 "connection failed or was lost); check the recorded output")
        return
    echo(f"error: {result.name}: {result.error}; "
         f"{files.display(result.path)} was not written", err=True)


def _confirm_rewrite(names: Sequence[str], yes: bool) -> bool:
    """Ask before rewriting every test's ``expected``; False: the user said no."""
    import sys

    note(f"This rewrites the expected output of {_plural(len(names), 'test')}:")
    for test_name in names:
        note(f"  {test_name}")
    if yes:
        return True
    if not sys.stdin.isatty():
        raise UsageError(
            "not rewriting expected files without confirmation: stdin is not a terminal; "
            "pass --yes to rewrite them all"
        )
    return click.confirm("Rewrite them?", default=False, err=True)


@test.command("compare")
@click.argument("name", required=False, shell_complete=complete_tests)
@jobs_option
@timeout_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@click.option("--junit", "junit_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Also write a JUnit XML report to FILE (for CI test summaries).")
@variables_option
@no_hooks_option
@pass_app
def compare(
    app: App, name: str | None, jobs: int | None, timeout: float, fmt: str,
    junit_path: str | None, variables_path: str | None, no_hooks: bool,
) -> None:
    """Run NAME (or every test) and diff its output against tests/NAME/expected.

    Prints [PASS] or [FAIL] per test, then a line-numbered diff (expected vs
    actual) for each failure; exits 1 if any test failed.
    """
    if junit_path:
        _check_writable_folder(junit_path)
    project = _project(app, variables_path)
    color = fmt == "text" and use_color()

    def show(outcome: TestOutcome) -> None:
        if fmt == "text":
            info(_status_line(outcome, color))

    def done(report: TestReport) -> None:
        outcomes = list(report.outcomes)
        if junit_path:
            _write_junit(junit_path, outcomes, report.seconds)
        if fmt == "json":
            from spawn_db.sqltest.report import report_dict

            emit_json(report_dict(outcomes, report.seconds))
        else:
            _print_failures(project.config, outcomes, color)
            info(_summary_line(outcomes, report.seconds))

    names = [name] if name is not None else list(project.tests())
    reporter = CliTestReporter("comparing", names, show=show, done=done)
    try:
        report = project.compare(name, jobs=_jobs(jobs), timeout=timeout, hooks=not no_hooks,
                                 reporter=reporter)
    except KeyboardInterrupt:
        click.echo(_interrupted_line(names, reporter.results), err=True)
        raise
    if not report.passed:
        raise SystemExit(1)


@test.command("clean")
@pass_app
def clean(app: App) -> None:
    """Drop the template and test databases of fresh mode on the target's server.

    Only databases spawn made, found by name: spawn_tpl_* (templates),
    spawn_testdb_* (test databases kept after a failure, or left by an
    interrupted run) and spawn_drift_* (what `spawn migration drift` keeps).
    """
    from spawn_db.sqltest.fresh import clean as drop_all

    cleaned = drop_all(app.config())
    for template in cleaned.templates:
        info(f"Dropped template {template}")
    for copy in cleaned.copies:
        info(f"Dropped test database {copy}")
    for scratch in cleaned.scratch:
        info(f"Dropped drift scratch database {scratch}")
    if cleaned.ram_folder is not None:
        info(f"Dropped tablespace spawn_ram and its folder {cleaned.ram_folder}")
    if not (cleaned.templates or cleaned.copies or cleaned.scratch or cleaned.ram_folder):
        note("Nothing to drop: no spawn_tpl_*, spawn_testdb_* or spawn_drift_* databases on "
             "the server.")


def _interrupted_line(names: list[str], outcomes: list[TestOutcome]) -> str:
    """What Ctrl-C (or SIGTERM) cut short, before click's ``Aborted!``."""
    passed = sum(1 for o in outcomes if o.passed)
    left = names[len(outcomes):]
    shown = ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else "")
    return (f"interrupted after {len(outcomes)} of {len(names)} tests ({passed} passed, "
            f"{len(outcomes) - passed} failed); not finished: {shown or 'none'}")


def _status_line(outcome: TestOutcome, color: bool) -> str:
    if outcome.passed:
        return f"{_style('[PASS]', color, 'bold green')} {outcome.name}"
    return f"{_style('[FAIL]', color, 'bold red')} {outcome.name}"


def _print_failures(config: Config, outcomes: list[TestOutcome], color: bool) -> None:
    from spawn_db.project import Project as Files

    files = Files(config)
    for outcome in outcomes:
        if outcome.passed:
            continue
        info("")
        if outcome.status != "fail":
            info(f"{_style(outcome.name, color, 'bold')}: {outcome.error}")
            if outcome.kept_database:
                info(_kept_line(outcome.kept_database))
            continue
        expected = files.display(files.config.tests_dir / outcome.name / "expected")
        info(_style(f"--- {expected}", color, "bold"))
        info(_style(f"+++ actual output of {outcome.name}", color, "bold"))
        for line, text in zip(outcome.diff.lines, outcome.diff.render(), strict=True):
            info(_style(text, color, DIFF_STYLES.get(line.kind, "")))
        if outcome.error:
            info(f"note: {outcome.error}")
        if outcome.kept_database:
            info(_kept_line(outcome.kept_database))


# rich styles of the diff's line kinds (``golden.DiffLine.kind``); context lines stay plain.
DIFF_STYLES: dict[str, str] = {
    "hunk": "cyan",
    "removed": "red",
    "added": "green",
    "note": "dim",
}


def _summary_line(outcomes: list[TestOutcome], duration: float) -> str:
    passed = sum(1 for o in outcomes if o.passed)
    failed = len(outcomes) - passed
    return (f"{_plural(len(outcomes), 'test')}: {passed} passed, {failed} failed "
            f"in {duration:.2f}s")


def _check_writable_folder(path: str) -> None:
    """Refuse a --junit path that cannot be written before any test runs, not after."""
    from pathlib import Path

    from spawn_db.project import check_path_length

    check_path_length(Path(path).absolute(), "--junit file")
    folder = Path(path).absolute().parent
    if not folder.is_dir():
        raise UsageError(f"cannot write --junit {path}: folder {folder} does not exist; "
                         "create it first")
    if not os.access(folder, os.W_OK):
        raise FileAccessError(f"cannot write --junit {path}: folder {folder} is not writable "
                              "(permissions or a read-only file system); pick a writable folder")


def _write_junit(path: str, outcomes: list[TestOutcome], duration: float) -> None:
    from pathlib import Path

    from spawn_db.fsutil import atomic_write
    from spawn_db.sqltest.report import junit_xml

    try:
        atomic_write(Path(path), junit_xml(outcomes, duration))
    except OSError as exc:
        raise FileAccessError.from_os_error(exc, f"--junit {path}") from exc


def _style(text: str, color: bool, style: str) -> str:
    """``text`` in a rich ``style`` when colouring, else exactly ``text``."""
    return paint(text, style) if color and style else text


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"
