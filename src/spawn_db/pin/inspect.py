"""Looking inside the pin store: validate, list files, find unused objects, write out.

Everything here reads objects through their names and checks each against its
hash, so a damaged store is reported, never trusted. A snapshot is walked
once per run however many migrations share it: objects already seen are not
read again, which keeps validating a store close to the cost of reading and
hashing each of its files once.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from spawn_db.errors import PinStoreError
from spawn_db.fsutil import atomic_write, make_private_dir
from spawn_db.pin.store import (
    STAGING_PREFIX,
    PinStore,
    TreeEntry,
    hash_bytes,
    parse_tree,
    tree_text,
)


@dataclass(frozen=True)
class BadObject:
    """An object a snapshot needs that is missing, corrupt or not a canonical tree."""

    digest: str
    problem: str
    users: tuple[str, ...]


@dataclass
class Validation:
    """What ``validate`` found: the reachable objects, and the bad ones with their users."""

    reachable: set[str] = field(default_factory=set)
    bad: dict[str, str] = field(default_factory=dict)
    users: dict[str, set[str]] = field(default_factory=dict)
    checked_unreachable: int = 0

    def bad_objects(self) -> list[BadObject]:
        return [BadObject(d, p, tuple(sorted(self.users.get(d, ()))))
                for d, p in sorted(self.bad.items())]


def validate(store: PinStore, roots: Mapping[str, str], *, all_objects: bool = False
             ) -> Validation:
    """Check every object reachable from ``roots`` (user name -> root hash): present,
    hashing to its name, trees in the exact format SPEC §5 gives (the bytes the Rust
    tool's serializer writes). ``all_objects`` also rehashes the unreachable ones.

    Each object is read once, however many snapshots share it; only when something
    is bad are the (already parsed) trees walked again to name who uses it.
    """
    found = Validation()
    trees: dict[str, list[TreeEntry]] = {}
    for root in sorted(set(roots.values())):
        _check_snapshot(store, root, found, trees)
    if found.bad:
        for user, root in roots.items():
            for digest in _reach(root, trees):
                if digest in found.bad:
                    found.users.setdefault(digest, set()).add(user)
    if all_objects:
        for digest in sorted(store.known_objects() - found.reachable):
            if not _is_object_name(digest):
                continue
            problem = _object_problem(store, digest)
            found.checked_unreachable += 1
            if problem is not None:
                found.bad[digest] = problem
    return found


def _check_snapshot(store: PinStore, root: str, found: Validation,
                    trees: dict[str, list[TreeEntry]]) -> None:
    """Breadth first over the snapshot, each object read once. One thread: objects are
    small files, and threads contended for the GIL more than they overlapped reads
    (measured: 0.13 s with 2 or 4 threads, 0.11 s with one, for 10,000 objects)."""
    frontier: list[tuple[str, str]] = [(root, "Tree")]
    while frontier:
        following: list[tuple[str, str]] = []
        for digest, kind in frontier:
            if digest in found.reachable:
                continue
            found.reachable.add(digest)
            data = _read(store, digest)
            if isinstance(data, str):
                found.bad[digest] = data
                continue
            if kind == "Blob":
                continue
            entries, problem = _tree_of(data, digest)
            trees[digest] = entries
            if problem is not None:
                found.bad[digest] = problem
            following.extend((e.hash, e.kind) for e in entries)
        frontier = following


def _reach(root: str, trees: Mapping[str, list[TreeEntry]]) -> set[str]:
    seen = {root}
    stack = [root]
    while stack:
        for entry in trees.get(stack.pop(), ()):
            if entry.hash not in seen:
                seen.add(entry.hash)
                if entry.kind == "Tree":
                    stack.append(entry.hash)
    return seen


def _read(store: PinStore, digest: str) -> bytes | str:
    """The object's bytes, or what is wrong with it."""
    path = f"{store.root}/{digest[:2]}/{digest[2:]}"
    try:
        data = read_file(path)
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    actual = hash_bytes(data)
    if actual != digest:
        return f"corrupt (its bytes hash to {actual})"
    return data


def _tree_of(data: bytes, digest: str) -> tuple[list[TreeEntry], str | None]:
    try:
        entries = parse_tree(data, digest)
    except PinStoreError:
        return [], "not a valid tree object"
    if tree_text(entries).encode("utf-8", "surrogateescape") != data:
        return entries, "a tree object not in the canonical format (SPEC §5)"
    return entries, None


def _object_problem(store: PinStore, digest: str) -> str | None:
    data = _read(store, digest)
    return data if isinstance(data, str) else None


READ_CHUNK = 1 << 16


def read_file(path: str) -> bytes:
    """The whole file with the fewest system calls: most objects fit one ``read``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = [os.read(fd, READ_CHUNK)]
        while len(chunks[-1]) == READ_CHUNK:  # a regular file reads short only at its end
            chunks.append(os.read(fd, READ_CHUNK))
        return b"".join(chunks)
    finally:
        os.close(fd)


# -- files of a snapshot -------------------------------------------------------------------


def files_of(store: PinStore, root: str, *, context: str) -> dict[str, str]:
    """Every file of the snapshot ``root`` as relative path -> blob hash (trees verified)."""
    result: dict[str, str] = {}
    stack = [(root, "")]
    while stack:
        digest, prefix = stack.pop()
        for entry in store.read_tree(digest, context=context).values():
            path = f"{prefix}{entry.name}"
            if entry.kind == "Tree":
                stack.append((entry.hash, path + "/"))
            else:
                result[path] = entry.hash
    return dict(sorted(result.items()))


def folders_of(store: PinStore, root: str, *, context: str) -> list[str]:
    """Every folder of the snapshot (empty ones too), as relative paths."""
    result: list[str] = []
    stack = [(root, "")]
    while stack:
        digest, prefix = stack.pop()
        for entry in store.read_tree(digest, context=context).values():
            if entry.kind == "Tree":
                result.append(prefix + entry.name)
                stack.append((entry.hash, prefix + entry.name + "/"))
    return sorted(result)


def write_out(store: PinStore, root: str, target: str, *, context: str) -> int:
    """Write the snapshot ``root`` as files under ``target`` (which must not exist or be
    empty); return the number of files. Files are private (they may hold SQL)."""
    make_private_dir(target)
    for folder in folders_of(store, root, context=context):
        make_private_dir(os.path.join(target, folder))
    files = files_of(store, root, context=context)
    for path, digest in files.items():
        atomic_write(os.path.join(target, path), store.get(digest, context=context),
                     durable=False)
    return len(files)


# -- unused objects ------------------------------------------------------------------------


@dataclass(frozen=True)
class Unused:
    digest: str
    size: int


def unused_objects(store: PinStore, reachable: Iterable[str]) -> list[Unused]:
    keep = set(reachable)
    found = []
    for digest in sorted(store.known_objects() - keep):
        if not _is_object_name(digest):
            continue
        try:
            size = os.stat(f"{store.root}/{digest[:2]}/{digest[2:]}").st_size
        except FileNotFoundError:
            continue
        found.append(Unused(digest, size))
    return found


def _is_object_name(digest: str) -> bool:
    return len(digest) == 32 and all(c in "0123456789abcdef" for c in digest)


def staging_leftovers(store: PinStore) -> list[str]:
    """Staging folders in the store (pins that were killed, or one running now)."""
    try:
        return sorted(n for n in os.listdir(store.root) if n.startswith(STAGING_PREFIX))
    except FileNotFoundError:
        return []


def delete_objects(store: PinStore, objects: Iterable[Unused]) -> int:
    """Remove each object (one ``unlink`` each: atomic per object), then fan-out folders
    left empty; return the bytes freed."""
    freed = 0
    prefixes = set()
    for item in objects:
        try:
            os.unlink(f"{store.root}/{item.digest[:2]}/{item.digest[2:]}")
        except FileNotFoundError:
            continue
        freed += item.size
        prefixes.add(item.digest[:2])
    for prefix in prefixes:
        with contextlib.suppress(OSError):  # not empty: other objects remain
            os.rmdir(f"{store.root}/{prefix}")
    return freed


def delete_staging(store: PinStore, names: Iterable[str]) -> None:
    for name in names:
        shutil.rmtree(f"{store.root}/{name}", ignore_errors=True)


def walk_hashes(store: PinStore, root: str, *, context: str) -> Iterator[str]:
    """Every object of a snapshot (trees and blobs), once each."""
    seen: set[str] = set()
    stack = [root]
    while stack:
        digest = stack.pop()
        if digest in seen:
            continue
        seen.add(digest)
        yield digest
        for entry in store.read_tree(digest, context=context).values():
            if entry.kind == "Tree":
                stack.append(entry.hash)
            elif entry.hash not in seen:
                seen.add(entry.hash)
                yield entry.hash
