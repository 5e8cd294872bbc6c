"""``spawn script ...``: ad-hoc scripts run once against the target (docs/scripts.md)."""

from __future__ import annotations

import sys

import click

from spawn_db.cli.apply import lock_timeout_option
from spawn_db.cli.context import App, pass_app
from spawn_db.cli.migration import load_variables_option, variables_option
from spawn_db.cli.output import info, note
from spawn_db.errors import UsageError


@click.group()
def script() -> None:
    """Ad-hoc SQL scripts under <spawn_folder>/scripts/, run once on the target."""


@script.command("new")
@click.argument("name")
@pass_app
def new(app: App, name: str) -> None:
    """Create <spawn_folder>/scripts/NAME.sql with a starter script."""
    from spawn_db.migrate.script import new_script

    info(f"Created {new_script(app.config(), name)}")


@script.command("run")
@click.argument("script_ref", metavar="NAME|PATH")
@variables_option
@click.option("--print", "print_only", is_flag=True,
              help="Print the rendered SQL and run nothing.")
@click.option("-y", "--yes", is_flag=True,
              help="Run without asking where the environment is prod or production.")
@click.option("--record", is_flag=True,
              help="Record the run (name, checksum, environment, exit code) in the tracking "
              "schema's script_run table.")
@lock_timeout_option
@pass_app
def run(app: App, script_ref: str, variables_path: str | None, print_only: bool, yes: bool,
        record: bool, lock_timeout: float) -> None:
    """Render scripts/NAME.sql (or the .sql file PATH) from the working tree and run it
    through psql on the target; psql's output is shown and its exit code returned."""
    from spawn_db.migrate.script import (
        find_script,
        record_run,
        render_script,
        run_script,
        script_name,
    )

    config = app.config()
    path = find_script(config, script_ref)
    sql = render_script(config, path, load_variables_option(config, variables_path))
    if print_only:
        click.echo(sql, nl=not sql.endswith("\n"))
        return
    name = script_name(config, path)
    _confirm_prod(config.environment, config.target().name, name, yes)
    done = run_script(config, sql)
    if record:
        record_run(config, name, sql, done, lock_timeout=lock_timeout)
        note(f"Recorded {name} (exit code {done.exit_code}) in "
             f"{config.target().spawn_schema}.script_run.")
    if done.exit_code != 0:
        raise SystemExit(done.exit_code)


def _confirm_prod(environment: str, target: str, name: str, yes: bool) -> None:
    """In a production environment a script runs only when someone says so: ``--yes``, or
    an answer at the terminal."""
    from spawn_db.config import PROD_ENVIRONMENTS

    if yes or environment not in PROD_ENVIRONMENTS:
        return
    if not sys.stdin.isatty():
        raise UsageError(
            f"not running {name} on target {target}: its environment is {environment}, and "
            "spawn cannot ask for confirmation because standard input is not a terminal; "
            "pass --yes to run it")
    question = f"Run {name} on target {target} (environment {environment})?"
    if not click.confirm(question, default=False, err=True):
        note("Cancelled; nothing was run.")
        raise SystemExit(1)
