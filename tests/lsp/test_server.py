"""``spawn lsp`` over stdio with a real client: diagnostics of unsaved buffers at the
right line, preview, hover, definition and completion."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from tests.helpers import run_spawn
from tests.lint.conftest import LintProject
from tests.lsp.conftest import Session, answer, run

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


def test_preview_renders_the_buffer_with_working_tree_components(
        project: LintProject) -> None:
    component = project.component("t.sql", "CREATE TABLE t (id int);\n")
    path = project.migration(M, "SELECT 0;\n")

    async def scenario(s: Session) -> object:
        await s.diagnostics(s.open(component, "CREATE TABLE t (id bigint);\n"))
        await s.diagnostics(s.open(path, "BEGIN;\n{% include 't.sql' %}\nCOMMIT;\n"))
        return await s.preview(path.absolute().as_uri())

    assert run(project.root, scenario) == {
        "file": f"spawn/migrations/{M}/up.sql", "origin": "working tree components/",
        "sql": "BEGIN;\nCREATE TABLE t (id bigint);\nCOMMIT;"}  # as rendered: no trailer


def test_preview_of_a_pinned_migration_uses_its_pin_and_says_so(
        project: LintProject) -> None:
    project.component("t.sql", "CREATE TABLE t (id int);\n")
    path = project.migration(M, "BEGIN;\n{% include 't.sql' %}\nCOMMIT;\n")
    pinned = run_spawn("migration", "pin", M, cwd=project.root)
    assert pinned.exit_code == 0, pinned.stderr
    pin = (path.parent / "lock.toml").read_text().split('"')[1]
    project.component("t.sql", "CREATE TABLE t (id text);\n")  # changed since the pin

    async def scenario(s: Session) -> tuple[object, types.Hover | None]:
        uri = s.open(path, "BEGIN;\n{% include 't.sql' %}\nSELECT 2;\nCOMMIT;\n")
        await s.diagnostics(uri)
        hover = await answer(s.client.text_document_hover_async(types.HoverParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=0, character=0))))
        return await s.preview(uri), hover

    preview, hover = run(project.root, scenario)
    sql = "BEGIN;\nCREATE TABLE t (id int);\nSELECT 2;\nCOMMIT;"
    assert preview == {"file": f"spawn/migrations/{M}/up.sql",
                       "origin": f"pinned components (pin {pin[:12]})", "sql": sql}
    assert hover is not None and isinstance(hover.contents, types.MarkupContent)
    assert hover.contents.value == (
        f"**spawn/migrations/{M}/up.sql** rendered with pinned components (pin {pin[:12]}):"
        f"\n\n```sql\n{sql}\n```")


def test_preview_of_a_buffer_that_does_not_render_is_a_request_error(
        project: LintProject) -> None:
    path = project.migration(M, "")

    async def scenario(s: Session) -> str:
        uri = s.open(path, "{% include 'gone.sql' %}\n")
        await s.diagnostics(uri)
        try:
            await s.preview(uri)
        except Exception as exc:  # pygls raises the JSON-RPC error it received
            return str(exc)
        return "no error"

    assert f"spawn/migrations/{M}/up.sql:1: component 'gone.sql' not found" in run(
        project.root, scenario)


def test_definition_of_an_include_or_read_path_opens_the_component(
        project: LintProject) -> None:
    target = project.component("views/v.sql", "CREATE VIEW v AS SELECT 1;\n")
    project.component("data.json", "{}")
    text = ("BEGIN;\n{% include 'views/v.sql' %}\n{% set d = read_json(\"data.json\") %}\n"
            "{% include '../spawn.toml' %}\nCOMMIT;\n")
    path = project.migration(M, text)

    async def scenario(s: Session) -> list[object]:
        uri = s.open(path, text)
        await s.diagnostics(uri)
        found: list[object] = []
        for line, character in ((1, 15), (2, 26), (1, 3), (3, 15)):
            params = types.DefinitionParams(
                text_document=types.TextDocumentIdentifier(uri=uri),
                position=types.Position(line=line, character=character))
            found.append(await answer(s.client.text_document_definition_async(params)))
        return found

    on_include, on_read, off_path, leaving = run(project.root, scenario)
    assert isinstance(on_include, types.Location)
    assert on_include.uri == target.absolute().as_uri()
    assert isinstance(on_read, types.Location)
    assert on_read.uri == (project.spawn / "components" / "data.json").absolute().as_uri()
    assert (off_path, leaving) == (None, None)


def test_completion_lists_component_paths_inside_an_include(project: LintProject) -> None:
    for name in ("views/a.sql", "views/b.sql", "functions/f.sql"):
        project.component(name, "SELECT 1;\n")
    path = project.migration(M, "")
    text = "BEGIN;\n{% include 'views/\n"

    async def scenario(s: Session) -> object:
        uri = s.open(path, text)
        await s.diagnostics(uri)
        return await answer(s.client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=1, character=18))))

    found = run(project.root, scenario)
    assert isinstance(found, types.CompletionList)
    assert [(i.label, i.text_edit) for i in found.items] == [
        (name, types.TextEdit(range=types.Range(start=types.Position(line=1, character=12),
                                                end=types.Position(line=1, character=18)),
                              new_text=name))
        for name in ("views/a.sql", "views/b.sql")]


def test_undefined_value_in_strict_mode_is_at_its_line(project: LintProject) -> None:
    project.config('\n[templates]\nundefined = "strict"\n')
    path = project.migration(M, "")
    found = problems_of(project, path, "SELECT 1;\n\nSELECT {{ variables.role }};\n")
    assert found == [(2, 0, f"spawn/migrations/{M}/up.sql:3: `variables.role` is undefined "
                      "(strict mode: [templates] undefined = \"strict\" or --strict); define "
                      "it, or write `variables.role | default(...)` or test `variables.role "
                      "is defined`")]


def test_a_broken_spawn_toml_is_a_diagnostic_not_a_crash(project: LintProject) -> None:
    (project.root / "spawn.toml").write_text("spawn_folder = \n", encoding="utf-8")
    path = project.migration(M, "")
    [(line, column, message)] = problems_of(project, path, "SELECT 1;\n")
    assert (line, column) == (0, 0)
    assert message.startswith(f"{project.root / 'spawn.toml'}:1: invalid TOML: ")


def test_document_links_name_the_existing_components_only(project: LintProject) -> None:
    view = project.component("views/v.sql", "SELECT 1;\n")
    data = project.component("data.json", "{}")
    text = ("{% include 'views/v.sql' %}\n{% include 'gone.sql' %}\n"
            "{% set d = 'data.json' | read_json %}\n{% include '../spawn.toml' %}\n")
    path = project.migration(M, text)

    async def scenario(s: Session) -> object:
        uri = s.open(path, text)
        await s.diagnostics(uri)
        params = types.DocumentLinkParams(text_document=types.TextDocumentIdentifier(uri=uri))
        return list(await answer(s.client.text_document_document_link_async(params)) or [])

    def span(line: int, start: int, end: int) -> types.Range:
        return types.Range(start=types.Position(line=line, character=start),
                           end=types.Position(line=line, character=end))

    assert run(project.root, scenario) == [
        types.DocumentLink(range=span(0, 12, 23), target=view.absolute().as_uri()),
        types.DocumentLink(range=span(2, 12, 21), target=data.absolute().as_uri())]
