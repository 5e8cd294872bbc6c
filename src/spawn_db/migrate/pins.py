"""Pin management across a project: refs, validate, diff, checkout, unused objects.

``pin/`` knows the store; this module knows which snapshots the project uses
(every migration's ``lock.toml``) and what a user may name: a migration, a
root hash or a unique prefix of one (at least ``MIN_PREFIX`` hex digits), or
``WORKTREE`` (``components/`` as it is now). None of it touches a database.

Writers of the store (pinning, and deleting unused objects) take one lock, a
``flock`` on the ``pinned/`` folder itself: an object a pin is about to
reference must not be deleted between the moment the pin finds it present
and the moment its ``lock.toml`` is written.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from spawn_db.config import Config
from spawn_db.errors import AmbiguousName, NotFoundError, PinStoreError, UsageError
from spawn_db.fsutil import atomic_write, folder_lock, make_private_dir
from spawn_db.pin import inspect
from spawn_db.pin.store import PinStore, hash_bytes, read_lock
from spawn_db.project import Project

WORKTREE = "WORKTREE"
MIN_PREFIX = 6
# Roots ``checkout --in-place`` saved: no lock.toml names them, yet their command to come
# back was printed, so ``report --unused --delete`` keeps them.
SAVED_ROOTS = Path(".spawn") / "pin-saved"


@contextlib.contextmanager
def pin_lock(config: Config) -> Iterator[None]:
    """Held while the store is written: by pins, and by ``unused(delete=True)``."""
    with folder_lock(config.pinned_dir):
        yield


# -- refs ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ref:
    """A snapshot a user named. ``root`` is None for ``WORKTREE``."""

    text: str
    root: str | None
    label: str
    migration: str | None = None


def lock_roots(config: Config) -> tuple[dict[str, str], dict[str, str]]:
    """Every migration's pin (name -> root), and the migrations whose lock.toml is broken
    (name -> message). Drafts and unpinned migrations have no entry."""
    project = Project(config)
    roots: dict[str, str] = {}
    broken: dict[str, str] = {}
    for name in project.migration_names():
        try:
            pin = read_lock(project.migration_dir(name))
        except PinStoreError as exc:
            broken[name] = exc.message
            continue
        if pin is not None:
            roots[name] = pin
    return roots, broken


def resolve_ref(config: Config, text: str) -> Ref:
    """A migration name (or unique suffix), a root hash or unique prefix, or WORKTREE."""
    if text == WORKTREE:
        return Ref(text, None, f"the working tree ({config.components_dir})")
    project = Project(config)
    store = PinStore(config.pinned_dir)
    lowered = text.lower()
    if len(lowered) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in lowered):
        matches = sorted(d for d in store.known_objects() if d.startswith(lowered))
        if len(matches) == 1:
            return Ref(text, matches[0], matches[0])
        if len(matches) > 1:
            raise AmbiguousName(
                f"{text!r} is the start of {len(matches)} pin objects ({', '.join(matches[:5])}"
                f"{', ...' if len(matches) > 5 else ''}); type more digits")
    try:
        name = project.resolve_migration(text)
    except NotFoundError:
        close = difflib.get_close_matches(text, project.migration_names(), n=3, cutoff=0.5)
        hint = f" (did you mean {' or '.join(close)}?)" if close else ""
        raise NotFoundError(
            f"{text!r} is neither a migration{hint}, nor a pin object in {config.pinned_dir} "
            f"(give a root hash or at least {MIN_PREFIX} of its first digits), nor WORKTREE; "
            "`spawn migration list` shows each migration's pin") from None
    root = read_lock(project.migration_dir(name))
    if root is None:
        raise UsageError(f"migration {name} is not pinned (no lock.toml), so it has no "
                         f"snapshot; pin it, or use WORKTREE for {config.components_dir}")
    return Ref(text, root, f"{name} ({root})", name)


def _located(config: Config, text: str) -> tuple[Config, Ref]:
    """``resolve_ref`` in the folder ``text`` names: ``audit:<ref>`` is ``<ref>`` in that
    ``[[sources]]`` folder (its migrations, its ``pinned/``, ``audit:WORKTREE`` its
    ``components/``); anything else is the main folder's."""
    if not config.sources or ":" not in text:
        return config, resolve_ref(config, text)
    from spawn_db.migrate.sources import Sources

    source, bare = Sources(config).split(text)
    ref = resolve_ref(source.config, bare)
    if ref.migration is None:
        return source.config, ref
    return source.config, replace(ref, label=source.qualify(ref.label))


# -- validate ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PinValidation:
    broken_locks: dict[str, str]
    bad_objects: list[inspect.BadObject]
    checked: int
    checked_unreachable: int

    @property
    def ok(self) -> bool:
        return not self.broken_locks and not self.bad_objects


def validate_pins(config: Config, *, all_objects: bool = False) -> PinValidation:
    """Every lock.toml and the objects it reaches, of the main folder and of each
    ``[[sources]]`` folder (its own migrations and ``pinned/``; its migrations named
    ``<source>:<folder>``)."""
    if not config.sources:
        return _validate_folder(config, all_objects)
    from spawn_db.migrate.sources import Sources

    parts = [_validate_folder(source.config, all_objects, source.qualify)
             for source in Sources(config).items]
    return PinValidation(
        {name: message for part in parts for name, message in part.broken_locks.items()},
        [bad for part in parts for bad in part.bad_objects],
        sum(part.checked for part in parts), sum(part.checked_unreachable for part in parts))


def _validate_folder(config: Config, all_objects: bool,
                     qualify: Callable[[str], str] = str) -> PinValidation:
    roots, broken = lock_roots(config)
    found = inspect.validate(PinStore(config.pinned_dir),
                             {qualify(name): root for name, root in roots.items()},
                             all_objects=all_objects)
    return PinValidation({qualify(name): message for name, message in broken.items()},
                         found.bad_objects(), len(found.reachable), found.checked_unreachable)


# -- unused objects ------------------------------------------------------------------------


@dataclass(frozen=True)
class UnusedReport:
    objects: tuple[inspect.Unused, ...]
    staging: tuple[str, ...]
    deleted: bool = False

    @property
    def total(self) -> int:
        return sum(o.size for o in self.objects)


def unused(config: Config, *, keep: Sequence[str] = (), delete: bool = False) -> UnusedReport:
    """Objects no lock.toml (and no ``keep`` ref) reaches; with ``delete``, remove them and
    the staging folders of pins that were killed, holding the pin lock.

    Refused (nothing deleted) while a lock.toml is broken or a reachable object is
    bad: what a broken pin would need cannot be told from what is unused.
    """
    with pin_lock(config) if delete else contextlib.nullcontext():
        store = PinStore(config.pinned_dir)
        roots, broken = lock_roots(config)
        for index, text in enumerate(keep):
            ref = resolve_ref(config, text)
            if ref.root is not None:
                roots[f"--keep {index}"] = ref.root
        for index, root in enumerate(saved_roots(config)):
            if store.has(root):
                roots[f"saved {index}"] = root
        found = inspect.validate(store, roots)
        if delete and (broken or found.bad):
            what = next(iter(broken.values()), None) or \
                f"pin object {next(iter(found.bad))} is {next(iter(found.bad.values()))}"
            raise PinStoreError(f"refusing to delete unused objects while a pin is damaged "
                                f"({what}); run `spawn pin validate` and repair it first")
        objects = inspect.unused_objects(store, found.reachable)
        staging = inspect.staging_leftovers(store)
        if delete:
            inspect.delete_objects(store, objects)
            inspect.delete_staging(store, staging)
        return UnusedReport(tuple(objects), tuple(staging), delete)


def saved_roots(config: Config) -> list[str]:
    try:
        text = (config.project_dir / SAVED_ROOTS).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [line.strip() for line in text.splitlines() if len(line.strip()) == 32]


def _save_root(config: Config, root: str) -> None:
    roots = saved_roots(config)
    if root not in roots:
        make_private_dir(config.project_dir / SAVED_ROOTS.parent)
        atomic_write((config.project_dir / SAVED_ROOTS),
                     "".join(f"{r}\n" for r in [*roots, root]).encode())


# -- checkout ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkout:
    ref: Ref
    target: Path
    files: int
    previous_root: str | None = None


def checkout(config: Config, text: str, *, to: Path | None = None, in_place: bool = False,
             force: bool = False) -> Checkout:
    """Write the snapshot ``text`` as files: into ``.spawn/checkout/<hash>/`` or ``to``, or
    (``in_place``) over ``components/`` after pinning the current one."""
    project_dir = config.project_dir
    config, ref = _located(config, text)
    if ref.root is None:
        raise UsageError("WORKTREE is already checked out: it is components/; name a migration "
                         "or a root hash")
    store = PinStore(config.pinned_dir)
    if in_place:
        return _checkout_in_place(config, ref, store)
    target = to or project_dir / ".spawn" / "checkout" / ref.root
    _refuse_nonempty(target, force)
    if target.exists():
        shutil.rmtree(target)
    files = inspect.write_out(store, ref.root, str(target), context=f"checking out {ref.label}")
    return Checkout(ref, target, files)


def _refuse_nonempty(target: Path, force: bool) -> None:
    if not target.exists():
        return
    if not target.is_dir():
        raise UsageError(f"{target} exists and is not a folder; choose another --to")
    if any(target.iterdir()) and not force:
        raise UsageError(f"{target} exists and is not empty; choose another --to, or pass "
                         "--force to replace its contents")


def _checkout_in_place(config: Config, ref: Ref, store: PinStore) -> Checkout:
    from spawn_db.migrate.migration import snapshot_components

    assert ref.root is not None
    components = config.components_dir
    with pin_lock(config):
        previous = snapshot_components(config) if components.is_dir() else None
        if previous is not None:
            _save_root(config, previous)
    parent = components.parent
    staged = Path(tempfile.mkdtemp(prefix=".spawn-checkout-", dir=parent))
    try:
        files = inspect.write_out(store, ref.root, str(staged / "new"),
                                  context=f"checking out {ref.label}")
        old = staged / "old"
        if components.exists():
            os.rename(components, old)
        os.rename(staged / "new", components)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    return Checkout(ref, components, files, previous)


# -- diff ----------------------------------------------------------------------------------


ChangeKind = Literal["added", "removed", "changed"]


@dataclass(frozen=True)
class FileChange:
    path: str
    kind: ChangeKind
    old: bytes | None
    new: bytes | None

    @property
    def binary(self) -> bool:
        return any(_is_binary(d) for d in (self.old, self.new) if d is not None)

    def counts(self) -> tuple[int, int]:
        """Lines added and removed (0, 0 for a binary file)."""
        if self.binary:
            return 0, 0
        added = removed = 0
        for line in self.unified()[2:]:
            if line.startswith("+"):
                added += 1
            elif line.startswith("-"):
                removed += 1
        return added, removed

    def unified(self, context: int = 3) -> list[str]:
        """The file's unified diff lines, each ending with a newline."""
        old = _text(self.old).splitlines(keepends=True)
        new = _text(self.new).splitlines(keepends=True)
        lines = list(difflib.unified_diff(
            old, new, "/dev/null" if self.old is None else f"a/{self.path}",
            "/dev/null" if self.new is None else f"b/{self.path}", n=context))
        return [line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
                for line in lines]


@dataclass(frozen=True)
class PinDiff:
    a: Ref
    b: Ref
    changes: tuple[FileChange, ...]


def diff(config: Config, a: str, b: str, *, used: bool = False) -> PinDiff:
    """File-by-file differences between two snapshots (``WORKTREE`` allowed on either side).

    ``used`` keeps only the files that A's or B's migration reads when it renders
    from its pin (includes, imports, ``read_file``...), recorded by rendering it.
    """
    (left_config, left), (right_config, right) = _located(config, a), _located(config, b)
    old, new = _files(left_config, left), _files(right_config, right)
    paths = sorted(set(old) | set(new))
    if used:
        read = _files_read([(left_config, left), (right_config, right)])
        paths = [p for p in paths if p in read]
    changes = []
    for path in paths:
        before, after = old.get(path), new.get(path)
        if before is not None and after is not None and before[0] == after[0]:
            continue
        kind: ChangeKind = "added" if before is None else "removed" if after is None \
            else "changed"
        changes.append(FileChange(path, kind, before[1]() if before else None,
                                  after[1]() if after else None))
    return PinDiff(left, right, tuple(changes))


Reader = Callable[[], bytes]


def _files_read(refs: Sequence[tuple[Config, Ref]]) -> set[str]:
    from spawn_db.migrate.drift import probe

    migrations = [(config, r.migration) for config, r in refs if r.migration is not None]
    if not migrations:
        raise UsageError("--used needs a migration on at least one side (what its render "
                         "reads is the filter); name a migration instead of a hash or WORKTREE")
    read: set[str] = set()
    for config, name in migrations:
        read.update(probe(config, name, pinned=True, variables=None).reads)
    return read


def _files(config: Config, ref: Ref) -> dict[str, tuple[str, Reader]]:
    """path -> (hash, a function reading the bytes), so unchanged files are never read."""
    if ref.root is None:
        return _worktree_files(config.components_dir)
    store = PinStore(config.pinned_dir)
    context = f"reading {ref.label}"
    return {path: (digest, functools.partial(store.get, digest, context=context))
            for path, digest in inspect.files_of(store, ref.root, context=context).items()}


def _worktree_files(folder: Path) -> dict[str, tuple[str, Reader]]:
    """``components/`` as the pinner sees it (hashed the same way); links are followed."""
    result: dict[str, tuple[str, Reader]] = {}
    if not folder.is_dir():
        return result
    for dirpath, _dirs, names in os.walk(folder, followlinks=True):
        for name in names:
            path = os.path.join(dirpath, name)
            data = Path(path).read_bytes()
            rel = os.path.relpath(path, folder).replace(os.sep, "/")
            result[rel] = (hash_bytes(data), functools.partial(bytes, data))
    return result


def _is_binary(data: bytes) -> bool:
    if b"\0" in data:
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _text(data: bytes | None) -> str:
    return "" if data is None else data.decode("utf-8")
