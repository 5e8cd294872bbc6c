"""Pinning: snapshot ``components/`` into the pin store (SPEC §5).

Three passes: walk the tree (one ``stat`` per file, answered from the stat
cache when nothing changed), read, hash and store the files the cache could
not vouch for (on several threads when there are many, since reading and
creating files is kernel work that runs outside the GIL), then write the
tree objects bottom-up. New objects go through ``PinStore.batch()``, so a
pin that fails leaves no half-written object behind.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spawn_db.errors import OutsideLink, PinStoreError
from spawn_db.fsutil import atomic_write, is_inside, make_private_dir, real_folder
from spawn_db.pin.store import PinStore, TreeEntry, hash_bytes, tree_text

PARALLEL_MIN_FILES = 256
MAX_WORKERS = 4
# Files this large are copied into the store chunk by chunk (PinStore.put_file) instead of
# being read whole: a data file under components/ must not cost its size in memory.
STREAM_MIN_SIZE = 8 << 20
RACY_NS = 2_000_000_000


class StatCache:
    """File stat data → content hash, remembered between pins (like git's index).

    A file is trusted only if size, mtime, ctime and inode all match, and files
    changed within the last two seconds of the pin are never recorded, so an
    edit racing the pin is re-read next time.
    """

    FORMAT = 1

    def __init__(
        self, path: Path | None, entries: dict[str, list[Any]], racy_ns: int = RACY_NS
    ) -> None:
        self.path = path
        self.racy_ns = racy_ns
        self.old = entries
        self.new: dict[str, list[Any]] = {}
        self.started_ns = time.time_ns()

    @classmethod
    def disabled(cls) -> StatCache:
        return cls(None, {})

    @classmethod
    def load(cls, path: Path, racy_ns: int = RACY_NS) -> StatCache:
        try:
            raw = json.loads(path.read_bytes())
            entries = raw["entries"] if raw.get("format") == cls.FORMAT else {}
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            entries = {}
        return cls(path, entries if isinstance(entries, dict) else {}, racy_ns)

    @staticmethod
    def _key(info: os.stat_result) -> list[Any]:
        return [info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino]

    def lookup(self, rel: str, info: os.stat_result) -> str | None:
        old = self.old.get(rel)
        if (
            old is None
            or old[0] != info.st_size
            or old[1] != info.st_mtime_ns
            or old[2] != info.st_ctime_ns
            or old[3] != info.st_ino
        ):
            return None
        self.new[rel] = old
        return str(old[4])

    def record(self, rel: str, info: os.stat_result, digest: str) -> None:
        if self.path is None:
            return
        if max(info.st_mtime_ns, info.st_ctime_ns) >= self.started_ns - self.racy_ns:
            return
        self.new[rel] = [*self._key(info), digest]

    def save(self) -> None:
        """Best effort: a cache that cannot be written only makes the next pin slower."""
        if self.path is None or self.new == self.old:
            return
        try:
            make_private_dir(self.path.parent)
            payload = json.dumps({"format": self.FORMAT, "entries": self.new})
            atomic_write(self.path, payload.encode(), durable=False)
        except OSError:
            return


@dataclass
class _File:
    path: str
    rel: str
    info: os.stat_result
    digest: str = ""


@dataclass
class _Folder:
    """One walked folder; a file is its hash already when the stat cache vouched for it."""

    files: dict[str, _File | str] = field(default_factory=dict)
    folders: dict[str, _Folder] = field(default_factory=dict)


def snapshot(
    store: PinStore, folder: Path, cache: StatCache | None = None, *, workers: int | None = None
) -> str:
    """Store every file and folder under ``folder``; return the root tree's hash.

    With a ``cache``, files whose stat data did not change since the last pin
    are not read again (as git's index does), provided their object exists.
    """
    cache = cache or StatCache.disabled()
    unread: list[_File] = []
    real = _real_root(str(folder))
    root = _walk(store, str(folder), "", cache, unread, _Confine(real, (real,)))
    with store.batch():
        _store_files(store, unread, cache, _worker_count(workers, len(unread)))
        return _store_trees(store, root)


@dataclass(frozen=True)
class _Confine:
    """The resolved components folder, and the resolved folders being walked (for cycles)."""

    root: str
    stack: tuple[str, ...]


def _walk(
    store: PinStore, folder: str, rel: str, cache: StatCache, unread: list[_File],
    confine: _Confine,
) -> _Folder:
    """The tree under ``folder``, with every file the cache vouches for already hashed.

    Listing through a folder descriptor makes each ``stat`` a lookup of one
    name, not of the whole path: a third of a warm re-pin's time. A symbolic
    link is followed only when it resolves inside components/ (see ``_follow``).
    """
    node = _Folder()
    known = store.known_objects()
    try:
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as exc:
        raise PinStoreError(f"cannot read {folder}: {exc.strerror}") from None
    try:
        for item in _listing(fd, folder):
            name = item.name
            path = f"{folder}/{name}"
            _check_name(name, path)
            try:
                real = _follow(path, rel + name, confine) if item.is_symlink() else None
                if item.is_dir():
                    inner = _inner(confine, real or f"{confine.stack[-1]}/{name}", rel + name)
                    node.folders[name] = _walk(store, real or path, f"{rel}{name}/", cache,
                                               unread, inner)
                    continue
                if not item.is_file():
                    _check_dangling(real, rel + name)
                    continue
                info = item.stat()
            except OSError as exc:
                raise PinStoreError(f"cannot read {path}: {exc.strerror}") from None
            cached = cache.lookup(rel + name, info)
            if cached is not None and cached in known:
                node.files[name] = cached
            else:
                file = _File(real or path, rel + name, info)
                unread.append(file)
                node.files[name] = file
    finally:
        os.close(fd)
    return node


def _real_root(folder: str) -> str:
    """The resolved components folder; one that is a link must stay inside its parent."""
    real, escaped = real_folder(folder)
    if escaped is not None:
        raise OutsideLink(
            f"cannot pin {os.path.abspath(folder)}: it is a symbolic link to {real}, outside "
            f"{escaped}; spawn pins components only from inside the project (move the files "
            "into it)"
        )
    return real


def _follow(path: str, rel: str, confine: _Confine) -> str:
    """The resolved target of the link ``path``, refused when it leaves components/.

    The Rust tool's format has only files and folders (SPEC §5), so a link
    inside components/ is stored as a copy of what it points to.
    """
    real = os.path.realpath(path)
    if not is_inside(real, confine.root):
        raise OutsideLink(
            f"cannot pin components/{rel}: it is a symbolic link to {real}, outside "
            "components/; replace it with a copy of the file, or point it inside components/"
        )
    return real


def _check_dangling(real: str | None, rel: str) -> None:
    """A link whose target is missing would vanish from the pin silently: refuse it."""
    if real is not None and not os.path.lexists(real):
        raise PinStoreError(
            f"cannot pin components/{rel}: it is a symbolic link to {real}, which does not "
            "exist; remove the link or restore its target"
        )


def _inner(confine: _Confine, real: str, rel: str) -> _Confine:
    """The confinement for a sub-folder; a link back to a folder being walked is a cycle."""
    for walked in confine.stack:
        if is_inside(walked, real):
            raise OutsideLink(
                f"cannot pin components/{rel}: it is a symbolic link to {real}, a folder "
                "that contains the link, so the snapshot would never end; remove the link"
            )
    return _Confine(confine.root, (*confine.stack, real))


def _listing(fd: int, folder: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(fd) as scan:
            return list(scan)
    except OSError as exc:
        raise PinStoreError(f"cannot read {folder}: {exc.strerror}") from None


def _worker_count(requested: int | None, files: int) -> int:
    if requested is not None:
        return max(1, requested)
    if files < PARALLEL_MIN_FILES:
        return 1
    return max(1, min(MAX_WORKERS, usable_cores()))


def usable_cores() -> int:
    """Cores this process may run on (a container's limit, not the host's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS has no affinity call
        return os.cpu_count() or 1


def _store_files(store: PinStore, files: list[_File], cache: StatCache, workers: int) -> None:
    if workers == 1:
        for file in files:
            _store_file(store, file, cache)
        return
    stop = threading.Event()
    failures: list[tuple[int, BaseException]] = []

    def work(offset: int) -> None:
        for index in range(offset, len(files), workers):
            if stop.is_set():
                return
            try:
                _store_file(store, files[index], cache)
            except BaseException as exc:  # handed to the calling thread below
                failures.append((index, exc))
                stop.set()
                return

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(workers)]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if failures:
        raise min(failures, key=lambda failure: failure[0])[1]


def _store_file(store: PinStore, file: _File, cache: StatCache) -> None:
    if file.info.st_size >= STREAM_MIN_SIZE:
        file.digest = store.put_file(file.path)
    else:
        data = _read(file.path, file.info.st_size)
        file.digest = store.put(data, hash_bytes(data))
    cache.record(file.rel, file.info, file.digest)


def _store_trees(store: PinStore, node: _Folder) -> str:
    entries = [TreeEntry("Blob", file if isinstance(file, str) else file.digest, name)
               for name, file in node.files.items()]
    entries += [TreeEntry("Tree", _store_trees(store, child), name)
                for name, child in node.folders.items()]
    return store.put(tree_text(entries).encode("utf-8"))


def _read(path: str, size: int) -> bytes:
    """The whole file in one ``read`` when its size is as the walk saw it.

    A short read of a regular file means end of file; a file that grew since
    the walk is read on to its end.
    """
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise PinStoreError(f"cannot read {path}: {exc.strerror}") from None
    try:
        data = os.read(fd, size + 1)
        if len(data) <= size:
            return data
        chunks = [data]
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise PinStoreError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _check_name(name: str, path: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise PinStoreError(
            f"cannot pin {path!s}: its name is not valid UTF-8; rename it"
        ) from None
