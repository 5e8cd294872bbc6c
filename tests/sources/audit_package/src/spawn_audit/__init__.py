"""An audit module as a spawn migration source: spawn.toml names it with
``[[sources]] name = "audit"  package = "spawn_audit"``."""

from pathlib import Path


def spawn_folder() -> Path:
    """The spawn folder this package ships (components/, migrations/, pinned/)."""
    return Path(__file__).resolve().parent / "spawn"
