"""spawn.toml as a user meets it: names that reach psql, spawn_folder, and config discovery."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spawn_db.config import Overrides, load_config, toml_string
from spawn_db.errors import ConfigError
from tests.cli.test_foundation import assert_one_line_error
from tests.conftest import DbProject
from tests.helpers import run_spawn, snapshot_files


def write_config(project: DbProject, target_lines: str, environment: str = '"dev"') -> None:
    """The db_project's config with extra lines in [targets.local]."""
    direct = ", ".join(toml_string(a) for a in project.database.psql_argv())
    project.config_path.write_text(
        f'spawn_folder = "spawn"\ntarget = "local"\n\n[targets.local]\n'
        f'engine = "postgres-psql"\nenvironment = {environment}\n{target_lines}'
        f'command = {{ kind = "direct", direct = [{direct}] }}\n',
        encoding="utf-8",
    )


# -- item 6: nothing from spawn.toml reaches psql as a meta-command -----------------------


@pytest.mark.parametrize("command", [("migration", "status"), ("migration", "apply", "--yes")])
def test_newline_in_spawn_database_runs_nothing(
    db_project: DbProject, tmp_path: Path, command: tuple[str, ...]
) -> None:
    pwned = tmp_path / "pwned"
    db_project.add_migration("one", "CREATE TABLE one (id int);\n")
    write_config(db_project, f'spawn_database = "x\\n\\\\! touch {pwned}"\n')

    result = db_project.run(*command)

    assert_one_line_error(
        result, 2, str(db_project.config_path), "[targets.local] `spawn_database`",
        "control character U+000A", 'e.g. `spawn_database = "spawn"`')
    assert not pwned.exists()
    assert db_project.database.query("SELECT to_regclass('one') IS NULL") == "t"
    assert db_project.database.query("SELECT to_regnamespace('_spawn') IS NULL") == "t"


def test_control_characters_in_schema_and_environment_are_config_errors(
    db_project: DbProject
) -> None:
    write_config(db_project, 'spawn_schema = "a\\rb"\n')
    schema = db_project.run("migration", "status")
    write_config(db_project, "", environment='"dev\\u0000"')
    environment = db_project.run("migration", "status")

    assert_one_line_error(schema, 2, str(db_project.config_path), "`spawn_schema` 'a\\rb'",
                          "control character U+000D")
    assert_one_line_error(environment, 2, "[targets.local] `environment` 'dev\\x00'",
                          "control character U+0000")


def test_overlong_spawn_database_is_a_config_error(db_project: DbProject) -> None:
    write_config(db_project, f'spawn_database = "{"d" * 64}"\n')

    result = db_project.run("migration", "status")

    assert_one_line_error(result, 2, "`spawn_database`", "64 bytes long",
                          "PostgreSQL names have at most 63")


def test_control_character_in_a_target_name_is_a_config_error(db_project: DbProject) -> None:
    write_config(db_project, "")
    text = db_project.config_path.read_text()
    db_project.config_path.write_text(text + '\n[targets."a\\nb"]\nengine = "postgres-psql"\n'
                                      'command = { kind = "embedded" }\n')

    result = db_project.run("migration", "status")

    assert_one_line_error(result, 2, "target name 'a\\nb'", "U+000A")


@pytest.mark.parametrize(("flag", "variable"), [("--environment", "SPAWN_ENVIRONMENT"),
                                                 ("--target", "SPAWN_TARGET")])
def test_control_characters_in_flags_and_variables(
    db_project: DbProject, flag: str, variable: str
) -> None:
    by_flag = db_project.run(flag, "dev\n\\! id", "migration", "status")
    by_variable = db_project.run("migration", "status", env={variable: "dev\r"})

    assert_one_line_error(by_flag, 2, f"from {flag} or {variable}", "U+000A")
    assert_one_line_error(by_variable, 2, f"from {flag} or {variable}", "U+000D")


CONTROL = st.characters(min_codepoint=0, max_codepoint=0x1F) | st.sampled_from(
    ["\x7f", "\x85", "\x9f"])
NAMES = st.tuples(st.text(string.ascii_letters, max_size=8), CONTROL,
                  st.text(string.printable, max_size=8)).map("".join)


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=NAMES, key=st.sampled_from(["spawn_database", "spawn_schema", "environment"]))
def test_any_control_character_in_a_name_is_refused(
    tmp_path: Path, name: str, key: str
) -> None:
    (tmp_path / "spawn").mkdir(exist_ok=True)
    config = tmp_path / "spawn.toml"
    config.write_text(
        'spawn_folder = "spawn"\ntarget = "local"\n[targets.local]\nengine = "postgres-psql"\n'
        f'command = {{ kind = "embedded" }}\n{key} = {toml_string(name)}\n', encoding="utf-8")

    with pytest.raises(ConfigError) as caught:
        load_config(Overrides(config_file=str(config)))

    message = str(caught.value)
    assert message.startswith(f"{config}: [targets.local] `{key}` {name!r} cannot be used: ")
    assert "control character U+" in message
    assert "\n" not in message and "\r" not in message


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=20)
       .filter(lambda n: len(n.encode()) <= 63))
def test_printable_names_stay_allowed(tmp_path: Path, name: str) -> None:
    (tmp_path / "spawn").mkdir(exist_ok=True)
    config = tmp_path / "spawn.toml"
    config.write_text(
        'spawn_folder = "spawn"\ntarget = "local"\n[targets.local]\nengine = "postgres-psql"\n'
        f'command = {{ kind = "embedded" }}\nspawn_database = {toml_string(name)}\n'
        f'spawn_schema = {toml_string(name)}\n', encoding="utf-8")

    target = load_config(Overrides(config_file=str(config))).target()

    assert (target.spawn_database, target.spawn_schema) == (name, name)


# -- item 20: a spawn_folder that does not exist --------------------------------------------


@pytest.mark.parametrize("command", [("migration", "status"), ("check",), ("test", "compare"),
                                     ("migration", "new", "x"), ("test", "new", "x")])
def test_missing_spawn_folder_is_a_config_error(tmp_path: Path, command: tuple[str, ...]) -> None:
    assert run_spawn("init", cwd=tmp_path).exit_code == 0
    config = tmp_path / "spawn.toml"
    config.write_text(config.read_text().replace('spawn_folder = "spawn"', 'spawn_folder = "db"'))
    before = snapshot_files(tmp_path)

    result = run_spawn(*command, cwd=tmp_path)

    assert_one_line_error(
        result, 2, f'{config}: `spawn_folder = "db"` points to {tmp_path / "db"}, which does '
        "not exist; fix `spawn_folder` or create that folder")
    assert snapshot_files(tmp_path) == before
    assert not (tmp_path / "db").exists()


def test_spawn_folder_that_is_a_file_is_a_config_error(tmp_path: Path) -> None:
    assert run_spawn("init", cwd=tmp_path).exit_code == 0
    config = tmp_path / "spawn.toml"
    config.write_text(config.read_text().replace('spawn_folder = "spawn"',
                                                 'spawn_folder = "spawn.toml"'))

    result = run_spawn("check", cwd=tmp_path)

    assert_one_line_error(result, 2, "which is not a folder")


# -- item 21: spawn.toml is found in parent folders ------------------------------------------


def test_commands_work_from_a_sub_folder(tmp_path: Path) -> None:
    assert run_spawn("init", cwd=tmp_path).exit_code == 0
    deep = tmp_path / "spawn" / "components" / "deep"
    deep.mkdir()

    new = run_spawn("migration", "new", "from-below", cwd=deep)
    check = run_spawn("check", cwd=deep)

    assert new.exit_code == 0, new.stderr
    assert (tmp_path / "spawn" / "migrations" / new.stdout.strip() / "up.sql").is_file()
    assert not (deep / "spawn").exists()
    assert check.exit_code == 1
    assert f"{new.stdout.strip()} is not pinned" in check.stderr


def test_nearest_spawn_toml_wins(tmp_path: Path) -> None:
    inner = tmp_path / "inner"
    inner.mkdir()
    assert run_spawn("init", cwd=tmp_path).exit_code == 0
    assert run_spawn("--config-file", "inner/spawn.toml", "init", cwd=tmp_path).exit_code == 0
    (inner / "sub").mkdir()

    result = run_spawn("migration", "new", "x", cwd=inner / "sub")

    assert result.exit_code == 0, result.stderr
    assert (inner / "spawn" / "migrations" / result.stdout.strip()).is_dir()
    assert list((tmp_path / "spawn" / "migrations").iterdir()) == [
        tmp_path / "spawn" / "migrations" / ".gitkeep"]


def test_init_in_a_sub_folder_refuses_to_nest(tmp_path: Path) -> None:
    assert run_spawn("init", cwd=tmp_path).exit_code == 0
    sub = tmp_path / "app" / "sql"
    sub.mkdir(parents=True)
    before = snapshot_files(tmp_path)

    result = run_spawn("init", cwd=sub)
    example = run_spawn("init", "--example", cwd=sub)

    assert_one_line_error(
        result, 2, f"{sub} is inside the Spawn project of {tmp_path / 'spawn.toml'}",
        "run spawn commands from here as they are",
        f"--config-file {sub / 'spawn.toml'}")
    assert_one_line_error(example, 2, f"is inside the Spawn project of {tmp_path / 'spawn.toml'}")
    assert "spawn init`" not in result.stderr
    assert snapshot_files(tmp_path) == before


def test_init_nests_on_purpose_with_config_file(tmp_path: Path) -> None:
    assert run_spawn("init", cwd=tmp_path).exit_code == 0
    sub = tmp_path / "other"
    sub.mkdir()

    result = run_spawn("--config-file", "spawn.toml", "init", cwd=sub)

    assert result.exit_code == 0, result.stderr
    assert (sub / "spawn.toml").is_file()


def test_no_project_error_names_the_search(tmp_path: Path) -> None:
    result = run_spawn("check", cwd=tmp_path)

    assert_one_line_error(
        result, 2, f"no spawn.toml in {tmp_path} or any folder above it; run `spawn init` to "
        "create a project here, or pass --config-file PATH")


def test_relative_paths_resolve_beside_the_config_file(tmp_path: Path) -> None:
    assert run_spawn("init", cwd=tmp_path).exit_code == 0
    sub = tmp_path / "spawn" / "tests"

    config = load_config(Overrides(), cwd=sub)

    assert config.path == tmp_path / "spawn.toml"
    assert config.spawn_folder == tmp_path / "spawn"
