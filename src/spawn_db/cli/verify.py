"""``spawn migration verify``: parse, call ``spawn_db.migrate.verify``, print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from spawn_db.cli.context import App, complete_migrations, pass_app
from spawn_db.cli.migration import load_variables_option, no_pin_option, variables_option
from spawn_db.cli.output import emit_json, info, note

if TYPE_CHECKING:
    from spawn_db.migrate.verify import VerifyOutcome, VerifyReport


@click.command("verify")
@click.argument("migration_name", metavar="[MIGRATION]", required=False,
                shell_complete=complete_migrations)
@no_pin_option
@variables_option
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@pass_app
def verify(app: App, migration_name: str | None, no_pin: bool, variables_path: str | None,
           fmt: str) -> None:
    """Run the verify.sql of MIGRATION, or of every applied migration that has one, in the
    order they were applied; write nothing; exit 1 if any fails."""
    from spawn_db.migrate.verify import verify_applied

    config = app.config()
    variables = load_variables_option(config, variables_path)

    def each(outcome: VerifyOutcome) -> None:
        if fmt == "text":
            info(format_outcome(outcome))

    def printed(text: str) -> None:
        note(text.rstrip("\n"))

    report = verify_applied(config, migration_name, pinned=not no_pin, variables=variables,
                            each=each, on_output=printed)
    if fmt == "json":
        emit_json(_report_json(report))
    else:
        note(summary(report))
    if report.failed:
        raise SystemExit(1)


def format_outcome(outcome: VerifyOutcome) -> str:
    """``ok      NAME``, or ``FAILED  NAME`` and psql's error indented below it."""
    if outcome.error is None:
        return f"ok      {outcome.name}"
    error = "".join(f"\n        {line}" for line in outcome.error.splitlines())
    return f"FAILED  {outcome.name}{error}"


def summary(report: VerifyReport) -> str:
    count = len(report.outcomes)
    if count == 0:
        noun = "migration is" if report.applied == 1 else "migrations are"
        return (f"Nothing to verify: no applied migration has a verify.sql "
                f"({report.applied} {noun} applied).")
    noun = "migration" if count == 1 else "migrations"
    failed = len(report.failed)
    return f"Verified {count} {noun}: {count - failed} passed, {failed} failed."


def _report_json(report: VerifyReport) -> dict[str, Any]:
    return {
        "migrations": [{"name": o.name, "ok": o.ok, "error": o.error,
                        "seconds": round(o.seconds, 6)} for o in report.outcomes],
        "passed": len(report.outcomes) - len(report.failed),
        "failed": len(report.failed),
        "applied": report.applied,
    }
