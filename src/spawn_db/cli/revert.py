"""``spawn migration revert`` (alias ``rollback``): parse, call ``spawn_db.migrate.revert``,
print."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

import click

from spawn_db.cli.apply import (
    CliReporter,
    _duration,
    confirm_many,
    lock_timeout_option,
    yes_option,
)
from spawn_db.cli.context import App, complete_migrations, pass_app
from spawn_db.cli.fleet import fleet_options
from spawn_db.cli.migration import (
    load_variables_option,
    no_hooks_option,
    no_pin_option,
    variables_option,
)
from spawn_db.cli.output import SETTINGS, emit_json, info, note, write_sql
from spawn_db.cli.tenant import tenants_option

if TYPE_CHECKING:
    from spawn_db.api import Project
    from spawn_db.config import Config
    from spawn_db.fleet.runner import Done, FleetReport
    from spawn_db.migrate.revert import PlannedRevert, RevertPlan, RevertRequest, RevertResult


class RevertReporter(CliReporter):
    """Apply's progress lines, saying ``reverting`` where a migration is running.

    The live bar is ``CliReporter``'s; only its label changes (``_relabel``), so this
    class does not depend on how the bar is drawn."""

    def started(self, name: str, position: int, total: int, elapsed: float) -> None:
        if self.live:
            super().started(name, position, total, elapsed)
            _relabel(self, name)
        elif self.tty and not SETTINGS.quiet:
            self._write(f"[{position}/{total}] reverting {name} ...")
            self.open_line = True


def _relabel(reporter: Any, name: str) -> None:
    """Make the live bar say ``reverting``: an ``output.LiveBar`` through its ``verb``, a
    bare rich bar through its task's description."""
    bar = getattr(reporter, "bar", None)
    if bar is None:
        return
    if hasattr(bar, "verb"):
        bar.verb = "reverting"
    elif hasattr(reporter, "task"):
        bar.update(reporter.task, description=f"reverting {name}")


@click.command("revert")
@click.argument("migration_name", metavar="[MIGRATION]", required=False,
                shell_complete=complete_migrations)
@click.option("--steps", type=int, metavar="N",
              help="Revert the last N applied migrations (newest application first).")
@click.option("--to", "to", metavar="MIGRATION", shell_complete=complete_migrations,
              help="Revert everything applied after MIGRATION (not MIGRATION itself).")
@click.option("--dry-run", is_flag=True,
              help="Only print what would be reverted, in order, with each rendered down.sql; "
              "write nothing and take no lock.")
@yes_option
@click.option("--retry", is_flag=True,
              help="Run a down script again whose earlier revert failed or never completed.")
@no_pin_option
@variables_option
@lock_timeout_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format of the result (or, with --dry-run, the "
              "plan).")
@no_hooks_option
@tenants_option
@fleet_options
@pass_app
def revert(app: App, migration_name: str | None, steps: int | None, to: str | None,
           dry_run: bool, yes: bool, retry: bool, no_pin: bool, variables_path: str | None,
           lock_timeout: float, fmt: str, no_hooks: bool, tenants: str | None, jobs: int,
           canary: int, continue_on_error: bool) -> None:
    """Run the down.sql of the most recently applied migration (or of MIGRATION, the last
    N with --steps, or everything applied after --to), newest application first."""
    from spawn_db.api import Project
    from spawn_db.migrate.revert import RevertRequest

    request = RevertRequest(migration_name, steps, to, retry)
    request.check()
    config = app.config()
    if config.several_targets and dry_run:
        from spawn_db.cli.fanout import dry_run_targets

        dry_run_targets(config, lambda target, emit: _dry_run(
            Project(target, variables_path), request, pinned=not no_pin, fmt=fmt,
            tenants=tenants, emit=emit), fmt)
        return
    if config.several_targets:
        from spawn_db.cli.fanout import fan_out, ready_for_several, tenant_details, tenant_jobs

        if not ready_for_several(config, "Revert", yes=yes):
            note("Cancelled; nothing was reverted.")
            return
        work = TargetRevert(request, variables_path, pinned=not no_pin,
                            lock_timeout=lock_timeout, hooks=not no_hooks, tenants=tenants,
                            tenant_jobs=tenant_jobs(config, jobs),
                            continue_on_error=continue_on_error)
        fan_out(config, "reverting", work, jobs=jobs, canary=canary,
                continue_on_error=continue_on_error, fmt=fmt, details=tenant_details)
        return
    project = Project(config, variables_path)
    project.variables()  # a bad --variables file stops the command before anything else
    if dry_run:
        _dry_run(project, request, pinned=not no_pin, fmt=fmt, tenants=tenants)
        return
    from spawn_db.fleet.tenant_ops import tenant_only

    only = tenant_only(config, migration_name)
    if only is not None:
        from spawn_db.cli.tenant import revert_tenant_part
        from spawn_db.fleet.tenant_run import FleetRequest

        revert_tenant_part(config, only, tenants,
                           fleet=FleetRequest(jobs, canary, continue_on_error),
                           lock_timeout=lock_timeout, pinned=not no_pin,
                           variables=project.variables(), fmt=fmt)
        return
    _run(project, request, pinned=not no_pin, yes=yes, lock_timeout=lock_timeout, fmt=fmt,
         no_hooks=no_hooks, tenants=tenants,
         fleet=(jobs, canary, continue_on_error))


def _run(project: Project, request: RevertRequest, *, pinned: bool, yes: bool,
         lock_timeout: float, fmt: str, no_hooks: bool = False,
         tenants: str | None = None, fleet: tuple[int, int, bool] = (1, 0, False)) -> None:
    from spawn_db.api import TenantOptions
    from spawn_db.cli.tenant import print_tenant_report

    def confirm(plan: RevertPlan) -> bool:
        return confirm_many(plan.to_revert, "reverted", yes, order=", in this order")

    reporter = RevertReporter()
    try:
        jobs, canary, continue_on_error = fleet
        result = project.revert(
            request.migration, steps=request.steps, to=request.to, retry=request.retry,
            pinned=pinned, lock_timeout=lock_timeout, hooks=not no_hooks, tenants=tenants,
            tenant_options=TenantOptions(
                jobs, canary, continue_on_error,
                report=lambda report: print_tenant_report(report, fmt=fmt)),
            reporter=reporter, confirm=confirm)
    finally:
        reporter.close_line()
    if fmt == "json":
        emit_json(_result_json(result))
        return
    note(_summary(result, request))


@dataclass(frozen=True)
class TargetRevert:
    """``revert`` on one target of several: the same request against that target's own
    history, with its own config and variables; no questions, no progress lines."""

    request: RevertRequest
    variables_path: str | None
    pinned: bool
    lock_timeout: float
    hooks: bool
    tenants: str | None = None
    tenant_jobs: int = 1
    continue_on_error: bool = False

    def __call__(self, config: Config) -> Done:
        from spawn_db.cli.fanout import target_output, with_tenants
        from spawn_db.errors import MigrationFailed
        from spawn_db.fleet.tenant_ops import before_shared_phase, revert_tenant_only, tenant_only
        from spawn_db.fleet.tenant_run import FleetRequest
        from spawn_db.migrate.hooks import Hooks
        from spawn_db.migrate.revert import revert as run_revert

        variables = load_variables_option(config, self.variables_path)
        output = target_output(config.target().name)
        fleet = FleetRequest(self.tenant_jobs, 0, self.continue_on_error)
        only = tenant_only(config, self.request.migration)
        if only is not None:
            report = revert_tenant_only(config, only, self.tenants, fleet, pinned=self.pinned,
                                        lock_timeout=self.lock_timeout, variables=variables)
            return with_tenants(config, "only tenant parts", {"reverted": []}, report,
                                "revert")
        tenants: list[FleetReport] = []
        downs = before_shared_phase(config, self.tenants, fleet, pinned=self.pinned,
                                    variables=variables, report=tenants.append)
        try:
            result = run_revert(config, self.request, pinned=self.pinned, variables=variables,
                                lock_timeout=self.lock_timeout, before_shared=downs,
                                hooks=Hooks(config, variables, enabled=self.hooks,
                                            output=output))
        except MigrationFailed:
            if not tenants or tenants[0].ok:
                raise
            with_tenants(config, "", {"reverted": []}, tenants[0], "revert")
            raise
        count = len(result.reverted)
        summary = f"{count} reverted" if count else "nothing to revert"
        return with_tenants(config, summary, _result_json(result), result.before_shared,
                            "revert")


def _summary(result: RevertResult, request: RevertRequest) -> str:
    if result.cancelled:
        return "Cancelled; nothing was reverted."
    if not result.reverted:
        if request.to is not None:
            return (f"Nothing to revert: no migration was applied after {request.to} "
                    f"({result.plan.applied} applied in total).")
        return "Nothing to revert: no migration is applied."
    count = len(result.reverted)
    noun = "migration" if count == 1 else "migrations"

    return f"Reverted {count} {noun} in {_duration(result.seconds)}."


def _result_json(result: RevertResult) -> dict[str, Any]:
    from spawn_db.cli.fleet import fleet_json
    from spawn_db.fleet.runner import FleetReport

    found: dict[str, Any] = {
        "reverted": [{"name": o.name, "seconds": round(o.seconds, 6)} for o in result.reverted],
        "cancelled": result.cancelled,
        "seconds": round(result.seconds, 6),
    }
    if isinstance(result.before_shared, FleetReport) and result.before_shared.results:
        found["tenants"] = fleet_json(result.before_shared)
    return found


def _dry_run(project: Project, request: RevertRequest, *, pinned: bool, fmt: str,
             tenants: str | None = None,
             emit: Callable[[dict[str, Any]], None] = emit_json) -> None:
    """Print each down script that would run (a header line, then its rendered SQL) to
    stdout, the tenant parts' first (they run first), and the summary to stderr; as
    JSON, the plan with the SQL (to ``emit``)."""
    from spawn_db.cli.tenant import dry_run_tenant_downs
    from spawn_db.fleet.tenant_ops import tenant_only

    config = project.config
    texts: dict[str, str] = {}
    shared: list[tuple[str, bytes]] = []

    def each(item: PlannedRevert, sql: IO[bytes]) -> None:
        if fmt == "json":
            texts[item.name] = sql.read().decode("utf-8")
            return
        shared.append((f"-- spawn migration {item.name} (revert): pin {item.pin or '-'}, "
                       f"checksum {item.checksum}", sql.read()))

    only = tenant_only(config, request.migration)
    plan: RevertPlan | None = None
    planned: tuple[PlannedRevert, ...] = ()
    if only is None:
        dry = project.revert(request.migration, steps=request.steps, to=request.to,
                             retry=request.retry, pinned=pinned, dry_run=True, each=each)
        plan, planned = dry.plan, dry.reverts
    names = (only,) if only is not None else plan.to_revert if plan is not None else ()
    tenant_rows = dry_run_tenant_downs(config, tenants, names, pinned=pinned,
                                       variables=project.variables(), fmt=fmt)
    for header, sql in shared:
        info(header)
        write_sql(sql)
    if fmt == "json":
        found: dict[str, Any] = {
            "to_revert": [{"name": p.name, "pin": p.pin, "checksum": p.checksum,
                           "size": p.size, "sql": texts[p.name]} for p in planned],
            "applied": None if plan is None else plan.applied,
        }
        if config.tenants is not None:
            found["tenant_parts"] = tenant_rows
        emit(found)
        return
    if plan is None:
        note(f"Dry run: would revert only the tenant part of {only}; nothing was written.")
        return
    count = len(planned)
    noun = "migration" if count == 1 else "migrations"
    note(f"Dry run: would revert {count} {noun} ({plan.applied} applied); nothing was "
         "written.")
