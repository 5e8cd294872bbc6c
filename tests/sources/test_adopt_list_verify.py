"""``migration adopt``, ``list`` and ``verify`` see every ``[[sources]]`` folder (issue 18):
a path source beside the project, the real ``spawn`` entry point, the real PostgreSQL."""

from __future__ import annotations

import json

from tests.conftest import DbProject
from tests.migrate.history import history
from tests.migrate.test_sources import audit_dir, migration, sourced, write

__all__ = ["sourced"]

CUSTOMERS = "20250101000000-create-customers"
LOG = "20250101000000-create-log"
ORDERS = "20250103000000-create-orders"


def two_and_one(project: DbProject) -> None:
    """Two migrations in the main folder, one in the audit source between them."""
    migration(project.spawn_dir, CUSTOMERS, "CREATE TABLE customers (id int);\n")
    migration(project.spawn_dir, ORDERS, "CREATE TABLE orders (id int);\n")
    migration(audit_dir(project), LOG, "CREATE TABLE audit_log (id int);\n")


# -- adopt ---------------------------------------------------------------------------------


def test_adopt_without_a_name_adopts_every_sources_pending_migrations_in_its_namespace(
        sourced: DbProject) -> None:
    two_and_one(sourced)

    done = sourced.run("migration", "adopt", "--yes")
    again = sourced.run("migration", "adopt", "--yes")

    assert done.exit_code == 0, done.stderr
    assert done.stdout == (f"Adopted {CUSTOMERS}\nAdopted audit:{LOG}\nAdopted {ORDERS}\n")
    assert history(sourced.database) == [(CUSTOMERS, "ADOPT", "SUCCESS"),
                                         (ORDERS, "ADOPT", "SUCCESS")]
    assert history(sourced.database, "audit") == [(LOG, "ADOPT", "SUCCESS")]
    assert sourced.database.query("SELECT count(*) FROM pg_tables WHERE tablename = "
                                  "'audit_log'") == "0"
    assert (again.exit_code, again.stdout) == (0, "")
    assert again.stderr.strip() == "Nothing to adopt: every migration is already applied."


def test_adopt_of_a_qualified_name_records_it_in_the_sources_namespace_only(
        sourced: DbProject) -> None:
    two_and_one(sourced)
    assert sourced.run("migration", "pin", "audit:create-log").exit_code == 0
    pin = (audit_dir(sourced) / "migrations" / LOG / "lock.toml").read_text().split('"')[1]

    done = sourced.run("migration", "adopt", "audit:create-log", "--yes")
    status = json.loads(sourced.run("migration", "status", "--format", "json").stdout)

    assert done.exit_code == 0, done.stderr
    assert done.stdout == f"Adopted audit:{LOG}\n"
    assert history(sourced.database) == []
    assert history(sourced.database, "audit") == [(LOG, "ADOPT", "SUCCESS")]
    assert sourced.database.query(
        "SELECT h.pin_hash FROM _spawn.migration_history h JOIN _spawn.migration m ON "
        "m.migration_id = h.migration_id_migration WHERE m.namespace = 'audit'") == pin
    assert [(m["name"], m["status"]) for m in status["sources"][0]["migrations"]] == [
        (LOG, "adopted")]
    assert [m["status"] for m in status["migrations"]] == ["pending", "pending"]


# -- list ----------------------------------------------------------------------------------


def test_list_shows_every_sources_migrations_qualified_in_apply_order(
        sourced: DbProject) -> None:
    two_and_one(sourced)
    assert sourced.run("migration", "pin", "audit:create-log").exit_code == 0
    pin = (audit_dir(sourced) / "migrations" / LOG / "lock.toml").read_text().split('"')[1]

    text = sourced.run("migration", "list")
    as_json = sourced.run("migration", "list", "--format", "json")

    assert (text.exit_code, as_json.exit_code) == (0, 0)
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["Migration", "Pinned", "Last", "modified"]
    assert [line.split()[:2] for line in lines[2:]] == [
        [CUSTOMERS, "no"], [f"audit:{LOG}", pin[:12]], [ORDERS, "no"]]
    assert [(m["name"], m["pin"]) for m in json.loads(as_json.stdout)["migrations"]] == [
        (CUSTOMERS, None), (f"audit:{LOG}", pin), (ORDERS, None)]


# -- verify --------------------------------------------------------------------------------


def test_verify_runs_the_verify_scripts_of_applied_source_migrations_too(
        sourced: DbProject) -> None:
    two_and_one(sourced)
    write(sourced.spawn_dir, f"migrations/{CUSTOMERS}/verify.sql",
          "DO $$ BEGIN PERFORM 1/count(*) FROM pg_tables WHERE tablename = 'customers'; "
          "END $$;\n")
    write(audit_dir(sourced), f"migrations/{LOG}/verify.sql",
          "DO $$ BEGIN PERFORM 1/count(*) FROM pg_tables WHERE tablename = 'audit_log'; "
          "END $$;\n")
    assert sourced.run("migration", "apply", "--yes", "--no-pin").exit_code == 0

    every = sourced.run("migration", "verify", "--no-pin")
    sourced.database.query("DROP TABLE audit_log")
    one = sourced.run("migration", "verify", "audit:create-log", "--no-pin")
    as_json = json.loads(sourced.run("migration", "verify", "--no-pin", "--format",
                                     "json").stdout)

    assert every.exit_code == 0, every.stderr
    assert every.stdout == f"ok      {CUSTOMERS}\nok      audit:{LOG}\n"
    assert every.stderr == "Verified 2 migrations: 2 passed, 0 failed.\n"
    assert one.exit_code == 1
    assert one.stdout.splitlines()[0] == f"FAILED  audit:{LOG}"
    assert "division by zero" in one.stdout
    assert [(m["name"], m["ok"]) for m in as_json["migrations"]] == [
        (CUSTOMERS, True), (f"audit:{LOG}", False)]
    assert as_json["applied"] == 3


def test_verify_of_a_source_migration_without_a_verify_script_names_its_file(
        sourced: DbProject) -> None:
    two_and_one(sourced)
    assert sourced.run("migration", "apply", "--yes", "--no-pin").exit_code == 0

    done = sourced.run("migration", "verify", "audit:create-log", "--no-pin")

    assert done.exit_code == 2
    assert done.stderr == (
        f"error: migration audit:{LOG} has no verify script; create "
        f"{audit_dir(sourced) / 'migrations' / LOG / 'verify.sql'} beside its up.sql to "
        "check what it did\n")
