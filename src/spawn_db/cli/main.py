"""Entry point: global options, the shared ``App`` context, and the error boundary.

Library modules are imported inside commands, not here, so ``spawn --help`` and
``spawn --version`` start without loading Jinja, rich or the hashing code.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from spawn_db import __version__
from spawn_db.cli.context import App
from spawn_db.errors import SpawnError

if TYPE_CHECKING:
    from spawn_db.cli.output import ColorMode


class SpawnGroup(click.Group):
    """Translates ``SpawnError`` (and ``OSError``) into a one-line message and exit code, once.

    The message and the ``--debug`` traceback are shown with passwords masked
    (``mask_secrets``): a target's command may carry one, and exceptions quote it.
    Commands from ``spawn.commands`` plugins are looked up only for a name spawn does not
    know, or for a listing (``--help``).
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_plugin_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or _plugin_commands(ctx).get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        from spawn_db.cli.signals import sigterm_as_interrupt

        with sigterm_as_interrupt() as signals:
            try:
                try:
                    result = super().invoke(ctx)
                except (click.exceptions.Exit, SystemExit):
                    _push_remote(ctx)
                    raise
                _push_remote(ctx)
                return result
            except SpawnError as exc:
                _report(ctx, exc, signals.exit_code(exc.exit_code))
            except (KeyboardInterrupt, click.Abort):
                if not signals.terminated:
                    raise
                click.echo("Aborted! (SIGTERM)", err=True)
                ctx.exit(signals.exit_code(1))
            except BrokenPipeError:
                _silence_broken_pipe()
                ctx.exit(1)
            except OSError as exc:
                # A file spawn writes for the user (read-only folder, no space, a name
                # too long): one line naming the file, like every other error.
                from spawn_db.errors import FileAccessError

                error = FileAccessError.from_os_error(exc)
                _report(ctx, error, signals.exit_code(error.exit_code))


def _report(ctx: click.Context, exc: SpawnError, exit_code: int) -> None:
    """Print ``error: MESSAGE`` (and the traceback with --debug); exit with ``exit_code``.

    On a terminal that shows colour the message is framed in a red panel, so it stands
    out from the progress above it; everywhere else (a pipe, a file, ``--color never``,
    ``NO_COLOR``, ``TERM=dumb``) it is the one ``error: MESSAGE`` line scripts read.
    """
    from spawn_db.cli.output import use_color
    from spawn_db.db.target import mask_secrets

    app = ctx.obj if isinstance(ctx.obj, App) else None
    if app is not None and app.debug:
        import traceback

        click.echo(mask_secrets(traceback.format_exc()), err=True, nl=False)
    message = mask_secrets(exc.message)
    if sys.stderr.isatty() and use_color(stream_is_err=True):
        _error_panel(message)
    else:
        click.echo(f"error: {message}", err=True)
    ctx.exit(exit_code)


def _error_panel(message: str) -> None:
    """The error in a rich panel titled ``error``, on stderr; rich is imported only here."""
    from rich.console import Console
    from rich.panel import Panel
    from rich.text import Text

    console = Console(stderr=True, highlight=False, emoji=False)
    console.print(Panel(Text(message), title="error", title_align="left",
                        border_style="red", expand=False))


def _silence_broken_pipe() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def _push_remote(ctx: click.Context) -> None:
    app = ctx.obj
    if isinstance(app, App):
        app.push_remote()


def _plugin_commands(ctx: click.Context) -> dict[str, click.Command]:
    """``spawn.commands`` plugins that are click commands and take no built-in name."""
    from spawn_db import plugins

    if ctx.params.get("no_plugins"):
        return {}
    found = {}
    for name, command in plugins.load("spawn.commands").items():
        if isinstance(command, click.Command):
            found[command.name or name] = command
        else:
            plugins.warn(f"plugin {name} (spawn.commands) is not a click command; it is left "
                         "out")
    return found


def _plugin_warnings_to_stderr(no_plugins: bool) -> None:
    from spawn_db import plugins
    from spawn_db.cli.output import warn

    if no_plugins:
        plugins.disable()
    plugins.on_warning = warn
    for message in plugins.pending_warnings:
        warn(message)
    plugins.pending_warnings.clear()


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from spawn_db.db.pgbin import describe_binaries

    click.echo(f"spawn {__version__}")
    click.echo(describe_binaries())
    ctx.exit(0)


@click.group(cls=SpawnGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
    help="Show the version and the PostgreSQL binaries spawn would use.",
)
@click.option("--config-file", metavar="PATH", help="Config file (default: spawn.toml; "
              "env SPAWN_CONFIG_FILE).")
@click.option("--target", metavar="NAME", help="Target from spawn.toml (env SPAWN_TARGET).")
@click.option("--spawn-folder", metavar="PATH|URL",
              help="Use this spawn folder instead of spawn.toml's `spawn_folder`: a path, or a "
              "URL such as s3://bucket/prefix (env SPAWN_FOLDER).")
@click.option("-e", "--environment", metavar="NAME",
              help="Override the environment (`env` in templates; env SPAWN_ENVIRONMENT).")
@click.option("--strict/--lenient", "strict", default=None,
              help="An undefined template value is an error / renders as nothing "
              "(default: [templates] undefined in spawn.toml, else lenient).")
@click.option("--color", "color", type=click.Choice(["auto", "always", "never"]),
              default="auto", show_default=True, envvar="SPAWN_COLOR",
              help="Colour the output: auto means on a terminal, unless NO_COLOR is set or "
              "TERM=dumb (env SPAWN_COLOR).")
@click.option("-q", "--quiet", is_flag=True,
              help="Errors, warnings and results only: no progress, summaries or notes.")
@click.option("-v", "--verbose", is_flag=True,
              help="More detail on stderr: each command line spawn starts (passwords masked).")
@click.option("-d", "--debug", is_flag=True, help="Show tracebacks for errors.")
@click.option("--no-plugins", is_flag=True,
              help="Load no plugins (template functions, commands, secret providers from "
              "installed packages; env SPAWN_NO_PLUGINS=1).")
@click.pass_context
def cli(
    ctx: click.Context,
    config_file: str | None,
    target: str | None,
    spawn_folder: str | None,
    environment: str | None,
    strict: bool | None,
    color: ColorMode,
    quiet: bool,
    verbose: bool,
    debug: bool,
    no_plugins: bool,
) -> None:
    """Spawn: a database build system for PostgreSQL.

    Components are reusable SQL edited in place; migrations are Jinja templates
    that include them, pinned to a content-addressed snapshot, and applied
    through psql; tests diff psql output against golden files.
    """
    from spawn_db.cli.output import configure, show_commands
    from spawn_db.config import Overrides

    if quiet and verbose:
        from spawn_db.errors import UsageError

        raise UsageError("--quiet and --verbose contradict each other; pass one of them")
    configure(color=color, quiet=quiet, verbose=verbose)
    _plugin_warnings_to_stderr(no_plugins)
    if verbose:
        show_commands()
    ctx.obj = App(
        overrides=Overrides.from_flags(
            config_file=config_file, target=target, environment=environment, strict=strict,
            spawn_folder=spawn_folder,
        ),
        debug=debug,
    )


def _register() -> None:
    from spawn_db.cli import apply as apply_cli
    from spawn_db.cli import component, db, lint, migration, pin, project, sqltest

    for command in (apply_cli.apply, apply_cli.adopt, apply_cli.status):
        migration.migration.add_command(command)
    from spawn_db.cli import revert as revert_cli

    migration.migration.add_command(revert_cli.revert)
    migration.migration.add_command(revert_cli.revert, "rollback")
    cli.add_command(project.init)
    cli.add_command(project.check)
    cli.add_command(lint.lint)
    from spawn_db.cli import lsp as lsp_cli

    cli.add_command(lsp_cli.lsp)
    cli.add_command(migration.migration)
    cli.add_command(sqltest.test)
    cli.add_command(db.db)
    cli.add_command(pin.pin)
    cli.add_command(component.component)
    cli.add_command(project.completion)
    from spawn_db.cli import repeatable as repeatable_cli

    cli.add_command(repeatable_cli.repeatable)
    from spawn_db.cli import verify as verify_cli

    migration.migration.add_command(verify_cli.verify)
    from spawn_db.cli import drift as drift_cli

    migration.migration.add_command(drift_cli.drift)
    db.db.add_command(drift_cli.drift, "diff")
    from spawn_db.cli import watch as watch_cli

    cli.add_command(watch_cli.watch)
    from spawn_db.cli import secret as secret_cli

    cli.add_command(secret_cli.secret)
    from spawn_db.cli import plugins as plugins_cli

    cli.add_command(plugins_cli.plugins_command)
    from spawn_db.cli import script as script_cli

    cli.add_command(script_cli.script)
    from spawn_db.cli import data as data_cli

    cli.add_command(data_cli.data)
    from spawn_db.cli import schema as schema_cli

    cli.add_command(schema_cli.schema)


_register()


def main() -> None:
    cli(prog_name="spawn")


if __name__ == "__main__":
    main()
