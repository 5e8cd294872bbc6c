"""Benchmark: ``spawn migration status`` on N applied migrations, and ``spawn --version``.

Issue 12's targets: status on 1,000 migrations under 0.5 s, and ``spawn
--version`` within 8x ``python -c pass``. Status compares each applied
migration's pin and rendered checksum with its history row (issue 11), so it
is measured twice: the first run after apply (the render cache in
``.spawn/status-cache.json`` is empty) and later runs (warm cache). Piped,
status prints plain text and never imports rich; so it is also measured on a
pseudo-terminal, where rich draws the coloured table (the target holds there
too).

Run from the repository root:  .venv/bin/python bench/status.py [N] [--repeat R]
Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import checked, child_env, fmt_s, run_child
from apply import Server, make_project, point_at

STATUS_TARGET_S = 0.5
VERSION_TARGET_RATIO = 8.0


def measure_status(server: Server, count: int, repeat: int, env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory(prefix="spawn-bench-status-") as tmp:
        root = Path(tmp) / "project"
        make_project(root, count)
        database = server.fresh_database()
        try:
            point_at(root, server.argv(database))
            spawn = [sys.executable, "-m", "spawn_db"]
            checked(run_child([*spawn, "migration", "apply", "--yes"], cwd=root, env=env),
                    "spawn migration apply")
            cold = checked(run_child([*spawn, "migration", "status"], cwd=root, env=env),
                           "spawn migration status (cold cache)")
            warm: list[float] = []
            terminal: list[float] = []
            for _ in range(repeat):  # interleaved, so both see the same machine
                warm.append(checked(run_child([*spawn, "migration", "status"], cwd=root,
                                              env=env), "spawn migration status").seconds)
                terminal.append(run_on_terminal([*spawn, "migration", "status"], root, env))
        finally:
            server.drop(database)
    median = statistics.median(warm)
    on_terminal = statistics.median(terminal)
    print(f"N={count:<6} status, first run  {fmt_s(cold.seconds)}")
    print(f"{'':8} status, warm       {fmt_s(median)}  runs: "
          + ", ".join(f"{s:.3f}" for s in warm))
    print(f"{'':8} status, terminal   {fmt_s(on_terminal)}  runs: "
          + ", ".join(f"{s:.3f}" for s in terminal) + "  (rich's coloured table)")
    return max(median, on_terminal)


def run_on_terminal(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Run ``argv`` with a pseudo-terminal as stdin, stdout and stderr, reading all it
    prints; seconds from start to exit. Fails unless the output is rich's coloured table
    (the green of an applied state), so the figure is never that of the plain path."""
    import pty
    import subprocess

    main, secondary = pty.openpty()
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdin=secondary, stdout=secondary,
                            stderr=secondary, env={**env, "TERM": "xterm"}, close_fds=True)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    code = proc.wait()
    seconds = time.perf_counter() - start
    os.close(main)
    output = b"".join(chunks)
    if code != 0 or b"\x1b[32m\xe2\x9c\x93 Applied" not in output:
        raise SystemExit(f"spawn migration status on a terminal: exit {code}, no coloured "
                         f"table:\n{output[-2000:].decode(errors='replace')}")
    return seconds


def measure_version(repeat: int, env: dict[str, str]) -> float:
    python = [run_child([sys.executable, "-c", "pass"], env=env).seconds for _ in range(repeat)]
    version = [checked(run_child([sys.executable, "-m", "spawn_db", "--version"], env=env),
                       "spawn --version").seconds for _ in range(repeat)]
    ratio = statistics.median(version) / statistics.median(python)
    print(f"spawn --version {fmt_s(statistics.median(version))} vs python -c pass "
          f"{fmt_s(statistics.median(python))}: {ratio:.2f}x")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env, _ = child_env(False)
    env.pop("NO_COLOR", None)
    base = Path(tempfile.mkdtemp(prefix="spawn-bench-pg-", dir="/tmp"))
    os.chmod(base, 0o755)
    server = Server(base, fast=True)
    try:
        status_s = measure_status(server, args.count, args.repeat, env)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    ratio = measure_version(max(args.repeat, 10), env)
    met_status = status_s < STATUS_TARGET_S
    met_version = ratio <= VERSION_TARGET_RATIO
    print(f"target: status under {STATUS_TARGET_S} s at N={args.count}: "
          f"{'met' if met_status else 'MISSED'}; --version within {VERSION_TARGET_RATIO}x: "
          f"{'met' if met_version else 'MISSED'}")
    return 0 if met_status and met_version else 1


if __name__ == "__main__":
    sys.exit(main())
