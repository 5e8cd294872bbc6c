"""``spawn migration adopt``: record migrations as applied without running them."""

from __future__ import annotations

from tests.conftest import DbProject
from tests.migrate.history import history, latest


def test_adopt_over_a_failure_records_adopt_success_without_running(
    db_project: DbProject,
) -> None:
    database = db_project.database
    name = db_project.add_migration(
        "broken", "BEGIN;\nCREATE TABLE done_by_hand ();\nSELECT 1/0;\nCOMMIT;\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 1
    database.query("CREATE TABLE done_by_hand ()")

    result = db_project.run("migration", "adopt", name, "--description", "fixed by hand, it's ok")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"Adopted {name}\n"
    assert history(database) == [(name, "APPLY", "ATTEMPTED"), (name, "APPLY", "FAILURE"),
                                 (name, "ADOPT", "SUCCESS")]
    pin = (db_project.spawn_dir / "migrations" / name / "lock.toml").read_text().split('"')[1]
    assert database.query(
        "SELECT description, encode(checksum, 'hex'), pin_hash, execution_time "
        "FROM _spawn.migration_history WHERE activity_id_activity = 'ADOPT'"
    ) == f"fixed by hand, it's ok||{pin}|00:00:00"
    status = db_project.run("migration", "status")
    assert "⊙ Adopted" in status.stdout
    assert db_project.run("migration", "apply", "--yes").stderr == \
        "Nothing to apply: every migration is applied (1 in total).\n"


def test_adopt_over_a_success_records_nothing_and_says_so(db_project: DbProject) -> None:
    name = db_project.add_migration("one", "CREATE TABLE one ();\n")
    assert db_project.run("migration", "apply", name).exit_code == 0

    result = db_project.run("migration", "adopt", name)

    assert result.exit_code == 0
    assert (result.stdout, result.stderr) == (
        "", f"Migration {name} is already applied; nothing recorded.\n")
    assert latest(db_project.database) == {name: "SUCCESS"}
    assert len(history(db_project.database)) == 2


def test_adopt_all_pending_needs_confirmation_and_skips_applied(db_project: DbProject) -> None:
    applied = db_project.add_migration("applied", "CREATE TABLE applied ();\n")
    assert db_project.run("migration", "apply", applied).exit_code == 0
    first = db_project.add_migration("first", "CREATE TABLE first ();\n")
    second = db_project.add_migration("second", "CREATE TABLE second ();\n", pin=False)

    refused = db_project.run("migration", "adopt")

    assert refused.exit_code == 2
    assert refused.stderr.endswith("pass --yes to go ahead\n")
    assert f"2 migrations would be adopted:\n  {first}\n  {second}\n" in refused.stderr

    adopted = db_project.run("migration", "adopt", "--yes")

    assert adopted.exit_code == 0, adopted.stderr
    assert adopted.stdout == f"Adopted {first}\nAdopted {second}\n"
    assert latest(db_project.database) == {applied: "SUCCESS", first: "SUCCESS",
                                           second: "SUCCESS"}
    assert db_project.database.query("SELECT to_regclass('first') IS NULL") == "t"
    assert db_project.run("migration", "adopt", "--yes").stderr == \
        "Nothing to adopt: every migration is already applied.\n"


def test_adopt_of_an_unknown_migration_is_an_error(db_project: DbProject) -> None:
    result = db_project.run("migration", "adopt", "20240101000000-nope")

    assert result.exit_code == 2
    assert result.stderr.startswith("error: migration '20240101000000-nope' not found in ")
