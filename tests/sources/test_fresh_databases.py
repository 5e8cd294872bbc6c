"""Fresh test databases (``[tests] database = "fresh"``) with ``[[sources]]`` (issue 18):
the template applies every source's migrations in apply's order, each from its source's
pin (the template's name hashes them, qualified), ``migrate_to = "audit:<m>"`` and
``apply_migration("audit:<m>")`` name a source's migration. The real ``spawn``, the real
PostgreSQL."""

from __future__ import annotations

from tests.conftest import DbProject
from tests.migrate.test_sources import audit_dir, migration, sourced
from tests.sqltest.test_fresh import _drop_spawn_databases

__all__ = ["_drop_spawn_databases", "sourced"]

CUSTOMERS = "20250101000000-create-customers"
LOG = "20250102000000-create-log"
ORDERS = "20250103000000-create-orders"


def fresh_with_a_source(project: DbProject) -> None:
    """Two pinned main-folder migrations around one pinned audit migration; each names
    the test's database in a comment, so its templates are its own."""
    with project.config_path.open("a", encoding="utf-8") as config:
        config.write('\n[tests]\ndatabase = "fresh"\n')
    own = f"-- for {project.database.name}\n"
    migration(project.spawn_dir, CUSTOMERS, own + "CREATE TABLE customers (id int);\n")
    migration(audit_dir(project), LOG, own + "CREATE TABLE audit_log (what text);\n"
              "INSERT INTO audit_log VALUES ('created');\n")
    migration(project.spawn_dir, ORDERS, own + "CREATE TABLE orders (id int);\n")
    for name in (CUSTOMERS, f"audit:{LOG}", ORDERS):
        assert project.run("migration", "pin", name).exit_code == 0


TABLES = ("SELECT string_agg(tablename, ',' ORDER BY tablename) AS tables FROM pg_tables "
          "WHERE schemaname = 'public';\n")


def cells(stdout: str) -> list[str]:
    """psql's aligned output without its padding and its header's rule."""
    return [line.strip() for line in stdout.splitlines() if not line.startswith("---")]


def test_a_fresh_test_database_has_every_sources_migrations(sourced: DbProject) -> None:
    fresh_with_a_source(sourced)
    sourced.add_test("audit", TABLES + "SELECT what FROM audit_log;\n")

    done = sourced.run("test", "run", "audit")

    assert done.exit_code == 0, done.stderr
    assert cells(done.stdout) == ["tables", "audit_log,customers,orders", "(1 row)", "",
                                  "what", "created", "(1 row)", ""]
    assert sourced.database.query("SELECT to_regclass('audit_log') IS NULL") == "t"


def test_migrate_to_and_apply_migration_name_a_source_migration(sourced: DbProject) -> None:
    fresh_with_a_source(sourced)
    up_to_log = sourced.add_test("up-to-log", TABLES)
    (up_to_log.parent / "test.toml").write_text('migrate_to = "audit:create-log"\n')
    inline = sourced.add_test("inline", f'{{{{ apply_migration("audit:{LOG}") }}}}\n' + TABLES)
    (inline.parent / "test.toml").write_text(f'migrate_to = "{CUSTOMERS}"\n')

    up_to = sourced.run("test", "run", "up-to-log")
    inlined = sourced.run("test", "run", "inline")

    assert up_to.exit_code == 0, up_to.stderr
    assert cells(up_to.stdout) == ["tables", "audit_log,customers", "(1 row)", ""]
    assert inlined.exit_code == 0, inlined.stderr
    assert cells(inlined.stdout)[-4:] == ["tables", "audit_log,customers", "(1 row)", ""]
