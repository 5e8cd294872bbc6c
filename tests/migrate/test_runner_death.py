"""A migration's psql that dies in the middle of a migration (killed, out of memory, a
wrapper that crashed): spawn ends the migration's server session before it writes the
outcome, so nothing of the migration can commit after its history says FAILURE.

The server notices a vanished client only at its next check (``client_connection_check_
interval``, one second; never on PostgreSQL 13 or where a migration switched it off) or
when the statement ends, so a statement still running when psql died used to commit after
spawn had recorded FAILURE. Each test holds a gate (an advisory lock) that the migration's
last statement waits for, kills psql while it waits, and opens the gate only once spawn has
written its row (or exited): the statement can then commit only if its session is still
alive, which is exactly what the history must not hide."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from spawn_db.db.psql import ControlSession
from spawn_db.escape import escape_literal
from spawn_db.migrate.tracking import Tracking
from tests.conftest import DbProject, TestDatabase
from tests.helpers import start_spawn
from tests.migrate.history import history
from tests.migrate.test_apply_targets import set_target, toml_list, write_script

GATE = 604_117
# The first statement commits before psql dies; the second waits at the gate. The migration
# switches the server's client check off, as PostgreSQL 13 has none: only spawn can end it.
SCRIPT = (
    "CREATE TABLE finished_first (a int);\n"
    "SET client_connection_check_interval = 0;\n"
    f"CREATE TABLE gated AS SELECT 1 AS n FROM (SELECT pg_advisory_xact_lock({GATE})) g;\n"
)
# A psql meta-command makes a migration run in a psql of its own.
ISOLATED = "\\set spawn_settle 1\n"
ENDED = (
    "psql ended before the migration did (killed, crashed, or its connection lost); spawn made "
    "sure its server session had ended before writing this row, so nothing of it runs any "
    "more. Statements it had finished before psql ended may have committed (the one running "
    "then too, if its commit came first): check what it changed (`spawn migration drift` "
    "shows schema objects it left) before you run it again"
)


@contextmanager
def gate(database: TestDatabase) -> Iterator[Callable[[], None]]:
    """A session of the test holding the advisory lock ``GATE`` in ``database``; yields
    the function that lets it go (and ends the session)."""
    holder = subprocess.Popen([*database.psql_argv(), "-q", "-v", "ON_ERROR_STOP=1"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert holder.stdin is not None

    def release() -> None:
        if holder.poll() is None and holder.stdin is not None and not holder.stdin.closed:
            holder.stdin.write(f"SELECT pg_advisory_unlock({GATE});\n")
            holder.stdin.close()
        holder.wait(timeout=30)

    holder.stdin.write(f"SELECT pg_advisory_lock({GATE});\n")
    holder.stdin.flush()
    try:
        database.wait_until(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted "
            f"AND objid = {GATE} AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database()))")
        yield release
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def psql_child(spawn_pid: int, appname: str) -> int:
    """The pid of the psql spawn started with ``PGAPPNAME=appname`` exactly (the runner is
    ``spawn apply``, a migration's own psql ``spawn apply <name>``)."""
    wanted = f"PGAPPNAME={appname}".encode()
    for task in Path(f"/proc/{spawn_pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if wanted in Path(f"/proc/{child}/environ").read_bytes().split(b"\0"):
                return int(child)
    raise AssertionError(f"no psql with PGAPPNAME={appname!r} found")


def waiting_backend(database: TestDatabase) -> int:
    """Wait until the migration's last statement waits at the gate; its backend's pid."""
    query = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
             "AND wait_event_type = 'Lock' AND query LIKE 'CREATE TABLE gated%'")
    database.wait_until(f"SELECT EXISTS ({query})")
    return int(database.query(query))


def latest_row(database: TestDatabase, name: str) -> tuple[str, str, str]:
    """(activity, status, status_note) of ``name``'s latest history row."""
    text = database.query(
        "SELECT h.activity_id_activity || '|' || h.status_id_status || '|' || h.status_note "
        f"{LATEST.format(name=escape_literal(name))}")
    activity, status, note = text.split("|", 2)
    return activity, status, note


LATEST = ("FROM _spawn.migration_history h JOIN _spawn.migration m "
          "ON m.migration_id = h.migration_id_migration "
          "WHERE m.name = {name} ORDER BY h.migration_history_id DESC LIMIT 1")


def recorded(name: str, status: str) -> str:
    """SQL: whether ``name``'s latest history row has ``status``."""
    latest = LATEST.format(name=escape_literal(name))
    wanted = escape_literal(status)
    return f"SELECT coalesce((SELECT h.status_id_status {latest}) = {wanted}, false)"


def kill_at_the_gate(project: DbProject, args: list[str], appname: str,
                     release: Callable[[], None], until: str) -> tuple[int, str, int]:
    """Run spawn with ``args``; SIGKILL its psql ``appname`` while the migration waits at
    the gate; open the gate as soon as the SQL ``until`` says ``t`` (``{killed}`` in it:
    the server's clock just after the kill) or spawn has exited, then let spawn finish.
    (exit code, stderr, the migration's backend pid)."""
    database = project.database
    proc = start_spawn(*args, cwd=project.root)
    try:
        backend = waiting_backend(database)
        os.kill(psql_child(proc.pid, appname), signal.SIGKILL)
        condition = until.format(killed=escape_literal(database.query("SELECT clock_timestamp()")))
        deadline = time.monotonic() + 60
        while proc.poll() is None and database.query(condition) != "t":
            assert time.monotonic() < deadline, "spawn neither recorded nor exited"
            time.sleep(0.02)
        release()
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    database.wait_until("SELECT NOT EXISTS (SELECT FROM pg_stat_activity WHERE datname = "
                        f"current_database() AND pid = {backend})")
    return proc.returncode, err, backend


def tables(database: TestDatabase) -> str:
    return database.query("SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class "
                          "WHERE relname IN ('finished_first', 'gated')")


def gated_migration(project: DbProject, where: str) -> str:
    """A migration running ``SCRIPT`` in the shared runner, in a psql of its own, or as
    the SQL step of a scripted migration (also a psql of its own); its name."""
    if where != "step":
        return project.add_migration("gated", (ISOLATED if where == "own psql" else "") + SCRIPT)
    name = "20240101000000-gated"
    folder = project.spawn_dir / "migrations" / name
    (folder / "steps").mkdir(parents=True)
    (folder / "steps" / "gated.sql").write_text(SCRIPT)
    (folder / "migration.toml").write_text('[[steps]]\nsql = "steps/gated.sql"\n')
    assert project.run("migration", "pin", name).exit_code == 0
    return name


@pytest.mark.parametrize("where", ["runner", "own psql", "step"])
def test_a_statement_running_when_psql_died_never_commits_after_failure(
    db_project: DbProject, where: str,
) -> None:
    """The shared runner, a migration's own psql and a scripted migration's SQL step: spawn
    ends the server session before it writes FAILURE, so the statement that was running
    never commits (opening the gate afterwards changes nothing), and the note says what
    may have committed before."""
    database = db_project.database
    name = gated_migration(db_project, where)
    appname = "spawn apply" if where == "runner" else f"spawn apply {name}"
    said = "step 1: " if where == "step" else ""

    with gate(database) as release:
        code, err, _ = kill_at_the_gate(db_project, ["migration", "apply", "--yes"],
                                        appname, release, recorded(name, "FAILURE"))

    assert code == 1, err
    assert tables(database) == "finished_first"
    assert err.splitlines()[-4:] == [
        f"error: migration {name} failed (0 of 1 applied before it); recorded as FAILURE in "
        "_spawn.migration_history. psql said:",
        f"{said}psql exited with code -9",
        ENDED,
        f"Fix the migration (re-pin it if you change its components), then run `spawn "
        f"migration apply {name} --retry`; if you completed it by hand, run `spawn migration "
        f"adopt {name}`",
    ]
    assert [row for row in history(database) if row[0] == name] == [
        (name, "APPLY", "ATTEMPTED"), (name, "APPLY", "FAILURE")]
    assert latest_row(database, name) == ("APPLY", "FAILURE",
                                          f"{said}psql exited with code -9\n{ENDED}")


def test_a_down_script_killed_midway_never_commits_after_its_revert_failure(
    db_project: DbProject,
) -> None:
    """The same for ``spawn migration revert``: the down script's session is ended before
    its REVERT FAILURE row is written."""
    database = db_project.database
    name = db_project.add_migration("gated", "SELECT 1;\n")
    (db_project.spawn_dir / "migrations" / name / "down.sql").write_text(SCRIPT)
    assert db_project.run("migration", "apply", "--yes").exit_code == 0

    with gate(database) as release:
        code, err, _ = kill_at_the_gate(db_project, ["migration", "revert", "--yes"],
                                        "spawn apply", release, recorded(name, "FAILURE"))

    assert code == 1, err
    assert tables(database) == "finished_first"
    assert err.splitlines()[-4:] == [
        f"error: reverting migration {name} failed (0 of 1 reverted before it); recorded as "
        "REVERT FAILURE in _spawn.migration_history. psql said:",
        "psql exited with code -9",
        ENDED,
        f"Fix its down.sql (re-pin it if you change its components), then run `spawn "
        f"migration revert {name} --retry`; apply refuses to run until then",
    ]
    assert latest_row(database, name) == ("REVERT", "FAILURE",
                                          f"psql exited with code -9\n{ENDED}")
    assert tables(database) == "finished_first"


def test_a_session_spawn_may_not_end_leaves_the_migration_attempted(
    db_project: DbProject, tmp_path: Path,
) -> None:
    """The control session's role may not end the migration's session (a superuser's, here:
    a wrapper connects migrations as the superuser and spawn's own session as a plain role).
    Spawn then writes no FAILURE, which the statement could contradict by committing later:
    the migration stays ATTEMPTED and the error says why and what to do. The gate opens once
    spawn waits for its sessions to end before it lets go of the lock (its control session
    reads ``pg_locks`` again), and the statement commits, which ATTEMPTED allows."""
    database = db_project.database
    role = f"settle_{database.name}"[:63]
    database.query(f'CREATE ROLE "{role}" LOGIN; GRANT CREATE ON DATABASE "{database.name}" '
                   f'TO "{role}"; GRANT CREATE ON SCHEMA public TO "{role}"')
    try:
        argv = database.psql_argv()
        user = argv.index("-U") + 1
        wrapper = write_script(tmp_path / "by-role", (
            f'case "$PGAPPNAME" in "spawn apply"*) user={shlex.quote(argv[user])} ;; '
            f"*) user={shlex.quote(role)} ;; esac\n"
            f'exec {shlex.join(argv[:user])} "$user" {shlex.join(argv[user + 1:])} "$@"\n'))
        set_target(db_project, f'{{ kind = "direct", direct = {toml_list([str(wrapper)])} }}')
        name = db_project.add_migration("gated", SCRIPT)

        with gate(database) as release:
            code, err, backend = kill_at_the_gate(
                db_project, ["migration", "apply", "--yes"], "spawn apply", release,
                "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE datname = current_database() "
                "AND application_name = 'spawn' AND query LIKE '%pg_locks%' "
                "AND query_start > {killed}::timestamptz)")

        assert code == 1, err
        assert tables(database) == "finished_first,gated"
        assert [row for row in history(database) if row[0] == name] == [
            (name, "APPLY", "ATTEMPTED")]
    finally:
        database.query(f'DROP OWNED BY "{role}" CASCADE; DROP ROLE "{role}"')
    assert re.search(
        f"\nerror: psql running migration {name} exited with code -9, and its server session "
        f"\\(pid {backend}\\) may still be running a statement that can commit, so spawn did "
        "not record a FAILURE: the history shows it ATTEMPTED in _spawn.migration_history. "
        f"Wait until `SELECT pid FROM pg_stat_activity WHERE pid = {backend}` returns no row "
        f"\\(or end it as a role allowed to: `SELECT pg_terminate_backend\\({backend}\\)`\\), "
        f"check what it changed, then run `spawn migration apply {name} --retry`, or `spawn "
        f"migration adopt {name}` if it completed. Why the session is not known to be gone: "
        f"spawn could not end it: ending migration session {backend} failed: ERROR:  "
        # PostgreSQL 15's words, then 16's and later.
        "(must be a superuser to terminate superuser process|"
        "permission denied to terminate process\nDETAIL:  [^\n]+)\n$", err), err


def test_end_backend_ends_a_session_and_gives_up_on_one_that_stays(
    database: TestDatabase,
) -> None:
    """``Tracking.end_backend`` against real processes: a session in a long statement is
    terminated and gone when it returns True; a process that ``pg_terminate_backend``
    cannot end (the checkpointer, listed in ``pg_stat_activity``) is still there after the
    patience, and it says so with False instead of waiting for ever."""
    sleeper = subprocess.Popen([*database.psql_argv(), "-c", "SELECT pg_sleep(60)"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    control = ControlSession(database.psql_argv())
    try:
        waiting = ("SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                   "AND query = 'SELECT pg_sleep(60)'")
        database.wait_until(f"SELECT EXISTS ({waiting})")
        pid = int(database.query(waiting))
        tracking = Tracking(control, "_spawn")
        checkpointer = int(database.query(
            "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'"))

        assert tracking.end_backend(pid) is True
        assert database.query(f"SELECT count(*) FROM pg_stat_activity WHERE pid = {pid}") == "0"
        started = time.monotonic()
        assert tracking.end_backend(checkpointer, patience=0.3) is False
        assert 0.3 <= time.monotonic() - started < 10
    finally:
        control.close()
        sleeper.kill()
        sleeper.wait()
