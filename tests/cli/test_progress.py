"""The live progress bar of apply, pin --all and the test commands, rich-drawn diffs and
the error panel, through the real entry point: on a pseudo-terminal for what a user
sees, piped for what scripts get (which must not change)."""

from __future__ import annotations

import itertools
import json
import os
import re
import subprocess
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from spawn_db.cli.output import LineBuffer, clock
from tests.helpers import SPAWN, read_terminal, run_on_terminal, spawn_env

# Colours and cursor movement (rich hides the cursor and moves up to redraw the bar).
CONTROL = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
COLOUR = re.compile(r"\x1b\[[0-9;]*m")
# One drawing of the bar, up to the carriage return rich sends before the next drawing or
# before a line printed above it (after the last drawing: a newline, then the return).
BAR = re.compile(r"[^\r\n]* \d+:\d\d:\d\d ETA (?:-:--:--|\d+:\d\d:\d\d)[^\r\n]*\n?\r")
SLEEP_OUTPUT = " pg_sleep \n----------\n \n(1 row)\n\n"


def visible(shown: str) -> str:
    """What stays on the terminal once the transient bar is gone: the text without the
    bar's drawings and without control sequences."""
    return BAR.sub("", CONTROL.sub("", shown))


def bars(shown: str) -> list[str]:
    """Each drawing of the bar, as text."""
    return [m.group(0).strip() for m in BAR.finditer(CONTROL.sub("", shown))]


def summary_free(text: str) -> str:
    """``text`` with the compare totals line's duration masked."""
    return re.sub(r"failed in \d+\.\d\ds", "failed in <time>", text)


def stderr_on_terminal(cwd: Path, args: list[str],
                       env: dict[str, str]) -> tuple[int, str, str]:
    """Run spawn with stdout piped and stderr on a pseudo-terminal, as ``spawn ... > file``
    typed at a terminal; return the exit code, stdout and the terminal's text."""
    import pty

    main, secondary = pty.openpty()
    full_env = {k: v for k, v in spawn_env().items() if k != "NO_COLOR"}
    full_env.update({"TERM": "xterm", **env})
    proc = subprocess.Popen([*SPAWN, *args], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=secondary, env=full_env,
                            close_fds=True)
    os.close(secondary)
    terminal = read_terminal(main)
    assert proc.stdout is not None
    with proc.stdout:
        stdout = proc.stdout.read().decode()
    code = proc.wait(timeout=60)
    os.close(main)
    return code, stdout, terminal


# -- migration apply ---------------------------------------------------------------------------

def test_a_short_apply_on_a_terminal_draws_no_bar(db_project: Any) -> None:
    names = [db_project.add_migration(f"m{i}", f"CREATE TABLE m{i} (id int);\n")
             for i in range(2)]
    shown = run_on_terminal(db_project.root, ["migration", "apply", "--yes"])
    assert bars(shown) == [] and "applying" not in shown, shown
    for position, name in enumerate(names, 1):
        assert f"[{position}/2] \u2713 {name} (" in shown


def test_a_long_apply_shows_count_elapsed_eta_and_the_migration_running(
        db_project: Any) -> None:
    first = db_project.add_migration("first", "SELECT pg_sleep(0.8);\n")
    second = db_project.add_migration("second", "SELECT pg_sleep(0.8);\n")
    shown = run_on_terminal(db_project.root, ["migration", "apply", "--yes"])
    drawn = bars(shown)
    assert drawn, shown
    # Past the one-second delay the first migration is done, so the ETA is known.
    assert any(re.fullmatch(rf"\S 1/2 \S+ 0:00:0\d ETA 0:00:0\d applying {second}", d)
               for d in drawn), drawn
    screen = visible(shown)
    assert f"[1/2] \u2713 {first} (" in screen and f"[2/2] \u2713 {second} (" in screen
    assert screen.count(SLEEP_OUTPUT) == 2, screen
    assert "Applied 2 migrations in" in screen


# -- migration pin --all -----------------------------------------------------------------------

def test_pin_all_shows_progress_on_a_terminal_and_prints_the_same_lines(
        db_project: Any) -> None:
    names = [db_project.add_migration(f"p{i}", f"SELECT {i};\n", pin=False) for i in range(3)]
    shown = run_on_terminal(db_project.root, ["migration", "pin", "--all"],
                            env={"SPAWN_PROGRESS_DELAY": "0"})
    drawn = bars(shown)
    assert any(re.fullmatch(r"\S 0/\? \S+ 0:00:0\d ETA -:--:-- snapshotting components/", d)
               for d in drawn), drawn
    assert re.search(r"3/3 \S+ 0:00:0\d ETA 0:00:00", " ".join(drawn)), drawn
    for name in names:
        (db_project.spawn_dir / "migrations" / name / "lock.toml").unlink()
    piped = db_project.run("migration", "pin", "--all", env={"SPAWN_PROGRESS_DELAY": "0"})
    assert piped.exit_code == 0, piped.stderr
    root = piped.stdout.split()[-1]
    assert piped.stdout == "".join(f"Pinned {name} to {root}\n" for name in names)
    assert piped.stderr == f"Pinned 3 migrations to {root} (3 first pinned).\n"
    assert visible(shown) == piped.stdout + piped.stderr


# -- test compare, expect, run -----------------------------------------------------------------

def slow_tests(db_project: Any) -> list[str]:
    """Two tests that sleep 2 s and a quick one, each with its expected output."""
    names = ["a_slow", "b_slow", "c_fast"]
    for name in names:
        sleep = "2" if name.endswith("slow") else "0"
        db_project.add_test(name, f"SELECT pg_sleep({sleep});\n")
        (db_project.spawn_dir / "tests" / name / "expected").write_text(SLEEP_OUTPUT)
    return names


def test_compare_on_a_terminal_shows_the_tests_running_at_once(db_project: Any) -> None:
    slow_tests(db_project)
    shown = run_on_terminal(db_project.root, ["test", "compare", "-j", "2"],
                            env={"SPAWN_PROGRESS_DELAY": "0.5"})
    drawn = bars(shown)
    assert any(re.fullmatch(r"\S 0/3 \S+ 0:00:0\d ETA -:--:-- comparing "
                            r"(a_slow, b_slow|b_slow, a_slow)", d) for d in drawn), drawn
    piped = db_project.run("test", "compare", "-j", "2", env={"SPAWN_PROGRESS_DELAY": "0"})
    assert (piped.exit_code, piped.stderr) == (0, "")
    assert summary_free(piped.stdout) == ("[PASS] a_slow\n[PASS] b_slow\n[PASS] c_fast\n"
                                          "3 tests: 3 passed, 0 failed in <time>\n")
    assert summary_free(COLOUR.sub("", visible(shown))) == summary_free(piped.stdout)


def test_expect_on_a_terminal_shows_progress(db_project: Any) -> None:
    slow_tests(db_project)
    shown = run_on_terminal(db_project.root, ["test", "expect", "--yes", "-j", "1"],
                            env={"SPAWN_PROGRESS_DELAY": "0.5"})
    drawn = bars(shown)
    assert any(re.fullmatch(r"\S [01]/3 \S+ 0:00:0\d ETA \S+ running [ab]_slow", d)
               for d in drawn), drawn
    assert "Wrote spawn/tests/c_fast/expected (5 lines)" in visible(shown)


def test_run_keeps_the_tests_output_whole_around_the_bar(db_project: Any) -> None:
    db_project.add_test("slow", "SELECT 1 AS answer;\nSELECT pg_sleep(1.5);\n"
                        "SELECT 'é' AS two;\n")
    shown = run_on_terminal(db_project.root, ["test", "run", "slow"])
    drawn = bars(shown)
    assert any(re.fullmatch(r"\S 0/1 \S+ 0:00:0\d ETA -:--:-- running slow", d)
               for d in drawn), drawn
    piped = db_project.run("test", "run", "slow")
    assert piped.stdout == (" answer \n--------\n      1\n(1 row)\n\n" + SLEEP_OUTPUT
                            + " two \n-----\n é\n(1 row)\n\n")
    assert visible(shown) == piped.stdout


@given(st.binary(max_size=300), st.lists(st.integers(min_value=0, max_value=300)))
def test_line_buffer_gives_whole_lines_however_the_bytes_arrive(
        data: bytes, cuts: list[int]) -> None:
    """``test run`` prints psql's output above the bar in whole lines: whatever the pieces
    (a cut may split a UTF-8 character), the lines are the output's own."""
    buffer = LineBuffer()
    lines: list[str] = []
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    for start, stop in itertools.pairwise(bounds):
        lines.extend(buffer.feed(data[start:stop]))
    lines.extend(buffer.end())
    text = data.decode("utf-8", errors="replace")
    assert lines == (text.removesuffix("\n").split("\n") if text else [])


def test_no_bar_when_quiet_on_a_dumb_terminal_or_piped(db_project: Any) -> None:
    slow_tests(db_project)
    for args, env in ((["-q"], {}), ([], {"TERM": "dumb"})):
        shown = run_on_terminal(db_project.root, [*args, "test", "compare", "c_fast"],
                                env={"SPAWN_PROGRESS_DELAY": "0", **env})
        assert bars(shown) == [] and "\x1b[?25l" not in shown, (args, env, shown)
        assert "[PASS] c_fast" in COLOUR.sub("", shown)
    never = run_on_terminal(db_project.root, ["--color", "never", "test", "compare", "c_fast"],
                            env={"SPAWN_PROGRESS_DELAY": "0"})
    assert bars(never), never  # a bar, without colours
    assert not COLOUR.search(never), never


def test_json_stays_clean_on_stdout_while_the_bar_draws_on_stderr(db_project: Any) -> None:
    slow_tests(db_project)
    args = ["test", "compare", "c_fast"]
    code, stdout, terminal = stderr_on_terminal(
        db_project.root, [*args, "--format", "json"], {"SPAWN_PROGRESS_DELAY": "0"})
    assert code == 0
    assert bars(terminal), terminal
    assert visible(terminal) == ""
    piped = db_project.run(*args, "--format", "json")
    assert "\x1b" not in stdout

    def stable(text: str) -> dict[str, Any]:
        document: dict[str, Any] = json.loads(text)
        document["summary"]["duration"] = 0
        for test in document["tests"]:
            test["duration"] = 0
        return document

    assert stable(stdout) == stable(piped.stdout)
    assert re.sub(r'"duration": [\d.]+', "", stdout) == \
        re.sub(r'"duration": [\d.]+', "", piped.stdout)


def test_a_bad_progress_delay_is_a_warning_and_the_default(db_project: Any) -> None:
    slow_tests(db_project)
    shown = run_on_terminal(db_project.root, ["test", "compare", "c_fast"],
                            env={"SPAWN_PROGRESS_DELAY": "soon"})
    assert ("warning: SPAWN_PROGRESS_DELAY='soon' is not a number of seconds, so progress "
            "bars appear after 1 s; set it to 0 (at once) or more\n") in shown
    assert "[PASS] c_fast" in COLOUR.sub("", shown) and bars(shown) == []


@given(st.floats(min_value=0, max_value=24 * 3600, exclude_max=True, allow_nan=False))
def test_clock_reads_like_riches_elapsed_column(seconds: float) -> None:
    assert clock(seconds) == str(timedelta(seconds=int(seconds)))


def test_clock_past_a_day_and_unknown() -> None:
    assert clock(25 * 3600 + 61.9) == "25:01:01"
    assert clock(-3) == "0:00:00"
    assert clock(None) == "-:--:--"


# -- diffs and errors --------------------------------------------------------------------------

def test_diffs_on_a_terminal_are_drawn_by_rich_with_the_plain_text(db_project: Any) -> None:
    db_project.add_test("x", "SELECT 2 AS answer;\n")
    (db_project.spawn_dir / "tests" / "x" / "expected").write_text(
        " answer \n--------\n      1\n(1 row)\n\n")
    coloured = run_on_terminal(db_project.root, ["test", "compare"])
    for styled in ("\x1b[1;31m[FAIL]\x1b[0m x\n",
                   "\x1b[1m--- spawn/tests/x/expected\x1b[0m\n",
                   "\x1b[1m+++ actual output of x\x1b[0m\n",
                   "\x1b[36m@@ ",
                   "\x1b[31m  3     -|      1\x1b[0m\n",
                   "\x1b[32m      3 +|      2\x1b[0m\n"):
        assert styled in coloured, (styled, coloured)
    piped = db_project.run("test", "compare")
    assert piped.exit_code == 1 and "\x1b" not in piped.stdout
    assert summary_free(COLOUR.sub("", coloured)) == summary_free(piped.stdout)


MISSING = "migration 'nosuch' not found in {}; `spawn migration list` lists them"


def test_an_error_on_a_colour_terminal_is_a_panel_and_one_line_elsewhere(
        db_project: Any) -> None:
    message = MISSING.format(db_project.spawn_dir / "migrations")
    panel = run_on_terminal(db_project.root, ["migration", "build", "nosuch"])
    text = COLOUR.sub("", panel)
    assert text.startswith("\u256d\u2500 error \u2500"), panel
    assert "\x1b[31m\u2570" in panel  # a red frame
    inside = [line.strip("\u2502 ") for line in text.splitlines()[1:-1]]
    # rich wraps at spaces, and cuts a word longer than the panel (the path) where it must.
    assert "".join("".join(inside).split()) == "".join(message.split())
    plain = f"error: {message}\n"
    piped = db_project.run("migration", "build", "nosuch")
    assert (piped.exit_code, piped.stdout, piped.stderr) == (2, "", plain)
    always = db_project.run("--color", "always", "migration", "build", "nosuch")
    assert always.stderr == plain
    for args, env in ((["--color", "never"], {}), ([], {"NO_COLOR": "1"}),
                      ([], {"TERM": "dumb"})):
        assert run_on_terminal(db_project.root, [*args, "migration", "build", "nosuch"],
                               env=env) == plain, (args, env)
