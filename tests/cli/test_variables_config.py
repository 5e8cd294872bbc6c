"""Variables files named in spawn.toml: per target, per environment, overridden by
``--variables``; a missing file is a configuration error naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import DbProject


def configure(project: DbProject, target_lines: str = "", extra: str = "") -> None:
    """Add lines to [targets.local] and top-level tables after it."""
    text = project.config_path.read_text().replace(
        "[targets.local]\n", f"[targets.local]\n{target_lines}")
    project.config_path.write_text(text + extra)


def write(project: DbProject, relpath: str, text: str) -> Path:
    path = project.root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_target_variables_are_used_by_apply_and_retry_without_the_flag(
    db_project: DbProject,
) -> None:
    write(db_project, "vars/dev.yaml", "owner: alice\n")
    configure(db_project, 'variables = "vars/dev.yaml"\n')
    db_project.database.query("CREATE TABLE owners (name text)")
    name = db_project.add_migration("owner", "BEGIN;\n"
                                    "INSERT INTO owners VALUES ({{ variables.owner }});\n"
                                    "SELECT 1/{{ variables.divisor | default(0) }};\n"
                                    "COMMIT;\n")

    failed = db_project.run("migration", "apply")
    write(db_project, "vars/dev.yaml", "owner: bob\ndivisor: 1\n")
    retried = db_project.run("migration", "apply", "--retry")

    assert failed.exit_code == 1
    assert retried.exit_code == 0, retried.stderr
    assert db_project.database.query("SELECT string_agg(name, ',') FROM owners") == "bob"
    assert name in retried.stderr


def test_explicit_variables_override_the_configured_file(db_project: DbProject) -> None:
    write(db_project, "vars/dev.yaml", "owner: alice\n")
    write(db_project, "other.json", '{"owner": "carol"}')
    configure(db_project, 'variables = "vars/dev.yaml"\n')
    name = db_project.add_migration("owner", "SELECT {{ variables.owner }};\n")

    configured = db_project.run("migration", "build", name)
    explicit = db_project.run("migration", "build", name, "--variables", "other.json")

    assert configured.stdout == "SELECT 'alice';\n"
    assert explicit.stdout == "SELECT 'carol';\n"


def test_environment_variables_are_used_by_build_and_tests_and_the_target_wins(
    db_project: DbProject,
) -> None:
    write(db_project, "vars/dev.toml", 'owner = "dave"\n')
    write(db_project, "vars/prod.toml", 'owner = "erin"\n')
    configure(db_project, extra='\n[variables]\ndev = "vars/dev.toml"\nprod = "vars/prod.toml"\n')
    name = db_project.add_migration("owner", "SELECT {{ variables.owner }};\n")
    db_project.add_test("owner", "SELECT {{ variables.owner }} AS owner;\n")

    assert db_project.run("migration", "build", name).stdout == "SELECT 'dave';\n"
    assert db_project.run("-e", "prod", "migration", "build", name).stdout == "SELECT 'erin';\n"
    assert db_project.run("test", "build", "owner").stdout == "SELECT 'dave' AS owner;\n"
    run = db_project.run("test", "run", "owner")
    assert run.exit_code == 0, run.stderr
    assert "dave" in run.stdout
    write(db_project, "vars/target.json", '{"owner": "frank"}')
    configure(db_project, 'variables = "vars/target.json"\n')
    assert db_project.run("migration", "build", name).stdout == "SELECT 'frank';\n"


def test_status_and_check_use_the_configured_file(db_project: DbProject) -> None:
    write(db_project, "vars/dev.json", '{"n": 1}')
    configure(db_project, 'variables = "vars/dev.json"\n')
    name = db_project.add_migration("n", "SELECT {{ variables.n }};\n")
    assert db_project.run("migration", "apply").exit_code == 0
    write(db_project, "vars/dev.json", '{"n": 2}')

    status = db_project.run("migration", "status")
    check = db_project.run("check", "--database")

    assert status.exit_code == 1
    assert name in status.stderr
    assert "Modified" in status.stdout
    assert check.exit_code == 1


@pytest.mark.parametrize("where", ["target", "environment"])
def test_a_missing_configured_file_is_a_configuration_error(
    db_project: DbProject, where: str,
) -> None:
    if where == "target":
        configure(db_project, 'variables = "vars/nope.yaml"\n')
        key = "[targets.local] `variables`"
    else:
        configure(db_project, extra='\n[variables]\ndev = "vars/nope.yaml"\n')
        key = "[variables] `dev`"
    name = db_project.add_migration("x", "SELECT 1;\n")

    result = db_project.run("migration", "apply", name)

    assert result.exit_code == 2
    config = db_project.config_path
    assert result.stderr == (
        f'error: {config}: {key} = "vars/nope.yaml" points to {config.parent}/vars/nope.yaml, '
        "which does not exist; create it, fix the path (it is relative to the folder of "
        "spawn.toml), or pass --variables FILE\n")
    assert db_project.run("migration", "new", "y").exit_code == 0


def test_new_keys_are_known_and_a_typo_names_the_closest(db_project: DbProject) -> None:
    write(db_project, "v.json", "{}")
    configure(db_project, 'variabels = "v.json"\n',
              extra='\n[variables]\ndev = "v.json"\n\n[templates]\nundefind = "strict"\n')

    result = db_project.run("check")

    assert result.stderr.splitlines() == [
        f"warning: unknown key `variabels` in {db_project.config_path} [targets.local] "
        "(ignored; the closest known key is `variables`)",
        f"warning: unknown key `undefind` in {db_project.config_path} [templates] "
        "(ignored; the closest known key is `undefined`)",
    ]


def test_variables_must_be_a_table_of_files(db_project: DbProject) -> None:
    text = db_project.config_path.read_text()
    db_project.config_path.write_text('variables = "v.json"\n' + text)

    result = db_project.run("check")

    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: {db_project.config_path}: top-level `variables` must be a table mapping an "
        "environment to a file")
