"""Which spawn file an editor buffer is, and the components it renders with.

An editor shows unsaved text; a diagnostic computed from the file on disk would
point at lines the user already changed. ``OverlaySource`` is the working
tree's ``components/`` with the open buffers laid over it, so an include of a
component the user is editing renders what they see.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from spawn_db.config import Config, Overrides, find_project_config, load_config
from spawn_db.fsutil import is_inside
from spawn_db.render.template import ComponentSource, PinnedSource, WorkingTreeSource

MIGRATION_SCRIPTS = ("up.sql", "down.sql", "verify.sql")


@dataclass(frozen=True)
class OverlaySource:
    """``components/`` of the working tree, where a file open in the editor reads as its
    buffer (keyed by absolute path) instead of its saved bytes."""

    disk: WorkingTreeSource
    buffers: Mapping[str, str]
    reads: set[str] = field(default_factory=set)  # absolute paths, for the server

    @property
    def description(self) -> str:
        return self.disk.description

    def read(self, parts: list[str]) -> bytes | None:
        """The buffer of an open component, else the file (with the disk source's checks)."""
        path = str(Path(self.disk.root, *parts).absolute())
        self.reads.add(path)
        text = self.buffers.get(path)
        if text is not None:
            return text.encode("utf-8")
        return self.disk.read(parts)


@dataclass(frozen=True)
class Document:
    """A file spawn renders: its project, its template name (as the renderer names it,
    ``spawn/migrations/x/up.sql`` or ``components/a.sql``) and where its components
    come from; ``origin`` says which (working tree or a pin), for the preview."""

    config: Config
    path: Path
    display: str
    components: ComponentSource
    origin: str


def config_for(path: Path) -> Config | None:
    """The project of the nearest ``spawn.toml`` above ``path``; None outside a project."""
    found = find_project_config(path.parent)
    if found is None:
        return None
    return load_config(Overrides(config_file=str(found)), cwd=found.parent)


def document_for(path: Path, buffers: Mapping[str, str]) -> Document | None:
    """The spawn document at ``path`` (absolute), or None for a file spawn does not render
    (a ``migration.toml``, a file outside a project); raises ``ConfigError`` for a project
    whose ``spawn.toml`` is broken."""
    config = config_for(path)
    if config is None:
        return None
    working = OverlaySource(WorkingTreeSource(config.components_dir), buffers)
    components_dir = config.components_dir.absolute()
    if is_inside(str(path), str(components_dir)) and path != components_dir:
        display = "components/" + path.relative_to(components_dir).as_posix()
        return Document(config, path, display, working, "working tree components/")
    display = _display(config, path)
    folder = path.parent
    if folder.parent == config.migrations_dir.absolute() and path.name in MIGRATION_SCRIPTS:
        return _migration_document(config, path, display, working)
    if folder.parent == config.tests_dir.absolute() and path.name == "test.sql":
        return Document(config, path, display, working, "working tree components/")
    return None


def _migration_document(config: Config, path: Path, display: str,
                        working: OverlaySource) -> Document:
    """A migration script renders with its pin's components when it has a ``lock.toml``,
    as apply renders it."""
    from spawn_db.pin.store import PinnedTree, PinStore, read_lock

    folder = path.parent
    pin = read_lock(folder)
    if pin is None:
        return Document(config, path, display, working, "working tree components/")
    tree = PinnedTree(PinStore(config.pinned_dir), pin, context=f"migration {folder.name}")
    source = PinnedSource(tree, f"the pin {pin} of migration {folder.name}")
    return Document(config, path, display, source, f"pinned components (pin {pin[:12]})")


def _display(config: Config, path: Path) -> str:
    try:
        return path.relative_to(config.project_dir.absolute()).as_posix()
    except ValueError:
        return str(path)
