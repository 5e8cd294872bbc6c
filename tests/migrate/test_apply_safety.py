"""The migration lock and crash safety: concurrent appliers, CREATE INDEX CONCURRENTLY
while another applier waits, a bounded wait naming the holder, SIGKILL then --retry."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time

from tests.conftest import DbProject
from tests.helpers import start_spawn
from tests.migrate.history import history, latest

LOCK_KEY = -6823468568242361246


def test_six_concurrent_appliers_apply_each_migration_exactly_once(
    db_project: DbProject,
) -> None:
    db_project.add_migration("log", "CREATE TABLE apply_log (n int NOT NULL);\n")
    names = [
        db_project.add_migration(f"m{i:02}", f"SELECT pg_sleep(0.01);\n"
                                             f"INSERT INTO apply_log VALUES ({i});\n")
        for i in range(20)
    ]

    procs = [start_spawn("migration", "apply", "--yes", cwd=db_project.root) for _ in range(6)]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]

    assert [code for code, _, _ in results] == [0] * 6, [err for _, _, err in results]
    outputs = sorted(err.splitlines()[-1] + "\n" for _, _, err in results)
    assert outputs.count("Nothing to apply: every migration is applied (21 in total).\n") >= 1
    assert db_project.database.query(
        "SELECT count(*), count(DISTINCT n) FROM apply_log") == "20|20"
    successes = [row for row in history(db_project.database) if row[2] == "SUCCESS"]
    assert len(successes) == 21
    assert set(latest(db_project.database)) == {*names, successes[0][0]}


def test_create_index_concurrently_while_another_applier_waits(db_project: DbProject) -> None:
    """The second applier polls for the lock outside any transaction, or the first one's
    CREATE INDEX CONCURRENTLY (which waits for every open transaction) would never end.
    A gate the test holds keeps the first migration running until the second is seen
    waiting, however slowly the machine starts it."""
    database = db_project.database
    db_project.add_migration("table", "CREATE TABLE big (a int);\n"
                                      "INSERT INTO big SELECT generate_series(1, 1000);\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    index = db_project.add_migration(
        "index", f"SELECT pg_advisory_lock({GATE});\nSELECT pg_advisory_unlock({GATE});\n"
                 "CREATE INDEX CONCURRENTLY big_a ON big (a);\n")

    gate = subprocess.Popen([*database.psql_argv(), "-q"], stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, text=True)
    assert gate.stdin is not None
    gate.stdin.write(f"SELECT pg_advisory_lock({GATE});\n")
    gate.stdin.flush()
    database.wait_until("SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' "
                        f"AND objid = {GATE} AND granted)")
    first = start_spawn("migration", "apply", "--yes", cwd=db_project.root)
    database.wait_until("SELECT EXISTS (SELECT FROM pg_stat_activity "
                        "WHERE datname = current_database() AND wait_event_type = 'Lock' "
                        "AND query LIKE 'SELECT pg_advisory_lock(%')")
    second = start_spawn("migration", "apply", "--yes", "--lock-timeout", "60",
                         cwd=db_project.root)
    said = read_until(second, "waiting for the migration lock", timeout=60)
    gate.stdin.write(f"SELECT pg_advisory_unlock({GATE});\n")
    gate.stdin.close()
    gate.wait(timeout=30)
    first_code = first.wait(timeout=60)
    second_code = second.wait(timeout=60)
    _, first_err = first.communicate()
    _, rest = second.communicate()
    second_err = said + rest

    assert first_code == 0, first_err
    assert second_code == 0, second_err
    assert first_err.endswith("Applied 1 migration in " + first_err.split(" in ")[-1])
    assert "waiting for the migration lock, held by pid " in second_err
    assert "application 'spawn'" in second_err
    assert second_err.endswith("Nothing to apply: every migration is applied (2 in total).\n")
    assert latest(database)[index] == "SUCCESS"
    assert database.query("SELECT indisvalid FROM pg_index WHERE indexrelid = 'big_a'::regclass") \
        == "t"


GATE = 731_905


def read_until(proc: subprocess.Popen[str], text: str, *, timeout: float) -> str:
    """Lines of ``proc``'s stderr up to the one holding ``text`` (its stdout is left for
    ``communicate``)."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout
    seen = ""
    while text not in seen:
        assert time.monotonic() < deadline, seen
        line = proc.stderr.readline()
        assert line, f"spawn ended before saying {text!r}: {seen}"
        seen += line
    return seen


def test_lock_wait_is_bounded_and_names_the_holder(db_project: DbProject) -> None:
    db_project.add_migration("one", "CREATE TABLE one ();\n")
    holder = subprocess.Popen(
        [*db_project.database.psql_argv(), "-c",
         f"SELECT pg_advisory_lock({LOCK_KEY}), pg_sleep(60)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "PGAPPNAME": "holder-under-test"},
    )
    try:
        db_project.database.wait_until("SELECT EXISTS (SELECT FROM pg_locks WHERE "
                                      "locktype = 'advisory' AND granted)")
        pid = db_project.database.query(
            "SELECT pid FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name = 'holder-under-test'")

        started = time.monotonic()
        result = db_project.run("migration", "apply", "--yes", "--lock-timeout", "1")
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait()

    assert result.exit_code == 1
    assert f"error: the migration lock of database {db_project.database.name} is still held " \
           f"after 1 s by pid {pid}, application 'holder-under-test'" in result.stderr
    assert "pass a longer --lock-timeout" in result.stderr
    assert waited < 15
    assert db_project.database.query("SELECT to_regclass('one') IS NULL") == "t"


def test_sigkill_during_a_migration_leaves_it_attempted_and_retry_finishes_it(
    db_project: DbProject,
) -> None:
    database = db_project.database
    name = db_project.add_migration(
        "slow", "BEGIN;\nCREATE TABLE slow_done (id int);\nSELECT pg_sleep(3);\nCOMMIT;\n")
    later = db_project.add_migration("later", "CREATE TABLE later ();\n")

    proc = start_spawn("migration", "apply", "--yes", cwd=db_project.root)
    database.wait_until("SELECT EXISTS (SELECT FROM pg_stat_activity "
                        "WHERE datname = current_database() AND query = "
                       "'SELECT pg_sleep(3);' AND state = 'active')")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    proc.communicate()
    database.wait_until("SELECT NOT EXISTS (SELECT FROM pg_stat_activity "
                        "WHERE datname = current_database() AND query = "
                       "'SELECT pg_sleep(3);')", timeout=5)

    assert latest(database) == {name: "ATTEMPTED"}
    status = db_project.run("migration", "status")
    assert re.search(rf"^{name} +✓ +✓ +✓ +⚠ Attempted$", status.stdout, re.M)
    refused = db_project.run("migration", "apply", "--yes")
    assert refused.exit_code == 1
    assert f"migration {name} was attempted but never completed" in refused.stderr

    retried = db_project.run("migration", "apply", "--yes", "--retry")

    assert retried.exit_code == 0, retried.stderr
    assert latest(database) == {name: "SUCCESS", later: "SUCCESS"}
    assert database.query("SELECT to_regclass('slow_done') IS NOT NULL") == "t"


def test_ctrl_c_cancels_the_running_migration_and_records_the_failure(
    db_project: DbProject,
) -> None:
    database = db_project.database
    name = db_project.add_migration(
        "slow", "BEGIN;\nCREATE TABLE slow_done (id int);\nSELECT pg_sleep(20);\nCOMMIT;\n")

    proc = start_spawn("migration", "apply", "--yes", cwd=db_project.root)
    database.wait_until("SELECT EXISTS (SELECT FROM pg_stat_activity "
                        "WHERE datname = current_database() AND query = "
                       "'SELECT pg_sleep(20);' AND state = 'active')")
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    code = proc.wait(timeout=30)
    _, err = proc.communicate()

    assert time.monotonic() - started < 10
    assert code == 1
    assert f"error: migration {name} interrupted (0 of 1 applied before it); recorded as " \
        "FAILURE" in err
    assert "canceling statement due to user request" in err
    assert latest(database) == {name: "FAILURE"}
    assert database.query("SELECT to_regclass('slow_done') IS NULL") == "t"
    assert database.query("SELECT count(*) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND query = "
                          "'SELECT pg_sleep(20);' AND state = 'active'") == "0"
