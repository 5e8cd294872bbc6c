"""The pytest plugin's ``spawn_db`` copies where ``spawn test`` puts them (``FreshDatabases``):
on the project's embedded server in its tablespace in RAM, and with ``--spawn-target`` in
``[tests] tablespace``. A user's pytest run, in a project of its own."""

from __future__ import annotations

from pathlib import Path

from spawn_db.config import toml_string
from spawn_db.sqltest.tablespace import RAM_TABLESPACE
from tests.conftest import SPAWN_DATABASES, EmbeddedProject, PgServer
from tests.e2e.test_pytest_plugin import run_pytest
from tests.sqltest.test_fresh_tablespace import (
    MIGRATION,
    fresh_setup,
    ram_folder,
    server_tablespace,
)

# The test's copy, then its template: "<tablespace>|<location>" each.
CHECK = '''from pathlib import Path


def test_where(spawn_db, spawn_template):
    Path("where.txt").write_text(spawn_db.psql(
        "SELECT t.spcname || '|' || pg_tablespace_location(t.oid) FROM pg_database d "
        "JOIN pg_tablespace t ON t.oid = d.dattablespace WHERE d.datname IN "
        f"(current_database(), '{spawn_template.name}') ORDER BY d.datistemplate"))
'''


def user_project(embedded_project: EmbeddedProject) -> Path:
    root = embedded_project.root
    fresh_setup(root)
    assert embedded_project.run("migration", "pin", MIGRATION).exit_code == 0
    (root / "pytest.ini").write_text("[pytest]\npython_files = check_*.py\n"
                                     "addopts = -p no:cacheprovider\n")
    (root / "check_where.py").write_text(CHECK)
    return root


def test_spawn_db_is_a_copy_in_the_embedded_servers_ram_tablespace(
        embedded_project: EmbeddedProject) -> None:
    root = user_project(embedded_project)
    done = run_pytest(root)
    assert done.returncode == 0, done.stdout + done.stderr
    line = f"{RAM_TABLESPACE}|{ram_folder(root)}"
    assert (root / "where.txt").read_text() == f"{line}\n{line}"


def test_spawn_db_on_spawn_target_is_in_the_tests_tablespace(
        embedded_project: EmbeddedProject, pg_server: PgServer) -> None:
    root = user_project(embedded_project)
    direct = ", ".join(toml_string(a) for a in pg_server.psql_argv())
    try:
        with server_tablespace(pg_server) as (name, folder):
            text = (root / "spawn.toml").read_text().replace(
                "[tests]\n", f'[tests]\ntablespace = "{name}"\n')
            (root / "spawn.toml").write_text(
                f"{text}\n[targets.suite]\nengine = \"postgres-psql\"\nenvironment = \"dev\"\n"
                f"command = {{ kind = \"direct\", direct = [{direct}] }}\n")
            done = run_pytest(root, "--spawn-target", "suite")
            assert done.returncode == 0, done.stdout + done.stderr
            assert (root / "where.txt").read_text() == f"{name}|{folder}\n{name}|{folder}"
    finally:
        pg_server.drop_databases_like(*SPAWN_DATABASES)
