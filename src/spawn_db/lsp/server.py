"""The language server: pygls over stdio, answering from ``analysis``.

Diagnostics are computed off the event loop, one buffer at a time, on one
worker thread (``Checker``): a change waits ``DEBOUNCE`` seconds for the next
keystroke, so a burst of changes is checked once, and a newer change to the
same buffer makes the older check stop at its next step and its result be
dropped. A change re-checks the changed buffer and the open buffers whose last
render read it (a component being edited changes what includes it), nothing
else. Handlers never raise to the client for a project problem: a broken
``spawn.toml`` or template is a diagnostic, a failed preview an LSP error
whose message is the ``SpawnError`` sentence.

Positions go through pygls' position codec: columns are UTF-16 code units
(LSP's default) unless the client offered ``utf-8`` or ``utf-32``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer
from pygls.uris import from_fs_path, to_fs_path
from pygls.workspace.position_codec import PositionCodec

from spawn_db import __version__
from spawn_db.errors import SpawnError
from spawn_db.lsp import analysis

PREVIEW_COMMAND = "spawn.preview"
COMPLETION_TRIGGERS = ['"', "'", "/"]
DEBOUNCE = 0.02  # seconds a change waits for the next one before it is checked
SETTINGS_SECTION = "spawn"
VARIABLES_SETTING = "variables"  # spawn.variables: the editor's variables file


class SpawnServer(LanguageServer):
    """pygls' server with the state of spawn's checks."""

    def __init__(self) -> None:
        super().__init__("spawn", __version__)
        self.checker = Checker(self)
        self.variables_setting: str | None = None
        self.root: Path | None = None

    def variables(self) -> Path | None:
        """The ``spawn.variables`` file, relative to the workspace root (the client's
        ``rootUri``), else to the server's folder; None when the setting is unset."""
        if not self.variables_setting:
            return None
        path = Path(self.variables_setting).expanduser()
        return path if path.is_absolute() else (self.root or Path.cwd()) / path


def create_server() -> SpawnServer:
    """A server with spawn's features registered (a new one per call, for tests)."""
    server = SpawnServer()
    _register(server)
    return server


def _path(uri: str) -> Path:
    return Path(to_fs_path(uri) or uri).absolute()


def _buffers(server: LanguageServer) -> dict[str, str]:
    """Every open buffer's text by absolute path (the overlay over ``components/``)."""
    return {str(_path(uri)): doc.source
            for uri, doc in server.workspace.text_documents.items()}


class Checker:
    """Debounced, cancellable checks of open buffers on one worker thread."""

    def __init__(self, server: SpawnServer) -> None:
        self.server = server
        self.generation: dict[str, int] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self.reads: dict[str, frozenset[str]] = {}  # uri -> component files its render read
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawn-lsp")

    def changed(self, uri: str) -> None:
        """``uri``'s text changed (or it opened or closed): check it (when open) and the
        open buffers whose render read its file."""
        if uri in self.server.workspace.text_documents:
            self.schedule(uri)
        path = str(_path(uri))
        for other, reads in list(self.reads.items()):
            if other != uri and path in reads:
                self.schedule(other)

    def all(self) -> None:
        for uri in list(self.server.workspace.text_documents):
            self.schedule(uri)

    def schedule(self, uri: str) -> None:
        self.generation[uri] = self.generation.get(uri, 0) + 1
        task = self.tasks.pop(uri, None)
        if task is not None:
            task.cancel()
        self.tasks[uri] = asyncio.ensure_future(self._check(uri, self.generation[uri]))

    def forget(self, uri: str) -> None:
        self.generation[uri] = self.generation.get(uri, 0) + 1
        self.reads.pop(uri, None)
        task = self.tasks.pop(uri, None)
        if task is not None:
            task.cancel()

    async def _check(self, uri: str, generation: int) -> None:
        from spawn_db.lsp.render import Cancelled

        await asyncio.sleep(DEBOUNCE)
        document = self.server.workspace.text_documents.get(uri)
        if document is None:
            return
        text = document.source

        def cancelled() -> bool:
            return self.generation.get(uri) != generation

        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(
                self.executor, analysis.analyse, _path(uri), text, _buffers(self.server),
                self.server.variables(), cancelled)
        except Cancelled:
            return
        if cancelled():
            return
        self.reads[uri] = found.reads
        _publish(self.server, uri, text, found.problems)


def _publish(server: LanguageServer, uri: str, text: str,
             found: list[analysis.Problem]) -> None:
    lines = text.splitlines(True)
    codec = server.workspace.position_codec
    diagnostics = [
        types.Diagnostic(
            range=_client_range(codec, lines, p.line, p.column, p.line + 1, 0),
            message=p.message,
            severity=(types.DiagnosticSeverity.Warning if p.severity == "warning"
                      else types.DiagnosticSeverity.Error),
            source=f"spawn {p.source}", code=p.code or None)
        for p in found]
    server.text_document_publish_diagnostics(
        types.PublishDiagnosticsParams(uri=uri, diagnostics=diagnostics))


def _client_range(codec: PositionCodec, lines: Sequence[str], line: int, start: int,
                  end_line: int, end: int) -> types.Range:
    """A range of code points as the client counts (UTF-16 units unless negotiated)."""
    return codec.range_to_client_units(lines, types.Range(
        start=types.Position(line=line, character=start),
        end=types.Position(line=end_line, character=end)))


async def _preview(server: SpawnServer, uri: str) -> analysis.Preview:
    """The preview, rendered on the checks' thread (the caches are not shared across
    threads)."""
    text = server.workspace.get_text_document(uri).source
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(server.checker.executor, analysis.preview, _path(uri),
                                      text, _buffers(server), server.variables())


def _at(ls: LanguageServer, uri: str, position: types.Position) -> tuple[str, int, int]:
    """The buffer's text and the position in code points (the client counts in its units)."""
    document = ls.workspace.get_text_document(uri)
    found = document.position_from_client_units(position)
    return document.source, found.line, found.character


def variables_setting(settings: Any) -> tuple[bool, str | None]:
    """(whether ``settings`` says anything, the ``spawn.variables`` value) from the
    shapes clients send: ``{"spawn": {"variables": ...}}``, ``{"spawn.variables": ...}``
    or, as initialization options, ``{"variables": ...}``."""
    if not isinstance(settings, dict):
        return False, None
    section = settings.get(SETTINGS_SECTION)
    if isinstance(section, dict):
        value = section.get(VARIABLES_SETTING)
    elif f"{SETTINGS_SECTION}.{VARIABLES_SETTING}" in settings:
        value = settings[f"{SETTINGS_SECTION}.{VARIABLES_SETTING}"]
    else:
        value = settings.get(VARIABLES_SETTING)
    return True, value if isinstance(value, str) and value else None


def _register(server: SpawnServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: SpawnServer, params: types.InitializeParams) -> None:
        root = params.root_uri or (from_fs_path(params.root_path) if params.root_path
                                   else None)
        ls.root = _path(root) if root else None
        _, ls.variables_setting = variables_setting(params.initialization_options)

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    def did_change_configuration(ls: SpawnServer,
                                 params: types.DidChangeConfigurationParams) -> None:
        said, value = variables_setting(params.settings)
        if said:
            ls.variables_setting = value
            ls.checker.all()

    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: SpawnServer, params: types.DidOpenTextDocumentParams) -> None:
        ls.checker.changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: SpawnServer, params: types.DidChangeTextDocumentParams) -> None:
        ls.checker.changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_SAVE)
    def did_save(ls: SpawnServer, params: types.DidSaveTextDocumentParams) -> None:
        ls.checker.changed(params.text_document.uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: SpawnServer, params: types.DidCloseTextDocumentParams) -> None:
        uri = params.text_document.uri
        ls.checker.forget(uri)
        ls.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))
        ls.checker.changed(uri)

    @server.command(PREVIEW_COMMAND)
    async def preview(ls: SpawnServer, uri: str) -> dict[str, str]:
        """``spawn.preview <uri>``: the rendered SQL of the open buffer ``uri``."""
        try:
            found = await _preview(ls, uri)
        except SpawnError as exc:
            raise _request_failed(exc) from None
        return {"file": found.file, "origin": found.origin, "sql": found.sql}

    @server.feature(types.TEXT_DOCUMENT_HOVER)
    async def hover(ls: SpawnServer, params: types.HoverParams) -> types.Hover | None:
        try:
            found = await _preview(ls, params.text_document.uri)
        except SpawnError as exc:
            value = f"spawn: does not render: {exc.message}"
        else:
            value = (f"**{found.file}** rendered with {found.origin}:\n\n"
                     f"```sql\n{found.sql}\n```")
        return types.Hover(contents=types.MarkupContent(
            kind=types.MarkupKind.Markdown, value=value))

    @server.feature(types.TEXT_DOCUMENT_DEFINITION)
    def definition(ls: SpawnServer, params: types.DefinitionParams
                   ) -> types.Location | None:
        uri = params.text_document.uri
        text, line, character = _at(ls, uri, params.position)
        target = analysis.definition(_path(uri), text, line, character)
        if target is None:
            return None
        start = types.Position(line=0, character=0)
        return types.Location(uri=from_fs_path(str(target)) or target.as_uri(),
                              range=types.Range(start=start, end=start))

    @server.feature(types.TEXT_DOCUMENT_DOCUMENT_LINK)
    def document_link(ls: SpawnServer, params: types.DocumentLinkParams
                      ) -> list[types.DocumentLink]:
        uri = params.text_document.uri
        text = ls.workspace.get_text_document(uri).source
        lines = text.splitlines(True)
        codec = ls.workspace.position_codec
        return [types.DocumentLink(
            range=_client_range(codec, lines, at.line, at.start, at.line, at.end),
            target=from_fs_path(str(target)) or target.as_uri())
            for at, target in analysis.links(_path(uri), text)]

    @server.feature(types.TEXT_DOCUMENT_COMPLETION,
                    types.CompletionOptions(trigger_characters=COMPLETION_TRIGGERS))
    def completion(ls: SpawnServer, params: types.CompletionParams
                   ) -> types.CompletionList | None:
        uri = params.text_document.uri
        text, line, character = _at(ls, uri, params.position)
        found = analysis.completions(_path(uri), text, line, character)
        if found is None:
            return None
        typed, names = found
        edit_range = _client_range(ls.workspace.position_codec, text.splitlines(True),
                                   typed.line, typed.start, typed.line, typed.end)
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
