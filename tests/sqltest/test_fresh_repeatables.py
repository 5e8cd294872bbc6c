"""Fresh test databases get the repeatable migrations too (issue 16 with issue 14): after the
versioned migrations, and a changed repeatable makes a new template."""

from __future__ import annotations

from tests.conftest import DbProject


def fresh(db_project: DbProject) -> None:
    with db_project.config_path.open("a", encoding="utf-8") as config:
        config.write('\n[tests]\ndatabase = "fresh"\n')


def test_the_template_holds_the_repeatables_and_follows_their_edits(
    db_project: DbProject,
) -> None:
    fresh(db_project)
    db_project.add_migration("table", "CREATE TABLE item (id int, name text);\n"
                                      "INSERT INTO item VALUES (1, 'one');\n")
    folder = db_project.spawn_dir / "repeatable" / "names"
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text(
        "CREATE OR REPLACE VIEW names AS SELECT name FROM item;\n", encoding="utf-8")
    test = db_project.add_test("names", "SELECT * FROM names;\n")
    (test.parent / "expected").write_text(" name \n------\n one\n(1 row)\n\n",
                                          encoding="utf-8")

    # Templates other tests kept on the worker's server would be counted below.
    assert db_project.run("test", "clean").exit_code == 0
    first = db_project.run("test", "compare")
    (folder / "up.sql").write_text(
        "CREATE OR REPLACE VIEW names AS SELECT upper(name) AS name FROM item;\n",
        encoding="utf-8")
    second = db_project.run("test", "compare")

    assert first.exit_code == 0, first.stdout + first.stderr
    assert second.exit_code == 1
    assert "+| ONE" in second.stdout
    assert db_project.database.query(
        "SELECT count(*) FROM pg_database WHERE datname LIKE 'spawn\\_tpl\\_%'") == "2"
    assert db_project.database.query("SELECT to_regclass('names') IS NULL") == "t"
    db_project.run("test", "clean")


def test_a_failing_repeatable_stops_the_template_build(db_project: DbProject) -> None:
    fresh(db_project)
    folder = db_project.spawn_dir / "repeatable" / "broken"
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text("SELECT * FROM nowhere;\n", encoding="utf-8")
    db_project.add_test("t", "SELECT 1;\n")

    result = db_project.run("test", "compare")

    assert result.exit_code == 1
    assert "repeatable broken failed while building the template database" in result.stderr
    assert 'relation "nowhere" does not exist' in result.stderr
