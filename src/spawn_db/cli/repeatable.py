"""``spawn repeatable new | build | list``: parse, call ``migrate.repeatable``, print.

Repeatables run with ``spawn migration apply`` (``cli/apply.py``); this group creates,
renders and lists them. The table is shared with ``spawn migration status``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.migration import load_variables_option, variables_option
from spawn_db.cli.output import emit_json, info, note, stream_complete, warn

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.migrate.repeatable import RepeatableStatus

STATE_LABELS = {
    "new": "\u25cb New",
    "changed": "\u270e Changed",
    "unchanged": "\u2713 Unchanged",
    "failed": "\u2717 Failed",
    "attempted": "\u26a0 Attempted",
    "database only": "Database only",
    "broken": "\u2717 Broken",
}
_MARK = {True: "\u2713", False: "\u2717"}


@click.group()
def repeatable() -> None:
    """Repeatable migrations: re-run by `migration apply` whenever their SQL changes."""


@repeatable.command("new")
@click.argument("name")
@pass_app
def new(app: App, name: str) -> None:
    """Create repeatable/NAME/up.sql and print its path."""
    from spawn_db.migrate.repeatable import new_repeatable
    from spawn_db.project import Project

    config = app.config()
    info(Project(config).display(new_repeatable(config, name)))


@repeatable.command("build")
@click.argument("name")
@variables_option
@pass_app
def build(app: App, name: str, variables_path: str | None) -> None:
    """Render repeatable NAME from the working tree to stdout, as apply runs it."""
    from spawn_db.migrate.repeatable import build_repeatable

    config = app.config()
    variables = load_variables_option(config, variables_path)
    stream_complete(build_repeatable(config, name, variables=variables), trailer="\n")


@repeatable.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@variables_option
@pass_app
def list_command(app: App, fmt: str, variables_path: str | None) -> None:
    """List the repeatables, in the order apply runs them, each new, changed or unchanged
    against the target's history (and the ones only the database knows)."""
    from spawn_db.cli.apply import repeatable_json
    from spawn_db.migrate.repeatable import read_states, repeatable_dir, repeatable_status

    config = app.config()
    variables = load_variables_option(config, variables_path)
    say_warnings(config)
    rows = repeatable_status(config, read_states(config), variables=variables)
    if fmt == "json":
        emit_json({"repeatables": [repeatable_json(r) for r in rows]})
        return
    if not rows:
        note(f"No repeatables yet in {repeatable_dir(config)}; create one with "
             "`spawn repeatable new NAME`.")
        return
    info(format_repeatables(rows, checksums=True))
    repeatable_problems(rows)


def say_warnings(config: Config) -> None:
    """Print each repeatable.toml's unknown keys once (a broken one raises, exit 2)."""
    from spawn_db.migrate.repeatable import settings_warnings

    for warning in settings_warnings(config):
        warn(warning)


def format_repeatables(rows: Sequence[RepeatableStatus], *, checksums: bool = False) -> str:
    """The repeatables as a plain table (``Requires``/``Description`` only when used), then a
    line counting the states."""
    requires = any(r.requires for r in rows)
    described = any(r.description for r in rows)
    header = ("Repeatable", "Filesystem", "Database", "Status",
              *(("Checksum",) if checksums else ()), *(("Requires",) if requires else ()),
              *(("Description",) if described else ()))
    cells = [(r.name, _MARK[r.on_filesystem], _MARK[r.latest is not None],
              STATE_LABELS[r.state], *((r.checksum_now or "-",) if checksums else ()),
              *((", ".join(r.requires),) if requires else ()),
              *((r.description,) if described else ()))
             for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(len(header))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *cells]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.state] = counts.get(r.state, 0) + 1
    noun = "repeatable" if len(rows) == 1 else "repeatables"
    lines += ["", f"{len(rows)} {noun}: " + ", ".join(f"{n} {s}" for s, n in counts.items())]
    return "\n".join(lines)


def repeatable_problems(rows: Sequence[RepeatableStatus]) -> None:
    """A ``warning:`` per repeatable that does not render, and a note for the ones only the
    database knows (spawn drops nothing for you)."""
    for r in rows:
        if r.problem is not None:
            warn(f"repeatable {r.name} does not render: {r.problem}")
        elif r.state == "database only":
            note(f"note: repeatable {r.name} is recorded in the database but gone from disk; "
                 "what it created is still there (drop it in a migration if it should go)")
