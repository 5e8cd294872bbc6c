"""copy_csv and read_csv against PostgreSQL: what COPY loads, pins, and flat memory (issue 19)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from spawn_db.pin.store import hash_bytes
from tests.conftest import DbProject
from tests.helpers import spawn_env
from tests.migrate.history import latest

TRICKY = (
    "id,name,note\r\n"
    '1,"Ann ""A"", Jr.",\r\n'
    '2,"two\nlines",""\r\n'
    '3,"\\.",back\\slash\r\n'
    "4,Zoë 🐘,\r\n"
)
TABLE = "CREATE TABLE people (id int PRIMARY KEY, name text, note text);\n"


def rows(db_project: DbProject) -> list[list[object]]:
    text = db_project.database.query(
        "SELECT coalesce(json_agg(json_build_array(id, name, note) ORDER BY id), '[]') "
        "FROM people")
    result: list[list[object]] = json.loads(text)
    return result


def test_copy_csv_loads_exactly_the_values_of_the_file(db_project: DbProject) -> None:
    db_project.add_component("data/people.csv", TRICKY)
    db_project.add_migration("people", TABLE + '{{ copy_csv("data/people.csv", "people") }}\n')
    applied = db_project.run("migration", "apply")
    assert applied.exit_code == 0, applied.stderr
    assert rows(db_project) == [[1, 'Ann "A", Jr.', None], [2, "two\nlines", ""],
                                [3, "\\.", "back\\slash"], [4, "Zoë 🐘", None]]


def test_a_migration_that_ends_with_copy_data_is_recorded_as_applied(
        db_project: DbProject) -> None:
    """psql 18 stops reading (exit 0) at an empty query right after COPY data, which is what
    apply's `;` for an unterminated last statement was there: the migration ran but was
    recorded as FAILURE. Plain SQL and copy_csv alike."""
    plain = db_project.add_migration("plain",
                                     'CREATE TABLE t (a int);\nCOPY t FROM STDIN;\n1\n2\n\\.\n')
    db_project.add_component("data/t.csv", "a\n3\n")
    csv = db_project.add_migration("csv", '{{ copy_csv("data/t.csv", "t") }}')
    applied = db_project.run("migration", "apply", "--yes")
    assert applied.exit_code == 0, applied.stderr
    assert db_project.database.query("SELECT string_agg(a::text, ',' ORDER BY a) FROM t") == \
        "1,2,3"
    assert latest(db_project.database) == {plain: "SUCCESS", csv: "SUCCESS"}


def test_read_csv_values_are_escaped_like_any_value(db_project: DbProject) -> None:
    db_project.add_component("data/people.csv", TRICKY)
    db_project.add_migration("people", TABLE + (
        '{% for p in read_csv("data/people.csv") %}'
        "INSERT INTO people VALUES ({{ p.id }}::int, {{ p.name }}, {{ p.note }});\n"
        "{% endfor %}"))
    applied = db_project.run("migration", "apply")
    assert applied.exit_code == 0, applied.stderr
    assert rows(db_project) == [[1, 'Ann "A", Jr.', None], [2, "two\nlines", ""],
                                [3, "\\.", "back\\slash"], [4, "Zoë 🐘", None]]


def test_a_csv_edited_after_pinning_does_not_change_the_pinned_build(
        db_project: DbProject) -> None:
    db_project.add_component("data/people.csv", "id,name,note\n1,old,\n")
    name = db_project.add_migration("people", TABLE + (
        '{{ copy_csv("data/people.csv", "people") }}\n'
        '-- {{ read_csv("data/people.csv")|map(attribute="name")|join(",")|safe }}\n'))
    before = db_project.run("migration", "build", name, "--pinned")
    db_project.add_component("data/people.csv", "id,name,note\n1,new,\n2,added,\n")

    after = db_project.run("migration", "build", name, "--pinned")
    assert (after.exit_code, after.stdout) == (0, before.stdout)
    assert after.stdout == (TABLE + 'COPY "people" ("id", "name", "note") FROM STDIN WITH '
                            '(FORMAT csv);\n1,old,\n\\.\n\n-- old\n')
    tree = db_project.run("migration", "build", name)
    assert "1,new,\n2,added,\n" in tree.stdout and "-- new,added" in tree.stdout
    assert tree.stderr == (
        f"warning: {name} is pinned: `spawn migration apply` renders it from the pin, not from "
        "the working tree shown here; add --pinned to see what will be applied\n")

    applied = db_project.run("migration", "apply")
    assert applied.exit_code == 0, applied.stderr
    assert applied.stderr.startswith(
        f"warning: {name} is pinned to an older components/data/people.csv: the working tree "
        "has a newer version")
    assert rows(db_project) == [[1, "old", None]]


def test_a_corrupt_pinned_csv_is_refused_before_anything_runs(db_project: DbProject) -> None:
    db_project.add_component("data/people.csv", "id,name,note\n1,old,\n")
    name = db_project.add_migration("people", TABLE + '{{ copy_csv("data/people.csv", '
                                    '"people") }}\n')
    objects = [p for p in (db_project.spawn_dir / "pinned").rglob("*")
               if p.is_file() and p.read_bytes() == b"id,name,note\n1,old,\n"]
    assert len(objects) == 1
    objects[0].write_bytes(b"id,name,note\n1,evil,\n")
    applied = db_project.run("migration", "apply")
    assert applied.exit_code == 1
    digest = objects[0].parent.name + objects[0].name
    error = applied.stderr.splitlines()[-1]
    assert error.startswith(f"error: spawn/migrations/{name}/up.sql:2: pin object {digest} in ")
    assert error.endswith(f"is corrupt: its bytes hash to {hash_bytes(objects[0].read_bytes())} "
                          f"(migration {name}); restore it from version control")
    assert db_project.database.query("SELECT to_regclass('people') IS NULL") == "t"
    assert name in db_project.run("migration", "status").stdout


def test_bad_csv_stops_the_migration_before_anything_reaches_the_database(
        db_project: DbProject) -> None:
    rows_text = "".join(f"{i},n{i},\n" for i in range(5000))
    db_project.add_component("data/people.csv", "id,name,note\n" + rows_text + "5000,x\n")
    name = db_project.add_migration("people", TABLE + '{{ copy_csv("data/people.csv", '
                                    '"people") }}\n')
    applied = db_project.run("migration", "apply")
    assert applied.exit_code == 1
    assert applied.stderr.splitlines()[-1] == (
        f"error: spawn/migrations/{name}/up.sql: components/data/people.csv:5002: 2 fields, but "
        "the header has 3; every record needs the same number of fields (quote a value that "
        "holds the delimiter)")
    assert db_project.database.query("SELECT to_regclass('people') IS NULL") == "t"


# VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over an exec, so a child of a
# large pytest process would report the parent's size.
MEASURE = """
import atexit, runpy, sys
out = sys.argv.pop(1)
def report():
    with open("/proc/self/status") as status, open(out, "w") as f:
        f.write(next(l.split()[1] for l in status if l.startswith("VmHWM:")))
atexit.register(report)
sys.argv[0] = "spawn"
runpy.run_module("spawn_db", run_name="__main__")
"""


def peak_rss_kib(db_project: DbProject, *args: str) -> int:
    """Run spawn ARGS and return the peak resident memory of the spawn process itself."""
    out = db_project.root / "rss.txt"
    done = subprocess.run([sys.executable, "-c", MEASURE, str(out), *args],
                          cwd=db_project.root, env=spawn_env(), capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    return int(out.read_text())


def write_rows(path: Path, count: int) -> None:
    with path.open("w", encoding="utf-8") as file:
        file.write("id,name,note\n")
        for start in range(0, count, 10_000):
            file.write("".join(f'{i},"user ""{i}"", ok",{"x" * 40}\n'
                               if i % 3 == 0 else f"{i},user {i},{'y' * 40}\n"
                               for i in range(start, min(count, start + 10_000))))


def test_copy_csv_applies_a_large_file_with_flat_memory(db_project: DbProject) -> None:
    """The same migration with 150,000 records (~9 MB, past every in-memory spool) and three
    times as many: the spawn process's peak memory grows by far less than the file, because
    the data streams (a render that held the file would grow by twice its size or more)."""
    csv = db_project.spawn_dir / "components" / "data" / "people.csv"
    csv.parent.mkdir(parents=True)
    write_rows(csv, 150_000)
    db_project.add_migration("small", TABLE + '{{ copy_csv("data/people.csv", "people") }}\n')
    small_peak = peak_rss_kib(db_project, "migration", "apply")
    assert db_project.database.query("SELECT count(*) FROM people") == "150000"
    small_kib = csv.stat().st_size // 1024

    write_rows(csv, 450_000)
    grown_kib = csv.stat().st_size // 1024 - small_kib
    db_project.add_migration("big", "TRUNCATE people;\n"
                             '{{ copy_csv("data/people.csv", "people") }}\n')
    big_peak = peak_rss_kib(db_project, "migration", "apply")
    assert db_project.database.query("SELECT count(*), max(id) FROM people") == "450000|449999"
    assert db_project.database.query(
        "SELECT name FROM people WHERE id = 3") == 'user "3", ok'
    assert big_peak - small_peak < grown_kib // 4, (small_peak, big_peak, grown_kib)
