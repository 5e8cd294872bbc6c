"""``spawn component deps`` through the real entry point: the graph of what each component
defines and who uses it, in text, JSON and Graphviz, forwards and ``--reverse``. Beside the
lint tests, whose project on disk (``lint_project``) it uses: it reads no database either."""

from __future__ import annotations

import json

import pytest

from tests.helpers import Result, run_spawn
from tests.lint.conftest import LintProject


def run(project: LintProject, *args: str) -> Result:
    return run_spawn(*args, cwd=project.root)


@pytest.fixture
def graph_project(lint_project: LintProject) -> LintProject:
    """price (function) <- report (view) <- summary (view); audit's late-bound body calls
    price; a template component needs a variable; a data file is not SQL."""
    lint_project.component("functions/price.sql",
                           "-- the price\nCREATE FUNCTION price(p integer) RETURNS integer\n"
                           "LANGUAGE sql RETURN p * 2;\n")
    lint_project.component("views/report.sql",
                           "CREATE VIEW report AS SELECT price(1) AS total;\n")
    lint_project.component("views/summary.sql",
                           "CREATE VIEW summary AS SELECT total FROM report;\n"
                           "CREATE FUNCTION audit() RETURNS int LANGUAGE plpgsql AS $$\n"
                           "BEGIN RETURN price(3); END $$;\n")
    lint_project.component(
        "tables/items.sql",
        "CREATE TABLE {{ variables.schema | escape_identifier }}.items (id int);\n")
    lint_project.component("data/prices.yaml", "a: 1\n")
    return lint_project


TEXT = """\
functions/price.sql
  function price(integer)  (line 2)
    <- views/report.sql: view report
    <- views/summary.sql: function audit()  (late-bound)
tables/items.sql
  (not analysed: line 1: syntax error: zero-length delimited identifier at or near \"\"\"\")
views/report.sql
  view report  (line 1)
    <- views/summary.sql: view summary
views/summary.sql
  view summary  (line 1)
  function audit()  (line 2)
"""


def test_text_lists_each_component_its_objects_and_their_dependents(
        graph_project: LintProject) -> None:
    result = run(graph_project, "component", "deps")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == TEXT


def test_reverse_lists_what_each_object_uses(graph_project: LintProject) -> None:
    result = run(graph_project, "component", "deps", "views/summary.sql", "--reverse")
    assert (result.exit_code, result.stderr) == (0, "")
    assert result.stdout == """\
views/summary.sql
  view summary  (line 1)
    -> views/report.sql: view report
  function audit()  (line 2)
    -> functions/price.sql: function price(integer)  (late-bound)
functions/price.sql
  function price(integer)  (line 2)
views/report.sql
  view report  (line 1)
    -> functions/price.sql: function price(integer)
"""


def test_a_component_and_what_depends_on_it(graph_project: LintProject) -> None:
    result = run(graph_project, "component", "deps", "views/report.sql")
    assert result.stdout == """\
views/report.sql
  view report  (line 1)
    <- views/summary.sql: view summary
views/summary.sql
  view summary  (line 1)
  function audit()  (line 2)
"""
    by_path = run(graph_project, "component", "deps",
                                      "spawn/components/views/report.sql")
    assert by_path.stdout == result.stdout


def test_json(graph_project: LintProject) -> None:
    result = run(graph_project, "component", "deps", "functions/price.sql",
                                     "--format", "json")
    assert result.exit_code == 0
    price = {"kind": "function", "name": "price", "arguments": ["integer"], "table": None,
             "label": "function price(integer)"}
    assert json.loads(result.stdout) == {
        "direction": "dependents",
        "components": [
            {"path": "functions/price.sql", "problem": None, "objects": [{
                **price, "line": 2, "dependents": [
                    {"component": "views/report.sql", "kind": "view", "name": "report",
                     "arguments": None, "table": None, "label": "view report", "late": False},
                    {"component": "views/summary.sql", "kind": "function", "name": "audit",
                     "arguments": None, "table": None, "label": "function audit()",
                     "late": True}]}]},
            {"path": "views/report.sql", "problem": None, "objects": [{
                "kind": "view", "name": "report", "arguments": None, "table": None,
                "label": "view report", "line": 1, "dependents": [
                    {"component": "views/summary.sql", "kind": "view", "name": "summary",
                     "arguments": None, "table": None, "label": "view summary",
                     "late": False}]}]},
            {"path": "views/summary.sql", "problem": None, "objects": [
                {"kind": "view", "name": "summary", "arguments": None, "table": None,
                 "label": "view summary", "line": 1, "dependents": []},
                {"kind": "function", "name": "audit", "arguments": None, "table": None,
                 "label": "function audit()", "line": 2, "dependents": []}]},
        ],
    }
    reverse = json.loads(run(graph_project,
        "component", "deps", "views/report.sql", "--reverse", "--format", "json").stdout)
    assert reverse["direction"] == "dependencies"
    assert [c["path"] for c in reverse["components"]] == ["views/report.sql",
                                                         "functions/price.sql"]
    assert reverse["components"][0]["objects"][0]["depends_on"] == [
        {"component": "functions/price.sql", **price, "late": False}]


def test_dot(graph_project: LintProject) -> None:
    result = run(graph_project, "component", "deps", "functions/price.sql",
                                     "--format", "dot")
    assert result.stdout == """\
digraph components {
  rankdir=LR;
  node [shape=box];
  "functions/price.sql";
  "views/report.sql";
  "views/summary.sql";
  "functions/price.sql" -> "views/report.sql" [label="function price(integer)"];
  "functions/price.sql" -> "views/summary.sql" [label="function price(integer)", \
style=dashed];
  "views/report.sql" -> "views/summary.sql" [label="view report"];
}
"""
    reverse = run(graph_project, "component", "deps", "views/report.sql", "--reverse",
                                      "--format", "dot")
    assert reverse.stdout.splitlines()[3:] == [
        '  "views/report.sql";', '  "functions/price.sql";',
        '  "views/report.sql" -> "functions/price.sql" [label="function price(integer)"];',
        "}"]


def test_variables_render_template_components(graph_project: LintProject) -> None:
    variables = graph_project.root / "vars.json"
    variables.write_text('{"schema": "shop"}', encoding="utf-8")
    result = run(graph_project, "component", "deps", "tables/items.sql",
                                     "--variables", str(variables))
    assert result.stdout == "tables/items.sql\n  table shop.items  (line 1)\n"


def test_strict_mode_names_the_missing_variable(graph_project: LintProject) -> None:
    result = run(graph_project, "--strict", "component", "deps", "tables/items.sql")
    assert result.stdout == (
        "tables/items.sql\n  (not analysed: does not render on its own: "
        "components/tables/items.sql:1: `variables.schema` is undefined (strict mode: "
        "[templates] undefined = \"strict\" or --strict); define it, or write "
        "`variables.schema | default(...)` or test `variables.schema is defined`)\n")


def test_an_unknown_component_is_a_usage_error(graph_project: LintProject) -> None:
    result = run(graph_project, "component", "deps", "views/nope.sql")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr == (
        f"error: component views/nope.sql does not exist: there is no views/nope.sql in "
        f"{graph_project.spawn / 'components'}; `spawn component deps` without an argument "
        "lists every component\n")


def test_no_components(lint_project: LintProject) -> None:
    result = run(lint_project, "component", "deps")
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == "No component files (*.sql) in components/.\n"
