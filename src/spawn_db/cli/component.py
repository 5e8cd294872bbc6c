"""``spawn component status`` (``migrate.components``) and ``spawn component deps``
(``lint.depgraph``): parse, call, print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.output import emit_json, finding, info, note, warn

if TYPE_CHECKING:
    from spawn_db.migrate.components import ComponentReport, ComponentState


@click.group()
def component() -> None:
    """Component files: which edits no migration carries yet."""


@component.command("status")
@click.option("--changed", is_flag=True,
              help="Only components whose current bytes no pin holds; exit 1 when any "
              "(no database needed).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@pass_app
def status(app: App, changed: bool, fmt: str) -> None:
    """Each component file: changed since the newest pin, new, carried by no pin, waiting in
    an unapplied migration, and the migrations that read it."""
    from spawn_db.migrate.components import component_status

    report = component_status(app.config(), database=not changed)
    rows = report.uncarried if changed else list(report.components)
    if fmt == "json":
        emit_json(_json(report, rows))
    else:
        for problem in report.problems:
            warn(problem)
        if rows:
            info(_table(rows))
        if changed:
            for row in rows:
                finding(f"{row.path} was edited, but no migration's pin holds this version; "
                        "pin the migration that should deploy it (or create one)")
        if not changed or not rows:
            note(_summary(report, changed))
    if changed and rows:
        raise SystemExit(1)


@component.command("deps")
@click.argument("name", metavar="[COMPONENT]", required=False)
@click.option("--reverse", is_flag=True,
              help="Show what each component depends on, instead of what depends on it.")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "dot"]), default="text",
              show_default=True, help="text: an indented tree; json: one stable document; "
              "dot: a Graphviz digraph.")
@click.option("--variables", "variables_path", metavar="FILE", type=click.Path(dir_okay=False),
              help="Variables file to render components with (default: the target's or "
              "environment's `variables` in spawn.toml, as apply uses).")
@pass_app
def deps(app: App, name: str | None, reverse: bool, fmt: str,
         variables_path: str | None) -> None:
    """The objects each component defines (functions, views, types, tables, triggers,
    policies, sequences) and the components whose objects use them; with COMPONENT, that
    component and everything that depends on it, transitively."""
    from spawn_db.cli.migration import load_variables_option
    from spawn_db.lint.depgraph import as_dot, as_json, as_text, component_graph, find_component

    config = app.config()
    start = find_component(config, name) if name is not None else None
    graph = component_graph(config, load_variables_option(config, variables_path))
    render = {"text": as_text, "json": as_json, "dot": as_dot}[fmt]
    output = render(graph, start, reverse)
    if output:
        info(output)
    elif fmt == "text":
        note("No component files (*.sql) in components/.")


def _label(state: ComponentState) -> str:
    if state.deleted:
        return "deleted"
    return ", ".join(state.flags) or "pinned"


def _table(rows: list[ComponentState]) -> str:
    header = ("Component", "State", "Used by")
    cells = [(r.path, _label(r), ", ".join(r.used_by) or "-") for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(3)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *cells]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _summary(report: ComponentReport, changed: bool) -> str:
    if changed:
        return "Every component's current version is held by a pin."
    newest = (f"newest pin {report.newest_pin} ({report.newest_migration})"
              if report.newest_pin else "no pin yet")
    counts: dict[str, int] = {}
    for row in report.components:
        for flag in row.flags:
            counts[flag] = counts.get(flag, 0) + 1
    found = ", ".join(f"{n} {flag}" for flag, n in sorted(counts.items())) or "nothing to report"
    return f"{len(report.components)} component files: {found}; {newest}."


def _json(report: ComponentReport, rows: list[ComponentState]) -> dict[str, Any]:
    return {
        "newest_pin": report.newest_pin,
        "newest_migration": report.newest_migration,
        "database_read": report.database,
        "problems": list(report.problems),
        "components": [{"path": r.path, "flags": list(r.flags), "deleted": r.deleted,
                        "used_by": list(r.used_by), "unapplied_in": list(r.unapplied_by)}
                       for r in rows],
    }
