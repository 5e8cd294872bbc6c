"""Benchmark: ``spawn lint --all`` on 1,000 migrations with 1,000 statements in total.

Issue 17's target: under 3 s, measured as a user sees it: the real ``spawn``
entry point in a fresh process (interpreter start, imports, config) rendering,
splitting, parsing (pglast) and checking every migration. The project is
realistic rather than trivial: a fifth of the migrations are Jinja templates
(a variable, a loop, an include of a component), so the source-mapped render
runs for them; the rest are plain SQL, which maps 1:1 without Jinja. Each
migration holds one statement besides its BEGIN/COMMIT, so 1,000 statements
are linted (plus the transaction statements); some trip rules, so findings are
formatted and printed too.

Run from the repository root:  .venv/bin/python bench/lint.py [N] [--repeat R]
Exit status 1 if the target is missed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_S = 3.0

STATEMENTS = (
    "CREATE TABLE t{i} (id bigint PRIMARY KEY, name text NOT NULL);",
    "ALTER TABLE t{j} ADD COLUMN c{i} text;",
    "CREATE INDEX i{i} ON t{j} (name);",
    "INSERT INTO t{j} (id, name) VALUES ({i}, 'row;{i}');",
    "CREATE OR REPLACE FUNCTION f{i}() RETURNS int LANGUAGE sql AS $$ SELECT {i}; $$;",
)


def make_project(root: Path, count: int) -> None:
    spawn = root / "spawn"
    for folder in ("components", "migrations", "tests", "pinned"):
        (spawn / folder).mkdir(parents=True)
    (root / "spawn.toml").write_text(
        'spawn_folder = "spawn"\ntarget = "local"\n\n[targets.local]\n'
        'engine = "postgres-psql"\ncommand = { kind = "direct", direct = ["psql"] }\n')
    (spawn / "components" / "grant.sql").write_text(
        "-- shared\nGRANT SELECT ON {{ table | escape_identifier }} TO PUBLIC;\n")
    for i in range(count):
        folder = spawn / "migrations" / f"2024{i:010d}-m{i}"
        folder.mkdir()
        statement = STATEMENTS[i % len(STATEMENTS)].format(i=i, j=max(0, i - 5))
        if i % 5 == 4:
            body = ("{% set table = 't" + str(max(0, i - 5)) + "' %}\n"
                    "{% include 'grant.sql' %}\n"
                    "-- {% for n in range(2) %}{{ n }} {% endfor %}\n")
        else:
            body = statement + "\n"
        (folder / "up.sql").write_text(f"BEGIN;\nSET LOCAL lock_timeout = '2s';\n{body}COMMIT;\n")


def lint_once(root: Path) -> tuple[float, int, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "spawn_db", "lint", "--all"], cwd=root,
                          capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    return elapsed, done.returncode, done.stderr.strip().splitlines()[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spawn-bench-lint-") as tmp:
        root = Path(tmp)
        make_project(root, args.count)
        lint_once(root)  # warm the page cache, as a second run by a user would be
        runs = [lint_once(root) for _ in range(args.repeat)]
    times = [t for t, _, _ in runs]
    median = statistics.median(times)
    print(f"spawn lint --all, {args.count} migrations ({args.count} statements besides "
          f"BEGIN/SET/COMMIT), median of {args.repeat}, {os.cpu_count()} cores")
    print(f"  {median * 1000:8.1f} ms   [{', '.join(f'{t * 1000:.0f}' for t in times)} ms]")
    print(f"  result: {runs[0][2]} (exit {runs[0][1]})")
    verdict = "ok" if median < TARGET_S else "MISSED"
    print(f"  target < {TARGET_S:.0f} s: {verdict}")
    return 0 if median < TARGET_S else 1


if __name__ == "__main__":
    sys.exit(main())
