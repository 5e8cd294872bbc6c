"""``spawn lint --db``: the rendered migrations run, in order, on a scratch database of the
target's server; the first failing statement is reported at its template line."""

from __future__ import annotations

import json

from tests.conftest import DbProject

SCRATCH = "SELECT count(*) FROM pg_database WHERE datname LIKE 'spawn_lint_%'"


def test_unknown_names_fail_at_their_template_line(db_project: DbProject) -> None:
    db_project.add_component("views/v.sql", "-- a view\nCREATE VIEW v AS\n  SELECT nope FROM a;\n")
    db_project.add_migration("first", "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n", pin=False)
    second = db_project.add_migration(
        "second", "BEGIN;\nINSERT INTO a VALUES (1);\n{% include 'views/v.sql' %}\nCOMMIT;\n",
        pin=False)
    result = db_project.run("lint", "--db", "--format", "json")
    assert result.exit_code == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["database"] == "failed"
    assert document["findings"] == [{
        "rule": "SP901", "severity": "error",
        "message": 'fails on a scratch database: column "nope" does not exist',
        "migration": second, "file": "spawn/components/views/v.sql", "line": 3, "column": 10,
        "included_from": [{"file": f"spawn/migrations/{second}/up.sql", "line": 3}],
    }]
    assert db_project.database.query(SCRATCH).strip() == "0"
    assert db_project.database.query(
        "SELECT count(*) FROM pg_tables WHERE tablename = 'a'").strip() == "0"


def test_migrations_that_run_pass(db_project: DbProject) -> None:
    db_project.add_migration("first", "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n", pin=False)
    db_project.add_migration("second", "BEGIN;\nINSERT INTO a VALUES (1);\nCOMMIT;\n",
                             pin=False)
    result = db_project.run("lint", "--db")
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == ("2 migrations linted: 0 errors, 0 warnings; every statement ran "
                             "on a scratch database\n")
    assert db_project.database.query(SCRATCH).strip() == "0"


def test_syntax_errors_skip_the_database(db_project: DbProject) -> None:
    db_project.add_migration("first", "SELEC 1;\n", pin=False)
    result = db_project.run("lint", "--db")
    assert result.exit_code == 1
    assert result.stderr.endswith(
        "; --db was skipped: fix the syntax and render errors first\n")


def test_copy_from_stdin_is_skipped_not_hung(db_project: DbProject) -> None:
    db_project.add_migration(
        "first", "BEGIN;\nCREATE TABLE a (id int);\nCOPY a FROM stdin;\n1\n\\.\nSELECT 1;\n"
        "COMMIT;\n", pin=False)
    result = db_project.run("lint", "--db")
    assert (result.exit_code, result.stdout) == (0, "")
