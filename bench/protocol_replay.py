"""Benchmark: what spawn's per-migration bookkeeping costs by itself, with no Python in the loop.

apply.py compares ``spawn migration apply`` with one psql running the same
migrations. This script splits the difference into the protocol and the
client: it replays, through one plain ``psql`` (no spawn process), the same
1,000 migrations (apply.py's: a table and a function each, in a transaction)
followed, after each one, by a copy of the message spawn's runner sends
between two migrations (``runner.MigrationRun.chained_message``: the session
reset, the SUCCESS row of the migration just run, the next one's ATTEMPTED row
under the lock check, the marker ``SELECT``, read with ``\\gset`` and echoed),
with the migrations' own commits asynchronous and the message's durable, as
spawn has them. Variants, interleaved in rounds:

- ``floor``: the migrations alone (apply.py's floor);
- ``protocol``: each migration followed by spawn's message;
- ``one-insert``: the same message with both history rows in one ``INSERT``;
- ``reset-only``: the session reset and the marker only (no rows, no flush).

The history rows go into a real tracking schema (its foreign keys and index
included): a database where spawn applied the migrations and reverted them,
copied for every run. Server CPU comes from the postmaster's reaped children,
as in apply.py.

Run from the repository root:  .venv/bin/python bench/protocol_replay.py [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import child_env
from apply import MIGRATION, Server, point_at, temp_server
from revert import make_reversible

COUNT = 1000
RESET = (
    "CLOSE ALL \\;\nSET SESSION AUTHORIZATION DEFAULT \\;\nRESET ALL \\;\nDEALLOCATE ALL \\;\n"
    "UNLISTEN * \\;\nDISCARD TEMP \\;\nDISCARD SEQUENCES \\;\n"
    "SET application_name = 'spawn apply {i}' \\;\nSET synchronous_commit = off \\;\n"
    "SET LOCAL synchronous_commit = 'on' \\;\n"
)
COLUMNS = ("migration_id_migration, activity_id_activity, created_by, description, status_note, "
           "status_id_status, checksum, pin_hash, execution_time, created_at")
LOCK = "pg_catalog.pg_try_advisory_xact_lock_shared(648180517, 1311151155)"
T0 = "'2026-12-01 01:32:42.163571+00'::timestamptz"
SUM = "'\\xc41ca3000573a03187a62f18e493dda2'::bytea"
PIN = "'2a4c013df679b98b8e2eddf1c88cefe2'"
TWO_INSERTS = (
    f'INSERT INTO "_spawn".migration_history ({COLUMNS}) VALUES ({{m}}, \'APPLY\', \'root\', '
    f"'', '', 'SUCCESS', {SUM}, {PIN}, clock_timestamp() - {T0}, clock_timestamp()) \\;\n"
    f'INSERT INTO "_spawn".migration_history ({COLUMNS}) SELECT {{n}}, \'APPLY\', \'root\', '
    f"'', '', 'ATTEMPTED', {SUM}, {PIN}, '0 seconds'::interval, clock_timestamp() "
    f"WHERE NOT {LOCK} \\;\n"
)
ONE_INSERT = (
    f'INSERT INTO "_spawn".migration_history ({COLUMNS}) SELECT v.m, \'APPLY\', \'root\', '
    f"'', '', v.s, {SUM}, {PIN}, v.e, clock_timestamp() FROM (VALUES ({{m}}::bigint, "
    f"'SUCCESS', clock_timestamp() - {T0}, true), ({{n}}, 'ATTEMPTED', '0 seconds'::interval, "
    f"false)) v(m, s, e, always) WHERE v.always OR NOT {LOCK} \\;\n"
)
MARKER = (
    f"SELECT now() AS spawn_t0, 'spawn-b492f4ca0277886b''r1' || ' ' || extract(epoch FROM "
    f"clock_timestamp() - {T0})::text AS spawn_mark, {LOCK} AS spawn_lost, "
    "pg_advisory_lock_shared(1613990676, 761237972) AS spawn_runner_lock, u.spawn_unlock, "
    "CASE WHEN now() <> statement_timestamp() THEN current_setting('spawn.open') END "
    "AS spawn_open FROM (SELECT pg_advisory_unlock_all() AS spawn_unlock OFFSET 0) u \\gset\n"
    "\\echo :spawn_mark\n"
)
SHORT_MARKER = "SELECT 'x' AS spawn_mark \\gset\n\\echo :spawn_mark\n"
VARIANTS = ("floor", "protocol", "one-insert", "reset-only")


def script(variant: str) -> str:
    parts = ["\\set QUIET on\n\\set ON_ERROR_STOP on\n"]
    if variant != "floor":
        parts.append("SET synchronous_commit = off;\n")
    for i in range(COUNT):
        parts.append(MIGRATION.format(i=f"r{i}"))
        ids = {"m": i % COUNT + 1, "n": (i + 1) % COUNT + 1}
        if variant == "protocol":
            parts.append(RESET.format(i=i) + TWO_INSERTS.format(**ids) + MARKER)
        elif variant == "one-insert":
            parts.append(RESET.format(i=i) + ONE_INSERT.format(**ids) + MARKER)
        elif variant == "reset-only":
            parts.append(RESET.format(i=i) + SHORT_MARKER)
    return "".join(parts)


def tracked_template(server: Server, root: Path) -> str:
    """A database whose tracking schema has COUNT migrations registered (applied by spawn,
    then reverted), so the replayed rows satisfy the history's foreign keys."""
    make_reversible(root, COUNT)
    database = server.fresh_database()
    point_at(root, server.argv(database))
    spawn = [sys.executable, "-m", "spawn_db", "-q", "migration"]
    env, _ = child_env(False)
    for args in (["apply", "--yes"], ["revert", "--steps", str(COUNT), "--yes"]):
        subprocess.run([*spawn, *args], cwd=root, env=env, check=True, capture_output=True)
    return database


def run(server: Server, template: str, path: Path) -> tuple[float, float]:
    database = server.fresh_database()
    server.query(f"DROP DATABASE {database}")
    server.query(f"CREATE DATABASE {database} TEMPLATE {template}")
    time.sleep(0.3)
    before = server.cpu()
    start = time.monotonic()
    with path.open("rb") as source:
        subprocess.run(server.argv(database), stdin=source, check=True,
                       stdout=subprocess.DEVNULL)
    wall = time.monotonic() - start
    time.sleep(0.3)
    return wall, server.cpu() - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    base, server = temp_server(False, prefix="spawn-bench-replay-")
    try:
        with tempfile.TemporaryDirectory(prefix="spawn-bench-replay-") as tmp:
            template = tracked_template(server, Path(tmp) / "project")
            paths = {}
            for variant in VARIANTS:
                paths[variant] = Path(tmp) / f"{variant}.sql"
                paths[variant].write_text(script(variant), encoding="utf-8")
            results: dict[str, list[tuple[float, float]]] = {v: [] for v in VARIANTS}
            for _ in range(args.rounds):
                for variant in VARIANTS:
                    results[variant].append(run(server, template, paths[variant]))
        floor = statistics.median(w for w, _ in results["floor"])
        for variant in VARIANTS:
            walls = [w for w, _ in results[variant]]
            cpu = statistics.median(c for _, c in results[variant])
            wall = statistics.median(walls)
            print(f"{variant:11} {wall:6.2f} s  {wall / floor:5.2f}x the floor  server cpu "
                  f"{cpu:5.2f} s  runs: " + ", ".join(f"{w:.2f}" for w in walls))
    finally:
        server.stop()
        subprocess.run(["rm", "-rf", str(base)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
