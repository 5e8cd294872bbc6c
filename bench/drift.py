"""Benchmark: ``spawn migration drift`` on a 500-table schema.

Issue 16's target: under 3 s, measured as a user sees it: the real ``spawn``
entry point in a fresh process (interpreter start, history read, every applied
migration rendered from its pin and checked against its checksum, a scratch
database created and the migrations run there unless the one an earlier run kept
for the same applied migrations is there, one catalog query per side, the
comparison). The schema: TABLES tables spread
over 50 pinned migrations, each table with a primary key, a NOT NULL column
with a default, a foreign key to the previous table, an index, and a trigger
function per migration, so every kind of object the comparison reads is
there in numbers. Three cases are timed: a clean database (exit 0) and one with a
column added by hand (exit 1, one ``+`` line), both reading the scratch database
the previous run kept, and *cold* runs, each after the kept scratch database was
dropped (``DROP DATABASE``, outside the timing), so each builds it again: what
the first run after a new migration costs.

Run from the repository root:  .venv/bin/python bench/drift.py [TABLES] [--repeat R]
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
from apply import Server, point_at

from spawn_db.config import Overrides, load_config
from spawn_db.migrate.migration import pin_migration
from spawn_db.project import init_project

TARGET_S = 3.0
MIGRATIONS = 50

TABLE = """\
CREATE TABLE item_{i} (
    id bigint PRIMARY KEY,
    name text NOT NULL DEFAULT '',
    parent_id bigint{parent},
    created timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX item_{i}_name ON item_{i} (name);
"""

FUNCTION = """\
CREATE FUNCTION touch_{m}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN NEW.created := now(); RETURN NEW; END $$;
CREATE TRIGGER touch BEFORE UPDATE ON item_{i} FOR EACH ROW EXECUTE FUNCTION touch_{m}();
"""


def make_project(root: Path, tables: int) -> None:
    """``tables`` tables in MIGRATIONS pinned migrations, each one transaction."""
    init = init_project(root)
    config = load_config(Overrides(config_file=str(init.config_path)))
    per = max(1, tables // MIGRATIONS)
    for m, first in enumerate(range(0, tables, per)):
        body = ["BEGIN;\n"]
        for i in range(first, min(first + per, tables)):
            parent = f" REFERENCES item_{i - 1} (id)" if i else ""
            body.append(TABLE.format(i=i, parent=parent))
        body.append(FUNCTION.format(m=m, i=first))
        body.append("COMMIT;\n")
        folder = config.migrations_dir / f"{20240101000000 + m}-items-{m}"
        folder.mkdir(parents=True)
        (folder / "up.sql").write_text("".join(body), encoding="utf-8")
        pin_migration(config, folder.name)


def drop_scratch(server: Server) -> None:
    """Drop the scratch databases kept by earlier runs, so the next run builds one."""
    names = server.query("SELECT string_agg(quote_ident(datname), ' ') FROM pg_database "
                         "WHERE datname LIKE 'spawn\\_drift\\_%'")
    for name in names.split():
        server.query(f"DROP DATABASE {name}")


def drift_once(root: Path, env: dict[str, str], expected: int) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "spawn_db", "migration", "drift"], cwd=root,
                          capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != expected:
        raise BenchError(f"spawn migration drift exited {done.returncode}, not {expected}: "
                         f"{done.stderr.strip()[-300:]}")
    return elapsed, done.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tables", nargs="?", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    env, _removed = child_env(False)
    base = Path(tempfile.mkdtemp(prefix="spawn-bench-pg-", dir="/tmp"))
    os.chmod(base, 0o755)
    server = Server(base, fast=False)
    try:
        with tempfile.TemporaryDirectory(prefix="spawn-bench-drift-") as tmp:
            root = Path(tmp) / "project"
            make_project(root, args.tables)
            database = server.fresh_database()
            point_at(root, server.argv(database))
            applied = subprocess.run([sys.executable, "-m", "spawn_db", "migration", "apply",
                                      "--yes"], cwd=root, env=env, capture_output=True,
                                     text=True, check=False)
            if applied.returncode != 0:
                raise BenchError(f"apply failed: {applied.stderr[-300:]}")
            objects = server.query(
                "SELECT count(*) FROM pg_class WHERE relnamespace = 'public'::regnamespace",
                database)
            print(f"schema: {args.tables} tables in {MIGRATIONS} migrations, {objects} "
                  f"relations in public; {os.cpu_count()} CPUs; median of {args.repeat}")
            drift_once(root, env, 0)  # warm the page cache and the catalog caches
            cold = []
            for _ in range(args.repeat):
                drop_scratch(server)
                cold.append(drift_once(root, env, 0)[0])
            clean = [drift_once(root, env, 0)[0] for _ in range(args.repeat)]
            server.query("ALTER TABLE item_7 ADD COLUMN by_hand text", database)
            drifted = [drift_once(root, env, 1) for _ in range(args.repeat)]
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    clean_s = statistics.median(clean)
    drift_s = statistics.median(t for t, _ in drifted)
    cold_s = statistics.median(cold)
    print(f"  cold         {fmt_s(cold_s)}  runs: " + ", ".join(f"{t:.2f}" for t in cold)
          + "  (scratch database built: none kept)")
    print(f"  no drift     {fmt_s(clean_s)}  runs: " + ", ".join(f"{t:.2f}" for t in clean))
    print(f"  one column   {fmt_s(drift_s)}  runs: "
          + ", ".join(f"{t:.2f}" for t, _ in drifted) + f"  ({drifted[0][1]})")
    print(f"  load average {os.getloadavg()[0]:.1f}")
    warm = max(clean_s, drift_s)
    ok_warm, ok_cold = warm < TARGET_S, cold_s < TARGET_S
    print(f"target: drift on {args.tables} tables under {TARGET_S:.0f} s, repeated runs: "
          f"{'met' if ok_warm else 'MISSED'} ({warm:.2f} s); cold runs: "
          f"{'met' if ok_cold else 'MISSED'} ({cold_s:.2f} s)")
    return 0 if ok_warm and ok_cold else 1

if __name__ == "__main__":
    sys.exit(main())
