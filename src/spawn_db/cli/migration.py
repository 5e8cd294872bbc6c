"""``spawn migration ...``: new, build, pin (and, with a database, apply/adopt/status)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import click

from spawn_db.cli.context import App, complete_migrations, pass_app
from spawn_db.cli.output import LiveBar, emit_json, info, note, stream_complete, warn

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.migrate.migration import MigrationEntry, PinBatch

no_pin_option = click.option(
    "--no-pin", is_flag=True,
    help="Render components from the working tree instead of the pin.")
no_hooks_option = click.option(
    "--no-hooks", is_flag=True,
    help="Run none of the hooks spawn.toml lists under [[hooks.<event>]].")
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
    from spawn_db.api import load_variables

    return load_variables(config, path, none_when_unset=none_when_unset)


@click.group()
def migration() -> None:
    """Create, build, pin and apply migrations."""


@migration.command("new")
@click.argument("name")
@click.option("--draft", is_flag=True,
              help="Also write migration.toml with draft = true: apply skips it, pin refuses "
              "it.")
@pass_app
def new(app: App, name: str, draft: bool) -> None:
    """Create migrations/<timestamp>-NAME/up.sql and print the new migration's name."""
    from spawn_db.migrate.migration import new_migration

    info(new_migration(app.config(), name, draft=draft))


@migration.command("build")
@click.argument("migration_name", metavar="MIGRATION", shell_complete=complete_migrations)
@click.option("--pinned", is_flag=True, help="Resolve components from the migration's pin.")
@click.option("--down", is_flag=True,
              help="Render down.sql (what `spawn migration revert` runs) instead of up.sql.")
@click.option("--tenant", metavar="NAME",
              help="Render the tenant part (tenant.sql, or with --down tenant_down.sql) as "
                   "tenant NAME gets it.")
@variables_option
@pass_app
def build(app: App, migration_name: str, pinned: bool, down: bool, tenant: str | None,
          variables_path: str | None) -> None:
    """Render MIGRATION's up.sql (or, with --down, its down.sql; with --tenant, its tenant
    part) to stdout."""
    from spawn_db.api import Project

    project = Project(app.config(), variables_path)
    project.variables()  # a bad --variables file stops the command before anything else
    stream_complete(project.render(migration_name, pinned=pinned, down=down, tenant=tenant,
                                   warn=warn), trailer="\n")


@migration.command("pin")
@click.argument("migration_name", metavar="[MIGRATION]", required=False,
                shell_complete=complete_migrations)
@click.option("--all", "pin_all", is_flag=True,
              help="Pin every migration that has no lock.toml yet (one snapshot for all).")
@click.option("--changed", is_flag=True,
              help="Re-pin every pinned migration whose pin is not the current components/, "
              "except applied ones.")
@click.option("--force", is_flag=True,
              help="Re-pin even a migration the database records as applied.")
@pass_app
def pin(app: App, migration_name: str | None, pin_all: bool, changed: bool,
        force: bool) -> None:
    """Snapshot components/ into pinned/ and write MIGRATION's lock.toml (or, with --all
    and/or --changed, the lock.toml of every migration that needs one)."""
    from spawn_db.api import Project

    config = app.config()
    project = Project(config)
    if not _pin_many_requested(migration_name, pin_all, changed, force):
        assert migration_name is not None
        batch = project.pin(migration_name, force=force)
        assert batch.root is not None  # one migration pinned: always a root
        info(batch.root)
        _warn_blank_written(config, batch.written)
        return
    with LiveBar(None, "pinning") as bar:  # one snapshot per source: only time to show
        bar.set_phase("snapshotting components/")
        batches = project.pin_every(unpinned=pin_all, changed=changed)
    for batch in batches:
        _pinned_lines(config, batch)
    busy = [b for b in batches if b.written or b.skipped_applied] or batches[:1]
    for batch in busy:
        summary = _pin_summary(batch, pin_all, changed)
        note(f"Source {batch.source}: {summary}" if batch.source else summary)


def _pinned_lines(config: Config, batch: PinBatch) -> None:
    """What one folder's pin --all/--changed wrote and skipped, and its blank migrations."""
    for name in batch.written:
        info(f"Pinned {name} to {batch.root}")
    for name in batch.skipped_applied:
        note(f"Skipped {name}: it is applied, so it keeps its pin (put the change in a new "
             "migration)")
    if batch.skipped_drafts:
        note(f"Skipped {_count(len(batch.skipped_drafts), 'draft')}: "
             f"{', '.join(batch.skipped_drafts)} (remove draft = true to pin)")
    _warn_blank_written(config, batch.written)


def _warn_blank_written(config: Config, names: Sequence[str]) -> None:
    """``warn_blank`` for the migrations just pinned, each in its own folder (a
    ``[[sources]]`` migration's qualified name is looked up in that source)."""
    from spawn_db.cli.apply import _per_source

    for folder_config, bare in _per_source(config, names):
        warn_blank(folder_config, bare, pinned=True)


def _pin_many_requested(name: str | None, pin_all: bool, changed: bool, force: bool) -> bool:
    """True for --all/--changed; refuses the combinations that cannot mean anything."""
    from spawn_db.errors import UsageError

    if not pin_all and not changed:
        if name is None:
            raise UsageError("name the migration to pin (`spawn migration pin NAME`), or pass "
                             "--all (every unpinned one) or --changed (re-pin stale ones)")
        return False
    if name is not None:
        raise UsageError(f"--all and --changed pin every migration that needs it; drop them "
                         f"to pin only {name}, or drop {name}")
    if force:
        raise UsageError("--force only applies to one named migration: --all pins only "
                         "unpinned migrations and --changed never re-pins an applied one; "
                         "re-pin one on purpose with `spawn migration pin NAME --force`")
    return True


def _pin_summary(batch: PinBatch, pin_all: bool, changed: bool) -> str:
    if batch.root is None or not batch.written:
        wanted = " and ".join(w for w, on in (("unpinned", pin_all),
                                               ("pinned to older components", changed)) if on)
        skipped = (f" ({_count(len(batch.skipped_applied), 'applied migration')} skipped)"
                   if batch.skipped_applied else "")
        return f"Nothing to pin: no migration is {wanted}{skipped}."
    parts = []
    if batch.pinned:
        parts.append(f"{len(batch.pinned)} first pinned")
    if batch.repinned:
        parts.append(f"{len(batch.repinned)} re-pinned")
    if batch.skipped_applied:
        parts.append(f"{len(batch.skipped_applied)} applied skipped")
    return (f"Pinned {_count(len(batch.written), 'migration')} to {batch.root} "
            f"({', '.join(parts)}).")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def warn_blank(config: Config, names: Sequence[str], *, pinned: bool,
                variables: Any = None) -> None:
    """Once per migration whose up.sql renders to nothing but whitespace.

    The migrations are rendered one at a time under a live bar (``checking NAME``):
    after ``pin --all`` or before a large apply there may be hundreds of templates to
    render, which can take longer than a second.
    """
    from spawn_db.migrate.migration import blank_migrations

    with LiveBar(len(names), "checking") as bar:
        for name in names:
            bar.begin(name)
            blank = blank_migrations(config, [name], pinned=pinned, variables=variables)
            bar.end(name)
            for found in blank:
                warn(blank_message(found))


def blank_message(name: str) -> str:
    return (f"migration {name}: up.sql renders to nothing but whitespace, so it would be "
            "recorded as applied doing nothing; write its SQL, or delete the migration")


@migration.command("list")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text",
              show_default=True, help="Output format.")
@pass_app
def list_command(app: App, fmt: str) -> None:
    """List the migrations on disk: pinned (and to what), down script, last modified.
    Reads only files: no database is needed or started."""
    from spawn_db.api import Project

    entries = Project(app.config()).migrations()
    if fmt == "json":
        emit_json({"migrations": [_entry_json(e) for e in entries]})
        return
    if not entries:
        note(f"No migrations yet in {app.config().migrations_dir}; create one with "
             "`spawn migration new NAME`.")
        return
    info(format_listing(entries))
    for entry in entries:
        if entry.lock_problem is not None:
            warn(entry.lock_problem)


SHORT_PIN = 12


def format_listing(entries: Sequence[MigrationEntry]) -> str:
    """The text table: a ``Draft`` column only when some migration is a draft, a ``Down``
    column only when some migration has a down.sql."""
    draft = any(e.draft for e in entries)
    down = any(e.has_down for e in entries)
    header = ("Migration", "Pinned", *(("Draft",) if draft else ()),
              *(("Down",) if down else ()), "Last modified")
    rows = [(e.name, _pin_cell(e), *((("yes" if e.draft else "no"),) if draft else ()),
             *((("yes" if e.has_down else "no"),) if down else ()),
             e.modified.strftime("%Y-%m-%d %H:%M:%S"))
            for e in entries]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _pin_cell(entry: MigrationEntry) -> str:
    if entry.lock_problem is not None:
        return "broken"
    return entry.pin[:SHORT_PIN] if entry.pin else "no"


def _entry_json(entry: MigrationEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "pinned": entry.pin is not None,
        "pin": entry.pin,
        "lock_problem": entry.lock_problem,
        "down": entry.has_down,
        "draft": entry.draft,
        "last_modified": entry.modified.isoformat(),
    }
