"""``spawn tenant list | create | drop``, and the ``--tenants`` option and tenant report that
``migration apply`` and ``revert`` share: parse, call ``spawn_db.fleet``, print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.output import echo, emit_json, info, note, warn

UP_TO_DATE = "up to date"  # a tenant with nothing to do (``fleet.tenant_run.apply_tenants``)

if TYPE_CHECKING:
    from spawn_db.fleet.runner import FleetReport
    from spawn_db.fleet.tenant_ops import TenantState

tenants_option = click.option(
    "--tenants", "tenants", metavar="all|none|NAME,...", default=None,
    help="Which tenants get their tenant parts (tenant.sql): all (the default when "
         "spawn.toml has [tenants]), none, or names separated by commas.")


def print_tenant_report(report: FleetReport, *, fmt: str = "text") -> None:
    """The tenant phase's report (nothing when no tenant was considered)."""
    from spawn_db.cli.fleet import print_fleet_report

    if not report.results or fmt != "text":
        return
    if all(r.state == "ok" and r.summary == UP_TO_DATE for r in report.results):
        echo(f"{len(report.results)} tenants: all up to date.")
        return
    print_fleet_report("tenant", "tenants", report)


def tenant_bar(total: int, verb: str) -> Any:
    """The fleet bar for ``total`` tenants (``cli.fleet.FleetBar``)."""
    from spawn_db.cli.fleet import FleetBar

    return FleetBar("tenant", total, verb)


@click.group()
def tenant() -> None:
    """Tenant schemas: list them with their state, create one, drop one (docs/fleets.md)."""


@tenant.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@pass_app
def list_command(app: App, fmt: str) -> None:
    """Every tenant of [tenants] with its schema and state: up to date, N pending, or
    failed (naming the migration)."""
    from spawn_db.fleet.tenant_ops import tenant_states

    states = tenant_states(app.config())
    if fmt == "json":
        emit_json({"tenants": [state_json(s) for s in states]})
        return
    if not states:
        note("No tenants: the tenant source in spawn.toml lists none.")
        return
    width = max(len(s.name) for s in states)
    wheres = [s.schema if s.schema_exists else f"{s.schema} (no schema)" for s in states]
    schema_width = max(len(w) for w in wheres)
    for state, where in zip(states, wheres, strict=True):
        echo(f"{state.name:<{width}}  {where:<{schema_width}}  {state.describe()}")
    counts = {"up to date": 0, "pending": 0, "failed": 0}
    for state in states:
        counts[state.state] += 1
    note(f"{len(states)} tenants: {counts['up to date']} up to date, {counts['pending']} "
         f"pending, {counts['failed']} failed.")


def state_json(state: TenantState) -> dict[str, Any]:
    return {"name": state.name, "schema": state.schema, "schema_exists": state.schema_exists,
            "state": state.state, "applied": state.applied, "pending": list(state.pending),
            "failed": state.failed}


def tenant_summary(states: list[TenantState]) -> str:
    """``migration status``'s line about the tenants."""
    failed = [s.name for s in states if s.state == "failed"]
    pending = [s for s in states if s.state == "pending"]
    text = (f"Tenants: {len(states)}, {len(states) - len(failed) - len(pending)} up to date, "
            f"{len(pending)} with pending tenant parts, {len(failed)} failed")
    if failed:
        text += f" ({', '.join(failed[:5])}{', ...' if len(failed) > 5 else ''})"
    return text + " (`spawn tenant list` for each)."


@tenant.command("create")
@click.argument("name")
@click.option("--no-pin", is_flag=True,
              help="Render the tenant parts from the working tree instead of their pins.")
@pass_app
def create(app: App, name: str, no_pin: bool) -> None:
    """Create tenant NAME's schema and apply every tenant part (tenant.sql) to it, under
    the migration lock; shared parts are not run."""
    from spawn_db.fleet.tenant_ops import create_tenant, raise_if_failed

    config = app.config()
    report, listed = create_tenant(config, name, pinned=not no_pin)
    result = report.results[0]
    if not listed:
        warn(f"warning: tenant {name} is not in the tenant source of spawn.toml, so "
             "`spawn migration apply` will not migrate it; add it there")
    if result.state == "ok":
        info(f"Tenant {name}: schema {_schema(config, name)} ready, {result.summary}.")
    else:
        print_tenant_report(report)
    raise_if_failed(report)


def _schema(config: Any, name: str) -> str:
    from spawn_db.fleet.tenants import schema_of

    return schema_of(config, name)


@tenant.command("drop")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Really drop the schema and everything in it.")
@pass_app
def drop(app: App, name: str, yes: bool) -> None:
    """Drop tenant NAME's schema with everything in it (DROP SCHEMA ... CASCADE) and delete
    its tenant history, in one transaction; refused without --yes."""
    from spawn_db.errors import UsageError
    from spawn_db.fleet.tenant_ops import drop_tenant

    config = app.config()
    schema = _schema(config, name)
    if not yes:
        raise UsageError(f"`spawn tenant drop {name}` drops schema {schema} and all its data; "
                         "pass --yes to do it")
    rows = drop_tenant(config, name)
    info(f"Dropped tenant {name}: schema {schema} and {rows} history rows.")
