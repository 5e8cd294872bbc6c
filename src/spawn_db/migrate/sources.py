"""Several migration folders: spawn.toml's ``[[sources]]`` (docs/sources.md).

A source is another spawn folder (its own ``components/``, ``migrations/`` and
``pinned/``), named by ``path`` or shipped by a Python package (an entry point in
group ``spawn.sources``). Its migrations are recorded in tracking namespace
``<name>``; the main folder stays in ``default``, so the Rust tool still sees
exactly its own migrations.

Everywhere above the runner a migration is named by its *qualified name*: the
folder name for the main folder, ``<source>:<folder name>`` for a source.
Each source renders and pins through a copy of the project's config whose
``spawn_folder`` is the source's folder, so pins stay per source; the runner
runs each consecutive stretch of one source's migrations in that source's
namespace (``SourceRun``).

Order: by timestamp across all sources (ties: the main folder first, then
sources by name), except where ``requires`` says otherwise; an unqualified
``requires`` entry names a migration of the same source.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from spawn_db.config import Config, SourceConfig
from spawn_db.errors import (
    ConfigError,
    MigrationFailed,
    MigrationSettingsError,
    UsageError,
)
from spawn_db.migrate.rendered import Rendered
from spawn_db.migrate.runner import ApplyReporter, MigrationOutcome, MigrationRun
from spawn_db.migrate.settings import (
    SETTINGS_FILE,
    MigrationSettings,
    load_all,
    load_settings,
    refuse_cycles,
)
from spawn_db.migrate.tracking import USER_NAMESPACE, HistoryRow, LockHolder, Tracking
from spawn_db.project import TIMESTAMP_PREFIX, Project

GROUP = "spawn.sources"
SEPARATOR = ":"


@dataclass(frozen=True)
class Source:
    """One migration folder: the main one (``default``) or a ``[[sources]]`` entry."""

    name: str
    config: Config
    rank: int
    # Where it comes from, for people: the path as spawn.toml's folder sees it, or the
    # package (``status`` headings).
    display: str = "."

    @property
    def is_main(self) -> bool:
        return self.name == USER_NAMESPACE

    def qualify(self, bare: str) -> str:
        return bare if self.is_main else f"{self.name}{SEPARATOR}{bare}"

    def describe(self) -> str:
        return "the main folder" if self.is_main else f"source {self.name}"


def source_folder(config: Config, entry: SourceConfig) -> Path:
    """The spawn folder of ``entry``: its ``path``, or what its package's entry point
    names; an error naming the entry when there is none (exit 2)."""
    where = f"{config.path}: [[sources]] {entry.name!r}"
    folder = entry.path if entry.path is not None else _package_folder(entry, where)
    if not (folder / "migrations").is_dir():
        raise ConfigError(
            f"{where}: {folder} is not a spawn folder (it has no migrations/ folder); point "
            "it at a folder with components/, migrations/ and pinned/")
    return folder


def _package_folder(entry: SourceConfig, where: str) -> Path:
    """The folder a package declares as ``[project.entry-points."spawn.sources"]
    <package> = "<module>:<attribute>"``: a path, or a callable that returns one."""
    from spawn_db import plugins

    package = entry.package or ""
    loaded = plugins.load(GROUP)
    found = loaded.get(package)
    if found is None:
        off = "" if plugins.enabled() else (
            f" (plugins are turned off: unset {plugins.DISABLE_VARIABLE} and drop --no-plugins)")
        known = ", ".join(sorted(loaded)) or "none"
        raise ConfigError(
            f"{where}: no installed package declares {package!r} in entry point group "
            f"{GROUP}{off} (installed: {known}); `pip install` the package, or fix `package`")
    value = found() if callable(found) else found
    if not isinstance(value, str | os.PathLike):
        raise ConfigError(
            f"{where}: package {package!r}'s {GROUP} entry point gave {type(value).__name__}, "
            "not the path of its spawn folder; fix the package")
    return Path(value).resolve()


def _source(config: Config, entry: SourceConfig, rank: int) -> Source:
    folder = source_folder(config, entry)
    display = (f"package {entry.package}" if entry.path is None
               else os.path.relpath(folder, config.project_dir))
    return Source(entry.name, dataclasses.replace(config, spawn_folder=folder), rank, display)


class Sources:
    """The main folder and the ``[[sources]]`` of one config, and qualified names."""

    def __init__(self, config: Config) -> None:
        self.config = config
        extra = sorted(config.sources, key=lambda s: s.name)
        self.items: tuple[Source, ...] = (
            Source(USER_NAMESPACE, config, 0),
            *(_source(config, entry, rank) for rank, entry in enumerate(extra, 1)),
        )
        self.by_name = {s.name: s for s in self.items}

    @property
    def main(self) -> Source:
        return self.items[0]

    @property
    def several(self) -> bool:
        return len(self.items) > 1

    # -- names ---------------------------------------------------------------------------

    def split(self, qualified: str) -> tuple[Source, str]:
        """The source and the folder name of a qualified name (no check that it exists)."""
        prefix, sep, bare = qualified.partition(SEPARATOR)
        if not sep or not self.several:
            return self.main, qualified
        return self.source(prefix), bare

    def source(self, name: str) -> Source:
        found = self.by_name.get(name)
        if found is None:
            names = ", ".join(s.name for s in self.items[1:]) or "none"
            raise UsageError(
                f"{name!r} is not a migration source of {self.config.path} (sources: {names}); "
                "write <source>:<migration>, with a name from [[sources]]")
        return found

    def resolve(self, typed: str) -> str:
        """The qualified name of the migration a user typed (``audit:create-audit``; a
        unique suffix works as for the main folder: ``Project.resolve_migration``)."""
        source, bare = self.split(typed)
        return source.qualify(Project(source.config).resolve_migration(bare))

    def folder(self, qualified: str) -> Path:
        source, bare = self.split(qualified)
        return source.config.migrations_dir / bare

    @cached_property
    def names(self) -> list[str]:
        """Every migration of every source, qualified, in the order they interleave."""
        names: list[str] = []
        for source in self.items:
            found = Project(source.config).migration_names()
            if not source.is_main:
                _refuse_duplicates(source, found)
            names.extend(source.qualify(n) for n in found)
        return sorted(names, key=self.key) if self.several else names

    def folders(self) -> dict[str, tuple[Config, str]]:
        """Every migration by qualified name, in apply order: its folder's config and its
        folder name (``lint.lint.Folders``, for ``spawn lint`` and ``check``)."""
        return {name: (source.config, bare) for name in self.names
                for source, bare in [self.split(name)]}

    def key(self, qualified: str) -> tuple[str, int, str]:
        """Timestamp first, then the main folder before the sources (by name), then name."""
        source, bare = self.split(qualified)
        stamp = bare[:14] if TIMESTAMP_PREFIX.match(bare) else bare
        return stamp, source.rank, bare

    # -- history and settings ------------------------------------------------------------

    def latest(self, tracking: Tracking, *, check: bool = True) -> dict[str, HistoryRow]:
        """The latest row of every migration of every source, by qualified name; empty
        when the tracking schema does not exist (``check`` False: it is known to)."""
        if check and not tracking.exists():
            return {}
        states = tracking.latest()
        for source in self.items[1:]:
            for bare, row in tracking.latest(source.name).items():
                qualified = source.qualify(bare)
                states[qualified] = dataclasses.replace(row, name=qualified)
        return states

    def settings(self, names: Sequence[str]) -> dict[str, MigrationSettings]:
        """Every migration's ``migration.toml`` with ``requires``/``conflicts`` qualified,
        references and cycles checked across sources (``settings.load_all`` for one)."""
        if not self.several:
            return load_all(self.config, names)
        known = set(names)
        found: dict[str, MigrationSettings] = {}
        for qualified in names:
            source, bare = self.split(qualified)
            raw = load_settings(source.config, bare)
            found[qualified] = dataclasses.replace(
                raw, requires=self._references(qualified, "requires", raw.requires, known),
                conflicts=self._references(qualified, "conflicts", raw.conflicts, known))
        refuse_cycles(found)
        return found

    def _references(self, qualified: str, key: str, refs: Iterable[str],
                    known: set[str]) -> tuple[str, ...]:
        source, bare = self.split(qualified)
        where = source.config.migrations_dir / bare / SETTINGS_FILE
        out: list[str] = []
        for ref in refs:
            target = self._qualified_reference(ref, source, where, key)
            if target == qualified:
                raise MigrationSettingsError(f"{where}: `{key}` names the migration itself; "
                                             "remove it")
            if target not in known:
                raise MigrationSettingsError(
                    f"{where}: `{key}` names {ref!r}, which is not a migration of "
                    f"{self.split(target)[0].describe()}; use the full folder name of an "
                    "existing migration (<source>:<folder> for another source)")
            out.append(target)
        return tuple(out)

    def _qualified_reference(self, ref: str, source: Source, where: Path, key: str) -> str:
        prefix, sep, bare = ref.partition(SEPARATOR)
        if not sep:
            return source.qualify(ref)
        found = self.by_name.get(prefix)
        if found is None:
            names = ", ".join(s.name for s in self.items)
            raise MigrationSettingsError(
                f"{where}: `{key}` names {ref!r}, but {prefix!r} is not a migration source "
                f"({names}); fix the prefix or add the source to [[sources]] in spawn.toml")
        return found.qualify(bare)

    # -- running -------------------------------------------------------------------------

    def stretches(self, names: Sequence[str]) -> list[tuple[Source, list[str]]]:
        """``names`` cut into consecutive stretches of one source (folder names)."""
        out: list[tuple[Source, list[str]]] = []
        for qualified in names:
            source, bare = self.split(qualified)
            if out and out[-1][0] is source:
                out[-1][1].append(bare)
            else:
                out.append((source, [bare]))
        return out


def _refuse_duplicates(source: Source, names: Sequence[str]) -> None:
    """Two migrations of one source with the same name after the timestamp are refused:
    ``<source>:<name>`` would not say which is meant."""
    seen: dict[str, str] = {}
    for name in names:
        plain = TIMESTAMP_PREFIX.sub("", name)
        if plain in seen:
            folder = source.config.migrations_dir
            raise MigrationSettingsError(
                f"{source.describe()} has two migrations named {plain!r}: {folder / seen[plain]}"
                f" and {folder / name}; rename one of them (the same name in two sources is "
                "fine)")
        seen[plain] = name


class _Offset:
    """A reporter for one stretch of a run over several sources: qualified names,
    positions counted over the whole run."""

    def __init__(self, inner: ApplyReporter, source: Source, offset: int, total: int,
                 begun: float) -> None:
        self.inner, self.source, self.offset, self.total = inner, source, offset, total
        self.begun = begun

    def waiting_for_lock(self, holders: Sequence[LockHolder], waited: float) -> None:
        self.inner.waiting_for_lock(holders, waited)

    def started(self, name: str, position: int, total: int, elapsed: float) -> None:
        self.inner.started(self.source.qualify(name), position + self.offset, self.total,
                           time.monotonic() - self.begun)

    def finished(self, outcome: MigrationOutcome, position: int, total: int,
                 elapsed: float) -> None:
        named = dataclasses.replace(outcome, name=self.source.qualify(outcome.name))
        self.inner.finished(named, position + self.offset, self.total,
                            time.monotonic() - self.begun)

    def output(self, text: str) -> None:
        self.inner.output(text)


class SourceRun(MigrationRun):
    """``MigrationRun`` over one source's migrations: its config (components and pins),
    its namespace, qualified names in messages."""

    def __init__(self, source: Source, *args: Any, before: int = 0, whole: int = 0,
                 **kwargs: Any) -> None:
        super().__init__(source.config, *args, **kwargs)
        self.source = source
        self.namespace = source.name
        self.before, self.whole = before, whole

    def counted(self) -> tuple[int, int]:
        return self.before + len(self.outcomes), self.whole

    def shown(self, name: str) -> str:
        return self.source.qualify(name)

    def failure(self, rendered: Rendered, note: str, said: str = "psql said"
                ) -> MigrationFailed:
        named = dataclasses.replace(rendered, name=self.shown(rendered.name))
        return super().failure(named, note, said)


class StretchedRun:
    """The planned migrations of several sources, run stretch by stretch under one lock;
    ``names`` and ``execute`` as ``MigrationRun``'s (outcomes by qualified name)."""

    def __init__(self, sources: Sources, names: Sequence[str], reporter: ApplyReporter,
                 tracking: Tracking, **kwargs: Any) -> None:
        self.sources = sources
        self.names = list(names)
        self.reporter = reporter
        self.tracking = tracking
        self.kwargs = kwargs

    def execute(self) -> list[MigrationOutcome]:
        outcomes: list[MigrationOutcome] = []
        runner = self.kwargs.get("runner")  # the early psql session: the first stretch's
        passed = {k: v for k, v in self.kwargs.items() if k not in ("engine", "runner")}
        offset = 0
        total = len(self.names)
        begun = time.monotonic()
        for source, bare in self.sources.stretches(self.names):
            reporter = _Offset(self.reporter, source, offset, total, begun)
            run = SourceRun(source, self.kwargs["engine"], self.tracking, reporter, bare,
                            first_history_id=self.tracking.last_history_id(), runner=runner,
                            before=offset, whole=total,
                            **passed)
            runner = None
            outcomes.extend(dataclasses.replace(o, name=source.qualify(o.name))
                            for o in run.execute())
            offset += len(bare)
        return outcomes


def locate(config: Config, typed: str) -> tuple[Source, str]:
    """The source and the folder name of the migration a user typed (``audit:<name>``
    for a source's; a plain name is the main folder's)."""
    sources = Sources(config)
    return sources.split(sources.resolve(typed))
