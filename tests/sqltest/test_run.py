"""`spawn test run|expect|compare` against a real PostgreSQL, through the real entry point."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from tests.helpers import (
    Result,
    run_on_terminal,
    snapshot_files,
    start_spawn,
)

HELLO_OUTPUT = " answer \n--------\n      1\n(1 row)\n\n"
SUMMARY = re.compile(r"^(\d+ tests?: \d+ passed, \d+ failed) in \d+\.\d\ds$")


def report(result: Result) -> list[str]:
    """stdout lines with the timing of the summary line removed."""
    lines = result.stdout.splitlines()
    match = SUMMARY.match(lines[-1])
    assert match, f"no summary line in {result.stdout!r}"
    return [*lines[:-1], match.group(1)]


def expected_path(db_project: Any, name: str) -> Path:
    path: Path = db_project.spawn_dir / "tests" / name / "expected"
    return path


def test_run_prints_the_merged_output(db_project: Any) -> None:
    db_project.add_test("hello", "SELECT 1 AS answer;\n")
    result = db_project.run("test", "run", "hello")
    assert (result.exit_code, result.stdout, result.stderr) == (0, HELLO_OUTPUT, "")


def test_stdout_and_stderr_keep_psql_order(db_project: Any) -> None:
    db_project.add_test("order", (
        "\\echo one\n"
        "\\warn two\n"
        "SELECT 3 AS three;\n"
        "DO $$ BEGIN RAISE NOTICE 'four'; END $$;\n"
        "\\echo five\n"
    ))
    result = db_project.run("test", "run", "order")
    assert result.exit_code == 0
    assert result.stdout == (
        "one\ntwo\n three \n-------\n     3\n(1 row)\n\nNOTICE:  four\nfive\n"
    )


def test_expect_then_compare_passes(db_project: Any) -> None:
    db_project.add_test("hello", "SELECT 1 AS answer;\n")
    result = db_project.run("test", "expect", "hello")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == "Wrote spawn/tests/hello/expected (5 lines)\n"
    assert expected_path(db_project, "hello").read_text() == HELLO_OUTPUT

    result = db_project.run("test", "compare", "hello")
    assert result.exit_code == 0, result.stdout
    assert report(result) == ["[PASS] hello", "1 test: 1 passed, 0 failed"]


def test_edited_expected_fails_with_a_diff_of_the_changed_line(db_project: Any) -> None:
    db_project.add_test("rows", "SELECT g AS n FROM generate_series(1, 6) AS g ORDER BY g;\n")
    assert db_project.run("test", "expect", "rows").exit_code == 0
    path = expected_path(db_project, "rows")
    path.write_text(path.read_text().replace(" 4\n", " 40\n"))

    result = db_project.run("test", "compare", "rows")
    assert result.exit_code == 1
    assert report(result) == [
        "[FAIL] rows",
        "",
        "--- spawn/tests/rows/expected",
        "+++ actual output of rows",
        "@@ -3,7 +3,7 @@",
        "  3   3  | 1",
        "  4   4  | 2",
        "  5   5  | 3",
        "  6     -| 40",
        "      6 +| 4",
        "  7   7  | 5",
        "  8   8  | 6",
        "  9   9  |(6 rows)",
        "1 test: 0 passed, 1 failed",
    ]


def test_compare_all_reports_pass_fail_and_missing_in_order(db_project: Any) -> None:
    db_project.add_test("b-fails", "SELECT 'now' AS word;\n")
    db_project.add_test("a-passes", "SELECT 1 AS answer;\n")
    db_project.add_test("c-missing", "SELECT 1 AS answer;\n")
    expected_path(db_project, "a-passes").write_text(HELLO_OUTPUT)
    expected_path(db_project, "b-fails").write_text(" word \n------\n then\n(1 row)\n\n")

    result = db_project.run("test", "compare")
    assert result.exit_code == 1
    assert report(result) == [
        "[PASS] a-passes",
        "[FAIL] b-fails",
        "[FAIL] c-missing",
        "",
        "--- spawn/tests/b-fails/expected",
        "+++ actual output of b-fails",
        "@@ -1,5 +1,5 @@",
        "  1   1  | word ",
        "  2   2  |------",
        "  3     -| then",
        "      3 +| now",
        "  4   4  |(1 row)",
        "  5   5  |",
        "",
        "c-missing: spawn/tests/c-missing/expected does not exist; run "
        "`spawn test expect c-missing` to record the current output",
        "3 tests: 1 passed, 2 failed",
    ]
    assert not expected_path(db_project, "c-missing").exists()


def test_copy_of_a_template_database_with_connect_and_back(db_project: Any) -> None:
    database = db_project.database
    template = f"{database.name}_tpl"
    copy = f"{database.name}_copy"
    database.query(f"CREATE DATABASE {template}")
    try:
        database.query(
            "CREATE TABLE account (id int PRIMARY KEY, owner text NOT NULL);"
            "INSERT INTO account VALUES (1, 'ann'), (2, 'bob');",
            dbname=template,
        )
        db_project.add_test("copy", (
            "\\set VERBOSITY terse\n"
            f"CREATE DATABASE {copy} WITH TEMPLATE {template};\n"
            f"\\c {copy}\n"
            "INSERT INTO account VALUES (3, 'cy');\n"
            "SELECT id, owner FROM account ORDER BY id;\n"
            f"SELECT current_database() = '{copy}' AS in_copy;\n"
            f"\\c {database.name}\n"
            f"DROP DATABASE {copy};\n"
            f"SELECT current_database() = '{database.name}' AS back;\n"
        ))
        assert db_project.run("test", "expect", "copy").exit_code == 0
        assert expected_path(db_project, "copy").read_text() == (
            " id | owner \n"
            "----+-------\n"
            "  1 | ann\n"
            "  2 | bob\n"
            "  3 | cy\n"
            "(3 rows)\n"
            "\n"
            " in_copy \n"
            "---------\n"
            " t\n"
            "(1 row)\n"
            "\n"
            " back \n"
            "------\n"
            " t\n"
            "(1 row)\n"
            "\n"
        )
        result = db_project.run("test", "compare", "copy")
        assert report(result) == ["[PASS] copy", "1 test: 1 passed, 0 failed"]
        assert database.query(
            f"SELECT count(*) FROM pg_database WHERE datname = '{copy}'"
        ) == "0"
        assert database.query("SELECT count(*) FROM account", dbname=template) == "2"
    finally:
        database.query(f"DROP DATABASE IF EXISTS {copy}")
        database.query(f"DROP DATABASE IF EXISTS {template}")


def test_an_erroring_test_has_its_error_as_output(db_project: Any) -> None:
    db_project.add_test("broken", (
        "SELECT 1 AS before;\n"
        "SELECT no_such_column FROM pg_class;\n"
        "SELECT 2 AS never;\n"
    ))
    run = db_project.run("test", "run", "broken")
    output = (
        " before \n--------\n      1\n(1 row)\n\n"
        'ERROR:  column "no_such_column" does not exist\n'
        "LINE 1: SELECT no_such_column FROM pg_class;\n"
        "               ^\n"
    )
    assert (run.exit_code, run.stdout, run.stderr) == (0, output, "")
    assert db_project.run("test", "expect", "broken").exit_code == 0
    assert expected_path(db_project, "broken").read_text() == output
    result = db_project.run("test", "compare", "broken")
    assert (result.exit_code, report(result)) == (0, ["[PASS] broken",
                                                      "1 test: 1 passed, 0 failed"])


def test_parallel_report_equals_sequential_report(db_project: Any) -> None:
    for i in range(8):
        db_project.add_test(f"t{i}", f"SELECT pg_sleep(0.{i % 3}); SELECT {i} AS i;\n")
    assert db_project.run("test", "expect", "--yes", "-j", "4").exit_code == 0
    for i in (2, 5):
        path = expected_path(db_project, f"t{i}")
        path.write_text(path.read_text().replace(f" {i}\n", " 99\n"))
    expected_path(db_project, "t6").unlink()

    sequential = db_project.run("test", "compare", "-j", "1")
    parallel = db_project.run("test", "compare", "-j", "4")
    assert sequential.exit_code == parallel.exit_code == 1
    assert report(sequential) == report(parallel)
    assert report(parallel)[:8] == [
        "[PASS] t0", "[PASS] t1", "[FAIL] t2", "[PASS] t3",
        "[PASS] t4", "[FAIL] t5", "[FAIL] t6", "[PASS] t7",
    ]
    json_seq = json.loads(db_project.run("test", "compare", "-j", "1", "--format", "json").stdout)
    json_par = json.loads(db_project.run("test", "compare", "-j", "3", "--format", "json").stdout)
    assert [(t["name"], t["status"], t["diff"]) for t in json_seq["tests"]] == [
        (t["name"], t["status"], t["diff"]) for t in json_par["tests"]
    ]


def test_jobs_run_tests_at_the_same_time(db_project: Any) -> None:
    """Three tests that each wait on a lock the test holds can only all be waiting at once
    if -j 3 runs them at the same time; proven on the server, not with a clock."""
    from tests.helpers import start_spawn

    db_project.database.query("CREATE TABLE gate (id int)")
    for name in ("a", "b", "c"):
        db_project.add_test(name, "SELECT count(*) FROM gate;\n")
    assert db_project.run("test", "expect", "--yes").exit_code == 0
    holder = subprocess.Popen(
        [*db_project.database.server.psql_argv(db_project.database.name), "-X", "-q", "-c",
         "BEGIN; LOCK TABLE gate; SELECT pg_sleep(60);"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        db_project.database.wait_until(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE relation = 'gate'::regclass "
            "AND mode = 'AccessExclusiveLock' AND granted)")
        process = start_spawn("test", "compare", "-j", "3", cwd=db_project.root)
        db_project.database.wait_until(
            "SELECT count(*) = 3 FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE "
            "'spawn-test-%' AND wait_event_type = 'Lock'")
    finally:
        holder.terminate()
        holder.wait(timeout=30)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 0, out


def backends(database: Any, pattern: str) -> str:
    """Only this test's database counts: a backend another test on the same server is
    still tearing down must not be mistaken for one of ours."""
    return str(database.query(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        f"AND (application_name LIKE '{pattern}' OR query LIKE '%pg_sleep(60)%') "
        "AND pid <> pg_backend_pid()"
    ))


def sleeping_backends(database: Any) -> str:
    """Only a backend already inside slow1's sleep proves the fast test has finished."""
    return str(database.query(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND state = 'active' "
        "AND query LIKE '%pg_sleep(60)%' AND pid <> pg_backend_pid()"
    ))


def test_a_hanging_test_is_stopped_and_leaves_no_backend(db_project: Any) -> None:
    database = db_project.database
    db_project.add_test("hangs", "SELECT 1 AS started;\nSELECT pg_sleep(60);\n")
    db_project.add_test("quick", "SELECT 1 AS answer;\n")
    expected_path(db_project, "hangs").write_text("anything\n")
    expected_path(db_project, "quick").write_text(HELLO_OUTPUT)
    seen: list[str] = []

    def watch() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not seen:
            found = database.query(
                "SELECT application_name FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'SELECT pg_sleep(60)%'"
            )
            if found:
                seen.append(found)
            time.sleep(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    start = time.monotonic()
    result = db_project.run("test", "compare", "--timeout", "2")
    elapsed = time.monotonic() - start
    watcher.join()
    assert result.exit_code == 1
    assert report(result) == [
        "[FAIL] hangs",
        "[PASS] quick",
        "",
        "hangs: did not finish within 2s and was stopped (its session was terminated); "
        "make it faster or raise --timeout",
        "2 tests: 1 passed, 1 failed",
    ]
    assert elapsed < 20
    assert seen and re.fullmatch(r"spawn-test-[0-9a-f]{12}-hangs", seen[0]), seen
    assert backends(database, "spawn-test-%") == "0"


def test_timeout_terminates_the_backend_when_the_command_drops_pgappname(
    db_project: Any,
) -> None:
    """Wrappers like `docker exec` do not pass PGAPPNAME on; the session is still named."""
    from spawn_db.config import Overrides, load_config
    from spawn_db.sqltest.suite import TestRunner

    database = db_project.database
    db_project.add_test("hangs", "SELECT pg_sleep(60);\n")
    config = load_config(Overrides(config_file=str(db_project.config_path)))
    argv = ["env", "-u", "PGAPPNAME", *database.psql_argv()]
    runner = TestRunner(config, timeout=1.5, argv=argv)
    outcome = runner.compare("hangs")
    assert (outcome.status, outcome.passed, outcome.output) == ("timeout", False, "")
    assert outcome.duration < 10
    assert backends(database, "spawn-test-%") == "0"


def test_run_times_out_with_an_error(db_project: Any) -> None:
    db_project.add_test("hangs", "SELECT 'partial' AS shown;\nSELECT pg_sleep(60);\n")
    result = db_project.run("test", "run", "hangs", "--timeout", "1")
    assert result.exit_code == 1
    assert result.stdout == "  shown  \n---------\n partial\n(1 row)\n\n"
    assert result.stderr == (
        "error: test hangs did not finish within 1s and was stopped (its session was "
        "terminated); make it faster or raise --timeout\n"
    )
    assert backends(db_project.database, "spawn-test-%") == "0"


def test_expect_does_not_write_when_the_test_times_out(db_project: Any) -> None:
    db_project.add_test("hangs", "SELECT pg_sleep(60);\n")
    expected_path(db_project, "hangs").write_text("old\n")
    result = db_project.run("test", "expect", "hangs", "--timeout", "1")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: hangs: did not finish within 1s and was stopped (its session was terminated); "
        "make it faster or raise --timeout; spawn/tests/hangs/expected was not written\n"
    )
    assert expected_path(db_project, "hangs").read_text() == "old\n"


def test_json_report_parses(db_project: Any) -> None:
    db_project.add_test("ok", "SELECT 1 AS answer;\n")
    db_project.add_test("diff", "SELECT 2 AS answer;\n")
    db_project.add_test("new", "SELECT 3 AS answer;\n")
    expected_path(db_project, "ok").write_text(HELLO_OUTPUT)
    expected_path(db_project, "diff").write_text(HELLO_OUTPUT)

    result = db_project.run("test", "compare", "--format", "json")
    assert result.exit_code == 1
    doc = json.loads(result.stdout)
    assert doc["ok"] is False
    assert {k: v for k, v in doc["summary"].items() if k != "duration"} == {
        "total": 3, "passed": 1, "failed": 2,
    }
    by_name = {t["name"]: t for t in doc["tests"]}
    assert [t["name"] for t in doc["tests"]] == ["diff", "new", "ok"]
    assert by_name["ok"]["status"] == "pass" and by_name["ok"]["diff"] is None
    assert by_name["diff"]["status"] == "fail"
    assert by_name["diff"]["diff"] == (
        "@@ -1,5 +1,5 @@\n"
        "  1   1  | answer \n"
        "  2   2  |--------\n"
        "  3     -|      1\n"
        "      3 +|      2\n"
        "  4   4  |(1 row)\n"
        "  5   5  |\n"
    )
    assert by_name["diff"]["output"] == HELLO_OUTPUT.replace("1\n(", "2\n(")
    assert by_name["new"]["status"] == "missing"
    assert by_name["new"]["expected"] is None
    assert "spawn test expect new" in by_name["new"]["error"]
    assert all(isinstance(t["duration"], float) for t in doc["tests"])


def test_junit_report_parses(db_project: Any, tmp_path: Path) -> None:
    db_project.add_test("ok", "SELECT 1 AS answer;\n")
    db_project.add_test("diff", "SELECT 2 AS answer;\n")
    db_project.add_test("bad-template", "SELECT {{ 1 + }};\n")
    expected_path(db_project, "ok").write_text(HELLO_OUTPUT)
    expected_path(db_project, "diff").write_text(HELLO_OUTPUT)
    junit = tmp_path / "junit.xml"

    result = db_project.run("test", "compare", "--junit", str(junit))
    assert result.exit_code == 1
    assert report(result)[:3] == ["[FAIL] bad-template", "[FAIL] diff", "[PASS] ok"]
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "1", "1")
    suite = root.find("testsuite")
    assert suite is not None
    cases = {case.get("name"): case for case in suite.findall("testcase")}
    assert list(cases) == ["bad-template", "diff", "ok"]
    assert cases["ok"].find("failure") is None and cases["ok"].find("error") is None
    failure = cases["diff"].find("failure")
    assert failure is not None and failure.get("message") == "output differs from expected"
    assert failure.text is not None and "  3     -|      1\n      3 +|      2\n" in failure.text
    assert cases["diff"].findtext("system-out") == HELLO_OUTPUT.replace("1\n(", "2\n(")
    error = cases["bad-template"].find("error")
    assert error is not None and "spawn/tests/bad-template/test.sql:1" in (error.text or "")
    assert all(float(case.get("time") or "x") >= 0 for case in cases.values())


def test_junit_into_a_missing_folder_is_refused_before_running(db_project: Any) -> None:
    db_project.add_test("ok", "SELECT 1 AS answer;\n")
    result = db_project.run("test", "compare", "--junit", "reports/junit.xml")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        "error: cannot write --junit reports/junit.xml: folder "
        f"{db_project.root / 'reports'} does not exist; create it first\n"
    )


def test_a_macro_from_components_via_from_import(db_project: Any) -> None:
    db_project.add_component("factories/people.sql", (
        "{% macro person(id, name) -%}\n"
        "INSERT INTO person VALUES ({{ id }}, {{ name }});\n"
        "{%- endmacro %}\n"
    ))
    db_project.add_test("macro", (
        '{% from "factories/people.sql" import person %}'
        "CREATE TEMP TABLE person (id int, name text);\n"
        "{{ person(1, \"O'Brien\") }}\n"
        "{{ person(2, 'env is ' ~ env) }}\n"
        "SELECT id, name FROM person ORDER BY id;\n"
    ))
    result = db_project.run("test", "run", "macro")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == (
        " id |    name    \n"
        "----+------------\n"
        "  1 | O'Brien\n"
        "  2 | env is dev\n"
        "(2 rows)\n"
        "\n"
    )


def test_variables_file_and_environment_reach_the_test(db_project: Any) -> None:
    (db_project.root / "vars.json").write_text('{"names": ["ann", "O\'Brien"]}')
    db_project.add_test("vars", (
        "SELECT n AS name, {{ env }} AS env FROM unnest({{ variables.names }}::text[]) AS n "
        "ORDER BY n COLLATE \"C\";\n"
    ))
    result = db_project.run("-e", "ci", "test", "expect", "vars", "--variables", "vars.json")
    assert result.exit_code == 0, result.stderr
    assert expected_path(db_project, "vars").read_text() == (
        "  name   | env \n"
        "---------+-----\n"
        " O'Brien | ci\n"
        " ann     | ci\n"
        "(2 rows)\n"
        "\n"
    )
    plain = db_project.run("test", "compare", "vars", "--variables", "vars.json")
    assert plain.exit_code == 1
    assert report(plain)[4:] == [
        "@@ -1,6 +1,6 @@",
        "  1   1  |  name   | env ",
        "  2   2  |---------+-----",
        "  3     -| O'Brien | ci",
        "  4     -| ann     | ci",
        "      3 +| O'Brien | dev",
        "      4 +| ann     | dev",
        "  5   5  |(2 rows)",
        "  6   6  |",
        "1 test: 0 passed, 1 failed",
    ]
    same = db_project.run("-e", "ci", "test", "compare", "vars", "--variables", "vars.json")
    assert same.exit_code == 0, same.stdout


def test_large_script_and_large_output_stream_without_deadlock(db_project: Any) -> None:
    """2.6 MB in (more than spawn renders ahead) while 5 MB come out."""
    db_project.add_test("big", (
        "{% for i in range(30000) %}-- {{ i }} "
        "padding padding padding padding padding padding padding padding padding padding\n"
        "{% endfor %}"
        "SELECT repeat('x', 100) || g AS x FROM generate_series(1, 50000) AS g ORDER BY g;\n"
    ))
    build = db_project.run("test", "build", "big")
    assert len(build.stdout) > 2_500_000
    result = db_project.run("test", "run", "big")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 50_000 + 4
    assert lines[2] == " " + "x" * 100 + "1"
    assert lines[-2] == "(50000 rows)"


def test_template_error_fails_that_test_only(db_project: Any) -> None:
    db_project.add_test("a-good", "SELECT 1 AS answer;\n")
    db_project.add_test("b-bad", "SELECT 1;\n{% include 'missing.sql' %}\n")
    expected_path(db_project, "a-good").write_text(HELLO_OUTPUT)
    result = db_project.run("test", "compare")
    assert result.exit_code == 1
    assert report(result) == [
        "[PASS] a-good",
        "[FAIL] b-bad",
        "",
        "b-bad: spawn/tests/b-bad/test.sql:2: component 'missing.sql' not found in "
        "components/; check the path (it is relative to components/)",
        "2 tests: 1 passed, 1 failed",
    ]
    run = db_project.run("test", "run", "b-bad")
    assert run.exit_code == 1
    assert run.stdout == ""
    assert run.stderr.startswith("error: spawn/tests/b-bad/test.sql:2: component 'missing.sql'")


def test_expect_all_asks_and_refuses_without_a_terminal(db_project: Any) -> None:
    db_project.add_test("one", "SELECT 1 AS answer;\n")
    db_project.add_test("two", "SELECT 1 AS answer;\n")
    before = snapshot_files(db_project.root)
    result = db_project.run("test", "expect")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        "This rewrites the expected output of 2 tests:\n  one\n  two\n"
        "error: not rewriting expected files without confirmation: stdin is not a terminal; "
        "pass --yes to rewrite them all\n"
    )
    assert snapshot_files(db_project.root) == before

    result = db_project.run("test", "expect", "--yes")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        "Wrote spawn/tests/one/expected (5 lines)",
        "Wrote spawn/tests/two/expected (5 lines)",
    ]
    assert expected_path(db_project, "two").read_text() == HELLO_OUTPUT


def test_expect_all_on_a_terminal_asks_before_writing(db_project: Any) -> None:
    db_project.add_test("one", "SELECT 1 AS answer;\n")
    declined = run_on_terminal(db_project.root, ["test", "expect"], answer="n\n")
    assert "Rewrite them? [y/N]" in declined
    assert not expected_path(db_project, "one").exists()
    accepted = run_on_terminal(db_project.root, ["test", "expect"], answer="y\n")
    assert "Wrote spawn/tests/one/expected (5 lines)" in accepted
    assert expected_path(db_project, "one").read_text() == HELLO_OUTPUT


def test_compare_is_coloured_on_a_terminal_and_plain_when_piped(db_project: Any) -> None:
    db_project.add_test("x", "SELECT 2 AS answer;\n")
    expected_path(db_project, "x").write_text(HELLO_OUTPUT)
    coloured = run_on_terminal(db_project.root, ["test", "compare"])
    assert "\x1b[1;31m[FAIL]\x1b[0m x" in coloured  # drawn by rich
    assert "\x1b[32m      3 +|      2\x1b[0m" in coloured
    piped = db_project.run("test", "compare")
    assert "\x1b" not in piped.stdout and "[FAIL] x" in piped.stdout
    no_color = run_on_terminal(db_project.root, ["test", "compare"], env={"NO_COLOR": "1"})
    assert "\x1b" not in no_color and "[FAIL] x" in no_color


def test_interrupting_compare_leaves_no_backend(db_project: Any) -> None:
    for name in ("h1", "h2", "h3"):
        db_project.add_test(name, "SELECT pg_sleep(60);\n")
    database = db_project.database
    for jobs in ("1", "2"):
        proc = start_spawn("test", "compare", "-j", jobs, cwd=db_project.root,
                           stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while backends(database, "spawn-test-%") != jobs and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backends(database, "spawn-test-%") == jobs
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=20)
        assert proc.returncode == 1
        assert output.endswith("Aborted!\n")
        assert backends(database, "spawn-test-%") == "0"


def test_unknown_test_is_a_usage_error(db_project: Any) -> None:
    db_project.add_test("hello", "SELECT 1;\n")
    for command in ("run", "expect", "compare"):
        result = db_project.run("test", command, "helo")
        assert result.exit_code == 2
        assert result.stderr == (
            "error: test 'helo' not found in "
            f"{db_project.spawn_dir / 'tests'}; did you mean hello?; create it with "
            "`spawn test new helo`\n"
        )


def test_a_target_command_that_cannot_start_stops_the_run(db_project: Any) -> None:
    db_project.add_test("a", "SELECT 1;\n")
    db_project.add_test("b", "SELECT 1;\n")
    text = db_project.config_path.read_text()
    db_project.config_path.write_text(
        text.replace(f'"{db_project.database.psql}"', '"/nonexistent/psql"')
    )
    for args in (["compare"], ["compare", "-j", "2"], ["expect", "--yes"], ["run", "a"]):
        result = db_project.run("test", *args)
        assert result.exit_code == 2, args
        listing = ("This rewrites the expected output of 2 tests:\n  a\n  b\n"
                   if args[0] == "expect" else "")
        assert result.stderr == listing + (
            "error: cannot run '/nonexistent/psql': No such file or directory; check the "
            "target's `command` in spawn.toml\n"
        ), args
        assert "[PASS]" not in result.stdout and "[FAIL]" not in result.stdout


def test_no_tests_is_an_empty_passing_report(db_project: Any) -> None:
    result = db_project.run("test", "compare")
    assert (result.exit_code, report(result)) == (0, ["0 tests: 0 passed, 0 failed"])



def test_a_server_that_is_down_stops_the_run_with_its_error(
    db_project: Any, tmp_path: Path,
) -> None:
    for name in ("a", "b", "c"):
        db_project.add_test(name, "SELECT 1;\n")
        (db_project.spawn_dir / "tests" / name / "expected").write_text("?column? \n")
    text = db_project.config_path.read_text()
    db_project.config_path.write_text(
        text.replace(f'"{db_project.database.host}"', f'"{tmp_path}"'))
    for args in (["compare"], ["compare", "-j", "2"], ["expect", "--yes"]):
        result = db_project.run("test", *args)
        assert result.exit_code == 1, (args, result.stderr)
        assert "[PASS]" not in result.stdout and "[FAIL]" not in result.stdout, args
        lines = result.stderr[result.stderr.index("error: "):].splitlines()
        assert lines[0].startswith(
            "error: cannot connect to the database to run test a: psql: error: connection "
            f'to server on socket "{tmp_path}/.s.PGSQL.'), (args, result.stderr)
        assert lines[-1].endswith(
            "start the server (for an embedded target: spawn db start) or fix the target's "
            "`command` in spawn.toml"), (args, result.stderr)


def test_interrupting_compare_says_what_was_interrupted(db_project: Any) -> None:
    db_project.add_test("fast", "SELECT 1;\n")
    (db_project.spawn_dir / "tests" / "fast" / "expected").write_text(
        " ?column? \n----------\n        1\n(1 row)\n\n")
    for name in ("slow1", "slow2"):
        db_project.add_test(name, "SELECT pg_sleep(60);\n")
    database = db_project.database
    # One test at a time, so that slow1 sleeping means fast has finished and was counted.
    proc = start_spawn("test", "compare", "-j", "1", cwd=db_project.root,
                       stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while sleeping_backends(database) != "1" and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    output, _ = proc.communicate(timeout=20)

    assert proc.returncode == 1
    assert "interrupted after 1 of 3 tests (1 passed, 0 failed); not finished: slow1, slow2" \
        in output, output
    assert output.endswith("Aborted!\n")
