"""The language server: pygls over stdio, answering from ``analysis``.

Every change to an open buffer re-checks all open buffers of the project: a
component being edited changes what the migrations that include it render.
Handlers never raise to the client for a project problem: a broken
``spawn.toml`` or template is a diagnostic, a failed preview an LSP error
whose message is the ``SpawnError`` sentence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path

from spawn_db import __version__
from spawn_db.errors import SpawnError
from spawn_db.lsp import analysis

PREVIEW_COMMAND = "spawn.preview"
COMPLETION_TRIGGERS = ['"', "'", "/"]


def create_server() -> LanguageServer:
    """A server with spawn's features registered (a new one per call, for tests)."""
    server = LanguageServer("spawn", __version__)
    _register(server)
    return server


def _path(uri: str) -> Path:
    return Path(to_fs_path(uri) or uri).absolute()


def _buffers(server: LanguageServer) -> dict[str, str]:
    """Every open buffer's text by absolute path (the overlay over ``components/``)."""
    return {str(_path(uri)): doc.source
            for uri, doc in server.workspace.text_documents.items()}


def _publish(server: LanguageServer, uri: str) -> None:
    text = server.workspace.get_text_document(uri).source
    found = analysis.problems(_path(uri), text, _buffers(server))
    diagnostics = [
        types.Diagnostic(
            range=types.Range(start=types.Position(line=p.line, character=p.column),
                              end=types.Position(line=p.line + 1, character=0)),
            message=p.message, severity=types.DiagnosticSeverity.Error,
            source=f"spawn {p.source}")
        for p in found]
    server.text_document_publish_diagnostics(
        types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics))


def _publish_all(server: LanguageServer) -> None:
    for uri in list(server.workspace.text_documents):
        _publish(server, uri)


def _preview(server: LanguageServer, uri: str) -> analysis.Preview:
    text = server.workspace.get_text_document(uri).source
    return analysis.preview(_path(uri), text, _buffers(server))


def _register(server: LanguageServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: LanguageServer, params: types.DidOpenTextDocumentParams) -> None:
        _publish_all(ls)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: LanguageServer, params: types.DidChangeTextDocumentParams) -> None:
        _publish_all(ls)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: LanguageServer, params: types.DidSaveTextDocumentParams) -> None:
        _publish_all(ls)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: LanguageServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=params.text_document.uri, diagnostics=[]))
        _publish_all(ls)

    @server.command(PREVIEW_COMMAND)
    def preview(ls: LanguageServer, uri: str) -> dict[str, str]:
        """``spawn.preview <uri>``: the rendered SQL of the open buffer ``uri``."""
        try:
            found = _preview(ls, uri)
        except SpawnError as exc:
            raise _request_failed(exc) from None
        return {"file": found.file, "origin": found.origin, "sql": found.sql}

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    def hover(ls: LanguageServer, params: types.HoverParams) -> types.Hover | None:
        try:
            found = _preview(ls, params.text_document.uri)
        except SpawnError as exc:
            value = f"spawn: does not render: {exc.message}"
        else:
            value = (f"**{found.file}** rendered with {found.origin}:\n\n"
                     f"```sql\n{found.sql}\n```")
        return types.Hover(contents=types.MarkupContent(
            kind=types.MarkupKind.Markdown, value=value))

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: LanguageServer, params: types.DefinitionParams
                   ) -> types.Location | None:
        uri = params.text_document.uri
        text = ls.workspace.get_text_document(uri).source
        target = analysis.definition(_path(uri), text, params.position.line,
                                     params.position.character)
        if target is None:
            return None
        start = types.Position(line=0, character=0)
        return types.Location(uri=from_fs_path(str(target)) or target.as_uri(),
                              range=types.Range(start=start, end=start))

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_LINK)
    def document_link(ls: LanguageServer, params: types.DocumentLinkParams
                      ) -> list[types.DocumentLink]:
        uri = params.text_document.uri
        text = ls.workspace.get_text_document(uri).source
        return [types.DocumentLink(
            range=types.Range(start=types.Position(line=at.line, character=at.start),
                              end=types.Position(line=at.line, character=at.end)),
            target=from_fs_path(str(target)) or target.as_uri())
            for at, target in analysis.links(_path(uri), text)]

    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=COMPLETION_TRIGGERS))
    def completion(ls: LanguageServer, params: types.CompletionParams
                   ) -> types.CompletionList | None:
        uri = params.text_document.uri
        text = ls.workspace.get_text_document(uri).source
        found = analysis.completions(_path(uri), text, params.position.line,
                                     params.position.character)
        if found is None:
            return None
        typed, names = found
        edit_range = types.Range(start=types.Position(line=typed.line, character=typed.start),
                                 end=types.Position(line=typed.line, character=typed.end))
        items = [types.CompletionItem(label=name, kind=types.CompletionItemKind.File,
                                      text_edit=types.TextEdit(range=edit_range, new_text=name))
                 for name in names]
        return types.CompletionList(is_incomplete=False, items=items)


def _request_failed(exc: SpawnError) -> Any:
    from pygls.exceptions import JsonRpcException

    return JsonRpcException(exc.message, code=types.LSPErrorCodes.RequestFailed)


def serve() -> None:
    """Run the server on stdin/stdout until the client exits."""
    create_server().start_io()
