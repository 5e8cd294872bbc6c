"""The pin store: a content-addressed snapshot of ``components/`` (SPEC §5).

Byte-compatible with the Rust tool: xxh3-128 hashes as 32 hex digits, objects
at ``pinned/<h[:2]>/<h[2:]>``, tree objects as the TOML text its ``toml``
serializer writes, and ``lock.toml`` as ``pin = "<hash>"``. Objects are
immutable, so pinning again writes only what is new.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

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


_BASIC_ESCAPES = {
    "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\",
}


def toml_string(value: str) -> str:
    """A TOML string the way toml_edit picks its style for one-line values.

    Plain text is a basic string; text with a backslash (and no control
    characters) becomes a literal string, which needs no escapes.
    """
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
        self._made_dirs: set[str] = set()

    def object_path(self, digest: str) -> Path:
        return self.root / digest[:2] / digest[2:]

    def put(self, data: bytes) -> str:
        """Store ``data`` unless an object with its hash exists; return the hash.

        An existing object of the wrong size (truncated by a crash, or edited)
        is replaced; comparing sizes costs no extra read on a warm re-pin.
        """
        digest = hash_bytes(data)
        path = self.object_path(digest)
        try:
            if os.stat(path).st_size == len(data):
                return digest
        except FileNotFoundError:
            pass
        prefix = digest[:2]
        if prefix not in self._made_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(prefix)
        atomic_write(path, data, durable=False)
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

    def snapshot(self, folder: Path) -> str:
        """Store every file and folder under ``folder``; return the root tree's hash."""
        entries: list[TreeEntry] = []
        try:
            scan = sorted(os.scandir(folder), key=lambda d: d.name)
        except OSError as exc:
            raise PinStoreError(f"cannot read {folder}: {exc.strerror}") from None
        for item in scan:
            path = Path(item.path)
            try:
                mode = os.stat(path).st_mode
            except OSError as exc:
                raise PinStoreError(f"cannot read {path}: {exc.strerror}") from None
            _check_name(item.name, path)
            if stat.S_ISDIR(mode):
                entries.append(TreeEntry("Tree", self.snapshot(path), item.name))
            elif stat.S_ISREG(mode):
                entries.append(TreeEntry("Blob", self.put(_read(path)), item.name))
        return self.put(tree_text(entries).encode("utf-8"))

    def read_tree(self, digest: str, *, context: str) -> dict[str, TreeEntry]:
        text = self.get(digest, context=context)
        return {e.name: e for e in parse_tree(text, digest)}


def parse_tree(data: bytes, digest: str) -> list[TreeEntry]:
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


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise PinStoreError(f"cannot read {path}: {exc.strerror}") from None


def _check_name(name: str, path: Path) -> None:
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
            f"{path}: `pin` must be a 32-digit hex hash; re-pin with `spawn migration pin`"
        )
    return pin


def write_lock(migration_dir: Path, root_hash: str) -> None:
    atomic_write(migration_dir / LOCK_FILE, f'pin = "{root_hash}"\n'.encode())


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
