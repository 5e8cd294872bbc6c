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
