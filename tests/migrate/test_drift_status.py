"""``status`` tells the truth about what is applied: modified since applied, broken pins."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import DbProject, EmbeddedProject


def lock_of(db_project: DbProject, name: str) -> Path:
    return db_project.spawn_dir / "migrations" / name / "lock.toml"


def up_of(db_project: DbProject, name: str) -> Path:
    return db_project.spawn_dir / "migrations" / name / "up.sql"


def status_lines(db_project: DbProject) -> tuple[int, list[str], str]:
    result = db_project.run("migration", "status")
    return result.exit_code, result.stdout.splitlines()[2:], result.stderr


def test_appending_to_an_applied_up_sql_shows_modified(db_project: DbProject) -> None:
    db_project.add_component("f.sql", "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';")
    one = db_project.add_migration("one", '{% include "f.sql" %}\n')
    two = db_project.add_migration("two", "CREATE TABLE two ();\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    with up_of(db_project, one).open("a") as up:
        up.write("DROP TABLE important;\n")

    code, lines, stderr = status_lines(db_project)

    assert code == 1
    assert lines == [
        f"{one}  ✓           ✓       ✓         ✎ Modified",
        f"{two}  ✓           ✓       ✓         ✓ Applied",
        "",
        f"1 modified, 1 applied (database {db_project.database.name}, schema _spawn)",
    ]
    assert stderr.startswith(f"warning: {one} now renders (from its pin) to checksum ")
    assert "its up.sql or components changed since" in stderr
    report = json.loads(db_project.run("migration", "status", "--format", "json").stdout)
    first = report["migrations"][0]
    assert first["status"] == "modified"
    assert first["checksum_now"] != first["latest"]["checksum"]
    assert report["migrations"][1]["problem"] is None
    assert report["migrations"][1]["checksum_now"] == report["migrations"][1]["latest"]["checksum"]


def test_repinning_an_applied_migration_with_force_shows_modified(db_project: DbProject) -> None:
    db_project.add_component("f.sql", "SELECT 1;")
    one = db_project.add_migration("one", '{% include "f.sql" %}\n')
    assert db_project.run("migration", "apply").exit_code == 0
    applied_pin = lock_of(db_project, one).read_text().split('"')[1]
    db_project.add_component("other.sql", "SELECT 2;")  # not included: the render is the same

    refused = db_project.run("migration", "pin", one)
    assert refused.exit_code == 2
    assert refused.stderr == (
        f"error: migration {one} is applied (its history records pin {applied_pin}); "
        "re-pinning it would make status and check report it as modified. Put the change in "
        f"a new migration, or pass --force to re-pin anyway\n")
    assert lock_of(db_project, one).read_text() == f'pin = "{applied_pin}"\n'

    forced = db_project.run("migration", "pin", one, "--force")
    assert forced.exit_code == 0, forced.stderr
    new_pin = forced.stdout.strip()
    assert new_pin != applied_pin

    code, lines, stderr = status_lines(db_project)
    assert code == 1
    assert lines[0] == f"{one}  ✓           ✓       ✓         ✎ Modified"
    assert stderr == (f"warning: {one} was applied from pin {applied_pin} and is now to "
                      f"{new_pin}; restore its lock.toml from version control\n")


def test_editing_an_included_component_of_an_unpinned_applied_migration(
    db_project: DbProject,
) -> None:
    db_project.add_component("f.sql", "SELECT 1;")
    one = db_project.add_migration("one", '{% include "f.sql" %}\n', pin=False)
    assert db_project.run("migration", "apply", "--no-pin").exit_code == 0
    assert status_lines(db_project)[0] == 0

    db_project.add_component("f.sql", "SELECT 2;")

    code, lines, stderr = status_lines(db_project)
    assert code == 1
    assert lines[0] == f"{one}  ✓           ✗       ✓         ✎ Modified"
    assert f"{one} now renders (from the working tree)" in stderr


def test_an_unchanged_project_stays_applied_and_exits_0(db_project: DbProject) -> None:
    db_project.add_component("f.sql", "SELECT {{ env | tojson }};")
    one = db_project.add_migration(
        "one", '{% include "f.sql" %}\nSELECT {{ gen_uuid_v5("x") }};\n')
    two = db_project.add_migration("two", "SELECT 1;\n")
    three = db_project.add_migration("three", "SELECT 2;\n")
    assert db_project.run("migration", "apply", one).exit_code == 0
    assert db_project.run("migration", "apply", two).exit_code == 0
    assert db_project.run("migration", "adopt", three).exit_code == 0
    db_project.add_component("f.sql", "SELECT 'edited';")  # pinned: apply used the pin

    for _ in range(2):  # the second run answers from the render cache
        code, lines, stderr = status_lines(db_project)
        assert (code, stderr) == (0, "")
        assert lines[:3] == [
            f"{one}    ✓           ✓       ✓         ✓ Applied",
            f"{two}    ✓           ✓       ✓         ✓ Applied",
            f"{three}  ✓           ✓       ✓         ⊙ Adopted",
        ]


def test_random_or_variables_renders_are_not_called_modified(db_project: DbProject) -> None:
    random = db_project.add_migration("random", "SELECT {{ gen_uuid_v4() }};\n")
    uses = db_project.add_migration("uses", "SELECT {{ variables.n }};\n")
    (db_project.root / "vars.json").write_text('{"n": 7}')
    assert db_project.run("migration", "apply", "--yes", "--variables", "vars.json").exit_code == 0

    code, lines, stderr = status_lines(db_project)

    assert code == 0, (lines, stderr)
    assert lines[0].endswith("✓ Applied") and lines[1].endswith("✓ Applied")
    assert stderr == (
        f"note: {random} renders random values (gen_uuid_v4, gen_uuid_v7, random), so only "
        "its pin was compared\n"
        f"note: {uses} reads `variables`; pass the --variables file it was applied with to "
        "compare its checksum\n")
    with_file = db_project.run("migration", "status", "--variables", "vars.json")
    assert with_file.exit_code == 0
    (db_project.root / "other.json").write_text('{"n": 8}')
    other = db_project.run("migration", "status", "--variables", "other.json")
    assert other.exit_code == 1
    assert f"{uses}    ✓           ✓       ✓         ✎ Modified" in other.stdout


@pytest.mark.parametrize("lock_text, reason", [
    ('pin = "0123', "invalid TOML"),
    ("", "`pin` must be a 32-digit hex hash"),
    ('pin = "' + "0" * 32 + '"\n', "which is missing from"),
])
def test_one_broken_lock_shows_as_broken_and_the_rest_as_usual(
    db_project: DbProject, lock_text: str, reason: str
) -> None:
    one = db_project.add_migration("one", "CREATE TABLE one ();\n")
    two = db_project.add_migration("two", "CREATE TABLE two ();\n")
    three = db_project.add_migration("three", "CREATE TABLE three ();\n")
    assert db_project.run("migration", "apply", one).exit_code == 0
    lock_of(db_project, two).write_text(lock_text)

    code, lines, stderr = status_lines(db_project)

    assert code == 1
    assert lines == [
        f"{one}    ✓           ✓       ✓         ✓ Applied",
        f"{two}    ✓           ✗       ✗         ✗ Broken pin",
        f"{three}  ✓           ✓       ✗         ○ Pending",
        "",
        f"1 applied, 1 broken, 1 pending (database {db_project.database.name}, schema _spawn)",
    ]
    assert stderr.startswith("warning: ") and reason in stderr
    as_json = db_project.run("migration", "status", "--format", "json")
    assert as_json.exit_code == 1
    broken = json.loads(as_json.stdout)["migrations"][1]
    assert broken["status"] == "broken" and reason in broken["problem"]


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1))
def test_any_edit_of_an_applied_plain_migration_is_modified(
    db_project: DbProject, extra: str
) -> None:
    """Whatever is appended (when it changes the rendered text), status says modified."""
    from spawn_db.config import Overrides, load_config
    from spawn_db.migrate.apply import status

    config = load_config(Overrides(config_file=str(db_project.config_path)))
    names = {m.name for m in status(config).migrations}
    name = "20240101000000-one"
    if name not in names:
        name = db_project.add_migration("one", "SELECT 1;\n")
        assert db_project.run("migration", "apply").exit_code == 0
    up_of(db_project, name).write_text("SELECT 1;\n" + extra, encoding="utf-8",
                                       newline="")
    from spawn_db.render.plaintext import plain_output

    same = plain_output("SELECT 1;\n" + extra) == plain_output("SELECT 1;\n")
    [state] = [m.state for m in status(config).migrations]
    assert state == ("applied" if same else "modified")


def test_repin_never_creates_an_embedded_server_to_ask(embedded_project: EmbeddedProject) -> None:
    """A cluster that was never created holds no history: re-pinning must not create (and
    leave running) a server just to find that out."""
    created = embedded_project.run("migration", "new", "first")
    assert created.exit_code == 0, created.stderr
    name = next(p.name for p in (embedded_project.root / "spawn" / "migrations").iterdir()
                if p.is_dir())
    for _ in range(2):
        pinned = embedded_project.run("migration", "pin", name)
        assert pinned.exit_code == 0, pinned.stderr

    status = embedded_project.run("db", "status")
    assert "not created yet" in status.stdout, status.stdout
