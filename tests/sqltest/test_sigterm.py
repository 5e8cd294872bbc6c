"""SIGTERM to `spawn test …` is handled like Ctrl-C: no psql and no backend is left."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.conftest import DbProject, TestDatabase
from tests.helpers import start_spawn

SLEEP = "SELECT pg_sleep(37);\n"


def backends(database: TestDatabase) -> int:
    return int(database.query(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid() AND "
        "(application_name LIKE 'spawn-test-%' OR query LIKE '%pg_sleep(37)%')"))


def children(pid: int) -> list[int]:
    """Live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize(("args", "running"), [
    (["compare", "-j", "1"], 1),
    (["compare", "-j", "2"], 2),
    (["expect", "--yes", "-j", "2"], 2),
    (["run", "h1"], 1),
])
def test_sigterm_stops_tests_like_ctrl_c(
    db_project: DbProject, args: list[str], running: int
) -> None:
    database = db_project.database
    for name in ("h1", "h2", "h3"):
        db_project.add_test(name, SLEEP)
    proc = start_spawn("test", *args, cwd=db_project.root, stderr=subprocess.STDOUT)
    psqls: list[int] = []
    try:
        deadline = time.monotonic() + 30
        while (backends(database) < running or len(psqls) < running) \
                and time.monotonic() < deadline:
            psqls = children(proc.pid)
            time.sleep(0.05)
        assert backends(database) == running and len(psqls) == running

        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=20)

        assert [pid for pid in psqls if alive(pid)] == []
        assert backends(database) == 0
        assert (proc.returncode, output.splitlines()[-1:]) == (143, ["Aborted! (SIGTERM)"]), \
            output
    finally:
        for pid in [proc.pid, *psqls]:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait()
