"""``spawn lint`` reports an unknown filter or test where it is written, also in a branch
that does not run (Jinja 3.1 would only fail when the branch runs), and a statement cut
off at the end of the input as a syntax error."""

from __future__ import annotations

from tests.lint.conftest import LintProject

UP = "spawn/migrations/20260101000000-a/up.sql"


def test_unknown_filter_in_a_branch_not_taken_is_a_render_error(
        lint_project: LintProject) -> None:
    lint_project.migration("20260101000000-a", "BEGIN;\n{% if false %}\n"
                           "SELECT {{ 'x' | escape_literl }};\n{% endif %}\nCOMMIT;\n")
    result = lint_project.lint()
    assert result.exit_code == 1
    assert result.stdout == (
        f"{UP}:3:1: error SP900: {UP}:3: template syntax error: no filter named "
        "'escape_literl'; check its spelling against docs/templating.md (every branch is "
        "checked, also one that does not run)\n")


def test_unknown_test_inside_a_macro_never_called_is_a_render_error(
        lint_project: LintProject) -> None:
    lint_project.component("m.sql", "{% macro m(x) %}\n{% if x is numbr %}1{% endif %}\n"
                           "{% endmacro %}\n")
    lint_project.migration("20260101000000-a", "{% import 'm.sql' as m %}\nSELECT 1;\n")
    result = lint_project.lint()
    assert result.exit_code == 1
    assert result.stdout == (
        "spawn/components/m.sql:2:1: error SP900: components/m.sql:2: template syntax error: "
        "no test named 'numbr'; check its spelling against docs/templating.md (every branch "
        "is checked, also one that does not run)\n")


def test_known_filters_and_tests_in_untaken_branches_pass(lint_project: LintProject) -> None:
    lint_project.migration("20260101000000-a", "{% if false %}\n"
                           "SELECT {{ 'x' | escape_literal }}{% if 1 is number %}1{% endif %};"
                           "\n{% endif %}\nSELECT 1;\n")
    result = lint_project.lint()
    assert (result.exit_code, result.stdout) == (0, "")


def test_statement_cut_off_at_the_end_of_the_input_is_a_syntax_error(
        lint_project: LintProject) -> None:
    """pglast gives no position for "at end of input"; that was a TypeError (a traceback)."""
    lint_project.migration("20260101000000-a", "SELECT 1;\nSELECT (\n")
    result = lint_project.lint()
    assert result.exit_code == 1
    assert result.stdout == (
        f"{UP}:2:9: error SP000: syntax error: syntax error at end of input\n")
