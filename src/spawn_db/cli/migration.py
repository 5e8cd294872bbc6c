"""``spawn migration ...``: new, build, pin (and, with a database, apply/adopt/status)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import click

from spawn_db.cli.context import App, complete_migrations, pass_app
from spawn_db.cli.output import info, stream_complete, warn

if TYPE_CHECKING:
    from spawn_db.config import Config

variables_option = click.option(
    "--variables", "variables_path", metavar="FILE", type=click.Path(dir_okay=False),
    help="JSON, TOML or YAML file exposed to templates as `variables` (default: the "
    "target's or environment's `variables` in spawn.toml).",
)


def load_variables_option(config: Config, path: str | None, *,
                          none_when_unset: bool = False) -> Any:
    """The parsed ``--variables`` file, else the one spawn.toml names for the target or
    environment (``Config.variables_file``), else an empty mapping.

    ``status`` and ``check`` pass ``none_when_unset``: for them "no variables known"
    (None) is not the same as "empty variables" (see ``drift.WatchedVariables``).
    """
    from spawn_db.render.variables import load_variables

    found = config.variables_file(path)
    if found is None:
        return None if none_when_unset else {}
    return load_variables(found)


@click.group()
def migration() -> None:
    """Create, build, pin and apply migrations."""


@migration.command("new")
@click.argument("name")
@pass_app
def new(app: App, name: str) -> None:
    """Create migrations/<timestamp>-NAME/up.sql and print the new migration's name."""
    from spawn_db.migrate.migration import new_migration

    info(new_migration(app.config(), name))


@migration.command("build")
@click.argument("migration_name", metavar="MIGRATION", shell_complete=complete_migrations)
@click.option("--pinned", is_flag=True, help="Resolve components from the migration's pin.")
@variables_option
@pass_app
def build(app: App, migration_name: str, pinned: bool, variables_path: str | None) -> None:
    """Render MIGRATION's up.sql to stdout."""
    from spawn_db.migrate.migration import build_migration, build_working_tree

    config = app.config()
    variables = load_variables_option(config, variables_path)
    if pinned:
        stream_complete(build_migration(config, migration_name, pinned=True,
                                        variables=variables), trailer="\n")
        return
    chunks, difference = build_working_tree(config, migration_name, variables)
    stream_complete(_warn_when_done(migration_name, chunks, difference), trailer="\n")


def _warn_when_done(name: str, chunks: Iterator[str],
                    difference: Callable[[], str | None]) -> Iterator[str]:
    """The chunks, then (still before stdout is written) the warning if apply differs."""
    yield from chunks
    if difference() is not None:
        warn(
            f"{name} is pinned: `spawn migration apply` renders it from the pin, "
            "not from the working tree shown here; add --pinned to see what will be applied"
        )


@migration.command("pin")
@click.argument("migration_name", metavar="MIGRATION", shell_complete=complete_migrations)
@click.option("--force", is_flag=True,
              help="Re-pin even a migration the database records as applied.")
@pass_app
def pin(app: App, migration_name: str, force: bool) -> None:
    """Snapshot components/ into pinned/ and write MIGRATION's lock.toml."""
    from spawn_db.migrate.migration import pin_migration

    info(pin_migration(app.config(), migration_name, force=force))
