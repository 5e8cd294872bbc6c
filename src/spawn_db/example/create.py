"""``spawn init --example``: a small, realistic project that shows every concept.

The files ship as package data. Pins are made here, by the same code as
``spawn migration pin``, replaying history: the first two migrations are
pinned while ``full_name.sql`` still has its first version, then the
component is edited in place and the third migration is pinned. The tests'
``expected`` files ship too; the test suite re-runs them on a fresh example.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from spawn_db.config import Overrides, load_config
from spawn_db.errors import UsageError
from spawn_db.migrate.migration import pin_migration
from spawn_db.project import check_path_length, init_project

EDITED_COMPONENT = Path("customers") / "full_name.sql"
FIRST_VERSION = Path("history") / "full_name.v1.sql"
PINNED_BEFORE_EDIT = ("20260101090000-create-customers", "20260102090000-seed-customers")
PINNED_AFTER_EDIT = ("20260103090000-customer-titles",)


@dataclass(frozen=True)
class ExampleResult:
    directory: Path
    migrations: tuple[str, ...]
    tests: tuple[str, ...]


def create_example(directory: Path) -> ExampleResult:
    """Create the example project in ``directory`` (which must not hold a project)."""
    check_path_length(directory, "example folder")
    if directory.exists() and any(directory.iterdir()):
        raise UsageError(f"{directory} is not empty; choose a new folder for the example")
    init_project(directory)
    config = load_config(Overrides(config_file=str(directory / "spawn.toml")))
    source = resources.files("spawn_db.example").joinpath("project")
    with resources.as_file(source) as data:
        for part in ("components", "migrations", "tests"):
            shutil.copytree(data / part, config.spawn_folder / part, dirs_exist_ok=True)
        shutil.copyfile(data / "variables.yaml", directory / "variables.yaml")
        final_version = (config.components_dir / EDITED_COMPONENT).read_bytes()
        (config.components_dir / EDITED_COMPONENT).write_bytes((data / FIRST_VERSION).read_bytes())
    for name in PINNED_BEFORE_EDIT:
        pin_migration(config, name)
    (config.components_dir / EDITED_COMPONENT).write_bytes(final_version)
    for name in PINNED_AFTER_EDIT:
        pin_migration(config, name)
    tests = tuple(sorted(p.name for p in config.tests_dir.iterdir() if p.is_dir()))
    return ExampleResult(directory, PINNED_BEFORE_EDIT + PINNED_AFTER_EDIT, tests)
