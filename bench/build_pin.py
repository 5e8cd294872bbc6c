"""Benchmark: pin, re-pin, build and start-up of `spawn` on a 10,000-component project.

Generates (deterministically, fixed seed) a spawn project with N component
files of plausible SQL in 100 folders and one migration that includes M of
them, then times the real `spawn` command against baselines measured in the
same run on the same tree, and checks the targets of issue 2:

- cold pin within 2x of reading and hashing the tree once,
- warm re-pin within 1x of it, rewriting no object,
- pinned build of the M-include migration under 1 s,
- `spawn --version` within 8x of a bare interpreter start,
- rendering ~500 MB of SQL into a pipe with peak RSS under 100 MB.

Run from the repository root:  .venv/bin/python bench/build_pin.py
No database is needed. Exit status 1 if a target is missed or a check fails.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    BenchError,
    Run,
    checked,
    child_env,
    describe_machine,
    fmt_runs,
    fmt_s,
    median_s,
    run_child,
)

PY_READ_HASH = """\
import os, sys, xxhash
def walk(folder):
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            walk(entry.path)
        else:
            with open(entry.path, "rb") as f:
                xxhash.xxh3_128_hexdigest(f.read())
walk(sys.argv[1])
"""

SHA256_TREE = (
    "set -o pipefail; find spawn/components -type f -print0 | xargs -0 sha256sum >/dev/null"
)

SANDBOX_MAX_RANGE = 100_000  # jinja2.sandbox refuses larger range() calls
LOOP_LINE_FIXED = len("INSERT INTO t VALUES (, 'some text');\n")


@dataclass(frozen=True)
class Verdict:
    name: str
    detail: str
    passed: bool


@dataclass
class Bench:
    args: argparse.Namespace
    project: Path
    scratch: Path
    spawn: str
    python: str
    env: dict[str, str]
    verdicts: list[Verdict]

    @property
    def components(self) -> Path:
        return self.project / "spawn" / "components"

    @property
    def pinned(self) -> Path:
        return self.project / "spawn" / "pinned"

    def run(self, *argv: str, count_stdout: bool = False, rss: bool = True) -> Run:
        return run_child(argv, cwd=self.project, env=self.env, count_stdout=count_stdout, rss=rss)

    def spawn_out(self, *argv: str) -> str:
        done = subprocess.run(
            [self.spawn, *argv], cwd=self.project, env=self.env, capture_output=True, check=False
        )
        if done.returncode != 0:
            raise BenchError(f"spawn {' '.join(argv)} failed: {done.stderr.decode().strip()}")
        return done.stdout.decode()

    def judge(self, name: str, value: float, limit: float, detail: str) -> None:
        passed = value <= limit
        self.verdicts.append(Verdict(name, detail, passed))
        say(f"    {detail:<58} {'PASS' if passed else 'FAIL'}")

    def fail(self, name: str, detail: str) -> None:
        self.verdicts.append(Verdict(name, detail, False))
        say(f"    !!! {detail}")


def say(text: str = "") -> None:
    print(text, flush=True)


# --- project generation -------------------------------------------------------

WORDS = (
    "account", "invoice", "customer", "order", "payment", "ledger", "product", "stock",
    "shipment", "address", "tenant", "audit", "session", "price", "discount", "refund",
    "region", "warehouse", "supplier", "contract", "event", "metric", "report", "user",
)
TYPES = ("integer", "bigint", "text", "numeric(12,2)", "timestamptz", "boolean", "uuid", "date")


def _ident(rng: random.Random) -> str:
    return f"{rng.choice(WORDS)}_{rng.choice(WORDS)}"


def _function(rng: random.Random, schema: str) -> str:
    name, table, col, key = _ident(rng), _ident(rng), _ident(rng), _ident(rng)
    t_in, t_out = rng.choice(TYPES), rng.choice(TYPES)
    return (
        f"CREATE OR REPLACE FUNCTION {schema}.{name}(p_{key} {t_in}, p_limit integer)\n"
        f"RETURNS {t_out}\nLANGUAGE plpgsql\nSTABLE\nAS $fn$\nDECLARE\n"
        f"    v_result {t_out};\nBEGIN\n"
        f"    SELECT {col} INTO v_result\n    FROM {schema}.{table}\n"
        f"    WHERE {key} = p_{key}\n    ORDER BY {col} DESC\n    LIMIT p_limit;\n"
        "    RETURN v_result;\nEND;\n$fn$;\n\n"
    )


def _view(rng: random.Random, schema: str) -> str:
    name, a, b, c = _ident(rng), _ident(rng), _ident(rng), _ident(rng)
    return (
        f"CREATE OR REPLACE VIEW {schema}.v_{name} AS\n"
        f"SELECT t.{a}, t.{b}, sum(t.{c}) AS total_{c}, count(*) AS n\n"
        f"FROM {schema}.{name} AS t\nWHERE t.{b} IS NOT NULL AND t.{a} <> ''\n"
        f"GROUP BY t.{a}, t.{b}\nHAVING count(*) > {rng.randint(1, 99)};\n\n"
    )


def _table(rng: random.Random, schema: str) -> str:
    name = _ident(rng)
    cols = ",\n".join(
        f"    {_ident(rng)}_{i} {rng.choice(TYPES)}{' NOT NULL' if rng.random() < 0.5 else ''}"
        for i in range(rng.randint(3, 7))
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {schema}.{name} (\n"
        f"    {name}_id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n{cols}\n);\n\n"
    )


def _misc(rng: random.Random, schema: str) -> str:
    name, col, role = _ident(rng), _ident(rng), rng.choice(("app_reader", "app_writer"))
    return (
        f"CREATE INDEX IF NOT EXISTS ix_{name}_{col} ON {schema}.{name} ({col});\n"
        f"COMMENT ON TABLE {schema}.{name} IS 'Rows of {name.replace('_', ' ')}, kept for "
        f"{rng.randint(1, 36)} months';\n"
        f"GRANT SELECT ON {schema}.{name} TO {role};\n\n"
    )


BLOCKS: tuple[Callable[[random.Random, str], str], ...] = (_function, _view, _table, _misc)


def component_text(rng: random.Random, relpath: str) -> bytes:
    """1-4 KB of SQL with no Jinja syntax in it, so it includes as is."""
    schema = rng.choice(("app", "billing", "inventory", "reporting"))
    target = rng.randint(1024, 3500)
    text = f"-- {relpath}: generated by bench/build_pin.py\n\n"
    while len(text) < target:
        text += rng.choice(BLOCKS)(rng, schema)
    data = text.encode()
    assert 1024 <= len(data) <= 4096, (relpath, len(data))
    assert "{" not in text and "}" not in text and "#" not in text
    return data


def generate(bench: Bench) -> tuple[str, str, int, int]:
    """Write components and the two migrations; return their names, file count, bytes."""
    args = bench.args
    checked(bench.run(bench.spawn, "init"), "spawn init")
    warm_up = ("import spawn_db.cli.main, spawn_db.migrate.migration, spawn_db.pin.store,"
               " spawn_db.db.pgbin")
    checked(bench.run(bench.python, "-c", warm_up), "import warm-up (writes .pyc files)")
    rng = random.Random(args.seed)
    per_folder = -(-args.components // args.folders)
    paths, total = [], 0
    for n in range(args.components):
        rel = f"f_{n // per_folder:03d}/c_{n:05d}.sql"
        path = bench.components / rel
        path.parent.mkdir(exist_ok=True)
        data = component_text(rng, rel)
        path.write_bytes(data)
        paths.append(rel)
        total += len(data)
    includes = rng.sample(paths, min(args.includes, len(paths)))
    body = "".join(f'{{% include "{p}" %}}\n' for p in includes)
    big = bench.spawn_out("migration", "new", "build_pin").strip()
    (bench.project / "spawn/migrations" / big / "up.sql").write_text(
        f"BEGIN;\n\n{body}\nCOMMIT;\n"
    )
    loop = bench.spawn_out("migration", "new", "big_loop").strip()
    outer = loop_count(args.memory_mb * 2**20) // SANDBOX_MAX_RANGE
    (bench.project / "spawn/migrations" / loop / "up.sql").write_text(
        f"{{% for a in range({outer}) %}}{{% for b in range({SANDBOX_MAX_RANGE}) %}}"
        f"INSERT INTO t VALUES ({{{{ a * {SANDBOX_MAX_RANGE} + b }}}}, "
        '{{ "some text" }});\n{% endfor %}{% endfor %}\n'
    )
    files = sum(1 for _ in bench.components.rglob("*") if _.is_file())
    return big, loop, files, total


def loop_size(count: int) -> int:
    """Bytes the loop migration renders for ``count`` rows (before build's final newline)."""
    size, start, digits = 0, 0, 1
    while start < count:
        end = min(count, 10**digits)
        size += (end - start) * (LOOP_LINE_FIXED + digits)
        start, digits = end, digits + 1
    return size


def loop_count(target_bytes: int) -> int:
    """Rows, in whole inner loops of SANDBOX_MAX_RANGE, to render at least ``target_bytes``."""
    rows = SANDBOX_MAX_RANGE
    while loop_size(rows) < target_bytes:
        rows += SANDBOX_MAX_RANGE
    return rows


# --- measurements --------------------------------------------------------------

class Samples:
    """Runs per measurement; every round takes one of each, so all see the same machine."""

    def __init__(self) -> None:
        self.runs: dict[str, list[Run]] = {}

    def add(self, key: str, run: Run) -> None:
        self.runs.setdefault(key, []).append(checked(run, key))

    def median(self, key: str) -> float:
        return median_s(self.runs[key])

    def line(self, label: str, key: str, extra: str = "") -> str:
        runs = self.runs[key]
        rss = max(r.max_rss_kb for r in runs) / 1024
        return f"{label:<38} {fmt_s(median_s(runs))}   [{fmt_runs(runs)}]  RSS {rss:.0f} MB{extra}"


def set_aside(path: Path, bench: Bench) -> None:
    """Move ``path`` out of the way instead of deleting it (see "Deleting skews creation").

    On ext4 without a journal (this VM's disk) the kernel will not reuse an
    inode freed in the last 60 s (300 s while its table block is dirty), and
    it finds that out by reading every such inode: a pin just after deleting
    10,000 files spent 90% of its time in the kernel's ``recently_deleted()``.
    A rename is one directory operation; everything is deleted at the end.
    """
    if path.exists():
        trash = bench.scratch / "set-aside"
        trash.mkdir(exist_ok=True)
        path.rename(trash / f"{path.name}-{len(list(trash.iterdir()))}")


def clear_pinned(bench: Bench) -> None:
    set_aside(bench.pinned, bench)
    bench.pinned.mkdir()
    (bench.pinned / ".gitkeep").touch()
    os.sync()


def object_stats(pinned: Path) -> dict[str, tuple[int, int, int, int]]:
    stats = {}
    for path in pinned.rglob("*"):
        st = path.lstat()
        key = str(path.relative_to(pinned))
        stats[key] = (st.st_ino, st.st_mtime_ns, st.st_ctime_ns, st.st_size)
    return stats


def lock_of(bench: Bench, migration: str) -> str:
    return (bench.project / "spawn/migrations" / migration / "lock.toml").read_text().strip()


def check_builds_agree(bench: Bench, migration: str) -> int:
    """Pin once, then check pinned and unpinned builds print the same SQL; return its size."""
    checked(bench.run(bench.spawn, "migration", "pin", migration), "first pin")
    outputs = []
    for flag in ([], ["--pinned"]):
        done = subprocess.run([bench.spawn, "migration", "build", migration, *flag],
                              cwd=bench.project, env=bench.env, capture_output=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"build {flag} failed: {done.stderr.decode().strip()}")
        outputs.append(done.stdout)
    if outputs[0] != outputs[1]:
        bench.fail("build pinned == unpinned", "pinned and unpinned builds differ")
    return len(outputs[0])


def measure_round(bench: Bench, migration: str, samples: Samples, roots: set[str]) -> list[str]:
    """One run of every pin/build measurement and baseline; return objects a re-pin touched."""
    spawn, copy_to = bench.spawn, bench.scratch / "cp_dest"
    set_aside(copy_to, bench)
    os.sync()
    samples.add("cp -r", bench.run("cp", "-r", str(bench.components), str(copy_to)))
    samples.add("sha256sum", bench.run("bash", "-c", SHA256_TREE))
    samples.add("python read+xxh3",
                bench.run(bench.python, "-c", PY_READ_HASH, str(bench.components)))
    clear_pinned(bench)
    samples.add("cold pin", bench.run(spawn, "migration", "pin", migration))
    roots.add(lock_of(bench, migration))
    before = object_stats(bench.pinned)
    os.sync()
    samples.add("warm re-pin", bench.run(spawn, "migration", "pin", migration))
    roots.add(lock_of(bench, migration))
    after = object_stats(bench.pinned)
    samples.add("build", bench.run(spawn, "migration", "build", migration))
    samples.add("build --pinned", bench.run(spawn, "migration", "build", migration, "--pinned"))
    return sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))


def measure_pin_and_build(bench: Bench, migration: str) -> None:
    size = check_builds_agree(bench, migration)
    samples, roots, touched = Samples(), set[str](), []
    for _ in range(bench.args.runs):
        touched += measure_round(bench, migration, samples, roots)
    objects = sum(1 for p in bench.pinned.rglob("*") if p.is_file() and p.name != ".gitkeep")
    sha, py = samples.median("sha256sum"), samples.median("python read+xxh3")
    say("baselines on the same tree (each includes its own process start-up)")
    say(samples.line("  cp -r components/", "cp -r"))
    say(samples.line("  find | xargs sha256sum  (read+hash)", "sha256sum"))
    say(samples.line("  python read + xxh3_128  (read+hash)", "python read+xxh3"))
    say()
    say(samples.line("1. cold pin (empty pinned/)", "cold pin", f", {objects} objects"))
    compare_to_hash(bench, "cold pin", samples.median("cold pin"), 2, sha, py)
    copy_ratio = samples.median("cold pin") / samples.median("cp -r")
    say(f"    {'(info) vs cp -r, which writes the same files unhashed':<52} {copy_ratio:5.2f}x")
    say(samples.line("2. warm re-pin (nothing changed)", "warm re-pin"))
    if touched:
        bench.fail("warm re-pin rewrites nothing",
                   f"VIOLATION: warm re-pin rewrote {len(touched)} entries under pinned/, "
                   f"e.g. {touched[:3]}")
    else:
        bench.verdicts.append(Verdict("warm re-pin rewrites nothing", "no object touched", True))
        say(f"    {'no object rewritten (inode/mtime/ctime/size unchanged)':<58} PASS")
    if len(roots) != 1:
        bench.fail("pin deterministic", f"pins gave different roots: {sorted(roots)}")
    compare_to_hash(bench, "warm re-pin", samples.median("warm re-pin"), 1, sha, py)
    say(samples.line("3. build unpinned > /dev/null", "build", f", {size / 1024:.0f} KiB SQL"))
    say(samples.line("3. build --pinned > /dev/null", "build --pinned"))
    value = samples.median("build --pinned")
    bench.judge("pinned build", value, 1.0,
                f"{bench.args.includes} includes, pinned: {value:.3f} s  (target < 1 s)")


def compare_to_hash(bench: Bench, name: str, value: float, factor: float,
                    sha: float, py: float) -> None:
    for label, base in (("sha256sum", sha), ("python read+xxh3", py)):
        bench.judge(f"{name} vs {label}", value / base, factor,
                    f"vs {label:<17} {value / base:5.2f}x  (target <= {factor:g}x)")


def measure_startup(bench: Bench) -> None:
    bare: list[Run] = []
    version: list[Run] = []
    for _ in range(bench.args.startup_runs):
        bare.append(checked(bench.run(bench.python, "-c", "pass", rss=False), "python -c pass"))
        version.append(checked(bench.run(bench.spawn, "--version", rss=False), "spawn --version"))
    ratio = median_s(version) / median_s(bare)
    say(f"4. spawn --version                      {fmt_s(median_s(version))}   "
        f"(median of {len(version)})")
    say(f"   baseline python -c pass              {fmt_s(median_s(bare))}   "
        f"(median of {len(bare)})")
    bench.judge("spawn --version", ratio, 8, f"vs python -c pass  {ratio:5.2f}x  (target <= 8x)")


def measure_memory(bench: Bench, migration: str) -> None:
    rows = loop_count(bench.args.memory_mb * 2**20)
    expected = loop_size(rows) + 1
    run = checked(bench.run(bench.spawn, "migration", "build", migration, count_stdout=True),
                  "big loop build")
    rss = run.max_rss_kb / 1024
    rate = run.stdout_bytes / 2**20 / run.seconds
    say(f"5. loop template, {rows:,} rows -> {run.stdout_bytes / 2**20:.0f} MiB of SQL "
        f"in {run.seconds:.1f} s ({rate:.0f} MiB/s)")
    if run.stdout_bytes != expected:
        bench.fail("loop output size", f"expected {expected} bytes, got {run.stdout_bytes}")
    bench.judge("render memory", rss, 100, f"peak RSS of spawn: {rss:.1f} MB  (target < 100 MB)")


# --- driver --------------------------------------------------------------------

def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def git_state(repo: Path) -> str:
    def git(*argv: str) -> str:
        done = subprocess.run(["git", *argv], cwd=repo, capture_output=True, text=True, check=False)
        return done.stdout.rstrip("\n")

    dirty = [line[3:] for line in git("status", "--porcelain", "--", "src").splitlines()]
    head = git("rev-parse", "--short", "HEAD")
    return head + (f" + uncommitted {', '.join(dirty)}" if dirty else "")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--components", type=int, default=10_000, help="component files (10000)")
    p.add_argument("--folders", type=int, default=100, help="folders they are spread over (100)")
    p.add_argument("--includes", type=int, default=1_000, help="includes in the migration (1000)")
    p.add_argument("--runs", type=int, default=3, help="runs per timing, median reported (3)")
    p.add_argument("--startup-runs", type=int, default=20, help="runs for start-up timings (20)")
    p.add_argument("--memory-mb", type=int, default=500, help="MiB the loop template renders (500)")
    p.add_argument("--skip-memory", action="store_true", help="skip the large-render memory check")
    p.add_argument("--seed", type=int, default=20260131, help="random seed for the project")
    p.add_argument("--workdir", type=Path, help="where to create the project (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the generated project")
    p.add_argument("--inherit-env", action="store_true",
                   help="keep PYTHONUNBUFFERED/PYTHONDONTWRITEBYTECODE for the children")
    return p.parse_args()


def main() -> int:
    args = parse_args()
    repo = Path(__file__).resolve().parent.parent
    bin_dir = Path(sys.executable).parent
    spawn = str(bin_dir / "spawn") if (bin_dir / "spawn").exists() else shutil.which("spawn")
    if spawn is None:
        sys.exit("no `spawn` next to this interpreter or on PATH; run `pip install -e .` first")
    work = Path(tempfile.mkdtemp(prefix="spawn-bench-", dir=args.workdir))
    project = work / "project"
    project.mkdir()
    env, removed = child_env(args.inherit_env)
    bench = Bench(args, project, work, spawn, sys.executable, env, [])
    try:
        say(f"spawn build/pin benchmark — {describe_machine()}")
        say(f"code: {git_state(repo)}; spawn: {spawn}")
        say(f"load average at start: {load()}; children run without: "
            f"{', '.join(removed) or 'nothing removed'}")
        big, loop, files, total = generate(bench)
        say(f"project: {project} — {files} files in components/ ({total / 2**20:.1f} MiB, "
            f"{args.folders} folders), migration {big} with {args.includes} includes")
        say(f"timings: median of {args.runs} interleaved rounds (start-up: {args.startup_runs} "
            "pairs); page cache warm; os.sync() before each write-heavy run")
        say()
        measure_pin_and_build(bench, big)
        steps: list[Callable[[], None]] = [lambda: measure_startup(bench)]
        if not args.skip_memory:
            steps.append(lambda: measure_memory(bench, loop))
        for step in steps:
            try:
                step()
            except BenchError as exc:
                bench.fail("step ran", f"FAILED: {exc}")
        if args.skip_memory:
            say("5. large-render memory check skipped (--skip-memory)")
    except BenchError as exc:
        bench.fail("benchmark ran", f"ABORTED: {exc}")
    finally:
        if args.keep:
            say(f"\nproject kept at {project}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    failed = [v for v in bench.verdicts if not v.passed]
    say(f"\nload average at end: {load()}")
    say(f"summary: {len(bench.verdicts) - len(failed)}/{len(bench.verdicts)} checks pass")
    for v in failed:
        say(f"  FAIL {v.name}: {v.detail.strip()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
