"""Benchmark: the server's instructions for ``spawn migration apply`` against the floor.

Wall and CPU times on a shared machine swing by 2-5x from run to run; instruction
counts do not. This starts a throwaway PostgreSQL under ``valgrind --tool=callgrind
--trace-children=yes`` (autovacuum off, so that only the measured sessions' backends
exit), runs apply.py's project of N migrations through the floor (one psql) and
through spawn, once per source tree given, and prints the instructions of every
backend that exited during each run (spawn: its control session and its runner).
Each backend's count includes what it inherited from the postmaster (about 20M
instructions of start-up), the same for every backend.

Run from the repository root (valgrind installed; as root, the server runs as the
``postgres`` user):

    .venv/bin/python bench/apply_callgrind.py [N] [--src LABEL=PATH ...]

``--src main=/work/main/src`` measures another checkout's spawn (``PYTHONPATH``);
without any, this tree's. N defaults to 100 (each run takes about a minute).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchError, child_env
from apply import SPAWN_APPLY, make_project, point_at

from spawn_db.db.pgbin import find_binaries

SETTLE = 1.5  # seconds for a finished backend to write its callgrind file


class CallgrindServer:
    """A PostgreSQL whose every backend is counted by callgrind."""

    def __init__(self, base: Path) -> None:
        bin_dir = Path(find_binaries().bin_dir)
        self.out = base / "callgrind"
        data, sock = base / "data", base / "sock"
        for folder in (self.out, data, sock):
            folder.mkdir()
        as_user: list[str] = []
        if os.geteuid() == 0:
            for folder in (self.out, data, sock):
                shutil.chown(folder, "postgres", "postgres")
            as_user = ["runuser", "-u", "postgres", "--"]
        subprocess.run([*as_user, str(bin_dir / "initdb"), "-D", str(data), "-A", "trust",
                        "-U", "postgres"], check=True, capture_output=True)
        self.log = (base / "postgres.log").open("w")
        self.proc = subprocess.Popen(
            [*as_user, "valgrind", "--tool=callgrind", "--trace-children=yes",
             f"--callgrind-out-file={self.out}/cg.%p", str(bin_dir / "postgres"), "-D",
             str(data), "-k", str(sock), "-c", "listen_addresses=", "-c", "autovacuum=off"],
            stdout=subprocess.DEVNULL, stderr=self.log)
        self.psql = [str(bin_dir / "psql"), "-X", "-h", str(sock), "-U", "postgres"]
        deadline = time.monotonic() + 300
        while subprocess.run([*self.psql, "-c", "SELECT 1", "postgres"],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise BenchError("the server under valgrind did not start")
            time.sleep(0.5)
        self.databases = 0

    def fresh_database(self) -> str:
        self.databases += 1
        name = f"bench_{self.databases}"
        subprocess.run([*self.psql, "-c", f"CREATE DATABASE {name}", "postgres"],
                       check=True, capture_output=True)
        time.sleep(SETTLE)
        return name

    def files(self) -> set[str]:
        return set(glob.glob(f"{self.out}/cg.*"))

    def counts(self, before: set[str]) -> list[int]:
        """Instructions of each backend that exited since ``before`` was taken."""
        time.sleep(SETTLE)
        counts = []
        for path in sorted(self.files() - before):
            found = None
            for _ in range(120):
                found = re.search(r"^(?:summary|totals): (\d+)", Path(path).read_text(
                    errors="replace"), re.M)
                if found:
                    break
                time.sleep(0.5)
            if found is None:
                raise BenchError(f"{path}: no callgrind totals")
            counts.append(int(found.group(1)))
        return sorted(counts)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=300)
        self.log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("count", nargs="?", type=int, default=100)
    parser.add_argument("--src", action="append", default=[],
                        help="LABEL=PATH of a spawn source tree to measure (repeatable)")
    args = parser.parse_args()
    env, _ = child_env(False)
    trees = dict(s.split("=", 1) for s in args.src) or {"this tree": ""}
    base = Path(tempfile.mkdtemp(prefix="spawn-bench-cg-", dir="/tmp"))
    os.chmod(base, 0o755)
    server = CallgrindServer(base)
    try:
        rendered = make_project(base / "project", args.count)
        results: dict[str, list[int]] = {}
        database = server.fresh_database()
        before = server.files()
        with rendered.open("rb") as source:
            subprocess.run([*server.psql, database], stdin=source, check=True,
                           capture_output=True)
        results["floor (one psql)"] = server.counts(before)
        for label, src in trees.items():
            database = server.fresh_database()
            point_at(base / "project", [*server.psql, database])
            before = server.files()
            child = dict(env, PYTHONPATH=src) if src else env
            done = subprocess.run([sys.executable, *SPAWN_APPLY], cwd=base / "project",
                                  env=child, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                raise BenchError(f"spawn ({label}) failed: {done.stderr[-500:]}")
            results[f"spawn ({label})"] = server.counts(before)
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    floor = sum(results["floor (one psql)"])
    print(f"N={args.count}, server instructions (callgrind), per backend that exited:")
    for label, counts in results.items():
        total = sum(counts)
        print(f"  {label:24} {total / 1e6:8.1f}M  {total / args.count / 1e6:5.2f}M per migration"
              f"  {total / floor:5.3f}x the floor  backends: "
              + ", ".join(f"{c / 1e6:.1f}M" for c in counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
