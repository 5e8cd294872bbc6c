"""``[templates] undefined = "strict"`` and ``--strict``/``--lenient``: an undefined value is
an error naming the file, line and variable; ``is defined``, ``default`` and ``get`` work."""

from __future__ import annotations

from pathlib import Path

import pytest

from spawn_db.config import Overrides, load_config
from spawn_db.errors import TemplateError
from spawn_db.migrate.migration import build_migration
from tests.conftest import DbProject
from tests.helpers import run_spawn

STRICT = '\n[templates]\nundefined = "strict"\n'


def strict(project: DbProject) -> None:
    project.config_path.write_text(project.config_path.read_text() + STRICT)


def message(where: str, name: str) -> str:
    return (f"error: {where}: `{name}` is undefined (strict mode: [templates] undefined = "
            f"\"strict\" or --strict); define it, or write `{name} | default(...)` or test "
            f"`{name} is defined`\n")


def test_strict_names_the_file_line_and_variable(db_project: DbProject) -> None:
    strict(db_project)
    name = db_project.add_migration("grant", "BEGIN;\nGRANT SELECT ON t TO "
                                    "{{ variables.app_role | escape_identifier }};\nCOMMIT;\n")

    result = db_project.run("migration", "build", name)
    applied = db_project.run("migration", "apply")

    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == message(f"spawn/migrations/{name}/up.sql:2", "variables.app_role")
    assert applied.exit_code == 1
    assert applied.stderr.endswith(
        message(f"spawn/migrations/{name}/up.sql:2", "variables.app_role"))


def test_lenient_is_the_default_and_lenient_overrides_strict(db_project: DbProject) -> None:
    name = db_project.add_migration("grant", "SELECT '{{ variables.app_role }}x';\n")

    lenient = db_project.run("migration", "build", name)
    flagged = db_project.run("--strict", "migration", "build", name)
    strict(db_project)
    configured = db_project.run("migration", "build", name)
    overridden = db_project.run("--lenient", "migration", "build", name)

    assert lenient.stdout == "SELECT 'x';\n"
    assert lenient.exit_code == 0
    where = f"spawn/migrations/{name}/up.sql:1"
    assert flagged.stderr == message(where, "variables.app_role")
    assert configured.stderr == message(where, "variables.app_role")
    assert overridden.stdout == "SELECT 'x';\n"


def test_defined_tests_default_and_get_still_work_in_strict_mode(db_project: DbProject) -> None:
    strict(db_project)
    (db_project.root / "v.json").write_text('{"db": {"name": "main"}, "roles": ["a"]}')
    name = db_project.add_migration(
        "ok",
        "{% if variables.app_role is defined %}BAD{% endif %}"
        "{% if variables.db.owner is not defined %}no owner{% endif %}\n"
        "{{ variables.app_role | default('reader') }} {{ variables.get('x') }} "
        "{{ variables.db.name }} {{ variables.roles | length }}\n")

    result = db_project.run("migration", "build", name, "--variables", "v.json")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == "no owner\n'reader' NULL 'main' 1\n"


@pytest.mark.parametrize(("template", "name"), [
    ("{{ missing_name }}", "missing_name"),
    ("{{ variables.db.owner }}", "variables.db.owner"),
    ("{% for r in variables.roles %}{{ r.grant }}{% endfor %}", "variables.roles[0].grant"),
    ("{{ variables.roles[5] }}", "variables.roles[5]"),
    ("{{ [variables.nope] }}", "variables.nope"),
    ("{{ variables.nope | safe }}", "variables.nope"),
    ("{% if variables.nope %}x{% endif %}", "variables.nope"),
    ("{{ 'a' ~ variables.nope }}", "variables.nope"),
])
def test_every_use_of_an_undefined_value_is_an_error(
    db_project: DbProject, template: str, name: str,
) -> None:
    strict(db_project)
    migration = db_project.add_migration("m", template + "\n", pin=False)
    config = load_config(Overrides(config_file=str(db_project.config_path)))

    with pytest.raises(TemplateError) as caught:
        "".join(build_migration(config, migration,
                                variables={"db": {"name": "x"}, "roles": [{"name": "r"}]}))

    assert caught.value.message == message(
        f"spawn/migrations/{migration}/up.sql:1", name)[len("error: "):-1]


def test_an_undefined_value_in_a_component_names_the_component(db_project: DbProject) -> None:
    strict(db_project)
    db_project.add_component("roles/grant.sql", "-- grants\nGRANT {{ variables.role }};\n")
    name = db_project.add_migration("m", '{% include "roles/grant.sql" %}\n')

    result = db_project.run("migration", "build", name, "--pinned")

    assert result.exit_code == 1
    assert result.stderr == message("components/roles/grant.sql:2", "variables.role")


def test_tests_render_strictly_too(db_project: DbProject) -> None:
    strict(db_project)
    db_project.add_test("t", "SELECT 1;\nSELECT {{ variables.nope }};\n")

    result = db_project.run("test", "build", "t")

    assert result.exit_code == 1
    assert result.stderr == message("spawn/tests/t/test.sql:2", "variables.nope")


def test_init_writes_strict_and_the_example_renders_under_it(tmp_path: Path) -> None:
    project = tmp_path / "new"
    project.mkdir()
    assert run_spawn("init", cwd=project).exit_code == 0
    text = (project / "spawn.toml").read_text()
    assert text.endswith('\n[templates]\n# An undefined value such as {{ variables.missing }} '
                         'is an error, not empty text.\nundefined = "strict"\n')
    assert load_config(Overrides(config_file=str(project / "spawn.toml"))).strict_undefined

    example = tmp_path / "other"
    example.mkdir()
    assert run_spawn("init", "--example", "demo", cwd=example).exit_code == 0
    demo = example / "demo"
    assert 'undefined = "strict"' in (demo / "spawn.toml").read_text()
    for folder in sorted((demo / "spawn" / "migrations").glob("2*")):
        built = run_spawn("migration", "build", folder.name, "--pinned", cwd=demo)
        assert built.exit_code == 0, built.stderr
    for test in ("customer_list_copy", "full_name"):
        built = run_spawn("test", "build", test, cwd=demo)
        assert built.exit_code == 0, built.stderr
