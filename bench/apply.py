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
busy machine disturbs far less than wall time.

The server is a throwaway cluster with PostgreSQL's default durability
(``fsync`` on), as a real deployment has; ``--fast`` uses the test suite's
settings instead (fsync, synchronous_commit and full_page_writes off), where
there is no disk wait to hide spawn's own costs behind.

Target (issue 4): spawn within 1.25x the floor at N=1000 with default settings.

Run from the repository root:  .venv/bin/python bench/apply.py [N ...] [--repeat R] [--fast]
Exit status 1 if the target is missed.
"""

from __future__ import annotations

import argparse
import os
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

TARGET_RATIO = 1.25
TARGET_N = 1000
FAST_SETTINGS = (("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off"))

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

    @property
    def cpu(self) -> float:
        return self.client_cpu + self.server_cpu


class Server:
    def __init__(self, base: Path, fast: bool) -> None:
        self.cluster = embedded.Cluster(
            data_dir=base / "data", socket_dir=base / "run", log_path=base / "postgres.log",
            lock_path=base / "lock", settings=FAST_SETTINGS if fast else (),
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

    def drop(self, name: str) -> None:
        self.query(f"DROP DATABASE {escape_identifier(name)}")

    def stop(self) -> None:
        embedded.stop(self.cluster)


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
        before = server.cpu()
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=source,
                                stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        time.sleep(0.2)
        server_cpu = server.cpu() - before
        err.seek(0)
        text = err.read().decode("utf-8", "replace")
    code = os.waitstatus_to_exitcode(status)
    checked(Run(wall, usage.ru_maxrss, code, text), shlex.join(argv[:4]))
    return Sample(wall, usage.ru_utime + usage.ru_stime, server_cpu)


def floor_run(server: Server, rendered: Path) -> Sample:
    database = server.fresh_database()
    try:
        return timed(server, server.argv(database), stdin=rendered)
    finally:
        server.drop(database)


def spawn_run(server: Server, root: Path, count: int, env: dict[str, str]) -> Sample:
    database = server.fresh_database()
    try:
        point_at(root, server.argv(database))
        run = timed(server, [sys.executable, "-m", "spawn_db", "migration", "apply", "--yes"],
                    cwd=root, env=env)
        applied = server.query(
            "SELECT count(*) FROM _spawn.migration_history h JOIN _spawn.migration m "
            "ON m.migration_id = h.migration_id_migration "
            "WHERE m.namespace = 'default' AND h.status_id_status = 'SUCCESS'", database)
        tables = server.query(
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'item\\_%'", database)
        if int(applied) != count or int(tables) != count:
            raise BenchError(f"spawn recorded {applied} and created {tables} of {count}")
        return run
    finally:
        server.drop(database)


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
    parser.add_argument("--fast", action="store_true",
                        help="fsync, synchronous_commit and full_page_writes off")
    parser.add_argument("--inherit-env", action="store_true",
                        help="keep PYTHONUNBUFFERED/PYTHONDONTWRITEBYTECODE for the children")
    args = parser.parse_args()
    env, removed = child_env(args.inherit_env)
    base = Path(tempfile.mkdtemp(prefix="spawn-bench-pg-", dir="/tmp"))
    os.chmod(base, 0o755)
    server = Server(base, args.fast)
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
