"""``migration build`` without ``--pinned`` warns only when apply would send other text."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.helpers import run_spawn

WARNING = ("warning: {name} is pinned: `spawn migration apply` renders it from the pin, not "
           "from the working tree shown here; add --pinned to see what will be applied\n")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    assert run_spawn("init", cwd=tmp_path).exit_code == 0
    return tmp_path


def new_migration(project: Path, text: str) -> str:
    name = run_spawn("migration", "new", "m", cwd=project).stdout.strip()
    (project / "spawn" / "migrations" / name / "up.sql").write_text(text)
    return name


def component(project: Path, rel: str, text: str) -> None:
    path = project / "spawn" / "components" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_no_warning_when_the_working_tree_matches_the_pin(project: Path) -> None:
    component(project, "f.sql", "SELECT 1;")
    name = new_migration(project, '{% include "f.sql" %}\n')
    assert run_spawn("migration", "pin", name, cwd=project).exit_code == 0
    component(project, "unrelated.sql", "SELECT 2;")  # the tree changed, the render did not

    built = run_spawn("migration", "build", name, cwd=project)

    assert (built.exit_code, built.stdout, built.stderr) == (0, "SELECT 1;\n", "")


def test_warning_when_an_included_component_changed(project: Path) -> None:
    component(project, "f.sql", "SELECT 1;")
    name = new_migration(project, '{% include "f.sql" %}\n')
    assert run_spawn("migration", "pin", name, cwd=project).exit_code == 0
    component(project, "f.sql", "SELECT 2;")

    built = run_spawn("migration", "build", name, cwd=project)

    assert (built.exit_code, built.stdout, built.stderr) == (
        0, "SELECT 2;\n", WARNING.format(name=name))


def test_warning_when_the_pin_lacks_a_component_the_tree_has(project: Path) -> None:
    name = new_migration(project, '{% include "f.sql" %}\n')
    assert run_spawn("migration", "pin", name, cwd=project).exit_code == 0
    component(project, "f.sql", "SELECT 1;")

    built = run_spawn("migration", "build", name, cwd=project)

    assert (built.exit_code, built.stdout, built.stderr) == (
        0, "SELECT 1;\n", WARNING.format(name=name))


def test_a_changed_file_that_renders_the_same_does_not_warn(project: Path) -> None:
    component(project, "f.sql", "{# v1 #}SELECT 1;")
    name = new_migration(project, '{% include "f.sql" %}\n')
    assert run_spawn("migration", "pin", name, cwd=project).exit_code == 0
    component(project, "f.sql", "{# v2: comment edited #}SELECT 1;")

    built = run_spawn("migration", "build", name, cwd=project)

    assert (built.exit_code, built.stdout, built.stderr) == (0, "SELECT 1;\n", "")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(old=st.sampled_from(["a", "b", "{{ 1 }}", "1", "{# x #}1"]),
       new=st.sampled_from(["a", "b", "{{ 1 }}", "1", "{# y #}1"]))
def test_warns_exactly_when_the_pinned_render_differs(tmp_path_factory: pytest.TempPathFactory,
                                                     old: str, new: str) -> None:
    """Library level, many pairs: the verdict is "differs" iff the two renders differ."""
    from spawn_db.config import Overrides, load_config
    from spawn_db.migrate.migration import build_migration, build_working_tree, pin_migration

    root = tmp_path_factory.mktemp("p")
    assert run_spawn("init", cwd=root).exit_code == 0
    config = load_config(Overrides(config_file=str(root / "spawn.toml")))
    component(root, "f.sql", old)
    name = "20240101000000-m"
    (config.migrations_dir / name).mkdir(parents=True)
    (config.migrations_dir / name / "up.sql").write_text('X {% include "f.sql" %}\n')
    pin_migration(config, name)
    component(root, "f.sql", new)

    chunks, difference = build_working_tree(config, name)
    working = "".join(chunks)
    pinned = "".join(build_migration(config, name, pinned=True))
    assert (difference() is not None) == (working != pinned)
