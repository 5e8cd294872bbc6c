"""``spawn lsp`` over stdio with a real client: diagnostics of unsaved buffers at the
right line, preview, hover, definition and completion."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from tests.lint.conftest import LintProject
from tests.lsp.conftest import Session, run

M = "20260101000000-a"


def where(diagnostics: list[types.Diagnostic]) -> list[tuple[int, int, str]]:
    return [(d.range.start.line, d.range.start.character, d.message) for d in diagnostics]


def test_sql_syntax_error_of_the_unsaved_buffer_is_at_its_line(project: LintProject) -> None:
    path = project.migration(M, "BEGIN;\nCOMMIT;\n")

    async def scenario(s: Session) -> tuple[list[types.Diagnostic], list[types.Diagnostic]]:
        uri = s.open(path, "BEGIN;\nCOMMIT;\n")
        clean = await s.diagnostics(uri)
        s.change(uri, "BEGIN;\n{% set t = 'a' %}\nCREATE TABLE {{ t|safe }} (id int);\n"
                      "SELEC 1;\nCOMMIT;\n")
        return clean, await s.diagnostics(uri)

    clean, found = run(project.root, scenario)
    assert clean == []
    assert where(found) == [(3, 0, 'syntax error: syntax error at or near "SELEC"')]
    assert found[0].source == "spawn sql"
    assert path.read_text() == "BEGIN;\nCOMMIT;\n"  # the server rendered the buffer


def problems_of(project: LintProject, path: Path, text: str,
                others: dict[Path, str] | None = None) -> list[tuple[int, int, str]]:
    """The diagnostics of ``path`` opened with ``text``, after ``others`` were opened."""

    async def scenario(s: Session) -> list[types.Diagnostic]:
        for other, buffer in (others or {}).items():
            await s.diagnostics(s.open(other, buffer))
        return await s.diagnostics(s.open(path, text))

    return where(run(project.root, scenario))


def test_template_syntax_error_is_at_its_line(project: LintProject) -> None:
    path = project.migration(M, "")
    found = problems_of(project, path, "BEGIN;\n\n-- three\nSELECT {{ 1 + }};\nCOMMIT;\n")
    assert found == [(3, 0, f"spawn/migrations/{M}/up.sql:4: template syntax error: "
                      "unexpected 'end of print statement'")]


def test_missing_include_is_at_the_include_line(project: LintProject) -> None:
    path = project.migration(M, "")
    found = problems_of(project, path, "BEGIN;\n-- x\n{% include 'nope.sql' %}\nCOMMIT;\n")
    assert found == [(2, 0, f"spawn/migrations/{M}/up.sql:3: component 'nope.sql' not found "
                      "in components/; check the path (it is relative to components/)")]


def test_include_leaving_components_is_refused_at_its_line(project: LintProject) -> None:
    path = project.migration(M, "")
    found = problems_of(project, path, "SELECT 1;\n{% include '../spawn.toml' %}\n")
    assert found == [(1, 0, f"spawn/migrations/{M}/up.sql:2: path '../spawn.toml' refused: "
                      "it leaves components/ (remove the `..`)")]


def test_unsaved_component_buffer_renders_into_the_migration(project: LintProject) -> None:
    """The component's error is in its buffer only (saved, it is fine): the migration that
    includes it shows the error at the include line, naming the component's line."""
    component = project.component("views/v.sql", "CREATE VIEW v AS SELECT 1;\n")
    path = project.migration(M, "")
    found = problems_of(project, path, "BEGIN;\n{% include 'views/v.sql' %}\nCOMMIT;\n",
                        {component: "-- v\nCREATE VIEW v AS SELECT 1 FROM;\n"})
    assert found == [(1, 0, 'syntax error: syntax error at or near ";" '
                      "(at components/views/v.sql:2:31)")]


def test_a_component_buffer_has_its_own_diagnostics(project: LintProject) -> None:
    path = project.component("f.sql", "")
    found = problems_of(project, path, "-- f\n\nCREATE FUNCTION f() RETURNS int\n"
                        "  LANGUAGE sql AS $$ SELECT 1 $$\nSELEC;\n")
    assert found == [(4, 0, 'syntax error: syntax error at or near "SELEC"')]


def test_files_spawn_does_not_render_have_no_diagnostics(project: LintProject) -> None:
    other = project.root / "notes.sql"
    other.write_text("", encoding="utf-8")
    assert problems_of(project, other, "{% if %} SELEC") == []
