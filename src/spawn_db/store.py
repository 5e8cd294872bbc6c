"""The pin store: a content-addressed snapshot of ``components/`` (SPEC §5).

Byte-compatible with the Rust tool: xxh3-128 hashes as 32 hex digits, objects
at ``pinned/<h[:2]>/<h[2:]>``, tree objects as the TOML text its ``toml``
serializer writes, and ``lock.toml`` as ``pin = "<hash>"``. Objects are
immutable, so pinning again writes only what is new.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import xxhash

from spawn_db.errors import PinStoreError
from spawn_db.fsutil import atomic_write

LOCK_FILE = "lock.toml"
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


_PLAIN_NAME = re.compile(r'[^"\\\x00-\x1f\x7f]*')
_BASIC_ESCAPES = {
    "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\",
}


def toml_string(value: str) -> str:
    """A TOML string the way toml_edit picks its style for one-line values.

    Plain text is a basic string; text with a backslash (and no control
    characters) becomes a literal string, which needs no escapes.
    """
    if _PLAIN_NAME.fullmatch(value):
        return f'"{value}"'
    has_control = any((c < " " and c != "\t") or c == "\x7f" for c in value)
    if "\\" in value and not has_control:
        if "'" not in value:
            return f"'{value}'"
        if "'''" not in value and not value.endswith("'"):
            return f"'''{value}'''"
    out = []
    for ch in value:
        if ch in _BASIC_ESCAPES:
            out.append(_BASIC_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


class PinStore:
    """The object store under ``pinned/``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._existing: set[str] | None = None

    def object_path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def _known_objects(self) -> set[str]:
        """Every object name in the store, from one listing per fan-out folder.

        Cheaper than a ``stat`` per object when re-pinning thousands of files.
        """
        if self._existing is None:
            found: set[str] = set()
            root = str(self.root)
            try:
                prefixes = [p for p in os.listdir(root) if len(p) == 2]
            except FileNotFoundError:
                prefixes = []
            for prefix in prefixes:
                try:
                    found.update(prefix + name for name in os.listdir(f"{root}/{prefix}"))
                except NotADirectoryError:
                    continue
            self._existing = found
        return self._existing

    def has(self, digest: str) -> bool:
        return digest in self._known_objects()

    def put(self, data: bytes, digest: str | None = None) -> str:
        """Store ``data`` unless an object with its hash exists; return the hash."""
        digest = digest or hash_bytes(data)
        known = self._known_objects()
        if digest in known:
            return digest
        folder = f"{self.root}/{digest[:2]}"
        try:
            atomic_write(f"{folder}/{digest[2:]}", data, durable=False)
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
            atomic_write(f"{folder}/{digest[2:]}", data, durable=False)
        known.add(digest)
        return digest

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

    def snapshot(self, folder: Path, cache: StatCache | None = None) -> str:
        """Store every file and folder under ``folder``; return the root tree's hash.

        With a ``cache``, files whose stat data did not change since the last
        pin are not read again (as git's index does), provided their object exists.
        """
        return self._snapshot(str(folder), "", cache or StatCache.disabled())

    def _snapshot(self, folder: str, rel: str, cache: StatCache) -> str:
        entries: list[TreeEntry] = []
        try:
            scan = list(os.scandir(folder))
        except OSError as exc:
            raise PinStoreError(f"cannot read {folder}: {exc.strerror}") from None
        for item in scan:
            _check_name(item.name, item.path)
            try:
                is_dir = item.is_dir()
                is_file = not is_dir and item.is_file()
            except OSError as exc:
                raise PinStoreError(f"cannot read {item.path}: {exc.strerror}") from None
            if is_dir:
                digest = self._snapshot(item.path, f"{rel}{item.name}/", cache)
                entries.append(TreeEntry("Tree", digest, item.name))
            elif is_file:
                entries.append(TreeEntry("Blob", self._blob(item, rel + item.name, cache),
                                         item.name))
        return self.put(tree_text(entries).encode("utf-8"))

    def _blob(self, item: os.DirEntry[str], rel: str, cache: StatCache) -> str:
        try:
            info = item.stat()
        except OSError as exc:
            raise PinStoreError(f"cannot read {item.path}: {exc.strerror}") from None
        cached = cache.lookup(rel, info)
        if cached is not None and cached in self._known_objects():
            return cached
        data = _read(item.path)
        digest = self.put(data)
        cache.record(rel, info, digest)
        return digest

    def read_tree(self, digest: str, *, context: str) -> dict[str, TreeEntry]:
        text = self.get(digest, context=context)
        return {e.name: e for e in parse_tree(text, digest)}


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
            self.path.parent.mkdir(parents=True, exist_ok=True)
            payload = json.dumps({"format": self.FORMAT, "entries": self.new})
            atomic_write(self.path, payload.encode(), durable=False)
        except OSError:
            return


_CANONICAL_ENTRY = re.compile(
    r'\[\[entries\]\]\nkind = "(Blob|Tree)"\nhash = "([0-9a-f]{32})"\n'
    r'name = "([^"\\\x00-\x1f\x7f]*)"\n'
)


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


def _read(path: str) -> bytes:
    try:
        with open(path, "rb", buffering=0) as f:
            return f.readall()
    except OSError as exc:
        raise PinStoreError(f"cannot read {path}: {exc.strerror}") from None


def _check_name(name: str, path: str) -> None:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise PinStoreError(
            f"cannot pin {path!s}: its name is not valid UTF-8; rename it"
        ) from None


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
        digest = self.root
        for i, part in enumerate(parts):
            entry = self._tree(digest).get(part)
            if entry is None:
                return None
            last = i == len(parts) - 1
            if last != (entry.kind == "Blob"):
                return None
            digest = entry.hash
        return self.store.get(digest, context=self.context)


def read_lock(migration_dir: Path) -> str | None:
    """The pinned root hash from ``lock.toml``, or None when the migration is unpinned."""
    import tomllib

    path = migration_dir / LOCK_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise PinStoreError(f"cannot read {path}: {exc}") from None
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
    atomic_write(migration_dir / LOCK_FILE, f'pin = "{root_hash}"\n'.encode())


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
