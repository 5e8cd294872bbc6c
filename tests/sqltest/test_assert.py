"""spawn's assertion macros (``{% import "spawn/assert.sql" as t %}``) through `spawn test run`.

Each macro has a passing and a failing example with psql's exact output; the
lines must not depend on the test's ``\\pset`` settings, and the numbering is
per psql session (it survives ROLLBACK and ``\\c``).
"""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from pathlib import Path
from typing import Any

import pytest

IMPORT = '{% import "spawn/assert.sql" as t %}\n'
SETUP = """\
\\set VERBOSITY terse
CREATE TABLE customers (id int PRIMARY KEY, full_name text NOT NULL);
CREATE INDEX customers_name_idx ON customers (full_name);
ALTER TABLE customers ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_rows ON customers USING (true);
CREATE FUNCTION greet(name text) RETURNS text LANGUAGE sql AS $$ SELECT 'hello ' || name $$;
INSERT INTO customers VALUES (1, 'Ada'), (2, 'Bob');
"""
ADA = "(SELECT full_name FROM customers WHERE id = 1)"
DUPLICATE = "INSERT INTO customers VALUES (1, 'Eve')"
DUPLICATE_ERROR = 'error 23505: duplicate key value violates unique constraint "customers_pkey"'

# macro: (passing call, failing call, the output of both)
CASES: dict[str, tuple[str, str, str]] = {
    "ok": (
        't.ok("(SELECT count(*) FROM customers) = 2", "two customers")',
        't.ok("(SELECT count(*) FROM customers) = 3", "three customers")',
        "ok 1 - two customers\nnot ok 2 - three customers\n"
        "#      got: false\n# expected: true\n",
    ),
    "is": (
        f't.is("{ADA}", "Ada", "customer 1 is Ada")',
        f't.is("{ADA}", "Bob", "customer 1 is Bob")',
        "ok 1 - customer 1 is Ada\nnot ok 2 - customer 1 is Bob\n"
        "#      got: Ada\n# expected: Bob\n",
    ),
    "isnt": (
        't.isnt("(SELECT count(*) FROM customers)", 0, "not empty")',
        't.isnt("(SELECT count(*) FROM customers)", 2, "not two")',
        "ok 1 - not empty\nnot ok 2 - not two\n"
        "#      got: 2\n# expected: anything but 2\n",
    ),
    "matches": (
        f't.matches("{ADA}", "^A", "starts with A")',
        f't.matches("{ADA}", "^B", "starts with B")',
        "ok 1 - starts with A\nnot ok 2 - starts with B\n"
        "#      got: Ada\n# expected: a match for ^B\n",
    ),
    "throws": (
        f't.throws("{DUPLICATE}", "23505", none, "duplicate id")',
        't.throws("SELECT 1", "23505", none, "SELECT 1 fails")',
        "ok 1 - duplicate id\nnot ok 2 - SELECT 1 fails\n"
        "#      got: no error\n# expected: error 23505\n",
    ),
    "lives": (
        't.lives("INSERT INTO customers VALUES (3, \'Cy\')", "new id")',
        f't.lives("{DUPLICATE}", "duplicate id")',
        f"ok 1 - new id\nnot ok 2 - duplicate id\n#      got: {DUPLICATE_ERROR}\n"
        "# expected: no error\n",
    ),
    "results_eq": (
        't.results_eq("SELECT id, full_name FROM customers ORDER BY id", '
        '"VALUES (1, \'Ada\'), (2, \'Bob\')", "both rows")',
        't.results_eq("SELECT id, full_name FROM customers ORDER BY id;", '
        '"VALUES (1, \'Ada\'), (2, \'Bo\')", "a typo")',
        "ok 1 - both rows\nnot ok 2 - a typo\n#    results differ beginning at row 2\n"
        "#      got: (2,Bob)\n# expected: (2,Bo)\n",
    ),
    "row_count": (
        't.row_count("SELECT * FROM customers", 2, "two rows")',
        't.row_count("SELECT * FROM customers WHERE id > 1", 2, "two rows after 1")',
        "ok 1 - two rows\nnot ok 2 - two rows after 1\n"
        "#      got: 1 rows\n# expected: 2 rows\n",
    ),
    "has_table": (
        't.has_table("customers")',
        't.has_table("public.orders")',
        "ok 1 - table customers exists\nnot ok 2 - table public.orders exists\n"
        "#      got: missing\n# expected: table public.orders\n",
    ),
    "has_column": (
        't.has_column("customers", "full_name")',
        't.has_column("customers", "email")',
        "ok 1 - customers has full_name\nnot ok 2 - customers has email\n"
        "#      got: missing\n# expected: column email of customers\n",
    ),
    "has_function": (
        't.has_function("public.greet", ["text"])',
        't.has_function("greet", ["integer"])',
        "ok 1 - function public.greet(text) exists\nnot ok 2 - function greet(integer) exists\n"
        "#      got: missing\n# expected: function greet(integer)\n",
    ),
    "has_index": (
        't.has_index("customers", "customers_name_idx")',
        't.has_index("customers", "customers_email_idx")',
        "ok 1 - customers has index customers_name_idx\n"
        "not ok 2 - customers has index customers_email_idx\n"
        "#      got: missing\n# expected: index customers_email_idx on customers\n",
    ),
    "policy_exists": (
        't.policy_exists("customers", "own_rows")',
        't.policy_exists("customers", "all_rows", "customers are shared")',
        "ok 1 - customers has policy own_rows\nnot ok 2 - customers are shared\n"
        "#      got: missing\n# expected: policy all_rows on customers\n",
    ),
}


def run_test(db_project: Any, name: str, body: str, *, setup: str = SETUP) -> str:
    db_project.add_test(name, IMPORT + setup + body)
    result = db_project.run("test", "run", name)
    assert (result.exit_code, result.stderr) == (0, ""), result
    output: str = result.stdout
    return output


@pytest.mark.parametrize("macro", sorted(CASES))
def test_each_macro_prints_ok_or_not_ok_with_got_and_expected(db_project: Any,
                                                               macro: str) -> None:
    passing, failing, expected = CASES[macro]
    output = run_test(db_project, macro, f"{{{{ {passing} }}}}\n{{{{ {failing} }}}}\n")
    assert output == expected


def test_the_required_macros_all_have_cases() -> None:
    assert set(CASES) == {
        "ok", "is", "isnt", "matches", "throws", "lives", "results_eq", "row_count",
        "has_table", "has_column", "has_function", "has_index", "policy_exists",
    }


def test_values_are_quoted_null_compares_and_safe_marks_sql(db_project: Any) -> None:
    output = run_test(db_project, "values", (
        f'{{{{ t.is("{ADA}", "O\'Brien", "it\'s quoted") }}}}\n'
        '{{ t.is("(SELECT full_name FROM customers WHERE id = 9)", none, "no row is NULL") }}\n'
        '{{ t.is("1.50::numeric", "1.5", "a literal takes the type of got") }}\n'
        '{{ t.is("now()", "now()"|safe, "|safe compares with SQL") }}\n'
        '{{ t.ok("NULL", "NULL is not true") }}\n'
        '{{ t.throws("SELECT 1/0", "22012", "division by zero") }}\n'
        '{{ t.throws("SELECT 1/0", none, "other message") }}\n'
    ))
    assert output == (
        "not ok 1 - it's quoted\n#      got: Ada\n# expected: O'Brien\n"
        "ok 2 - no row is NULL\n"
        "ok 3 - a literal takes the type of got\n"
        "ok 4 - |safe compares with SQL\n"
        "not ok 5 - NULL is not true\n#      got: NULL\n# expected: true\n"
        "ok 6\n"
        "not ok 7\n#      got: error 22012: division by zero\n"
        "# expected: error: other message\n"
    )


def test_numbering_is_per_session_and_survives_rollback_reconnect_and_pset(
    db_project: Any,
) -> None:
    body = (
        "BEGIN;\n{{ t.ok('true', 'in a transaction') }}\nROLLBACK;\n"
        "\\c\n{{ t.ok('true', 'after \\\\c') }}\n"
        "\\pset format unaligned\n\\pset tuples_only on\n\\x on\n\\pset footer off\n"
        "{{ t.ok('false', 'after \\\\pset') }}\n"
        "{{ t.finish() }}\n"
    )
    expected = (
        "ok 1 - in a transaction\nok 2 - after \\c\n"
        "not ok 3 - after \\pset\n#      got: false\n# expected: true\n"
        "1..3\n# failed 1 of 3\n"
    )
    assert run_test(db_project, "first", body, setup="") == expected
    assert run_test(db_project, "second", body, setup="") == expected, "each test counts from 1"


def test_finish_with_every_assertion_passing_prints_only_the_plan(db_project: Any) -> None:
    output = run_test(db_project, "plan", "{{ t.ok('true') }}\n{{ t.finish() }}\n")
    assert output == "ok 1\n1..1\n"


def test_golden_file_compare_reads_like_tap(db_project: Any) -> None:
    db_project.add_test("tap", IMPORT + "CREATE TEMP TABLE customers (id int);\n"
                        '{{ t.has_table("customers") }}\n')
    assert db_project.run("test", "expect", "tap").exit_code == 0
    expected = db_project.spawn_dir / "tests" / "tap" / "expected"
    assert expected.read_text() == "ok 1 - table customers exists\n"
    assert db_project.run("test", "compare", "tap").exit_code == 0


def test_a_component_under_spawn_cannot_shadow_the_library(db_project: Any) -> None:
    db_project.add_component("spawn/assert.sql", "{% macro ok(c) %}SELECT 1;{% endmacro %}\n")
    db_project.add_test("shadow", IMPORT + "{{ t.ok('true') }}\n")
    result = db_project.run("test", "run", "shadow")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: spawn/tests/shadow/test.sql:1: components/spawn/assert.sql cannot be "
        "included: the path spawn/ is reserved for spawn's own template library; move the "
        "file to another folder of components/ (e.g. components/app/) and include it from "
        "there\n"
    )


def test_a_component_elsewhere_under_spawn_is_refused_too(db_project: Any) -> None:
    db_project.add_component("spawn/helpers.sql", "SELECT 1;\n")
    db_project.add_test("other", '{% include "spawn/helpers.sql" %}\n')
    result = db_project.run("test", "run", "other")
    assert result.exit_code == 1
    assert "components/spawn/helpers.sql cannot be included: the path spawn/ is reserved" \
        in result.stderr


def test_an_unknown_library_file_names_the_library(db_project: Any) -> None:
    db_project.add_test("unknown", '{% import "spawn/asserts.sql" as t %}\n')
    result = db_project.run("test", "run", "unknown")
    assert result.exit_code == 1
    assert result.stderr == (
        "error: spawn/tests/unknown/test.sql:1: 'spawn/asserts.sql' is not a file of "
        "spawn's template library (spawn/assert.sql); the path spawn/ is reserved for it, "
        "so check the name\n"
    )


def test_a_migration_can_import_the_library(db_project: Any) -> None:
    db_project.add_migration("orders", IMPORT + (
        "CREATE TABLE orders (id int PRIMARY KEY);\n"
        '{{ t.has_table("orders") }}\n'
    ))
    result = db_project.run("migration", "apply", "--yes")
    assert result.exit_code == 0, result
    assert db_project.database.query("SELECT to_regclass('orders') IS NOT NULL") == "t"


def test_the_library_is_package_data(tmp_path: Path) -> None:
    """Every library file matches pyproject's package-data globs, so the wheel carries it
    (a wheel built from this tree lists spawn_db/render/library/spawn/assert.sql)."""
    root = Path(__file__).resolve().parents[2]
    package = root / "src" / "spawn_db" / "render"
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["spawn_db.render"]
    files = [p.relative_to(package).as_posix() for p in (package / "library").rglob("*")
             if p.is_file()]
    assert "library/spawn/assert.sql" in files
    assert all(any(fnmatch(f, g) for g in globs) for f in files)
