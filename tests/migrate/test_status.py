"""``spawn migration status``: every migration, on disk or only in the database."""

from __future__ import annotations

import json

from tests.conftest import DbProject


def test_status_before_anything_was_applied_reads_without_writing(db_project: DbProject) -> None:
    one = db_project.add_migration("one", "CREATE TABLE one ();\n")
    two = db_project.add_migration("two", "CREATE TABLE two ();\n", pin=False)

    result = db_project.run("migration", "status")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        f"{'Migration':18}  Filesystem  Pinned  Database  Status\n"
        f"{'-' * 18}  ----------  ------  --------  ---------\n"
        f"{one}  ✓           ✓       ✗         ○ Pending\n"
        f"{two}  ✓           ✗       ✗         ○ Pending\n"
        "\n"
        f"2 pending (database {db_project.database.name}, schema _spawn)\n"
    )
    assert db_project.database.query("SELECT to_regnamespace('_spawn') IS NULL") == "t"


def test_status_shows_every_state_and_database_only_migrations(db_project: DbProject) -> None:
    database = db_project.database
    applied = db_project.add_migration("applied", "CREATE TABLE applied ();\n")
    adopted = db_project.add_migration("adopted", "CREATE TABLE adopted ();\n")
    failed = db_project.add_migration("failed", "SELECT 1/0;\n")
    pending = db_project.add_migration("pending", "CREATE TABLE pending ();\n")
    assert db_project.run("migration", "apply", applied).exit_code == 0
    assert db_project.run("migration", "adopt", adopted).exit_code == 0
    assert db_project.run("migration", "apply", failed).exit_code == 1
    gone = db_project.add_migration("gone", "CREATE TABLE gone ();\n")
    assert db_project.run("migration", "apply", gone).exit_code == 0
    import shutil

    shutil.rmtree(db_project.spawn_dir / "migrations" / gone)

    text = db_project.run("migration", "status")
    as_json = db_project.run("migration", "status", "--format", "json")

    assert text.exit_code == 0, text.stderr
    assert text.stdout.splitlines()[2:] == [
        f"{applied}  ✓           ✓       ✓         ✓ Applied",
        f"{adopted}  ✓           ✓       ✓         ⊙ Adopted",
        f"{failed}   ✓           ✓       ✓         ✗ Failed",
        f"{pending}  ✓           ✓       ✗         ○ Pending",
        f"{gone}     ✗           ✗       ✓         ✓ Applied",
        "",
        f"2 applied, 1 adopted, 1 failed, 1 pending (database {database.name}, schema _spawn)",
    ]
    report = json.loads(as_json.stdout)
    assert report["database"] == database.name
    assert report["schema"] == "_spawn"
    assert report["tracking_schema_exists"] is True
    by_name = {m["name"]: m for m in report["migrations"]}
    assert [m["status"] for m in report["migrations"]] == [
        "applied", "adopted", "failed", "pending", "applied"]
    assert by_name[failed]["latest"]["status_note"] == "ERROR:  division by zero"
    assert by_name[failed]["latest"]["activity"] == "APPLY"
    assert by_name[adopted]["latest"]["checksum"] == ""
    assert by_name[gone]["filesystem"] is False
    assert by_name[pending]["latest"] is None
    assert by_name[applied]["pinned"] is True
