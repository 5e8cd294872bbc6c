"""Golden tests: the sample project in tests/render/data renders byte for byte."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.helpers import run_spawn

DATA = Path(__file__).parent / "data"
MIGRATION = "20260101000000-everything"


@pytest.fixture()
def render_project(tmp_path: Path) -> Path:
    root = tmp_path / "render"
    shutil.copytree(DATA, root)
    return root


@pytest.mark.parametrize("variables", ["vars.json", "vars.toml", "vars.yaml"])
def test_build_matches_golden_file(render_project: Path, variables: str) -> None:
    result = run_spawn("migration", "build", MIGRATION, "--variables", variables,
                       cwd=render_project)
    assert result.stderr == ""
    assert result.exit_code == 0
    assert result.stdout == (DATA / "expected" / "everything.sql").read_text()


def test_pinned_build_matches_golden_file_and_survives_component_edits(
    render_project: Path,
) -> None:
    pinned = run_spawn("migration", "pin", MIGRATION, cwd=render_project)
    assert pinned.exit_code == 0, pinned.stderr
    (render_project / "components" / "util" / "add_func.sql").write_text("SELECT 'edited';\n")
    (render_project / "components" / "data" / "logo.bin").write_bytes(b"new")

    old = run_spawn("migration", "build", MIGRATION, "--pinned", "--variables", "vars.json",
                    cwd=render_project)
    assert old.exit_code == 0, old.stderr
    assert old.stdout == (DATA / "expected" / "everything.sql").read_text()

    new = run_spawn("migration", "build", MIGRATION, "--variables", "vars.json",
                    cwd=render_project)
    assert new.exit_code == 0
    assert "SELECT 'edited';" in new.stdout
    assert "CREATE OR REPLACE FUNCTION add" not in new.stdout
    assert "'\\x6e6577'::bytea" in new.stdout
    assert "is pinned: `spawn migration apply` renders it from the pin" in new.stderr
