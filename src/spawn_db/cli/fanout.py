"""``migration apply | status | revert | drift`` on several targets (``--target 'shard-*'``,
a ``[target_groups]`` group, or several names): one unit of work per target through
``fleet.targets.run_on_targets``, the live bar, and the per-target report (text or JSON).

Each command keeps its single-target code as it was; only when the selection names
several targets does it hand a ``work(config)`` function for one target to ``fan_out``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import click

from spawn_db.cli.output import SETTINGS

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.fleet.runner import Done, FleetReport


def fan_out(config: Config, verb: str, work: Callable[[Config], Done], *, jobs: int,
            canary: int, continue_on_error: bool, fmt: str = "text",
            details: Callable[[FleetReport], None] | None = None) -> None:
    """Run ``work`` per selected target; print the report (``details`` first, for each
    target's own text); exit 1 when a target failed or was skipped."""
    from spawn_db.cli.fleet import FleetBar, emit_fleet_json, print_fleet_report
    from spawn_db.fleet.targets import run_on_targets

    with FleetBar("target", len(config.several_targets), verb) as bar:
        report = run_on_targets(config, work, jobs=jobs, canary=canary,
                                continue_on_error=continue_on_error, progress=bar)
    if fmt == "json":
        emit_fleet_json(report)
    else:
        if details is not None:
            details(report)
        print_fleet_report("target", "targets", report)
    if not report.ok:
        raise SystemExit(1)


def ready_for_several(config: Config, verb: str, *, yes: bool, tenants: str | None,
                      **flags: bool) -> bool:
    """The checks before apply or revert change several targets: no single-target option
    (``flags``), no tenant parts, and one confirmation for the fleet; False if declined."""
    refuse_for_several(config, **flags)
    refuse_tenants_for_several(config, tenants)
    return confirm_targets(config.several_targets, verb, yes)


def confirm_targets(names: Sequence[str], verb: str, yes: bool) -> bool:
    """Ask once for the whole fleet (``Apply on these 3 targets?``), or, where nobody can
    answer, require ``--yes``: several targets at once are never changed unasked."""
    if yes:
        return True
    from spawn_db.errors import UsageError

    listing = ", ".join(names)
    if not sys.stdin.isatty():
        raise UsageError(
            f"{verb} on {len(names)} targets ({listing}) needs confirmation, and spawn cannot "
            "ask because standard input is not a terminal; pass --yes to go ahead")
    click.echo(f"{len(names)} targets: {listing}", err=True)
    return click.confirm(f"{verb} on these {len(names)} targets?", default=False, err=True)


def refuse_for_several(config: Config, **flags: bool) -> None:
    """A usage error (exit 2) for each option given that works on one target only."""
    given = [name for name, on in flags.items() if on]
    if config.several_targets and given:
        from spawn_db.errors import UsageError

        options = " and ".join(given)
        raise UsageError(
            f"{options} works on one target at a time, and the target selection names "
            f"{len(config.several_targets)} ({', '.join(config.several_targets)}); pass one "
            "target with --target NAME")


def target_output(name: str) -> Callable[[str], None]:
    """Where a target's hook output goes: stderr, each line after the target's name."""
    def say(text: str) -> None:
        if SETTINGS.quiet:
            return
        for line in text.rstrip("\n").split("\n"):
            click.echo(f"{name}: {line}", err=True)

    return say


def headed(name: str, text: str) -> str:
    """One target's part of a text report: ``== target NAME ==`` then its text."""
    return f"== target {name} ==\n{text}"


def refuse_tenants_for_several(config: Config, tenants: str | None) -> None:
    """Tenant parts are applied per target only one target at a time, for now: an apply
    over several targets would otherwise leave every tenant schema behind, silently."""
    if config.tenants is not None and tenants != "none":
        from spawn_db.errors import UsageError

        raise UsageError("tenant parts cannot run on several targets at once yet; run "
                         "them one target at a time (--target NAME), or pass --tenants none "
                         "to leave them out and run only the shared parts on every target")
