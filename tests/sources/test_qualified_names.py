"""A source's migration is named ``<source>:<folder>`` wherever spawn shows or passes its
name (issue 18): per-migration hooks' ``SPAWN_MIGRATION``, a verify script's failure during
apply, status's out-of-order note. The real ``spawn``, the real PostgreSQL."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import DbProject
from tests.migrate.history import history
from tests.migrate.test_hooks import RECORD_ENV, add_hooks, python_hook, recorded
from tests.migrate.test_sources import audit_dir, migration, sourced, write

__all__ = ["sourced"]

CUSTOMERS = "20250101000000-create-customers"
LOG = "20250102000000-create-log"
ORDERS = "20250103000000-create-orders"


def test_each_migration_hooks_get_a_source_migrations_qualified_name(
        sourced: DbProject, tmp_path: Path) -> None:
    env_file = tmp_path / "env.jsonl"
    add_hooks(sourced, python_hook("before_each_migration", RECORD_ENV, str(env_file)))
    migration(sourced.spawn_dir, CUSTOMERS, "CREATE TABLE customers (id int);\n")
    migration(audit_dir(sourced), LOG, "CREATE TABLE audit_log (id int);\n")

    done = sourced.run("migration", "apply", "--yes", "--no-pin")

    assert done.exit_code == 0, done.stderr
    assert [r["SPAWN_MIGRATION"] for r in recorded(env_file)] == [CUSTOMERS, f"audit:{LOG}"]


def test_a_source_migrations_failing_verify_script_during_apply_is_named_qualified(
        sourced: DbProject) -> None:
    migration(sourced.spawn_dir, CUSTOMERS, "CREATE TABLE customers (id int);\n")
    migration(audit_dir(sourced), LOG, "CREATE TABLE audit_log (id int);\n")
    write(audit_dir(sourced), f"migrations/{LOG}/verify.sql",
          "DO $$ BEGIN RAISE EXCEPTION 'no audit rows'; END $$;\n")

    done = sourced.run("migration", "apply", "--yes", "--no-pin")

    assert done.exit_code == 1
    path = audit_dir(sourced) / "migrations" / LOG / "verify.sql"
    assert (f"error: migration audit:{LOG} ran, but its verify script {path} failed (1 of 2 "
            "applied before it); recorded as FAILURE in _spawn.migration_history") \
        in done.stderr
    assert (f"then run `spawn migration apply audit:{LOG} --retry` (which runs up.sql "
            f"again), or, if the database is right as it is, `spawn migration adopt "
            f"audit:{LOG}`") in done.stderr
    assert history(sourced.database, "audit")[-1] == (LOG, "APPLY", "FAILURE")


def test_status_notes_a_source_migration_applied_out_of_order_by_its_qualified_name(
        sourced: DbProject) -> None:
    migration(sourced.spawn_dir, CUSTOMERS, "CREATE TABLE customers (id int);\n")
    migration(sourced.spawn_dir, ORDERS, "CREATE TABLE orders (id int);\n")
    assert sourced.run("migration", "apply", "--yes", "--no-pin").exit_code == 0
    migration(audit_dir(sourced), LOG, "CREATE TABLE audit_log (id int);\n")

    late = sourced.run("migration", "apply", "--yes", "--no-pin")
    status = sourced.run("migration", "status")

    assert late.exit_code == 0, late.stderr
    assert (f"audit:{LOG} is applied out of order (a newer migration is already applied)"
            in late.stderr)
    assert status.exit_code == 0, status.stderr
    assert (f"note: audit:{LOG} was applied out of order (after a newer migration)\n"
            in status.stderr)


def test_a_modified_source_migration_is_named_qualified_by_status_and_check(
        sourced: DbProject) -> None:
    migration(audit_dir(sourced), LOG, "CREATE TABLE audit_log (id int);\n")
    assert sourced.run("migration", "pin", f"audit:{LOG}").exit_code == 0
    assert sourced.run("migration", "apply", "--yes").exit_code == 0
    applied = sourced.database.query(
        "SELECT encode(h.checksum, 'hex') FROM _spawn.migration_history h JOIN "
        "_spawn.migration m ON m.migration_id = h.migration_id_migration WHERE "
        "m.namespace = 'audit' AND h.status_id_status = 'SUCCESS'")
    write(audit_dir(sourced), f"migrations/{LOG}/up.sql", "CREATE TABLE audit_log (n int);\n")

    status = sourced.run("migration", "status")
    check = sourced.run("check", "--database")

    assert status.exit_code == 1
    problem = status.stderr.splitlines()[-1]
    assert problem.startswith(f"warning: audit:{LOG} now renders (from its pin) to "
                              "checksum ")
    assert problem.endswith(f", but {applied} was applied: its up.sql or components changed "
                            "since; restore them, or put the change in a new migration")
    assert check.exit_code == 1
    assert problem in check.stderr.splitlines()
