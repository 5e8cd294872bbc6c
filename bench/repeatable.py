"""Benchmark: what 50 unchanged repeatable migrations add to ``spawn migration apply``.

Two projects on one throwaway cluster, each with apply.py's 10 pinned migrations,
applied once (not timed):

- none: no repeatables;
- with: 50 repeatables (``spawn/repeatable/view-<i>/up.sql``), each including a
  component (``components/views/v<i>.sql``, a ``CREATE OR REPLACE VIEW``) through
  Jinja, so that every one is rendered as a real template, applied once before.

Then ``spawn migration apply --yes`` (a child process, nothing to apply: every
repeatable is unchanged, so it writes nothing) is timed on both, interleaved,
and the medians compared. The unchanged check renders each repeatable from the
working tree and reads the latest checksum of every repeatable in one query.

Target (issue 14): with 50 unchanged repeatables, under 50 ms more than with none.

Run from the repository root:  .venv/bin/python bench/repeatable.py [--repeat R] [--count N]
[--fast]. Exit status 1 if the target is missed.

Measured on the 2-core development VM (PostgreSQL 15, defaults, median of 15):
see the output of a run in the pull request; ``--count 0`` shows the floor noise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchError, child_env, fmt_s
from apply import Sample, Server, make_project, point_at, server_options, temp_server, timed

TARGET_MS = 50.0
MIGRATIONS = 10
VIEW = "CREATE OR REPLACE VIEW v{i} AS SELECT {i} AS n, 'view {i}'::text AS label;\n"
REPEATABLE = "-- view {i}, kept as a component\n{{% include 'views/v{i}.sql' %}}\n"


def add_repeatables(root: Path, count: int) -> None:
    spawn = root / "spawn"
    (spawn / "components" / "views").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (spawn / "components" / "views" / f"v{i}.sql").write_text(VIEW.format(i=i),
                                                                  encoding="utf-8")
        folder = spawn / "repeatable" / f"view-{i:02d}"
        folder.mkdir(parents=True)
        (folder / "up.sql").write_text(REPEATABLE.format(i=i), encoding="utf-8")


def prepared(server: Server, root: Path, env: dict[str, str], count: int) -> None:
    """Point ``root`` at a fresh database and apply everything once."""
    database = server.fresh_database()
    point_at(root, server.argv(database))
    timed(server, [sys.executable, "-m", "spawn_db", "migration", "apply", "--yes"], cwd=root,
          env=env)
    found = server.query("SELECT count(*) FROM pg_views WHERE viewname ~ '^v[0-9]+$'",
                         database)
    if int(found) != count:
        raise BenchError(f"{root.name}: {found} views of {count} after the first apply")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--count", type=int, default=50, help="repeatables (default 50)")
    server_options(parser)
    args = parser.parse_args()
    env, removed = child_env(args.inherit_env)
    base, server = temp_server(args.fast)
    try:
        print(f"server: {server.running.bins.bin_dir}; {os.cpu_count()} CPUs; "
              f"median of {args.repeat}")
        if removed:
            print(f"children run without {', '.join(removed)}")
        extra = measure(server, args, env)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    verdict = "met" if extra < TARGET_MS else "MISSED"
    print(f"target: under {TARGET_MS:.0f} ms extra with {args.count} unchanged repeatables: "
          f"{verdict} ({extra:.1f} ms)")
    return 0 if extra < TARGET_MS else 1


def measure(server: Server, args: argparse.Namespace, env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory(prefix="spawn-bench-repeatable-") as tmp:
        none, with_ = Path(tmp) / "none", Path(tmp) / "with"
        make_project(none, MIGRATIONS)
        make_project(with_, MIGRATIONS)
        add_repeatables(with_, args.count)
        prepared(server, none, env, 0)
        prepared(server, with_, env, args.count)
        apply = [sys.executable, "-m", "spawn_db", "migration", "apply", "--yes"]
        runs: dict[str, list[Sample]] = {"none": [], "with": []}
        for _ in range(args.repeat):
            runs["none"].append(timed(server, apply, cwd=none, env=env))
            runs["with"].append(timed(server, apply, cwd=with_, env=env))
    medians = {k: statistics.median(r.wall for r in v) for k, v in runs.items()}
    for key, label in (("none", "no repeatables"), ("with", f"{args.count} unchanged")):
        samples = runs[key]
        print(f"{label:17} {fmt_s(medians[key])}  cpu client "
              f"{statistics.median(r.client_cpu for r in samples) * 1000:6.1f} ms  runs: "
              + ", ".join(f"{r.wall * 1000:.0f}" for r in samples))
    extra = (medians["with"] - medians["none"]) * 1000
    cpu = (statistics.median(r.client_cpu for r in runs["with"])
           - statistics.median(r.client_cpu for r in runs["none"])) * 1000
    print(f"extra             {extra:8.1f} ms  (ratio {medians['with'] / medians['none']:.2f}x; "
          f"client cpu {cpu:+.1f} ms)")
    return extra


if __name__ == "__main__":
    sys.exit(main())
