"""Apply never records SUCCESS for what did not commit, never overlaps two runs of one
migration, and always leaves a trace: killed and terminated spawns, a lost lock, open
transactions, ON_ERROR_STOP off, and errors that must name the real cause."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import DbProject, EmbeddedProject, TestDatabase
from tests.helpers import start_spawn
from tests.migrate.history import latest


def sleeping(database: TestDatabase, text: str) -> None:
    database.wait_until("SELECT EXISTS (SELECT FROM pg_stat_activity "
                        "WHERE datname = current_database() AND state = 'active' "
                       f"AND query LIKE '%{text}%' AND pid <> pg_backend_pid())")


def active_backends(database: TestDatabase, text: str) -> int:
    return int(database.query(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND state = 'active' "
        f"AND query LIKE '%{text}%' AND pid <> pg_backend_pid()"))


# -- 10: nothing that did not commit is SUCCESS ---------------------------------------------


def test_open_transaction_without_final_semicolon_is_failure(db_project: DbProject) -> None:
    name = db_project.add_migration("open", "BEGIN;\nCREATE TABLE never_committed (a int)")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1, result.stderr
    assert f"migration {name} failed" in result.stderr
    assert "transaction block" in result.stderr
    assert latest(db_project.database) == {name: "FAILURE"}
    assert db_project.database.query("SELECT to_regclass('never_committed') IS NULL") == "t"


def test_final_statement_without_semicolon_still_commits(db_project: DbProject) -> None:
    name = db_project.add_migration("tail", "CREATE TABLE tail_table (a int)")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert latest(db_project.database) == {name: "SUCCESS"}
    assert db_project.database.query("SELECT to_regclass('tail_table') IS NOT NULL") == "t"


def test_error_with_on_error_stop_off_is_failure(db_project: DbProject) -> None:
    name = db_project.add_migration(
        "nostop", "\\set ON_ERROR_STOP off\nBEGIN;\nCREATE TABLE rolled_back (a int);\n"
                  "SELECT 1/0;\nCOMMIT;\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1, result.stderr
    assert f"migration {name} failed" in result.stderr
    assert "division by zero" in result.stderr
    assert latest(db_project.database) == {name: "FAILURE"}
    assert db_project.database.query("SELECT to_regclass('rolled_back') IS NULL") == "t"


def test_error_with_on_error_stop_off_then_later_statements_is_failure(
    db_project: DbProject,
) -> None:
    name = db_project.add_migration(
        "nostop2", "\\set ON_ERROR_STOP off\nSELECT no_such_column FROM pg_class;\n"
                   "CREATE TABLE after_error (a int);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1, result.stderr
    assert "no_such_column" in result.stderr
    assert latest(db_project.database) == {name: "FAILURE"}


# -- 8: a killed spawn's migration never overlaps a retry ------------------------------------


def test_sessions_are_named_after_the_migration(db_project: DbProject) -> None:
    db_project.add_migration("slow", "SELECT pg_sleep(1.5);\n")
    proc = start_spawn("migration", "apply", "--yes", cwd=db_project.root)
    try:
        sleeping(db_project.database, "pg_sleep(1.5)")
        names = db_project.database.query(
            "SELECT application_name FROM pg_stat_activity "
            "WHERE datname = current_database() AND query LIKE '%pg_sleep(1.5)%' "
            "AND pid <> pg_backend_pid()")
    finally:
        proc.communicate(timeout=60)
    assert names.startswith("spawn apply "), names
    assert names.endswith("-slow"), names


def test_sigkill_then_retry_never_runs_the_migration_twice(db_project: DbProject) -> None:
    database = db_project.database
    db_project.add_migration("log", "CREATE TABLE kill_log (n int);\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    slow = db_project.add_migration("slow", "INSERT INTO kill_log SELECT 1 FROM pg_sleep(2);\n")

    proc = start_spawn("migration", "apply", "--yes", cwd=db_project.root)
    sleeping(database, "pg_sleep(2)")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)

    attempts = []
    for _ in range(40):
        retry = db_project.run("migration", "apply", slow, "--retry", "--yes")
        attempts.append(retry)
        if retry.exit_code == 0:
            break
        assert "still running" in retry.stderr, retry.stderr
        time.sleep(0.25)
    assert attempts[-1].exit_code == 0, [a.stderr for a in attempts]
    time.sleep(2.5)
    assert database.query("SELECT count(*) FROM kill_log") == "1"
    assert latest(database)[slow] == "SUCCESS"


def test_orphaned_migration_is_reported_while_it_runs(db_project: DbProject) -> None:
    """A wrapper (here ``sh -c``) keeps psql alive after spawn dies: the orphan runs on,
    and a retry must refuse, naming it, rather than run alongside it."""
    database = db_project.database
    argv = " ".join(database.psql_argv())
    db_project.config_path.write_text(
        'spawn_folder = "spawn"\ntarget = "local"\n\n[targets.local]\n'
        'engine = "postgres-psql"\n'
        'command = { kind = "direct", direct = '
        f'["sh", "-c", "{argv} \\"$@\\"; exit $?", "sh"] }}\n',
        encoding="utf-8")
    db_project.add_migration("log", "CREATE TABLE orphan_log (n int);\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    slow = db_project.add_migration("slow", "INSERT INTO orphan_log SELECT 1 FROM pg_sleep(3);\n")

    proc = start_spawn("migration", "apply", "--yes", cwd=db_project.root)
    sleeping(database, "pg_sleep(3)")
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=10)
    retry = db_project.run("migration", "apply", slow, "--retry", "--yes",
                           "--lock-timeout", "0")

    assert retry.exit_code == 1, retry.stderr
    assert "still running" in retry.stderr
    assert "pg_terminate_backend" in retry.stderr
    database.wait_until("SELECT count(*) = 0 FROM pg_stat_activity "
                        "WHERE datname = current_database() AND query LIKE "
                       "'%pg_sleep(3)%' AND pid <> pg_backend_pid()")
    assert database.query("SELECT count(*) FROM orphan_log") == "1"


# -- 9: a lost lock stops the run ------------------------------------------------------------


def test_idle_session_timeout_does_not_end_spawn_sessions(db_project: DbProject) -> None:
    database = db_project.database
    database.query(f"ALTER DATABASE {database.name} SET idle_session_timeout = '300ms'")
    names = [db_project.add_migration("a", "SELECT pg_sleep(1);\n"),
             db_project.add_migration("b", "SELECT pg_sleep(0.5);\n"),
             db_project.add_migration("c", "\\echo isolated\nSELECT pg_sleep(0.5);\n")]

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert latest(database) == dict.fromkeys(names, "SUCCESS")


def test_losing_the_lock_stops_the_run(db_project: DbProject) -> None:
    database = db_project.database
    first = db_project.add_migration("first", "SELECT pg_sleep(2);\n")
    second = db_project.add_migration("second", "CREATE TABLE after_lock_loss (a int);\n")

    proc = start_spawn("migration", "apply", "--yes", cwd=db_project.root)
    sleeping(database, "pg_sleep(2)")
    database.query("SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
                   "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1")
    code = proc.wait(timeout=60)
    _, err = proc.communicate()

    assert code == 1, err
    assert "migration lock" in err and "lost" in err, err
    assert second not in latest(database)
    assert database.query("SELECT to_regclass('after_lock_loss') IS NULL") == "t"
    assert latest(database).get(first) in ("SUCCESS", "ATTEMPTED")


# -- 12: the real error is reported -----------------------------------------------------------


def test_error_names_the_migration_that_was_running_when_the_server_went_away(
    db_project: DbProject,
) -> None:
    database = db_project.database
    db_project.add_migration("one", "SELECT 1;\n")
    victim = db_project.add_migration("two", "SELECT pg_sleep(5);\n")
    db_project.add_migration("three", "SELECT 3;\n")

    proc = start_spawn("migration", "apply", "--yes", cwd=db_project.root)
    sleeping(database, "pg_sleep(5)")
    database.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                   "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    code = proc.wait(timeout=60)
    _, err = proc.communicate()

    assert code == 1, err
    assert victim in err, err
    assert "Traceback" not in err
    assert "releasing the migration lock" not in err, err


# -- 13: SIGTERM is handled like Ctrl-C ---------------------------------------------------------


def test_sigterm_cancels_records_and_says_so(db_project: DbProject) -> None:
    database = db_project.database
    db_project.add_migration("log", "CREATE TABLE term_log (n int);\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    slow = db_project.add_migration("slow", "INSERT INTO term_log SELECT 1 FROM pg_sleep(3);\n")

    proc = start_spawn("migration", "apply", "--yes", cwd=db_project.root)
    sleeping(database, "pg_sleep(3)")
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    _, err = proc.communicate()

    assert code == 143, err
    assert f"migration {slow} interrupted" in err, err
    assert "Traceback" not in err
    assert latest(database)[slow] == "FAILURE"
    assert active_backends(database, "pg_sleep(3)") == 0
    time.sleep(3.5)
    assert database.query("SELECT count(*) FROM term_log") == "0"


# -- 11: the ATTEMPTED row is durable before the migration starts ------------------------------


def test_attempted_row_survives_an_immediate_stop(
    embedded_project: EmbeddedProject, tmp_path: Path,
) -> None:
    """COPY ... TO PROGRAM has an effect outside the database and writes no WAL: once it has
    run, a crash must still leave the migration's ATTEMPTED row behind. The WAL writer is
    slowed down so that an asynchronously committed row would still be only in memory."""
    project = embedded_project
    marker = Path(tempfile.mkdtemp(prefix="spawn-effect-", dir="/tmp")) / "done"
    os.chmod(marker.parent, 0o777)
    folder = project.root / "spawn" / "migrations" / "20260101000000-effect"
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text(
        f"COPY (SELECT 1) TO PROGRAM 'touch {marker}';\nSELECT pg_sleep(30);\n")
    assert project.run("migration", "pin", folder.name).exit_code == 0
    settings = project.run("db", "shell", "--", "-At",
                           "-c", "ALTER SYSTEM SET wal_writer_delay = '10s'",
                           "-c", "ALTER SYSTEM SET wal_writer_flush_after = '1GB'",
                           "-c", "SELECT pg_reload_conf()")
    assert settings.exit_code == 0, settings.stderr
    try:
        proc = start_spawn("migration", "apply", "--yes", cwd=project.root)
        deadline = time.monotonic() + 30
        while not marker.exists():
            assert time.monotonic() < deadline, proc.communicate()
            time.sleep(0.002)
        pidfile = project.root / ".spawn" / "postgres" / "postmaster.pid"
        os.kill(int(pidfile.read_text().split()[0]), signal.SIGQUIT)
        proc.communicate(timeout=30)
    finally:
        shutil.rmtree(marker.parent, ignore_errors=True)
    rows = project.run("db", "shell", "--", "-Atc",
                       "SELECT m.name || ' ' || h.status_id_status FROM _spawn.migration_history h "
                       "JOIN _spawn.migration m ON m.migration_id = h.migration_id_migration "
                       "WHERE m.namespace = 'default' ORDER BY h.migration_history_id")
    assert rows.exit_code == 0, rows.stderr
    assert rows.stdout.splitlines()[:1] == [f"{folder.name} ATTEMPTED"]


# -- 23: the summary's time is the run's, not the prompt's ------------------------------------


def test_summary_time_excludes_the_confirmation_prompt(db_project: DbProject) -> None:
    import pty
    import re

    db_project.add_migration("one", "SELECT 1;\n")
    db_project.add_migration("two", "SELECT 2;\n")
    controller, terminal = pty.openpty()
    try:
        proc = start_spawn("migration", "apply", cwd=db_project.root, stdin=terminal)
        time.sleep(2.5)
        os.write(controller, b"y\n")
        out, err = proc.communicate(timeout=60)
    finally:
        os.close(controller)
        os.close(terminal)

    assert proc.returncode == 0, err
    found = re.search(r"Applied 2 migrations in ([0-9.]+) (ms|s)\.", err)
    assert found is not None, err
    seconds = float(found.group(1)) / (1000 if found.group(2) == "ms" else 1)
    assert seconds < 2.0, out


def test_an_error_releasing_the_lock_never_replaces_the_real_error(
    db_project: DbProject,
) -> None:
    """The control session's backend is gone (killed, server restarted) while psql lives on:
    releasing the lock fails, and the error that ended the run must still be the one shown."""
    from spawn_db.config import Overrides, load_config
    from spawn_db.errors import MigrationFailed
    from spawn_db.migrate.apply import NullReporter, _locked, tracking_session

    config = load_config(Overrides(config_file=str(db_project.config_path)))
    with tracking_session(config) as tracking:
        real = MigrationFailed("migration x failed: the real error")
        try:
            with _locked(tracking, 5, NullReporter()):
                db_project.database.query(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND application_name = 'spawn'")
                raise real
        except MigrationFailed as exc:
            assert exc is real
        else:
            raise AssertionError("the error was swallowed")


def test_losing_the_lock_during_the_last_migration_is_not_a_success(
    db_project: DbProject,
) -> None:
    database = db_project.database
    only = db_project.add_migration("only", "SELECT pg_sleep(1.5);\n")

    proc = start_spawn("migration", "apply", "--yes", cwd=db_project.root)
    sleeping(database, "pg_sleep(1.5)")
    database.query("SELECT pg_terminate_backend(l.pid) FROM pg_locks l "
                   "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1")
    code = proc.wait(timeout=60)
    _, err = proc.communicate()

    assert code == 1, err
    assert "migration lock" in err and "lost before the run ended" in err, err
    assert latest(database) == {only: "SUCCESS"}


@pytest.mark.parametrize("body", [
    "\\echo x\nCREATE TABLE after_meta (a int)",
    "\\set v 1\nCREATE TABLE after_meta (a int)\n",
    "SELECT 1 AS v \\gset\nCREATE TABLE after_meta (a int) ",
])
def test_final_statement_without_semicolon_after_a_meta_command_commits(
    db_project: DbProject, body: str,
) -> None:
    """A script with a meta-command runs in its own psql; its last statement without ``;``
    must run as psql runs it at the end of input, not merge with spawn's own epilogue."""
    name = db_project.add_migration("meta-tail", body)

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert latest(db_project.database) == {name: "SUCCESS"}
    assert db_project.database.query("SELECT to_regclass('after_meta') IS NOT NULL") == "t"
