"""The ``_spawn`` tracking schema: exactly SPEC §6, the Rust tool's lock key, and databases
the Rust tool wrote."""

from __future__ import annotations

import xxhash

from spawn_db.migrate.tracking import INTERNAL_MIGRATIONS, LOCK_KEY, lock_key
from tests.conftest import DbProject, TestDatabase
from tests.migrate.history import history, latest

SPEC_001 = """\
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE IF NOT EXISTS {s}.migration (
    migration_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name VARCHAR(256),
    namespace TEXT NOT NULL DEFAULT 'default',
    CONSTRAINT name_namespace_uq UNIQUE (name, namespace));
CREATE TABLE IF NOT EXISTS {s}.activity(activity_id TEXT PRIMARY KEY CHECK (UPPER(activity_id) = activity_id));
CREATE TABLE IF NOT EXISTS {s}.status(status_id TEXT PRIMARY KEY CHECK (UPPER(status_id) = status_id));
CREATE TABLE IF NOT EXISTS {s}.migration_history (
    migration_history_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    migration_id_migration BIGINT NOT NULL REFERENCES {s}.migration (migration_id),
    activity_id_activity TEXT NOT NULL REFERENCES {s}.activity (activity_id),
    created_by TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    description TEXT NOT NULL,
    status_note TEXT NOT NULL,
    status_id_status TEXT NOT NULL REFERENCES {s}.status (status_id),
    checksum BYTEA NOT NULL,
    pin_hash TEXT,
    execution_time interval NOT NULL);
INSERT INTO {s}.activity VALUES ('APPLY'), ('ADOPT'), ('REVERT') ON CONFLICT DO NOTHING;
INSERT INTO {s}.status VALUES ('SUCCESS'), ('ATTEMPTED'), ('FAILURE') ON CONFLICT DO NOTHING;
"""  # noqa: E501


def test_lock_key_is_xxhash64_of_the_lock_name_as_signed_bigint() -> None:
    unsigned = xxhash.xxh64_intdigest(b"SPAWN_MIGRATION_LOCK", seed=1234)
    assert unsigned - 2**64 == -6823468568242361246
    assert lock_key() == LOCK_KEY == -6823468568242361246


def test_first_internal_migration_is_the_spec_text() -> None:
    first = INTERNAL_MIGRATIONS[0]
    assert first.name == "001-base-migration-table"
    assert first.sql("_spawn") == SPEC_001.format(s='"_spawn"')


def _catalog(database: TestDatabase, schema: str) -> str:
    """Every column and constraint of ``schema``, with the schema name taken out."""
    return database.query(
        "SELECT string_agg(line, E'\\n' ORDER BY line) FROM ("
        "SELECT concat_ws(' ', table_name, ordinal_position, column_name, data_type, "
        "character_maximum_length, is_nullable, column_default, is_identity, "
        "identity_generation) AS line FROM information_schema.columns "
        f"WHERE table_schema = '{schema}' "
        "UNION ALL SELECT concat_ws(' ', tc.table_name, tc.constraint_name, tc.constraint_type, "
        "pg_get_constraintdef(c.oid)) FROM information_schema.table_constraints tc "
        "JOIN pg_constraint c ON c.conname = tc.constraint_name "
        "AND c.connamespace = tc.table_schema::regnamespace "
        f"WHERE tc.table_schema = '{schema}' AND tc.constraint_type <> 'CHECK' "
        "UNION ALL SELECT concat_ws(' ', conrelid::regclass::text, conname, "
        "pg_get_constraintdef(oid)) FROM pg_constraint WHERE contype = 'c' "
        f"AND connamespace = '{schema}'::regnamespace) lines"
    ).replace(f"{schema}.", "<s>.")


def test_tracking_tables_are_exactly_the_spec_schema(db_project: DbProject) -> None:
    database = db_project.database
    db_project.add_migration("one", "SELECT 1;\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    database.query(SPEC_001.format(s="_spec"))

    ours, spec = _catalog(database, "_spawn"), _catalog(database, "_spec")
    # script_run (003) is spawn's own table, beside the SPEC's (tests/cli/test_script.py).
    ours = "\n".join(line for line in ours.splitlines() if not line.startswith("script_run "))

    assert ours == spec
    assert "migration_history 10 pin_hash text YES NO" in ours
    assert database.query("SELECT string_agg(activity_id, ',' ORDER BY activity_id) "
                          "FROM _spawn.activity") == "ADOPT,APPLY,REVERT"
    assert database.query("SELECT string_agg(status_id, ',' ORDER BY status_id) "
                          "FROM _spawn.status") == "ATTEMPTED,FAILURE,SUCCESS"
    assert history(database, "spawn") == [
        ("001-base-migration-table", "APPLY", "SUCCESS"),
        ("002-migration-history-lookup-index", "APPLY", "SUCCESS"),
        ("003-script-run", "APPLY", "SUCCESS"),
    ]


def _write_like_the_rust_tool(database: TestDatabase) -> None:
    """A database the Rust tool deployed: only 001, outcome rows only, no ATTEMPTED."""
    database.query(SPEC_001.format(s="_spawn"))
    database.query(
        "INSERT INTO _spawn.migration (name, namespace) VALUES "
        "('001-base-migration-table', 'spawn'), ('20240101000000-users', 'default'), "
        "('20240101000001-broken', 'default'), ('20240101000002-by-hand', 'default'), "
        "('20231231000000-gone-from-disk', 'default');"
        "INSERT INTO _spawn.migration_history (migration_id_migration, activity_id_activity, "
        "created_by, description, status_note, status_id_status, checksum, pin_hash, "
        "execution_time) SELECT migration_id, a, 'rust', '', n, s, CASE name WHEN "
        "'20240101000000-users' THEN '\\x2e2e2de0bf312df8b6ec0f7581c26fc2'::bytea "  # as rendered
        "ELSE '\\x0102'::bytea END, NULL, "
        "'1 second' FROM _spawn.migration JOIN (VALUES "
        "('001-base-migration-table', 'APPLY', 'SUCCESS', ''), "
        "('20240101000000-users', 'APPLY', 'SUCCESS', ''), "
        "('20240101000001-broken', 'APPLY', 'FAILURE', 'ERROR:  boom'), "
        "('20240101000002-by-hand', 'ADOPT', 'SUCCESS', ''), "
        "('20231231000000-gone-from-disk', 'APPLY', 'SUCCESS', '')) v(nm, a, s, n) "
        "ON v.nm = name ORDER BY migration_id"
    )


def test_database_written_by_the_rust_tool_is_read_and_only_extended(
    db_project: DbProject,
) -> None:
    database = db_project.database
    _write_like_the_rust_tool(database)
    before = database.query("SELECT string_agg(h::text, E'\\n' ORDER BY migration_history_id) "
                            "FROM _spawn.migration_history h")
    for name in ("users", "broken", "by-hand"):
        db_project.add_migration(name, f"CREATE TABLE IF NOT EXISTS {name.replace('-', '_')} ();\n")
    new = db_project.add_migration("new", "CREATE TABLE new_one ();\n")

    status = db_project.run("migration", "status")

    assert status.exit_code == 0, status.stderr
    assert status.stdout.splitlines()[2:7] == [
        "20231231000000-gone-from-disk  ✗           ✗       ✓         ✓ Applied",
        "20240101000000-users           ✓           ✓       ✓         ✓ Applied",
        "20240101000001-broken          ✓           ✓       ✓         ✗ Failed",
        "20240101000002-by-hand         ✓           ✓       ✓         ⊙ Adopted",
        f"{new}             ✓           ✓       ✗         ○ Pending",
    ]
    assert database.query("SELECT count(*) FROM _spawn.migration_history") == "5"

    applied = db_project.run("migration", "apply", new)

    assert applied.exit_code == 0, applied.stderr
    assert applied.stderr.startswith(
        "Tracking schema _spawn: applied 002-migration-history-lookup-index, 003-script-run\n")
    after = database.query("SELECT string_agg(h::text, E'\\n' ORDER BY migration_history_id) "
                           "FROM _spawn.migration_history h WHERE migration_history_id <= 5")
    assert after == before
    assert history(database, "spawn") == [
        ("001-base-migration-table", "APPLY", "SUCCESS"),
        ("002-migration-history-lookup-index", "APPLY", "SUCCESS"),
        ("003-script-run", "APPLY", "SUCCESS"),
    ]
    assert latest(database)[new] == "SUCCESS"
    assert latest(database)["20240101000001-broken"] == "FAILURE"


def test_unusual_schema_and_names_are_quoted(db_project: DbProject) -> None:
    text = db_project.config_path.read_text()
    db_project.config_path.write_text(
        text.replace('environment = "dev"\n',
                     'environment = "dev"\nspawn_schema = "Track \'n\' \\"Quote\\""\n'))
    name = db_project.add_migration("fine", "CREATE TABLE fine ();\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert db_project.database.query(
        "SELECT m.name || ' ' || h.status_id_status FROM \"Track 'n' \"\"Quote\"\"\".migration m "
        "JOIN \"Track 'n' \"\"Quote\"\"\".migration_history h "
        "ON h.migration_id_migration = m.migration_id WHERE m.namespace = 'default' "
        "ORDER BY h.migration_history_id DESC LIMIT 1") == f"{name} SUCCESS"
