"""A remote spawn folder mirrored into ``.spawn/remote/``: pulled before a command reads
it, and what the command wrote (pins, new migrations, expected files) pushed back.

Every part of spawn reads the mirror as it reads a local folder, so a pinned build from
the bucket is the same bytes as one from a checkout. Only what changed moves: a pull
compares each object's size and ETag (or modification time) with the manifest of the
last pull, a push compares each local file's content hash with it. Credentials come from
the storage library's usual places (for S3: ``AWS_*`` variables, ``~/.aws``), never from
``spawn.toml``.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from spawn_db.errors import ConfigError
from spawn_db.fsutil import atomic_write, atomic_write_text

MANIFEST = ".spawn-remote-manifest.json"


@dataclass
class Mirror:
    """A remote folder and its local copy."""

    url: str
    local: Path

    def _fs(self) -> tuple[Any, str]:
        try:
            import fsspec
        except ImportError:
            raise ConfigError(
                f"spawn_folder {self.url} is remote, and reading it needs fsspec; install "
                "spawn-db[s3] (or fsspec with the driver for this scheme)") from None
        try:
            fs, root = fsspec.core.url_to_fs(self.url)
        except (ImportError, ValueError) as exc:
            raise ConfigError(f"spawn_folder {self.url}: {exc}; for s3:// install "
                              "spawn-db[s3]") from None
        return fs, root.rstrip("/")

    def pull(self) -> int:
        """Bring the mirror up to date; the number of files downloaded."""
        fs, root = self._fs()
        try:
            listing = fs.find(root, detail=True)
        except Exception as exc:  # the driver's own errors: network, credentials, bucket
            raise self._unreachable("list", exc) from None
        manifest = self._manifest()
        seen: dict[str, dict[str, Any]] = {}
        fetched = 0
        for key, info in listing.items():
            if info.get("type") == "directory":
                continue
            relative = key[len(root):].lstrip("/")
            if not relative or relative == MANIFEST:
                continue
            stamp = _stamp(info)
            entry = manifest.get(relative)
            target = self._path(relative)
            if entry is None or entry.get("stamp") != stamp or not target.is_file():
                try:
                    data = fs.cat_file(key)
                except Exception as exc:
                    raise self._unreachable(f"read {relative} from", exc) from None
                target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                atomic_write(target, data, durable=False)
                entry = {"stamp": stamp, "hash": _hash(data)}
                fetched += 1
            seen[relative] = entry
        for relative in set(manifest) - set(seen):
            self._path(relative).unlink(missing_ok=True)
        self._save(seen)
        return fetched

    def push(self) -> int:
        """Upload the files the command wrote or changed, remove those it deleted; the
        number of changes."""
        manifest = self._manifest()
        local = {str(p.relative_to(self.local)): p for p in self.local.rglob("*")
                 if p.is_file() and p.name != MANIFEST}
        changed = {}
        for relative, path in local.items():
            data = path.read_bytes()
            digest = _hash(data)
            if manifest.get(relative, {}).get("hash") != digest:
                changed[relative] = (data, digest)
        removed = sorted(set(manifest) - set(local))
        if not changed and not removed:
            return 0
        fs, root = self._fs()
        for relative, (data, digest) in sorted(changed.items()):
            try:
                fs.pipe_file(f"{root}/{relative}", data)
                info = fs.info(f"{root}/{relative}")
            except Exception as exc:
                raise self._unreachable(f"write {relative} to", exc) from None
            manifest[relative] = {"stamp": _stamp(info), "hash": digest}
        for relative in removed:
            try:
                fs.rm_file(f"{root}/{relative}")
            except FileNotFoundError:
                pass
            except Exception as exc:
                raise self._unreachable(f"delete {relative} from", exc) from None
            manifest.pop(relative, None)
        self._save(manifest)
        return len(changed) + len(removed)

    def _path(self, relative: str) -> Path:
        path = (self.local / relative).resolve()
        if not path.is_relative_to(self.local.resolve()):
            raise ConfigError(f"spawn_folder {self.url} holds an object named {relative!r}, "
                              "which would leave the folder; remove it from the bucket")
        return path

    def _manifest(self) -> dict[str, dict[str, Any]]:
        try:
            loaded = json.loads((self.local / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return loaded if isinstance(loaded, dict) else {}

    def _save(self, manifest: dict[str, dict[str, Any]]) -> None:
        self.local.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.local, 0o700)
        atomic_write_text(self.local / MANIFEST, json.dumps(manifest, sort_keys=True),
                          durable=False)

    def _unreachable(self, what: str, exc: Exception) -> ConfigError:
        return ConfigError(f"cannot {what} spawn_folder {self.url}: {type(exc).__name__}: "
                           f"{exc}; check the URL and the storage credentials (for S3: the "
                           "AWS_* variables or ~/.aws)")


def _stamp(info: dict[str, Any]) -> str:
    """What says an object changed without reading it: its size and ETag (or mtime)."""
    tag = info.get("ETag") or info.get("etag") or info.get("mtime") or info.get(
        "LastModified") or info.get("last_modified") or ""
    return f"{info.get('size')}:{tag}"


def _hash(data: bytes) -> str:
    return xxhash.xxh3_128_hexdigest(data)
