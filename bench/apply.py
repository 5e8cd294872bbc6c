"""Benchmark: ``spawn migration apply --yes`` against the floor of one psql session.

For each N: a project with N pinned migrations, each creating one table and
one function in a transaction. Each measured run gets a fresh database.

- spawn: ``spawn migration apply --yes`` as a child process (interpreter
  start-up, tracking schema, lock, history rows: everything a user waits for);
- floor: the same rendered SQL (what ``spawn migration build --pinned``
  prints), preceded by spawn's psql preamble, piped through one ``psql``.

Both use the real psql binary of the server's bin directory. The two sides
are interleaved, so a busy machine slows both alike; the medians are compared
(the verdict) and so are the best runs. Each run also reports CPU seconds:
the client's (spawn or psql, with their psql children) and the server's (the
backends, from the postmaster's reaped-children times on Linux), which a
busy machine disturbs far less than wall time, and the WAL flushes the run
caused (``pg_stat_wal.wal_sync``: with fsync on, each is a wait for the disk),
which no load disturbs.

The server is a throwaway cluster with PostgreSQL's default durability
(``fsync`` on), as a real deployment has; ``--fast`` uses the test suite's
settings instead (fsync, synchronous_commit and full_page_writes off), where
there is no disk wait to hide spawn's own costs behind.

Target (issue 13): spawn within 1.15x the floor at N=1000 with default settings.

``--profile`` adds, for the largest N, one spawn run under cProfile (the
client: the functions that took the most time) and, on a cluster started with
``pg_stat_statements`` and ``track_wal_io_timing``, the server side of one
floor run and one spawn run: time per kind of statement, WAL flushes and the
time spent in them.

Run from the repository root:  .venv/bin/python bench/apply.py [N ...] [--repeat R] [--fast]
[--profile]. Exit status 1 if the target is missed.
"""

from __future__ import annotations

import argparse
import io
import os
import pstats
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchError, Run, checked, child_env, fmt_s

from spawn_db.config import Overrides, load_config, toml_string
from spawn_db.db import embedded
from spawn_db.db.pgbin import find_binaries
from spawn_db.db.target import PSQL_PREAMBLE
from spawn_db.escape import escape_identifier
from spawn_db.migrate.migration import build_migration, pin_migration
from spawn_db.project import init_project

TARGET_RATIO = 1.15
TARGET_N = 1000
FAST_SETTINGS = (("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off"))
PROFILE_SETTINGS = (("shared_preload_libraries", "pg_stat_statements"),
                    ("pg_stat_statements.track", "all"), ("track_wal_io_timing", "on"))

MIGRATION = """\
BEGIN;
CREATE TABLE item_{i} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION item_{i}_count() RETURNS bigint LANGUAGE sql STABLE AS $$
    SELECT count(*) FROM item_{i}
$$;
COMMIT;
"""


@dataclass(frozen=True)
class Sample:
    wall: float
    client_cpu: float
    server_cpu: float
    wal_syncs: int = 0

    @property
    def cpu(self) -> float:
        return self.client_cpu + self.server_cpu


class Server:
    def __init__(self, base: Path, fast: bool, profile: bool = False) -> None:
        settings = (FAST_SETTINGS if fast else ()) + (PROFILE_SETTINGS if profile else ())
        self.cluster = embedded.Cluster(
            data_dir=base / "data", socket_dir=base / "run", log_path=base / "postgres.log",
            lock_path=base / "lock", settings=settings,
            postgres_bin=str(find_binaries().bin_dir),
        )
        self.running = embedded.ensure_running(self.cluster)
        self.databases = 0

    def cpu(self) -> float:
        """CPU seconds of the postmaster and every backend it has reaped (Linux)."""
        try:
            fields = Path(f"/proc/{self.running.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        ticks = sum(int(f) for f in fields[11:15])
        return ticks / os.sysconf("SC_CLK_TCK")

    def wal_syncs(self) -> int:
        """WAL flushes of the whole cluster so far (``pg_stat_wal``, PostgreSQL 14+)."""
        return int(self.query("SELECT wal_sync FROM pg_stat_wal"))

    def argv(self, database: str) -> list[str]:
        return self.running.psql_argv(self.cluster, database)

    def query(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run([*self.argv(database), "-At", "-v", "ON_ERROR_STOP=1", "-c", sql],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"psql failed on {sql!r}: {done.stderr.strip()}")
        return done.stdout.strip()

    def fresh_database(self) -> str:
        self.databases += 1
        name = f"bench_{self.databases}"
        self.query(f"CREATE DATABASE {escape_identifier(name)}")
        return name

    def stop(self) -> None:
        embedded.stop(self.cluster)


def server_options(parser: argparse.ArgumentParser) -> None:
    """``--fast`` and ``--inherit-env``: every benchmark on a throwaway server takes them."""
    parser.add_argument("--fast", action="store_true",
                        help="fsync, synchronous_commit and full_page_writes off")
    parser.add_argument("--inherit-env", action="store_true",
                        help="keep PYTHONUNBUFFERED/PYTHONDONTWRITEBYTECODE for the children")


def temp_server(fast: bool, *, prefix: str = "spawn-bench-pg-",
                profile: bool = False) -> tuple[Path, Server]:
    """A throwaway server in a new folder under /tmp that the server user can enter (the
    folder is also where a benchmark puts its project)."""
    base = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(base, 0o755)
    return base, Server(base, fast, profile)


def make_project(root: Path, count: int) -> Path:
    """A project with ``count`` pinned migrations; returns the file with their rendered SQL."""
    init = init_project(root)
    config = load_config(Overrides(config_file=str(init.config_path)))
    for i in range(count):
        folder = config.migrations_dir / f"{20240101000000 + i}-item-{i}"
        folder.mkdir(parents=True)
        (folder / "up.sql").write_text(MIGRATION.format(i=i), encoding="utf-8")
        pin_migration(config, folder.name)
    rendered = root / "rendered.sql"
    with rendered.open("w", encoding="utf-8") as out:
        out.write(PSQL_PREAMBLE)
        for folder in sorted(config.migrations_dir.iterdir()):
            if (folder / "up.sql").is_file():
                out.write("".join(build_migration(config, folder.name, pinned=True)))
                out.write("\n")
    return rendered


def point_at(root: Path, argv: list[str]) -> None:
    direct = ", ".join(toml_string(a) for a in argv)
    (root / "spawn.toml").write_text(
        'spawn_folder = "spawn"\ntarget = "bench"\n\n[targets.bench]\n'
        f'engine = "postgres-psql"\ncommand = {{ kind = "direct", direct = [{direct}] }}\n',
        encoding="utf-8",
    )


def timed(server: Server, argv: list[str], *, cwd: Path | None = None,
          env: dict[str, str] | None = None, stdin: Path | None = None) -> Sample:
    """Run ``argv``; wall time, its CPU (with waited-for children) and the server's."""
    with tempfile.TemporaryFile() as err, \
            (stdin.open("rb") if stdin else open(os.devnull, "rb")) as source:
        syncs = server.wal_syncs()
        before = server.cpu()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=source,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        time.sleep(0.2)
        server_cpu = server.cpu() - before
        syncs = server.wal_syncs() - syncs
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    code = os.waitstatus_to_exitcode(status)
    checked(Run(wall, usage.ru_maxrss, code, text), shlex.join(argv[:4]))
    return Sample(wall, usage.ru_utime + usage.ru_stime, server_cpu, syncs)


def floor_run(server: Server, rendered: Path) -> Sample:
    """The rendered SQL through one psql, into a fresh database.

    Databases are kept until the server is thrown away: dropping one deletes a file per
    relation (about 5,000 at N=1000), and on this VM's ext4 (no journal) the kernel then
    avoids reusing those inodes for a minute, checking each candidate in turn, which made
    the next run's CREATE TABLEs several times slower (see build_pin.py's notes).
    """
    return timed(server, server.argv(server.fresh_database()), stdin=rendered)


SPAWN_APPLY = ["-m", "spawn_db", "migration", "apply", "--yes"]


def spawn_run(server: Server, root: Path, count: int, env: dict[str, str]) -> Sample:
    database = server.fresh_database()
    point_at(root, server.argv(database))
    run = timed(server, [sys.executable, *SPAWN_APPLY], cwd=root, env=env)
    check_applied(server, database, count)
    return run


def check_applied(server: Server, database: str, count: int) -> None:
    """``database`` has the ``count`` tables and SUCCESS rows a full apply leaves."""
    applied = server.query(
        "SELECT count(*) FROM _spawn.migration_history h JOIN _spawn.migration m "
        "ON m.migration_id = h.migration_id_migration "
        "WHERE m.namespace = 'default' AND h.status_id_status = 'SUCCESS'", database)
    tables = server.query(
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'item\\_%'", database)
    if int(applied) != count or int(tables) != count:
        raise BenchError(f"{database}: spawn recorded {applied} and created {tables} of "
                         f"{count}")


def measure(server: Server, count: int, repeat: int, env: dict[str, str]) -> float:
    with tempfile.TemporaryDirectory(prefix="spawn-bench-apply-") as tmp:
        root = Path(tmp) / "project"
        rendered = make_project(root, count)
        spawn_runs: list[Sample] = []
        floor_runs: list[Sample] = []
        for _ in range(repeat):
            floor_runs.append(floor_run(server, rendered))
            spawn_runs.append(spawn_run(server, root, count, env))
    floor_s = statistics.median(r.wall for r in floor_runs)
    spawn_s = statistics.median(r.wall for r in spawn_runs)
    ratio = spawn_s / floor_s
    for label, runs, median in (("floor (one psql)", floor_runs, floor_s),
                                ("spawn apply", spawn_runs, spawn_s)):
        print(f"{'N=' + str(count) if label.startswith('floor') else '':7} {label:17} "
              f"{fmt_s(median)}  {median / count * 1000:6.2f} ms/migration  "
              f"cpu client {statistics.median(r.client_cpu for r in runs):5.2f} s, "
              f"server {statistics.median(r.server_cpu for r in runs):5.2f} s, "
              f"{statistics.median(r.wal_syncs for r in runs) / count:4.2f} WAL flushes/migration"
              "  runs: "
              + ", ".join(f"{r.wall:.2f}" for r in runs))
    best = min(r.wall for r in spawn_runs) / min(r.wall for r in floor_runs)
    cpu = statistics.median(r.cpu for r in spawn_runs) / \
        statistics.median(r.cpu for r in floor_runs)
    print(f"        ratio             {ratio:8.2f}x  (best runs {best:.2f}x, cpu {cpu:.2f}x)")
    return ratio


# -- --profile: where the time goes ------------------------------------------------------------

# pg_stat_statements tracks each statement of a multi-statement message on its own.
STATEMENT_KINDS = (
    ("migration: CREATE TABLE", ("CREATE TABLE",)),
    ("migration: CREATE FUNCTION", ("CREATE FUNCTION",)),
    ("migration: BEGIN, COMMIT", ("BEGIN", "COMMIT")),
    ("spawn: history rows (INSERT)", ('INSERT INTO "_spawn".migration_history',)),
    ("spawn: marker, lock checks, unlock", ("SELECT now() AS spawn_t0",)),
    ("spawn: session reset after a migration", (
        "CLOSE ALL", "SET SESSION AUTHORIZATION", "RESET ALL", "SET client_encoding",
        "SET standard_conforming_strings", "DEALLOCATE", "UNLISTEN", "DISCARD",
        "SET idle_", "SET client_connection_check")),
    ("spawn: commit settings", ("SET LOCAL synchronous_commit",)),
    ("spawn: SET before each migration", ("SET application_name", "SET synchronous_commit")),
)


def server_profile(server: Server, label: str, database: str) -> None:
    """Server time of the statements run in ``database``, by kind, and the WAL flushes."""
    rows = server.query(
        "SELECT s.calls, s.total_exec_time, regexp_replace(left(s.query, 100), '\\s+', ' ', 'g') "
        "FROM pg_stat_statements s "
        "JOIN pg_database d ON d.oid = s.dbid WHERE d.datname = "
        f"'{database}' ORDER BY s.total_exec_time DESC")
    kinds: dict[str, tuple[int, float]] = {}
    for line in rows.splitlines():
        calls, total, query = line.split("|", 2)
        kind = next((k for k, starts in STATEMENT_KINDS
                     if query.lstrip().startswith(starts)), "other: " + query.split()[0])
        done, spent = kinds.get(kind, (0, 0.0))
        kinds[kind] = (done + int(calls), spent + float(total))
    wal = server.query("SELECT wal_sync, round(wal_sync_time), wal_write, round(wal_write_time) "
                       "FROM pg_stat_wal").split("|")
    print(f"  server, {label}: WAL flushes {wal[0]} ({wal[1]} ms), writes {wal[2]} "
          f"({wal[3]} ms); statement time by kind:")
    for kind, (done, spent) in sorted(kinds.items(), key=lambda kv: -kv[1][1]):
        print(f"    {kind:38} {done:6d} calls {spent:9.1f} ms")


def reset_server_stats(server: Server) -> None:
    server.query("SELECT pg_stat_statements_reset(), pg_stat_reset_shared('wal')")


def profile(server: Server, count: int, env: dict[str, str]) -> None:
    """One floor run and one spawn run (under cProfile), with the server's statistics."""
    server.query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
    with tempfile.TemporaryDirectory(prefix="spawn-bench-apply-") as tmp:
        root = Path(tmp) / "project"
        rendered = make_project(root, count)
        print(f"N={count} profile (one run each; spawn under cProfile, so slower)")
        reset_server_stats(server)
        database = server.fresh_database()
        floor = timed(server, server.argv(database), stdin=rendered)
        server_profile(server, f"floor {floor.wall:.2f} s", database)
        reset_server_stats(server)
        stats_file = Path(tmp) / "spawn.prof"
        database = server.fresh_database()
        point_at(root, server.argv(database))
        python = [sys.executable, "-m", "cProfile", "-o", str(stats_file)]
        run = timed(server, [*python, *SPAWN_APPLY], cwd=root, env=env)
        server_profile(server, f"spawn {run.wall:.2f} s", database)
        out = io.StringIO()
        stats = pstats.Stats(str(stats_file), stream=out)
        stats.sort_stats("tottime").print_stats(12)
        print(f"  client, spawn (cProfile): {run.client_cpu:.2f} s CPU")
        lines = out.getvalue().splitlines()
        start = next(i for i, line in enumerate(lines) if "ncalls" in line)
        for line in lines[start:start + 13]:
            print(f"    {line}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("counts", nargs="*", type=int, default=[200, 1000])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true",
                        help="also profile one run of the largest N (client and server)")
    server_options(parser)
    args = parser.parse_args()
    env, removed = child_env(args.inherit_env)
    base, server = temp_server(args.fast, profile=args.profile)
    try:
        settings = "fsync etc. off (--fast)" if args.fast else "PostgreSQL defaults (fsync on)"
        print(f"server: {server.running.bins.bin_dir} ({settings}); psql: "
              f"{server.running.bins.psql}; {os.cpu_count()} CPUs; median of {args.repeat}")
        if removed:
            print(f"children run without {', '.join(removed)}")
        ratios = {count: measure(server, count, args.repeat, env) for count in args.counts}
        if args.profile:
            profile(server, max(args.counts), env)
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
