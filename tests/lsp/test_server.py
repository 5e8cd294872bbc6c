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
