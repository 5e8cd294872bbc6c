"""``spawn migration apply --dry-run``: the plan apply would run, with each pin and the
checksum apply then records, the SQL with ``--sql``, JSON; nothing written, no lock."""

from __future__ import annotations

import json
import subprocess
import time

from tests.conftest import DbProject, TestDatabase
from tests.migrate.history import history

LOCK_KEY = -6823468568242361246


def recorded(database: TestDatabase) -> dict[str, tuple[str, str]]:
    """name -> (pin_hash, checksum hex) of each migration's latest history row."""
    text = database.query(
        "SELECT m.name, h.pin_hash, encode(h.checksum, 'hex') FROM _spawn.migration_history h "
        "JOIN _spawn.migration m ON m.migration_id = h.migration_id_migration "
        "ORDER BY h.migration_history_id")
    return {name: (pin, checksum) for name, pin, checksum in
            (line.split("|") for line in text.splitlines())}


def pin_of(project: DbProject, name: str) -> str:
    from spawn_db.pin.store import read_lock

    pin = read_lock(project.spawn_dir / "migrations" / name)
    assert pin is not None
    return pin


def three(project: DbProject) -> list[str]:
    project.add_component("t.sql",
                          "CREATE TABLE {{ variables.table | escape_identifier }} (id int);\n")
    return [
        project.add_migration("one", '{% include "t.sql" %}\n'),
        project.add_migration("two", "INSERT INTO {{ variables.table | escape_identifier }} "
                                     "VALUES (2);\n"),
        project.add_migration("three", "SELECT 3;\n"),
    ]


def test_dry_run_lists_the_plan_with_the_pin_and_the_checksum_apply_records(
    db_project: DbProject,
) -> None:
    names = three(db_project)
    (db_project.root / "vars.json").write_text('{"table": "items"}')

    dry = db_project.run("migration", "apply", "--dry-run", "--variables", "vars.json")

    assert dry.exit_code == 0, dry.stderr
    assert db_project.database.query(
        "SELECT count(*) FROM pg_namespace WHERE nspname = '_spawn'") == "0"
    applied = db_project.run("migration", "apply", "--yes", "--variables", "vars.json")
    assert applied.exit_code == 0, applied.stderr
    rows = recorded(db_project.database)
    assert dry.stdout == "".join(
        f"{name}  pin {pin_of(db_project, name)}  checksum {rows[name][1]}\n" for name in names)
    assert [rows[name][0] for name in names] == [pin_of(db_project, n) for n in names]
    assert dry.stderr == ("Dry run: would apply 3 migrations (0 already applied); nothing was "
                          "written.\n")


def test_dry_run_sql_prints_each_rendered_migration_under_a_header(
    db_project: DbProject,
) -> None:
    names = three(db_project)
    (db_project.root / "vars.json").write_text('{"table": "items"}')
    db_project.run("migration", "apply", names[0], "--variables", "vars.json")

    dry = db_project.run("migration", "apply", "--dry-run", "--sql", "--variables", "vars.json")

    assert dry.exit_code == 0, dry.stderr
    db_project.run("migration", "apply", "--yes", "--variables", "vars.json")
    rows = recorded(db_project.database)
    assert dry.stdout == (
        f"-- spawn migration {names[1]}: pin {pin_of(db_project, names[1])}, "
        f"checksum {rows[names[1]][1]}\n"
        "INSERT INTO \"items\" VALUES (2);\n"
        f"-- spawn migration {names[2]}: pin {pin_of(db_project, names[2])}, "
        f"checksum {rows[names[2]][1]}\n"
        "SELECT 3;\n"
    )
    assert dry.stderr == ("Dry run: would apply 2 migrations (1 already applied); nothing was "
                          "written.\n")


def test_dry_run_json_and_no_pin(db_project: DbProject) -> None:
    name = db_project.add_migration("plain", "SELECT {{ env }};\n", pin=False)

    dry = db_project.run("migration", "apply", "--dry-run", "--no-pin", "--format", "json",
                         "--sql")

    assert dry.exit_code == 0, dry.stderr
    assert json.loads(dry.stdout) == {
        "to_apply": [{"name": name, "pin": None,
                      "checksum": _xxh3(b"SELECT 'dev';"), "size": 13, "verify": False,
                      "sql": "SELECT 'dev';"}],
        "already_applied": [],
        "blocked": None,
    }
    refused = db_project.run("migration", "apply", "--dry-run")
    assert refused.exit_code == 2
    assert db_project.run("migration", "apply").stderr == refused.stderr
    assert refused.stderr == (f"error: migration {name} is not pinned (no lock.toml); run "
                              f"`spawn migration pin {name}` first, or apply from the working "
                              "tree with --no-pin\n")


def _xxh3(data: bytes) -> str:
    import xxhash

    return xxhash.xxh3_128_hexdigest(data)


def test_dry_run_writes_nothing_and_runs_while_another_session_holds_the_lock(
    db_project: DbProject,
) -> None:
    first = db_project.add_migration("first", "CREATE TABLE first ();\n")
    assert db_project.run("migration", "apply", first).exit_code == 0
    second = db_project.add_migration("second", "CREATE TABLE second ();\n")
    before = history(db_project.database)
    holder = subprocess.Popen(
        [*db_project.database.psql_argv(), "-c",
         f"SELECT pg_advisory_lock({LOCK_KEY}), pg_sleep(60)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        db_project.database.wait_until("SELECT EXISTS (SELECT FROM pg_locks WHERE "
                                       "locktype = 'advisory' AND granted)")
        started = time.monotonic()
        dry = db_project.run("migration", "apply", "--dry-run", "--lock-timeout", "0")
        took = time.monotonic() - started
        locks = db_project.database.query(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
    finally:
        holder.kill()
        holder.wait()

    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout.startswith(f"{second}  pin ")
    assert "waiting for the migration lock" not in dry.stderr
    assert took < 30
    assert locks == "1"
    assert history(db_project.database) == before
    assert db_project.database.query("SELECT to_regclass('second') IS NULL") == "t"


def test_dry_run_refuses_like_apply_when_a_failed_migration_blocks(
    db_project: DbProject,
) -> None:
    ok = db_project.add_migration("ok", "SELECT 1;\n")
    bad = db_project.add_migration("bad", "SELECT * FROM missing_table;\n")
    after = db_project.add_migration("after", "SELECT 2;\n")
    assert db_project.run("migration", "apply", ok).exit_code == 0
    assert db_project.run("migration", "apply", bad).exit_code == 1
    before = history(db_project.database)

    dry = db_project.run("migration", "apply", "--dry-run")
    real_error = db_project.run("migration", "apply", "--yes").stderr.splitlines()[-1]

    assert dry.exit_code == 1
    assert dry.stdout == ""
    assert dry.stderr.splitlines() == [
        "Dry run: would apply 0 migrations (1 already applied); nothing was written. Apply "
        f"would then stop before {bad} (failed).",
        real_error,
    ]
    assert real_error.startswith(f"error: migration {bad} failed in an earlier run")
    assert history(db_project.database) == before
    json_dry = db_project.run("migration", "apply", "--dry-run", "--format", "json")
    assert json_dry.exit_code == 1
    assert json.loads(json_dry.stdout)["blocked"] == {"name": bad, "state": "failed"}
    retry = db_project.run("migration", "apply", "--dry-run", "--retry")
    assert retry.exit_code == 0
    assert [line.split()[0] for line in retry.stdout.splitlines()] == [bad, after]


def test_sql_needs_dry_run(db_project: DbProject) -> None:
    result = db_project.run("migration", "apply", "--sql")

    assert result.exit_code == 2
    assert result.stderr == ("error: --sql only goes with --dry-run; add --dry-run to see the "
                             "plan with its SQL, or drop it to apply\n")


