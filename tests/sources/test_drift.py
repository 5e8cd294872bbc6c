"""``spawn migration drift`` with ``[[sources]]`` (issue 18): the scratch database is built
from exactly the migrations the target's history says are applied, in every namespace,
each from its source's pin, in the order they were applied; then compared as always.
The real ``spawn``, the real PostgreSQL."""

from __future__ import annotations

import json

from tests.conftest import DbProject
from tests.migrate.test_sources import audit_dir, migration, sourced

__all__ = ["sourced"]

CUSTOMERS = "20250101000000-create-customers"
LOG = "20250102000000-create-log"
PENDING = "20250103000000-create-log-archive"


def applied_with_a_source(project: DbProject) -> None:
    """The main folder's and the audit source's migration applied from their pins; one
    more audit migration pinned but not applied."""
    audit = audit_dir(project)
    migration(project.spawn_dir, CUSTOMERS, "CREATE TABLE customers (id int);\n")
    migration(audit, LOG, "CREATE TABLE audit_log (id int, what text);\n")
    migration(audit, PENDING, "CREATE TABLE audit_log_archive (id int);\n")
    assert project.run("migration", "pin", "--all").exit_code == 0
    done = project.run("migration", "apply", f"audit:{LOG}", "--yes", "--with-requires")
    assert done.exit_code == 0, done.stderr
    done = project.run("migration", "apply", CUSTOMERS, "--yes")
    assert done.exit_code == 0, done.stderr


def test_drift_builds_every_sources_applied_migrations_and_finds_no_drift(
        sourced: DbProject) -> None:
    applied_with_a_source(sourced)

    done = sourced.run("migration", "drift")
    as_json = json.loads(sourced.run("migration", "drift", "--format", "json").stdout)

    assert done.exit_code == 0, done.stderr
    assert (done.stdout, done.stderr) == (
        "", f"No drift: database {sourced.database.name} matches the 2 applied migrations.\n")
    assert as_json["migrations"] == [f"audit:{LOG}", CUSTOMERS]


def test_drift_finds_a_hand_made_change_to_a_source_migrations_table(
        sourced: DbProject) -> None:
    applied_with_a_source(sourced)
    sourced.database.query("ALTER TABLE audit_log DROP COLUMN what")

    done = sourced.run("migration", "drift")

    assert done.exit_code == 1
    assert done.stdout == "- column public.audit_log.what\n"
    assert done.stderr == (f"Drift: database {sourced.database.name} differs from the 2 "
                           "applied migrations in 1 object.\n")
