"""The options and the report every command that works on many units shares (tenants
with ``--tenants``, targets with several ``--target``): ``--jobs``, ``--canary``,
``--continue-on-error``, the live bar and the per-unit report (text or JSON)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import click

from spawn_db.cli.output import SETTINGS, LiveBar, echo, emit_json, paint

if TYPE_CHECKING:
    from spawn_db.fleet.runner import FleetReport, UnitResult

F = TypeVar("F", bound=Callable[..., Any])

MARKS = {"ok": ("\u2713", "green"), "failed": ("\u2717", "bold red"), "skipped": ("-", "yellow")}


def fleet_options(func: F) -> F:
    """``--jobs``, ``--canary`` and ``--continue-on-error``, as keyword arguments
    ``jobs``, ``canary`` and ``continue_on_error``."""
    options = [
        click.option("--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                     metavar="N", help="Tenants or targets to work on at the same time."),
        click.option("--canary", type=click.IntRange(min=0), default=0, metavar="N",
                     help="Do the first N tenants or targets first; the rest only if they "
                          "all succeed."),
        click.option("--continue-on-error", is_flag=True,
                     help="A failure stops only its own tenant or target; the others go on "
                          "(exit 1 if any failed)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


class FleetBar:
    """Progress on stderr for ``run_fleet``: the live bar on a terminal (count, the units
    running, the slowest unit so far), and one line per finished unit otherwise."""

    def __init__(self, kind: str, total: int, verb: str) -> None:
        self.kind = kind
        self.bar = LiveBar(total, verb)
        self.slowest: tuple[float, str] = (0.0, "")
        self.started: dict[str, float] = {}

    def __enter__(self) -> FleetBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.close()

    def unit_started(self, name: str) -> None:
        self.started[name] = time.monotonic()
        self.bar.begin(name)

    def unit_finished(self, result: UnitResult, done: int, total: int) -> None:
        self.bar.end(result.name)
        if result.seconds > self.slowest[0]:
            self.slowest = (result.seconds, result.name)
            self.bar.set_note(f"slowest {result.name} ({result.seconds:.1f} s)")
        if not SETTINGS.quiet and not self.bar.shown:
            self.bar.write(f"[{done}/{total}] {unit_line(self.kind, result)}\n")


def unit_line(kind: str, result: UnitResult) -> str:
    mark, style = MARKS[result.state]
    if result.state == "ok":
        text = f"{result.summary} ({result.seconds:.1f} s)"
    elif result.state == "failed":
        text = result.error
    else:
        text = "skipped (an earlier failure stopped the run)"
    return f"{paint(mark, style)} {kind} {result.name}: {text}"


def print_fleet_report(kind: str, plural: str, report: FleetReport) -> None:
    """The summary on stdout: every failure and skip again (they scroll away in a long
    run), then one line of counts and the slowest unit."""
    for result in report.results:
        if result.state != "ok":
            echo(unit_line(kind, result))
    counts = (f"{len(report.results)} {plural}: {len(report.succeeded)} ok, "
              f"{len(report.failed)} failed, {len(report.skipped)} skipped")
    slowest = report.slowest()
    if slowest is not None:
        counts += f"; slowest {slowest.name} ({slowest.seconds:.1f} s)"
    echo(counts)


def fleet_json(report: FleetReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "results": [
            {"name": r.name, "state": r.state, "seconds": round(r.seconds, 3),
             "summary": r.summary, "error": r.error or None, "data": r.data}
            for r in report.results
        ],
    }


def emit_fleet_json(report: FleetReport) -> None:
    emit_json(fleet_json(report))
