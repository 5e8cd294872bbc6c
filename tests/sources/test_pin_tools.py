"""``spawn pin validate`` checks every ``[[sources]]`` folder's lock.toml files and pin
store too, naming a source's migration ``audit:<m>`` (issue 18); the real ``spawn``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import DbProject
from tests.migrate.test_sources import audit_dir, migration, sourced, write

__all__ = ["sourced"]

CUSTOMERS = "20250101000000-create-customers"
LOG = "20250102000000-create-log"


def pinned_project(sourced: DbProject) -> DbProject:
    write(audit_dir(sourced), "components/audit/stamp.sql", "SELECT 'audit stamp';\n")
    migration(sourced.spawn_dir, CUSTOMERS, "CREATE TABLE customers (id int);\n")
    migration(audit_dir(sourced), LOG, "CREATE TABLE audit_log (id int);\n"
              "{% include 'audit/stamp.sql' %}\n")
    assert sourced.run("migration", "pin", "--all").exit_code == 0
    return sourced


def store_objects(spawn_dir: Path) -> int:
    return len(list((spawn_dir / "pinned").glob("*/*")))


def validate(project: DbProject) -> tuple[int, dict[str, Any]]:
    result = project.run("pin", "validate", "--format", "json")
    return result.exit_code, json.loads(result.stdout)


def test_validate_checks_every_sources_pins(sourced: DbProject) -> None:
    project = pinned_project(sourced)

    exit_code, found = validate(project)

    assert (exit_code, found["ok"]) == (0, True)
    assert found["checked"] == (store_objects(project.spawn_dir)
                                + store_objects(audit_dir(project)))
    text = project.run("pin", "validate")
    assert text.stdout == f"Pin store OK: {found['checked']} reachable objects checked.\n"


def test_a_corrupt_object_in_a_sources_store_is_named_by_its_migration(
        sourced: DbProject) -> None:
    project = pinned_project(sourced)
    blob = next(p for p in (audit_dir(project) / "pinned").glob("*/*")
                if p.read_bytes() == b"SELECT 'audit stamp';\n")
    blob.write_bytes(b"SELECT 'tampered';\n")

    exit_code, found = validate(project)

    assert exit_code == 1
    assert [(bad["object"], bad["migrations"]) for bad in found["bad_objects"]] == [
        (blob.parent.name + blob.name, [f"audit:{LOG}"])]


def test_a_broken_lock_of_a_source_migration_is_named(sourced: DbProject) -> None:
    project = pinned_project(sourced)
    (audit_dir(project) / "migrations" / LOG / "lock.toml").write_text("pin = 'nonsense'\n")

    exit_code, found = validate(project)

    assert exit_code == 1
    assert [lock["migration"] for lock in found["broken_locks"]] == [f"audit:{LOG}"]


def test_diff_and_checkout_take_a_sources_migration(sourced: DbProject,
                                                    tmp_path: Path) -> None:
    """`audit:<m>` names a snapshot in the source's own pin store."""
    project = pinned_project(sourced)
    audit = audit_dir(project)
    write(audit, "components/audit/stamp.sql", "SELECT 'audit stamp, edited';\n")

    diff = project.run("pin", "diff", f"audit:{LOG}", "audit:WORKTREE", "--name-only")
    out = tmp_path / "snapshot"
    checkout = project.run("pin", "checkout", "audit:create-log", "--to", str(out))

    assert (diff.exit_code, diff.stdout) == (0, "audit/stamp.sql\n"), diff.stderr
    assert checkout.exit_code == 0, checkout.stderr
    assert (out / "audit" / "stamp.sql").read_text() == "SELECT 'audit stamp';\n"
    assert f"Checked out audit:{LOG}" in checkout.stderr
    missing = project.run("pin", "diff", "nosuch:x", "WORKTREE")
    assert missing.exit_code == 2
    assert "'nosuch' is not a migration source" in missing.stderr
