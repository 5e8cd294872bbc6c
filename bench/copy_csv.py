"""copy_csv on a large CSV: time and peak memory of build and apply, against psql's \\copy.

Generates a CSV of SIZE MiB (default 200; a tenth of the records quoted, some
with doubled quotes and delimiters), a project whose one migration is
``CREATE TABLE`` + ``{{ copy_csv(...) }}``, pins it (the file is copied into
the pin store), and measures, each as a fresh process:

1. ``spawn migration build --pinned`` into a pipe that counts the bytes;
2. ``spawn migration apply`` on a fresh database of a throwaway cluster;
3. the floor: ``psql -c "\\copy people FROM file WITH (FORMAT csv, HEADER)"``.

Target (issue 19): peak RSS of spawn flat in the file's size (under 100 MB
whatever SIZE is). Memory is from GNU time (see README.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import BenchError, checked, child_env, run_child
from apply import Server, point_at

from spawn_db.config import Overrides, load_config
from spawn_db.migrate.migration import pin_migration
from spawn_db.project import init_project

TABLE = "CREATE TABLE people (id bigint PRIMARY KEY, name text, email text, note text);\n"
RSS_TARGET_KB = 100_000


def write_csv(path: Path, mib: int) -> int:
    """About ``mib`` MiB of records; returns how many."""
    target = mib * 1024 * 1024
    written = count = 0
    with path.open("w", encoding="utf-8") as file:
        file.write("id,name,email,note\n")
        while written < target:
            lines = []
            for i in range(count, count + 10_000):
                if i % 10 == 0:
                    lines.append(f'{i},"Person ""{i}"", Jr.",p{i}@example.com,"a, b"\n')
                else:
                    lines.append(f"{i},Person {i},p{i}@example.com,plain note {i % 97}\n")
            block = "".join(lines)
            file.write(block)
            written += len(block)
            count += 10_000
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[50, 200],
                        help="CSV sizes in MiB (default: 50 200)")
    args = parser.parse_args()
    env, _ = child_env(False)
    base = Path(tempfile.mkdtemp(prefix="spawn-bench-csv-", dir="/tmp"))
    os.chmod(base, 0o755)
    server = Server(base / "pg", fast=True)
    failed = False
    try:
        for mib in args.sizes:
            failed |= not measure(server, base / f"p{mib}", mib, env)
    except BenchError as exc:
        print(f"error: {exc}")
        failed = True
    finally:
        server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 1 if failed else 0


def measure(server: Server, root: Path, mib: int, env: dict[str, str]) -> bool:
    init = init_project(root)
    csv = root / "spawn" / "components" / "data" / "people.csv"
    csv.parent.mkdir(parents=True)
    records = write_csv(csv, mib)
    folder = root / "spawn" / "migrations" / "20240101000000-people"
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text(TABLE + '{{ copy_csv("data/people.csv", "people") }}\n',
                                   encoding="utf-8")
    pin_migration(load_config(Overrides(config_file=str(init.config_path))), folder.name)
    spawn = [sys.executable, "-m", "spawn_db"]
    database = server.fresh_database()
    point_at(root, server.argv(database))
    size = csv.stat().st_size
    print(f"{size / 2**20:.0f} MiB, {records:,} records")

    build = checked(run_child([*spawn, "migration", "build", folder.name, "--pinned"],
                              cwd=root, env=env, count_stdout=True), "build")
    print(f"  build --pinned   {build.seconds:7.2f} s  peak RSS {build.max_rss_kb / 1000:6.1f} MB"
          f"  ({build.stdout_bytes / 2**20:.0f} MiB of SQL, "
          f"{size / 2**20 / build.seconds:.0f} MiB/s)")
    apply = checked(run_child([*spawn, "migration", "apply", "--yes"], cwd=root, env=env),
                    "apply")
    loaded = server.query("SELECT count(*) FROM people", database)
    print(f"  apply            {apply.seconds:7.2f} s  peak RSS {apply.max_rss_kb / 1000:6.1f} MB"
          f"  ({loaded} rows)")
    floor_db = server.fresh_database()
    server.query(TABLE, floor_db)
    floor = checked(run_child([*server.argv(floor_db), "-v", "ON_ERROR_STOP=1", "-c",
                               f"\\copy people FROM '{csv}' WITH (FORMAT csv, HEADER)"],
                              env=env), "psql \\copy")
    print(f"  psql \\copy       {floor.seconds:7.2f} s  peak RSS {floor.max_rss_kb / 1000:6.1f} MB"
          f"  (apply / \\copy: {apply.seconds / floor.seconds:.1f}x)")
    peak = max(build.max_rss_kb, apply.max_rss_kb)
    ok = peak < RSS_TARGET_KB and loaded == str(records)
    print(f"  peak RSS {peak / 1000:.1f} MB (target < {RSS_TARGET_KB / 1000:.0f} MB): "
          f"{'met' if ok else 'MISSED'}")
    return ok


if __name__ == "__main__":
    sys.exit(main())
