"""Schema drift (issue 16): ``spawn migration drift`` and ``apply --check-drift`` against the
test suite's real PostgreSQL: the applied migrations rebuilt on a scratch database and
compared with the target's catalogs."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spawn_db.db.catalog import CatalogObject
from spawn_db.migrate.schema_drift import Difference, compare
from tests.conftest import SPAWN_DATABASES, DbProject

SCHEMA = (
    "CREATE TABLE customers (id int PRIMARY KEY, name text NOT NULL DEFAULT '');\n"
    "CREATE INDEX customers_name ON customers (name);\n"
    "CREATE FUNCTION greet(who text) RETURNS text LANGUAGE sql AS $$ SELECT 'hi ' || who $$;\n"
)


def scratch_databases(db_project: DbProject) -> str:
    return db_project.database.query(
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'spawn\\_drift\\_%'")


def kept_scratch(db_project: DbProject) -> list[str]:
    """``name oid comment`` of each scratch database on the server."""
    rows = db_project.database.query(
        "SELECT datname || ' ' || oid || ' ' || coalesce(shobj_description(oid, "
        "'pg_database'), '-') FROM pg_database WHERE datname LIKE 'spawn\\_drift\\_%' "
        "ORDER BY 1")
    return rows.splitlines()


def kept_comment(db_project: DbProject) -> str:
    return (f"spawn migration drift: the schema of the migrations applied to "
            f"{db_project.database.name}; kept to be read by the next run, safe to drop")


@pytest.fixture(autouse=True)
def _drop_scratch_databases(pg_server: Any) -> Iterator[None]:
    """The scratch databases drift keeps live on the worker's server, which its tests share
    one after another: drop them, and the test templates `spawn test clean` would list too,
    before each test (tests in other files keep theirs, and these count them) and after."""
    pg_server.drop_databases_like(*SPAWN_DATABASES)
    yield
    pg_server.drop_databases_like(*SPAWN_DATABASES)


def applied(db_project: DbProject) -> str:
    name = db_project.add_migration("schema", SCHEMA)
    result = db_project.run("migration", "apply", "--yes")
    assert result.exit_code == 0, result.stderr
    return name


def test_a_database_that_matches_its_migrations_has_no_drift(db_project: DbProject) -> None:
    applied(db_project)

    result = db_project.run("migration", "drift")

    assert (result.exit_code, result.stdout) == (0, ""), result.stderr
    assert result.stderr == (f"No drift: database {db_project.database.name} matches the 1 "
                             "applied migration.\n")
    [kept] = kept_scratch(db_project)
    name, _oid, comment = kept.split(" ", 2)
    assert len(name) == len("spawn_drift_") + 32 and comment == kept_comment(db_project)


def test_a_column_added_by_hand_is_drift_and_dropping_it_again_is_clean(
    db_project: DbProject,
) -> None:
    applied(db_project)
    db_project.database.query("ALTER TABLE customers ADD COLUMN email text")

    result = db_project.run("migration", "drift")

    assert result.exit_code == 1, result.stderr
    assert result.stdout == "+ column public.customers.email\n"
    assert result.stderr == (f"Drift: database {db_project.database.name} differs from the 1 "
                             "applied migration in 1 object.\n")

    db_project.database.query("ALTER TABLE customers DROP COLUMN email")
    again = db_project.run("migration", "drift")
    assert (again.exit_code, again.stdout) == (0, ""), again.stderr
    assert scratch_databases(db_project) == "1"


def test_the_helper_schema_a_frozen_test_leaves_in_the_target_is_not_drift(
    db_project: DbProject,
) -> None:
    """A test with ``freeze_time`` run on the target (``database = "target"``) creates
    spawn's helper schema ``spawn_frozen`` there; it is spawn's own, like the tracking
    schema, so drift leaves it out."""
    applied(db_project)
    folder = db_project.add_test("frozen", "SELECT now();\n").parent
    (folder / "test.toml").write_text('freeze_time = "2026-01-01T00:00:00Z"\n')
    ran = db_project.run("test", "run", "frozen")
    assert ran.exit_code == 0, ran.stderr
    assert db_project.database.query(
        "SELECT count(*) FROM pg_namespace WHERE nspname = 'spawn_frozen'") == "1"

    result = db_project.run("migration", "drift")

    assert (result.exit_code, result.stdout) == (0, ""), result.stderr


def test_db_diff_is_the_same_command_as_migration_drift(db_project: DbProject) -> None:
    applied(db_project)
    db_project.database.query("ALTER TABLE customers ADD COLUMN email text")

    diff = db_project.run("db", "diff")
    drift = db_project.run("migration", "drift")

    assert (diff.exit_code, diff.stdout, diff.stderr) == (
        drift.exit_code, drift.stdout, drift.stderr)
    assert (diff.exit_code, diff.stdout) == (1, "+ column public.customers.email\n")


def test_changed_function_dropped_index_and_changed_column_are_reported(
    db_project: DbProject,
) -> None:
    applied(db_project)
    db_project.database.query(
        "CREATE OR REPLACE FUNCTION greet(who text) RETURNS text LANGUAGE sql "
        "AS $$ SELECT 'hello ' || who $$; DROP INDEX customers_name; "
        "ALTER TABLE customers ALTER COLUMN name DROP NOT NULL, ALTER COLUMN name TYPE varchar(80);"
        "CREATE TABLE hotfix (id int);")

    result = db_project.run("migration", "drift")

    assert result.exit_code == 1, result.stderr
    assert result.stdout == (
        "~ column public.customers.name: nullable, type\n"
        "- index public.customers_name\n"
        "~ function public.greet(text): definition\n"
        "+ table public.hotfix\n"
    )


def test_json_output_is_exact(db_project: DbProject) -> None:
    name = applied(db_project)
    db_project.database.query(
        "CREATE OR REPLACE FUNCTION greet(who text) RETURNS text LANGUAGE sql "
        "AS $$ SELECT 'hello ' || who $$; DROP INDEX customers_name;")

    result = db_project.run("migration", "drift", "--format", "json")

    assert result.exit_code == 1, result.stderr
    assert json.loads(result.stdout) == {
        "database": db_project.database.name,
        "migrations": [name],
        "drift": True,
        "differences": [
            {"change": "-", "kind": "index", "name": "public.customers_name", "attributes": {}},
            {"change": "~", "kind": "function", "name": "public.greet(text)", "attributes": {
                "definition": {
                    "database": "CREATE OR REPLACE FUNCTION public.greet(who text)\n"
                                " RETURNS text\n LANGUAGE sql\n"
                                "AS $function$ SELECT 'hello ' || who $function$\n",
                    "migrations": "CREATE OR REPLACE FUNCTION public.greet(who text)\n"
                                  " RETURNS text\n LANGUAGE sql\n"
                                  "AS $function$ SELECT 'hi ' || who $function$\n",
                }}},
        ],
    }
    assert scratch_databases(db_project) == "1"


def test_the_tracking_schema_and_unapplied_migrations_are_not_drift(
    db_project: DbProject,
) -> None:
    applied(db_project)
    db_project.add_migration("later", "CREATE TABLE later (id int);\n")

    result = db_project.run("migration", "drift")

    assert (result.exit_code, result.stdout) == (0, ""), result.stderr


def test_apply_check_drift_refuses_over_drift_and_applies_without(
    db_project: DbProject,
) -> None:
    applied(db_project)
    db_project.add_migration("later", "CREATE TABLE later (id int);\n")
    db_project.database.query("CREATE INDEX by_hand ON customers (id, name)")

    refused = db_project.run("migration", "apply", "--yes", "--check-drift")

    assert refused.exit_code == 1
    assert refused.stdout == "+ index public.by_hand\n"
    assert refused.stderr == (
        f"error: database {db_project.database.name} has drifted from its applied migrations "
        "(1 difference above), so nothing was applied; bring the schema back in line (or "
        "write a migration that does), then apply again\n")
    assert db_project.database.query("SELECT to_regclass('later') IS NULL") == "t"

    db_project.database.query("DROP INDEX by_hand")
    result = db_project.run("migration", "apply", "--yes", "--check-drift")
    assert result.exit_code == 0, result.stderr
    assert db_project.database.query("SELECT to_regclass('later') IS NOT NULL") == "t"


def test_a_migration_whose_files_changed_since_it_was_applied_is_an_error(
    db_project: DbProject,
) -> None:
    name = applied(db_project)
    up = db_project.spawn_dir / "migrations" / name / "up.sql"
    up.write_text(SCHEMA + "CREATE TABLE extra (id int);\n", encoding="utf-8")

    result = db_project.run("migration", "drift", "--no-pin")

    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith(f"error: migration {name} now renders (from the working "
                                    "tree) to checksum ")
    assert "the files no longer say what was applied" in result.stderr
    assert scratch_databases(db_project) == "0"


def test_a_migration_that_fails_on_the_scratch_database_is_an_error_and_it_is_dropped(
    db_project: DbProject,
) -> None:
    # Applied where a table it needs already existed: rebuilt alone, it fails.
    db_project.database.query("CREATE TABLE outside (id int)")
    name = db_project.add_migration("needs", "ALTER TABLE outside ADD COLUMN c int;\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0

    result = db_project.run("migration", "drift")

    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: migration {name} failed on the scratch database")
    assert 'relation "outside" does not exist' in result.stderr
    assert "Traceback" not in result.stderr
    assert scratch_databases(db_project) == "0"


def test_the_scratch_database_is_kept_and_read_again_until_the_migrations_change(
    db_project: DbProject,
) -> None:
    applied(db_project)
    assert db_project.run("migration", "drift").exit_code == 0
    [first] = kept_scratch(db_project)
    # Read again, not rebuilt (same oid), and the target is still read afresh.
    db_project.database.query("ALTER TABLE customers ADD COLUMN email text")
    result = db_project.run("migration", "drift")
    assert (result.exit_code, result.stdout) == (1, "+ column public.customers.email\n")
    assert kept_scratch(db_project) == [first]
    db_project.database.query("ALTER TABLE customers DROP COLUMN email")
    # Another applied migration: a new scratch database, and the earlier one is dropped.
    db_project.add_migration("more", "CREATE TABLE more (id int);\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    again = db_project.run("migration", "drift")
    assert (again.exit_code, again.stdout) == (0, ""), again.stderr
    [second] = kept_scratch(db_project)
    assert second.split()[0] != first.split()[0]
    assert second.split(" ", 2)[2] == kept_comment(db_project)


def test_a_scratch_build_cut_short_is_built_again_not_read(db_project: DbProject) -> None:
    """A database with the scratch name but without the mark of a finished build (a run
    killed half way) is dropped and built again."""
    applied(db_project)
    assert db_project.run("migration", "drift").exit_code == 0
    [kept] = kept_scratch(db_project)
    name, oid, _comment = kept.split(" ", 2)
    db_project.database.query(f"COMMENT ON DATABASE {name} IS NULL")
    db_project.database.query("DROP TABLE customers", dbname=name)
    result = db_project.run("migration", "drift")
    assert (result.exit_code, result.stdout) == (0, ""), result.stderr
    [rebuilt] = kept_scratch(db_project)
    assert rebuilt.split()[0] == name and rebuilt.split()[1] != oid


def test_two_targets_on_one_server_keep_their_own_scratch_database(
    db_project: DbProject,
) -> None:
    applied(db_project)
    other = f"{db_project.database.name}_b"[:63]
    db_project.database.query(f"CREATE DATABASE {other}")
    try:
        config = db_project.config_path.read_text()
        assert db_project.run("migration", "drift").exit_code == 0
        db_project.config_path.write_text(config.replace(
            f'"-d", "{db_project.database.name}"', f'"-d", "{other}"'))
        assert db_project.run("migration", "apply", "--yes").exit_code == 0
        assert db_project.run("migration", "drift").exit_code == 0
        assert len(kept_scratch(db_project)) == 2
    finally:
        db_project.database.query(f"DROP DATABASE {other} WITH (FORCE)")


def test_spawn_test_clean_drops_the_kept_scratch_database(db_project: DbProject) -> None:
    # The server is this worker's, shared by its tests one after another: the templates and
    # test databases earlier tests kept go first, so the output below is this test's.
    assert db_project.run("test", "clean").exit_code == 0
    applied(db_project)
    assert db_project.run("migration", "drift").exit_code == 0
    [kept] = kept_scratch(db_project)
    result = db_project.run("test", "clean")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == f"Dropped drift scratch database {kept.split()[0]}\n"
    assert scratch_databases(db_project) == "0"
    # The next run builds it again.
    assert db_project.run("migration", "drift").exit_code == 0
    assert scratch_databases(db_project) == "1"


# -- compare, over generated schemas ---------------------------------------------------------

ATTRS = st.dictionaries(st.sampled_from(["type", "default", "definition"]),
                        st.sampled_from(["a", "b", "c"]), max_size=2)
TABLES = st.dictionaries(st.sampled_from(["public.t", "public.u", "s.v"]),
                         st.dictionaries(st.sampled_from(["a", "b"]), ATTRS, max_size=2),
                         max_size=3)


def catalog(tables: dict[str, dict[str, dict[str, str]]]) -> dict[str, CatalogObject]:
    found: dict[str, CatalogObject] = {}
    for table, columns in tables.items():
        found[f"table {table}"] = CatalogObject("table", table, None, {})
        for column, attrs in columns.items():
            item = CatalogObject("column", f"{table}.{column}", f"table {table}", attrs)
            found[item.key] = item
    return found


def apply_differences(built: dict[str, CatalogObject], found: list[Difference],
                      live: dict[str, CatalogObject]) -> dict[str, CatalogObject]:
    """What the differences say the database is, rebuilt from ``built`` (and the live
    children of an added table, which ``compare`` does not list again)."""
    result = dict(built)
    for d in found:
        key = f"{d.kind} {d.name}"
        if d.change == "-":
            result = {k: v for k, v in result.items() if k != key and v.parent != key}
        elif d.change == "+":
            result.update({k: v for k, v in live.items() if k == key or v.parent == key})
        else:
            result[key] = live[key]
    return result


@given(TABLES, TABLES)
@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_compare_reports_exactly_what_turns_one_schema_into_the_other(
    live_tables: dict[str, dict[str, dict[str, str]]],
    built_tables: dict[str, dict[str, dict[str, str]]],
) -> None:
    live, built = catalog(live_tables), catalog(built_tables)

    found = compare(live, built)

    assert apply_differences(built, found, live) == live
    assert (found == []) == (live == built)
    for d in found:
        assert (d.change == "~") == bool(d.attributes)
        assert d.kind != "column" or f"table {d.name.rsplit('.', 1)[0]}" in live.keys() & built


def test_the_migration_that_fails_among_shared_ones_is_named(db_project: DbProject) -> None:
    db_project.add_migration("first", "CREATE TABLE first (id int);\n")
    db_project.database.query("CREATE TABLE outside (id int)")
    middle = db_project.add_migration("middle", "ALTER TABLE outside ADD COLUMN c int;\n")
    db_project.add_migration("last", "CREATE TABLE last (id int);\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0

    result = db_project.run("migration", "drift")

    assert result.exit_code == 2
    assert result.stderr == (
        f"error: migration {middle} failed on the scratch database, so the schema its "
        "migrations build cannot be compared; fix what psql reports:\n"
        'ERROR:  relation "outside" does not exist\n')
    assert scratch_databases(db_project) == "0"


def test_migrations_with_meta_commands_an_open_end_and_session_settings_rebuild(
    db_project: DbProject,
) -> None:
    # One with psql meta-commands (its own psql), one without a final semicolon, one that
    # changes its session's search_path (the next must not inherit it), then plain ones.
    db_project.add_migration("meta", "\\set t 'meta_t'\nCREATE TABLE :\"t\" (id int);\n")
    db_project.add_migration("open-end", "CREATE TABLE open_end (id int)")
    db_project.database.query("CREATE SCHEMA side")
    db_project.add_migration("path", "CREATE SCHEMA IF NOT EXISTS side;\n"
                             "SET search_path = side;\nCREATE TABLE in_side (id int);\n")
    db_project.add_migration("plain", "CREATE TABLE plain (id int);\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0

    result = db_project.run("migration", "drift")

    assert (result.exit_code, result.stdout) == (0, ""), result.stderr
    assert db_project.database.query("SELECT to_regclass('public.plain') IS NOT NULL") == "t"


def test_a_user_without_createdb_gets_exit_2_and_how_to_fix_it(db_project: DbProject) -> None:
    applied(db_project)
    role = f"{db_project.database.name}_plain"
    db_project.database.query(
        f"CREATE ROLE {role} LOGIN; GRANT USAGE ON SCHEMA _spawn TO {role}; "
        f"GRANT SELECT ON ALL TABLES IN SCHEMA _spawn TO {role}")
    config = db_project.config_path.read_text()
    db_project.config_path.write_text(
        config.replace(f'"-U", "{db_project.database.user}"', f'"-U", "{role}"'))
    try:
        result = db_project.run("migration", "drift")
    finally:
        db_project.database.query(f"DROP OWNED BY {role}; DROP ROLE {role}")

    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith("error: cannot create the scratch database spawn_drift_")
    assert ("on the target's server, where the applied migrations are rebuilt to compare "
            "with; the user spawn connects as (the target's command) needs CREATEDB. "
            "create the scratch database failed: ") in result.stderr
    assert "permission denied to create database" in result.stderr


def test_an_unreachable_database_is_exit_2_not_drift(db_project: DbProject) -> None:
    applied(db_project)
    config = db_project.config_path.read_text()
    name = db_project.database.name
    db_project.config_path.write_text(config.replace(f'"{name}"', f'"{name}_missing"'))

    result = db_project.run("migration", "drift")

    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.startswith("error: ")
    assert f'database "{name}_missing" does not exist' in result.stderr
    assert "Traceback" not in result.stderr
