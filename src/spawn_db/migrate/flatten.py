"""``spawn schema flatten|export|import``: the schema the migrations build, as one file.

The migrations apply would run on an empty database (``Planner``; pinned as apply
renders them) are run on a scratch database of the project's embedded server (the
selected target's server when it is embedded; otherwise the project's embedded server
all the same, so flattening never needs CREATEDB on a shared server), dumped with the
server's own ``pg_dump --schema-only --no-owner --no-tablespaces``, and the scratch
database is dropped, error or not. ``clean_dump`` removes what must not be in a file
apply streams through psql (``dumptext.py``).

``flatten`` renders the migrations with a sentinel in place of every string variable
(``dumptext.sentinel_variables``) and turns each sentinel in the dump back into
``{{ variables.x }}`` (``dumptext.template_of``), so the baseline is a template that
renders for every environment. ``check_baseline`` then builds the migrations and the
baseline, both with the real variables, on two more scratch databases and compares them
as drift does; only a baseline that builds the same schema is written, as a new migration
with ``baseline = true`` (``plan.baseline_step``: it replaces every migration older than
it), and pinned.
"""

from __future__ import annotations

import datetime
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from spawn_db.config import CommandSpec, Config, TargetConfig
from spawn_db.errors import SchemaDumpFailed
from spawn_db.migrate.dumptext import clean_dump, sentinel_variables, template_of

if TYPE_CHECKING:
    from spawn_db.db.catalog import CatalogObject
    from spawn_db.db.engine import Engine
    from spawn_db.db.psql import ControlSession
    from spawn_db.migrate.rendered import Rendered

SCRATCH_PREFIX = "spawn_flatten_"
BASELINE_LABEL = "the new baseline"
DUMP_OPTIONS = ("--schema-only", "--no-owner", "--no-tablespaces")
BASELINE_SETTINGS = ('baseline = true\ndescription = "baseline: the schema of the {count} '
                     'migrations before it (spawn schema flatten)"\n')


@dataclass(frozen=True)
class SchemaDump:
    """The schema ``migrations`` build, as cleaned ``pg_dump`` text."""

    text: str
    migrations: tuple[str, ...]


@dataclass(frozen=True)
class FlattenResult:
    """A baseline: its folder name (None for a dry run), its template, what it replaces and
    which variables it names (``substituted``) or holds as values (``kept``: not strings)."""

    name: str | None
    template: str
    replaced: tuple[str, ...]
    substituted: tuple[str, ...]
    kept: tuple[str, ...]


# -- the library functions ------------------------------------------------------------------


def export_schema(config: Config, *, pinned: bool = True, variables: Any = None) -> SchemaDump:
    """The schema every migration builds, rendered with ``variables``."""
    names = _migrations(config)
    return SchemaDump(_dump(config, names, pinned=pinned, variables=variables), tuple(names))


def write_dump(path: Path, text: str) -> None:
    """``text`` into ``path`` atomically, private (0600) even when it replaces a file."""
    import os

    from spawn_db.fsutil import PRIVATE_FILE_MODE, atomic_write

    if path.is_file():
        os.chmod(path, PRIVATE_FILE_MODE)
    atomic_write(path, text.encode("utf-8"))


def flatten(config: Config, *, name: str = "baseline", pinned: bool = True,
            variables: Any = None, write: bool = True,
            now: datetime.datetime | None = None) -> FlattenResult:
    """Build the schema with sentinel variables and write it as a new baseline migration
    (``write`` False: only return the template)."""
    from spawn_db.project import validate_name

    validate_name(name, "migration")
    names = _migrations(config)
    token = secrets.token_hex(6)
    fake, paths, kept = sentinel_variables(variables or {}, token)
    dump = _dump(config, names, pinned=pinned, variables=fake)
    # One transaction: a baseline that fails part way leaves nothing behind to retry over.
    template = f"BEGIN;\n\n{template_of(dump, token, paths)}\nCOMMIT;\n"
    check_baseline(config, names, template, pinned=pinned, variables=variables)
    used = tuple(sorted(set(paths.values())))
    if not write:
        return FlattenResult(None, template, tuple(names), used, kept)
    folder = _write_baseline(config, name, template, names, now)
    return FlattenResult(folder, template, tuple(names), used, kept)


def import_schema(config: Config, path: Path) -> str:
    """Run the dump in ``path`` on the target through psql, in one transaction, stopping
    at the first error (nothing is left half-imported); the target database's name."""
    from spawn_db.db.engine import engine_for
    from spawn_db.db.target import PSQL_PREAMBLE
    from spawn_db.migrate.runner import _error_text

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise SchemaDumpFailed(f"{path}: cannot be read as UTF-8 text ({exc}); pass the "
                               "file `spawn schema export` wrote") from None
    target = config.target()
    process = engine_for(config, target).script_session("spawn schema import")
    try:
        process.write(f"{PSQL_PREAMBLE}\\set ON_ERROR_ROLLBACK off\nBEGIN;\n"
                      f"{clean_dump(text)}\nCOMMIT;\n\\echo :DBNAME\n")
        process.close_input()
        end = process.wait_exit()
    finally:
        process.stop()
    if end.code != 0:
        said = _error_text(end.stderr) or f"psql exited with code {end.code}"
        raise SchemaDumpFailed(
            f"importing {path} into target {target.name} failed, and nothing of it was "
            f"kept (one transaction); fix the file or the database:\n{said}")
    return process.lines[-1].strip() if process.lines else target.name


# -- which migrations, and writing the baseline ---------------------------------------------


def _migrations(config: Config) -> list[str]:
    """What apply would run on an empty database, in its order (a baseline and the
    migrations after it, when there is one)."""
    from spawn_db.migrate.apply import Planner

    names = list(Planner.load(config, None).plan({}).to_run)
    if not names:
        raise SchemaDumpFailed(
            f"there are no migrations to build the schema from in {config.migrations_dir}; "
            "create one with `spawn migration new <name>` (drafts are left out)")
    return names


def _write_baseline(config: Config, name: str, template: str, replaced: list[str],
                    now: datetime.datetime | None) -> str:
    from spawn_db.fsutil import atomic_write_text
    from spawn_db.migrate.migration import pin_migration
    from spawn_db.migrate.settings import SETTINGS_FILE

    stamp = (now or datetime.datetime.now(datetime.UTC)).strftime("%Y%m%d%H%M%S")
    folder_name = f"{stamp}-{name}"
    newest = max(replaced)
    if folder_name <= newest:
        raise SchemaDumpFailed(
            f"the baseline {folder_name} would sort before migration {newest}, which it must "
            "replace; rename that migration's folder (its timestamp is in the future)")
    folder = config.migrations_dir / folder_name
    if folder.exists():
        raise SchemaDumpFailed(f"{folder} already exists; wait a second or pass another --name")
    folder.mkdir(parents=True)
    atomic_write_text(folder / "up.sql", template)
    atomic_write_text(folder / SETTINGS_FILE, BASELINE_SETTINGS.format(count=len(replaced)))
    pin_migration(config, folder_name)
    return folder_name


# -- building and dumping ---------------------------------------------------------------------


def scratch_target(config: Config) -> TargetConfig:
    """The selected target when it is embedded; else the project's embedded server."""
    target = config.target()
    if target.command.kind == "embedded":
        return target
    return TargetConfig(name=f"{target.name}:embedded", engine=target.engine,
                        command=CommandSpec("embedded"), spawn_schema=target.spawn_schema,
                        postgres_bin=target.postgres_bin)


def _dump(config: Config, names: list[str], *, pinned: bool, variables: Any) -> str:
    """``names`` rendered (as apply would), run on a scratch database, dumped, cleaned."""
    scripts = _render(config, names, pinned=pinned, variables=variables)
    try:
        with _built(config, scripts) as (_, target, scratch):
            raw = _pg_dump(config, target, scratch)
    finally:
        for script in scripts:
            script.close()
    return clean_dump(raw)


def check_baseline(config: Config, names: list[str], template: str, *, pinned: bool,
                   variables: Any) -> None:
    """The baseline, rendered with the real variables, must build the schema the
    migrations build with them: the sentinels took the other branch of a condition on a
    variable (``{% if variables.env == "prod" %}``), or a value was used in a way the
    template cannot say, and this is where it shows. Objects are compared as ``spawn
    migration drift`` compares them."""
    from spawn_db.migrate.rendered import spool_rendered
    from spawn_db.migrate.schema_drift import compare
    from spawn_db.render.template import WorkingTreeSource, compile_template, template_context

    renderer = compile_template(template, BASELINE_LABEL,
                                WorkingTreeSource(config.migrations_dir))
    baseline = spool_rendered(BASELINE_LABEL,
                              renderer.generate(template_context(config, variables or {})))
    scripts = _render(config, names, pinned=pinned, variables=variables)
    try:
        built = compare(_catalog(config, scripts), _catalog(config, [baseline]))
    finally:
        for script in (*scripts, baseline):
            script.close()
    if built:
        shown = "; ".join(d.line() for d in built[:5]) + ("; ..." if len(built) > 5 else "")
        raise SchemaDumpFailed(
            "the baseline, rendered with these variables, does not build what the migrations "
            f"build with them (+ only the migrations', - only the baseline's: {shown}); a "
            "variable decides a condition or is used in a way a template cannot say: write "
            "the value into the migrations, or flatten with the variables of the schema you "
            "want and edit the baseline")


def _catalog(config: Config, scripts: list[Rendered]) -> dict[str, CatalogObject]:
    """The schema ``scripts`` build on a scratch database, read as drift reads it."""
    from spawn_db.db.catalog import catalog_query, parse_catalog

    with _built(config, scripts) as (engine, target, scratch):
        session = engine.control_session(scratch)
        try:
            return parse_catalog(session.query(catalog_query((target.spawn_schema,)),
                                               what="read the scratch schema"))
        finally:
            session.close()


@contextmanager
def _built(config: Config, scripts: list[Rendered]
           ) -> Iterator[tuple[Engine, TargetConfig, str]]:
    """A scratch database on the embedded server with ``scripts`` run on it, dropped when
    the block ends."""
    from spawn_db.db.engine import engine_for
    from spawn_db.migrate.schema_drift import build_scratch

    target = scratch_target(config)
    engine = engine_for(config, target)
    control = engine.control_session(None)
    try:
        with _scratch(control) as scratch:
            build_scratch(engine, scratch, scripts, _failed)
            yield engine, target, scratch
    finally:
        control.close()


def _render(config: Config, names: list[str], *, pinned: bool,
            variables: Any) -> list[Rendered]:
    from spawn_db.migrate.apply import _require_pins, pins_optional
    from spawn_db.migrate.rendered import render_migration, uses_pin
    from spawn_db.migrate.sources import Sources

    optional = pins_optional(config, pinned)
    if pinned and not optional:
        _require_pins(Sources(config), names)
    scripts: list[Rendered] = []
    try:
        for position, name in enumerate(names, 1):
            scripts.append(render_migration(
                config, name, pinned=uses_pin(config, name, pinned, optional),
                variables=variables, position=position))
    except BaseException:
        for script in scripts:
            script.close()
        raise
    return scripts


@contextmanager
def _scratch(control: ControlSession) -> Iterator[str]:
    """A new database on the scratch server, dropped afterwards whatever happened."""
    from spawn_db.lint.database import _drop
    from spawn_db.migrate.schema_drift import create_scratch

    scratch = create_scratch(control, SCRATCH_PREFIX, lambda scratch, exc: SchemaDumpFailed(
        f"cannot create the scratch database {scratch} on the embedded server, where the "
        f"migrations are built to dump their schema: {exc.message}"))
    try:
        yield scratch
    finally:
        _drop(control, scratch)


def _failed(script: Rendered, said: str) -> NoReturn:
    if script.name == BASELINE_LABEL:
        raise SchemaDumpFailed(
            f"{BASELINE_LABEL} fails on a new database although the migrations it was dumped "
            f"from did not, so it was not written; please report this:\n{said}")
    raise SchemaDumpFailed(
        f"migration {script.name} failed on the scratch database, so the schema of the "
        f"migrations cannot be dumped; fix what psql reports:\n{said}")


def _pg_dump(config: Config, target: TargetConfig, scratch: str) -> str:
    """``pg_dump`` of the embedded server's own binaries (never older than the server)."""
    from spawn_db.db.embedded import ensure_running, project_cluster
    from spawn_db.db.embedded_proc import client_env

    cluster = project_cluster(config, target)
    running = ensure_running(cluster)
    pg_dump = running.bins.tool("pg_dump")
    argv = [str(pg_dump), *DUMP_OPTIONS, f"--exclude-schema={target.spawn_schema}",
            "-h", str(running.socket_dir), "-p", str(running.port), "-U", cluster.superuser,
            "-d", scratch]
    try:
        done = subprocess.run(argv, capture_output=True, check=False, env=client_env())
    except OSError as exc:
        raise SchemaDumpFailed(
            f"cannot run {pg_dump} ({exc.strerror}); install the PostgreSQL client tools "
            "that match the embedded server") from None
    if done.returncode != 0:
        raise SchemaDumpFailed(
            f"{pg_dump} failed on the scratch database: "
            f"{done.stderr.decode('utf-8', 'replace').strip()}")
    return done.stdout.decode("utf-8")
