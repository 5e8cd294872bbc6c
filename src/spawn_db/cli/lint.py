"""``spawn lint``: SQL syntax and risky-DDL checks of rendered migrations, no database."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.output import info, note

if TYPE_CHECKING:
    from spawn_db.config import Config


@click.command()
@click.argument("migrations", nargs=-1, metavar="[MIGRATION]...")
@click.option("--all", "all_", is_flag=True,
              help="Lint every migration (the default when no migration is named).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "github"]), default="text",
              show_default=True,
              help="text: file:line:col lines; json: one stable document; github: ::error / "
              "::warning workflow commands for CI annotations.")
@click.option("--variables", "variables_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Variables file to render with (default: the target's or environment's "
              "`variables` in spawn.toml, as apply uses).")
@click.option("--db", "database", is_flag=True,
              help="Then apply the rendered migrations, in order, to a scratch database "
              "created on the target's server (and dropped after); report the first "
              "statement that fails.")
@pass_app
def lint(app: App, migrations: tuple[str, ...], all_: bool, fmt: str,
         variables_path: str | None, database: bool) -> None:
    """Render each migration as apply would (pinned when pinned), parse every statement with
    PostgreSQL's parser and check the lint rules (docs/lint.md); exit 1 on any
    error-severity finding, 0 when only warnings remain."""
    from spawn_db.cli.migration import load_variables_option
    from spawn_db.errors import UsageError
    from spawn_db.lint.lint import lint_migrations
    from spawn_db.lint.report import as_json, github_line, summary, text_line

    if all_ and migrations:
        raise UsageError("name migrations or pass --all, not both")
    config = app.config()
    variables = load_variables_option(config, variables_path)
    names, folders = _with_sources(config, list(migrations))
    report = lint_migrations(config, names, variables=variables, database=database,
                             folders=folders)
    if fmt == "json":
        info(as_json(report))
    else:
        line = github_line if fmt == "github" else text_line
        for found in report.findings:
            info(line(found))
        note(summary(report))
    if not report.ok:
        raise SystemExit(1)


def _with_sources(config: Config, migrations: list[str]
                  ) -> tuple[list[str], dict[str, tuple[Config, str]] | None]:
    """With ``[[sources]]``: the names typed (``audit:<m>``) resolved, and every source's
    migrations to lint too; else the names as typed and None (the project's own)."""
    if not config.sources:
        return migrations, None
    from spawn_db.migrate.sources import Sources

    sources = Sources(config)
    return [sources.resolve(m) for m in migrations], sources.folders()
