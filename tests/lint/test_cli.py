"""``spawn lint`` through the real entry point: locations in the template source, formats,
exit codes, and the two ways to disable a rule."""

from __future__ import annotations

import json

from tests.helpers import run_spawn
from tests.lint.conftest import LintProject

UP = "spawn/migrations/{}/up.sql"


def test_clean_migrations_exit_0_with_a_summary(lint_project: LintProject) -> None:
    lint_project.migration("20260101000000-a", "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n")
    result = lint_project.lint()
    assert (result.exit_code, result.stdout) == (0, "")
    assert result.stderr == "1 migration linted: 0 errors, 0 warnings\n"


def test_syntax_error_in_a_plain_migration_is_at_its_line_and_column(
        lint_project: LintProject) -> None:
    lint_project.migration("20260101000000-a",
                           "BEGIN;\nCREATE TABLE a (id int);\nSELEC * FROM a;\nCOMMIT;\n")
    result = lint_project.lint()
    assert result.exit_code == 1
    assert result.stdout == (
        f"{UP.format('20260101000000-a')}:3:1: error SP000: syntax error: syntax error at or "
        'near "SELEC"\n')


def test_syntax_error_inside_an_included_component_names_the_component_and_chain(
        lint_project: LintProject) -> None:
    lint_project.component("views/v.sql", "-- a view\nCREATE VIEW v AS\n  SELECT 1 FROM;\n")
    lint_project.component("all.sql", "-- everything\n{% include 'views/v.sql' %}\n")
    lint_project.migration("20260101000000-a",
                           "BEGIN;\n{% set x = 1 %}\n\n{% include 'all.sql' %}\nCOMMIT;\n")
    result = lint_project.lint("--format", "json")
    assert result.exit_code == 1
    [finding] = json.loads(result.stdout)["findings"]
    assert finding == {
        "rule": "SP000", "severity": "error",
        "message": 'syntax error: syntax error at or near ";"',
        "migration": "20260101000000-a", "file": "spawn/components/views/v.sql",
        "line": 3, "column": 16,
        "included_from": [{"file": UP.format("20260101000000-a"), "line": 4},
                          {"file": "spawn/components/all.sql", "line": 2}],
    }
    text = lint_project.lint()
    assert text.stdout == (
        'spawn/components/views/v.sql:3:16: error SP000: syntax error: syntax error at or '
        'near ";" (included from spawn/components/all.sql:2, from '
        f"{UP.format('20260101000000-a')}:4)\n")


def test_syntax_error_after_template_lines_keeps_the_source_line(
        lint_project: LintProject) -> None:
    lint_project.migration("20260101000000-a", (
        "BEGIN;\n"
        "{% for t in ['a', 'b'] %}\n"
        "CREATE TABLE {{ t | escape_identifier }} (id int);\n"
        "{% endfor %}\n"
        "{# a comment\n spanning lines #}\n"
        "INSERT INTO a VALUES (1,);\n"
        "COMMIT;\n"))
    result = lint_project.lint()
    assert result.stdout == (
        f"{UP.format('20260101000000-a')}:7:25: error SP000: syntax error: syntax error at or "
        'near ")"\n')


def test_meta_commands_are_not_sql(lint_project: LintProject) -> None:
    lint_project.migration("20260101000000-a",
                           "\\set ON_ERROR_STOP on\nBEGIN;\nSELECT 1;\n\\echo done\nCOMMIT;\n")
    assert lint_project.lint().exit_code == 0


def test_github_format_annotates_errors_and_warnings(lint_project: LintProject) -> None:
    lint_project.migration("20260101000000-a", (
        "BEGIN;\nSET LOCAL lock_timeout = '2s';\nCREATE INDEX i ON t (a);\n"
        "ALTER TABLE t ADD COLUMN b int NOT NULL;\nCOMMIT;\n"))
    result = lint_project.lint("--format", "github")
    up = UP.format("20260101000000-a")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"::warning file={up},line=3,col=1,title=SP003::CREATE INDEX on existing table t "
        "blocks writes to it while the index builds; use CREATE INDEX CONCURRENTLY (outside a "
        "transaction block)",
        f"::error file={up},line=4,col=1,title=SP002::NOT NULL column t.b has no default, so "
        "adding it fails on a table with rows; give it a (non-volatile) DEFAULT, or add it "
        "nullable, backfill, then SET NOT NULL",
    ]


def test_warnings_alone_exit_0(lint_project: LintProject) -> None:
    lint_project.migration("20260101000000-a", "BEGIN;\nTRUNCATE t;\nCOMMIT;\n")
    result = lint_project.lint()
    assert result.exit_code == 0
    assert "warning SP013" in result.stdout
    assert result.stderr == "1 migration linted: 0 errors, 2 warnings\n"


def test_config_and_comment_disable_rules(lint_project: LintProject) -> None:
    lint_project.migration("20260101000000-a", "BEGIN;\nTRUNCATE t;\nCOMMIT;\n")
    lint_project.migration("20260102000000-b",
                           "-- spawn-lint: disable=SP013\nBEGIN;\nTRUNCATE u;\nCOMMIT;\n")
    lint_project.config('\n[lint]\ndisable = ["SP011"]\n')
    result = lint_project.lint("--format", "json")
    findings = json.loads(result.stdout)["findings"]
    assert [(f["migration"], f["rule"]) for f in findings] == [("20260101000000-a", "SP013")]


def test_unknown_rule_ids_are_configuration_errors(lint_project: LintProject) -> None:
    lint_project.migration("20260101000000-a", "-- spawn-lint: disable=SP999\nSELECT 1;\n")
    result = lint_project.lint()
    assert result.exit_code == 2
    assert result.stderr.startswith(
        f"error: {UP.format('20260101000000-a')} (-- spawn-lint: disable=...): SP999 is not a "
        "rule that can be disabled")
    lint_project.migration("20260101000000-a", "SELECT 1;\n")
    lint_project.config('\n[lint]\ndisable = ["SP03"]\n')
    result = lint_project.lint()
    assert result.exit_code == 2
    assert "[lint] disable: SP03 is not a rule that can be disabled" in result.stderr


def test_unknown_lint_and_migrations_keys_warn(lint_project: LintProject) -> None:
    """Both tables are parsed after the others: their warnings used to be dropped."""
    lint_project.migration("20260101000000-a", "SELECT 1;\n")
    lint_project.config('\n[lint]\ndisabled = ["SP003"]\n[migrations]\nordr = "strict"\n')
    result = lint_project.lint()
    config = lint_project.root / "spawn.toml"
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"warning: unknown key `ordr` in {config} [migrations] (ignored; the closest known key "
        "is `order`)",
        f"warning: unknown key `disabled` in {config} [lint] (ignored; the closest known key "
        "is `disable`)",
        "1 migration linted: 0 errors, 0 warnings",
    ]


def test_named_migrations_only_and_all(lint_project: LintProject) -> None:
    lint_project.migration("20260101000000-a", "SELEC 1;\n")
    lint_project.migration("20260102000000-b", "SELECT 1;\n")
    assert lint_project.lint("20260102000000-b").exit_code == 0
    assert lint_project.lint("--all").exit_code == 1
    both = lint_project.lint("--all", "20260102000000-b")
    assert (both.exit_code, both.stderr) == (
        2, "error: name migrations or pass --all, not both\n")


def test_render_errors_are_findings(lint_project: LintProject) -> None:
    lint_project.migration("20260101000000-a", "SELECT 1;\n{% include 'missing.sql' %}\n")
    result = lint_project.lint()
    assert result.exit_code == 1
    assert result.stdout.startswith(f"{UP.format('20260101000000-a')}:2:1: error SP900: ")
    assert "component 'missing.sql' not found" in result.stdout


def test_check_lint_fails_on_lint_errors_only(lint_project: LintProject) -> None:
    lint_project.migration("20260101000000-a", "BEGIN;\nTRUNCATE t;\nCOMMIT;\n")
    pinned = run_spawn("migration", "pin", "20260101000000-a", cwd=lint_project.root)
    assert pinned.exit_code == 0, pinned.stderr
    up = UP.format("20260101000000-a")
    result = run_spawn("check", "--lint", cwd=lint_project.root)
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"warning: {up}:2:1: SP011: TRUNCATE t takes an ACCESS EXCLUSIVE lock with no "
        "lock_timeout set; start the migration with SET lock_timeout = '2s' (or SET LOCAL "
        "inside the transaction) so it fails instead of blocking every query",
        f"warning: {up}:2:1: SP013: TRUNCATE t deletes every row under an ACCESS EXCLUSIVE "
        "lock; use DELETE in batches, or disable SP013 if intended",
    ]
    assert run_spawn("check", cwd=lint_project.root).stderr == ""
    (lint_project.spawn / "migrations" / "20260101000000-a" / "up.sql").write_text(
        "SELEC 1;\n", encoding="utf-8")
    failed = run_spawn("check", "--lint", "--format", "json", cwd=lint_project.root)
    assert failed.exit_code == 1
    assert json.loads(failed.stdout) == {"ok": False, "warnings": [{
        "migration": "20260101000000-a", "kind": "lint",
        "message": f'{up}:1:1: SP000: syntax error: syntax error at or near "SELEC"'}]}


def test_pinned_migrations_render_from_their_pin(lint_project: LintProject) -> None:
    """As apply: a pinned migration reads its components from the pin, so an edit in the
    working tree breaks only the unpinned migration that includes it."""
    lint_project.component("v.sql", "SELECT 1;\n")
    lint_project.migration("20260101000000-a", "{% include 'v.sql' %}\n")
    lint_project.migration("20260102000000-b", "{% include 'v.sql' %}\n")
    pinned = run_spawn("migration", "pin", "20260101000000-a", cwd=lint_project.root)
    assert pinned.exit_code == 0, pinned.stderr
    lint_project.component("v.sql", "SELECT 1 FROM;\n")
    result = lint_project.lint("--format", "json")
    assert [(f["migration"], f["file"], f["line"], f["rule"])
            for f in json.loads(result.stdout)["findings"]] == [
        ("20260102000000-b", "spawn/components/v.sql", 1, "SP000")]
