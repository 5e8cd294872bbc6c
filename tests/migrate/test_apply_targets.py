"""Apply through ``direct`` and ``provider`` commands that wrap psql in small real scripts,
and with the tracking tables in another database (``spawn_database``)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from spawn_db.config import toml_string
from tests.conftest import DbProject, TestDatabase


def write_script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body, encoding="utf-8")
    path.chmod(0o755)
    return path


def set_target(project: DbProject, command: str, extra: str = "") -> None:
    project.config_path.write_text(
        'spawn_folder = "spawn"\ntarget = "local"\n\n[targets.local]\n'
        f'engine = "postgres-psql"\nenvironment = "dev"\n{extra}command = {command}\n',
        encoding="utf-8",
    )


def toml_list(argv: list[str]) -> str:
    return "[" + ", ".join(toml_string(a) for a in argv) + "]"


def logged_psql(tmp_path: Path, database: TestDatabase) -> tuple[Path, Path]:
    """A wrapper that logs each start, then runs the real psql with its arguments."""
    log = tmp_path / "psql-starts.log"
    wrapper = write_script(
        tmp_path / "my-psql",
        f'echo "$*" >> {shlex.quote(str(log))}\nexec {shlex.quote(database.psql)} "$@"\n',
    )
    return wrapper, log


def migrations(project: DbProject) -> list[str]:
    return [
        project.add_migration("one", "CREATE TABLE one (id int);\n"),
        project.add_migration("two", "BEGIN;\nCREATE TABLE two (id int);\nCOMMIT;\n"),
        project.add_migration("meta", "CREATE TABLE three (id int);\n\\echo from meta\n"),
        project.add_migration("four", "CREATE TABLE four (id int);\n"),
    ]


def test_direct_command_wrapping_psql_keeps_sessions_open(
    db_project: DbProject, tmp_path: Path
) -> None:
    database = db_project.database
    wrapper, log = logged_psql(tmp_path, database)
    argv = [str(wrapper), *database.psql_argv()[1:]]
    set_target(db_project, f'{{ kind = "direct", direct = {toml_list(argv)} }}')
    names = migrations(db_project)

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert "from meta" in result.stderr
    assert database.query("SELECT count(*) FROM pg_tables WHERE tablename IN "
                          "('one', 'two', 'three', 'four')") == "4"
    assert len(log.read_text().splitlines()) == 3  # control, runner, the meta-command one
    status = db_project.run("migration", "status")
    for name in names:
        assert re.search(rf"^{name} +✓ +✓ +✓ +✓ Applied$", status.stdout, re.M)


def test_provider_command_is_run_once_and_its_output_used(
    db_project: DbProject, tmp_path: Path
) -> None:
    database = db_project.database
    wrapper, log = logged_psql(tmp_path, database)
    provider_log = tmp_path / "provider.log"
    printed = shlex.join([str(wrapper), "-X", "-h", database.host, "-p", str(database.port),
                          "-U", database.user])
    provider = write_script(tmp_path / "provider",
                            f"echo run >> {shlex.quote(str(provider_log))}\n"
                            f"echo {shlex.quote(printed)}\n")
    set_target(db_project, f'{{ kind = "provider", provider = {toml_list([str(provider)])}, '
                           f'append = {toml_list(["-d", database.name])} }}')
    migrations(db_project)

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert provider_log.read_text() == "run\n"
    assert all(line.endswith(f"-d {database.name}") for line in log.read_text().splitlines())
    assert database.query("SELECT count(*) FROM _spawn.migration_history "
                          "WHERE status_id_status = 'SUCCESS'") == "7"  # 3 internal


@pytest.fixture
def tracking_database(database: TestDatabase) -> Iterator[str]:
    name = f"{database.name}_tracking"
    database.query(f'CREATE DATABASE "{name}"')
    yield name
    database.query(f'DROP DATABASE "{name}" WITH (FORCE)')


def test_spawn_database_holds_the_tracking_schema(
    db_project: DbProject, tracking_database: str
) -> None:
    database = db_project.database
    set_target(db_project, f'{{ kind = "direct", direct = {toml_list(database.psql_argv())} }}',
               extra=f'spawn_database = "{tracking_database}"\nspawn_schema = "deploys"\n')
    names = migrations(db_project)
    failing = db_project.add_migration("failing", "SELECT 1/0;\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert f"migration {failing} failed" in result.stderr
    assert database.query("SELECT count(*) FROM pg_tables WHERE tablename IN "
                          "('one', 'two', 'three', 'four')") == "4"
    assert database.query("SELECT to_regnamespace('deploys') IS NULL") == "t"
    rows = database.query(
        "SELECT m.name || ' ' || h.status_id_status FROM deploys.migration_history h "
        "JOIN deploys.migration m ON m.migration_id = h.migration_id_migration "
        "WHERE m.namespace = 'default' ORDER BY h.migration_history_id", tracking_database)
    assert rows.splitlines() == [
        line for name in names for line in (f"{name} ATTEMPTED", f"{name} SUCCESS")
    ] + [f"{failing} ATTEMPTED", f"{failing} FAILURE"]
    status = db_project.run("migration", "status")
    assert f"(database {tracking_database}, schema deploys)" in status.stdout
    assert "4 applied, 1 failed" in status.stdout


def test_missing_spawn_database_is_a_clear_error(db_project: DbProject) -> None:
    database = db_project.database
    set_target(db_project, f'{{ kind = "direct", direct = {toml_list(database.psql_argv())} }}',
               extra='spawn_database = "no_such_database"\n')

    result = db_project.run("migration", "status")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot connect to spawn_database 'no_such_database'")
    assert 'database "no_such_database" does not exist' in result.stderr


def test_unreachable_server_is_a_clear_error(db_project: DbProject, tmp_path: Path) -> None:
    psql = db_project.database.psql
    argv = [psql, "-X", "-h", str(tmp_path), "-d", "x"]
    set_target(db_project, f'{{ kind = "direct", direct = {toml_list(argv)} }}')

    result = db_project.run("migration", "status")

    assert result.exit_code == 1
    assert result.stderr.startswith("error: psql (")
    assert "connection to server on socket" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_psql_is_a_configuration_error_for_every_command(db_project: DbProject) -> None:
    set_target(db_project, '{ kind = "direct", direct = ["/nonexistent/bin/psql", "-X"] }')
    db_project.add_migration("one", "SELECT 1;\n")
    db_project.add_test("one", "SELECT 1;\n")

    results = {args: db_project.run(*args) for args in (
        ("migration", "status"), ("migration", "apply", "--yes"), ("migration", "adopt", "--yes"),
        ("test", "run", "one"), ("test", "compare"))}

    for args, result in results.items():
        assert result.exit_code == 2, (args, result.stderr)
        assert result.stderr.splitlines()[-1] == (
            "error: cannot run '/nonexistent/bin/psql': No such file or directory; check the "
            "target's `command` in spawn.toml"), (args, result.stderr)
