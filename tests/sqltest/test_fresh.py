"""Fresh test databases (`[tests] database = "fresh"`): a template built from the
migrations, one copy per test, against the real PostgreSQL and the real `spawn`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import Result


def fresh_project(db_project: Any, mode: str = "fresh") -> Any:
    """``db_project`` with ``[tests] database = mode`` and a migration that makes a table;
    the migration names the test's database in a comment, so its template is its own."""
    with db_project.config_path.open("a", encoding="utf-8") as config:
        config.write(f'\n[tests]\ndatabase = "{mode}"\n')
    db_project.add_migration(
        "accounts",
        f"-- for {db_project.database.name}\n"
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL);\n"
        "INSERT INTO accounts VALUES (1, 'ann');\n",
    )
    return db_project


def spawn_databases(db_project: Any) -> list[str]:
    rows = db_project.database.query(
        "SELECT datname || ' ' || datistemplate FROM pg_database WHERE datname LIKE "
        "'spawn\\_tpl\\_%' OR datname LIKE 'spawn\\_testdb\\_%' ORDER BY 1")
    return rows.splitlines()


@pytest.fixture(autouse=True)
def _drop_spawn_databases(pg_server: Any) -> Iterator[None]:
    """Templates and kept copies live on the session's server: drop them after each test."""
    yield
    names = pg_server.query(
        "SELECT string_agg(quote_ident(datname), ' ') FROM pg_database WHERE datname LIKE "
        "'spawn\\_tpl\\_%' OR datname LIKE 'spawn\\_testdb\\_%'")
    for name in names.split():
        pg_server.query(f"ALTER DATABASE {name} IS_TEMPLATE false")
        pg_server.query(f"DROP DATABASE {name} WITH (FORCE)")


def lines(result: Result) -> list[str]:
    return result.stdout.splitlines()


def test_each_test_runs_in_its_own_copy_of_the_migrated_template(db_project: Any) -> None:
    project = fresh_project(db_project)
    for name in ("one", "two"):
        project.add_test(name, (
            f"INSERT INTO accounts VALUES (2, '{name}');\n"
            "SELECT id, owner FROM accounts ORDER BY id;\n"))
    result = project.run("test", "expect", "--yes", "-j", "2")
    assert result.exit_code == 0, result.stderr
    for name in ("one", "two"):
        expected = (project.spawn_dir / "tests" / name / "expected").read_text()
        assert expected == (f" id | owner \n----+-------\n  1 | ann\n  2 | {name}\n"
                            "(2 rows)\n\n")
    result = project.run("test", "compare", "-j", "2")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert lines(result)[:2] == ["[PASS] one", "[PASS] two"]
    databases = spawn_databases(project)
    assert len(databases) == 1 and databases[0].startswith("spawn_tpl_")
    assert databases[0].endswith(" true")
    # The target itself was never migrated.
    assert project.database.query("SELECT to_regclass('accounts') IS NULL") == "t"
