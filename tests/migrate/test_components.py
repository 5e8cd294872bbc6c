"""``spawn component status``: component edits against pins, render records and the target."""

from __future__ import annotations

import json

from tests.conftest import DbProject


def rows(result_stdout: str) -> dict[str, dict[str, object]]:
    return {c["path"]: c for c in json.loads(result_stdout)["components"]}


def test_flags_users_and_unapplied_migrations(db_project: DbProject) -> None:
    db_project.add_component("views/a.sql", "CREATE VIEW a AS SELECT 1 AS n;\n")
    db_project.add_component("views/b.sql", "CREATE VIEW b AS SELECT 2 AS n;\n")
    first = db_project.add_migration("first", '{% include "views/a.sql" %}\n')
    second = db_project.add_migration("second", '{% include "views/b.sql" %}\n'
                                                '{% include "views/a.sql" %}\n')
    assert db_project.run("migration", "apply", first).exit_code == 0
    db_project.add_component("views/b.sql", "CREATE VIEW b AS SELECT 3 AS n;\n")
    db_project.add_component("views/c.sql", "CREATE VIEW c AS SELECT 4 AS n;\n")

    result = db_project.run("component", "status", "--format", "json")

    assert result.exit_code == 0, result.stderr
    found = rows(result.stdout)
    assert found["views/a.sql"] == {"path": "views/a.sql", "flags": ["unapplied"],
                                    "deleted": False, "used_by": [first, second],
                                    "unapplied_in": [second]}
    assert found["views/b.sql"]["flags"] == ["changed", "uncarried", "unapplied"]
    assert found["views/c.sql"]["flags"] == ["new", "uncarried"]
    assert found["views/c.sql"]["used_by"] == []
    assert json.loads(result.stdout)["newest_migration"] == second


def test_changed_exits_1_naming_each_uncarried_edit_without_a_database(
    db_project: DbProject,
) -> None:
    db_project.add_component("f.sql", "SELECT 1;\n")
    name = db_project.add_migration("uses-f", '{% include "f.sql" %}\n')
    clean = db_project.run("component", "status", "--changed")
    db_project.add_component("f.sql", "SELECT 2;\n")
    db_project.config_path.write_text(
        db_project.config_path.read_text().replace('direct = [', 'direct = ["/nonexistent", '))

    dirty = db_project.run("component", "status", "--changed")
    repinned = db_project.run("migration", "pin", name, "--force")
    again = db_project.run("component", "status", "--changed")

    assert (clean.exit_code, clean.stdout) == (0, "")
    assert clean.stderr == "Every component's current version is held by a pin.\n"
    assert dirty.exit_code == 1
    assert dirty.stdout.splitlines()[2].split() == ["f.sql", "changed,", "uncarried", name]
    assert dirty.stderr == ("error: f.sql was edited, but no migration's pin holds this "
                            "version; pin the migration that should deploy it (or create "
                            "one)\n")
    assert repinned.exit_code == 0, repinned.stderr
    assert again.exit_code == 0


def test_a_deleted_component_is_shown_deleted(db_project: DbProject) -> None:
    path = db_project.add_component("gone.sql", "SELECT 1;\n")
    db_project.add_migration("m", "SELECT 1;\n")
    path.unlink()

    result = db_project.run("component", "status", "--format", "json")

    assert rows(result.stdout)["gone.sql"]["deleted"] is True
