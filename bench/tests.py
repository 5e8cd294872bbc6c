"""Benchmark: `spawn test compare` over 100 golden-file tests against a plain loop of psql.

Starts a throwaway PostgreSQL cluster (the real binaries, a Unix socket in a
temp folder), creates a template database ``bench_template`` that no session
ever connects to, and generates a spawn project with N tests. Each test copies
the template (``CREATE DATABASE ... TEMPLATE bench_template``), ``\\c``s into
the copy, runs a few queries, ``\\c``s back and drops the copy — the pattern
docs/testing.md recommends. Because nobody is connected to the template,
tests can copy it concurrently.

Measured in the same run, on the same cluster and the same SQL:

- plain loop: a bash ``for`` loop that pipes each test's SQL (the psql
  preamble plus the test, exactly what spawn sends) into the real psql,
  stdout and stderr to one file per test;
- ``spawn test compare -j 1``;
- ``spawn test compare`` with the default jobs (the number of CPUs).

Targets (issue 5): ``-j 1`` within 1.2x the plain loop; the default at least
1.6x faster than ``-j 1`` on 2 cores. The three commands run in turn in each
round, and the verdict uses the median over rounds of the ratio within a
round, which holds up best on a machine shared with other work.

Fresh mode (issue 16, ``--fresh``; also part of the default run): the same
schema as a pinned migration, ``[tests] database = "fresh"`` and 40 tests
that use the migrated tables directly. ``spawn test compare -j 2`` from a
server with no template: the template must be built once, and each test must
wait under 60 ms for its database. The wait is timed in spawn
(``FreshDatabases.copy``, wrapped by ``--record-copies``: spawn makes copies
ahead, so a test usually waits only for a rename); each ``CREATE DATABASE
spawn_testdb_… TEMPLATE spawn_tpl_…`` and rename is also timed by the server
itself (``log_min_duration_statement = 0`` for the database spawn's control
sessions use). ``--ahead``/``--makers`` override the pool's settings.
Three variants (``--variants``, default all): ``disk`` (the throwaway server,
data on its disk), ``tablespace`` (the same server with ``[tests]
tablespace`` set to one the bench creates in /dev/shm) and ``embedded`` (what
a user gets by default: the project's embedded server, ``fsync = on``, with
spawn's own tablespace in RAM).

Run from the repository root:  .venv/bin/python bench/tests.py [--fresh]
Exit status 1 if a target is missed or a comparison does not pass.
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchError, Run, checked, describe_machine, fmt_runs, fmt_s, median_s, run_child

PREAMBLE = "\\set QUIET on\n\\pset pager off\n\\set ON_ERROR_STOP on\n"

TEMPLATE_SQL = """\
CREATE TABLE customer (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL,
                       region text NOT NULL);
CREATE TABLE invoice (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                      customer_id bigint NOT NULL REFERENCES customer, amount numeric(12,2));
INSERT INTO customer (name, region)
  SELECT 'customer ' || i, (ARRAY['north', 'south', 'east', 'west'])[1 + i % 4]
  FROM generate_series(1, 1000) AS i;
INSERT INTO invoice (customer_id, amount)
  SELECT 1 + i % 1000, (i % 97) * 1.25 FROM generate_series(1, 5000) AS i;
CREATE FUNCTION region_total(r text) RETURNS numeric LANGUAGE sql STABLE AS
  $$ SELECT coalesce(sum(i.amount), 0) FROM invoice i JOIN customer c ON c.id = i.customer_id
     WHERE c.region = r $$;
"""

TEST_SQL = """\
\\set VERBOSITY terse
DROP DATABASE IF EXISTS bench_{n};
CREATE DATABASE bench_{n} TEMPLATE bench_template;
\\c bench_{n}
INSERT INTO customer (name, region) VALUES ('new customer {n}', 'north');
INSERT INTO invoice (customer_id, amount)
  SELECT id, {n} FROM customer WHERE name = 'new customer {n}';
SELECT region, count(*) AS customers FROM customer GROUP BY region ORDER BY region;
SELECT region_total('north') AS north_total;
SELECT name FROM customer ORDER BY id DESC LIMIT 3;
\\c postgres
DROP DATABASE bench_{n};
"""


FRESH_TEST_SQL = """\
INSERT INTO customer (name, region) VALUES ('new customer {n}', 'north');
INSERT INTO invoice (customer_id, amount)
  SELECT id, {n} FROM customer WHERE name = 'new customer {n}';
SELECT region, count(*) AS customers FROM customer GROUP BY region ORDER BY region;
SELECT region_total('north') AS north_total;
SELECT name FROM customer ORDER BY id DESC LIMIT 3;
"""
FRESH_TESTS = 40
COPY_TARGET_MS = 60.0


@dataclass(frozen=True)
class Cluster:
    bin_dir: Path
    data: Path
    socket_dir: Path
    port: int
    run_as: list[str]

    @property
    def psql(self) -> str:
        return str(self.bin_dir / "psql")

    def psql_argv(self, dbname: str = "postgres") -> list[str]:
        return [self.psql, "-X", "-h", str(self.socket_dir), "-p", str(self.port),
                "-U", "postgres", "-d", dbname]

    def sql(self, text: str, dbname: str = "postgres") -> None:
        subprocess.run([*self.psql_argv(dbname), "-q", "-v", "ON_ERROR_STOP=1"],
                       input=text, text=True, check=True, capture_output=True)

    def stop(self) -> None:
        subprocess.run([*self.run_as, str(self.bin_dir / "pg_ctl"), "-D", str(self.data),
                        "-m", "immediate", "stop"], capture_output=True, check=False)


def find_bin_dir() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                   key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                   else 0)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise BenchError("no PostgreSQL server binaries (initdb) found; install postgresql")
    return Path(initdb).parent


def start_cluster(work: Path, fsync: bool) -> Cluster:
    """initdb + pg_ctl start; as root, the server runs as the `postgres` (or `nobody`) user."""
    bin_dir = find_bin_dir()
    run_as: list[str] = []
    if os.geteuid() == 0:
        user = "postgres" if _user_exists("postgres") else "nobody"
        run_as = ["runuser", "-u", user, "--"]
        shutil.chown(work, user)
    data = work / "data"
    port = 54329
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres",
                    "-A", "trust", "-E", "UTF8", "--locale", "C.UTF-8"],
                   check=True, capture_output=True)
    options = f"-k {work} -p {port} -c listen_addresses='' -c fsync={'on' if fsync else 'off'}"
    subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-w", "-l",
                    str(work / "server.log"), "-o", options, "start"],
                   check=True, capture_output=True)
    return Cluster(bin_dir, data, work, port, run_as)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def make_project(root: Path, cluster: Cluster, count: int, *,
                 embedded: bool = False) -> list[str]:
    """A project of ``count`` copying tests on ``cluster`` (``embedded``: on the project's
    own embedded server instead)."""
    tests = root / "spawn" / "tests"
    for folder in ("components", "migrations", "pinned"):
        (root / "spawn" / folder).mkdir(parents=True)
    direct = ", ".join(f'"{a}"' for a in cluster.psql_argv())
    command = ('{ kind = "embedded" }' if embedded
               else f'{{ kind = "direct", direct = [{direct}] }}')
    (root / "spawn.toml").write_text(
        'spawn_folder = "spawn"\ntarget = "bench"\n\n[targets.bench]\n'
        f'engine = "postgres-psql"\ncommand = {command}\n'
    )
    names = []
    for n in range(count):
        name = f"t{n:03d}"
        (tests / name).mkdir(parents=True)
        (tests / name / "test.sql").write_text(TEST_SQL.format(n=n))
        names.append(name)
    return names


def make_fresh_project(root: Path, cluster: Cluster, count: int, *, embedded: bool = False,
                       tablespace: str | None = None) -> list[str]:
    """A project whose one pinned migration builds TEMPLATE_SQL's schema, in fresh mode
    (``tablespace``: its ``[tests] tablespace``)."""
    names = make_project(root, cluster, 0, embedded=embedded)
    with (root / "spawn.toml").open("a") as config:
        config.write('environment = "dev"\n\n[tests]\ndatabase = "fresh"\n')
        if tablespace is not None:
            config.write(f'tablespace = "{tablespace}"\n')
    migration = root / "spawn" / "migrations" / "20260101000000-schema"
    migration.mkdir(parents=True)
    (migration / "up.sql").write_text(TEMPLATE_SQL)
    checked(run_child([sys.executable, "-m", "spawn_db", "migration", "pin", migration.name],
                      cwd=root), "spawn migration pin")
    tests = root / "spawn" / "tests"
    for n in range(count):
        name = f"f{n:03d}"
        (tests / name).mkdir(parents=True)
        (tests / name / "test.sql").write_text(FRESH_TEST_SQL.format(n=n))
        names.append(name)
    return names


def logged_statements(log: Path, start: int) -> list[tuple[str, str, float]]:
    """(kind, database, milliseconds) of each ``CREATE DATABASE``, ``ALTER DATABASE …
    RENAME`` and ``DROP DATABASE`` the server logged after byte ``start`` of its log
    (``duration: … ms statement: CREATE DATABASE "x" …``); kind is ``create``,
    ``rename``, ``alter`` or ``drop``."""
    import re

    pattern = re.compile(r'duration: ([\d.]+) ms\s+statement: (CREATE|ALTER|DROP) DATABASE '
                         r'(?:IF EXISTS )?"?([\w]+)"?( RENAME)?')
    text = log.read_bytes()[start:].decode("utf-8", "replace")
    found = []
    for m in pattern.finditer(text):
        kind = {"CREATE": "create", "DROP": "drop"}.get(m.group(2)) or (
            "rename" if m.group(4) else "alter")
        found.append((kind, m.group(3), float(m.group(1))))
    return found


def record_copies(out: str, argv: list[str]) -> int:
    """Run spawn in this process with ``FreshDatabases.copy`` timed: each test's wait for
    its database (a copy made ahead and renamed, or made then), appended to ``out`` as
    one JSON list when the run closes its fresh databases."""
    import json

    from spawn_db.cli.entry import main as spawn_main
    from spawn_db.sqltest import fresh

    close = fresh.FreshDatabases.close

    def recording_close(self: fresh.FreshDatabases) -> None:
        close(self)
        with open(out, "a", encoding="utf-8") as sink:
            sink.write(json.dumps([s * 1000 for s in self.copy_seconds]) + "\n")

    fresh.FreshDatabases.close = recording_close  # type: ignore[method-assign]
    init = fresh.FreshDatabases.__init__
    pool = {key: int(os.environ[f"BENCH_FRESH_{key.upper()}"]) for key in ("ahead", "makers")
            if f"BENCH_FRESH_{key.upper()}" in os.environ}

    def pool_init(self: fresh.FreshDatabases, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **{**kwargs, **pool})

    fresh.FreshDatabases.__init__ = pool_init  # type: ignore[method-assign]
    sys.argv = ["spawn", *argv]
    try:
        spawn_main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


@dataclass(frozen=True)
class FreshServer:
    """Where one fresh-mode variant runs: a superuser psql on the server's ``postgres``
    database (where spawn's control sessions make the copies) and the server's log."""

    label: str
    psql_argv: list[str]
    log: Path

    def sql(self, text: str) -> str:
        done = subprocess.run([*self.psql_argv, "-qAt", "-v", "ON_ERROR_STOP=1"], input=text,
                              text=True, check=True, capture_output=True)
        return done.stdout.strip()


FRESH_VARIANTS = ("disk", "tablespace", "embedded")
BENCH_TABLESPACE = "bench_ram"


def fresh_benchmark(work: Path, cluster: Cluster, runs: int = 1,
                    variants: tuple[str, ...] = FRESH_VARIANTS) -> bool:
    """40 tests in fresh mode with -j 2: one template build, every copy under 60 ms, in
    each variant: ``disk`` (the plain server, data on its disk), ``tablespace`` (the same
    server, ``[tests] tablespace`` set to one the bench makes in /dev/shm) and
    ``embedded`` (what a user gets by default: the project's embedded server, durable,
    with spawn's own tablespace in RAM)."""
    ok = True
    for variant in variants:
        project = work / f"fresh-{variant}"
        project.mkdir()
        if variant == "embedded":
            ok = fresh_on_embedded(work, cluster, project, runs) and ok
        elif variant == "tablespace":
            ok = fresh_in_tablespace(work, cluster, project, runs) and ok
        else:
            make_fresh_project(project, cluster, FRESH_TESTS)
            server = FreshServer("plain server, data on disk", cluster.psql_argv(),
                                 work / "pg" / "server.log")
            ok = fresh_runs(work, server, project, runs) and ok
    return ok


def fresh_in_tablespace(work: Path, cluster: Cluster, project: Path, runs: int) -> bool:
    """The plain server with ``[tests] tablespace`` in a folder of /dev/shm (tmpfs)."""
    folder = Path("/dev/shm") / f"bench-ram-{os.getpid()}"
    folder.mkdir(mode=0o700)
    if cluster.run_as:
        shutil.chown(folder, cluster.run_as[2])
    server = FreshServer(f"plain server, [tests] tablespace in {folder}",
                         cluster.psql_argv(), work / "pg" / "server.log")
    try:
        server.sql(f"CREATE TABLESPACE {BENCH_TABLESPACE} LOCATION '{folder}'")
        make_fresh_project(project, cluster, FRESH_TESTS, tablespace=BENCH_TABLESPACE)
        return fresh_runs(work, server, project, runs)
    finally:
        server.sql(f"DROP TABLESPACE IF EXISTS {BENCH_TABLESPACE}")
        shutil.rmtree(folder, ignore_errors=True)


def fresh_on_embedded(work: Path, cluster: Cluster, project: Path, runs: int) -> bool:
    """The project's embedded server (``spawn db``'s; ``fsync = on``) and its tablespace
    in RAM, as a user runs fresh tests by default; stopped at the end."""
    make_fresh_project(project, cluster, FRESH_TESTS, embedded=True)
    from spawn_db.config import Overrides, load_config
    from spawn_db.db.target import psql_argv

    config = load_config(Overrides(config_file=str(project / "spawn.toml")))
    server = FreshServer("the embedded server (fsync on), spawn's tablespace in RAM",
                         psql_argv(config), project / ".spawn" / "postgres.log")
    try:
        return fresh_runs(work, server, project, runs)
    finally:
        run_child([sys.executable, "-m", "spawn_db", "db", "stop"], cwd=project)


def fresh_runs(work: Path, server: FreshServer, project: Path, runs: int) -> bool:
    """``runs`` rounds from no template, then ``spawn test clean`` must leave nothing."""
    spawn = [sys.executable, "-m", "spawn_db"]
    say(f"fresh mode on {server.label}:")
    names = sorted(p.name for p in (project / "spawn" / "tests").iterdir())
    checked(run_child([*spawn, "test", "expect", "--yes", "-j", "2"], cwd=project),
            "spawn test expect (fresh)")
    ok = True
    for run_no in range(runs):
        checked(run_child([*spawn, "test", "clean"], cwd=project), "spawn test clean")
        ok = fresh_round(work, server, project, names, run_no) and ok
    checked(run_child([*spawn, "test", "clean"], cwd=project), "spawn test clean")
    left = server.sql("SELECT count(*) FROM pg_database WHERE datname LIKE 'spawn\\_%'")
    say(f"  spawn databases left after `spawn test clean`: {left}")
    return ok and left == "0"


def fresh_round(work: Path, server: FreshServer, project: Path, names: list[str],
                run_no: int) -> bool:
    import json

    server.sql("ALTER DATABASE postgres SET log_min_duration_statement = 0;")
    log = server.log
    start = log.stat().st_size
    waits_file = work / f"copy-waits-{run_no}.json"
    try:
        run = checked(run_child([sys.executable, str(Path(__file__).resolve()),
                                 "--record-copies", str(waits_file), "test", "compare",
                                 "-j", "2"], cwd=project),
                      "spawn test compare -j 2 (fresh)")
    finally:
        server.sql("ALTER DATABASE postgres RESET log_min_duration_statement;")
    statements = logged_statements(log, start)
    templates = [ms for kind, name, ms in statements
                 if kind == "create" and name.startswith("spawn_tpl_")]
    creates = [ms for kind, name, ms in statements
               if kind == "create" and name.startswith("spawn_testdb_")]
    renames = [ms for kind, _name, ms in statements if kind == "rename"]
    drops = [ms for kind, name, ms in statements
             if kind == "drop" and name.startswith("spawn_testdb_")]
    waits: list[float] = json.loads(waits_file.read_text().splitlines()[-1])
    load = os.getloadavg()[0]
    size = server.sql("SELECT pg_size_pretty(pg_database_size(datname)) || ' in ' || "
                      "coalesce(nullif(pg_tablespace_location(dattablespace), ''), "
                      "'the data directory') FROM pg_database WHERE datname LIKE "
                      "'spawn\\_tpl\\_%'")
    pool = " ".join(f"{k}={v}" for k, v in os.environ.items() if k.startswith("BENCH_FRESH_"))
    say(f"fresh mode, run {run_no + 1} ({pool or 'spawn defaults'}): {len(names)} tests, "
        f"`spawn test compare -j 2` from no template took {run.seconds:.2f}s "
        f"(load average {load:.1f})")
    say(f"  the template (so each copy): {size}")
    say(f"  template builds (CREATE DATABASE spawn_tpl_…): {len(templates)} "
        f"({', '.join(f'{ms:.1f} ms' for ms in templates)})")
    say(f"  each test's wait for its copy, in spawn, in order: "
        f"{', '.join(f'{ms:.1f}' for ms in waits)} ms")
    if waits:
        say(f"  wait median {statistics.median(waits):.1f} ms, max {max(waits):.1f} ms")
    if creates:
        say(f"  (server side) CREATE DATABASE … TEMPLATE: {len(creates)}, median "
            f"{statistics.median(creates):.1f} ms, max {max(creates):.1f} ms; "
            f"renames: {len(renames)}, median "
            f"{statistics.median(renames) if renames else 0:.1f} ms, max "
            f"{max(renames, default=0):.1f} ms")
    if drops:
        say(f"  (server side) DROP DATABASE: {len(drops)}, median "
            f"{statistics.median(drops):.1f} ms, max {max(drops):.1f} ms")
    ok_once = len(templates) == 1
    ok_copies = (len(waits) == len(names) == len(creates)
                 and max(waits, default=0) < COPY_TARGET_MS)
    say(f"  template built once: {'PASS' if ok_once else 'MISS'}")
    say(f"  every test waits < {COPY_TARGET_MS:.0f} ms for its copy ({len(waits)} copies, "
        f"{len(creates)} made): {'PASS' if ok_copies else 'MISS'}")
    return ok_once and ok_copies


def plain_loop_script(root: Path, cluster: Cluster, names: list[str]) -> Path:
    """The baseline: the same bytes spawn sends, through a bash loop of psql processes."""
    sql_dir = root / "plain"
    out_dir = root / "plain-out"
    sql_dir.mkdir()
    out_dir.mkdir()
    for name in names:
        text = (root / "spawn" / "tests" / name / "test.sql").read_text()
        (sql_dir / f"{name}.sql").write_text(PREAMBLE + text)
    script = root / "plain-loop.sh"
    script.write_text(
        "#!/bin/bash\n"
        f"cd {shlex.quote(str(root))}\n"
        "for f in plain/*.sql; do\n"
        "  n=${f##*/}; n=${n%.sql}\n"
        f"  {shlex.join(cluster.psql_argv())} < \"$f\" > \"plain-out/$n\" 2>&1\n"
        "done\n"
    )
    script.chmod(0o755)
    return script


def say(text: str = "") -> None:
    print(text, flush=True)


def measure_interleaved(
    commands: dict[str, list[str]], cwd: Path, rounds: int
) -> dict[str, list[Run]]:
    """Each command once per round, in turn (rotated each round), so a busy machine
    slows all of them alike."""
    results: dict[str, list[Run]] = {label: [] for label in commands}
    labels = list(commands)
    for round_no in range(rounds):
        shift = round_no % len(labels)
        for label in labels[shift:] + labels[:shift]:
            results[label].append(checked(run_child(commands[label], cwd=cwd), label))
    for label, runs in results.items():
        say(f"  {label:<38} median {fmt_s(median_s(runs))}  best {fmt_s(min_s(runs))}   "
            f"runs: {fmt_runs(runs)}")
    return results


def min_s(runs: list[Run]) -> float:
    return min(r.seconds for r in runs)


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--tests", type=int, default=100, help="number of tests (100)")
    p.add_argument("--runs", type=int, default=3, help="runs per timing, median reported (3)")
    p.add_argument("--fsync", action="store_true",
                   help="run the server with fsync=on (default off, like a CI test cluster)")
    p.add_argument("--workdir", type=Path, help="where to create the temp folder (default: TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--fresh", action="store_true",
                   help="only the fresh-mode benchmark (40 tests, -j 2, copies < 60 ms)")
    p.add_argument("--variants", nargs="+", choices=FRESH_VARIANTS,
                   help="fresh mode: where the copies go (default: all three): disk, "
                        "tablespace (in /dev/shm), embedded (its own RAM tablespace)")
    p.add_argument("--ahead", type=int,
                   help="fresh mode: copies made ahead (spawn's default 2; 0: none)")
    p.add_argument("--makers", type=int,
                   help="fresh mode: threads making copies ahead (spawn's default 1)")
    return p.parse_args()


def main() -> int:
    if sys.argv[1:2] == ["--record-copies"]:
        return record_copies(sys.argv[2], sys.argv[3:])
    args = parse_args()
    for key in ("ahead", "makers"):
        if getattr(args, key) is not None:
            os.environ[f"BENCH_FRESH_{key.upper()}"] = str(getattr(args, key))
    work = Path(tempfile.mkdtemp(prefix="bench-sqltest-", dir=args.workdir))
    work.chmod(0o755)
    spawn = [sys.executable, "-m", "spawn_db"]
    cluster = None
    try:
        say(f"spawn test compare benchmark — {describe_machine()}")
        (work / "pg").mkdir()
        cluster = start_cluster(work / "pg", args.fsync)
        say(f"server: {cluster.bin_dir} (fsync={'on' if args.fsync else 'off'}), "
            f"psql: {cluster.psql}")
        if args.fresh:
            variants = tuple(args.variants or FRESH_VARIANTS)
            return 0 if fresh_benchmark(work, cluster, args.runs, variants) else 1
        cluster.sql("CREATE DATABASE bench_template;")
        cluster.sql(TEMPLATE_SQL, "bench_template")
        project = work / "project"
        project.mkdir()
        names = make_project(project, cluster, args.tests)
        loop = plain_loop_script(project, cluster, names)
        start = time.perf_counter()
        checked(run_child([*spawn, "test", "expect", "--yes"], cwd=project), "spawn test expect")
        say(f"{len(names)} tests; `spawn test expect --yes` (default jobs) took "
            f"{time.perf_counter() - start:.2f}s")
        jobs = len(os.sched_getaffinity(0))
        commands = {
            "plain loop of psql": ["bash", str(loop)],
            "spawn test compare -j 1": [*spawn, "test", "compare", "-j", "1"],
            f"spawn test compare (default: {jobs} jobs)": [*spawn, "test", "compare"],
        }
        say(f"timings: whole process, {args.runs} interleaved rounds:")
        timings = measure_interleaved(commands, project, args.runs)
        plain_runs, one_runs, default_runs = timings.values()
        same = all((project / "plain-out" / n).read_bytes()
                   == (project / "spawn" / "tests" / n / "expected").read_bytes() for n in names)
        say(f"plain loop output identical to spawn's expected files: {same}")
        # Ratios within a round compare runs made seconds apart, so load that comes
        # and goes on a shared machine cancels out better than in ratios of medians.
        ratio_one = statistics.median(
            o.seconds / p.seconds for o, p in zip(one_runs, plain_runs, strict=True))
        speedup = statistics.median(
            o.seconds / d.seconds for o, d in zip(one_runs, default_runs, strict=True))
        say(f"ratios of medians: -j 1 / plain {median_s(one_runs) / median_s(plain_runs):.2f}x, "
            f"-j 1 / default {median_s(one_runs) / median_s(default_runs):.2f}x; "
            f"of best runs: {min_s(one_runs) / min_s(plain_runs):.2f}x, "
            f"{min_s(one_runs) / min_s(default_runs):.2f}x")
        say("median of per-round ratios:")
        ok_one = ratio_one <= 1.2
        ok_par = speedup >= 1.6 or jobs < 2
        say(f"-j 1 / plain loop = {ratio_one:.2f}x (target <= 1.2x): "
            f"{'PASS' if ok_one else 'MISS'}")
        say(f"-j 1 / default    = {speedup:.2f}x faster (target >= 1.6x on 2 cores): "
            f"{'PASS' if ok_par else 'MISS'}")
        ok_fresh = fresh_benchmark(work, cluster)
        return 0 if ok_one and ok_par and same and ok_fresh else 1
    except (BenchError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", None)
        say(f"benchmark failed: {exc}{': ' + str(detail) if detail else ''}")
        return 1
    finally:
        if cluster is not None:
            cluster.stop()
        if args.keep:
            say(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
