"""Repeatable migrations: ``<spawn_folder>/repeatable/<name>/up.sql``, run again whenever
what they render changes.

A repeatable is a template like a migration's ``up.sql`` (with an optional
``repeatable.toml``: ``requires``, ``description``), rendered from the working
tree, never from a pin: it follows the components. Its identity is the
xxHash3-128 of the rendered bytes, so an edit to an included component, a
variable or the environment all make it run again.

``spawn migration apply`` runs it after the versioned migrations when that
checksum differs from its latest history row (or that row is not a SUCCESS),
in ``requires`` order, ties by name. It goes through the same runner, lock and
ATTEMPTED-then-outcome rows as a migration (``runner.MigrationRun``), in the
tracking namespace ``repeatable``: the Rust tool reads only ``default`` and
never looks outside ``migrations/``, so it sees none of this.
"""

from __future__ import annotations

import dataclasses
import hashlib
import heapq
import json
import os
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal

from spawn_db.config import (
    DEFAULT_LOCK_TIMEOUT,
    Config,
    TargetConfig,
    closest_key,
    toml_error_location,
)
from spawn_db.errors import (
    DependencyCycle,
    MigrationFailed,
    MigrationSettingsError,
    NotFoundError,
    SpawnError,
    TemplateError,
    UsageError,
)
from spawn_db.fsutil import (
    atomic_write,
    atomic_write_text,
    is_inside,
    open_regular,
    real_folder,
)
from spawn_db.migrate.rendered import Rendered, spool_rendered, with_secrets
from spawn_db.migrate.runner import ApplyReporter, MigrationOutcome, MigrationRun, SessionSetup
from spawn_db.migrate.settings import _names, _string, find_cycle
from spawn_db.migrate.tracking import HistoryRow, LockHolder, Tracking
from spawn_db.project import Project, validate_name

if TYPE_CHECKING:
    from spawn_db.db.engine import Engine
    from spawn_db.render.data import StreamedFile
    from spawn_db.render.template import ComponentSource, Renderer

FOLDER = "repeatable"
NAMESPACE = "repeatable"
SCRIPT = "up.sql"
SETTINGS_FILE = "repeatable.toml"
KEYS = ("description", "requires")
NEW_REPEATABLE_TEXT = (
    "-- Runs again on every `spawn migration apply` after what it renders changes:\n"
    "-- keep it safe to re-run (CREATE OR REPLACE, DROP ... IF EXISTS, GRANT).\n"
)

State = Literal["new", "changed", "unchanged", "failed", "attempted", "database only",
                "broken"]


# -- files -----------------------------------------------------------------------------------


def repeatable_dir(config: Config) -> Path:
    return config.spawn_folder / FOLDER


def repeatable_names(config: Config) -> list[str]:
    """The folders of ``repeatable/`` holding an ``up.sql``, sorted by name."""
    try:
        entries = list(os.scandir(repeatable_dir(config)))
    except (FileNotFoundError, NotADirectoryError):
        return []
    return sorted(e.name for e in entries if os.path.isfile(os.path.join(e.path, SCRIPT)))


def new_repeatable(config: Config, name: str) -> Path:
    """Create ``repeatable/<name>/up.sql``; return its path."""
    validate_name(name, "repeatable")
    folder = repeatable_dir(config) / name
    if folder.exists():
        raise UsageError(f"{folder} already exists; edit its up.sql, or choose another name")
    folder.mkdir(parents=True)
    path = folder / SCRIPT
    atomic_write_text(path, NEW_REPEATABLE_TEXT)
    return path


def resolve_repeatable(config: Config, name: str) -> str:
    """``name`` when ``repeatable/<name>/up.sql`` exists; else a NotFoundError naming the
    closest ones."""
    typed = name.rstrip("/")
    names = repeatable_names(config)
    if typed in names:
        return typed
    import difflib

    close = difflib.get_close_matches(typed, names, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else (
        f"; create it with `spawn repeatable new {typed}`" if not names else "")
    raise NotFoundError(f"repeatable {typed!r} not found in {repeatable_dir(config)}{hint}")


# -- repeatable.toml -------------------------------------------------------------------------


@dataclass(frozen=True)
class RepeatableSettings:
    """What ``repeatable.toml`` says; the defaults when there is none."""

    description: str = ""
    requires: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def _settings_path(config: Config, name: str) -> Path:
    return repeatable_dir(config) / name / SETTINGS_FILE


def load_settings(config: Config, name: str) -> RepeatableSettings:
    """One repeatable's settings, checked for types (``migrate/settings.py``'s helpers)."""
    path = _settings_path(config, name)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return RepeatableSettings()
    except OSError as exc:
        raise MigrationSettingsError(
            f"{path}: cannot be read ({exc.strerror}); fix its permissions") from None
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise MigrationSettingsError(
            f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as exc:
        raise MigrationSettingsError(
            f"{toml_error_location(path, exc)}: invalid TOML: {exc}; fix the syntax") from None
    return parse_settings(raw, path)


def parse_settings(raw: Mapping[str, Any], path: Path) -> RepeatableSettings:
    warnings = tuple(
        f"warning: unknown key `{key}` in {path} (ignored; the closest known key is "
        f"`{closest_key(key, KEYS)}`)"
        for key in raw if key not in KEYS
    )
    requires = raw.get("requires", [])
    if not isinstance(requires, list) or not all(isinstance(v, str) and v for v in requires):
        # _names would suggest a migration name; a repeatable requires repeatables.
        raise MigrationSettingsError(
            f"{path}: `requires` must be a list of repeatable names, not {requires!r:.60}; "
            "write requires = [\"base-views\"]")
    return RepeatableSettings(description=_string(raw, "description", path),
                              requires=_names(raw, "requires", path), warnings=warnings)


def load_all(config: Config, names: Sequence[str]) -> dict[str, RepeatableSettings]:
    """The settings of every repeatable in ``names``; an unknown or self ``requires`` and a
    cycle are errors (exit 2): no order that depends on them can be trusted."""
    settings = {name: load_settings(config, name) for name in names}
    known = set(names)
    for name, found in settings.items():
        for ref in found.requires:
            if ref == name:
                raise MigrationSettingsError(
                    f"{_settings_path(config, name)}: `requires` names the repeatable itself; "
                    "remove it")
            if ref not in known:
                import difflib

                close = difflib.get_close_matches(ref, sorted(known), n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise MigrationSettingsError(
                    f"{_settings_path(config, name)}: `requires` names {ref!r}, which is not a "
                    f"repeatable in {repeatable_dir(config)}{hint}; name a folder of "
                    f"{FOLDER}/ that holds an up.sql")
    cycle = find_cycle({n: s.requires for n, s in settings.items()})
    if cycle:
        raise DependencyCycle(
            f"repeatables require each other in a cycle: {' -> '.join(cycle)}; remove one of "
            f"these `requires` entries (in {SETTINGS_FILE} of the repeatables named)")
    return settings


def settings_warnings(config: Config) -> list[str]:
    """The unknown-key warnings of every ``repeatable.toml`` (and its errors, raised), said
    once before a command renders the repeatables."""
    return [w for s in load_all(config, repeatable_names(config)).values() for w in s.warnings]


def in_order(settings: Mapping[str, RepeatableSettings]) -> list[str]:
    """Every repeatable after the ones it requires; among those free to go, by name.

    ``settings`` has no cycle (``load_all``); requirements outside it are ignored.
    """
    waiting = {n: {r for r in s.requires if r in settings} for n, s in settings.items()}
    needed_by: dict[str, list[str]] = {}
    for name, refs in waiting.items():
        for ref in refs:
            needed_by.setdefault(ref, []).append(name)
    ready = [n for n, refs in waiting.items() if not refs]
    heapq.heapify(ready)
    ordered: list[str] = []
    while ready:
        name = heapq.heappop(ready)
        ordered.append(name)
        for other in needed_by.get(name, ()):
            waiting[other].discard(name)
            if not waiting[other]:
                heapq.heappush(ready, other)
    return ordered


# -- rendering -------------------------------------------------------------------------------


def _read_script(config: Config, name: str) -> tuple[Path, str]:
    path = repeatable_dir(config) / name / SCRIPT
    try:
        return path, path.read_bytes().decode("utf-8")  # bytes: read_text would drop CRs
    except FileNotFoundError:
        raise NotFoundError(f"{path} does not exist; create it, or remove the folder"
                            ) from None
    except UnicodeDecodeError as exc:
        raise TemplateError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8"
                            ) from None


def _chunks(config: Config, name: str, variables: Any, source: ComponentSource | None = None,
            random: list[bool] | None = None, used_secrets: list[str] | None = None
            ) -> Iterator[str]:
    """``up.sql`` rendered from the working tree (no Jinja for plain SQL); ``source``
    replaces the working tree's ``components/`` and ``random`` notes a call of a random
    function (both for ``Checksums``); ``used_secrets`` receives the names of the secrets
    it references (once the chunks are consumed)."""
    from spawn_db.render.plaintext import plain_output

    path, text = _read_script(config, name)
    output = plain_output(text)
    if output is not None:
        return iter([output])
    from spawn_db.render.template import WorkingTreeSource, compile_template, template_context

    display = Project(config).display(path)
    components = source or WorkingTreeSource(config.components_dir)
    renderer = compile_template(text, display, components)
    if random is not None:
        _watch_random(renderer, random)
    context = template_context(config, variables or {})
    if used_secrets is not None and context.secrets is not None:
        context.secrets.used = used_secrets
    return renderer.generate(context)


def render_repeatable(config: Config, name: str, *, variables: Any,
                      position: int = 1) -> Rendered:
    """``name`` rendered whole into a spool, with its checksum (its identity) and the
    script's shape (whether it may share the runner), as ``rendered.render_migration``
    renders a migration."""
    used: list[str] = []
    chunks = _chunks(config, name, variables, used_secrets=used)
    rendered = spool_rendered(name, chunks, position=position, secrets=used, encode=_encode)
    if used:
        with_secrets(rendered, config, variables, f"repeatable {name} up.sql")
    return rendered


def build_repeatable(config: Config, name: str, *, variables: Any) -> Iterator[str]:
    """The rendered text of ``name`` (``spawn repeatable build``)."""
    return _chunks(config, resolve_repeatable(config, name), variables)


# -- checksums, cached -----------------------------------------------------------------------

CACHE = Path(".spawn") / "repeatable-cache.json"
CACHE_FORMAT = 1
# Template functions whose output differs between two renders: such a render is not cached.
RANDOM_GLOBALS = ("gen_uuid_v4", "gen_uuid_v7", "lipsum")
RANDOM_FILTERS = ("random", "shuffle")


class Checksums:
    """The checksum of each repeatable as it renders now, without rendering what did not
    change since the last time.

    Deciding that 50 repeatables are unchanged must cost an apply almost nothing
    (bench/repeatable.py), and loading Jinja alone costs more than that. A render is a
    function of its ``up.sql``, the component files it read, ``env``, ``variables`` and
    the undefined-value mode, so ``.spawn/repeatable-cache.json`` keeps, under a hash of
    the first and the last three, the checksum and the hash of each file the render read
    (or that it found none). A file read again with other bytes, or now outside
    ``components/``, is a miss, and the repeatable is rendered. Renders that called a
    random function are never cached. A cache that cannot be read or written costs time.
    """

    def __init__(self, config: Config, variables: Any) -> None:
        self.config = config
        self.variables = variables
        self._root: str | None = None
        self._root_known = False
        self._digests: dict[str, str | None] = {}
        self.path = config.project_dir / CACHE
        self.old = self._load()
        self.new: dict[str, list[Any]] = {}
        self.context = json.dumps([config.environment, variables or {}, config.strict_undefined],
                                  sort_keys=True, default=str).encode()

    def _load(self) -> dict[str, list[Any]]:
        try:
            raw = json.loads(self.path.read_bytes())
            if raw.get("format") == CACHE_FORMAT and isinstance(raw.get("entries"), dict):
                entries: dict[str, list[Any]] = raw["entries"]
                return entries
        except (OSError, ValueError, AttributeError, TypeError):
            pass
        return {}

    def of(self, name: str) -> tuple[str, int]:
        """``name``'s checksum (hex) and rendered size."""
        from spawn_db.render.plaintext import plain_output

        _, text = _read_script(self.config, name)
        output = plain_output(text)
        if output is not None:
            data = _encode(output, name)
            return _xxh3(data), len(data)
        key = hashlib.sha256(text.encode() + b"\0" + self.context).hexdigest()
        entry = self.old.get(key)
        if entry is not None and self._still_valid(entry):
            self.new[key] = entry
            return str(entry[0]), int(entry[1])
        checksum, size, reads, random = self._render(name)
        if not random:
            self.new[key] = [checksum, size, {p: _recorded_digest(d)
                                              for p, d in reads.items()}]
        return checksum, size

    def _render(self, name: str
                ) -> tuple[str, int, dict[str, bytes | StreamedFile | None], bool]:
        import xxhash

        from spawn_db.migrate.drift import RecordingSource
        from spawn_db.render.template import WorkingTreeSource

        recorder = RecordingSource(WorkingTreeSource(self.config.components_dir))
        random = [False]
        digest = xxhash.xxh3_128()
        size = 0
        for chunk in _chunks(self.config, name, self.variables, recorder, random):
            data = _encode(chunk, name)
            digest.update(data)
            size += len(data)
        return digest.hexdigest(), size, recorder.reads, random[0]

    def _still_valid(self, entry: Any) -> bool:
        if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[2], dict)):
            return False
        root = self._components_root()
        if root is None:
            return False
        for path, digest in entry[2].items():
            found = self._digest_of(root, str(path))
            if found != digest:
                return False
        return True

    def _components_root(self) -> str | None:
        """``components/`` resolved once per apply (None: a link leaving the project)."""
        if not self._root_known:
            root, escaped = real_folder(str(self.config.components_dir))
            self._root = None if escaped is not None else root
            self._root_known = True
        return self._root

    def _digest_of(self, root: str, path: str) -> str | None:
        """A component's digest, read once per apply however many repeatables include it."""
        if path not in self._digests:
            found = _component_bytes(root, path)
            self._digests[path] = None if found is None else _xxh3(found)
        return self._digests[path]

    def save(self) -> None:
        if self.new == self.old:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            payload = json.dumps({"format": CACHE_FORMAT, "entries": self.new})
            atomic_write(self.path, payload.encode(), durable=False)
        except OSError:
            return


def _recorded_digest(recorded: bytes | StreamedFile | None) -> str | None:
    """The cache's digest of what a render read (a streamed CSV is kept as its digest)."""
    from spawn_db.render.data import StreamedFile

    if recorded is None:
        return None
    if isinstance(recorded, StreamedFile):
        return recorded.digest.hex()
    return _xxh3(recorded)


def _watch_random(renderer: Renderer, random: list[bool]) -> None:
    """Make ``random[0]`` True when the render calls a random function (the template's
    environment is its own, so wrapping its globals affects no other render)."""
    env = renderer.template.environment

    def wrap(function: Any) -> Any:
        def called(*args: Any, **kwargs: Any) -> Any:
            random[0] = True
            return function(*args, **kwargs)
        return called

    for name in RANDOM_GLOBALS:
        if callable(env.globals.get(name)):
            env.globals[name] = wrap(env.globals[name])
    for name in RANDOM_FILTERS:
        if name in env.filters:
            env.filters[name] = wrap(env.filters[name])


def _component_bytes(root: str, path: str) -> bytes | None:
    """What ``WorkingTreeSource.read`` gives for ``path`` (None: no such regular file);
    a path now outside ``components/`` gives bytes no hash in the cache matches."""
    real = os.path.realpath(os.path.join(root, *path.split("/")))
    if not is_inside(real, root):
        return b"\0outside"
    file = open_regular(real)
    if file is None:
        return None
    with file:
        return file.read()


def _xxh3(data: bytes) -> str:
    import xxhash

    return xxhash.xxh3_128_hexdigest(data)


# -- what changed ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Rendering:
    """One repeatable as it renders now, and how that compares with its latest row."""

    name: str
    checksum: str
    size: int
    state: State
    latest: HistoryRow | None
    settings: RepeatableSettings = field(default_factory=RepeatableSettings)


def state_against(checksum: str, row: HistoryRow | None) -> State:
    """``unchanged`` only when the latest row is a SUCCESS of this very checksum."""
    if row is None:
        return "new"
    if row.status == "FAILURE":
        return "failed"
    if row.status == "ATTEMPTED":
        return "attempted"
    return "unchanged" if row.checksum == checksum else "changed"


@dataclass(frozen=True)
class Selection:
    """Every repeatable an apply considers, in the order it runs them, each with its state
    against the history it was compared with; ``forced`` ones run even when unchanged."""

    renderings: tuple[Rendering, ...]
    forced: frozenset[str] = frozenset()
    warnings: tuple[str, ...] = ()

    @property
    def to_run(self) -> tuple[Rendering, ...]:
        return tuple(r for r in self.renderings
                     if r.state != "unchanged" or r.name in self.forced)

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.to_run]

    @property
    def unchanged(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.renderings
                     if r.state == "unchanged" and r.name not in self.forced)

    def against(self, states: Mapping[str, HistoryRow]) -> Selection:
        """The same renders compared with ``states`` (read again under the lock): no
        template is rendered twice."""
        renderings = tuple(
            dataclasses.replace(r, state=state_against(r.checksum, states.get(r.name)),
                                latest=states.get(r.name))
            for r in self.renderings)
        return dataclasses.replace(self, renderings=renderings)


def render_repeatables(config: Config, *, variables: Any = None, force: Sequence[str] = (),
                       only: Sequence[str] | None = None) -> Selection:
    """Render every repeatable (or those in ``only``), in ``requires`` order, for their
    checksums; compare the result with a history with ``Selection.against``. A template
    error, a bad repeatable.toml or an unknown name is raised here, before anything runs."""
    names = repeatable_names(config)
    settings = load_all(config, names)
    wanted = None if only is None else {resolve_repeatable(config, n) for n in only}
    forced = frozenset(resolve_repeatable(config, n) for n in force)
    checksums = Checksums(config, variables)
    renderings = tuple(_rendering(checksums, name, None, settings[name])
                       for name in in_order(settings) if wanted is None or name in wanted)
    checksums.save()
    warnings = tuple(w for s in settings.values() for w in s.warnings)
    return Selection(renderings, forced, warnings)


def changed_repeatables(
    config: Config,
    states: Mapping[str, HistoryRow],
    *,
    variables: Any = None,
    force: Sequence[str] = (),
    only: Sequence[str] | None = None,
) -> Selection:
    """Render every repeatable (or those in ``only``) and compare with ``states`` (the
    latest rows of namespace ``repeatable``): ``to_run`` holds the ones whose checksum
    differs, or whose latest row is not a SUCCESS, in ``requires`` order (ties by name),
    and the ``force``d ones even when unchanged."""
    return render_repeatables(config, variables=variables, force=force,
                              only=only).against(states)


def _rendering(checksums: Checksums, name: str, row: HistoryRow | None,
               settings: RepeatableSettings) -> Rendering:
    checksum, size = checksums.of(name)
    return Rendering(name, checksum, size, state_against(checksum, row), row, settings)


def _encode(chunk: str, name: str) -> bytes:
    try:
        return chunk.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TemplateError(
            f"repeatable {name} renders text that is not valid Unicode ({exc.reason}); "
            "check the files and variables it reads") from None


# -- running ---------------------------------------------------------------------------------


class _Prefixed:
    """Apply's reporter, with each repeatable named ``repeatable <name>`` in progress lines."""

    def __init__(self, inner: ApplyReporter) -> None:
        self.inner = inner

    def waiting_for_lock(self, holders: Sequence[LockHolder], waited: float) -> None:
        self.inner.waiting_for_lock(holders, waited)

    def started(self, name: str, position: int, total: int, elapsed: float) -> None:
        self.inner.started(f"repeatable {name}", position, total, elapsed)

    def finished(self, outcome: MigrationOutcome, position: int, total: int,
                 elapsed: float) -> None:
        named = MigrationOutcome(f"repeatable {outcome.name}", outcome.seconds,
                                 outcome.rendered_bytes)
        self.inner.finished(named, position, total, elapsed)

    def output(self, text: str) -> None:
        self.inner.output(text)


class RepeatableRun(MigrationRun):
    """``MigrationRun`` for repeatables: rendered from the working tree, registered in
    namespace ``repeatable``, no verify scripts, their own failure message."""

    namespace = NAMESPACE

    def render(self, position: int) -> Rendered:
        name = self.names[position - 1]
        rendered = render_repeatable(self.config, name, variables=self.variables,
                                     position=position)
        rendered.migration_id = self.ids.get(name)
        self.by_position[position] = rendered
        return rendered

    def failure(self, rendered: Rendered, note: str, said: str = "psql said"
                ) -> MigrationFailed:
        why = "interrupted" if self.interrupted else "failed"
        path = Project(self.config).display(repeatable_dir(self.config) / rendered.name / SCRIPT)
        return MigrationFailed(
            f"repeatable {rendered.name} {why} ({len(self.outcomes)} of {self.total} "
            f"re-applied before it); recorded as FAILURE in {self.tracking.schema}."
            f"migration_history (namespace {NAMESPACE}). psql said:\n{note}\n"
            f"Fix {path} (or what it includes); the next `spawn migration apply` runs it again"
        )


@dataclass(frozen=True)
class RepeatableResult:
    applied: tuple[MigrationOutcome, ...]
    unchanged: tuple[str, ...]


def run_repeatables(
    config: Config,
    tracking: Tracking,
    *,
    engine: Engine | None = None,
    setup: SessionSetup | None = None,
    reporter: ApplyReporter | None = None,
    variables: Any = None,
    selection: Selection | None = None,
) -> RepeatableResult:
    """Run the changed repeatables of ``selection`` (by default every repeatable, rendered
    now: ``render_repeatables``) on ``tracking``'s target.

    The caller holds the migration lock and has brought the tracking schema up to date
    (``Tracking.ensure``), as apply does. The history is read here, under that lock, in
    one query; unchanged repeatables write nothing.
    """
    from spawn_db.db.engine import engine_for
    from spawn_db.migrate.apply import NullReporter

    if selection is None:
        selection = render_repeatables(config, variables=variables)
    selection = selection.against(tracking.latest(NAMESPACE))
    to_run = selection.names
    if not to_run:
        return RepeatableResult((), selection.unchanged)
    engine = engine or engine_for(config, config.target())
    run = RepeatableRun(config, engine, tracking, _Prefixed(reporter or NullReporter()),
                        to_run, pinned=False, variables=variables,
                        first_history_id=tracking.last_history_id(),
                        setup=setup or SessionSetup.for_tracking(tracking))
    outcomes = run.execute()
    return RepeatableResult(tuple(outcomes), selection.unchanged)


def apply_repeatables(config: Config, target: TargetConfig | None = None, *,
                      variables: Any = None, reporter: ApplyReporter | None = None,
                      force: Sequence[str] = (), only: Sequence[str] | None = None,
                      lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> RepeatableResult:
    """Only the repeatables, on ``target`` (default: the configured one): render, lock,
    bring the tracking schema up to date, run the changed ones.

    For callers that build a database without ``apply`` (test template databases).
    """
    from spawn_db.db.engine import engine_for
    from spawn_db.migrate.apply import NullReporter, _locked, tracking_session

    reporter = reporter or NullReporter()
    target = target or config.target()
    selection = render_repeatables(config, variables=variables, force=force, only=only)
    with tracking_session(config, target) as tracking, \
            _locked(tracking, lock_timeout, reporter):
        tracking.ensure()
        return run_repeatables(config, tracking, engine=engine_for(config, target),
                               reporter=reporter, variables=variables, selection=selection)


@dataclass(frozen=True)
class RepeatableRequest:
    """What an apply does with repeatables: the changed ones (the default), none
    (``--no-repeatable``), or only the ``named`` ones, even when unchanged
    (``--repeatable NAME``). An apply of one named migration runs none unless named."""

    skip: bool = False
    named: tuple[str, ...] = ()

    def select(self, config: Config, *, variables: Any,
               migration: str | None) -> Selection | None:
        if self.skip:
            return None
        if self.named:
            return render_repeatables(config, variables=variables, force=self.named,
                                      only=self.named)
        if migration is not None:
            return None
        return render_repeatables(config, variables=variables)


# -- status ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RepeatableStatus:
    name: str
    on_filesystem: bool
    state: State
    latest: HistoryRow | None
    checksum_now: str | None = None
    description: str = ""
    requires: tuple[str, ...] = ()
    problem: str | None = None


def repeatable_status(config: Config, states: Mapping[str, HistoryRow], *,
                      variables: Any = None) -> list[RepeatableStatus]:
    """Every repeatable on disk or in ``states`` (namespace ``repeatable``), in the order
    apply runs them, then the ones only the database knows (``database only``; nothing is
    dropped for you). One that cannot render is ``broken``, with the error as problem."""
    names = repeatable_names(config)
    settings = load_all(config, names)
    rows: list[RepeatableStatus] = []
    checksums = Checksums(config, variables)
    for name in in_order(settings):
        found = settings[name]
        row = states.get(name)
        try:
            now = _rendering(checksums, name, row, found)
        except SpawnError as exc:
            rows.append(RepeatableStatus(name, True, "broken", row, None, found.description,
                                         found.requires, exc.message))
            continue
        rows.append(RepeatableStatus(name, True, now.state, row, now.checksum,
                                     found.description, found.requires))
    checksums.save()
    rows += [RepeatableStatus(name, False, "database only", states[name])
             for name in sorted(set(states) - set(names))]
    return rows


def read_states(config: Config) -> dict[str, HistoryRow]:
    """The latest row of every repeatable, read without the lock (empty before the first
    apply; nothing is created)."""
    from spawn_db.migrate.apply import tracking_session

    with tracking_session(config) as tracking:
        return tracking.latest(NAMESPACE) if tracking.exists() else {}


@dataclass(frozen=True)
class PlannedRepeatable:
    """A repeatable an apply would run, as ``--dry-run`` shows it."""

    name: str
    checksum: str
    size: int
    state: State
    forced: bool = False


def plan_repeatables(config: Config, states: Mapping[str, HistoryRow], *, variables: Any,
                     force: Sequence[str] = (), only: Sequence[str] | None = None,
                     each: Any = None) -> tuple[tuple[PlannedRepeatable, ...], tuple[str, ...]]:
    """What apply would run (and leave), each rendered as apply renders it; ``each``
    receives every planned one with its rendered SQL (a binary file), in order."""
    selection = changed_repeatables(config, states, variables=variables, force=force,
                                    only=only)
    planned: list[PlannedRepeatable] = []
    for position, found in enumerate(selection.to_run, 1):
        item = PlannedRepeatable(found.name, found.checksum, found.size, found.state,
                                 forced=found.state == "unchanged")
        planned.append(item)
        if each is not None:
            rendered = render_repeatable(config, found.name, variables=variables,
                                         position=position)
            try:
                rendered.spool.seek(0)
                spool: IO[bytes] = rendered.spool
                each(item, spool)
            finally:
                rendered.close()
    return tuple(planned), selection.unchanged
