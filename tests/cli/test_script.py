"""Ad-hoc scripts (issue 14): ``spawn script new|run`` through the real ``spawn`` against
the test suite's PostgreSQL, and the ``003-script-run`` internal migration."""

from __future__ import annotations

import re

from spawn_db.migrate.script import STARTER_SCRIPT
from tests.conftest import DbProject
from tests.helpers import run_on_terminal
from tests.migrate.history import history
from tests.migrate.test_tracking import SPEC_001


def script(db_project: DbProject, name: str, sql: str) -> None:
    folder = db_project.spawn_dir / "scripts"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.sql").write_text(sql, encoding="utf-8")


def test_new_creates_a_starter_script_and_never_overwrites(db_project: DbProject) -> None:
    created = db_project.run("script", "new", "fix-orders")

    path = db_project.spawn_dir / "scripts" / "fix-orders.sql"
    assert created.exit_code == 0, created.stderr
    assert created.stdout == f"Created {path}\n"
    assert path.read_text() == STARTER_SCRIPT.format(name="fix-orders")

    again = db_project.run("script", "new", "fix-orders")
    assert again.exit_code == 2
    assert again.stderr == f"error: {path} already exists; choose another name or edit it\n"

    bad = db_project.run("script", "new", "../up")
    assert bad.exit_code == 2
    assert bad.stderr.startswith("error: invalid script name '../up'")


def test_run_renders_from_the_working_tree_and_prints_psqls_output(
    db_project: DbProject,
) -> None:
    db_project.add_component("greeting.sql", "SELECT {{ variables.who }} AS hello;\n")
    script(db_project, "hello", "{% include 'greeting.sql' %}")
    variables = db_project.root / "vars.json"
    variables.write_text('{"who": "world"}')

    printed = db_project.run("script", "run", "hello", "--variables", str(variables), "--print")
    assert printed.exit_code == 0, printed.stderr
    assert printed.stdout == "SELECT 'world' AS hello;\n"

    result = db_project.run("script", "run", "hello", "--variables", str(variables))

    assert result.exit_code == 0, result.stderr
    assert result.stdout == " hello \n-------\n world\n(1 row)\n\n"
    assert result.stderr == ""


def test_run_takes_a_path_and_exits_with_psqls_code(db_project: DbProject) -> None:
    db_project.database.query("CREATE TABLE t (id int)")
    path = db_project.root / "one-off.sql"
    path.write_text("INSERT INTO t VALUES (1);\nSELECT 1/0;\nINSERT INTO t VALUES (2);\n")

    result = db_project.run("script", "run", "one-off.sql")

    assert result.exit_code == 3
    assert "ERROR:  division by zero" in result.stderr
    # psql stopped at the error: the statement after it did not run.
    assert db_project.database.query("SELECT string_agg(id::text, ',') FROM t") == "1"
    assert db_project.database.query("SELECT to_regclass('_spawn.script_run') IS NULL") == "t"

    missing = db_project.run("script", "run", "nope")
    assert missing.exit_code == 2
    assert missing.stderr == (
        f"error: no script 'nope': {db_project.spawn_dir / 'scripts' / 'nope.sql'} does not "
        "exist; create it with `spawn script new nope` or pass the path of a .sql file\n")


def test_prod_needs_yes_or_an_answer(db_project: DbProject) -> None:
    db_project.database.query("CREATE TABLE t (id int)")
    script(db_project, "add", "INSERT INTO t VALUES (1);\n")

    refused = db_project.run("--environment", "prod", "script", "run", "add")

    assert refused.exit_code == 2
    assert refused.stderr == (
        "error: not running spawn/scripts/add.sql on target local: its environment is prod, "
        "and spawn cannot ask for confirmation because standard input is not a terminal; "
        "pass --yes to run it\n")
    assert db_project.database.query("SELECT count(*) FROM t") == "0"

    declined = run_on_terminal(db_project.root, ["--environment", "prod", "script", "run",
                                                 "add"], answer="n\n")
    assert "Run spawn/scripts/add.sql on target local (environment prod)? [y/N]" in declined
    assert declined.endswith("Cancelled; nothing was run.\n")
    assert db_project.database.query("SELECT count(*) FROM t") == "0"

    ran = db_project.run("--environment", "prod", "script", "run", "add", "--yes")
    assert ran.exit_code == 0, ran.stderr
    assert db_project.database.query("SELECT count(*) FROM t") == "1"


def test_record_writes_a_script_run_row_and_no_history(db_project: DbProject) -> None:
    script(db_project, "ok", "SELECT 1;\n")
    script(db_project, "bad", "SELECT 1/0;\n")

    ok = db_project.run("script", "run", "ok", "--record")
    bad = db_project.run("script", "run", "bad", "--record")

    assert ok.exit_code == 0, ok.stderr
    assert ok.stderr.endswith("Recorded spawn/scripts/ok.sql (exit code 0) in "
                              "_spawn.script_run.\n")
    assert bad.exit_code == 3
    rows = db_project.database.query(
        "SELECT name, environment, exit_code, length(checksum), created_by <> '', "
        "execution_time > '0'::interval FROM _spawn.script_run ORDER BY script_run_id")
    assert rows == "spawn/scripts/ok.sql|dev|0|16|t|t\nspawn/scripts/bad.sql|dev|3|16|t|t"
    assert history(db_project.database) == []
    assert history(db_project.database, "spawn") == [
        ("001-base-migration-table", "APPLY", "SUCCESS"),
        ("002-migration-history-lookup-index", "APPLY", "SUCCESS"),
        ("003-script-run", "APPLY", "SUCCESS")]


def test_a_rust_tool_database_gains_003_and_its_tables_stay_as_they_were(
    db_project: DbProject,
) -> None:
    database = db_project.database
    database.query(SPEC_001.format(s="_spawn"))
    database.query(
        "CREATE INDEX migration_history_migration_idx ON _spawn.migration_history "
        "(migration_id_migration, migration_history_id);"
        "INSERT INTO _spawn.migration (name, namespace) VALUES "
        "('001-base-migration-table', 'spawn'), ('002-migration-history-lookup-index', "
        "'spawn'), ('20240101000000-users', 'default');"
        "INSERT INTO _spawn.migration_history (migration_id_migration, activity_id_activity, "
        "created_by, description, status_note, status_id_status, checksum, execution_time) "
        "SELECT migration_id, 'APPLY', 'rust', '', '', 'SUCCESS', '\\x01'::bytea, '1 second' "
        "FROM _spawn.migration ORDER BY migration_id")
    rust_tables = ("SELECT string_agg(t::text, E'\\n' ORDER BY t::text) FROM ("
                   "SELECT m::text AS t FROM _spawn.migration m UNION ALL "
                   "SELECT h::text FROM _spawn.migration_history h UNION ALL "
                   "SELECT a::text FROM _spawn.activity a UNION ALL "
                   "SELECT s::text FROM _spawn.status s) x")
    columns = ("SELECT string_agg(table_name || '.' || column_name || ' ' || data_type, ', ' "
               "ORDER BY table_name, ordinal_position) FROM information_schema.columns "
               "WHERE table_schema = '_spawn' AND table_name <> 'script_run'")
    before_rows, before_columns = database.query(rust_tables), database.query(columns)
    script(db_project, "ok", "SELECT 1;\n")

    result = db_project.run("script", "run", "ok", "--record")

    assert result.exit_code == 0, result.stderr
    assert database.query(columns) == before_columns
    after = database.query(rust_tables).splitlines()
    new = [line for line in after if line not in before_rows.splitlines()]
    assert len(new) == 2 and re.fullmatch(r"\(\d+,003-script-run,spawn\)", new[0]), new
    assert new[1].startswith("(") and ",APPLY," in new[1] and ",SUCCESS," in new[1]
    assert database.query("SELECT name FROM _spawn.script_run") == "spawn/scripts/ok.sql"
