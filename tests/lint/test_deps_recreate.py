"""SP020 through the real ``spawn lint`` and ``spawn check``: a migration re-includes a
component whose object changes in a way PostgreSQL cannot make in place, and does not
recreate what other components build on it. The earlier migration is pinned (what the
database got); with ``--db``, pg_depend on a scratch database confirms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spawn_db.config import Overrides, load_config
from spawn_db.migrate.migration import pin_migration
from tests.conftest import DbProject
from tests.helpers import run_spawn
from tests.lint.conftest import LintProject

ONE = "20240101000000-one"
TWO = "20240102000000-two"
PRICE = ("CREATE OR REPLACE FUNCTION price(p integer) RETURNS {type}\n"
         "LANGUAGE sql RETURN p * 2;\n")
REPORT = "CREATE OR REPLACE VIEW report AS\n  SELECT price(1) AS total;\n"
SUMMARY = "CREATE OR REPLACE VIEW summary AS\n  SELECT total FROM report;\n"


def include(*paths: str, before: str = "") -> str:
    lines = "".join(f"{{% include '{p}' %}}\n" for p in paths)
    return f"BEGIN;\n{before}{lines}COMMIT;\n"


def pin(root: Path, name: str) -> None:
    pin_migration(load_config(Overrides(config_file=str(root / "spawn.toml"))), name)


def history(project: LintProject, second: str, *, price: str = "bigint",
            first: str = "") -> None:
    """Migration one (pinned) includes price (integer) and the views; migration two
    (unpinned: the working tree) includes ``second``'s components, with price returning
    ``price``."""
    project.component("functions/price.sql", PRICE.format(type="integer"))
    project.component("views/report.sql", REPORT)
    project.component("views/summary.sql", SUMMARY)
    project.migration(ONE, first or include("functions/price.sql", "views/report.sql",
                                            "views/summary.sql"))
    pin(project.root, ONE)
    project.component("functions/price.sql", PRICE.format(type=price))
    project.migration(TWO, second)


MESSAGE = ("function price(integer) changes its return type (integer to bigint), which "
           "CREATE OR REPLACE cannot do: it must be dropped and recreated, and its dependents "
           "with it in this migration, which does not include {missing}; drop them first and "
           "include their components after it")
BOTH = ("view report (components/views/report.sql), view summary "
        "(components/views/summary.sql)")


def test_a_changed_return_type_warns_for_the_dependents_left_out(
        lint_project: LintProject) -> None:
    history(lint_project, include("functions/price.sql"))
    result = lint_project.lint()
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        f"spawn/components/functions/price.sql:1:1: warning SP020: "
        f"{MESSAGE.format(missing=BOTH)} (included from spawn/migrations/{TWO}/up.sql:2)\n")
    assert result.stderr == "2 migrations linted: 0 errors, 1 warning\n"


def test_including_the_dependents_passes(lint_project: LintProject) -> None:
    history(lint_project, include("functions/price.sql", "views/report.sql",
                                  "views/summary.sql",
                                  before="DROP VIEW summary;\nDROP VIEW report;\n"))
    result = lint_project.lint()
    assert (result.exit_code, result.stdout) == (0, "")


def test_only_the_dependents_left_out_are_named(lint_project: LintProject) -> None:
    history(lint_project, include("functions/price.sql", "views/report.sql"))
    result = lint_project.lint("--format", "json", TWO)
    findings = json.loads(result.stdout)["findings"]
    missing = "view summary (components/views/summary.sql)"
    assert [(f["rule"], f["message"]) for f in findings] == [
        ("SP020", MESSAGE.format(missing=missing))]


def test_an_unchanged_return_type_passes(lint_project: LintProject) -> None:
    history(lint_project, include("functions/price.sql"), price="integer")
    assert lint_project.lint().stdout == ""


def test_a_component_included_for_the_first_time_passes(lint_project: LintProject) -> None:
    history(lint_project, include("functions/price.sql"),
            first=include("views/report.sql"))
    assert lint_project.lint().stdout == ""


def test_a_view_whose_columns_change_warns(lint_project: LintProject) -> None:
    lint_project.component("views/report.sql", "CREATE VIEW report AS SELECT 1 AS a, 2 AS b;\n")
    lint_project.component("views/top.sql", "CREATE VIEW top AS SELECT a FROM report;\n")
    lint_project.migration(ONE, include("views/report.sql", "views/top.sql"))
    pin(lint_project.root, ONE)
    lint_project.component("views/report.sql", "CREATE VIEW report AS SELECT 1 AS a;\n")
    lint_project.migration(TWO, include("views/report.sql"))
    assert lint_project.lint().stdout == (
        "spawn/components/views/report.sql:1:1: warning SP020: view report changes its column "
        "list (a, b) to (a); CREATE OR REPLACE VIEW can only add columns at the end: it must "
        "be dropped and recreated, and its dependents with it in this migration, which does "
        "not include view top (components/views/top.sql); drop them first and include their "
        f"components after it (included from spawn/migrations/{TWO}/up.sql:2)\n")
    lint_project.component("views/report.sql",
                           "CREATE VIEW report AS SELECT 1 AS a, 2 AS b, 3 AS c;\n")
    assert lint_project.lint().stdout == ""


def test_a_changed_type_warns_for_functions_and_tables_using_it(
        lint_project: LintProject) -> None:
    lint_project.component("types/mood.sql", "CREATE TYPE mood AS ENUM ('sad', 'ok');\n")
    lint_project.component("functions/cheer.sql",
                           "CREATE FUNCTION cheer(m mood) RETURNS mood\nLANGUAGE sql "
                           "RETURN 'ok';\n")
    lint_project.migration(ONE, include("types/mood.sql", "functions/cheer.sql"))
    pin(lint_project.root, ONE)
    lint_project.component("types/mood.sql",
                           "DROP TYPE mood;\nCREATE TYPE mood AS ENUM ('sad', 'ok', 'glad');\n")
    lint_project.migration(TWO, include("types/mood.sql"))
    assert lint_project.lint().stdout == (
        "spawn/components/types/mood.sql:2:1: warning SP020: type mood changes its "
        "definition, and a type has no CREATE OR REPLACE: it must be dropped and recreated, "
        "and its dependents with it in this migration, which does not include function "
        "cheer(mood) (components/functions/cheer.sql); drop them first and include their "
        f"components after it (included from spawn/migrations/{TWO}/up.sql:2)\n")


def test_changed_argument_types_warn(lint_project: LintProject) -> None:
    history(lint_project, include("functions/price.sql"))
    lint_project.component("functions/price.sql",
                           "CREATE FUNCTION price(p bigint) RETURNS integer\n"
                           "LANGUAGE sql RETURN p * 2;\n")
    findings = json.loads(lint_project.lint("--format", "json").stdout)["findings"]
    assert [f["message"].split(":")[0] for f in findings] == [
        "function price(integer) changes its argument list to (bigint), which makes a new "
        "function"]


def test_the_rule_can_be_disabled_in_the_migration(lint_project: LintProject) -> None:
    history(lint_project, "-- spawn-lint: disable=SP020\n" + include("functions/price.sql"))
    assert lint_project.lint().stdout == ""


def test_linting_one_migration_reads_the_ones_before_it(lint_project: LintProject) -> None:
    history(lint_project, include("functions/price.sql"))
    result = lint_project.lint(TWO)
    assert "warning SP020: function price(integer)" in result.stdout
    assert result.stderr == "1 migration linted: 0 errors, 1 warning\n"
    assert lint_project.lint(ONE).stdout == ""


def test_check_warns_without_failing(lint_project: LintProject) -> None:
    history(lint_project, include("functions/price.sql"))
    pin(lint_project.root, TWO)
    result = run_spawn("check", cwd=lint_project.root)
    assert result.exit_code == 0, result.stderr
    assert result.stderr == (
        f"warning: spawn/components/functions/price.sql:1:1: SP020: "
        f"{MESSAGE.format(missing=BOTH)}\n")
    assert result.stdout == "All migrations are pinned.\n"
    document = json.loads(run_spawn("check", "--format", "json", cwd=lint_project.root).stdout)
    assert document["ok"] is True
    assert [w["kind"] for w in document["warnings"]] == ["lint"]


def test_check_passes_when_the_dependents_are_included(lint_project: LintProject) -> None:
    history(lint_project, include("functions/price.sql", "views/report.sql",
                                  "views/summary.sql"))
    pin(lint_project.root, TWO)
    result = run_spawn("check", cwd=lint_project.root)
    assert (result.exit_code, result.stderr) == (0, "")


# -- --db: pg_depend on a scratch database -------------------------------------------


def test_db_confirms_with_pg_depend_and_finds_what_migrations_made(
        db_project: DbProject) -> None:
    db_project.add_component("functions/price.sql", PRICE.format(type="integer"))
    db_project.add_component("views/report.sql", REPORT)
    one = db_project.add_migration(
        "one", include("functions/price.sql", "views/report.sql") +
        "CREATE VIEW direct AS SELECT price(2) AS p;\n")
    db_project.add_component("functions/price.sql", PRICE.format(type="bigint"))
    two = db_project.add_migration("two", include("functions/price.sql"), pin=False)
    static = json.loads(db_project.run("lint", "--format", "json").stdout)["findings"]
    assert [f["message"].split("which does not include ")[1] for f in static] == [
        "view report (components/views/report.sql); drop them first and include their "
        "components after it"]
    result = db_project.run("lint", "--db", "--format", "json")
    document = json.loads(result.stdout)
    assert (result.exit_code, document["database"]) == (1, "failed"), result.stderr
    recreate, failure = document["findings"]
    assert recreate == {
        "rule": "SP020", "severity": "warning",
        "message": "function price(integer) changes its return type (integer to bigint), "
                   "which CREATE OR REPLACE cannot do: it must be dropped and recreated, and "
                   "its dependents with it in this migration; pg_depend on a scratch database "
                   "with the migrations before this one lists view direct, view report, which "
                   "this migration does not recreate; drop them first and recreate them after "
                   "it",
        "migration": two, "file": "spawn/components/functions/price.sql", "line": 1,
        "column": 1, "included_from": [{"file": f"spawn/migrations/{two}/up.sql", "line": 2}],
    }
    assert failure["rule"] == "SP901"
    assert failure["message"] == ("fails on a scratch database: cannot change return type of "
                                  "existing function")
    assert one < two


def test_db_drops_a_static_warning_the_database_does_not_confirm(
        db_project: DbProject) -> None:
    db_project.add_component("functions/price.sql", PRICE.format(type="integer"))
    db_project.add_component("views/report.sql", REPORT)
    db_project.add_migration("one", include("functions/price.sql", "views/report.sql") +
                             "DROP VIEW report;\n")
    db_project.add_component("functions/price.sql", PRICE.format(type="bigint"))
    db_project.add_migration("two", "BEGIN;\nDROP FUNCTION price(integer);\n"
                             "{% include 'functions/price.sql' %}\nCOMMIT;\n", pin=False)
    assert "SP020" in db_project.run("lint").stdout
    result = db_project.run("lint", "--db")
    assert (result.exit_code, result.stdout) == (0, ""), result.stderr


def test_plain_check_renders_without_a_variables_file_it_cannot_read(
        lint_project: LintProject) -> None:
    lint_project.config('variables = "missing.yaml"\n')
    history(lint_project, include("functions/price.sql"))
    pin(lint_project.root, TWO)
    result = run_spawn("check", cwd=lint_project.root)
    assert result.exit_code == 0, result.stderr
    assert "SP020: function price(integer)" in result.stderr
    linted = run_spawn("check", "--lint", cwd=lint_project.root)
    assert linted.exit_code == 2
    assert "missing.yaml" in linted.stderr


# (component before, component after, a dependent in another component, the change)
PAIRS = {
    "parameter name": (
        "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql RETURN a;",
        "CREATE OR REPLACE FUNCTION f(b int) RETURNS int LANGUAGE sql RETURN b;",
        "CREATE VIEW d AS SELECT f(1) AS x;",
        "function f(integer) renames its parameter a to b"),
    "parameter default": (
        "CREATE FUNCTION f(a int DEFAULT 1) RETURNS int LANGUAGE sql RETURN a;",
        "CREATE OR REPLACE FUNCTION f(a int) RETURNS int LANGUAGE sql RETURN a;",
        "CREATE VIEW d AS SELECT f(1) AS x;",
        "function f(integer) removes a parameter default"),
    "materialized view": (
        "CREATE MATERIALIZED VIEW m AS SELECT 1 AS a;",
        "CREATE MATERIALIZED VIEW m AS SELECT 2 AS a;",
        "CREATE VIEW d AS SELECT a FROM m;",
        "materialized view m changes its definition"),
    "domain": (
        "CREATE DOMAIN pos AS int;",
        "CREATE DOMAIN pos AS int CHECK (VALUE > 0);",
        "CREATE TABLE d (p pos);",
        "domain pos changes its definition"),
    "trigger function": (
        "CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END';",
        "CREATE FUNCTION touch() RETURNS void LANGUAGE plpgsql AS 'BEGIN END';",
        "CREATE TRIGGER d BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION touch();",
        "function touch() changes its return type (trigger to void)"),
    "policy function": (
        "CREATE FUNCTION me() RETURNS text LANGUAGE sql RETURN current_user;",
        "CREATE FUNCTION me() RETURNS name LANGUAGE sql RETURN current_user;",
        "CREATE POLICY d ON t USING (owner = me());",
        "function me() changes its return type (text to name)"),
}


def recreate_messages(project: LintProject, pair: str, *, with_dependent: bool) -> list[str]:
    from spawn_db.lint.lint import lint_migrations

    before, after, dependent, _what = PAIRS[pair]
    project.component("object.sql", before + "\n")
    project.component("dependent.sql", dependent + "\n")
    project.migration(ONE, include("object.sql", "dependent.sql"))
    pin(project.root, ONE)
    project.component("object.sql", after + "\n")
    project.migration(TWO, include("object.sql", *(["dependent.sql"] * with_dependent)))
    config = load_config(Overrides(config_file=str(project.root / "spawn.toml")))
    return [f.message for f in lint_migrations(config).findings if f.rule == "SP020"]


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_each_change_fails_without_its_dependent(lint_project: LintProject, pair: str) -> None:
    messages = recreate_messages(lint_project, pair, with_dependent=False)
    assert len(messages) == 1
    assert messages[0].startswith(PAIRS[pair][3])
    assert "(components/dependent.sql)" in messages[0]


@pytest.mark.parametrize("pair", sorted(PAIRS))
def test_each_change_passes_with_its_dependent(lint_project: LintProject, pair: str) -> None:
    assert recreate_messages(lint_project, pair, with_dependent=True) == []
