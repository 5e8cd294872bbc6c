"""A pending migration pinned before a component it includes was edited: say so, once."""

from __future__ import annotations

import json

from tests.conftest import DbProject


def stale(db_project: DbProject, name: str, path: str = "f.sql") -> str:
    return (f"warning: {name} is pinned to an older components/{path}: the working tree has a "
            f"newer version, which this migration will not apply (pins are snapshots); run "
            f"`spawn migration pin {name}` to take the new version\n")


def test_apply_and_check_name_the_component_changed_since_the_pin(db_project: DbProject) -> None:
    db_project.add_component("f.sql", "SELECT 1;")
    db_project.add_component("g.sql", "SELECT 'g';")
    one = db_project.add_migration("one", '{% include "f.sql" %}\n')
    db_project.add_component("f.sql", "SELECT 2;")
    db_project.add_component("unused.sql", "SELECT 3;")

    checked = db_project.run("check", "--database")
    assert (checked.exit_code, checked.stderr) == (0, stale(db_project, one))
    assert checked.stdout == (
        "All migrations are pinned, and none was modified since it was applied.\n")
    as_json = json.loads(db_project.run("check", "--database", "--format", "json").stdout)
    assert as_json["ok"] is True
    assert as_json["warnings"][0]["kind"] == "stale"

    applied = db_project.run("migration", "apply")
    assert applied.exit_code == 0
    assert applied.stderr.count("is pinned to an older") == 1
    assert applied.stderr.startswith(stale(db_project, one))
    assert db_project.database.query("SELECT 1") == "1"

    plain = db_project.run("check")  # without --database: no history, no render
    assert (plain.exit_code, plain.stderr) == (0, "")


def test_no_warning_when_a_later_migration_takes_the_new_version(db_project: DbProject) -> None:
    """The in-place edit workflow: the old pin stays, a later migration deploys the edit."""
    db_project.add_component("f.sql", "SELECT 1;")
    one = db_project.add_migration("one", '{% include "f.sql" %}\n')
    db_project.add_component("f.sql", "SELECT 2;")
    db_project.add_migration("two", '{% include "f.sql" %}\n')

    applied = db_project.run("migration", "apply", "--yes")
    assert applied.exit_code == 0, applied.stderr
    assert "is pinned to an older" not in applied.stderr

    only_first = db_project.run("migration", "apply", one, "--retry")
    assert stale(db_project, one) in only_first.stderr


def test_check_database_reports_a_modified_migration_and_exits_1(db_project: DbProject) -> None:
    db_project.add_component("f.sql", "SELECT 0;")
    one = db_project.add_migration("one", '{% include "f.sql" %}\n')
    assert db_project.run("migration", "apply").exit_code == 0
    db_project.add_component("f.sql", "SELECT 00;")  # applied: no stale-component warning
    up = db_project.spawn_dir / "migrations" / one / "up.sql"
    up.write_text('{% include "f.sql" %}\nSELECT 2;\n')

    checked = db_project.run("check", "--database")

    assert checked.exit_code == 1
    assert checked.stdout == ""
    assert checked.stderr.startswith(f"warning: {one} now renders (from its pin) to checksum ")
    as_json = json.loads(db_project.run("check", "--database", "--format", "json").stdout)
    assert as_json["ok"] is False
    assert [w["kind"] for w in as_json["warnings"]] == ["modified"]
    assert db_project.run("check").exit_code == 0  # files alone cannot tell
