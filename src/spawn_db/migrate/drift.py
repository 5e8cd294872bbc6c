"""Does what is on disk still say what the database ran, and what a pin will run?

Three questions, each answered by rendering a migration while recording what
the render depended on (the components files it read, whether it read
``variables``, whether it called something random):

* Was an applied migration changed since? Its ``lock.toml`` against the pin
  hash in its history row, and the checksum of what would be applied now
  against the recorded one (``applied_drift``).
* Will a pending migration apply an older version of a component than the
  working tree has? (``stale_components``; pins are snapshots by design, so
  this is a warning, and only when no later migration in the same run takes
  the new version.)
* Does ``migration build`` without ``--pinned`` show something other than
  what apply would send? (``build_against_pin``.)

A render depends only on the template text, the bytes of the files it reads,
``env``, ``variables`` and random functions, so "same inputs" proves "same
output" without rendering twice; the second render is only made to settle
the cases where an input differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import xxhash

from spawn_db.config import Config
from spawn_db.errors import PinStoreError, SpawnError
from spawn_db.fsutil import atomic_write
from spawn_db.pin.store import PinnedTree, PinStore, read_lock

if TYPE_CHECKING:
    from spawn_db.migrate.tracking import HistoryRow
    from spawn_db.render.data import StreamedFile
    from spawn_db.render.template import ComponentSource, Renderer

    # What a recording render kept of a file: its bytes, a streamed file's digest, or
    # None when the file did not exist.
    Recorded = bytes | StreamedFile | None

RANDOM_GLOBALS = ("gen_uuid_v4", "gen_uuid_v7")
RANDOM_FILTERS = ("random",)
RENDER_CACHE = Path(".spawn") / "status-cache.json"
RENDER_CACHE_FORMAT = 1


# -- recording a render ----------------------------------------------------------------------


class RecordingSource:
    """A component source that remembers every file a render asked for (and its bytes)."""

    def __init__(self, inner: ComponentSource) -> None:
        self.inner = inner
        self.reads: dict[str, Recorded] = {}

    @property
    def description(self) -> str:
        return self.inner.description

    def read(self, parts: list[str]) -> bytes | None:
        data = self.inner.read(parts)
        self.reads.setdefault("/".join(parts), data)
        return data

    def open(self, parts: list[str]) -> IO[bytes] | None:
        """A streamed file (``copy_csv``) is recorded by its digest, not its bytes."""
        from spawn_db.render.data import StreamedFile, open_component

        stream = open_component(self.inner, parts)
        key = "/".join(parts)
        if key not in self.reads:
            self.reads[key] = None if stream is None else StreamedFile.of(stream)
        return stream


class WatchedVariables(dict[str, Any]):
    """The empty ``variables`` of a render without ``--variables`` that notes any use.

    A migration applied with a variables file renders differently without
    it; when the file is not known, a render that looked at ``variables``
    cannot be compared, and saying "modified" would be a false alarm.
    """

    touched = False

    def _touch(self) -> None:
        self.touched = True

    def __getitem__(self, key: str) -> Any:
        self._touch()
        return super().__getitem__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._touch()
        return super().get(key, default)

    def __contains__(self, key: object) -> bool:
        self._touch()
        return super().__contains__(key)

    def __iter__(self) -> Iterator[str]:
        self._touch()
        return super().__iter__()

    def __len__(self) -> int:
        self._touch()
        return super().__len__()

    def __str__(self) -> str:
        self._touch()
        return super().__str__()

    __repr__ = __str__

    def keys(self) -> Any:
        self._touch()
        return super().keys()

    def items(self) -> Any:
        self._touch()
        return super().items()

    def values(self) -> Any:
        self._touch()
        return super().values()


@dataclass
class Probe:
    """What one render produced (its checksum) and what it depended on."""

    checksum: bytes
    reads: dict[str, Recorded] = field(default_factory=dict)
    random: bool = False
    uses_variables: bool = False


def _watch_randomness(renderer: Renderer, flag: list[bool]) -> None:
    """Make the random functions and filters of this render set ``flag[0]`` when used."""
    env = renderer.template.environment

    def wrap(function: Callable[..., Any]) -> Callable[..., Any]:
        def called(*args: Any, **kwargs: Any) -> Any:
            flag[0] = True
            return function(*args, **kwargs)
        return called

    for name in RANDOM_GLOBALS:
        function = env.globals.get(name)
        if callable(function):
            env.globals[name] = wrap(function)
    for name in RANDOM_FILTERS:
        if name in env.filters:
            env.filters[name] = wrap(env.filters[name])


@dataclass
class RecordedRender:
    """A render in progress: ``chunks`` streams it; ``probe()`` is valid once they are consumed."""

    chunks: Iterator[str]
    source: RecordingSource | None
    random: list[bool]
    variables: Any
    digest: Any = field(default_factory=xxhash.xxh3_128)

    def probe(self) -> Probe:
        watched = isinstance(self.variables, WatchedVariables) and self.variables.touched
        reads = dict(self.source.reads) if self.source is not None else {}
        return Probe(self.digest.digest(), reads, self.random[0], watched)


def recorded_render(config: Config, name: str, *, pinned: bool, variables: Any,
                    watch_variables: bool = False) -> RecordedRender:
    """Compile ``name`` (from its pin or the working tree) for a recorded, hashed render.

    A template without template syntax is served as ``apply`` serves it, by
    ``plain_output``, and depends on no component. ``watch_variables``
    renders with an empty ``WatchedVariables`` when no variables are given.
    """
    from spawn_db.migrate.migration import _template_text, compile_migration, migration_source
    from spawn_db.project import Project
    from spawn_db.render.plaintext import plain_output
    from spawn_db.render.template import template_context

    folder = Project(config).find_migration(name)
    text = _template_text(folder, "up.sql")  # a scripted migration's steps, as one
    flag = [False]
    plain = plain_output(text)
    if plain is not None:
        if pinned:
            migration_source(config, name, pinned=True)  # the same errors as apply
        render = RecordedRender(iter([plain] if plain else []), None, flag, variables)
    else:
        source = migration_source(config, name, pinned=pinned)
        recorder = RecordingSource(source.components)
        renderer = compile_migration(config, dataclasses.replace(source, components=recorder))
        _watch_randomness(renderer, flag)
        if variables is None and watch_variables:
            variables = WatchedVariables()
        context = template_context(config, variables if variables is not None else {})
        render = RecordedRender(renderer.generate(context), recorder, flag, variables)
    render.chunks = _hashed(render.chunks, render)
    return render


def _hashed(chunks: Iterator[str], render: RecordedRender) -> Iterator[str]:
    for chunk in chunks:
        render.digest.update(chunk.encode("utf-8", "surrogateescape"))
        yield chunk


def probe(config: Config, name: str, *, pinned: bool, variables: Any,
          watch_variables: bool = False) -> Probe:
    """Render ``name`` to nothing and say what it produced and depended on."""
    render = recorded_render(config, name, pinned=pinned, variables=variables,
                             watch_variables=watch_variables)
    for _ in render.chunks:
        pass
    return render.probe()


def _pinned_tree(config: Config, name: str, pin: str) -> PinnedTree:
    return PinnedTree(PinStore(config.pinned_dir), pin, context=f"migration {name}")


def changed_files(config: Config, name: str, pin: str,
                  reads: dict[str, Recorded], *, against_pin: bool) -> list[str]:
    """Of the files a render read, those whose bytes differ between the pin and the tree.

    ``reads`` holds the bytes the render saw: from the working tree when
    ``against_pin`` (compare with the pin), from the pin otherwise.
    """
    from spawn_db.render.data import same_content
    from spawn_db.render.template import WorkingTreeSource

    other: Any = (_pinned_tree(config, name, pin) if against_pin
                  else WorkingTreeSource(config.components_dir))
    return sorted(path for path, data in reads.items()
                  if not same_content(other, path.split("/"), data))


# -- 24: migration build without --pinned ---------------------------------------------------


def build_against_pin(config: Config, name: str, variables: Any
                      ) -> tuple[Iterator[str], Callable[[], str | None]]:
    """The working-tree render of ``name``, and, once it is consumed, why apply differs.

    The second value returns None when the migration is not pinned, or when
    every file the render read has the same bytes in the pin (then the pinned
    render is the same text); otherwise it renders from the pin and returns
    the files that differ if the output differs (or the pin cannot render).
    """
    render = recorded_render(config, name, pinned=False, variables=variables)

    def difference() -> str | None:
        pin = read_lock(config.migrations_dir / name)
        if pin is None or render.source is None:
            return None
        seen = render.probe()
        try:
            files = changed_files(config, name, pin, seen.reads, against_pin=True)
            if not files:
                return None
            pinned = probe(config, name, pinned=True, variables=variables)
        except SpawnError as exc:
            return f"its pin does not render: {exc.message}"
        if pinned.checksum == seen.checksum and not (pinned.random or seen.random):
            return None
        return "changed since the pin: " + ", ".join(f"components/{f}" for f in files)

    return render.chunks, difference


# -- 16: pending migrations pinned to older components --------------------------------------


@dataclass(frozen=True)
class StaleComponent:
    migration: str
    files: tuple[str, ...]

    def message(self) -> str:
        which = ", ".join(f"components/{f}" for f in self.files)
        noun = "version" if len(self.files) == 1 else "versions"
        return (
            f"{self.migration} is pinned to an older {which}: the working tree has a newer "
            f"{noun}, which this migration will not apply (pins are snapshots); run `spawn "
            f"migration pin {self.migration}` to take the new {noun}"
        )


def stale_components(config: Config, names: Sequence[str], variables: Any) -> list[StaleComponent]:
    """For each pinned migration of ``names`` (in run order): the components it includes
    whose working-tree bytes differ from its pin, unless a later migration of ``names``
    includes the working-tree version (then the run deploys the new version anyway).

    Renders only migrations whose pin is not the newest pin among ``names`` with
    changes, and later ones when needed to clear a warning. Problems rendering are
    left to apply and build to report.
    """
    pins = {n: None if _plain(config, n) else _lock_or_none(config, n) for n in names}
    probes: dict[str, Probe | None] = {}

    def reads_of(name: str) -> dict[str, Recorded]:
        if name not in probes:
            try:
                probes[name] = probe(config, name, pinned=True, variables=variables)
            except SpawnError:
                probes[name] = None
        found = probes[name]
        return found.reads if found is not None else {}

    stale: list[StaleComponent] = []
    for index, name in enumerate(names):
        pin = pins[name]
        if pin is None:
            continue
        try:
            files = changed_files(config, name, pin, reads_of(name), against_pin=False)
        except SpawnError:
            continue
        later = names[index + 1:]
        files = [f for f in files if not _taken_later(config, f, later, pins, reads_of)]
        if files:
            stale.append(StaleComponent(name, tuple(files)))
    return stale


def _taken_later(config: Config, path: str, later: Sequence[str], pins: dict[str, str | None],
                 reads_of: Callable[[str], dict[str, Recorded]]) -> bool:
    from spawn_db.render.data import same_content
    from spawn_db.render.template import WorkingTreeSource

    current = WorkingTreeSource(config.components_dir)
    for name in later:
        if pins[name] is None:
            continue
        reads = reads_of(name)
        if path in reads and same_content(current, path.split("/"), reads[path]):
            return True
    return False


def _plain(config: Config, name: str) -> bool:
    """Whether ``name``'s up.sql has no template syntax: it includes no component, so it
    can neither be stale nor clear a warning, and its pin need not be read nor the
    migration rendered (apply renders it next; at N=1000 this check saved ~0.15 s)."""
    from spawn_db.render.plaintext import plain_output

    try:
        text = (config.migrations_dir / name / "up.sql").read_bytes().decode("utf-8")
    except (OSError, UnicodeDecodeError):
        return False
    return plain_output(text) is not None


def _lock_or_none(config: Config, name: str) -> str | None:
    try:
        return read_lock(config.migrations_dir / name)
    except PinStoreError:
        return None


# -- 15: applied migrations changed since ---------------------------------------------------


@dataclass(frozen=True)
class Drift:
    """How an applied migration differs from what its history row recorded."""

    modified: bool
    reason: str | None = None
    checksum_now: str | None = None
    verified: bool = True


def pin_problem(config: Config, name: str) -> tuple[str | None, str | None]:
    """(the pin, None) or (None, why the lock file or its root object is unusable)."""
    folder = config.migrations_dir / name
    try:
        pin = read_lock(folder)
    except PinStoreError as exc:
        return None, exc.message
    if pin is not None and not PinStore(config.pinned_dir).object_path(pin).is_file():
        return None, (f"migration {name} is pinned to {pin}, which is missing from "
                      f"{config.pinned_dir}; restore pinned/ from version control")
    return pin, None


class RenderCache:
    """Checksums of pinned renders, keyed by everything such a render depends on.

    A pinned render is a function of ``up.sql``, the pin, ``env`` and the
    variables, so ``status`` need not render an unchanged migration twice.
    Random renders are not cached. A cache that cannot be read or written only costs time.
    """

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.old: dict[str, list[Any]] = {}
        if path is not None:
            try:
                raw = json.loads(path.read_bytes())
                if raw.get("format") == RENDER_CACHE_FORMAT and isinstance(raw["entries"], dict):
                    self.old = raw["entries"]
            except (OSError, ValueError, AttributeError, KeyError, TypeError):
                self.old = {}
        self.new: dict[str, list[Any]] = {}

    @staticmethod
    def key(template: bytes, pin: str, env: str, variables: Any) -> str:
        parts = json.dumps([pin, env, variables], sort_keys=True, default=str).encode()
        return hashlib.sha256(template + b"\0" + parts).hexdigest()

    def get(self, key: str) -> Probe | None:
        entry = self.old.get(key)
        if not (isinstance(entry, list) and len(entry) == 2):
            return None
        self.new[key] = entry
        return Probe(bytes.fromhex(entry[0]), uses_variables=bool(entry[1]))

    def put(self, key: str, found: Probe) -> None:
        if not found.random:
            self.new[key] = [found.checksum.hex(), found.uses_variables]

    def save(self) -> None:
        if self.path is None or self.new == self.old:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            payload = json.dumps({"format": RENDER_CACHE_FORMAT, "entries": self.new})
            atomic_write(self.path, payload.encode(), durable=False)
        except OSError:
            return


def applied_drift(config: Config, name: str, row: HistoryRow, pin: str | None,
                  variables: Any, cache: RenderCache) -> Drift:
    """Compare an applied (or adopted) migration on disk with its latest history row.

    The pin first: a ``lock.toml`` that is gone or names another pin than the
    row is modified, without rendering. Then, for an APPLY row (ADOPT rows
    have no checksum), the checksum of what apply would send now (from the
    pin, or the working tree when unpinned) against the recorded one. Without
    ``variables``, the render sees an empty mapping, as an apply without
    ``--variables`` did; if it read them and the checksum differs, the apply may
    have had a variables file, so the result is "not verified", not "modified".
    """
    if row.pin_hash is not None and pin != row.pin_hash:
        now = f"to {pin}" if pin else "no longer pinned (no lock.toml)"
        return Drift(True, f"{name} was applied from pin {row.pin_hash} and is now {now}; "
                     f"restore its lock.toml from version control")
    if row.activity != "APPLY" or not row.checksum:
        return Drift(False)
    found = _probe_cached(config, name, pin, variables, cache)
    now = found.checksum.hex()
    if found.random:
        return Drift(False, f"{name} renders random values (gen_uuid_v4, gen_uuid_v7, random), "
                     "so only its pin was compared", now, verified=False)
    if found.uses_variables and variables is None and now != row.checksum:
        return Drift(False, f"{name} reads `variables`; pass the --variables file it was "
                     "applied with to compare its checksum", now, verified=False)
    if now != row.checksum:
        source = "its pin" if pin else "the working tree"
        return Drift(True, f"{name} now renders (from {source}) to checksum {now}, but "
                     f"{row.checksum} was applied: its up.sql or components changed since; "
                     f"restore them, or put the change in a new migration", now)
    return Drift(False, None, now)


def _probe_cached(config: Config, name: str, pin: str | None, variables: Any,
                  cache: RenderCache) -> Probe:
    if pin is None:
        return probe(config, name, pinned=False, variables=variables, watch_variables=True)
    from spawn_db.migrate.migration import _template_text

    template = _template_text(config.migrations_dir / name, "up.sql").encode()
    key = cache.key(template, pin, config.environment, variables)
    found = cache.get(key)
    if found is None:
        found = probe(config, name, pinned=True, variables=variables, watch_variables=True)
        cache.put(key, found)
    return found
