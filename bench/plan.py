"""Benchmark: planning N migrations that carry ``migration.toml`` with ``requires``.

Issue 13's target: planning 10,000 migrations (with requires) takes under
0.5 s. "Planning" is what apply does before it touches a database: list the
migration folders, read and check every ``migration.toml`` (types, references,
cycles) and order the pending ones (``Planner.load(...).plan(history)``).
Measured in-process, so interpreter start-up is not counted; the files are in
the page cache after the first round, as they are for a user running apply
twice. The empty history (everything pending) is the costly case: every
migration is ordered. A second figure plans with half of them applied.

Run from the repository root:  .venv/bin/python bench/plan.py [N] [--repeat R]
Exit status 1 if the target is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 0.5
SEED = 13


def make_project(root: Path, count: int) -> None:
    """``count`` migrations; each requires up to three random earlier ones (so the
    requires graph is a DAG, of 2 edges per migration on average), a tenth of them
    also has a description, and a hundredth is a draft nobody requires."""
    rng = random.Random(SEED)
    migrations = root / "spawn" / "migrations"
    migrations.mkdir(parents=True)
    (root / "spawn.toml").write_text('spawn_folder = "spawn"\n')
    names = [f"2024{i:010d}-m{i}" for i in range(count)]
    drafts = set(rng.sample(range(count), count // 100))
    for index, name in enumerate(names):
        folder = migrations / name
        folder.mkdir()
        (folder / "up.sql").write_text(f"CREATE TABLE t{index} ();\n")
        earlier = [n for i, n in enumerate(names[max(0, index - 50):index])
                   if max(0, index - 50) + i not in drafts]
        requires = rng.sample(earlier, min(len(earlier), rng.randint(0, 3)))
        lines = [f"requires = [{', '.join(repr(r).replace(chr(39), chr(34)) for r in requires)}]"]
        if index % 10 == 0:
            lines.append(f'description = "migration number {index}"')
        if index in drafts:
            lines.append("draft = true")
        (folder / "migration.toml").write_text("\n".join(lines) + "\n")


def plan_once(root: Path, applied_fraction: float) -> tuple[float, int, float]:
    from spawn_db.config import Overrides, load_config
    from spawn_db.migrate.apply import Planner
    from spawn_db.migrate.tracking import HistoryRow

    started = time.perf_counter()
    cpu = time.process_time()
    config = load_config(Overrides(config_file=str(root / "spawn.toml")))
    planner = Planner.load(config, None)
    cut = int(len(planner.names) * applied_fraction)
    history = {name: HistoryRow(name, "default", i, "APPLY", "SUCCESS", "", None, "", "", "", "",
                                0.0)
               for i, name in enumerate(planner.names[:cut])
               if not planner.settings[name].draft}
    plan = planner.plan(history)
    return time.perf_counter() - started, len(plan.to_run), time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spawn-bench-plan-") as tmp:
        root = Path(tmp)
        make_project(root, args.count)
        plan_once(root, 0.0)  # imports and page cache
        results = {}
        for fraction in (0.0, 0.5):
            runs = [plan_once(root, fraction) for _ in range(args.repeat)]
            seconds = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[2] for r in runs)
            results[fraction] = seconds
            print(f"N={args.count}  {int(fraction * 100):>3}% applied  "
                  f"plan {seconds * 1000:7.1f} ms (cpu {cpu * 1000:.0f} ms)  "
                  f"({runs[0][1]} to run)  runs: " + ", ".join(f"{r[0]:.3f}" for r in runs))
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs (wall times "
          "inflate with load; the CPU figures much less)")
    worst = max(results.values())
    met = worst < TARGET_S
    print(f"target: planning under {TARGET_S} s at N={args.count}: "
          f"{'met' if met else 'MISSED'} ({worst:.3f} s)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
