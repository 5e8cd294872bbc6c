"""``migration apply | status | revert | drift`` on several targets (``--target 'shard-*'``,
a ``[target_groups]`` group, or several names): one unit of work per target through
``fleet.targets.run_on_targets``, the live bar, and the per-target report (text or JSON).

Each command keeps its single-target code as it was; only when the selection names
several targets does it hand a ``work(config)`` function for one target to ``fan_out``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from spawn_db.cli.output import SETTINGS

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.fleet.quick import UpToDate
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


def ready_for_several(config: Config, verb: str, *, yes: bool) -> bool:
    """Before apply or revert change several targets: one confirmation for the fleet;
    False if declined."""
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


def tenant_jobs(config: Config, jobs: int) -> int:
    """The tenant workers each target gets when several targets run: ``--jobs`` bounds the
    whole run, so the ``min(jobs, targets)`` targets running at once share it (one each at
    least). At most ``jobs`` tenant workers run at a time, whatever the fleet."""
    return max(1, jobs // max(1, min(jobs, len(config.several_targets))))


def with_tenants(config: Config, summary: str, data: dict[str, Any], report: object,
                 verb: str) -> Done:
    """One target's outcome with its tenant report (``report``, the tenant phase's
    ``FleetReport``, or None): the per-tenant results go into ``data["tenants"]``; a failed
    or skipped tenant makes the target a failure that keeps them."""
    from spawn_db.cli.fleet import fleet_json
    from spawn_db.fleet.runner import Done, FleetReport, UnitFailed

    if not isinstance(report, FleetReport) or not report.results:
        return Done(summary, data)
    data["tenants"] = fleet_json(report)
    if report.ok:
        return Done(f"{summary}; {tenant_counts(report, verb)}", data)
    names = ",".join(r.name for r in (*report.failed, *report.skipped))
    name = config.target().name
    failed = (f"{len(report.failed)} of {len(report.results)} tenants failed"
              + (f" and {len(report.skipped)} {'was' if len(report.skipped) == 1 else 'were'}"
                 " skipped" if report.skipped else ""))
    if verb == "revert":
        raise UnitFailed(
            f"{failed} to revert their tenant parts ({names}), so the shared down scripts "
            "did not run; its tenant report lists each failure; fix them, then run the "
            f"revert again with --target {name}", data)
    raise UnitFailed(
        f"{failed} ({names}); shared parts: {summary}; its tenant report lists each "
        f"failure; fix them, then run `spawn --target {name} migration apply --tenants "
        f"{names} --retry`", data)


PAST = {"apply": "applied", "revert": "reverted"}
IDLE = ("up to date", "nothing to revert")  # ``fleet.tenant_run``'s tenants with no work


def tenant_counts(report: FleetReport, verb: str) -> str:
    """``tenant parts applied in 2 of 3 tenants``, or ``3 tenants up to date``."""
    busy = sum(1 for r in report.results if r.summary not in IDLE)
    total = len(report.results)
    if not busy:
        noun = "tenant" if total == 1 else "tenants"
        return (f"{total} {noun} up to date" if verb == "apply"
                else f"nothing to revert in {total} {noun}")
    return f"tenant parts {PAST[verb]} in {busy} of {total} tenants"


def tenant_details(report: FleetReport) -> None:
    """Each target's tenant report under its name (the failures, the counts), for the
    targets that ran tenant parts."""
    from spawn_db.cli.output import info
    from spawn_db.cli.tenant import print_tenant_report
    from spawn_db.fleet.runner import OK, FleetReport, UnitResult

    for result in report.results:
        found = result.data.get("tenants") if isinstance(result.data, dict) else None
        if not found or all(r["state"] == OK and r["summary"] in IDLE
                            for r in found["results"]):
            continue  # its summary line said so
        info(f"== target {result.name} ==")
        print_tenant_report(FleetReport(tuple(
            UnitResult(r["name"], r["state"], r["seconds"], r["summary"], r["error"] or "")
            for r in found["results"])))


def status_with_tenants(config: Config, data: str | dict[str, Any]) -> str | dict[str, Any]:
    """One target's status (its table, or its JSON document) with its tenants: the summary
    line single-target ``status`` prints, or ``tenants`` as in its JSON."""
    if config.tenants is None:
        return data
    from spawn_db.cli.tenant import state_json, tenant_summary
    from spawn_db.fleet.tenant_ops import tenant_states

    states = tenant_states(config)
    if isinstance(data, dict):
        return {**data, "tenants": [state_json(s) for s in states]}
    return f"{data}\n{tenant_summary(states)}"


def dry_run_targets(config: Config, run: Callable[[Config, Callable[[Any], None]], None],
                    fmt: str) -> None:
    """``--dry-run`` over several targets: ``run`` (the single-target dry run) for each
    target in turn, under ``== target NAME ==`` (text), or as one fleet document whose
    ``data`` is each target's plan (``run`` hands it to the ``emit`` it is given).
    Read-only like the dry run itself; a target whose dry run fails is reported and the
    others still run; exit 1 if any failed."""
    import time

    from spawn_db.cli.fleet import emit_fleet_json
    from spawn_db.cli.output import finding, info
    from spawn_db.errors import MigrationError, SpawnError
    from spawn_db.fleet.runner import FAILED, OK, FleetReport, UnitResult
    from spawn_db.fleet.targets import for_target

    results: list[UnitResult] = []
    for name in config.several_targets:
        documents: list[Any] = []
        if fmt != "json":
            info(f"== target {name} ==")
        started = time.monotonic()
        try:
            run(for_target(config, name), documents.append)
        except SpawnError as exc:
            if fmt != "json":
                finding(f"target {name}: {exc}")
            results.append(UnitResult(name, FAILED, time.monotonic() - started,
                                      error=str(exc)))
            continue
        results.append(UnitResult(name, OK, time.monotonic() - started, "dry run",
                                  data=documents[0] if documents else None))
    report = FleetReport(tuple(results))
    if fmt == "json":
        emit_fleet_json(report)
    if not report.ok:
        names = ", ".join(r.name for r in report.failed)
        raise MigrationError(
            f"the dry run failed on {len(report.failed)} of {len(results)} targets ({names}); "
            "each target's error is above; run `spawn --target NAME migration ... --dry-run` "
            "for one of them alone")


def up_to_date(config: Config, found: UpToDate) -> Done:
    """A target the no-op check found up to date, reported as a full apply reports it."""
    data: dict[str, Any] = {"applied": [], "already_applied": list(found.already_applied),
                            "repeatables": None, "seconds": round(found.seconds, 6)}
    return with_tenants(config, f"up to date ({len(found.already_applied)} applied)", data,
                        found.tenants, "apply")
