"""The pin store: a content-addressed snapshot of ``components/`` (SPEC §5).

Byte-compatible with the Rust tool: xxh3-128 hashes as 32 hex digits, objects
at ``pinned/<h[:2]>/<h[2:]>``, tree objects as the TOML text its ``toml``
serializer writes, and ``lock.toml`` as ``pin = "<hash>"``. Objects are
immutable, so pinning again writes only what is new.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import xxhash

from spawn_db.config import toml_string
from spawn_db.errors import PinStoreError
from spawn_db.fsutil import (
    PRIVATE_FILE_MODE,
    atomic_write,
    discard,
    in_process_table,
    write_all,
    write_new,
)

LOCK_FILE = "lock.toml"
STREAM_CHUNK = 1 << 20
STAGING_PREFIX = ".staging-"
EntryKind = Literal["Blob", "Tree"]


def hash_bytes(data: bytes) -> str:
    """xxh3-128 of ``data`` as 32 lowercase hex digits: the name of its object."""
    return str(xxhash.xxh3_128_hexdigest(data))


@dataclass(frozen=True)
class TreeEntry:
    kind: EntryKind
    hash: str
    name: str

    @property
    def sort_key(self) -> bytes:
        """Git's order: a folder sorts as if its name ended with ``/``."""
        raw = self.name.encode("utf-8", "surrogateescape")
        return raw + b"/" if self.kind == "Tree" else raw


def tree_text(entries: list[TreeEntry]) -> str:
    """The tree object's bytes as Rust's ``toml`` serializer writes them."""
    if not entries:
        return "entries = []\n"
    blocks = [
        f'[[entries]]\nkind = "{e.kind}"\nhash = "{e.hash}"\nname = {toml_string(e.name)}\n'
        for e in sorted(entries, key=lambda e: e.sort_key)
    ]
    return "\n".join(blocks)


class PinStore:
    """The object store under ``pinned/``.

    Inside ``batch()``, objects whose fan-out folder does not exist yet are
    written straight into a private staging folder, and each finished folder
    is renamed into the store at the end: one rename per folder instead of a
    temporary file and a rename per object, and still no half-written object
    is ever visible. ``put`` may be called from several threads at once.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._existing: set[str] | None = None
        self._prefixes: set[str] = set()
        self._staging: str | None = None
        self._staged: set[str] = set()

    def object_path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def known_objects(self) -> set[str]:
        """Every object name in the store, from one listing per fan-out folder.

        Cheaper than a ``stat`` per object when re-pinning thousands of files.
        """
        if self._existing is None:
            found: set[str] = set()
            root = str(self.root)
            try:
                listing = os.listdir(root)
            except FileNotFoundError:
                listing = []
            except OSError as exc:
                raise PinStoreError(
                    f"cannot read the pin store {root}: {exc.strerror}; it must be a folder "
                    "(restore it from version control)"
                ) from None
            for prefix in listing:
                if len(prefix) != 2:
                    continue
                try:
                    found.update(prefix + name for name in os.listdir(f"{root}/{prefix}"))
                except NotADirectoryError:
                    continue
                self._prefixes.add(prefix)
            self._existing = found
        return self._existing

    def has(self, digest: str) -> bool:
        return digest in self.known_objects()

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` unless an object with its hash exists; return the hash."""
        digest = digest or hash_bytes(data)
        known = self.known_objects()
        if digest in known:
            return digest
        try:
            self._write(digest, data)
        except OSError as exc:
            raise PinStoreError(
                f"cannot write pin object {digest} into {self.root}: {exc.strerror}; make the "
                "folder writable (and check free space), then pin again"
            ) from None
        known.add(digest)
        return digest

    def put_file(self, path: str) -> str:
        """Store the file at ``path`` without holding it in memory; return its hash.

        It is copied into a temporary file while it is hashed, then renamed to its
        hash, so a large CSV under components/ costs one chunk of memory, not its
        size, and what is stored is exactly what was hashed even if the file changes
        meanwhile.
        """
        tmp = self._incoming_name()
        try:
            digest = _copy_hashing(path, tmp)
            if digest not in self.known_objects():
                self._place(tmp, digest)
        except OSError as exc:
            raise PinStoreError(
                f"cannot write a pin object for {path} into {self.root}: {exc.strerror}; make "
                "the folder writable (and check free space), then pin again"
            ) from None
        finally:
            discard(tmp)
        self.known_objects().add(digest)
        return digest

    def _incoming_name(self) -> str:
        folder = self._staging or str(self.root)
        os.makedirs(folder, exist_ok=True)
        return f"{folder}/.incoming-{os.getpid()}-{threading.get_ident()}.tmp"

    def _place(self, tmp: str, digest: str) -> None:
        """Rename a finished temporary object to its name (staged, as ``_write`` would)."""
        prefix = digest[:2]
        if self._staging is not None and prefix not in self._prefixes:
            folder = f"{self._staging}/{prefix}"
            if prefix not in self._staged:
                os.makedirs(folder, exist_ok=True)
                self._staged.add(prefix)
        else:
            folder = f"{self.root}/{prefix}"
            os.makedirs(folder, exist_ok=True)
            self._prefixes.add(prefix)
        os.replace(tmp, f"{folder}/{digest[2:]}")

    def _write(self, digest: str, data: bytes) -> None:
        prefix = digest[:2]
        if self._staging is not None and prefix not in self._prefixes:
            self._write_staged(prefix, digest, data)
            return
        folder = f"{self.root}/{prefix}"
        try:
            atomic_write(f"{folder}/{digest[2:]}", data, durable=False)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            self._prefixes.add(prefix)
            atomic_write(f"{folder}/{digest[2:]}", data, durable=False)

    def _write_staged(self, prefix: str, digest: str, data: bytes) -> None:
        folder = f"{self._staging}/{prefix}"
        if prefix not in self._staged:
            os.makedirs(folder, exist_ok=True)
            self._staged.add(prefix)
        write_new(f"{folder}/{digest[2:]}", data)  # False: another thread wrote these bytes

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Stage new fan-out folders during the block and move them in at its end.

        If the block fails, the staged objects are discarded. Staging folders
        of earlier pins that were killed are deleted first.
        """
        _remove_abandoned_staging(str(self.root))
        self.known_objects()
        self._staging = f"{self.root}/{STAGING_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
        self._staged = set()
        try:
            yield
            self._commit_staged()
        finally:
            if os.path.exists(self._staging):
                shutil.rmtree(self._staging, ignore_errors=True)
            self._staging = None

    def _commit_staged(self) -> None:
        assert self._staging is not None
        for prefix in sorted(self._staged):
            source, target = f"{self._staging}/{prefix}", f"{self.root}/{prefix}"
            try:
                _move_folder(source, target)
            except OSError as exc:
                raise PinStoreError(f"cannot move pin objects into {target}: "
                                    f"{exc.strerror}") from None
            self._prefixes.add(prefix)

    def get(self, digest: str, *, context: str) -> bytes:
        """The bytes of an object, verified against its name."""
        path = self.object_path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise PinStoreError(
                f"pin object {digest} is missing from {self.root} ({context}); restore "
                "pinned/ from version control (re-pinning would change what the migration "
                "renders)"
            ) from None
        except OSError as exc:
            raise PinStoreError(f"cannot read pin object {path} ({context}): {exc.strerror}") \
                from None
        if hash_bytes(data) != digest:
            raise PinStoreError(
                f"pin object {digest} in {self.root} is corrupt: its bytes hash to "
                f"{hash_bytes(data)} ({context}); restore it from version control"
            )
        return data

    def open(self, digest: str, *, context: str) -> BinaryIO:
        """An object opened for reading, after hashing it a block at a time (as ``get``
        checks it, without holding its bytes)."""
        path = self.object_path(digest)
        try:
            file = open(path, "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise PinStoreError(
                f"pin object {digest} is missing from {self.root} ({context}); restore "
                "pinned/ from version control (re-pinning would change what the migration "
                "renders)"
            ) from None
        except OSError as exc:
            raise PinStoreError(f"cannot read pin object {path} ({context}): {exc.strerror}") \
                from None
        hasher = xxhash.xxh3_128()
        for block in iter(lambda: file.read(1 << 20), b""):
            hasher.update(block)
        if hasher.hexdigest() != digest:
            file.close()
            raise PinStoreError(
                f"pin object {digest} in {self.root} is corrupt: its bytes hash to "
                f"{hasher.hexdigest()} ({context}); restore it from version control"
            )
        file.seek(0)
        return file

    def read_tree(self, digest: str, *, context: str) -> dict[str, TreeEntry]:
        text = self.get(digest, context=context)
        return {e.name: e for e in parse_tree(text, digest)}


_CANONICAL_ENTRY = re.compile(
    r'\[\[entries\]\]\nkind = "(Blob|Tree)"\nhash = "([0-9a-f]{32})"\n'
    r'name = "([^"\\\x00-\x1f\x7f]*)"\n'
)


def _copy_hashing(path: str, tmp: str) -> str:
    """Copy ``path`` to the new private file ``tmp`` chunk by chunk; the xxh3-128 of
    what was copied."""
    try:
        source = os.open(path, os.O_RDONLY)
    except OSError as exc:
        raise PinStoreError(f"cannot read {path}: {exc.strerror}") from None
    try:
        target = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE_MODE)
        try:
            os.fchmod(target, PRIVATE_FILE_MODE)
            hasher = xxhash.xxh3_128()
            while chunk := _read_chunk(source, path):
                hasher.update(chunk)
                write_all(target, chunk)
        finally:
            os.close(target)
    finally:
        os.close(source)
    return str(hasher.hexdigest())


def _read_chunk(fd: int, path: str) -> bytes:
    try:
        return os.read(fd, STREAM_CHUNK)
    except OSError as exc:
        raise PinStoreError(f"cannot read {path}: {exc.strerror}") from None


def parse_tree(data: bytes, digest: str) -> list[TreeEntry]:
    """Entries of a tree object; the canonical text skips the TOML parser (10-40x faster)."""
    text = data.decode("utf-8", errors="replace")
    fast = _parse_canonical_tree(text)
    return fast if fast is not None else _parse_tree_toml(data, digest)


def _parse_canonical_tree(text: str) -> list[TreeEntry] | None:
    if text == "entries = []\n":
        return []
    entries: list[TreeEntry] = []
    pos = 0
    while pos < len(text):
        if entries:
            if text[pos] != "\n":
                return None
            pos += 1
        found = _CANONICAL_ENTRY.match(text, pos)
        if found is None:
            return None
        kind: EntryKind = "Blob" if found.group(1) == "Blob" else "Tree"
        entries.append(TreeEntry(kind, found.group(2), found.group(3)))
        pos = found.end()
    return entries or None


def _parse_tree_toml(data: bytes, digest: str) -> list[TreeEntry]:
    import tomllib

    try:
        raw = tomllib.loads(data.decode("utf-8"))
        entries = [
            TreeEntry(kind=e["kind"], hash=e["hash"], name=e["name"]) for e in raw["entries"]
        ]
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        raise PinStoreError(
            f"pin object {digest} is not a valid tree object ({exc}); restore pinned/ from "
            "version control"
        ) from None
    for entry in entries:
        if entry.kind not in ("Blob", "Tree"):
            raise PinStoreError(f"pin tree {digest} has an entry of unknown kind {entry.kind!r}")
    return entries


def _move_folder(source: str, target: str) -> None:
    """Rename ``source`` to ``target``, or merge its files in if ``target`` appeared meanwhile."""
    try:
        os.rename(source, target)
    except OSError as exc:
        if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
            raise
        for name in os.listdir(source):
            os.replace(f"{source}/{name}", f"{target}/{name}")


def _remove_abandoned_staging(root: str) -> None:
    """Delete staging folders left by a pin that was killed, so they never reach git."""
    try:
        listing = os.listdir(root)
    except OSError:
        return  # known_objects reports an unreadable store
    for name in listing:
        if not name.startswith(STAGING_PREFIX):
            continue

        pid = name[len(STAGING_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and not in_process_table(int(pid)):
            shutil.rmtree(f"{root}/{name}", ignore_errors=True)


class PinnedTree:
    """Read-only view of one pinned snapshot, resolved through tree objects only."""

    def __init__(self, store: PinStore, root: str, *, context: str) -> None:
        self.store = store
        self.root = root
        self.context = context
        self._trees: dict[str, dict[str, TreeEntry]] = {}

    def _tree(self, digest: str) -> dict[str, TreeEntry]:
        tree = self._trees.get(digest)
        if tree is None:
            tree = self.store.read_tree(digest, context=self.context)
            self._trees[digest] = tree
        return tree

    def read(self, parts: list[str]) -> bytes | None:
        """The bytes of the file at ``parts`` in the snapshot, or None if absent."""
        digest = self._blob(parts)
        return None if digest is None else self.store.get(digest, context=self.context)

    def open(self, parts: list[str]) -> BinaryIO | None:
        """The file at ``parts`` opened for streaming (``copy_csv``), or None if absent;
        verified against its hash first, so a corrupt object is refused before any of it
        is used."""
        digest = self._blob(parts)
        return None if digest is None else self.store.open(digest, context=self.context)

    def _blob(self, parts: list[str]) -> str | None:
        digest = self.root
        for i, part in enumerate(parts):
            entry = self._tree(digest).get(part)
            if entry is None:
                return None
            last = i == len(parts) - 1
            if last != (entry.kind == "Blob"):
                return None
            digest = entry.hash
        return digest


# The file write_lock writes, parsed without tomllib (which costs more than the rest of
# reading a lock file: apply reads one per migration); anything else goes through tomllib.
_CANONICAL_LOCK = re.compile(r'pin = "([0-9a-f]{32})"\n')


def read_lock(migration_dir: Path) -> str | None:
    """The pinned root hash from ``lock.toml``, or None when the migration is unpinned."""
    path = os.path.join(migration_dir, LOCK_FILE)
    try:
        with open(path, encoding="utf-8") as file:
            text = file.read()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise PinStoreError(f"cannot read {path}: {exc}") from None
    canonical = _CANONICAL_LOCK.fullmatch(text)
    if canonical is not None:
        return canonical.group(1)
    import tomllib

    try:
        pin = tomllib.loads(text).get("pin")
    except tomllib.TOMLDecodeError as exc:
        raise PinStoreError(f"{path}: invalid TOML ({exc}); re-pin the migration") from None
    if not isinstance(pin, str) or len(pin) != 32 or not _is_hex(pin):
        raise PinStoreError(
            f"{path}: `pin` must be a 32-digit hex hash; restore the file from version "
            "control (or, for a migration never applied, re-pin with `spawn migration pin`)"
        )
    return pin


def write_lock(migration_dir: Path, root_hash: str) -> None:
    path = migration_dir / LOCK_FILE
    try:
        atomic_write(path, f'pin = "{root_hash}"\n'.encode())
    except OSError as exc:
        raise PinStoreError(f"cannot write {path}: {exc.strerror}; the pin was not "
                            "recorded (fix the path and pin again)") from None


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
