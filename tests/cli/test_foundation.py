"""The database-free commands through the real entry point: output, files, exit codes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import xxhash

from tests.helpers import Result, run_spawn, snapshot_files


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    result = run_spawn("init", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    return tmp_path


def new_migration(project: Path, name: str, sql: str) -> str:
    result = run_spawn("migration", "new", name, cwd=project)
    assert result.exit_code == 0, result.stderr
    folder = result.stdout.strip()
    (project / "spawn" / "migrations" / folder / "up.sql").write_text(sql)
    return folder


def assert_one_line_error(result: Result, exit_code: int, *fragments: str) -> None:
    assert result.exit_code == exit_code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


def test_init_creates_the_layout(tmp_path: Path) -> None:
    result = run_spawn("init", cwd=tmp_path)
    assert result.exit_code == 0
    config = tomllib.loads((tmp_path / "spawn.toml").read_text())
    assert config["spawn_folder"] == "spawn"
    assert config["target"] == "local"
    assert config["targets"]["local"]["command"] == {"kind": "embedded"}
    assert config["targets"]["local"]["engine"] == "postgres-psql"
    for folder in ("migrations", "components", "tests", "pinned"):
        assert (tmp_path / "spawn" / folder / ".gitkeep").is_file()
    assert ".spawn/" in (tmp_path / ".gitignore").read_text().splitlines()


def test_init_refuses_existing_project(project: Path) -> None:
    before = snapshot_files(project)
    result = run_spawn("init", cwd=project)
    assert_one_line_error(result, 2, "spawn.toml already exists")
    assert snapshot_files(project) == before


def test_init_docker(tmp_path: Path) -> None:
    result = run_spawn("init", "--docker", "shop", cwd=tmp_path)
    assert result.exit_code == 0, result.stderr
    config = tomllib.loads((tmp_path / "spawn.toml").read_text())
    assert config["targets"]["local"]["command"] == {
        "kind": "direct",
        "direct": ["docker", "exec", "-i", "shop-db", "psql", "-U", "postgres", "shop"],
    }
    compose = (tmp_path / "docker-compose.yaml").read_text()
    assert "container_name: shop-db" in compose
    assert "POSTGRES_DB: shop" in compose


def test_init_docker_default_database(tmp_path: Path) -> None:
    assert run_spawn("init", "--docker", cwd=tmp_path).exit_code == 0
    assert "container_name: spawn-db" in (tmp_path / "docker-compose.yaml").read_text()


def test_migration_new_writes_exact_template(project: Path) -> None:
    result = run_spawn("migration", "new", "add-users", cwd=project)
    assert result.exit_code == 0
    name = result.stdout.strip()
    assert re.fullmatch(r"\d{14}-add-users", name)
    up = project / "spawn" / "migrations" / name / "up.sql"
    assert up.read_bytes() == b"BEGIN;\n\nCOMMIT;\n"


@pytest.mark.parametrize("bad", ["a/b", "has space", "../up", ".hidden", ""])
def test_migration_new_refuses_bad_names(project: Path, bad: str) -> None:
    before = snapshot_files(project)
    result = run_spawn("migration", "new", bad, cwd=project)
    assert_one_line_error(result, 2, "invalid migration name")
    assert snapshot_files(project) == before


def test_build_prints_render_and_one_newline(project: Path) -> None:
    (project / "spawn" / "components" / "f.sql").write_text("SELECT {{ env }};\n")
    name = new_migration(project, "m", 'BEGIN;\n{% include "f.sql" %}\nCOMMIT;\n')
    result = run_spawn("migration", "build", name, cwd=project)
    assert result.exit_code == 0
    assert result.stdout == "BEGIN;\nSELECT 'dev';\nCOMMIT;\n"
    assert result.stderr == ""


def test_pin_prints_root_hash_and_writes_lock(project: Path) -> None:
    (project / "spawn" / "components" / "f.sql").write_bytes(b"SELECT 1;")
    name = new_migration(project, "m", "{% include 'f.sql' %}")
    result = run_spawn("migration", "pin", name, cwd=project)
    assert result.exit_code == 0
    blob = xxhash.xxh3_128(b"SELECT 1;").hexdigest()
    keep = xxhash.xxh3_128(b"").hexdigest()
    tree = (
        f'[[entries]]\nkind = "Blob"\nhash = "{keep}"\nname = ".gitkeep"\n\n'
        f'[[entries]]\nkind = "Blob"\nhash = "{blob}"\nname = "f.sql"\n'
    ).encode()
    root = xxhash.xxh3_128(tree).hexdigest()
    assert result.stdout == root + "\n"
    lock = project / "spawn" / "migrations" / name / "lock.toml"
    assert lock.read_text() == f'pin = "{root}"\n'


def test_check_warns_about_unpinned_migrations(project: Path) -> None:
    pinned = new_migration(project, "pinned", "SELECT 1;")
    loose = new_migration(project, "loose", "SELECT 2;")
    assert run_spawn("migration", "pin", pinned, cwd=project).exit_code == 0
    result = run_spawn("check", cwd=project)
    assert result.exit_code == 1
    assert result.stderr == (
        f"warning: migration {loose} is not pinned; run `spawn migration pin {loose}`\n"
    )
    as_json = run_spawn("check", "--format", "json", cwd=project)
    assert as_json.exit_code == 1
    assert '"migration": "' + loose + '"' in as_json.stdout
    assert run_spawn("migration", "pin", loose, cwd=project).exit_code == 0
    clean = run_spawn("check", cwd=project)
    assert (clean.exit_code, clean.stdout, clean.stderr) == (0, "All migrations are pinned.\n", "")


def test_test_new_and_build(project: Path) -> None:
    assert run_spawn("test", "new", "smoke", cwd=project).exit_code == 0
    sql = project / "spawn" / "tests" / "smoke" / "test.sql"
    assert "SELECT 1 AS answer;" in sql.read_text()
    sql.write_text("SELECT {{ variables.n }};")
    (project / "v.yaml").write_text("n: 5\n")
    result = run_spawn("test", "build", "smoke", "--variables", "v.yaml", cwd=project)
    assert (result.exit_code, result.stdout) == (0, "SELECT 5;\n")


def test_environment_precedence(project: Path) -> None:
    name = new_migration(project, "env", "{{ env }}")
    assert run_spawn("migration", "build", name, cwd=project).stdout == "'dev'\n"
    by_var = run_spawn("migration", "build", name, cwd=project,
                       env={"SPAWN_ENVIRONMENT": "staging"})
    assert by_var.stdout == "'staging'\n"
    by_flag = run_spawn("-e", "prod", "migration", "build", name, cwd=project,
                        env={"SPAWN_ENVIRONMENT": "staging"})
    assert by_flag.stdout == "'prod'\n"


def test_config_file_flag_and_variable(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    name = new_migration(project, "m", "SELECT 1;")
    config = str(project / "spawn.toml")
    by_flag = run_spawn("--config-file", config, "migration", "build", name, cwd=elsewhere)
    assert by_flag.stdout == "SELECT 1;\n"
    by_var = run_spawn("migration", "build", name, cwd=elsewhere,
                       env={"SPAWN_CONFIG_FILE": config})
    assert by_var.stdout == "SELECT 1;\n"


def test_version_and_help(project: Path) -> None:
    version = run_spawn("--version", cwd=project)
    assert version.exit_code == 0
    assert version.stdout.startswith("spawn 0.1.0\n")
    for args in (["--help"], ["migration", "--help"], ["migration", "build", "--help"],
                 ["test", "--help"], ["check", "--help"], ["init", "--help"]):
        result = run_spawn(*args, cwd=project)
        assert result.exit_code == 0
        assert "Usage: spawn" in result.stdout


# Bad input: one actionable error, the right exit code, and no file changed.

def test_no_config_says_to_run_init(tmp_path: Path) -> None:
    result = run_spawn("migration", "new", "x", cwd=tmp_path)
    assert_one_line_error(result, 2, "no spawn.toml", "run `spawn init`")
    assert list(tmp_path.iterdir()) == []


def test_unknown_key_is_a_warning_naming_the_closest_key(project: Path) -> None:
    config = project / "spawn.toml"
    config.write_text(config.read_text().replace("target =", "spawn_foldr = 'x'\ntarget ="))
    result = run_spawn("check", cwd=project)
    assert result.exit_code == 0
    assert f"warning: unknown key `spawn_foldr` in {config}" in result.stderr
    assert "`spawn_folder`" in result.stderr


def test_invalid_toml_names_the_line(project: Path) -> None:
    config = project / "spawn.toml"
    config.write_text('spawn_folder = "spawn"\ntarget = = 1\n')
    before = snapshot_files(project)
    result = run_spawn("check", cwd=project)
    assert_one_line_error(result, 2, f"{config}:2: invalid TOML", "line 2")
    assert snapshot_files(project) == before


def test_unknown_target(project: Path) -> None:
    result = run_spawn("--target", "prdo", "check", cwd=project)
    assert_one_line_error(result, 2, "target 'prdo' is not defined", "local")


def test_target_without_command(project: Path) -> None:
    config = project / "spawn.toml"
    config.write_text(config.read_text().replace('command = { kind = "embedded" }\n', ""))
    result = run_spawn("check", cwd=project)
    assert_one_line_error(result, 2, "[targets.local] has no command", "kind")


def test_unknown_migration_suggests_close_names(project: Path) -> None:
    name = new_migration(project, "add-users", "SELECT 1;")
    result = run_spawn("migration", "build", "add-user", cwd=project)
    assert_one_line_error(result, 2, "migration 'add-user' not found", f"did you mean {name}?")
    typo = run_spawn("migration", "build", name.replace("users", "usres"), cwd=project)
    assert_one_line_error(typo, 2, f"did you mean {name}?")


def test_template_syntax_error_names_file_and_line(project: Path) -> None:
    name = new_migration(project, "broken", "BEGIN;\n{% if %}\nCOMMIT;\n")
    result = run_spawn("migration", "build", name, cwd=project)
    assert_one_line_error(result, 1, f"spawn/migrations/{name}/up.sql:2: template syntax error")
    assert result.stdout == ""


def test_include_of_missing_component(project: Path) -> None:
    name = new_migration(project, "m", 'SELECT 1;\n{% include "missing.sql" %}')
    result = run_spawn("migration", "build", name, cwd=project)
    assert_one_line_error(result, 1, "up.sql:2: component 'missing.sql' not found")


@pytest.mark.parametrize(
    "source",
    ['{% include "../../spawn.toml" %}', '{{ "/etc/hostname"|read_file }}'],
)
def test_paths_leaving_components(project: Path, source: str) -> None:
    name = new_migration(project, "m", source)
    before = snapshot_files(project)
    result = run_spawn("migration", "build", name, cwd=project)
    assert_one_line_error(result, 1, "up.sql:1:", "refused")
    assert snapshot_files(project) == before


def test_variables_file_with_unknown_extension(project: Path) -> None:
    name = new_migration(project, "m", "SELECT 1;")
    (project / "v.ini").write_text("a=1")
    result = run_spawn("migration", "build", name, "--variables", "v.ini", cwd=project)
    assert_one_line_error(result, 2, "v.ini", "'.ini'", ".json, .toml, .yaml, .yml")


@pytest.mark.parametrize(
    ("filename", "content", "fragment"),
    [("v.json", '{"a": }', "invalid JSON at line 1"),
     ("v.toml", "a = ", "invalid TOML"),
     ("v.yaml", "a: [1\nb: 2", "invalid YAML at line")],
)
def test_variables_file_with_invalid_content(
    project: Path, filename: str, content: str, fragment: str
) -> None:
    name = new_migration(project, "m", "SELECT 1;")
    (project / filename).write_text(content)
    result = run_spawn("migration", "build", name, "--variables", filename, cwd=project)
    assert_one_line_error(result, 2, filename, fragment)


def test_pinned_build_of_unpinned_migration(project: Path) -> None:
    name = new_migration(project, "m", "SELECT 1;")
    result = run_spawn("migration", "build", name, "--pinned", cwd=project)
    assert_one_line_error(result, 2, "is not pinned", f"spawn migration pin {name}")


@pytest.mark.parametrize("damage", ["delete", "corrupt"])
def test_pinned_build_with_damaged_object(project: Path, damage: str) -> None:
    (project / "spawn" / "components" / "f.sql").write_text("SELECT 1;")
    name = new_migration(project, "m", '{% include "f.sql" %}')
    assert run_spawn("migration", "pin", name, cwd=project).exit_code == 0
    blob = xxhash.xxh3_128(b"SELECT 1;").hexdigest()
    path = project / "spawn" / "pinned" / blob[:2] / blob[2:]
    if damage == "delete":
        path.unlink()
    else:
        path.write_text("DROP TABLE users;")
    result = run_spawn("migration", "build", name, "--pinned", cwd=project)
    word = "missing" if damage == "delete" else "corrupt"
    assert_one_line_error(result, 1, f"pin object {blob}", word, f"migration {name}")
    assert "DROP TABLE" not in result.stdout


def test_debug_shows_traceback(project: Path) -> None:
    result = run_spawn("--debug", "migration", "build", "nope", cwd=project)
    assert result.exit_code != 0
    assert "Traceback" in result.stderr


def test_debug_keeps_exit_codes(project: Path) -> None:
    result = run_spawn("-d", "migration", "build", "nope", cwd=project)
    assert result.exit_code == 2
    assert "Traceback" in result.stderr
    assert "error: migration 'nope' not found" in result.stderr


def test_check_reports_invalid_lock_and_missing_root(project: Path) -> None:
    bad = new_migration(project, "bad", "SELECT 1;")
    gone = new_migration(project, "gone", "SELECT 2;")
    (project / "spawn" / "migrations" / bad / "lock.toml").write_text('pin = "xyz"\n')
    (project / "spawn" / "migrations" / gone / "lock.toml").write_text(f'pin = "{"ab" * 16}"\n')
    result = run_spawn("check", cwd=project)
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert len(lines) == 2
    assert "lock.toml: `pin` must be a 32-digit hex hash" in lines[0]
    assert f"migration {gone} is pinned to {'ab' * 16}, which is missing" in lines[1]


def test_init_docker_with_existing_compose_changes_nothing(tmp_path: Path) -> None:
    (tmp_path / "docker-compose.yaml").write_text("services: {}\n")
    result = run_spawn("init", "--docker", cwd=tmp_path)
    assert_one_line_error(result, 2, "docker-compose.yaml already exists")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docker-compose.yaml"]


def test_failed_render_prints_nothing_to_stdout(project: Path) -> None:
    name = new_migration(project, "m", "SELECT 1;\n" * 1000 + '{% include "missing.sql" %}')
    result = run_spawn("migration", "build", name, cwd=project)
    assert result.exit_code == 1
    assert result.stdout == ""


def test_shell_completion_offers_migration_and_test_names(project: Path) -> None:
    name = new_migration(project, "add-users", "SELECT 1;")
    assert run_spawn("test", "new", "smoke", cwd=project).exit_code == 0
    env = {"_SPAWN_COMPLETE": "bash_complete", "COMP_CWORD": "3"}
    migrations = run_spawn(cwd=project, env={**env, "COMP_WORDS": "spawn migration build add"})
    assert migrations.stdout.splitlines() == [f"plain,{name}"]
    tests = run_spawn(cwd=project, env={**env, "COMP_WORDS": "spawn test compare sm"})
    assert tests.stdout.splitlines() == ["plain,smoke"]


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_scripts(project: Path, shell: str) -> None:
    result = run_spawn("completion", shell, cwd=project)
    assert result.exit_code == 0
    assert "_SPAWN_COMPLETE" in result.stdout


def test_pin_into_a_store_that_is_not_a_folder(project: Path) -> None:
    name = new_migration(project, "m", "SELECT 1;\n")
    pinned = project / "spawn" / "pinned"
    for entry in pinned.iterdir():
        entry.unlink()
    pinned.rmdir()
    pinned.write_text("not a folder\n")
    before = snapshot_files(project)
    result = run_spawn("migration", "pin", name, cwd=project)
    assert_one_line_error(result, 1, f"cannot read the pin store {pinned}: Not a directory")
    assert snapshot_files(project) == before


def test_pin_whose_lock_file_cannot_be_written(project: Path) -> None:
    name = new_migration(project, "m", "SELECT 1;\n")
    lock = project / "spawn" / "migrations" / name / "lock.toml"
    lock.mkdir()
    result = run_spawn("migration", "pin", name, cwd=project)
    assert_one_line_error(result, 1, f"cannot write {lock}: Is a directory",
                          "the pin was not recorded")
    assert lock.is_dir() and list(lock.iterdir()) == []
