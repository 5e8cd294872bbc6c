"""``spawn watch``: parse, hand over to ``spawn_db.watch``, print what each sync did."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.migration import variables_option
from spawn_db.cli.output import finding, info, note, use_color

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.sqltest.suite import TestOutcome
    from spawn_db.watch.watcher import Applied


class CliWatchReporter:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.color = use_color()

    def applied(self, done: Applied) -> None:
        info(f"applied {done.kind} {done.name} ({done.how}) in {done.seconds * 1000:.0f} ms")

    def failed(self, what: str, message: str) -> None:
        finding(f"{what}: {message}")

    def tested(self, outcomes: Sequence[TestOutcome]) -> None:
        from spawn_db.cli.sqltest import _print_failures, _status_line, _summary_line

        for outcome in outcomes:
            info(_status_line(outcome, self.color))
        _print_failures(self.config, list(outcomes), self.color)
        info(_summary_line(list(outcomes), sum(o.duration for o in outcomes)))


@click.command()
@click.option("--test", "tests", multiple=True, metavar="NAME",
              help="Run this test after every sync and show PASS/FAIL with its diff "
              "(repeat for several).")
@click.option("--once", is_flag=True,
              help="Sync once and exit: exit 1 if anything failed to render or apply, or a "
              "test failed.")
@variables_option
@pass_app
def watch(app: App, tests: tuple[str, ...], once: bool, variables_path: str | None) -> None:
    """Re-apply draft and repeatable migrations when the files they read change, then run
    tests.

    Watches the spawn folder (and the variables file); refused when the environment is
    prod. Ctrl-C stops.
    """
    from spawn_db.watch.follow import follow
    from spawn_db.watch.watcher import Watcher

    config = app.config()
    reporter = CliWatchReporter(config)
    watcher = Watcher(config, reporter, tests=tests, variables_path=variables_path)
    if once:
        result = watcher.sync(None)
        if result.failures or any(not o.passed for o in result.outcomes):
            raise SystemExit(1)
        return
    roots = ", ".join(str(root) for root in watcher.roots())
    try:
        follow(watcher, ready=lambda: note(f"Watching {roots} (Ctrl-C to stop)"))
    except KeyboardInterrupt as stopped:
        from spawn_db.cli.signals import TERMINATED_EXIT, Terminated

        note("Stopped watching.")
        raise SystemExit(TERMINATED_EXIT if isinstance(stopped, Terminated) else 130) from None
