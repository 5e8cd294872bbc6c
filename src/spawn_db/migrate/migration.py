"""Migrations as library functions: new, build, pin and check (SPEC §3).

Each function takes the loaded ``Config`` first and returns a result; the CLI
prints it. Rendering yields chunks so callers can stream them.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spawn_db.config import Config
from spawn_db.errors import NotPinned, UsageError
from spawn_db.fsutil import atomic_write_text
from spawn_db.migrate.pins import pin_lock
from spawn_db.migrate.settings import SETTINGS_FILE, load_settings
from spawn_db.pin.snapshot import StatCache, snapshot
from spawn_db.pin.store import PinnedTree, PinStore, read_lock, write_lock
from spawn_db.project import Project, validate_name

if TYPE_CHECKING:
    from spawn_db.migrate.sources import Sources
    from spawn_db.render.template import ComponentSource, Renderer

NEW_MIGRATION_TEXT = "BEGIN;\n\nCOMMIT;\n"
# The templates a migration folder may hold: up.sql (required), down.sql (revert) and
# verify.sql (checked after apply). All render the same way, pinned by the same lock.toml.
UP, DOWN, VERIFY = "up.sql", "down.sql", "verify.sql"
# A migration's per-tenant part (docs/fleets.md): rendered once per tenant schema, beside
# or instead of up.sql, pinned by the same lock.toml; tenant_down.sql reverts it.
TENANT, TENANT_DOWN = "tenant.sql", "tenant_down.sql"
PIN_CACHE = Path(".spawn") / "pin-cache.json"
DRAFT_SETTINGS = (
    "# Work in progress: apply skips it, pin refuses it. Remove this line when it is ready.\n"
    "draft = true\n"
)


def new_migration(config: Config, name: str, *, now: datetime.datetime | None = None,
                  draft: bool = False) -> str:
    """Create ``migrations/<UTC timestamp>-<name>/up.sql`` (and, for a draft, a
    ``migration.toml`` saying so); return the folder name."""
    validate_name(name, "migration")
    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%d%H%M%S")
    folder_name = f"{stamp}-{name}"
    folder = config.migrations_dir / folder_name
    if folder.exists():
        raise UsageError(f"{folder} already exists; wait a second or choose another name")
    folder.mkdir(parents=True)
    if draft:
        atomic_write_text(folder / SETTINGS_FILE, DRAFT_SETTINGS)
    atomic_write_text(folder / "up.sql", NEW_MIGRATION_TEXT)
    return folder_name


@dataclass(frozen=True)
class MigrationSource:
    """What a migration renders from: its template and where its components come from."""

    name: str
    folder: Path
    pin: str | None
    components: ComponentSource
    template_text: str
    script: str = UP


def migration_source(config: Config, name: str, *, pinned: bool,
                     script: str = UP) -> MigrationSource:
    from spawn_db.render.template import PinnedSource, WorkingTreeSource

    project = Project(config)
    folder = project.find_migration(name)
    name = folder.name
    pin = read_lock(folder)
    if pinned:
        if pin is None:
            raise NotPinned(
                f"migration {name} is not pinned (no lock.toml); run "
                f"`spawn migration pin {name}` first"
            )
        tree = PinnedTree(PinStore(config.pinned_dir), pin, context=f"migration {name}")
        components: ComponentSource = PinnedSource(tree, f"the pin {pin} of migration {name}")
    else:
        components = WorkingTreeSource(config.components_dir)
    text = _template_text(folder, script)
    return MigrationSource(name, folder, pin, components, text, script)


def tenant_migration_names(config: Config) -> list[str]:
    """The migrations with a tenant part (``tenant.sql``), in name order: the order their
    tenant parts run in every tenant schema."""
    from spawn_db.project import folders_with

    return folders_with(config.migrations_dir, TENANT)


def _template_text(folder: Path, script: str) -> str:
    """``script``'s text; for a scripted migration's ``up.sql`` (it has none), its steps'
    templates as one (``steps.steps_template``)."""
    if script == UP and not (folder / UP).is_file():
        from spawn_db.migrate.steps import folder_steps, steps_template

        steps = folder_steps(folder)
        if steps:
            return steps_template(folder, steps)
    return _read_template(folder / script)


def _read_template(path: Path) -> str:
    from spawn_db.errors import TemplateError

    try:
        return path.read_bytes().decode("utf-8")  # not read_text: it would turn CRLF into LF
    except FileNotFoundError:
        from spawn_db.errors import NotFoundError

        raise NotFoundError(f"{path} does not exist; create it beside up.sql") from None
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None


def compile_migration(config: Config, source: MigrationSource) -> Renderer:
    from spawn_db.render.template import compile_template

    display = Project(config).display(source.folder / source.script)
    return compile_template(source.template_text, display, source.components)


def build_migration(
    config: Config, name: str, *, pinned: bool = False, variables: Any = None,
    script: str = UP,
) -> Iterator[str]:
    """Chunks of the rendered ``script`` (``up.sql`` by default); compiled before the first
    chunk is yielded."""
    from spawn_db.render.template import template_context

    source = migration_source(config, name, pinned=pinned, script=script)
    renderer = compile_migration(config, source)
    return renderer.generate(template_context(config, variables or {}))


def build_working_tree(
    config: Config, name: str, variables: Any = None
) -> tuple[Iterator[str], Callable[[], str | None]]:
    """Chunks of ``up.sql`` rendered from the working tree, and a function to call after
    them that says how ``apply`` (which renders from the pin) would differ, or None when
    it would send the same text (see ``drift.build_against_pin``)."""
    from spawn_db.migrate.drift import build_against_pin

    return build_against_pin(config, Project(config).resolve_migration(name), variables)


def is_pinned(config: Config, name: str) -> bool:
    return read_lock(Project(config).find_migration(name)) is not None


def pin_migration(config: Config, name: str, *, force: bool = False,
                  namespace: str = "default") -> str:
    """Snapshot the whole components tree into the store, write lock.toml, return the root.

    Re-pinning (a ``lock.toml`` exists) asks the database first, unless
    ``force``: a migration it records as applied or adopted keeps its pin, since
    a new one would no longer say what was applied (``status`` would report it
    as modified). A first pin needs no database. ``namespace`` is where the history
    records it (a ``[[sources]]`` folder's name, ``config`` then that folder's).
    """
    folder = Project(config).find_migration(name)
    _refuse_draft(config, folder.name)
    if not force and (folder / "lock.toml").exists():
        _refuse_applied(config, folder.name, namespace)
    with pin_lock(config):
        root = snapshot_components(config)
        write_lock(folder, root)
    return root


def _refuse_draft(config: Config, name: str) -> None:
    if load_settings(config, name).draft:
        raise UsageError(
            f"migration {name} is a draft (draft = true in its {SETTINGS_FILE}), and drafts "
            "are not pinned; remove draft = true first, then pin it")


def snapshot_components(config: Config) -> str:
    """Snapshot ``components/`` into the pin store (through the stat cache); the root hash."""
    components = config.components_dir
    if not components.is_dir():
        raise UsageError(f"{components} does not exist; create it (spawn init does) and retry")
    cache = StatCache.load(config.project_dir / PIN_CACHE)
    root = snapshot(PinStore(config.pinned_dir), components, cache)
    cache.save()
    return root


@dataclass(frozen=True)
class PinBatch:
    """What ``pin --all`` / ``--changed`` did: every migration pinned, all to ``root``.

    ``skipped_applied``: pinned to another root than ``root``, but applied or
    adopted, so left alone (``--changed`` never re-pins those).
    """

    root: str | None
    pinned: tuple[str, ...] = ()
    repinned: tuple[str, ...] = ()
    skipped_applied: tuple[str, ...] = ()
    skipped_drafts: tuple[str, ...] = ()
    # The ``[[sources]]`` folder pinned (its own components/ and pinned/; names are then
    # ``<source>:<folder>``); "" for the main folder.
    source: str = ""

    @property
    def written(self) -> tuple[str, ...]:
        """Every migration whose lock.toml was written, in name order."""
        return tuple(sorted(self.pinned + self.repinned))


def pin_every_source(config: Config, *, unpinned: bool, changed: bool) -> list[PinBatch]:
    """``pin_many`` for the main folder, then for each ``[[sources]]`` folder: each from a
    snapshot of its own components/ into its own pinned/, ``changed`` reading its own
    namespace; a source's batch names its migrations ``<source>:<folder>``."""
    if not config.sources:
        return [pin_many(config, unpinned=unpinned, changed=changed)]
    from spawn_db.migrate.sources import Sources

    batches = []
    for source in Sources(config).items:
        batch = pin_many(source.config, unpinned=unpinned, changed=changed,
                         namespace=source.name)
        batches.append(batch if source.is_main else _qualified(batch, source.name))
    return batches


def _qualified(batch: PinBatch, source: str) -> PinBatch:
    def names(found: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(f"{source}:{n}" for n in found)

    return PinBatch(batch.root, names(batch.pinned), names(batch.repinned),
                    names(batch.skipped_applied), names(batch.skipped_drafts), source)


def pin_many(config: Config, *, unpinned: bool, changed: bool,
             namespace: str = "default") -> PinBatch:
    """Pin every unpinned migration (``unpinned``) and/or re-pin every pinned one whose pin
    is not the current components tree (``changed``), from one snapshot.

    ``changed`` never re-pins a migration the history records as applied or
    adopted; when the history cannot be read (database down) it refuses
    before writing anything, since it cannot tell which ones those are.
    """
    project = Project(config)
    names = sorted(set(project.migration_names()) | set(tenant_migration_names(config)))
    drafts = tuple(n for n in names if load_settings(config, n).draft)
    locks = {n: read_lock(project.migration_dir(n)) for n in names if n not in drafts}
    first = [n for n, pin in locks.items() if pin is None] if unpinned else []
    pinned = {n: pin for n, pin in locks.items() if pin is not None} if changed else {}
    if not first and not pinned:
        return PinBatch(None, skipped_drafts=drafts)
    with pin_lock(config):
        root = snapshot_components(config)
        differing = [n for n, pin in pinned.items() if pin != root]
        done = _applied_among(config, differing, namespace) if differing else set()
        repin = [n for n in differing if n not in done]
        for name in first + repin:
            write_lock(project.migration_dir(name), root)
    return PinBatch(root, tuple(first), tuple(repin),
                    tuple(n for n in differing if n in done), drafts)


def _applied_among(config: Config, names: list[str], namespace: str) -> set[str]:
    """Those of ``names`` the history of ``namespace`` records as applied or adopted (read
    only)."""
    from spawn_db.errors import DatabaseError
    from spawn_db.migrate.apply import is_done, state_of, tracking_session

    if not _history_may_exist(config):
        return set()
    try:
        with tracking_session(config) as tracking:
            rows = tracking.latest(namespace) if tracking.exists() else {}
    except DatabaseError as exc:
        raise DatabaseError(
            f"cannot tell which of the {len(names)} migrations pinned to older components "
            f"are applied, so none was re-pinned: {exc.message}; start the database and "
            "retry, or re-pin one on purpose with `spawn migration pin NAME --force`"
        ) from None
    return {n for n in names if n in rows and is_done(state_of(rows[n]))}


def blank_migrations(config: Config, names: list[str], *, pinned: bool,
                     variables: Any = None) -> list[str]:
    """Those of ``names`` whose ``up.sql`` renders to nothing but whitespace.

    Applying one would record it as applied while doing nothing, which is
    almost always a migration not written yet. A migration that fails to render
    is not reported here: the command that renders it reports the error.
    """
    return [name for name in names if _renders_blank(config, name, pinned, variables)]


def _renders_blank(config: Config, name: str, pinned: bool, variables: Any) -> bool:
    """Plain SQL is judged from the file (no Jinja); a template is rendered up to its first
    non-blank chunk."""
    from spawn_db.errors import SpawnError
    from spawn_db.render.plaintext import plain_output

    try:
        folder = Project(config).find_migration(name)
        plain = plain_output(_read_template(folder / "up.sql"))
        if plain is not None:
            return not plain.strip()
        chunks = build_migration(config, name, pinned=pinned, variables=variables)
        return not any(chunk.strip() for chunk in chunks)
    except (SpawnError, OSError):
        return False


def _refuse_applied(config: Config, name: str, namespace: str = "default") -> None:
    from spawn_db.errors import AppliedMigrationPin, DatabaseError
    from spawn_db.migrate.apply import is_done, state_of, tracking_session

    if not _history_may_exist(config):
        return
    try:
        with tracking_session(config) as tracking:
            row = tracking.latest(namespace).get(name) if tracking.exists() else None
    except DatabaseError as exc:
        raise DatabaseError(
            f"cannot tell whether migration {name} is applied, so it was not re-pinned: "
            f"{exc.message}; start the database, or pass --force to re-pin without asking"
        ) from None
    if row is not None and is_done(state_of(row)):
        recorded = f"pin {row.pin_hash}" if row.pin_hash else "no pin"
        raise AppliedMigrationPin(
            f"migration {name} is {'adopted' if row.activity == 'ADOPT' else 'applied'} (its "
            f"history records {recorded}); re-pinning it would make status and check report "
            "it as modified. Put the change in a new migration, or pass --force to re-pin "
            "anyway"
        )


def _history_may_exist(config: Config) -> bool:
    """False for an embedded target whose cluster was never created: nothing can have been
    applied there, and a re-pin must not create (and leave running) a server to find out."""
    target = config.target()
    if target.command.kind != "embedded":
        return True
    from spawn_db.db.embedded import project_cluster

    return (project_cluster(config, target).data_dir / "PG_VERSION").exists()


@dataclass(frozen=True)
class MigrationEntry:
    """One migration as ``migration list`` shows it: from its files alone, no database.

    ``modified`` is the newest modification time of the files directly in the
    folder (``up.sql``, ``lock.toml``, ...), in local time with its offset.
    Marker files become fields here (``has_down``, ``draft`` from ``migration.toml``),
    and a column the CLI shows only when some migration has them.
    """

    name: str
    pin: str | None
    lock_problem: str | None
    has_down: bool
    modified: datetime.datetime
    draft: bool = False


def list_migrations(config: Config) -> list[MigrationEntry]:
    """Every migration on disk, in apply order, with its pin and files (offline); with
    ``[[sources]]``, every source's too, named ``<source>:<folder>`` and interleaved as
    apply runs them."""
    if config.sources:
        from spawn_db.migrate.sources import Sources

        sources = Sources(config)
        return [_source_entry(sources, qualified) for qualified in sources.names]
    project = Project(config)
    return [_entry(project.migration_dir(name), load_settings(config, name).draft)
            for name in project.migration_names()]


def _source_entry(sources: Sources, qualified: str) -> MigrationEntry:
    """The entry of one migration of any source, named by its qualified name."""
    source, bare = sources.split(qualified)
    found = _entry(source.config.migrations_dir / bare, load_settings(source.config, bare).draft)
    return replace(found, name=qualified)


def _entry(folder: Path, draft: bool) -> MigrationEntry:
    from spawn_db.errors import PinStoreError

    pin: str | None = None
    problem: str | None = None
    try:
        pin = read_lock(folder)
    except PinStoreError as exc:
        problem = exc.message
    return MigrationEntry(folder.name, pin, problem, (folder / DOWN).is_file(),
                          _newest_mtime(folder), draft)


def _newest_mtime(folder: Path) -> datetime.datetime:
    """The newest file of ``folder`` (not recursive), as an aware local date-time."""
    newest = max((entry.stat().st_mtime for entry in folder.iterdir() if entry.is_file()),
                 default=folder.stat().st_mtime)
    return datetime.datetime.fromtimestamp(int(newest)).astimezone()


@dataclass(frozen=True)
class CheckWarning:
    """One finding of ``check``; ``fails`` findings make it exit 1, the others inform.

    ``kind``: ``unpinned``, ``broken`` (lock.toml or its root object), ``modified``
    (applied, then changed), ``stale`` (pending, pinned to an older component),
    ``draft`` (fails only with ``no_drafts``) or ``no-verify`` (no verify.sql, asked
    for with ``require_verify``).
    """

    migration: str
    message: str
    kind: str = "unpinned"
    blocking: bool | None = None

    @property
    def fails(self) -> bool:
        if self.blocking is not None:
            return self.blocking
        return self.kind != "stale"


def check(config: Config, *, database: bool = False, variables: Any = None,
          no_drafts: bool = False, require_verify: bool = False, lint: bool = False,
          lint_variables: Any = None) -> list[CheckWarning]:
    """Every migration that has ``up.sql`` but no usable ``lock.toml``; with ``database``,
    also the applied ones modified since (see ``apply.status``) and the pending ones
    pinned to older components than the working tree has (``drift.stale_components``).

    Every ``migration.toml`` is checked too (a bad one raises, exit 2); drafts are
    listed rather than reported unpinned (pin refuses them), and fail only with
    ``no_drafts``, for release pipelines. ``lint`` adds ``spawn lint``'s findings
    (kind ``lint``; only error-severity ones fail); without it, the recreate rule's
    warnings (SP020) are still added.
    """
    from spawn_db.migrate.sources import Sources

    sources = Sources(config)
    names = sources.names
    settings = sources.settings(names)
    warnings: list[CheckWarning] = []
    roots: dict[str, dict[str, str]] = {s.name: {} for s in sources.items}
    for name in names:
        source, bare = sources.split(name)
        found, pin = _file_warnings(source.config, bare, name, settings[name].draft,
                                    no_drafts=no_drafts, require_verify=require_verify)
        warnings += found
        if pin is not None:
            roots[source.name][name] = pin
    for source in sources.items:
        warnings += _damaged_pins(PinStore(source.config.pinned_dir), roots[source.name])
    if database:
        warnings += _database_warnings(config, {w.migration for w in warnings}, variables)
    warnings += _lint_warnings(config, lint_variables, everything=lint)
    return warnings


def _file_warnings(config: Config, bare: str, name: str, draft: bool, *, no_drafts: bool,
                   require_verify: bool) -> tuple[list[CheckWarning], str | None]:
    """What ``check`` finds in one migration's folder (``bare`` in ``config``'s folder,
    ``name`` as people type it: ``audit:<m>`` for a source's), and its usable pin."""
    from spawn_db.errors import PinStoreError

    folder = config.migrations_dir / bare
    warnings = []
    if require_verify and not (folder / VERIFY).is_file():
        warnings.append(CheckWarning(
            name, f"migration {name} has no {VERIFY}; write one (checks that run after "
            "it is applied), or drop --require-verify", "no-verify"))
    if draft:
        warnings.append(CheckWarning(
            name, f"migration {name} is a draft (draft = true in its {SETTINGS_FILE}); "
            "apply skips it", "draft", blocking=no_drafts))
        return warnings, None
    try:
        pin = read_lock(folder)
    except PinStoreError as exc:
        return [*warnings, CheckWarning(name, exc.message, "broken")], None
    if pin is None:
        message = f"migration {name} is not pinned; run `spawn migration pin {name}`"
        return [*warnings, CheckWarning(name, message)], None
    if not PinStore(config.pinned_dir).object_path(pin).is_file():
        message = (f"migration {name} is pinned to {pin}, which is missing from "
                   f"{config.pinned_dir}; restore pinned/ from version control")
        return [*warnings, CheckWarning(name, message, "broken")], None
    return warnings, pin


def _lint_warnings(config: Config, variables: Any, *, everything: bool) -> list[CheckWarning]:
    """``spawn lint``'s findings; without ``everything`` (no ``--lint``) only the recreate
    rule's (SP020), which is about components across migrations, what ``check`` is for."""
    from spawn_db.lint.deps import RECREATE_RULE
    from spawn_db.lint.lint import lint_migrations

    only = None if everything else frozenset({RECREATE_RULE})
    folders = None
    if config.sources:
        from spawn_db.migrate.sources import Sources

        folders = Sources(config).folders()
    report = lint_migrations(config, variables=variables, only=only, folders=folders)
    return [CheckWarning(f.migration, f"{f.location}: {f.rule}: {f.message}", "lint",
                         blocking=f.severity == "error") for f in report.findings]


def _damaged_pins(store: PinStore, roots: dict[str, str]) -> list[CheckWarning]:
    """``spawn pin validate``'s reachable part: every object a pin needs, rehashed."""
    from spawn_db.pin.inspect import validate

    found = validate(store, roots)
    warnings = []
    for bad in found.bad_objects():
        for user in bad.users:
            warnings.append(CheckWarning(
                user, f"migration {user} needs pin object {bad.digest}, which is {bad.problem}; "
                "restore pinned/ from version control (`spawn pin validate` lists every "
                "damaged object)", "broken"))
    return sorted(warnings, key=lambda w: w.migration)


def _database_warnings(config: Config, known: set[str], variables: Any) -> list[CheckWarning]:
    """The applied migrations of every source modified since, and the pending ones pinned
    to older components than their source's working tree."""
    from spawn_db.migrate.apply import is_done, state_of, status
    from spawn_db.migrate.drift import stale_components
    from spawn_db.migrate.sources import Sources

    report = status(config, variables=variables)
    rows = report.named()
    found = [CheckWarning(n, m.problem or n, m.state) for n, m in rows
             if m.state in ("modified", "broken") and n not in known and m.on_filesystem]
    pending = [n for n, m in rows if m.on_filesystem and m.pinned and m.state != "broken"
               and not is_done(state_of(m.latest))]
    for source, bare in Sources(config).stretches(pending):
        for stale in stale_components(source.config, bare, variables):
            stale = replace(stale, migration=source.qualify(stale.migration))
            found.append(CheckWarning(stale.migration, stale.message(), "stale"))
    order = {n: i for i, (n, _) in enumerate(rows)}
    return sorted(found, key=lambda w: order.get(w.migration, 0))
