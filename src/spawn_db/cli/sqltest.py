"""``spawn test ...``: golden-file tests."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

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
from spawn_db.errors import FileAccessError, TestTimedOut, UsageError

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.migrate.hooks import Hooks
    from spawn_db.sqltest.suite import ExpectResult, TestOutcome, TestRunner

T = TypeVar("T")


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


def _runner(app: App, variables_path: str | None, timeout: float,
            no_hooks: bool = False) -> TestRunner:
    from spawn_db.sqltest.suite import TestRunner

    config = app.config()
    variables = load_variables_option(config, variables_path)
    hooks = _hooks(config, variables, no_hooks)
    return TestRunner(
        config,
        variables=variables,
        timeout=timeout or None,
        on_build=_building,
        before=lambda test_name: hooks.run("before_test", test=test_name),
    )


def _building(template: str) -> None:
    note(f"Building template database {template} from the migrations (fresh test databases)")


def _prepare(runner: TestRunner, names: list[str]) -> None:
    """test.toml warnings, then the fresh databases' templates, before any test runs."""
    for warning in runner.check_settings(names):
        warn(warning)
    runner.prepare(names)


def _kept_line(database: str) -> str:
    return (f"note: database {database} was kept to inspect; `spawn test clean` drops it")


def _hooks(config: Config, variables: object, no_hooks: bool) -> Hooks:
    """spawn.toml's hooks for a test command; what they print goes to stderr, so the
    tests' own output on stdout stays what psql printed."""
    from spawn_db.migrate.hooks import Hooks

    return Hooks(config, variables, enabled=not no_hooks,
                 output=lambda text: echo(text.rstrip("\n"), err=True))


def _after_tests(runner: TestRunner, no_hooks: bool) -> None:
    _hooks(runner.config, runner.variables, no_hooks).run("after_tests")


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
    from spawn_db.sqltest.suite import select_tests

    select_tests(app.config(), name)
    runner = _runner(app, variables_path, timeout, no_hooks)
    try:
        _prepare(runner, [name])
        with LiveBar(1, "running") as bar:
            sink = _output_sink(bar)
            bar.begin(name)
            try:
                done = runner.run(name, sink=sink)
            finally:
                sink(None)
            bar.end(name)
        kept = runner.settle(done, keep=done.timed_out)
    finally:
        runner.close()
    if kept:
        note(_kept_line(kept))
    _after_tests(runner, no_hooks)
    if done.timed_out:
        raise TestTimedOut(runner.timeout_message(name))


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
    from spawn_db.sqltest.suite import run_ordered, select_tests

    config = app.config()
    names = select_tests(config, name)
    if not names:
        note(f"No tests in {config.tests_dir}.")
        return
    runner = _runner(app, variables_path, timeout, no_hooks)
    if name is None:
        _confirm_rewrite(names, yes)
    failed = 0
    try:
        _prepare(runner, names)
        with LiveBar(len(names), "running") as bar:
            for result in run_ordered(names, _tracked(bar, runner.expect), jobs=_jobs(jobs)):
                _report_expected(runner, result)
                failed += not result.written
    finally:
        runner.close()
    _after_tests(runner, no_hooks)
    if failed:
        raise SystemExit(1)


def _report_expected(runner: TestRunner, result: ExpectResult) -> None:
    _report_written(runner, result)
    if result.kept_database:
        note(_kept_line(result.kept_database))


def _report_written(runner: TestRunner, result: ExpectResult) -> None:
    if result.written:
        assert result.run is not None
        lines = result.run.output.count(b"\n")
        info(f"Wrote {runner.project.display(result.path)} ({_plural(lines, 'line')})")
        if result.run.exit_code not in (0, 3):
            warn(f"psql exited with code {result.run.exit_code} for {result.name} (the "
                 "connection failed or was lost); check the recorded output")
        return
    echo(f"error: {result.name}: {result.error}; "
         f"{runner.project.display(result.path)} was not written", err=True)


def _tracked(bar: LiveBar, work: Callable[..., T]) -> Callable[[str, threading.Event], T]:
    """``work`` (``runner.compare`` or ``runner.expect``) telling ``bar`` when each test
    starts and ends; with ``-j`` these calls come from several threads at once."""

    def tracked(name: str, cancel: threading.Event) -> T:
        bar.begin(name)
        try:
            return work(name, cancel=cancel)
        finally:
            bar.end(name)

    return tracked


def _confirm_rewrite(names: list[str], yes: bool) -> None:
    import sys

    note(f"This rewrites the expected output of {_plural(len(names), 'test')}:")
    for test_name in names:
        note(f"  {test_name}")
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            "not rewriting expected files without confirmation: stdin is not a terminal; "
            "pass --yes to rewrite them all"
        )
    if not click.confirm("Rewrite them?", default=False, err=True):
        raise click.exceptions.Exit(1)


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
    import time

    from spawn_db.sqltest.suite import run_ordered, select_tests

    start = time.monotonic()
    if junit_path:
        _check_writable_folder(junit_path)
    names = select_tests(app.config(), name)
    runner = _runner(app, variables_path, timeout, no_hooks)
    color = fmt == "text" and use_color()
    outcomes: list[TestOutcome] = []
    try:
        _prepare(runner, names)
        with LiveBar(len(names), "comparing") as bar:
            for outcome in run_ordered(names, _tracked(bar, runner.compare), jobs=_jobs(jobs)):
                outcomes.append(outcome)
                if fmt == "text":
                    info(_status_line(outcome, color))
    except KeyboardInterrupt:
        click.echo(_interrupted_line(names, outcomes), err=True)
        raise
    finally:
        runner.close()
    duration = time.monotonic() - start
    if junit_path:
        _write_junit(junit_path, outcomes, duration)
    if fmt == "json":
        from spawn_db.sqltest.report import report_dict

        emit_json(report_dict(outcomes, duration))
    else:
        _print_failures(runner, outcomes, color)
        info(_summary_line(outcomes, duration))
    _after_tests(runner, no_hooks)
    if any(not o.passed for o in outcomes):
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
    if not cleaned.templates and not cleaned.copies and not cleaned.scratch:
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


def _print_failures(runner: TestRunner, outcomes: list[TestOutcome], color: bool) -> None:
    for outcome in outcomes:
        if outcome.passed:
            continue
        info("")
        if outcome.status != "fail":
            info(f"{_style(outcome.name, color, 'bold')}: {outcome.error}")
            if outcome.kept_database:
                info(_kept_line(outcome.kept_database))
            continue
        expected = runner.project.display(runner.config.tests_dir / outcome.name / "expected")
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
