"""Benchmark: tenant parts across many tenant schemas (issue 18's scale test, large).

A project with T tenants (``[tenants] list``) and M tenant-only migrations, each
creating a table with an index and a function in the tenant's schema:

- floor: the same SQL through one psql session: for each tenant ``CREATE SCHEMA``,
  ``SET search_path`` and its M rendered parts (what ``spawn migration build
  MIGRATION --tenant NAME`` prints), preceded by spawn's psql preamble;
- spawn: ``spawn migration apply --yes --jobs J`` into a fresh database (interpreter
  start-up, tracking schema, the lock, one history query, J workers with one runner
  session each, ATTEMPTED and SUCCESS rows per tenant part, the tenant locks);
- again: the same apply on the same database, with nothing to do.

The two sides are interleaved (``--repeat``), medians compared. The server is a
throwaway cluster with PostgreSQL's default durability; ``--fast`` uses the test
suite's settings (no fsync). Targets (issue 18): spawn under 2.5x the floor at T=500,
M=3, J=4; the second run under 1 s.

Run from the repository root:  .venv/bin/python bench/fleet.py [--tenants T]
[--migrations M] [--jobs J] [--repeat R] [--fast]. Exit status 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchError, child_env, describe_machine, fmt_s
from apply import Sample, Server, point_at, timed

from spawn_db.config import Overrides, load_config
from spawn_db.db.target import PSQL_PREAMBLE
from spawn_db.escape import escape_identifier
from spawn_db.fleet.tenants import build_tenant_part
from spawn_db.migrate.migration import pin_migration
from spawn_db.project import init_project

TARGET_RATIO = 2.5
TARGET_NOTHING_S = 1.0

TENANT_PART = """\
CREATE TABLE item_{i} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner text NOT NULL DEFAULT {{{{ tenant }}}},
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX item_{i}_created ON item_{i} (created_at);
CREATE FUNCTION item_{i}_count() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT count(*) FROM item_{i}
$$;
"""


def tenant_names(count: int) -> list[str]:
    return [f"t{i:04d}" for i in range(count)]


def tenants_table(names: list[str]) -> str:
    return "\n[tenants]\nlist = [" + ", ".join(f'"{n}"' for n in names) + "]\n"


def make_project(root: Path, tenants: int, migrations: int) -> Path:
    """The project and the floor's SQL file (every tenant's parts, in one script)."""
    init = init_project(root)
    config = load_config(Overrides(config_file=str(init.config_path)))
    names = []
    for i in range(migrations):
        folder = config.migrations_dir / f"{20240101000000 + i}-item-{i}"
        folder.mkdir(parents=True)
        (folder / "tenant.sql").write_text(TENANT_PART.format(i=i), encoding="utf-8")
        pin_migration(config, folder.name)
        names.append(folder.name)
    with init.config_path.open("a", encoding="utf-8") as out:
        out.write(tenants_table(tenant_names(tenants)))
    config = load_config(Overrides(config_file=str(init.config_path)))
    rendered = root / "rendered.sql"
    with rendered.open("w", encoding="utf-8") as out:
        out.write(PSQL_PREAMBLE)
        for tenant in tenant_names(tenants):
            schema = escape_identifier(f"tenant_{tenant}")
            out.write(f"CREATE SCHEMA {schema};\nSET search_path = {schema};\n")
            for name in names:
                out.write("".join(build_tenant_part(config, name, tenant, pinned=True)))
                out.write("\n")
    return rendered


SPAWN_APPLY = ["-m", "spawn_db", "migration", "apply", "--yes"]


def spawn_runs(server: Server, root: Path, tenants: int, migrations: int, jobs: int,
               env: dict[str, str]) -> tuple[Sample, Sample]:
    """One apply into a fresh database, then the same apply with nothing to do."""
    database = server.fresh_database()
    table = tenants_table(tenant_names(tenants))
    point_at(root, server.argv(database))
    with (root / "spawn.toml").open("a", encoding="utf-8") as out:
        out.write(table)
    argv = [sys.executable, *SPAWN_APPLY, "--jobs", str(jobs)]
    first = timed(server, argv, cwd=root, env=env)
    applied = server.query(
        "SELECT count(*) FROM _spawn.migration_history h JOIN _spawn.migration m "
        "ON m.migration_id = h.migration_id_migration "
        "WHERE m.namespace LIKE 'tenant:%' AND h.status_id_status = 'SUCCESS'", database)
    if int(applied) != tenants * migrations:
        raise BenchError(f"spawn recorded {applied} of {tenants * migrations} tenant parts")
    again = timed(server, argv, cwd=root, env=env)
    return first, again


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--migrations", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fast", action="store_true",
                        help="the test suite's settings (fsync, synchronous_commit off)")
    parser.add_argument("--inherit-env", action="store_true")
    args = parser.parse_args()
    env, removed = child_env(args.inherit_env)
    print(describe_machine())
    if removed:
        print(f"(children run without {', '.join(removed)})")
    with tempfile.TemporaryDirectory(prefix="spawn-bench-fleet-") as tmp:
        Path(tmp).chmod(0o755)  # the server may run as another user (postgres, under root)
        server = Server(Path(tmp) / "server", args.fast)
        try:
            root = Path(tmp) / "project"
            rendered = make_project(root, args.tenants, args.migrations)
            floors: list[Sample] = []
            firsts: list[Sample] = []
            agains: list[Sample] = []
            for _ in range(args.repeat):
                floors.append(timed(server, server.argv(server.fresh_database()),
                                    stdin=rendered))
                first, again = spawn_runs(server, root, args.tenants, args.migrations,
                                          args.jobs, env)
                firsts.append(first)
                agains.append(again)
        finally:
            server.stop()
    floor_s = statistics.median(r.wall for r in floors)
    spawn_s = statistics.median(r.wall for r in firsts)
    again_s = statistics.median(r.wall for r in agains)
    ratio = spawn_s / floor_s
    parts = args.tenants * args.migrations
    print(f"T={args.tenants} M={args.migrations} J={args.jobs} ({parts} tenant parts)")
    for label, runs, median in (("floor (one psql)", floors, floor_s),
                                (f"spawn --jobs {args.jobs}", firsts, spawn_s),
                                ("spawn, nothing to do", agains, again_s)):
        print(f"  {label:22} {fmt_s(median)}  cpu client "
              f"{statistics.median(r.client_cpu for r in runs):5.2f} s, server "
              f"{statistics.median(r.server_cpu for r in runs):5.2f} s, WAL flushes "
              f"{statistics.median(r.wal_syncs for r in runs):6.0f}  runs: "
              + ", ".join(f"{r.wall:.2f}" for r in runs))
    print(f"  ratio                  {ratio:8.2f}x  (target < {TARGET_RATIO}x); nothing to do "
          f"{again_s:.2f} s (target < {TARGET_NOTHING_S:.0f} s)")
    return 0 if ratio < TARGET_RATIO and again_s < TARGET_NOTHING_S else 1


if __name__ == "__main__":
    sys.exit(main())
