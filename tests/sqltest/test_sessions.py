"""Concurrent sessions in one test (``bg``, ``step``, ``wait``), against a real PostgreSQL,
through the real ``spawn`` entry point."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

SUMMARY = re.compile(r"^(\d+ tests?: \d+ passed, \d+ failed) in \d+\.\d\ds$")

LOCK_TEST = """\
\\set VERBOSITY terse
CREATE TABLE accounts (id int PRIMARY KEY, owner text);
INSERT INTO accounts VALUES (1, 'main');
BEGIN;
UPDATE accounts SET owner = 'main, locked' WHERE id = 1;
{{ bg("s2", "scripts/take.sql") }}
\\echo main commits
COMMIT;
{{ wait("s2") }}
SELECT * FROM accounts ORDER BY id;
DROP TABLE accounts;
"""
TAKE_SCRIPT = "UPDATE accounts SET owner = 's2' WHERE id = 1 RETURNING owner;\n"
LOCK_OUTPUT = (
    "-- s2: <waiting ...>\n"
    "main commits\n"
    "-- s2: <... completed>\n"
    " owner \n-------\n s2\n(1 row)\n\n"
    " id | owner \n----+-------\n  1 | s2\n(1 row)\n\n"
)


def report(stdout: str) -> list[str]:
    """stdout lines with the timing of the summary line removed."""
    lines = stdout.splitlines()
    match = SUMMARY.match(lines[-1])
    assert match, f"no summary line in {stdout!r}"
    return [*lines[:-1], match.group(1)]


def add_test(db_project: Any, name: str, sql: str, scripts: dict[str, str] | None = None) -> Path:
    """``tests/<name>/test.sql`` and its ``scripts`` (paths relative to the test's folder)."""
    folder: Path = db_project.add_test(name, sql).parent
    for relpath, text in (scripts or {}).items():
        path = folder / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


def other_backends(database: Any) -> int:
    """Backends connected to the test's database, besides the one asking."""
    return int(database.query(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"))


def no_backends_soon(database: Any) -> None:
    """Sessions that ended cleanly close their backends asynchronously: poll briefly."""
    database.wait_until(
        "SELECT count(*) = 0 FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()", timeout=10)


# -- the behaviour ---------------------------------------------------------------------------


def test_a_blocked_update_waits_then_completes_with_identical_output_over_20_runs(
    db_project: Any,
) -> None:
    names = [f"lock{n:02d}" for n in range(1, 21)]
    for name in names:
        folder = add_test(db_project, name, LOCK_TEST, {"scripts/take.sql": TAKE_SCRIPT})
        (folder / "expected").write_text(LOCK_OUTPUT)

    result = db_project.run("test", "compare", "-j", "1")

    assert (result.exit_code, result.stderr) == (0, ""), result.stdout
    assert report(result.stdout) == [
        *(f"[PASS] {name}" for name in names), "20 tests: 20 passed, 0 failed"]
    no_backends_soon(db_project.database)


def test_run_prints_the_same_output_as_it_streams(db_project: Any) -> None:
    add_test(db_project, "locks", LOCK_TEST, {"scripts/take.sql": TAKE_SCRIPT})
    result = db_project.run("test", "run", "locks")
    assert (result.exit_code, result.stdout, result.stderr) == (0, LOCK_OUTPUT, "")


DEADLOCK_TEST = """\
\\set VERBOSITY terse
CREATE TABLE pair (id int PRIMARY KEY, v int);
INSERT INTO pair VALUES (1, 0), (2, 0);
-- The main session would detect a deadlock only after 10s; s2 after 500ms, so s2,
-- which started waiting first, is always the one PostgreSQL cancels.
SET deadlock_timeout = '10s';
BEGIN;
UPDATE pair SET v = 1 WHERE id = 1;
{{ bg("s2", "scripts/s2.sql") }}
{{ step("s2", "UPDATE pair SET v = 2 WHERE id = 1;") }}
UPDATE pair SET v = 1 WHERE id = 2;
COMMIT;
{{ step("s2", "ROLLBACK;") }}
{{ wait("s2") }}
SELECT * FROM pair ORDER BY id;
"""
DEADLOCK_S2 = """\
\\set VERBOSITY terse
SET deadlock_timeout = '500ms';
BEGIN;
UPDATE pair SET v = 2 WHERE id = 2;
"""


def test_deadlock_example_reports_exactly_one_deadlock(db_project: Any) -> None:
    add_test(db_project, "deadlock", DEADLOCK_TEST, {"scripts/s2.sql": DEADLOCK_S2})
    result = db_project.run("test", "run", "deadlock")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "-- s2: <waiting ...>\n"
        "-- s2: <... completed>\n"
        "ERROR:  deadlock detected\n"
        " id | v \n----+---\n  1 | 1\n  2 | 1\n(2 rows)\n\n"
    )
    assert result.stdout.count("deadlock detected") == 1
    no_backends_soon(db_project.database)


def test_a_step_of_another_session_can_release_a_waiting_one(db_project: Any) -> None:
    add_test(db_project, "chain", """\
CREATE TABLE box (id int PRIMARY KEY);
{{ bg("s2", "scripts/hold.sql") }}
{{ bg("s3", "scripts/insert.sql") }}
\\echo s2 commits
{{ step("s2", "COMMIT;") }}
\\echo main goes on
{{ wait("s3") }}
{{ wait("s2") }}
""", {
        "scripts/hold.sql": "BEGIN;\nLOCK TABLE box IN EXCLUSIVE MODE;\n\\echo s2 holds box\n",
        "scripts/insert.sql": "INSERT INTO box VALUES (7) RETURNING id;\n",
    })
    result = db_project.run("test", "run", "chain")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "-- s3: <waiting ...>\n"
        "s2 commits\n"
        "-- s3: <... completed>\n"
        "main goes on\n"
        " id \n----\n  7\n(1 row)\n\n"
        "s2 holds box\n"
    )


def test_bg_script_comes_from_components_when_the_test_folder_has_none(
    db_project: Any,
) -> None:
    db_project.add_component("sessions/hello.sql", "SELECT {{ 40 + 2 }} AS answer;\n")
    add_test(db_project, "shared", '{{ bg("s2", "sessions/hello.sql") }}\n{{ wait("s2") }}\n')
    result = db_project.run("test", "run", "shared")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, " answer \n--------\n     42\n(1 row)\n\n", "")


def test_control_points_in_the_middle_of_a_line(db_project: Any) -> None:
    add_test(db_project, "inline", (
        'SELECT 1 AS one; {{ bg("s2", "two.sql") }}{{ wait("s2") }}SELECT 3 AS three;'
    ), {"two.sql": "SELECT 2 AS two;"})
    result = db_project.run("test", "run", "inline")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        " one \n-----\n   1\n(1 row)\n\n two \n-----\n   2\n(1 row)\n\n"
        " three \n-------\n     3\n(1 row)\n\n"
    )


def test_echo_all_shows_the_test_but_no_trace_of_spawn(db_project: Any) -> None:
    add_test(db_project, "echoed", (
        "\\set ECHO all\n"
        "SELECT 1 AS one;\n"
        "{{ bg(\"s2\", \"two.sql\") }}\n"
        "\\echo -n partial\n"
        "{{ wait(\"s2\") }}\n"
        "SELECT 3 AS three;\n"
    ), {"two.sql": "SELECT 2 AS two;\n"})
    result = db_project.run("test", "run", "echoed")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        "SELECT 1 AS one;\n one \n-----\n   1\n(1 row)\n\n"
        "\\echo -n partial\npartial"
        " two \n-----\n   2\n(1 row)\n\n"
        "SELECT 3 AS three;\n three \n-------\n     3\n(1 row)\n\n"
    )


def test_build_shows_control_points_as_comments(db_project: Any) -> None:
    add_test(db_project, "locks", LOCK_TEST, {"scripts/take.sql": TAKE_SCRIPT})
    result = db_project.run("test", "build", "locks")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == LOCK_TEST.replace(
        '{{ bg("s2", "scripts/take.sql") }}',
        '-- bg("s2", "scripts/take.sql")\n'
        "--   UPDATE accounts SET owner = 's2' WHERE id = 1 RETURNING owner;",
    ).replace('{{ wait("s2") }}', '-- wait("s2")')


# -- failures ----------------------------------------------------------------------------------

# Each test of a run has its own table: they share the database.
HOLD = """\
CREATE TABLE {{ t }} (id int PRIMARY KEY, v int);
INSERT INTO {{ t }} VALUES (1, 0);
BEGIN;
UPDATE {{ t }} SET v = 1 WHERE id = 1;
"""


def bump(table: str) -> dict[str, str]:
    """``bump.sql``: a script that updates the row the main session holds."""
    return {"bump.sql": f"UPDATE {table} SET v = 2 WHERE id = 1;\n"}


def hold(table: str, rest: str) -> str:
    """A test whose main session holds a row lock of ``table``, then ``rest``."""
    return f'{{% set t = "{table}" | safe %}}' + HOLD + rest


def test_sessions_that_cannot_go_on_fail_their_test_and_leave_no_backend(
    db_project: Any,
) -> None:
    add_test(db_project, "blocked_step", hold("a", (
        '{{ bg("s2", "bump.sql") }}\n'
        '{{ step("s2", "SELECT 1;") }}\n'
    )), bump("a"))
    add_test(db_project, "left_waiting", hold("b", '{{ bg("s2", "bump.sql") }}\n'),
             bump("b"))
    add_test(db_project, "wait_forever", hold("c", (
        '{{ bg("s2", "bump.sql") }}\n'
        '{{ wait("s2") }}\n'
        "COMMIT;\n"
    )), bump("c"))
    add_test(db_project, "main_fails", hold("d", (
        '{{ bg("s2", "bump.sql") }}\n'
        "SELECT 1/0;\n"
        '{{ wait("s2") }}\n'
    )), bump("d"))
    add_test(db_project, "main_stalls", (
        "CREATE TABLE e (id int PRIMARY KEY);\n"
        '{{ bg("s2", "insert.sql") }}\n'
        "INSERT INTO e VALUES (1);\n"
        '{{ wait("s2") }}\n'
    ), {"insert.sql": "BEGIN;\nINSERT INTO e VALUES (1);\n"})
    add_test(db_project, "idle_holder", (
        "CREATE TABLE f (id int PRIMARY KEY);\n"
        '{{ bg("s2", "insert.sql") }}\n'
        '{{ bg("s3", "insert.sql") }}\n'
        '{{ wait("s3") }}\n'
    ), {"insert.sql": "BEGIN;\nINSERT INTO f VALUES (1);\n"})
    start = time.monotonic()
    result = db_project.run("test", "compare", "-j", "1")
    assert time.monotonic() - start < 30
    assert result.exit_code == 1
    assert report(result.stdout) == [
        "[FAIL] blocked_step",
        "[FAIL] idle_holder",
        "[FAIL] left_waiting",
        "[FAIL] main_fails",
        "[FAIL] main_stalls",
        "[FAIL] wait_forever",
        "",
        'blocked_step: spawn/tests/blocked_step/test.sql:6: step("s2") was sent while s2 is '
        "waiting for a lock (its step at spawn/tests/blocked_step/test.sql:5 is blocked), "
        "which cannot work; release the lock first (e.g. COMMIT in the session holding it), "
        "or move the step after that",
        "",
        'idle_holder: spawn/tests/idle_holder/test.sql:4: wait("s3") would wait forever: s3 '
        "waits for a lock session s2 holds (its step at spawn/tests/idle_holder/test.sql:3), "
        "and nothing runs while the test waits; release the lock first (e.g. COMMIT in "
        "session s2), then wait",
        "",
        "left_waiting: session s2 was still running at the end of the test: its step at "
        "spawn/tests/left_waiting/test.sql:5 waits for a lock the main session holds; release "
        'the lock (e.g. COMMIT in the main session) and wait("s2") before the end; its '
        "backend was terminated",
        "",
        "main_fails: session s2 was still running when the main session ended early (psql "
        "exited with code 3 after: ERROR:  division by zero): its step at "
        "spawn/tests/main_fails/test.sql:5 waits for a lock; release the lock (e.g. COMMIT "
        'in the main session) and wait("s2") before the end; its backend was terminated',
        "",
        "main_stalls: the main session, in its statements after "
        "spawn/tests/main_stalls/test.sql:2, waits for a lock that session s2 holds, and s2 "
        "has no step running to release it; send it the statement that does first (e.g. "
        'step("s2", "COMMIT;"))',
        "",
        'wait_forever: spawn/tests/wait_forever/test.sql:6: wait("s2") would wait forever: '
        "s2 waits for a lock the main session holds (its step at "
        "spawn/tests/wait_forever/test.sql:5), and nothing runs while the test waits; "
        "release the lock first (e.g. COMMIT in the main session), then wait",
        "6 tests: 0 passed, 6 failed",
    ]
    assert other_backends(db_project.database) == 0


def test_timeout_stops_the_test_and_terminates_every_session(db_project: Any) -> None:
    add_test(db_project, "sleepy", (
        "SELECT 'main' AS started;\n"
        '{{ bg("s2", "sleep.sql") }}\n'
        '{{ wait("s2") }}\n'
    ), {"sleep.sql": "SELECT pg_sleep(60);\n"})
    start = time.monotonic()
    result = db_project.run("test", "run", "sleepy", "--timeout", "1.5")
    assert time.monotonic() - start < 20
    assert result.exit_code == 1
    assert result.stdout == " started \n---------\n main\n(1 row)\n\n"
    assert result.stderr == (
        "error: test sleepy did not finish within 1.5s and was stopped (its session was "
        "terminated); make it faster or raise --timeout\n"
    )
    assert other_backends(db_project.database) == 0


def test_control_point_mistakes_are_template_errors_naming_the_line(db_project: Any) -> None:
    tests = {
        "unknown": 'SELECT 1;\n{{ step("s9", "SELECT 1;") }}\n',
        "twice": '{{ bg("s2", "a.sql") }}\n{{ bg("s2", "a.sql") }}\n',
        "bad_name": '{{ bg("2nd session", "a.sql") }}\n',
        "missing": '\n{{ bg("s2", "nowhere.sql") }}\n',
        "escape": '{{ bg("s2", "../other/a.sql") }}\n',
        "inside": 'SELECT 1\n{{ bg("s2", "a.sql") }}\n;\n',
        "unfinished": '{{ bg("s2", "a.sql") }}\n{{ step("s2", "SELECT 2") }}\n',
        "late": '{% for i in range(20000) %}-- {{ "x" * 60 }}\n{% endfor %}\n'
                '{{ bg("s2", "a.sql") }}\n',
    }
    for name, sql in tests.items():
        add_test(db_project, name, sql, {"a.sql": "SELECT 1;\n"})
    result = db_project.run("test", "compare", "-j", "1")
    assert result.exit_code == 1
    where = "spawn/tests/{}/test.sql:{}".format
    assert report(result.stdout) == [
        "[FAIL] bad_name", "[FAIL] escape", "[FAIL] inside", "[FAIL] late", "[FAIL] missing",
        "[FAIL] twice", "[FAIL] unfinished", "[FAIL] unknown",
        "",
        f"bad_name: {where('bad_name', 1)}: bg('2nd session', …): a session name is a letter "
        'or `_` followed by up to 30 letters, digits or `_`, e.g. "s2"',
        "",
        f"escape: {where('escape', 1)}: bg script path '../other/a.sql' refused: it must stay "
        "inside the test's folder or components/ (remove the `..`)",
        "",
        f'inside: {where("inside", 2)}: bg("s2") is inside an unfinished statement of the '
        "main session (its last statement has no terminating semicolon); put it after the "
        "statement's `;`",
        "",
        f'late: {where("late", 3)}: bg("s2") comes after the first 1 MiB of the test\'s output, '
        "which already went to psql; move it earlier or make the test smaller",
        "",
        f"missing: {where('missing', 2)}: bg script 'nowhere.sql' not found in "
        "spawn/tests/missing/ nor in components/; check the path (it is relative to the "
        "test's folder, or to components/)",
        "",
        f'twice: {where("twice", 2)}: bg("s2", …) starts session s2 a second time; use '
        'step("s2", …) to send it more SQL, or another name',
        "",
        f'unfinished: {where("unfinished", 2)}: the SQL of step("s2") ends inside an '
        "unfinished statement (its last statement has no terminating semicolon); end it "
        "with `;`",
        "",
        f'unknown: {where("unknown", 2)}: step("s9") names session s9, which is not started; '
        'start it first with bg("s9", "script.sql")',
        "8 tests: 0 passed, 8 failed",
    ]
    assert other_backends(db_project.database) == 0


def test_sigterm_stops_every_session_like_ctrl_c(db_project: Any) -> None:
    import contextlib
    import os
    import signal
    import subprocess

    from tests.helpers import start_spawn
    from tests.sqltest.test_sigterm import alive, children

    database = db_project.database
    add_test(db_project, "sleepy", '{{ bg("s2", "sleep.sql") }}\n{{ wait("s2") }}\n',
             {"sleep.sql": "SELECT pg_sleep(37);\n"})
    proc = start_spawn("test", "run", "sleepy", cwd=db_project.root, stderr=subprocess.STDOUT)
    psqls: list[int] = []
    try:
        database.wait_until("SELECT count(*) = 1 FROM pg_stat_activity "
                            "WHERE datname = current_database() AND "
                            "query LIKE 'SELECT pg_sleep(37)%'")
        deadline = time.monotonic() + 20
        psqls = children(proc.pid)
        while len(psqls) < 3:  # the test's own psql, s2's and the control session's
            assert time.monotonic() < deadline, psqls
            time.sleep(0.02)
            psqls = children(proc.pid)
        assert len(psqls) == 3
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)
        assert [pid for pid in psqls if alive(pid)] == []
        assert other_backends(database) == 0
        assert (proc.returncode, output.splitlines()[-1:]) == (143, ["Aborted! (SIGTERM)"])
    finally:
        for pid in [proc.pid, *psqls]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
