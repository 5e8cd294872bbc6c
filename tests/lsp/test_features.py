"""``spawn lsp`` with a real client: which buffers a change re-checks, stale checks
dropped, positions in UTF-16 units (or UTF-8 when negotiated), the ``spawn.variables``
setting, unknown filters in branches not taken, lint warnings."""

from __future__ import annotations

import json
from pathlib import Path

from lsprotocol import types

from tests.lint.conftest import LintProject
from tests.lsp.conftest import Session, run
from tests.lsp.test_server import M, problems_of, where

SELEC = 'syntax error: syntax error at or near "SELEC"'
FROM = 'syntax error: syntax error at or near "FROM"'


def test_a_change_rechecks_that_buffer_and_its_includers_only(project: LintProject) -> None:
    component = project.component("v.sql", "SELECT 1;\n")
    includer = project.migration(M, "")
    other = project.migration("20260101000001-b", "")

    async def scenario(s: Session) -> list[tuple[str, list[tuple[int, int, str]]]]:
        uris = {}
        for path, text in ((component, "SELECT 1;\n"), (includer, "{% include 'v.sql' %}\n"),
                           (other, "SELECT 2;\n")):
            uris[path] = s.open(path, text)
            await s.diagnostics(uris[path])
        s.change(uris[other], "SELECT 2;\nSELEC;\n")
        await s.diagnostics(uris[other])
        s.change(uris[component], "-- v\nSELEC 1;\n")
        seen = []
        for _ in range(2):  # the component and the migration that includes it
            params = await s.published.get()
            seen.append((params.uri, where(list(params.diagnostics))))
        await s.settle()
        while not s.published.empty():  # nothing else was re-checked
            params = s.published.get_nowait()
            seen.append((params.uri, where(list(params.diagnostics))))
        return seen

    seen = run(project.root, scenario)
    assert sorted(seen) == sorted([
        (component.absolute().as_uri(), [(1, 0, SELEC)]),
        (includer.absolute().as_uri(), [(0, 0, f"{SELEC} (at components/v.sql:2:1)")])])


def test_a_newer_change_wins_and_no_stale_diagnostics_follow(project: LintProject) -> None:
    path = project.migration(M, "")
    body = "".join(f"{{% set v{i} = {i} %}}\nSELECT {{{{ v{i} }}}};\n" for i in range(200))

    async def scenario(s: Session) -> list[list[tuple[int, int, str]]]:
        uri = s.open(path, body)
        await s.diagnostics(uri)
        for line in range(1, 40, 2):  # a burst of keystrokes, each moving the error
            s.change(uri, body.replace(f"SELECT {{{{ v{line // 2} }}}}", "SELEC 1", 1))
        final = body.replace("SELECT {{ v199 }}", "SELEC 1", 1)
        s.change(uri, final)
        found = [where(await s.diagnostics(uri))]
        while found[-1] != [(399, 0, SELEC)]:
            found.append(where(await s.diagnostics(uri)))
        await s.settle()
        while not s.published.empty():
            found.append(where(list(s.published.get_nowait().diagnostics)))
        return found

    found = run(project.root, scenario)
    assert found[-1] == [(399, 0, SELEC)]


def test_columns_are_utf16_units_by_default(project: LintProject) -> None:
    path = project.migration(M, "")
    text = "SELECT '😀😀', 'é' FROM FROM;\n"
    # The second FROM starts at code point 22; each emoji is 2 UTF-16 units, 'é' one.
    assert problems_of(project, path, text) == [(0, 24, FROM)]


def test_columns_are_utf8_bytes_when_the_client_asks(project: LintProject) -> None:
    path = project.migration(M, "")
    text = "{% set x = 1 %}\nSELECT '😀' FROM FROM;\n"
    capabilities = types.ClientCapabilities(general=types.GeneralClientCapabilities(
        position_encodings=[types.PositionEncodingKind.Utf8]))

    async def scenario(s: Session) -> list[types.Diagnostic]:
        return await s.diagnostics(s.open(path, text))

    found = run(project.root, scenario, capabilities=capabilities)
    assert where(found) == [(1, 19, FROM)]  # code point 16; the emoji is 4 bytes


def test_definition_and_completion_read_utf16_positions(project: LintProject) -> None:
    target = project.component("views/v.sql", "SELECT 1;\n")
    path = project.migration(M, "")
    text = "-- 😀😀 {% include 'views/v.sql' %}\n-- 😀 {% include 'views/\n"

    async def scenario(s: Session) -> tuple[object, object]:
        uri = s.open(path, text)
        await s.diagnostics(uri)
        definition = await s.client.text_document_definition_async(types.DefinitionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=0, character=31)))  # code point 29: the path's end
        completion = await s.client.text_document_completion_async(types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri),
            position=types.Position(line=1, character=24)))  # code point 23: after 'views/'
        return definition, completion

    definition, completion = run(project.root, scenario)
    assert isinstance(definition, types.Location)
    assert definition.uri == target.absolute().as_uri()
    assert isinstance(completion, types.CompletionList)
    assert [(i.label, i.text_edit) for i in completion.items] == [
        ("views/v.sql", types.TextEdit(range=types.Range(
            start=types.Position(line=1, character=18), end=types.Position(line=1, character=24)),
            new_text="views/v.sql"))]


def variables_project(project: LintProject) -> Path:
    (project.root / "vars").mkdir()
    (project.root / "vars" / "dev.json").write_text('{"table": "dev_t"}', encoding="utf-8")
    (project.root / "vars" / "prod.json").write_text('{"table": "prod_t"}', encoding="utf-8")
    (project.root / "toml.json").write_text('{"table": "toml_t"}', encoding="utf-8")
    project.config('variables = "toml.json"\n')
    return project.migration(M, "SELECT * FROM {{ variables.table | safe }};\n")


def test_spawn_variables_setting_overrides_spawn_toml(project: LintProject) -> None:
    path = variables_project(project)

    async def scenario(s: Session) -> list[object]:
        uri = s.open(path, path.read_text())
        await s.diagnostics(uri)
        found = [await s.preview(uri)]
        s.configure({"spawn": {"variables": "vars/prod.json"}})
        await s.diagnostics(uri)  # re-checked with the new file
        found.append(await s.preview(uri))
        s.configure({"spawn": {"variables": ""}})  # cleared: spawn.toml's again
        await s.diagnostics(uri)
        found.append(await s.preview(uri))
        s.configure({"spawn": {"variables": "vars/none.json"}})
        found.append(where(await s.diagnostics(uri)))
        return found

    dev, prod, cleared, missing = run(project.root, scenario,
                                      options={"spawn": {"variables": "vars/dev.json"}})
    assert [r["sql"] for r in (dev, prod, cleared)] == [  # type: ignore[index]
        "SELECT * FROM dev_t;", "SELECT * FROM prod_t;", "SELECT * FROM toml_t;"]
    assert missing == [(0, 0, "the editor setting spawn.variables names "
                        f"{project.root / 'vars' / 'none.json'}, which is not a file; fix the "
                        "setting (a relative path starts at the workspace folder) or clear it "
                        "to use spawn.toml's")]


def test_flat_spawn_variables_key_is_read_too(project: LintProject) -> None:
    path = variables_project(project)

    async def scenario(s: Session) -> object:
        uri = s.open(path, path.read_text())
        await s.diagnostics(uri)
        s.configure({"spawn.variables": str(project.root / "vars" / "prod.json")})
        await s.diagnostics(uri)
        return await s.preview(uri)

    assert run(project.root, scenario) == {
        "file": f"spawn/migrations/{M}/up.sql", "origin": "working tree components/",
        "sql": "SELECT * FROM prod_t;"}


def test_unknown_filter_in_a_branch_not_taken_is_at_its_line(project: LintProject) -> None:
    path = project.migration(M, "")
    found = problems_of(project, path, "SELECT 1;\n{% if false %}\nSELECT {{ 1 | nope }};\n"
                        "{% endif %}\n")
    assert found == [(2, 0, f"spawn/migrations/{M}/up.sql:3: template syntax error: no "
                      "filter named 'nope'; check its spelling against docs/templating.md "
                      "(every branch is checked, also one that does not run)")]


def test_unknown_test_in_an_included_component_is_at_the_include(
        project: LintProject) -> None:
    project.component("c.sql", "-- c\n{% if 1 is nope %}SELECT 1;{% endif %}\n")
    path = project.migration(M, "")
    found = problems_of(project, path, "SELECT 1;\n{% include 'c.sql' %}\n")
    assert found == [(1, 0, "components/c.sql:2: template syntax error: no test named "
                      "'nope'; check its spelling against docs/templating.md (every branch "
                      "is checked, also one that does not run)")]


def test_lint_findings_are_warnings_at_the_template_line(project: LintProject) -> None:
    project.component("idx.sql", "CREATE INDEX i ON t (a);\n")
    path = project.migration(M, "")
    text = ("SET lock_timeout = '2s';\nBEGIN;\n{% set t = 't' %}\n"
            "ALTER TABLE {{ t | safe }} ADD CONSTRAINT u UNIQUE (a);\n"
            "{% include 'idx.sql' %}\nCOMMIT;\n")

    async def scenario(s: Session) -> list[types.Diagnostic]:
        return await s.diagnostics(s.open(path, text))

    found = run(project.root, scenario)
    assert [(d.range.start.line, d.range.start.character, d.severity, d.code, d.source,
             d.message) for d in found] == [
        (3, 0, types.DiagnosticSeverity.Warning, "SP015", "spawn lint",
         "SP015: UNIQUE constraint u on t builds its index under an ACCESS EXCLUSIVE lock; "
         "CREATE UNIQUE INDEX CONCURRENTLY first (in its own migration), then ADD "
         "CONSTRAINT ... UNIQUE USING INDEX"),
        (4, 0, types.DiagnosticSeverity.Warning, "SP003", "spawn lint",
         "SP003: CREATE INDEX on existing table t blocks writes to it while the index builds; "
         "use CREATE INDEX CONCURRENTLY (outside a transaction block) "
         "(at components/idx.sql:1:1)")]


def test_lint_warnings_follow_disable_comments_and_skip_components(
        project: LintProject) -> None:
    project.config('\n[lint]\ndisable = ["SP011"]\n')
    component = project.component("t.sql", "DROP TABLE t;\n")
    path = project.migration(M, "")
    found = problems_of(project, path, "-- spawn-lint: disable=SP007\nBEGIN;\nDROP TABLE t;\n"
                        "TRUNCATE t;\nCOMMIT;\n")
    assert [message.split(":")[0] for _, _, message in found] == ["SP013"]
    assert problems_of(project, component, "DROP TABLE t;\n") == []


def test_settings_shapes() -> None:
    from spawn_db.lsp.server import variables_setting

    assert variables_setting(None) == (False, None)
    assert variables_setting({"spawn": {"variables": "a.json"}}) == (True, "a.json")
    assert variables_setting({"spawn.variables": "b.json"}) == (True, "b.json")
    assert variables_setting({"variables": "c.json"}) == (True, "c.json")
    assert variables_setting({"spawn": {"path": "spawn"}}) == (True, None)
    assert variables_setting(json.loads('{"spawn": {"variables": 3}}')) == (True, None)


def test_a_test_that_drives_sessions_or_inlines_a_migration_has_no_undefined_names(
        project: LintProject) -> None:
    path = project.spawn / "tests" / "locks" / "test.sql"
    path.parent.mkdir(parents=True)
    path.write_text("", encoding="utf-8")
    text = ("{{ apply_migration('20240101000000-a') }}\nBEGIN;\n"
            "{{ bg('s2', 'lock.sql') }}\n{{ step('s2', 'UPDATE t SET a = 1;') }}\n"
            "COMMIT;\n{{ wait('s2') }}\n")
    strict = project.root / "spawn.toml"
    strict.write_text(strict.read_text() + '\n[templates]\nundefined = "strict"\n',
                      encoding="utf-8")

    assert problems_of(project, path, text) == []
    assert problems_of(project, path, "{{ nope('s2') }}\n") != []
