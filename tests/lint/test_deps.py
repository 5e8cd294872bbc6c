"""What ``lint.deps`` reads from SQL through the real parser (pglast): the objects a
statement defines, what they reference, and which changes PostgreSQL cannot make in
place; signatures and view columns checked against a real server."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spawn_db.lint.deps import (
    Definition,
    Graph,
    Reference,
    changes,
    definitions,
)
from spawn_db.lint.parse import parse_script
from tests.conftest import TestDatabase


def defs(sql: str) -> list[Definition]:
    parsed = parse_script(sql)
    assert parsed.problems == ()
    return definitions(parsed.statements)


def one(sql: str) -> Definition:
    found = defs(sql)
    assert len(found) == 1
    return found[0]


def refs(definition: Definition) -> set[tuple[str, str, bool]]:
    """(kind, name, late) of every reference but built-in types."""
    builtin = {"int4", "int8", "text", "bool", "numeric", "record", "trigger", "void"}
    return {(r.kind, r.name, r.late) for r in definition.references
            if not (r.kind == "type" and r.name in builtin)}


# statement -> (label, references without built-in types)
OBJECTS: dict[str, tuple[str, set[tuple[str, str, bool]]]] = {
    "CREATE OR REPLACE FUNCTION api.price(p int, q money_t DEFAULT 1) RETURNS bigint "
    "LANGUAGE sql RETURN p * rate(q)":
        ("function api.price(integer, money_t)",
         {("type", "money_t", False), ("function", "rate", False)}),
    "CREATE FUNCTION f(int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT g($1) FROM t; END":
        ("function f(integer)", {("function", "g", False), ("relation", "t", False)}),
    "CREATE FUNCTION f(a text) RETURNS int LANGUAGE sql AS $$ SELECT g(a) FROM t $$":
        ("function f(text)", {("function", "g", True), ("relation", "t", True)}),
    "CREATE FUNCTION f(x int) RETURNS void LANGUAGE plpgsql AS $$ DECLARE y int := k(1); "
    "BEGIN PERFORM g(x); INSERT INTO log SELECT * FROM w; y := h(x); EXECUTE 'SELECT z()'; "
    "END $$":
        ("function f(integer)", {("function", "k", True), ("function", "g", True),
                                 ("relation", "log", True), ("relation", "w", True),
                                 ("function", "h", True)}),
    "CREATE PROCEDURE p(x int, OUT y int) LANGUAGE sql BEGIN ATOMIC SELECT 1; END":
        ("procedure p(integer)", set()),
    "CREATE VIEW v AS WITH c AS (SELECT 1) SELECT f(1) FROM c JOIN s.t USING (id)":
        ("view v", {("function", "f", False), ("relation", "s.t", False)}),
    "CREATE MATERIALIZED VIEW mv AS SELECT * FROM v":
        ("materialized view mv", {("relation", "v", False)}),
    "CREATE TABLE t (id int DEFAULT nextval('s'), m money_t, CHECK (ok(id)), "
    "r int REFERENCES u (id))":
        ("table t", {("function", "nextval", False), ("relation", "s", False),
                     ("type", "money_t", False), ("function", "ok", False),
                     ("relation", "u", False)}),
    "CREATE TYPE pair AS (a int, b money_t)": ("type pair", {("type", "money_t", False)}),
    "CREATE TYPE mood AS ENUM ('sad', 'ok')": ("type mood", set()),
    "CREATE DOMAIN positive AS int CHECK (VALUE > floor_of())":
        ("domain positive", {("function", "floor_of", False)}),
    "CREATE TRIGGER tr BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION touch()":
        ("trigger tr on t", {("function", "touch", False), ("relation", "t", False)}),
    "CREATE POLICY mine ON t USING (owner = me())":
        ("policy mine on t", {("relation", "t", False), ("function", "me", False)}),
    "CREATE SEQUENCE s OWNED BY t.id": ("sequence s", {("relation", "t", False)}),
}


@pytest.mark.parametrize("sql", sorted(OBJECTS))
def test_objects_and_references(sql: str) -> None:
    definition = one(sql)
    assert (definition.obj.label, refs(definition)) == OBJECTS[sql]


def test_other_statements_define_nothing() -> None:
    assert defs("SELECT f(1); INSERT INTO t VALUES (1); ALTER TABLE t ADD COLUMN b int; "
                "CREATE INDEX i ON t (a); DO $$ BEGIN PERFORM 1; END $$;") == []


def test_a_body_that_does_not_parse_has_no_references() -> None:
    definition = one("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELEC g() $$")
    assert refs(definition) == set()


# (old, new, the change, or "" when CREATE OR REPLACE can do it)
CHANGES: list[tuple[str, str, str]] = [
    ("CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql RETURN a",
     "CREATE FUNCTION f(a int) RETURNS bigint LANGUAGE sql RETURN a",
     "changes its return type (integer to bigint), which CREATE OR REPLACE cannot do"),
    ("CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql RETURN a",
     "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql RETURN a + 1", ""),
    ("CREATE FUNCTION f(a int) RETURNS TABLE (x int) LANGUAGE sql RETURN a",
     "CREATE FUNCTION f(a int) RETURNS TABLE (x int, y int) LANGUAGE sql RETURN a",
     "changes its return type (SETOF integer (x integer) to SETOF record (x integer, "
     "y integer)), which CREATE OR REPLACE cannot do"),
    ("CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql RETURN a",
     "CREATE FUNCTION f(b int) RETURNS int LANGUAGE sql RETURN b",
     "renames its parameter a to b, which CREATE OR REPLACE cannot do"),
    ("CREATE FUNCTION f(int) RETURNS int LANGUAGE sql RETURN $1",
     "CREATE FUNCTION f(b int) RETURNS int LANGUAGE sql RETURN b", ""),
    ("CREATE FUNCTION f(a int DEFAULT 1) RETURNS int LANGUAGE sql RETURN a",
     "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql RETURN a",
     "removes a parameter default, which CREATE OR REPLACE cannot do"),
    ("CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql RETURN a",
     "CREATE FUNCTION f(a int DEFAULT 1) RETURNS int LANGUAGE sql RETURN a", ""),
    ("CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql RETURN a",
     "CREATE FUNCTION f(a bigint) RETURNS int LANGUAGE sql RETURN a",
     "changes its argument list to (bigint), which makes a new function"),
    ("CREATE VIEW v AS SELECT 1 AS a, 2 AS b", "CREATE VIEW v AS SELECT 1 AS a, 2 AS b, 3 AS c",
     ""),
    ("CREATE VIEW v AS SELECT 1 AS a, 2 AS b", "CREATE VIEW v AS SELECT 2 AS b, 1 AS a",
     "changes its column list (a, b) to (b, a); CREATE OR REPLACE VIEW can only add "
     "columns at the end"),
    ("CREATE VIEW v AS SELECT 1 AS a, 2 AS b", "CREATE VIEW v AS SELECT 1 AS a",
     "changes its column list (a, b) to (a); CREATE OR REPLACE VIEW can only add columns "
     "at the end"),
    ("CREATE VIEW v AS SELECT * FROM t", "CREATE VIEW v AS SELECT a FROM t", ""),
    ("CREATE MATERIALIZED VIEW m AS SELECT 1 AS a", "CREATE MATERIALIZED VIEW m AS SELECT 2 AS a",
     "changes its definition, and a materialized view has no CREATE OR REPLACE"),
    ("CREATE TYPE t AS (a int)", "CREATE TYPE t AS (a int, b int)",
     "changes its definition, and a type has no CREATE OR REPLACE"),
    ("CREATE TYPE t AS (a int)", "CREATE TYPE t AS (a integer)", ""),
    ("CREATE TYPE e AS ENUM ('a')", "CREATE TYPE e AS ENUM ('a', 'b')",
     "changes its definition, and a type has no CREATE OR REPLACE"),
    ("CREATE DOMAIN d AS int", "CREATE DOMAIN d AS int CHECK (VALUE > 0)",
     "changes its definition, and a domain has no CREATE OR REPLACE"),
    ("CREATE TABLE t (a int)", "CREATE TABLE t (a int, b int)", ""),
]


@pytest.mark.parametrize(("old", "new", "expected"), CHANGES)
def test_changes_that_need_a_drop(old: str, new: str, expected: str) -> None:
    found = changes(defs(old), defs(new))
    assert [c.what for c in found] == ([expected] if expected else [])


def test_dependents_are_hard_and_transitive() -> None:
    graph = Graph()
    graph.add("price.sql", defs("CREATE FUNCTION price(int) RETURNS int LANGUAGE sql "
                                "RETURN $1;"))
    graph.add("views.sql", defs("CREATE VIEW a AS SELECT price(1) AS p; "
                                "CREATE VIEW b AS SELECT p FROM a;"))
    graph.add("late.sql", defs("CREATE FUNCTION late() RETURNS int LANGUAGE sql "
                               "AS 'SELECT price(1)'; CREATE VIEW c AS SELECT price(1, 2);"))
    price = graph.entries[0][1].obj
    assert [d.obj.label for d in graph.dependents(price)] == ["view a", "view c", "view b"]
    late = next(d for _c, d in graph.entries if d.obj.name == "late")
    assert [(r.name, u.obj.label) for r, u in graph.uses(late)] == [
        ("price", "function price(integer)")]
    assert graph.uses(late, late=False) == []


def test_calls_pick_the_overload_by_argument_count() -> None:
    graph = Graph()
    graph.add("f.sql", defs("CREATE FUNCTION f(int) RETURNS int LANGUAGE sql RETURN 1; "
                            "CREATE FUNCTION f(int, int, int DEFAULT 3) RETURNS int "
                            "LANGUAGE sql RETURN 2;"))
    graph.add("v.sql", defs("CREATE VIEW v AS SELECT f(1, 2) AS x; "
                            "CREATE VIEW w AS SELECT s.f(1) AS x;"))
    by_view = {d.obj.name: [u.obj.label for _r, u in graph.uses(d)]
               for _c, d in graph.entries if d.obj.kind == "view"}
    assert by_view == {"v": ["function f(integer, integer, integer)"],
                       "w": ["function f(integer)"]}


def test_schemas_must_agree_when_both_are_written() -> None:
    graph = Graph()
    graph.add("f.sql", defs("CREATE FUNCTION a.f() RETURNS int LANGUAGE sql RETURN 1;"))
    graph.add("v.sql", defs("CREATE VIEW v AS SELECT b.f() AS x; "
                            "CREATE VIEW w AS SELECT a.f() AS x;"))
    assert [d.obj.label for d in graph.dependents(graph.entries[0][1].obj)] == ["view w"]
    assert Reference("function", "f", 0) in defs("CREATE VIEW z AS SELECT f()")[0].references


# -- against a real server ------------------------------------------------------------

TYPES = ["int", "integer", "int4", "bigint", "int8", "smallint", "bool", "boolean", "text",
         "varchar(3)", "character varying", "char(2)", "numeric(10,2)", "decimal", "real",
         "float8", "double precision", "timestamptz", "timestamp", "time", "timetz",
         "date", "interval", "uuid", "jsonb", "bytea", "text[]", "int[]", "varbit",
         "pg_catalog.int4"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(TYPES), min_size=0, max_size=4))
def test_signatures_are_printed_as_postgresql_prints_them(database: TestDatabase,
                                                          types: list[str]) -> None:
    sql = (f"CREATE OR REPLACE FUNCTION sig({', '.join(types)}) RETURNS int "
           "LANGUAGE sql RETURN 1")
    label = one(sql).obj.label
    shown = database.query(f"{sql}; SELECT 'sig({','.join(one(sql).obj.args)})'"
                           "::regprocedure::text").splitlines()[-1]
    assert label == "function " + shown.replace(",", ", ")


EXPRESSIONS = ["a", "t.a", "1", "a + 1", "f(a)", "a::text", "1::bigint", "upper(b)",
               "CASE WHEN a > 0 THEN 1 END", "ARRAY[a]", "coalesce(a, 0)", "NULLIF(a, 0)",
               "(a)", "lower(t.b)", "a AS x", "'x'::text", "- a",
               "greatest(a, 2)", "least(a, 2)", "current_date", "current_user",
               "EXISTS (SELECT 1)", "(SELECT 1 AS q)", "ARRAY(SELECT 1)", "a IN (1, 2)"]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(EXPRESSIONS), min_size=1, max_size=4, unique=True))
def test_view_columns_are_named_as_postgresql_names_them(database: TestDatabase,
                                                         targets: list[str]) -> None:
    sql = f"CREATE VIEW vc AS SELECT {', '.join(targets)} FROM (SELECT 1 AS a, 'B' AS b) t"
    ours = one(sql).shape
    setup = "CREATE OR REPLACE FUNCTION f(int) RETURNS int LANGUAGE sql RETURN $1; "
    try:
        columns = database.query(
            f"{setup}DROP VIEW IF EXISTS vc; {sql}; SELECT string_agg(attname, ',' ORDER BY "
            "attnum) FROM pg_attribute WHERE attrelid = 'vc'::regclass").splitlines()[-1]
    except RuntimeError as exc:  # two columns of the same name: so do ours
        assert "specified more than once" in str(exc)
        assert len(set(ours)) < len(ours)
    else:
        assert ",".join(ours) == columns
