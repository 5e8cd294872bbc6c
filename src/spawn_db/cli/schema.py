"""``spawn schema flatten|export|import``: parse, call ``spawn_db.migrate.flatten``, print."""

from __future__ import annotations

from pathlib import Path

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.migration import load_variables_option, no_pin_option, variables_option
from spawn_db.cli.output import info, note, warn


@click.group()
def schema() -> None:
    """The schema the migrations build, as one file: a baseline, an export, an import."""


@schema.command("flatten")
@click.option("--name", default="baseline", show_default=True,
              help="The new migration's name (after its timestamp).")
@click.option("--dry-run", is_flag=True,
              help="Print the baseline's up.sql instead of writing the migration.")
@no_pin_option
@variables_option
@pass_app
def flatten(app: App, name: str, dry_run: bool, no_pin: bool,
            variables_path: str | None) -> None:
    """Build every migration on a scratch database of the embedded server, dump its schema
    and write it as a new baseline migration (baseline = true) that replaces them all."""
    from spawn_db.migrate.flatten import flatten as run_flatten

    config = app.config()
    variables = load_variables_option(config, variables_path)
    result = run_flatten(config, name=name, pinned=not no_pin, variables=variables,
                         write=not dry_run)
    for path in result.kept:
        warn(f"warning: {path} is not a string: where a migration uses it, the baseline "
             "holds its value, not the variable")
    count = len(result.replaced)
    noun = "migration" if count == 1 else "migrations"
    names = ", ".join(result.substituted) or "none"
    if result.name is None:
        info(result.template.rstrip("\n"))
        note(f"Dry run: the baseline of {count} {noun} (variables: {names}); nothing written.")
        return
    info(result.name)
    note(f"Wrote baseline {result.name}: the schema of {count} {noun}, pinned "
         f"(variables: {names}). It replaces them: an empty database runs only the "
         "baseline, an existing one adopts it.")


@schema.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@no_pin_option
@variables_option
@pass_app
def export(app: App, file: Path, no_pin: bool, variables_path: str | None) -> None:
    """Build every migration on a scratch database of the embedded server and write its
    schema (pg_dump --schema-only, cleaned) to FILE, atomically and private (0600)."""
    from spawn_db.migrate.flatten import export_schema, write_dump

    config = app.config()
    variables = load_variables_option(config, variables_path)
    dump = export_schema(config, pinned=not no_pin, variables=variables)
    write_dump(file, dump.text)
    count = len(dump.migrations)
    note(f"Exported the schema of {count} migration{'' if count == 1 else 's'} to {file}.")


@schema.command("import")
@click.argument("file", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@pass_app
def import_(app: App, file: Path) -> None:
    """Run the schema dump FILE on the target through psql, in one transaction, stopping
    at the first error; records nothing in the migration history."""
    from spawn_db.migrate.flatten import import_schema

    database = import_schema(app.config(), file)
    note(f"Imported {file} into database {database}.")
