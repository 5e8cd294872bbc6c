"""Which files a render reads, so that a save re-renders only what depends on the file."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import xxhash

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.render.template import ComponentSource


@dataclass
class RecordingSource:
    """A ``components/`` source that notes every path asked for, found or not: a component
    that is missing today and created later must trigger the render that wanted it."""

    inner: ComponentSource
    root: Path
    asked: set[Path] = field(default_factory=set)

    @property
    def description(self) -> str:
        return self.inner.description

    def read(self, parts: list[str]) -> bytes | None:
        self.asked.add(self.root.joinpath(*parts))
        return self.inner.read(parts)

    def open(self, parts: list[str]) -> IO[bytes] | None:
        """A stream of the file (``copy_csv`` streams large files), recorded like a read."""
        from spawn_db.render.data import open_component

        self.asked.add(self.root.joinpath(*parts))
        return open_component(self.inner, parts)


@dataclass(frozen=True)
class RecordedRender:
    """A working-tree render: its xxh3-128 checksum (hex) and every file it read."""

    checksum: str
    reads: frozenset[Path]


def render_migration_script(config: Config, name: str, script: str,
                            variables: Any) -> RecordedRender:
    """``name``'s ``script`` rendered from the working tree, as apply would with --no-pin
    (same bytes, so the checksum compares with the history's)."""
    from spawn_db.migrate.migration import compile_migration, migration_source
    from spawn_db.render.template import template_context

    source = migration_source(config, name, pinned=False, script=script)
    recording = RecordingSource(source.components, config.components_dir)
    source = dataclasses.replace(source, components=recording)
    renderer = compile_migration(config, source)
    digest = xxhash.xxh3_128()
    for chunk in renderer.generate(template_context(config, variables)):
        digest.update(chunk.encode("utf-8", "surrogatepass"))  # apply reports bad text
    return RecordedRender(digest.hexdigest(), frozenset(recording.asked))


def content_digest(path: Path) -> bytes | None:
    """What a file holds, in 16 bytes (None when it is gone): a save that wrote the same
    bytes, or a bare ``touch``, must not re-run anything."""
    try:
        return xxhash.xxh3_128_digest(path.read_bytes())
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
