"""A migration source shipped as a Python package (``[[sources]] package = ...``): the
real package in ``tests/sources/audit_package`` built and installed with pip into a folder
the ``spawn`` processes get on ``PYTHONPATH``, found through its ``spawn.sources`` entry
point, applied to the real PostgreSQL from its own pins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import DbProject
from tests.migrate.history import history
from tests.plugins.test_plugins import pip_install, with_site

PACKAGE_SOURCE = '\n[[sources]]\nname = "audit"\npackage = "spawn_audit"\n'
MIGRATION = "20250101000000-create-audit-log"


@pytest.fixture(scope="session")
def audit_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    site = tmp_path_factory.mktemp("audit-site")
    pip_install("../sources/audit_package", site)
    return site


@pytest.fixture
def packaged(db_project: DbProject) -> DbProject:
    with db_project.config_path.open("a", encoding="utf-8") as file:
        file.write(PACKAGE_SOURCE)
    return db_project


def test_a_package_source_applies_from_its_own_pins_in_its_namespace(
        packaged: DbProject, audit_site: Path) -> None:
    env = with_site(audit_site)
    (packaged.spawn_dir / "migrations" / "20250102000000-log-something").mkdir(parents=True)
    (packaged.spawn_dir / "migrations" / "20250102000000-log-something" / "up.sql").write_text(
        "INSERT INTO audit.log (what) VALUES (audit.stamp());\n")
    (packaged.spawn_dir / "migrations" / "20250102000000-log-something" /
     "migration.toml").write_text(f'requires = ["audit:{MIGRATION}"]\n')

    assert packaged.run("migration", "pin", "log-something", env=env).exit_code == 0
    done = packaged.run("migration", "apply", "--yes", env=env)
    status = packaged.run("migration", "status", env=env)
    as_json = json.loads(packaged.run("migration", "status", "--format", "json", env=env).stdout)

    assert done.exit_code == 0, done.stderr
    assert packaged.database.query("SELECT what FROM audit.log") == "packaged"
    assert history(packaged.database, "audit") == [
        (MIGRATION, "APPLY", "ATTEMPTED"), (MIGRATION, "APPLY", "SUCCESS")]
    assert packaged.database.query(
        "SELECT h.pin_hash FROM _spawn.migration_history h JOIN _spawn.migration m ON "
        "m.migration_id = h.migration_id_migration WHERE m.namespace = 'audit' AND "
        "h.status_id_status = 'SUCCESS'") == "70b44d90df04a6ec577e2a1c7320f144"
    assert "\n\nSource audit (package spawn_audit):\n" in status.stdout
    assert [(m["name"], m["pinned"], m["status"]) for m in as_json["sources"][0]["migrations"]
            ] == [(MIGRATION, True, "applied")]
    assert as_json["sources"][0]["folder"] == "package spawn_audit"


def test_a_package_migration_is_reverted_by_its_qualified_name(
        packaged: DbProject, audit_site: Path) -> None:
    env = with_site(audit_site)
    assert packaged.run("migration", "apply", "--yes", env=env).exit_code == 0

    done = packaged.run("migration", "revert", f"audit:{MIGRATION}", "--yes", env=env)

    assert done.exit_code == 0, done.stderr
    assert packaged.database.query(
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'audit'") == "0"
    assert history(packaged.database, "audit")[-1] == (MIGRATION, "REVERT", "SUCCESS")


def test_a_package_that_is_not_installed_is_a_configuration_error(
        packaged: DbProject, audit_site: Path) -> None:
    missing = packaged.run("migration", "status")
    off = packaged.run("--no-plugins", "migration", "status", env=with_site(audit_site))

    assert missing.exit_code == 2
    assert (f"error: {packaged.config_path}: [[sources]] 'audit': no installed package "
            "declares 'spawn_audit' in entry point group spawn.sources (installed: none); "
            "`pip install` the package, or fix `package`") == missing.stderr.strip()
    assert off.exit_code == 2
    assert "(plugins are turned off: unset SPAWN_NO_PLUGINS and drop --no-plugins)" \
        in off.stderr
