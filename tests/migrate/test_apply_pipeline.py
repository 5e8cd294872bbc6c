"""The shared runner's pipeline (issue 13's apply speed): migrations are queued ahead in
psql's input and the bookkeeping between two of them is one message, yet a migration's
session changes never reach the next one, a failure stops before every queued migration,
and a psql killed in the middle of a migration never leaves it SUCCESS."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.conftest import DbProject
from tests.helpers import start_spawn
from tests.migrate.history import history, latest
from tests.migrate.test_apply_targets import set_target, toml_list, write_script
from tests.migrate.test_apply_trust import sleeping

# Every setting spawn gives a runner session, changed by a migration; the next migration
# records what it starts with.
CHANGE_SETTINGS = """\
CREATE TABLE seen (name text, setting text);
SET idle_in_transaction_session_timeout = '5min';
SET idle_session_timeout = '5min';
SET client_connection_check_interval = '7s';
SET standard_conforming_strings = off;
SET search_path = pg_catalog;
"""
RECORD_SETTINGS = """\
INSERT INTO seen SELECT name, setting FROM pg_settings WHERE name IN (
    'idle_in_transaction_session_timeout', 'idle_session_timeout',
    'client_connection_check_interval', 'standard_conforming_strings', 'client_encoding',
    'search_path', 'synchronous_commit', 'application_name');
"""


@pytest.mark.parametrize("command", ["psql", "wrapper"])
def test_a_migrations_settings_are_undone_before_the_next_one(
    db_project: DbProject, tmp_path: Path, command: str,
) -> None:
    """psql started directly connects with spawn's settings in ``PGOPTIONS``, so the
    ``RESET ALL`` after a migration restores them without setting them again; through a
    wrapper (which may drop the environment) they are set again after it. Either way the
    next migration starts with spawn's settings, not the database's (set here to others)
    nor the ones the migration before changed."""
    database = db_project.database
    if command == "wrapper":
        wrapper = write_script(tmp_path / "my-wrapper",
                               f'exec {database.psql} "$@"\n')
        set_target(db_project, f'{{ kind = "direct", direct = '
                               f'{toml_list([str(wrapper), *database.psql_argv()[1:]])} }}')
    database.query(f'ALTER DATABASE "{database.name}" SET idle_in_transaction_session_timeout '
                   "= '9min'", "postgres")
    db_project.add_migration("change", CHANGE_SETTINGS)
    record = db_project.add_migration("record", RECORD_SETTINGS)

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    seen = dict(line.split("|") for line in database.query(
        "SELECT name, setting FROM seen ORDER BY name").splitlines())
    assert seen == {
        "application_name": f"spawn apply {record}",
        "client_connection_check_interval": "1000",
        "client_encoding": "UTF8",
        "idle_in_transaction_session_timeout": "0",
        "idle_session_timeout": "0",
        "search_path": '"$user", public',
        "standard_conforming_strings": "on",
        "synchronous_commit": "off",
    }


def test_a_failure_stops_before_every_queued_migration(db_project: DbProject) -> None:
    """Several migrations are queued in psql's input while one runs; when it fails, psql
    stops there: it is recorded FAILURE and none of those queued after it starts or gets a
    history row."""
    database = db_project.database
    names = [db_project.add_migration(f"t{n}", f"CREATE TABLE t{n} (a int);\n")
             for n in (1, 2)]
    failing = db_project.add_migration("fails", "CREATE TABLE t3 (a int);\nSELECT 1 / 0;\n")
    queued = [db_project.add_migration(f"t{n}", f"CREATE TABLE t{n} (a int);\n")
              for n in (4, 5, 6, 7)]

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1, result.stderr
    assert f"migration {failing} failed (2 of 7 applied before it)" in result.stderr
    assert "division by zero" in result.stderr
    assert history(database) == [
        (names[0], "APPLY", "ATTEMPTED"), (names[0], "APPLY", "SUCCESS"),
        (names[1], "APPLY", "ATTEMPTED"), (names[1], "APPLY", "SUCCESS"),
        (failing, "APPLY", "ATTEMPTED"), (failing, "APPLY", "FAILURE"),
    ]
    assert database.query("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
                          "WHERE relname ~ '^t[0-9]$'") == "t1,t2,t3"
    assert not set(queued) & set(latest(database))


def _runner_psql(spawn_pid: int) -> int:
    """The pid of spawn's runner psql: the child started with ``PGAPPNAME=spawn apply``
    (the control session is the other psql)."""
    for task in Path(f"/proc/{spawn_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
            if b"PGAPPNAME=spawn apply" in environ:
                return int(child)
    raise AssertionError("no runner psql found")


def test_a_killed_runner_psql_never_leaves_its_migration_success(
    db_project: DbProject,
) -> None:
    """psql killed (SIGKILL) while a migration runs and the next ones are queued: the
    server cancels the migration (its client is gone), spawn records it FAILURE, never
    SUCCESS, and no queued migration starts."""
    database = db_project.database
    db_project.add_migration("table", "CREATE TABLE kill_probe (n int);\n")
    slow = db_project.add_migration("slow", "INSERT INTO kill_probe SELECT 1 "
                                            "FROM pg_sleep(30);\n")
    after = [db_project.add_migration(f"after{n}", f"CREATE TABLE after_{n} (a int);\n")
             for n in (1, 2)]
    proc = start_spawn("migration", "apply", "--yes", cwd=db_project.root)
    try:
        sleeping(database, "pg_sleep(30)")
        os.kill(_runner_psql(proc.pid), signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()

    assert proc.returncode == 1, err
    assert f"migration {slow} failed" in err
    database.wait_until("SELECT count(*) = 0 FROM pg_stat_activity WHERE datname = "
                        "current_database() AND query LIKE '%pg_sleep(30)%' "
                        "AND pid <> pg_backend_pid()")
    assert [row for row in history(database) if row[0] == slow] == [
        (slow, "APPLY", "ATTEMPTED"), (slow, "APPLY", "FAILURE")]
    assert database.query("SELECT count(*) FROM kill_probe") == "0"
    assert not set(after) & set(latest(database))
    assert database.query("SELECT to_regclass('after_1') IS NULL "
                          "AND to_regclass('after_2') IS NULL") == "t"


def test_a_failure_while_spawn_renders_ahead_runs_nothing_after_it(
    db_project: DbProject,
) -> None:
    """psql stops at a failing migration while spawn is still rendering the ones after it
    (a slow template): spawn must notice that the session ended with migrations queued,
    record the failure, and never start a new session for the rest. It used to replace the
    dead session with a new one and run the next migrations there, with no history row."""
    database = db_project.database
    db_project.add_migration("t1", "CREATE TABLE t1 (a int);\n")
    failing = db_project.add_migration("fails", "CREATE TABLE t2 (a int);\nSELECT 1 / 0;\n")
    slow = "{% for i in range(400000) %}{% endfor %}"
    after = [db_project.add_migration(f"t{n}", f"{slow}CREATE TABLE t{n} (a int);\n")
             for n in (3, 4, 5, 6)]

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1, result.stderr
    assert f"migration {failing} failed (1 of 6 applied before it)" in result.stderr
    assert database.query("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
                          "WHERE relname ~ '^t[0-9]$'") == "t1,t2"
    assert latest(database)[failing] == "FAILURE"
    assert not set(after) & set(latest(database))


def test_a_failing_down_script_while_spawn_renders_ahead_reverts_nothing_after_it(
    db_project: DbProject,
) -> None:
    """Revert runs through the same runner: a down script fails while spawn still renders
    the (slow) down scripts after it; it is recorded REVERT FAILURE and nothing older is
    reverted in a new session."""
    database = db_project.database
    slow = "{% for i in range(400000) %}{% endfor %}"
    names = []
    for n in (1, 2, 3, 4, 5):
        names.append(name := db_project.add_migration(f"t{n}", f"CREATE TABLE t{n} (a int);\n",
                                                      pin=False))
        down = "SELECT 1 / 0;\n" if n == 4 else f"{slow}DROP TABLE t{n};\n"
        (db_project.spawn_dir / "migrations" / name / "down.sql").write_text(
            down, encoding="utf-8")
    assert db_project.run("migration", "pin", "--all").exit_code == 0
    assert db_project.run("migration", "apply", "--yes").exit_code == 0

    result = db_project.run("migration", "revert", "--steps", "5", "--yes")

    assert result.exit_code == 1, result.stderr
    assert f"reverting migration {names[3]} failed (1 of 5 reverted before it)" in result.stderr
    assert database.query("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
                          "WHERE relname ~ '^t[0-9]$'") == "t1,t2,t3,t4"
    reverts = [(n, s) for n, a, s in history(database) if a == "REVERT"]
    assert reverts == [(names[4], "ATTEMPTED"), (names[4], "SUCCESS"),
                       (names[3], "ATTEMPTED"), (names[3], "FAILURE")]
