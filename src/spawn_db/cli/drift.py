"""``spawn migration drift``: parse, call ``spawn_db.migrate.schema_drift``, print."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.fleet import fleet_options
from spawn_db.cli.migration import load_variables_option, no_pin_option, variables_option
from spawn_db.cli.output import emit_json, info, note

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.fleet.runner import Done
    from spawn_db.migrate.schema_drift import DriftReport


@click.command("drift")
@no_pin_option
@variables_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@fleet_options
@pass_app
def drift(app: App, no_pin: bool, variables_path: str | None, fmt: str, jobs: int,
          canary: int, continue_on_error: bool) -> None:
    """Compare the target's schema with what its applied migrations build on a scratch
    database: `+` only in the database, `-` only in the migrations, `~` different; exit 1
    on drift."""
    from spawn_db.api import Project

    config = app.config()
    if config.several_targets:
        from spawn_db.cli.fanout import fan_out

        fan_out(config, "comparing", TargetDrift(variables_path, pinned=not no_pin),
                jobs=jobs, canary=canary, continue_on_error=continue_on_error, fmt=fmt)
        return
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


@dataclass(frozen=True)
class TargetDrift:
    """``drift`` on one target of several: no drift is that target's success, drift its
    failure, with the differences in the error (there is no text above it to point at)."""

    variables_path: str | None
    pinned: bool

    def __call__(self, config: Config) -> Done:
        from spawn_db.fleet.runner import Done

        variables = load_variables_option(config, self.variables_path)
        report = drift_refusal(config, pinned=self.pinned, variables=variables,
                               consequence="")
        return Done(f"no drift ({_applied(report)})", report_json(report))


def drift_refusal(config: Config, *, pinned: bool, variables: Any,
                  consequence: str = ", so nothing was applied") -> DriftReport:
    """The drift report of ``config``'s target, or, when it has drifted, an error (exit 1)
    listing the differences: one target's part of a fan-out (``apply --check-drift`` says
    ``consequence``)."""
    from spawn_db.errors import MigrationError
    from spawn_db.migrate.schema_drift import schema_drift

    report = schema_drift(config, pinned=pinned, variables=variables)
    if report.drifted:
        found = "; ".join(d.line() for d in report.differences)
        count = len(report.differences)
        raise MigrationError(
            f"database {report.database} has drifted from {_applied(report)} in {count} "
            f"object{'' if count == 1 else 's'} ({found}){consequence}; bring the schema "
            "back in line, or write a migration that does")
    return report


def _applied(report: DriftReport) -> str:
    count = len(report.migrations)
    return f"the {count} applied migration{'' if count == 1 else 's'}"


def summary(report: DriftReport) -> str:
    built = _applied(report)
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
