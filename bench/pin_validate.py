"""Benchmark: ``spawn pin validate`` on a store of about 10,000 objects.

Issue 15's target: validating a 10,000-object store takes at most 1.5x the time
of reading and hashing those files once. The baseline is a Python process that
walks ``pinned/`` and computes xxh3-128 of every object (what validation must
do at least), timed like spawn, as a whole child process (start-up included).
A second measurement times ``spawn check``, which runs the same validation.

The store: N component files (1-4 KB of SQL-like text, in 100 folders) pinned
by one migration, then a tenth of them edited and pinned by a second one, so
two snapshots share most of their objects (each object must be read once).

Run from the repository root:  .venv/bin/python bench/pin_validate.py [N] [--repeat R]
Exit status 1 if the target is missed.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import checked, child_env, fmt_s, run_child

TARGET_RATIO = 1.5
PY_READ_HASH = """\
import os, sys, xxhash
for dirpath, _dirs, names in os.walk(sys.argv[1]):
    for name in names:
        with open(os.path.join(dirpath, name), "rb") as f:
            xxhash.xxh3_128_hexdigest(f.read())
"""


def make_project(root: Path, count: int, env: dict[str, str]) -> int:
    """The project; returns the number of objects in its store."""
    spawn = [sys.executable, "-m", "spawn_db"]
    checked(run_child([*spawn, "init"], cwd=root, env=env), "spawn init")
    components = root / "spawn" / "components"
    rng = random.Random(15)
    paths = []
    for index in range(count):
        rel = f"f_{index % 100:03d}/c_{index:05d}.sql"
        (components / rel).parent.mkdir(parents=True, exist_ok=True)
        lines = [f"-- component {index}"]
        while sum(len(line) + 1 for line in lines) < rng.randint(1024, 4096):
            lines.append(f"CREATE OR REPLACE VIEW v_{index}_{len(lines)} AS SELECT "
                         f"{rng.randint(0, 10**9)} AS n;")
        (components / rel).write_text("\n".join(lines) + "\n")
        paths.append(rel)
    for label in ("first", "second"):
        made = run_child([*spawn, "migration", "new", label], cwd=root, env=env,
                         count_stdout=True)
        checked(made, "spawn migration new")
        checked(run_child([*spawn, "migration", "pin", "--all"], cwd=root, env=env),
                "spawn migration pin --all")
        for rel in rng.sample(paths, count // 10):
            with open(components / rel, "a") as file:
                file.write("-- edited\n")
    return sum(len(files) for _, _, files in os.walk(root / "spawn" / "pinned"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("count", nargs="?", type=int, default=9_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env, _ = child_env(False)
    spawn = [sys.executable, "-m", "spawn_db"]
    with tempfile.TemporaryDirectory(prefix="spawn-bench-validate-") as tmp:
        root = Path(tmp)
        objects = make_project(root, args.count, env)
        pinned = str(root / "spawn" / "pinned")
        baseline, validate, check, start = [], [], [], []
        for _ in range(args.repeat):  # interleaved, so both see the same machine
            baseline.append(checked(run_child([sys.executable, "-c", PY_READ_HASH, pinned],
                                              cwd=root, env=env), "read+hash").seconds)
            validate.append(checked(run_child([*spawn, "pin", "validate"], cwd=root, env=env),
                                    "spawn pin validate").seconds)
            check.append(checked(run_child([*spawn, "check"], cwd=root, env=env),
                                 "spawn check").seconds)
            start.append(checked(run_child([*spawn, "--version"], cwd=root, env=env),
                                 "spawn --version").seconds)
    base, mine, checking, startup = (statistics.median(x)
                                     for x in (baseline, validate, check, start))
    ratio = mine / base
    print(f"store of {objects} objects ({args.count} components, 2 pins); "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"  python read + xxh3_128 of every object  {fmt_s(base)}")
    print(f"  spawn pin validate                       {fmt_s(mine)}   {ratio:.2f}x")
    print(f"  spawn check                              {fmt_s(checking)}   {checking / base:.2f}x")
    print(f"  (spawn --version, the start-up share     {fmt_s(startup)})")
    met = ratio <= TARGET_RATIO
    print(f"target: pin validate within {TARGET_RATIO}x read+hash: "
          f"{'met' if met else 'MISSED'} ({ratio:.2f}x)")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
