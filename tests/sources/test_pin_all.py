"""``spawn migration pin --all`` / ``--changed`` pin a ``[[sources]]`` folder's migrations
into that source's own ``pinned/``, from its own ``components/`` (issue 18); the real
``spawn``, the real PostgreSQL for ``--changed``'s applied check."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import DbProject
from tests.migrate.test_sources import audit_dir, migration, sourced, write

__all__ = ["sourced"]

CUSTOMERS = "20250101000000-create-customers"
LOG = "20250102000000-create-log"


def lock(folder: Path) -> str:
    return (folder / "lock.toml").read_text().split('"')[1]


def objects(spawn_dir: Path) -> set[str]:
    """The hashes of the objects in ``spawn_dir``'s pin store (pinned/ab/cdef...)."""
    return {p.parent.name + p.name for p in (spawn_dir / "pinned").glob("*/*")}


def test_pin_all_pins_a_sources_migrations_into_its_own_pinned_folder(
        sourced: DbProject) -> None:
    audit = audit_dir(sourced)
    write(audit, "components/audit/stamp.sql", "SELECT 'audit stamp';\n")
    migration(sourced.spawn_dir, CUSTOMERS, "CREATE TABLE customers (id int);\n")
    migration(audit, LOG, "CREATE TABLE audit_log (id int);\n"
              "{% include 'audit/stamp.sql' %}\n")

    done = sourced.run("migration", "pin", "--all")
    again = sourced.run("migration", "pin", "--all")
    dry = sourced.run("migration", "apply", "--dry-run")

    assert done.exit_code == 0, done.stderr
    main_root = lock(sourced.spawn_dir / "migrations" / CUSTOMERS)
    audit_root = lock(audit / "migrations" / LOG)
    assert done.stdout == (f"Pinned {CUSTOMERS} to {main_root}\n"
                           f"Pinned audit:{LOG} to {audit_root}\n")
    assert done.stderr == (f"Pinned 1 migration to {main_root} (1 first pinned).\n"
                           f"Source audit: Pinned 1 migration to {audit_root} "
                           "(1 first pinned).\n")
    assert audit_root in objects(audit)
    assert audit_root not in objects(sourced.spawn_dir)
    assert main_root in objects(sourced.spawn_dir)
    assert (again.exit_code, again.stdout) == (0, "")
    assert again.stderr == "Nothing to pin: no migration is unpinned.\n"
    assert dry.exit_code == 0, dry.stderr
    assert dry.stdout.splitlines()[1].startswith(f"audit:{LOG}  pin {audit_root}  checksum ")


def test_pin_changed_repins_a_pending_source_migration_and_skips_an_applied_one(
        sourced: DbProject) -> None:
    audit = audit_dir(sourced)
    write(audit, "components/audit/stamp.sql", "SELECT 1;\n")
    migration(audit, LOG, "{% include 'audit/stamp.sql' %}\n")
    later = migration(audit, "20250103000000-log-more", "{% include 'audit/stamp.sql' %}\n")
    assert sourced.run("migration", "pin", "--all").exit_code == 0
    assert sourced.run("migration", "apply", f"audit:{LOG}", "--yes").exit_code == 0
    write(audit, "components/audit/stamp.sql", "SELECT 2;\n")

    done = sourced.run("migration", "pin", "--changed")

    assert done.exit_code == 0, done.stderr
    root = lock(audit / "migrations" / later)
    assert done.stdout == f"Pinned audit:{later} to {root}\n"
    assert (f"Skipped audit:{LOG}: it is applied, so it keeps its pin (put the change in a "
            "new migration)\n") in done.stderr
    assert done.stderr.endswith(f"Source audit: Pinned 1 migration to {root} (1 re-pinned, "
                                "1 applied skipped).\n")
