"""``spawn_db.Project``, the public Python API, against the suite's real PostgreSQL.

Each test drives a project through the API and through the real ``spawn`` entry point,
and checks that both give the same answer: the facade calls the functions the CLI calls,
so the two cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest

import spawn_db
from spawn_db import Project, SpawnError
from spawn_db.errors import ConfigError, NotFoundError, UsageError
from tests.conftest import DbProject


def add(project: DbProject, name: str, up: str, down: str | None = None,
        *, pin: bool = True) -> str:
    folder = project.add_migration(name, up, pin=pin)
    if down is not None:
        (project.spawn_dir / "migrations" / folder / "down.sql").write_text(
            down, encoding="utf-8")
    return folder


def cli_json(project: DbProject, *args: str) -> dict[str, object]:
    done = project.run(*args, "--format", "json")
    assert done.exit_code in (0, 1), done.stderr
    found: dict[str, object] = json.loads(done.stdout)
    return found


def cli_error(project: DbProject, *args: str) -> tuple[int, str]:
    done = project.run(*args)
    assert done.stderr.startswith("error: "), done.stderr
    return done.exit_code, done.stderr.removeprefix("error: ").rstrip("\n")


@pytest.fixture
def two(db_project: DbProject) -> tuple[DbProject, str, str]:
    """A project with two pinned migrations, the second with a down.sql."""
    db_project.add_component("users/columns.sql", "id int PRIMARY KEY, name text")
    first = add(db_project, "users",
                "CREATE TABLE users ({% include 'users/columns.sql' %});\n")
    second = add(db_project, "orders", "CREATE TABLE orders (id int);\n",
                 "DROP TABLE orders;")
    return db_project, first, second


# -- loading ----------------------------------------------------------------------------------


def test_load_finds_spawn_toml_from_a_subfolder_like_the_cli(db_project: DbProject) -> None:
    below = db_project.spawn_dir / "migrations"
    project = Project.load(below)
    assert project.root == db_project.root
    assert project.config.path == db_project.config_path
    assert project.target == "local"
    assert Project.load(db_project.config_path).root == db_project.root


def test_load_without_a_project_raises_the_cli_message(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        Project.load(tmp_path)
    from tests.helpers import run_spawn

    done = run_spawn("migration", "list", cwd=tmp_path)
    assert done.exit_code == 2
    assert done.stderr == f"error: {caught.value.message}\n"
    assert caught.value.message.startswith(f"no spawn.toml in {tmp_path} ")


def test_load_of_a_missing_folder_does_not_search_above_it(db_project: DbProject) -> None:
    missing = db_project.root / "typo"
    with pytest.raises(ConfigError) as caught:
        Project.load(missing)
    assert caught.value.message == (f"{missing} does not exist; pass the folder of a spawn "
                                    "project (or one below it), or its spawn.toml")


def test_load_takes_target_and_environment(db_project: DbProject) -> None:
    with pytest.raises(ConfigError, match="target 'nowhere' is not defined"):
        Project.load(db_project.root, target="nowhere").status()
    project = Project.load(db_project.root, environment="staging")
    assert project.config.environment == "staging"


def test_public_surface_is_all_and_importing_spawn_db_loads_nothing_else() -> None:
    assert spawn_db.__all__ == ["ExpectReport", "Project", "RevertDryRun", "SpawnError",
                                "TenantOptions", "TestReport", "TestReporter", "__version__"]
    for name in spawn_db.__all__:
        assert getattr(spawn_db, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        spawn_db.nope  # noqa: B018
    import subprocess
    import sys

    code = ("import sys, spawn_db; "
            "print(sorted(m for m in sys.modules if m.startswith('spawn_db')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout == "['spawn_db']\n"


# -- files ------------------------------------------------------------------------------------


def test_migrations_match_migration_list(two: tuple[DbProject, str, str]) -> None:
    project_dir, first, second = two
    entries = Project.load(project_dir.root).migrations()
    listed = cli_json(project_dir, "migration", "list")["migrations"]
    assert isinstance(listed, list)
    assert [(e.name, e.pin, e.has_down, e.draft) for e in entries] == [
        (m["name"], m["pin"], m["down"], m["draft"]) for m in listed]
    assert [e.name for e in entries] == [first, second]


def test_build_is_what_migration_build_prints(two: tuple[DbProject, str, str]) -> None:
    project_dir, first, second = two
    project = Project.load(project_dir.root)
    pinned = project.build("users")
    assert pinned == "CREATE TABLE users (id int PRIMARY KEY, name text);"
    assert project_dir.run("migration", "build", "--pinned", first).stdout == pinned + "\n"
    project_dir.add_component("users/columns.sql", "id bigint")
    assert project.build(first) == pinned  # from the pin
    tree = project.build(first, pinned=False)
    assert tree == "CREATE TABLE users (id bigint);"
    assert project_dir.run("migration", "build", first).stdout == tree + "\n"
    assert project.build(second, down=True) == "DROP TABLE orders;"


def test_pin_without_name_pins_every_unpinned_migration(db_project: DbProject) -> None:
    a = add(db_project, "a", "SELECT 1;\n", pin=False)
    b = add(db_project, "b", "SELECT 2;\n", pin=False)
    project = Project.load(db_project.root)
    batch = project.pin()
    assert batch.pinned == (a, b) and batch.repinned == ()
    lock = (db_project.spawn_dir / "migrations" / a / "lock.toml").read_text()
    assert batch.root is not None and batch.root in lock
    again = project.pin(a)
    assert again.repinned == (a,) and again.root == batch.root
    assert project.pin().written == ()


def test_tests_lists_the_tests(db_project: DbProject) -> None:
    db_project.add_test("b", "SELECT 1;\n")
    db_project.add_test("a", "SELECT 1;\n")
    assert Project.load(db_project.root).tests() == ("a", "b")


# -- the database -----------------------------------------------------------------------------


def test_apply_then_status_match_the_cli(two: tuple[DbProject, str, str]) -> None:
    project_dir, first, second = two
    project = Project.load(project_dir.root)
    before = project.status()
    assert [m.state for m in before.migrations] == ["pending", "pending"]
    result = project.apply()
    assert [o.name for o in result.applied] == [first, second]
    assert result.plan.to_run == (first, second)
    assert project_dir.database.query("SELECT count(*) FROM users") == "0"
    report = project.status()
    shown = cli_json(project_dir, "migration", "status")
    assert report.database == shown["database"] == project_dir.database.name
    migrations = shown["migrations"]
    assert isinstance(migrations, list)
    assert [(m.name, m.state, m.checksum_now) for m in report.migrations] == [
        (m["name"], m["status"], m["checksum_now"]) for m in migrations]
    assert [m.state for m in report.migrations] == ["applied", "applied"]
    assert project.apply().applied == []


def test_apply_dry_run_is_the_cli_plan_and_writes_nothing(
        two: tuple[DbProject, str, str]) -> None:
    project_dir, _first, _second = two
    dry = Project.load(project_dir.root).apply(dry_run=True)
    shown = cli_json(project_dir, "migration", "apply", "--dry-run")
    to_apply = shown["to_apply"]
    assert isinstance(to_apply, list)
    assert [(p.name, p.pin, p.checksum) for p in dry.migrations] == [
        (m["name"], m["pin"], m["checksum"]) for m in to_apply]
    assert project_dir.database.query(
        "SELECT count(*) FROM pg_namespace WHERE nspname = '_spawn'") == "0"


def test_apply_one_and_revert(two: tuple[DbProject, str, str]) -> None:
    project_dir, first, second = two
    project = Project.load(project_dir.root)
    assert [o.name for o in project.apply("users").applied] == [first]
    project.apply()
    dry = project.revert(dry_run=True)
    assert dry.plan.to_revert == (second,)
    assert [r.name for r in dry.reverts] == [second]
    done = project.revert()
    assert [o.name for o in done.reverted] == [second]
    assert project_dir.database.query(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'orders'") == "0"
    assert [m.state for m in project.status().migrations] == ["applied", "reverted"]


def test_errors_are_the_cli_errors(two: tuple[DbProject, str, str]) -> None:
    project_dir, first, _second = two
    project = Project.load(project_dir.root)
    with pytest.raises(NotFoundError) as missing:
        project.apply("nothing-like-it")
    assert cli_error(project_dir, "migration", "apply", "nothing-like-it") == (
        missing.value.exit_code, missing.value.message)
    project.apply()
    with pytest.raises(SpawnError) as refused:
        project.revert(first)  # has no down.sql
    assert cli_error(project_dir, "migration", "revert", first) == (
        refused.value.exit_code, refused.value.message)
    with pytest.raises(UsageError, match="pass only one of them"):
        project.revert(first, steps=1)


def test_drift_matches_the_cli(two: tuple[DbProject, str, str]) -> None:
    project_dir, _first, _second = two
    project = Project.load(project_dir.root)
    project.apply()
    assert not project.drift().drifted
    project_dir.database.query("ALTER TABLE users ADD COLUMN extra int")
    report = project.drift()
    shown = cli_json(project_dir, "migration", "drift")
    assert report.drifted and shown["drift"] is True
    differences = shown["differences"]
    assert isinstance(differences, list)
    assert [d.line() for d in report.differences] == ["+ column public.users.extra"]
    assert [(d.change, d.kind, d.name) for d in report.differences] == [
        (d["change"], d["kind"], d["name"]) for d in differences]


# -- golden-file tests ------------------------------------------------------------------------


def test_run_test_and_compare(two: tuple[DbProject, str, str]) -> None:
    project_dir, _first, _second = two
    project = Project.load(project_dir.root)
    project.apply()
    project_dir.add_test("count", "SELECT count(*) AS n FROM users;\n")
    run = project.run_test("count")
    assert run.text == project_dir.run("test", "run", "count").stdout
    assert run.text == " n \n---\n 0\n(1 row)\n\n"
    assert project.compare().failed == ("count",)  # no expected file yet
    (project_dir.spawn_dir / "tests" / "count" / "expected").write_text(run.text)
    report = project.compare("count", jobs=2)
    assert report.passed and [o.status for o in report.outcomes] == ["pass"]
    project_dir.database.query("INSERT INTO users VALUES (1, 'a')")
    failed = project.compare(["count"])
    assert failed.failed == ("count",)
    assert failed.outcomes[0].status == "fail"
    assert project_dir.run("test", "compare").exit_code == 1
    with pytest.raises(NotFoundError, match="test 'nope' not found"):
        project.compare("nope")


# -- the contract -----------------------------------------------------------------------------


def test_nothing_prints(two: tuple[DbProject, str, str],
                        capfd: pytest.CaptureFixture[str]) -> None:
    project_dir, _first, second = two
    project = Project.load(project_dir.root)
    project.apply(dry_run=True)
    project.apply()
    project.status()
    project.revert(second)
    project.drift()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_results_are_frozen(two: tuple[DbProject, str, str]) -> None:
    project_dir, _first, _second = two
    project = Project.load(project_dir.root)
    results: list[object] = [project, project.apply(), project.status(), project.revert(),
                             project.drift(), project.compare()]
    for result in results:
        assert dataclasses.is_dataclass(result)
        field = dataclasses.fields(result)[0].name
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(result, field, None)


def test_variables_mapping_reaches_templates(db_project: DbProject) -> None:
    name = add(db_project, "v", "SELECT {{ variables.n }};\n")
    project = Project.load(db_project.root, variables={"n": 42})
    assert project.build(name) == "SELECT 42;"
    (db_project.root / "vars.json").write_text('{"n": 7}')
    assert Project.load(db_project.root, variables=db_project.root / "vars.json"
                        ).build(name) == "SELECT 7;"
    assert os.environ.get("SPAWN_TARGET") is None
