"""``spawn data fetch`` and ``spawn data status``: parse, call ``data.fetch``, print."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.output import emit_json, info, note

if TYPE_CHECKING:
    from spawn_db.data.fetch import SourceStatus

NONE_DECLARED = ("No data sources in spawn.toml; declare one as [data.<name>] with `url` and "
                 "`sha256`, or `command` (see docs/data.md).")


@click.group()
def data() -> None:
    """External data files under components/data/: fetch them, and check them."""


@data.command("fetch")
@click.argument("names", metavar="[NAME]...", nargs=-1)
@pass_app
def fetch(app: App, names: tuple[str, ...]) -> None:
    """Download or run each [data.NAME] source (all when none is named) into
    components/data/, checking the declared sha256; a refused file changes nothing."""
    from spawn_db.data.fetch import display_path, selected
    from spawn_db.data.fetch import fetch as fetch_source

    config = app.config()
    sources = selected(config, names)
    if not sources:
        note(NONE_DECLARED)
        return
    written = False
    for source in sources:
        done = fetch_source(config, source)
        where = display_path(source)
        if done.written:
            info(f"Fetched {source.name}: {where} ({done.size} bytes, sha256 {done.sha256}).")
            written = True
        else:
            info(f"{source.name}: {where} is up to date (sha256 matches).")
    if written:
        note("Pin the migrations that read the new data to snapshot it: "
             "`spawn migration pin <migration>`.")


@data.command("status")
@click.argument("names", metavar="[NAME]...", nargs=-1)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@pass_app
def status(app: App, names: tuple[str, ...], fmt: str) -> None:
    """Each [data.NAME] source's file: ok, missing or stale (its sha256 differs from the
    declared one); exit 1 when any is missing or stale."""
    from spawn_db.data.fetch import data_status

    rows = data_status(app.config(), names)
    if fmt == "json":
        emit_json({"sources": [_json(r) for r in rows]})
    elif not rows:
        note(NONE_DECLARED)
    else:
        info(_table(rows))
    if any(r.state != "ok" for r in rows):
        raise SystemExit(1)


def _table(rows: list[SourceStatus]) -> str:
    from spawn_db.data.fetch import display_path

    header = ("Source", "State", "File", "Detail")
    cells = [(r.source.name, r.state, display_path(r.source), r.detail) for r in rows]
    widths = [max(len(c[i]) for c in [header, *cells]) for i in range(4)]
    lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *cells]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _json(row: SourceStatus) -> dict[str, Any]:
    from spawn_db.data.fetch import display_path

    source = row.source
    return {"name": source.name, "state": row.state, "path": display_path(source),
            "kind": "url" if source.url is not None else "command",
            "url": source.url, "command": list(source.command) or None,
            "declared_sha256": source.sha256, "sha256": row.sha256}
