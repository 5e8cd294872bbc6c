"""``spawn migration drift``: parse, call ``spawn_db.migrate.schema_drift``, print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.migration import no_pin_option, variables_option
from spawn_db.cli.output import emit_json, info, note

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.migrate.schema_drift import DriftReport


@click.command("drift")
@no_pin_option
@variables_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@pass_app
def drift(app: App, no_pin: bool, variables_path: str | None, fmt: str) -> None:
    """Compare the target's schema with what its applied migrations build on a scratch
    database: `+` only in the database, `-` only in the migrations, `~` different; exit 1
    on drift."""
    from spawn_db.api import Project

    # A database that cannot be read is DriftCheckFailed (exit 2: no comparison made);
    # exit 1 means drift.
    report = Project(app.config(), variables_path).drift(pinned=not no_pin)
    if fmt == "json":
        emit_json(report_json(report))
    else:
        for difference in report.differences:
            info(difference.line())
        note(summary(report))
    if report.drifted:
        raise SystemExit(1)


def refuse_drift(config: Config, *, pinned: bool, variables: Any) -> None:
    """``apply --check-drift``: print the drift and raise (exit 1) when there is any."""
    from spawn_db.errors import MigrationError
    from spawn_db.migrate.schema_drift import schema_drift

    report = schema_drift(config, pinned=pinned, variables=variables)
    if not report.drifted:
        note(summary(report))
        return
    for difference in report.differences:
        info(difference.line())
    count = len(report.differences)
    raise MigrationError(
        f"database {report.database} has drifted from its applied migrations ({count} "
        f"difference{'' if count == 1 else 's'} above), so nothing was applied; bring the "
        "schema back in line (or write a migration that does), then apply again"
    )


def summary(report: DriftReport) -> str:
    count = len(report.migrations)
    noun = "migration" if count == 1 else "migrations"
    built = f"the {count} applied {noun}"
    if not report.drifted:
        return f"No drift: database {report.database} matches {built}."
    found = len(report.differences)
    return (f"Drift: database {report.database} differs from {built} in {found} "
            f"object{'' if found == 1 else 's'}.")


def report_json(report: DriftReport) -> dict[str, Any]:
    return {
        "database": report.database,
        "migrations": list(report.migrations),
        "drift": report.drifted,
        "differences": [
            {"change": d.change, "kind": d.kind, "name": d.name,
             "attributes": {name: {"database": live, "migrations": built}
                            for name, (live, built) in d.attributes.items()}}
            for d in report.differences
        ],
    }
