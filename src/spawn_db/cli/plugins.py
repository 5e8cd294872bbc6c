"""``spawn plugins``: what is installed, from where, and whether it loads."""

from __future__ import annotations

import click

from spawn_db.cli.output import emit_json, info, note


@click.command("plugins")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
def plugins_command(fmt: str) -> None:
    """List installed plugins (entry points in the spawn.* groups), where each comes from,
    and whether it loads."""
    from spawn_db import plugins

    found = [(plugin, plugins.try_load(plugin)) for group in plugins.GROUPS
             for plugin in plugins.installed(group)]
    if fmt == "json":
        emit_json([{"group": p.group, "name": p.name, "object": p.value,
                    "distribution": p.distribution, "version": p.version,
                    "location": p.location, "error": error} for p, error in found])
        return
    for plugin, error in found:
        state = "ok" if error is None else f"fails to load: {error}"
        info(f"{plugin.group}  {plugin.name}  {plugin.value}  "
             f"({plugin.distribution} {plugin.version}, {plugin.location})  {state}")
    if not found:
        note("No plugins installed (entry points in the groups "
             f"{', '.join(plugins.GROUPS)}).")
    elif not plugins.enabled():
        note("Plugins are turned off (--no-plugins or SPAWN_NO_PLUGINS=1): none of these is "
             "used.")
