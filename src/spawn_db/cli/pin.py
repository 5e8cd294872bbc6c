"""``spawn pin validate | diff | checkout | report``: parse, call ``migrate.pins``, print."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from spawn_db.cli.context import App, pass_app
from spawn_db.cli.output import emit_json, finding, info, note, use_color

if TYPE_CHECKING:
    from spawn_db.migrate.pins import PinDiff, PinValidation, UnusedReport

format_option = click.option("--format", "fmt", type=click.Choice(["text", "json"]),
                             default="text", show_default=True, help="Output format.")


@click.group()
def pin() -> None:
    """Look inside the pin store: validate, diff, check out, report unused objects."""


@pin.command("validate")
@click.option("--all-objects", is_flag=True,
              help="Also rehash objects no lock.toml reaches.")
@format_option
@pass_app
def validate(app: App, all_objects: bool, fmt: str) -> None:
    """Check every lock.toml and every object it reaches; exit 1 if any is missing or
    corrupt."""
    from spawn_db.migrate.pins import validate_pins

    found = validate_pins(app.config(), all_objects=all_objects)
    if fmt == "json":
        emit_json(_validation_json(found))
    else:
        for _name, message in sorted(found.broken_locks.items()):
            finding(message)
        for bad in found.bad_objects:
            users = ", ".join(bad.users) if bad.users else "no migration (unreachable)"
            finding(f"pin object {bad.digest} is {bad.problem}; used by {users}")
        if found.ok:
            extra = (f", and {found.checked_unreachable} unreachable"
                     if all_objects else "")
            info(f"Pin store OK: {found.checked} reachable objects checked{extra}.")
    if not found.ok:
        raise SystemExit(1)


def _validation_json(found: PinValidation) -> dict[str, Any]:
    return {
        "ok": found.ok,
        "checked": found.checked,
        "checked_unreachable": found.checked_unreachable,
        "broken_locks": [{"migration": n, "message": m}
                         for n, m in sorted(found.broken_locks.items())],
        "bad_objects": [{"object": b.digest, "problem": b.problem, "migrations": list(b.users)}
                        for b in found.bad_objects],
    }


@pin.command("diff")
@click.argument("a", metavar="A")
@click.argument("b", metavar="B")
@click.option("--stat", "stat", is_flag=True, help="Only the lines added and removed per file.")
@click.option("--name-only", is_flag=True, help="Only the names of the files that differ.")
@click.option("--exit-code", is_flag=True, help="Exit 1 when the snapshots differ.")
@click.option("--used", is_flag=True,
              help="Only files that A's or B's migration reads when it renders.")
@pass_app
def diff(app: App, a: str, b: str, stat: bool, name_only: bool, exit_code: bool,
         used: bool) -> None:
    """Show what changed between two snapshots (a migration, a root hash or prefix, or
    WORKTREE for components/ as it is now)."""
    from spawn_db.migrate.pins import diff as run_diff

    if stat and name_only:
        from spawn_db.errors import UsageError

        raise UsageError("--stat and --name-only contradict each other; pass one of them")
    result = run_diff(app.config(), a, b, used=used)
    if name_only:
        for change in result.changes:
            info(change.path)
    elif stat:
        _print_stat(result)
    else:
        _print_diff(result)
    if exit_code and result.changes:
        raise SystemExit(1)


def _print_stat(result: PinDiff) -> None:
    width = max((len(c.path) for c in result.changes), default=0)
    added_total = removed_total = 0
    for change in result.changes:
        if change.binary:
            info(f" {change.path.ljust(width)} | binary ({change.kind})")
            continue
        added, removed = change.counts()
        added_total += added
        removed_total += removed
        info(f" {change.path.ljust(width)} | +{added} -{removed} ({change.kind})")
    count = len(result.changes)
    note(f"{count} file{'' if count == 1 else 's'} changed, {added_total} insertion(s)(+), "
         f"{removed_total} deletion(s)(-)")


def _print_diff(result: PinDiff) -> None:
    color = use_color()
    note(f"--- {result.a.label}\n+++ {result.b.label}")
    for change in result.changes:
        if change.binary:
            info(_style(f"Binary file {change.path} {change.kind}", color, bold=True))
            continue
        for line in change.unified():
            info(_styled_line(line.rstrip("\n"), color))
    if not result.changes:
        note("No differences.")


def _styled_line(line: str, color: bool) -> str:
    if line.startswith(("+++", "---")):
        return _style(line, color, bold=True)
    if line.startswith("@@"):
        return _style(line, color, fg="cyan")
    if line.startswith("+"):
        return _style(line, color, fg="green")
    if line.startswith("-"):
        return _style(line, color, fg="red")
    return line


def _style(text: str, color: bool, **styles: Any) -> str:
    return click.style(text, **styles) if color else text


@pin.command("checkout")
@click.argument("ref", metavar="REF")
@click.option("--to", "to", type=click.Path(file_okay=False, path_type=Path),
              help="Write the files here instead of .spawn/checkout/<hash>/.")
@click.option("--in-place", is_flag=True,
              help="Replace components/ with the snapshot, after pinning the current one.")
@click.option("--force", is_flag=True, help="Replace the contents of a non-empty --to folder.")
@pass_app
def checkout(app: App, ref: str, to: Path | None, in_place: bool, force: bool) -> None:
    """Write the snapshot REF (a migration, a root hash or prefix) as files."""
    from spawn_db.migrate.pins import checkout as run_checkout

    if in_place and to is not None:
        from spawn_db.errors import UsageError

        raise UsageError("--in-place writes over components/; drop --to, or drop --in-place")
    done = run_checkout(app.config(), ref, to=to, in_place=in_place, force=force)
    info(str(done.target))
    note(f"Checked out {done.ref.label}: {done.files} file{'' if done.files == 1 else 's'}.")
    if done.previous_root is not None:
        note(f"The previous components/ is pinned as {done.previous_root}; to bring it back: "
             f"spawn pin checkout {done.previous_root} --in-place")


@pin.command("report")
@click.option("--unused", is_flag=True, required=True,
              help="List objects no lock.toml reaches (required: the only report so far).")
@click.option("--delete", is_flag=True,
              help="Delete them, and staging folders of interrupted pins.")
@click.option("--keep", multiple=True, metavar="REF",
              help="Also keep what this snapshot reaches (repeatable).")
@format_option
@pass_app
def report(app: App, unused: bool, delete: bool, keep: tuple[str, ...], fmt: str) -> None:
    """List (and with --delete remove) pin objects that no migration uses."""
    from spawn_db.migrate.pins import unused as run_unused

    found = run_unused(app.config(), keep=keep, delete=delete)
    if fmt == "json":
        emit_json(_unused_json(found))
        return
    for item in found.objects:
        info(f"{item.digest}  {item.size} bytes")
    for name in found.staging:
        info(f"{name}/  (staging folder of an interrupted pin)")
    verb = "Deleted" if delete else "Unused:"
    count = len(found.objects)
    note(f"{verb} {count} object{'' if count == 1 else 's'}, {_size(found.total)}"
         + (f", and {len(found.staging)} staging folder(s)" if found.staging else "") + ".")


def _unused_json(found: UnusedReport) -> dict[str, Any]:
    return {
        "deleted": found.deleted,
        "objects": [{"object": o.digest, "size": o.size} for o in found.objects],
        "total_bytes": found.total,
        "staging": list(found.staging),
    }


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} bytes"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KiB"
    return f"{count / 1024 / 1024:.1f} MiB"

