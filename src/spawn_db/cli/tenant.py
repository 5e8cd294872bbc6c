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


# -- revert's tenant side ---------------------------------------------------------------------


def revert_tenant_part(config: Any, name: str, given: str | None, *, fleet: Any,
                       lock_timeout: float, pinned: bool, variables: Any, fmt: str) -> None:
    """``spawn migration revert NAME`` for a tenant-only migration: its ``tenant_down.sql``
    in every selected tenant that has it applied; the report, and exit 1 on a failure."""
    from spawn_db.errors import MigrationFailed
    from spawn_db.fleet.tenant_ops import revert_tenant_only

    report = revert_tenant_only(config, name, given, fleet, lock_timeout=lock_timeout,
                                pinned=pinned, variables=variables)
    busy = [r for r in report.results if r.state == "ok" and r.summary != IDLE_REVERT]
    if fmt == "json":
        from spawn_db.cli.fleet import fleet_json

        emit_json({"reverted": [], "cancelled": False, "tenants": fleet_json(report)})
    else:
        print_tenant_report(report)
        note(f"Reverted the tenant part of {name} in {len(busy)} of {len(report.results)} "
             "tenants.")
    if not report.ok:
        raise MigrationFailed(
            f"{len(report.failed)} of {len(report.results)} tenants failed to revert the "
            f"tenant part of {name}; fix the failures listed above, then revert it again")


IDLE_REVERT = "nothing to revert"  # a tenant without the part (``fleet.tenant_run``)


def dry_run_tenant_downs(config: Any, given: str | None, names: tuple[str, ...], *,
                         pinned: bool, variables: Any, fmt: str) -> list[dict[str, Any]]:
    """revert ``--dry-run``'s tenant parts: per tenant, each ``tenant_down.sql`` that would
    run (a header line, then its SQL; with ``fmt`` json, rows with the SQL, returned)."""
    from spawn_db.cli.output import write_sql
    from spawn_db.fleet.tenant_ops import default_choice, plan_tenant_downs

    rows: list[dict[str, Any]] = []

    def each(item: Any, sql: Any) -> None:
        if fmt == "json":
            rows.append({"tenant": item.tenant.name, "schema": item.tenant.schema,
                         "name": item.name, "pin": item.pin, "checksum": item.checksum,
                         "size": item.size, "sql": sql.read().decode("utf-8")})
            return
        info(f"-- spawn migration {item.name} (revert tenant {item.tenant.name}, schema "
             f"{item.tenant.schema}): pin {item.pin or '-'}, checksum {item.checksum}")
        write_sql(sql.read())

    choice = default_choice(config, given)
    planned = plan_tenant_downs(config, choice, names, pinned=pinned, variables=variables,
                                each=each)
    if fmt != "json" and planned:
        tenants = len({p.tenant.name for p in planned})
        noun = "part" if len(planned) == 1 else "parts"
        note(f"Tenant parts first: {len(planned)} tenant {noun} (tenant_down.sql) in "
             f"{tenants} tenant{'' if tenants == 1 else 's'}.")
    return rows
