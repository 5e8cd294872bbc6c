"""A project on disk for lint tests: spawn.toml, components/ and migrations/, no database
(``spawn lint`` never connects)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import Result, run_spawn


@dataclass
class LintProject:
    root: Path

    @property
    def spawn(self) -> Path:
        return self.root / "spawn"

    def config(self, extra: str = "") -> None:
        (self.root / "spawn.toml").write_text(
            'spawn_folder = "spawn"\ntarget = "local"\n\n[targets.local]\n'
            'engine = "postgres-psql"\ncommand = { kind = "direct", direct = ["psql"] }\n'
            + extra, encoding="utf-8")

    def migration(self, name: str, up: str) -> Path:
        folder = self.spawn / "migrations" / name
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "up.sql").write_text(up, encoding="utf-8")
        return folder / "up.sql"

    def component(self, relpath: str, text: str) -> Path:
        path = self.spawn / "components" / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    def lint(self, *args: str) -> Result:
        return run_spawn("lint", *args, cwd=self.root)


@pytest.fixture
def lint_project(tmp_path: Path) -> LintProject:
    project = LintProject(tmp_path / "proj")
    for folder in ("components", "migrations", "tests", "pinned"):
        (project.spawn / folder).mkdir(parents=True)
    project.config()
    return project
