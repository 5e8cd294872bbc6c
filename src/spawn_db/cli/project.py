"""``spawn init``, ``spawn check`` and ``spawn completion``."""

from __future__ import annotations

from pathlib import Path

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.output import emit_json, info, note, warn


@click.command()
@click.option(
    "--docker", "docker", is_flag=False, flag_value="spawn", default=None, metavar="[DB]",
    help="Write docker-compose.yaml and a target that runs psql in its container "
    "(database DB, default spawn).",
)
@click.option(
    "--example", "example", is_flag=False, flag_value="spawn-example", default=None,
    metavar="[DIR]", help="Create a complete example project in DIR (default spawn-example).",
)
@pass_app
def init(app: App, docker: str | None, example: str | None) -> None:
    """Create spawn.toml and the spawn/ folders in the current directory."""
    from spawn_db.project import init_project, refuse_nested_project

    if example is not None:
        if docker is not None:
            raise click.UsageError("--example and --docker cannot be combined")
        from spawn_db.example.create import create_example

        refuse_nested_project(Path.cwd(), example=True)
        made = create_example(Path.cwd() / example)
        info(f"Created the example project in {example}/")
        info(f"Migrations (pinned): {', '.join(made.migrations)}")
        info(f"Tests: {', '.join(made.tests)}")
        note(f"Next: cd {example} && spawn migration apply --yes && spawn test compare")
        return
    config_file = app.overrides.config_file
    if not config_file:
        refuse_nested_project(Path.cwd(), example=False)
    path = Path(config_file) if config_file else Path.cwd() / "spawn.toml"
    path = path if path.is_absolute() else Path.cwd() / path
    result = init_project(path.parent, config_name=path.name, docker_database=docker)
    info(f"Created {result.config_path}")
    target = "docker (direct)" if docker else "embedded"
    note(f"Target `local` uses the {target} database. Next: spawn migration new <name>")


@click.command()
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@click.option("--database", is_flag=True,
              help="Also read the target's history: applied migrations modified since, and "
              "pending ones pinned to older components.")
@click.option("--variables", "variables_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="The variables file apply uses, to render (the SP020 check, --lint) and, "
              "with --database, to compare checksums (default: the target's or "
              "environment's `variables` in spawn.toml).")
@click.option("--no-drafts", is_flag=True,
              help="Fail (exit 1) when any migration is a draft: for release pipelines.")
@click.option("--require-verify", is_flag=True,
              help="Fail (exit 1) for every migration without a verify.sql.")
@click.option("--lint", is_flag=True,
              help="Also run `spawn lint` on every migration: its errors fail (exit 1), its "
              "warnings are shown.")
@pass_app
def check(app: App, fmt: str, database: bool, variables_path: str | None, no_drafts: bool,
          require_verify: bool, lint: bool) -> None:
    """Warn about every migration that is not pinned (with --database, also modified or
    pinned to older components) and list drafts; exit 1 if any is unpinned, broken or
    modified (or a draft with --no-drafts, or has no verify.sql with --require-verify)."""
    from spawn_db.cli.migration import load_variables_option
    from spawn_db.errors import SpawnError
    from spawn_db.migrate.migration import check as run_check

    config = app.config()
    variables = (load_variables_option(config, variables_path, none_when_unset=True)
                 if database else None)
    try:
        lint_variables = load_variables_option(config, variables_path)
    except SpawnError:
        if lint or database or variables_path:
            raise
        lint_variables = {}  # a plain check renders (for SP020) without a file it cannot read
    warnings = run_check(config, database=database, variables=variables,
                         no_drafts=no_drafts, require_verify=require_verify, lint=lint,
                         lint_variables=lint_variables)
    failing = [w for w in warnings if w.fails]
    if fmt == "json":
        emit_json({"ok": not failing,
                   "warnings": [{"migration": w.migration, "message": w.message,
                                 "kind": w.kind} for w in warnings]})
    else:
        for w in warnings:
            warn(w.message)
        if not failing:
            drafts = " (drafts aside)" if any(w.kind == "draft" for w in warnings) else ""
            info(f"All migrations are pinned{drafts}." if not database else
                 f"All migrations are pinned{drafts}, and none was modified since it was "
                 "applied.")
    if failing:
        raise SystemExit(1)


@click.command()
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion(ctx: click.Context, shell: str) -> None:
    """Print the shell completion script for SHELL (eval it in your shell's rc file)."""
    from click.shell_completion import get_completion_class

    cls = get_completion_class(shell)
    assert cls is not None
    comp = cls(ctx.find_root().command, {}, "spawn", "_SPAWN_COMPLETE")
    click.echo(comp.source())
