"""``spawn repeatable new|build|list`` and what repeatables add to ``spawn migration apply``
and ``status``, through the real ``spawn`` entry point."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.conftest import DbProject
from tests.migrate.history import history


def add_repeatable(project: DbProject, name: str, sql: str, toml: str | None = None) -> Path:
    folder = project.spawn_dir / "repeatable" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "up.sql").write_text(sql, encoding="utf-8")
    if toml is not None:
        (folder / "repeatable.toml").write_text(toml, encoding="utf-8")
    return folder


def progress(stderr: str) -> list[str]:
    """Progress lines with their timings masked."""
    return [re.sub(r"\(\d+ ms; (\d+) left, \d+ ms elapsed\)", r"(<t>; \1 left)", line)
            for line in stderr.splitlines()]


def checksum_of(project: DbProject, name: str) -> str:
    import xxhash

    built = project.run("repeatable", "build", name)
    assert built.exit_code == 0, built.stderr
    return str(xxhash.xxh3_128_hexdigest(built.stdout.removesuffix("\n").encode()))


# -- new, build ------------------------------------------------------------------------------


def test_new_creates_up_sql_and_refuses_an_existing_or_bad_name(db_project: DbProject) -> None:
    created = db_project.run("repeatable", "new", "views")
    again = db_project.run("repeatable", "new", "views")
    bad = db_project.run("repeatable", "new", "../views")

    assert (created.exit_code, created.stdout, created.stderr) == (
        0, "spawn/repeatable/views/up.sql\n", "")
    assert (db_project.spawn_dir / "repeatable/views/up.sql").read_text() == (
        "-- Runs again on every `spawn migration apply` after what it renders changes:\n"
        "-- keep it safe to re-run (CREATE OR REPLACE, DROP ... IF EXISTS, GRANT).\n")
    assert (again.exit_code, again.stderr) == (
        2, f"error: {db_project.spawn_dir / 'repeatable/views'} already exists; edit its "
        "up.sql, or choose another name\n")
    assert (bad.exit_code, bad.stderr) == (
        2, "error: invalid repeatable name '../views': use letters, digits, `-`, `_` and `.` "
        "only (no `/`, spaces or leading `.`), e.g. add-users\n")


def test_build_renders_from_the_working_tree(db_project: DbProject, tmp_path: Path) -> None:
    db_project.add_component("views/names.sql",
                             "CREATE OR REPLACE VIEW names AS SELECT {{ variables.n }} AS n;")
    add_repeatable(db_project, "views", "-- {{ env }}\n{% include 'views/names.sql' %}\n")
    variables = tmp_path / "vars.json"
    variables.write_text('{"n": 4}', encoding="utf-8")

    built = db_project.run("repeatable", "build", "views", "--variables", str(variables))
    unknown = db_project.run("repeatable", "build", "view")
    add_repeatable(db_project, "bad", "{{ nope(\n")
    broken = db_project.run("repeatable", "build", "bad")

    assert (built.exit_code, built.stdout, built.stderr) == (
        0, "-- 'dev'\nCREATE OR REPLACE VIEW names AS SELECT 4 AS n;\n", "")
    assert (unknown.exit_code, unknown.stderr) == (
        2, f"error: repeatable 'view' not found in {db_project.spawn_dir / 'repeatable'}; "
        "did you mean views?\n")
    assert broken.exit_code == 1
    assert broken.stderr.startswith(
        "error: spawn/repeatable/bad/up.sql:1: template syntax error: ")
    assert broken.stdout == ""


# -- apply -----------------------------------------------------------------------------------


def test_apply_runs_changed_repeatables_after_the_migrations_and_says_so(
    db_project: DbProject,
) -> None:
    users = db_project.add_migration("users", "CREATE TABLE users (id int, name text);\n")
    db_project.add_component("views/names.sql",
                             "CREATE OR REPLACE VIEW names AS SELECT name FROM users;")
    add_repeatable(db_project, "views", "{% include 'views/names.sql' %}\n")
    add_repeatable(db_project, "a-grants", "GRANT SELECT ON names TO PUBLIC;\n",
                   'requires = ["views"]\n')

    first = db_project.run("migration", "apply", "--yes")
    second = db_project.run("migration", "apply", "--yes")
    db_project.add_component("views/names.sql",
                             "CREATE OR REPLACE VIEW names AS SELECT name, id FROM users;")
    third = db_project.run("migration", "apply", "--yes")

    assert first.exit_code == 0, first.stderr
    assert progress(first.stderr)[1:] == [
        f"[1/1] ✓ {users} (<t>; 0 left)",
        "[1/2] ✓ repeatable views (<t>; 1 left)",
        "[2/2] ✓ repeatable a-grants (<t>; 0 left)",
        progress(first.stderr)[-2],
        "2 repeatable re-applied, 0 unchanged.",
    ]
    assert re.fullmatch(r"Applied 1 migration in \d+ ms\.|Applied 1 migration in [\d.]+ s\.",
                        progress(first.stderr)[-2])
    assert (second.exit_code, second.stderr) == (
        0, "Nothing to apply: every migration is applied (1 in total).\n"
        "0 repeatable re-applied, 2 unchanged.\n")
    assert (third.exit_code, progress(third.stderr)) == (0, [
        "[1/1] ✓ repeatable views (<t>; 0 left)",
        "Every migration is applied (1 in total).",
        "1 repeatable re-applied, 1 unchanged.",
    ])
    assert db_project.database.query(
        "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
        "WHERE attrelid = 'names'::regclass") == "name,id"


def test_no_repeatable_and_repeatable_name(db_project: DbProject) -> None:
    add_repeatable(db_project, "counter", "CREATE TABLE IF NOT EXISTS c (n int);\n"
                                          "INSERT INTO c VALUES (1);\n")
    add_repeatable(db_project, "other", "SELECT 1;\n")

    skipped = db_project.run("migration", "apply", "--no-repeatable")
    db_project.run("migration", "apply")
    forced = db_project.run("migration", "apply", "--repeatable", "counter")
    both = db_project.run("migration", "apply", "--no-repeatable", "--repeatable", "counter")
    unknown = db_project.run("migration", "apply", "--repeatable", "countr")

    assert (skipped.exit_code, skipped.stderr) == (
        0, "Tracking schema _spawn: applied 001-base-migration-table, "
        "002-migration-history-lookup-index, 003-script-run\n"
        "Nothing to apply: every migration is applied (0 in total).\n")
    assert (forced.exit_code, progress(forced.stderr)) == (0, [
        'NOTICE:  relation "c" already exists, skipping',
        "[1/1] ✓ repeatable counter (<t>; 0 left)",
        "Every migration is applied (0 in total).",
        "1 repeatable re-applied, 0 unchanged.",
    ])
    assert db_project.database.query("SELECT count(*) FROM c") == "2"
    assert (both.exit_code, both.stderr) == (
        2, "error: --no-repeatable and --repeatable contradict each other; pass one of them\n")
    assert (unknown.exit_code, unknown.stderr) == (
        2, f"error: repeatable 'countr' not found in {db_project.spawn_dir / 'repeatable'}; "
        "did you mean counter?\n")


def test_a_failed_repeatable_exits_1_and_runs_again_once_fixed(db_project: DbProject) -> None:
    folder = add_repeatable(db_project, "grants", "GRANT SELECT ON missing TO PUBLIC;\n")

    failed = db_project.run("migration", "apply")
    (folder / "up.sql").write_text("CREATE TABLE missing (n int);\n"
                                   "GRANT SELECT ON missing TO PUBLIC;\n", encoding="utf-8")
    fixed = db_project.run("migration", "apply")

    assert failed.exit_code == 1
    assert failed.stderr.endswith(
        "error: repeatable grants failed (0 of 1 re-applied before it); recorded as FAILURE in "
        "_spawn.migration_history (namespace repeatable). psql said:\n"
        'ERROR:  relation "missing" does not exist\n'
        "Fix spawn/repeatable/grants/up.sql (or what it includes); the next `spawn migration "
        "apply` runs it again\n")
    assert (fixed.exit_code, progress(fixed.stderr)) == (0, [
        "[1/1] ✓ repeatable grants (<t>; 0 left)",
        "Every migration is applied (0 in total).",
        "1 repeatable re-applied, 0 unchanged.",
    ])
    assert [s for _, _, s in history(db_project.database, "repeatable")] == [
        "ATTEMPTED", "FAILURE", "ATTEMPTED", "SUCCESS"]


def test_unknown_keys_in_repeatable_toml_are_warned_once(db_project: DbProject) -> None:
    folder = add_repeatable(db_project, "views", "SELECT 1;\n", 'require = ["grants"]\n')
    add_repeatable(db_project, "grants", "SELECT 2;\n", 'requires = ["views"]\n')

    warned = db_project.run("migration", "apply")

    assert warned.exit_code == 0, warned.stderr
    assert warned.stderr.splitlines()[0] == (
        f"warning: unknown key `require` in {folder / 'repeatable.toml'} (ignored; the closest "
        "known key is `requires`)")
    assert warned.stderr.count("warning:") == 1


def test_a_cycle_exits_2(db_project: DbProject) -> None:
    add_repeatable(db_project, "views", "SELECT 1;\n", 'requires = ["grants"]\n')
    add_repeatable(db_project, "grants", "SELECT 2;\n", 'requires = ["views"]\n')

    for args in (("migration", "apply"), ("repeatable", "list"), ("migration", "status")):
        result = db_project.run(*args)

        assert (result.exit_code, result.stderr) == (
            2, "error: repeatables require each other in a cycle: grants -> views -> grants; "
            "remove one of these `requires` entries (in repeatable.toml of the repeatables "
            "named)\n"), args


def test_dry_run_lists_the_repeatables_apply_would_run(db_project: DbProject) -> None:
    users = db_project.add_migration("users", "CREATE TABLE users (id int);\n")
    add_repeatable(db_project, "views", "CREATE OR REPLACE VIEW v AS SELECT * FROM users;\n")
    add_repeatable(db_project, "grants", "GRANT SELECT ON v TO PUBLIC;\n",
                   'requires = ["views"]\n')
    views, grants = checksum_of(db_project, "views"), checksum_of(db_project, "grants")

    text = db_project.run("migration", "apply", "--dry-run")
    sql = db_project.run("migration", "apply", "--dry-run", "--sql")
    db_project.run("migration", "apply")
    as_json = db_project.run("migration", "apply", "--dry-run", "--format", "json", "--sql",
                             "--repeatable", "grants")

    lines = text.stdout.splitlines()
    assert re.fullmatch(rf"{users}  pin [0-9a-f]{{32}}  checksum [0-9a-f]{{32}}", lines[0])
    assert lines[1:] == [f"repeatable views  new  checksum {views}",
                         f"repeatable grants  new  checksum {grants}"]
    assert text.stderr == (
        "Dry run: would apply 1 migration (0 already applied); nothing was written. Then 2 "
        "repeatable would be re-applied, 0 unchanged.\n")
    assert sql.stdout.splitlines()[2:] == [
        f"-- spawn repeatable views (new): checksum {views}",
        "CREATE OR REPLACE VIEW v AS SELECT * FROM users;",
        f"-- spawn repeatable grants (new): checksum {grants}",
        "GRANT SELECT ON v TO PUBLIC;",
    ]
    assert json.loads(as_json.stdout) == {
        "to_apply": [], "already_applied": [users], "blocked": None,
        "repeatables": {"to_apply": [{"name": "grants", "state": "unchanged",
                                      "checksum": grants, "size": 28,
                                      "sql": "GRANT SELECT ON v TO PUBLIC;"}],
                        "unchanged": []},
    }
    assert (as_json.exit_code, as_json.stderr) == (0, "")


# -- list and status -------------------------------------------------------------------------


def test_list_and_status_show_new_changed_unchanged_and_database_only(
    db_project: DbProject,
) -> None:
    users = db_project.add_migration("users", "CREATE TABLE users (id int);\n")
    add_repeatable(db_project, "a-views", "CREATE OR REPLACE VIEW v AS SELECT * FROM users;\n",
                   'description = "the views"\n')
    changed = add_repeatable(db_project, "b-grants", "GRANT SELECT ON v TO PUBLIC;\n",
                             'requires = ["a-views"]\n')
    gone = add_repeatable(db_project, "c-old", "CREATE VIEW old AS SELECT 1 AS n;\n")
    assert db_project.run("migration", "apply").exit_code == 0
    (gone / "up.sql").unlink()
    (changed / "up.sql").write_text("GRANT SELECT ON v TO PUBLIC;\n-- and more\n",
                                    encoding="utf-8")
    add_repeatable(db_project, "d-new", "SELECT 1;\n")
    sums = {n: checksum_of(db_project, n) for n in ("a-views", "b-grants", "d-new")}

    listed = db_project.run("repeatable", "list")
    as_json = db_project.run("repeatable", "list", "--format", "json")
    shown = db_project.run("migration", "status")
    status_json = json.loads(db_project.run("migration", "status", "--format", "json").stdout)

    note = ("note: repeatable c-old is recorded in the database but gone from disk; what it "
            "created is still there (drop it in a migration if it should go)\n")
    assert (listed.exit_code, listed.stderr) == (0, note)
    assert listed.stdout == (
        "Repeatable  Filesystem  Database  Status         Checksum                          "
        "Requires  Description\n"
        "----------  ----------  --------  -------------  --------------------------------  "
        "--------  -----------\n"
        f"a-views     ✓           ✓         ✓ Unchanged    {sums['a-views']}            "
        "the views\n"
        f"b-grants    ✓           ✓         ✎ Changed      {sums['b-grants']}  a-views\n"
        f"d-new       ✓           ✗         ○ New          {sums['d-new']}\n"
        "c-old       ✗           ✓         Database only  -\n"
        "\n"
        "4 repeatables: 1 unchanged, 1 changed, 1 new, 1 database only\n")
    rows = json.loads(as_json.stdout)["repeatables"]
    assert [(r["name"], r["filesystem"], r["status"], r["checksum_now"], r["requires"],
             r["description"]) for r in rows] == [
        ("a-views", True, "unchanged", sums["a-views"], [], "the views"),
        ("b-grants", True, "changed", sums["b-grants"], ["a-views"], ""),
        ("d-new", True, "new", sums["d-new"], [], ""),
        ("c-old", False, "database only", None, [], ""),
    ]
    assert rows[0]["latest"]["status"] == "SUCCESS"
    assert rows[0]["latest"]["checksum"] == sums["a-views"]
    assert rows[2]["latest"] is None
    assert shown.exit_code == 0
    assert shown.stdout.split("\n\n", 2)[2] == (
        "Repeatable  Filesystem  Database  Status         Requires  Description\n"
        "----------  ----------  --------  -------------  --------  -----------\n"
        "a-views     ✓           ✓         ✓ Unchanged              the views\n"
        "b-grants    ✓           ✓         ✎ Changed      a-views\n"
        "d-new       ✓           ✗         ○ New\n"
        "c-old       ✗           ✓         Database only\n"
        "\n"
        "4 repeatables: 1 unchanged, 1 changed, 1 new, 1 database only\n")
    assert shown.stdout.startswith("Migration             Filesystem  Pinned  Database  Status\n")
    assert f"{users}  ✓           ✓       ✓         ✓ Applied\n" in shown.stdout
    assert shown.stderr == note
    assert status_json["repeatables"] == rows


def test_list_without_repeatables(db_project: DbProject) -> None:
    listed = db_project.run("repeatable", "list")
    as_json = db_project.run("repeatable", "list", "--format", "json")

    assert (listed.exit_code, listed.stdout, listed.stderr) == (
        0, "", f"No repeatables yet in {db_project.spawn_dir / 'repeatable'}; create one with "
        "`spawn repeatable new NAME`.\n")
    assert (as_json.exit_code, json.loads(as_json.stdout)) == (0, {"repeatables": []})


def test_the_live_bar_counts_the_repeatables_on_their_own(db_project: DbProject) -> None:
    from tests.cli.test_progress import bars
    from tests.helpers import run_on_terminal

    db_project.add_migration("first", "SELECT 1;\n")
    add_repeatable(db_project, "a", "SELECT pg_sleep(0.3);\n")
    add_repeatable(db_project, "b", "SELECT pg_sleep(0.3);\n")

    shown = run_on_terminal(db_project.root, ["migration", "apply", "--yes"],
                            env={"SPAWN_PROGRESS_DELAY": "0"})

    drawn = bars(shown)
    assert any(re.fullmatch(r"\S 1/2 \S+ 0:00:0\d ETA \S+ applying repeatable b", d)
               for d in drawn), drawn
    assert not any(re.search(r" [2-9]/1 ", d) for d in drawn), drawn
