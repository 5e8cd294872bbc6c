"""Benchmark: ``spawn --target 'db-*' migration apply --yes --jobs 4`` on 50 databases.

Issue 18's fan-out half of the scale test: 50 databases of one throwaway server as 50
targets, each given the same M pinned migrations (apply.py's: a table and a function in a
transaction; default M = 3). Each round gets fresh databases:

- floor: the rendered SQL of the M migrations (``spawn migration build --pinned``, after
  spawn's psql preamble) piped through one ``psql`` per database, one database after
  another: what a shell loop over the databases would do;
- spawn: one ``spawn --target 'db-*' migration apply --yes --jobs 4`` child process
  (interpreter start-up, 50 tracking schemas, locks and history rows included), checked
  afterwards: every database has its M tables and M SUCCESS rows;
- spawn, nothing to do: the same command again (50 history reads, nothing run).

The rounds interleave floor and spawn, so a busy machine slows both alike; medians are
compared. Targets: spawn within 2.5x the floor (issue 18's bound for the fleet), and the
run with nothing to do under 1 s.

Run from the repository root:  .venv/bin/python bench/fleet_targets.py [--databases 50]
[--migrations 3] [--jobs 4] [--repeat 3] [--fast]. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchError, child_env, describe_machine, fmt_s
from apply import Sample, Server, check_applied, make_project, server_options, temp_server, timed

from spawn_db.config import toml_string

TARGET_RATIO = 2.5
TARGET_NOTHING_S = 1.0


def fleet_config(root: Path, server: Server, databases: list[str]) -> None:
    """spawn.toml with one target ``db-<n>`` per database."""
    lines = ['spawn_folder = "spawn"', ""]
    for number, database in enumerate(databases, 1):
        direct = ", ".join(toml_string(a) for a in server.argv(database))
        lines += [f"[targets.db-{number}]", 'engine = "postgres-psql"',
                  f'command = {{ kind = "direct", direct = [{direct}] }}', ""]
    (root / "spawn.toml").write_text("\n".join(lines), encoding="utf-8")


def floor_round(server: Server, rendered: Path, count: int) -> float:
    """The rendered SQL through one psql per database, one after another."""
    databases = [server.fresh_database() for _ in range(count)]
    start = time.perf_counter()
    for database in databases:
        with rendered.open("rb") as source:
            done = subprocess.run(server.argv(database), stdin=source, capture_output=True,
                                  check=False)
        if done.returncode != 0:
            raise BenchError(f"psql failed on {database}: {done.stderr.decode()[-300:]}")
    return time.perf_counter() - start


def spawn_round(server: Server, root: Path, count: int, migrations: int, jobs: int,
                env: dict[str, str]) -> tuple[Sample, Sample]:
    databases = [server.fresh_database() for _ in range(count)]
    fleet_config(root, server, databases)
    argv = [sys.executable, "-m", "spawn_db", "--target", "db-*", "migration", "apply",
            "--yes", "--jobs", str(jobs)]
    first = timed(server, argv, cwd=root, env=env)
    for database in databases:
        check_applied(server, database, migrations)
    again = timed(server, argv, cwd=root, env=env)
    return first, again


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--databases", type=int, default=50)
    parser.add_argument("--migrations", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    server_options(parser)
    args = parser.parse_args()
    env, removed = child_env(args.inherit_env)
    print(describe_machine())
    if removed:
        print(f"children run without: {', '.join(removed)}")
    base, server = temp_server(args.fast, prefix="spawn-bench-fleet-")
    try:
        root = base / "project"
        rendered = make_project(root, args.migrations)
        floors: list[float] = []
        firsts: list[Sample] = []
        agains: list[Sample] = []
        for _ in range(args.repeat):
            floors.append(floor_round(server, rendered, args.databases))
            first, again = spawn_round(server, root, args.databases, args.migrations,
                                       args.jobs, env)
            firsts.append(first)
            agains.append(again)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return report(args, floors, firsts, agains)


def report(args: argparse.Namespace, floors: list[float], firsts: list[Sample],
           agains: list[Sample]) -> int:
    floor_s = statistics.median(floors)
    spawn_s = statistics.median(r.wall for r in firsts)
    again_s = statistics.median(r.wall for r in agains)
    ratio = spawn_s / floor_s
    print(f"{args.databases} databases x {args.migrations} migrations, --jobs {args.jobs}, "
          f"{'fast' if args.fast else 'default'} durability, {args.repeat} rounds")
    print(f"  floor (one psql per database, in turn)  {fmt_s(floor_s)}  runs: "
          + ", ".join(f"{s:.2f}" for s in floors))
    print(f"  spawn apply, --jobs {args.jobs}                  {fmt_s(spawn_s)}  runs: "
          + ", ".join(f"{r.wall:.2f}" for r in firsts)
          + f"  (cpu client {statistics.median(r.client_cpu for r in firsts):.2f} s, "
          f"server {statistics.median(r.server_cpu for r in firsts):.2f} s)")
    print(f"  ratio                                   {ratio:8.2f}x  (target < "
          f"{TARGET_RATIO}x)")
    print(f"  spawn apply, nothing to do              {fmt_s(again_s)}  runs: "
          + ", ".join(f"{r.wall:.2f}" for r in agains) + f"  (target < {TARGET_NOTHING_S} s)")
    missed = ratio >= TARGET_RATIO or again_s >= TARGET_NOTHING_S
    if missed:
        print("target missed")
    return 1 if missed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
