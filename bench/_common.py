"""Helpers shared by the benchmarks: run a child process, time it, take medians.

Every measurement is a real child process, timed from spawn to reap, with the
peak RSS of that one child taken from ``wait4`` (so the benchmark's own memory
never pollutes the figure).
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

# Interpreter settings of the shell, not of users: with PYTHONUNBUFFERED every
# chunk a render yields becomes a write(2), and with PYTHONDONTWRITEBYTECODE the
# package is recompiled from source on every start.
INTERPRETER_VARS = ("PYTHONUNBUFFERED", "PYTHONDONTWRITEBYTECODE")


GNU_TIME = "/usr/bin/time" if os.access("/usr/bin/time", os.X_OK) else None


def child_env(inherit: bool) -> tuple[dict[str, str], list[str]]:
    """The environment for measured children, and the variables removed from it."""
    env = dict(os.environ)
    removed = [] if inherit else [f"{k}={env.pop(k)}" for k in INTERPRETER_VARS if k in env]
    return env, removed


class BenchError(Exception):
    """A measured command failed; the benchmark reports it instead of a number."""


@dataclass(frozen=True)
class Run:
    seconds: float
    max_rss_kb: int
    exit_code: int
    stderr: str
    stdout_bytes: int = 0


def run_child(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    count_stdout: bool = False,
    rss: bool = True,
) -> Run:
    """Run ``argv`` with stdout to /dev/null (or drained and counted), stderr kept.

    Peak RSS comes from GNU time when installed: ``wait4`` would also count the
    pages of this (forking) benchmark process, which Linux carries across exec.
    """
    with tempfile.TemporaryFile() as err, tempfile.NamedTemporaryFile("r") as rss_file:
        wrap = [GNU_TIME, "-f", "%M", "-o", rss_file.name] if rss and GNU_TIME else []
        start = time.perf_counter()
        proc = subprocess.Popen(
            [*wrap, *argv],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if count_stdout else subprocess.DEVNULL,
            stderr=err,
            env=env,
        )
        counted = _drain(proc.stdout) if proc.stdout is not None else 0
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode("utf-8", errors="replace")
        lines = rss_file.read().split()
        max_rss = int(lines[-1]) if wrap and lines else usage.ru_maxrss
    return Run(elapsed, max_rss, proc.returncode, text, counted)


def _drain(pipe: IO[bytes]) -> int:
    total = 0
    while chunk := pipe.read(1 << 20):
        total += len(chunk)
    pipe.close()
    return total


def checked(run: Run, what: str) -> Run:
    if run.exit_code != 0:
        last = run.stderr.strip().splitlines()[-1:] or ["(no stderr)"]
        raise BenchError(f"{what} exited {run.exit_code}: {last[0]}")
    return run


def median_s(runs: Sequence[Run]) -> float:
    return statistics.median(r.seconds for r in runs)


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms" if seconds < 10 else f"{seconds:8.2f} s "


def fmt_runs(runs: Sequence[Run]) -> str:
    return ", ".join(f"{r.seconds * 1000:.0f}" for r in runs) + " ms"


def describe_machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, Python {platform.python_version()}"
