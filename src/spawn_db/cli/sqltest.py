"""``spawn test ...``: golden-file tests."""

from __future__ import annotations

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.migration import load_variables_option, variables_option
from spawn_db.cli.output import info, stream


@click.group()
def test() -> None:
    """Create, run and compare golden-file SQL tests."""


@test.command("new")
@click.argument("name")
@pass_app
def new(app: App, name: str) -> None:
    """Create tests/NAME/test.sql with a starter script."""
    from spawn_db.sqltest import new_test

    config = app.config()
    new_test(config, name)
    info(f"Created {config.tests_dir / name / 'test.sql'}")


@test.command("build")
@click.argument("name")
@variables_option
@pass_app
def build(app: App, name: str, variables_path: str | None) -> None:
    """Render tests/NAME/test.sql to stdout."""
    from spawn_db.sqltest import build_test

    chunks = build_test(app.config(), name, variables=load_variables_option(variables_path))
    stream(chunks, trailer="\n")
