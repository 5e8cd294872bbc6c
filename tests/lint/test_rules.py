"""Each lint rule with a migration that trips it and the safe way that does not, through
the real parser (pglast) and the real rules."""

from __future__ import annotations

import pytest

from spawn_db.lint.parse import parse_script
from spawn_db.lint.rules import COMPONENT_RULES, DISABLEABLE, RULES, check_statements

LT = "SET lock_timeout = '2s';\n"

# rule -> (risky migration, safe migration)
CASES: dict[str, tuple[str, str]] = {
    "SP001": (LT + "BEGIN;\nALTER TABLE t ADD COLUMN id uuid DEFAULT gen_random_uuid();\nCOMMIT;",
              LT + "BEGIN;\nALTER TABLE t ADD COLUMN at timestamptz DEFAULT now();\nCOMMIT;"),
    "SP002": (LT + "BEGIN;\nALTER TABLE t ADD COLUMN n int NOT NULL;\nCOMMIT;",
              LT + "BEGIN;\nALTER TABLE t ADD COLUMN n int NOT NULL DEFAULT 0;\nCOMMIT;"),
    "SP003": ("BEGIN;\nCREATE INDEX i ON t (a);\nCOMMIT;",
              "CREATE INDEX CONCURRENTLY i ON t (a);"),
    "SP004": ("BEGIN;\nCREATE INDEX CONCURRENTLY i ON t (a);\nCOMMIT;",
              "CREATE INDEX CONCURRENTLY i ON t (a);"),
    "SP005": (LT + "BEGIN;\nALTER TABLE t ALTER COLUMN a TYPE bigint;\nCOMMIT;",
              "BEGIN;\nCREATE TABLE n (a int);\nALTER TABLE n ALTER COLUMN a TYPE bigint;\n"
              "COMMIT;"),
    "SP006": (LT + "BEGIN;\nALTER TABLE t RENAME COLUMN a TO b;\nCOMMIT;",
              LT + "BEGIN;\nALTER TABLE t ADD COLUMN b int;\nCOMMIT;"),
    "SP007": (LT + "BEGIN;\nDROP TABLE t;\nCOMMIT;",
              "BEGIN;\nCREATE TABLE n (a int);\nDROP TABLE n;\nCOMMIT;"),
    "SP008": (LT + "BEGIN;\nALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (u) REFERENCES u (id);"
              "\nCOMMIT;",
              LT + "BEGIN;\nALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (u) REFERENCES u (id) "
              "NOT VALID;\nALTER TABLE t VALIDATE CONSTRAINT f;\nCOMMIT;"),
    "SP009": (LT + "BEGIN;\nALTER TABLE t ALTER COLUMN a SET NOT NULL;\nCOMMIT;",
              LT + "BEGIN;\nALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL) NOT VALID;\n"
              "ALTER TABLE t VALIDATE CONSTRAINT c;\nALTER TABLE t ALTER COLUMN a SET NOT NULL;"
              "\nCOMMIT;"),
    "SP011": ("BEGIN;\nALTER TABLE t ADD COLUMN b int;\nCOMMIT;",
              "BEGIN;\nSET LOCAL lock_timeout = '2s';\nALTER TABLE t ADD COLUMN b int;\nCOMMIT;"),
    "SP012": ("VACUUM (FULL) t;", "VACUUM (ANALYZE) t;"),
    "SP013": (LT + "BEGIN;\nTRUNCATE t;\nCOMMIT;", LT + "BEGIN;\nDELETE FROM t WHERE a < 10;"
              "\nCOMMIT;"),
    "SP014": ("CREATE TABLE a (id int);\nCREATE TABLE b (id int);",
              "BEGIN;\nCREATE TABLE a (id int);\nCREATE TABLE b (id int);\nCOMMIT;"),
    # SP015-SP016 (lsp2)
    "SP015": (LT + "BEGIN;\nALTER TABLE t ADD CONSTRAINT u UNIQUE (a);\nCOMMIT;",
              "CREATE UNIQUE INDEX CONCURRENTLY u ON t (a);"),
    "SP016": (LT + "BEGIN;\nALTER TABLE t ADD COLUMN u int REFERENCES u (id);\nCOMMIT;",
              LT + "BEGIN;\nALTER TABLE t ADD COLUMN u int;\nALTER TABLE t ADD CONSTRAINT f "
              "FOREIGN KEY (u) REFERENCES u (id) NOT VALID;\nALTER TABLE t VALIDATE CONSTRAINT f;"
              "\nCOMMIT;"),
}


def rules_hit(sql: str) -> list[str]:
    parsed = parse_script(sql)
    assert parsed.problems == ()
    return [hit.rule for hit in check_statements(parsed.statements)]


def test_every_rule_has_cases() -> None:
    assert set(CASES) == set(DISABLEABLE - COMPONENT_RULES)  # those: tests/lint/test_deps*.py


@pytest.mark.parametrize("rule", sorted(CASES))
def test_risky_migration_trips_the_rule(rule: str) -> None:
    assert rule in rules_hit(CASES[rule][0])


@pytest.mark.parametrize("rule", sorted(CASES))
def test_safe_migration_does_not(rule: str) -> None:
    assert rules_hit(CASES[rule][1]) == []


@pytest.mark.parametrize(("sql", "expected"), [
    ("ALTER TABLE t ADD COLUMN id bigserial;", ["SP001"]),
    ("ALTER TABLE t ADD COLUMN s int GENERATED ALWAYS AS (a * 2) STORED;", ["SP001"]),
    ("ALTER TABLE t ADD COLUMN r float8 DEFAULT (1 + random());", ["SP001"]),
    ("ALTER TABLE t ADD COLUMN id int GENERATED ALWAYS AS IDENTITY;", []),
    ("ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0);", ["SP008"]),
    ("ALTER TABLE t ADD CONSTRAINT c CHECK (a > 0) NOT VALID;", []),
    ("ALTER TABLE t DROP COLUMN a;", ["SP007"]),
    ("ALTER TABLE t RENAME TO u;", ["SP006"]),
    ("CLUSTER t USING i;", ["SP012"]),
    ("REINDEX INDEX CONCURRENTLY i;", []),
    ("DROP INDEX CONCURRENTLY i;", []),
])
def test_more_shapes(sql: str, expected: list[str]) -> None:
    """Outside a transaction, one statement, lock_timeout set: only the rule itself fires."""
    assert rules_hit(LT + sql) == expected


@pytest.mark.parametrize("sql", ["REINDEX INDEX CONCURRENTLY i;", "DROP INDEX CONCURRENTLY i;"])
def test_other_concurrent_commands_in_a_transaction(sql: str) -> None:
    assert rules_hit(f"BEGIN;\n{sql}\nCOMMIT;") == ["SP004"]


def test_tables_created_in_the_same_migration_are_not_existing() -> None:
    sql = ("BEGIN;\nCREATE TABLE n (a int);\nCREATE INDEX ON n (a);\n"
           "ALTER TABLE n ADD COLUMN b int NOT NULL;\nALTER TABLE n RENAME COLUMN a TO c;\n"
           "TRUNCATE n;\nCOMMIT;")
    assert rules_hit(sql) == []


def test_lock_timeout_is_reported_once_at_the_first_statement() -> None:
    parsed = parse_script("BEGIN;\nALTER TABLE t ADD COLUMN a int;\nDROP TABLE u;\nCOMMIT;")
    hits = [(h.rule, h.offset) for h in check_statements(parsed.statements)]
    assert hits == [("SP011", 7), ("SP007", 39)]


def test_rules_are_documented() -> None:
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "lint.md").read_text(encoding="utf-8")
    for rule in RULES.values():
        assert f"### {rule.id} `{rule.name}`" in page


# SP015-SP016 (lsp2)
@pytest.mark.parametrize(("sql", "expected"), [
    ("ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX u;", []),
    ("ALTER TABLE t ADD CONSTRAINT p PRIMARY KEY USING INDEX p;", []),
    ("ALTER TABLE t ADD PRIMARY KEY (a);", ["SP015"]),
    ("ALTER TABLE t ADD COLUMN u int UNIQUE;", ["SP015"]),
    ("ALTER TABLE t ADD COLUMN u int REFERENCES u (id) ON DELETE CASCADE;", ["SP016"]),
    ("ALTER TABLE t ADD CONSTRAINT f FOREIGN KEY (u) REFERENCES u (id) NOT VALID;", []),
])
def test_index_and_reference_built_under_lock(sql: str, expected: list[str]) -> None:
    assert rules_hit(LT + sql) == expected


def test_unique_and_references_on_a_new_table_are_fine() -> None:
    sql = ("BEGIN;\nCREATE TABLE n (a int);\nALTER TABLE n ADD CONSTRAINT u UNIQUE (a);\n"
           "ALTER TABLE n ADD COLUMN r int REFERENCES u (id);\nCOMMIT;")
    assert rules_hit(sql) == []


def test_sp015_and_sp016_messages_name_the_table_and_the_fix() -> None:
    parsed = parse_script(LT + "ALTER TABLE t ADD CONSTRAINT u UNIQUE (a), "
                          "ADD COLUMN r int REFERENCES u (id);")
    assert [(h.rule, h.message) for h in check_statements(parsed.statements)] == [
        ("SP015", "UNIQUE constraint u on t builds its index under an ACCESS EXCLUSIVE lock; "
                  "CREATE UNIQUE INDEX CONCURRENTLY first (in its own migration), then ADD "
                  "CONSTRAINT ... UNIQUE USING INDEX"),
        ("SP016", "column t.r is added with an inline REFERENCES u, which validates the "
                  "foreign key while locking t and u; add the column, then ADD CONSTRAINT ... "
                  "FOREIGN KEY ... NOT VALID, then VALIDATE CONSTRAINT in a later statement")]
