"""Benchmark: ``spawn migration revert --steps N --yes`` against the floor of one psql session.

For each N: apply.py's project of N pinned migrations (a table and a function
each, in a transaction), each with a ``down.sql`` that drops both in a
transaction. Each measured run gets a fresh database with the N migrations
applied first (not timed):

- spawn: applied with ``spawn migration apply --yes``, then
  ``spawn migration revert --steps N --yes`` timed as a child process
  (interpreter start-up, history read, lock, REVERT rows: everything a user
  waits for);
- floor: the up scripts piped through one psql, then the same rendered down
  scripts (what ``spawn migration build --down --pinned`` prints), newest
  first, preceded by spawn's psql preamble, piped through one ``psql`` (timed).

The two sides are interleaved and their medians compared, as in apply.py
(whose server, project and timing helpers this reuses); CPU seconds of the
client and of the server are reported too.

Target (issue 13): spawn within 1.2x the floor at N=1000 with default settings.

Run from the repository root:  .venv/bin/python bench/revert.py [N ...] [--repeat R] [--fast]
Exit status 1 if the target is missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchError, child_env, fmt_s
from apply import Sample, Server, make_project, point_at, server_options, temp_server, timed

from spawn_db.config import Overrides, load_config
from spawn_db.db.target import PSQL_PREAMBLE
from spawn_db.migrate.migration import DOWN, build_migration

TARGET_RATIO = 1.2
TARGET_N = 1000

DOWN_SCRIPT = """\
BEGIN;
DROP FUNCTION item_{i}_count();
DROP TABLE item_{i};
COMMIT;
"""


def make_reversible(root: Path, count: int) -> tuple[Path, Path]:
    """apply.py's project plus a down.sql per migration; the rendered up scripts (in
    order) and down scripts (newest first), each file ready for one psql."""
    rendered_up = make_project(root, count)
    config = load_config(Overrides(config_file=str(root / "spawn.toml")))
    names = sorted(f.name for f in config.migrations_dir.iterdir() if (f / "up.sql").is_file())
    for i, name in enumerate(names):
        (config.migrations_dir / name / DOWN).write_text(DOWN_SCRIPT.format(i=i),
                                                         encoding="utf-8")
    rendered_down = root / "rendered-down.sql"
    with rendered_down.open("w", encoding="utf-8") as out:
        out.write(PSQL_PREAMBLE)
        for name in reversed(names):
            out.write("".join(build_migration(config, name, pinned=True, script=DOWN)))
            out.write("\n")
    return rendered_up, rendered_down


def pipe(server: Server, database: str, script: Path) -> None:
    with script.open("rb") as source:
        done = subprocess.run(server.argv(database), stdin=source, capture_output=True,
                              check=False)
    if done.returncode != 0:
        raise BenchError(f"psql failed on {script.name}: {done.stderr.decode()[-300:]}")


def floor_run(server: Server, up: Path, down: Path) -> Sample:
    """Databases are kept until the server is thrown away, as in apply.py (dropping one
    slows the next runs' file creation on this VM's file system)."""
    database = server.fresh_database()
    pipe(server, database, up)
    time.sleep(0.2)  # the postmaster reaps that backend (and counts its CPU) first
    return timed(server, server.argv(database), stdin=down)


def spawn_run(server: Server, root: Path, count: int, env: dict[str, str]) -> Sample:
    database = server.fresh_database()
    point_at(root, server.argv(database))
    spawn = [sys.executable, "-m", "spawn_db", "migration"]
    timed(server, [*spawn, "apply", "--yes"], cwd=root, env=env)
    run = timed(server, [*spawn, "revert", "--steps", str(count), "--yes"], cwd=root,
                env=env)
    reverted = server.query(
        "SELECT count(*) FROM _spawn.migration_history h JOIN _spawn.migration m "
        "ON m.migration_id = h.migration_id_migration WHERE m.namespace = 'default' "
        "AND h.activity_id_activity = 'REVERT' AND h.status_id_status = 'SUCCESS'",
        database)
    tables = server.query(
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'item\\_%'", database)
    if int(reverted) != count or int(tables) != 0:
        raise BenchError(f"spawn recorded {reverted} reverts of {count}; {tables} tables "
                         "left")
    return run


def measure(server: Server, count: int, repeat: int, env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory(prefix="spawn-bench-revert-") as tmp:
        root = Path(tmp) / "project"
        up, down = make_reversible(root, count)
        spawn_runs: list[Sample] = []
        floor_runs: list[Sample] = []
        for _ in range(repeat):
            floor_runs.append(floor_run(server, up, down))
            spawn_runs.append(spawn_run(server, root, count, env))
    floor_s = statistics.median(r.wall for r in floor_runs)
    spawn_s = statistics.median(r.wall for r in spawn_runs)
    ratio = spawn_s / floor_s
    for label, runs, median in (("floor (one psql)", floor_runs, floor_s),
                                ("spawn revert", spawn_runs, spawn_s)):
        print(f"{'N=' + str(count) if label.startswith('floor') else '':7} {label:17} "
              f"{fmt_s(median)}  {median / count * 1000:6.2f} ms/migration  "
              f"cpu client {statistics.median(r.client_cpu for r in runs):5.2f} s, "
              f"server {statistics.median(r.server_cpu for r in runs):5.2f} s  runs: "
              + ", ".join(f"{r.wall:.2f}" for r in runs))
    best = min(r.wall for r in spawn_runs) / min(r.wall for r in floor_runs)
    cpu = statistics.median(r.cpu for r in spawn_runs) / \
        statistics.median(r.cpu for r in floor_runs)
    print(f"        ratio             {ratio:8.2f}x  (best runs {best:.2f}x, cpu {cpu:.2f}x)")
    return ratio


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("counts", nargs="*", type=int, default=[200, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    server_options(parser)
    args = parser.parse_args()
    env, removed = child_env(args.inherit_env)
    base, server = temp_server(args.fast)
    try:
        settings = "fsync etc. off (--fast)" if args.fast else "PostgreSQL defaults (fsync on)"
        print(f"server: {server.running.bins.bin_dir} ({settings}); psql: "
              f"{server.running.bins.psql}; {os.cpu_count()} CPUs; median of {args.repeat}")
        if removed:
            print(f"children run without {', '.join(removed)}")
        ratios = {count: measure(server, count, args.repeat, env) for count in args.counts}
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    target = ratios.get(TARGET_N)
    if target is not None and not args.fast:
        verdict = "met" if target <= TARGET_RATIO else "MISSED"
        print(f"target: within {TARGET_RATIO}x at N={TARGET_N}: {verdict} ({target:.2f}x)")
        return 0 if target <= TARGET_RATIO else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
