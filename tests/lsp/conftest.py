"""A real LSP client (pygls' ``LanguageClient``) driving ``python -m spawn_db lsp`` over
stdio, and a project on disk (no database: the server never connects)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import pytest
from lsprotocol import types
from pygls.lsp.client import LanguageClient

from tests.helpers import SPAWN, spawn_env
from tests.lint.conftest import LintProject

T = TypeVar("T")
TIMEOUT = 30.0


@dataclass
class Session:
    """One running server and its client; diagnostics as the server published them."""

    client: LanguageClient
    published: asyncio.Queue[types.PublishDiagnosticsParams] = field(
        default_factory=asyncio.Queue)
    versions: dict[str, int] = field(default_factory=dict)

    def open(self, path: Path, text: str) -> str:
        """``didOpen`` of ``path`` with ``text`` (the file on disk may say otherwise)."""
        uri = path.absolute().as_uri()
        self.versions[uri] = 1
        self.client.text_document_did_open(types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri, language_id="sql", version=1,
                                                 text=text)))
        return uri

    def change(self, uri: str, text: str) -> None:
        """``didChange`` replacing the whole buffer with ``text`` (not saved)."""
        self.versions[uri] += 1
        self.client.text_document_did_change(types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(
                uri=uri, version=self.versions[uri]),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text)]))

    async def diagnostics(self, uri: str) -> list[types.Diagnostic]:
        """The next diagnostics the server publishes for ``uri``."""
        while True:
            params = await asyncio.wait_for(self.published.get(), TIMEOUT)
            if params.uri == uri:
                return list(params.diagnostics)

    def configure(self, settings: object) -> None:
        """``workspace/didChangeConfiguration`` with ``settings``."""
        self.client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings=settings))

    async def settle(self) -> None:
        """A request round trip: the server has handled every message sent before it,
        and a check already running has finished (previews run on the checks' thread)."""
        uri = next(iter(self.versions), None)
        if uri is not None:
            await self.preview_or_error(uri)

    async def preview_or_error(self, uri: str) -> object:
        try:
            return await self.preview(uri)
        except Exception as exc:  # pygls raises the JSON-RPC error it received
            return str(exc)

    async def preview(self, uri: str) -> object:
        return await answer(self.client.workspace_execute_command_async(
            types.ExecuteCommandParams(command="spawn.preview", arguments=[uri])))


async def answer(request: Awaitable[T]) -> T:
    """The response to ``request``, failing the test instead of hanging when none comes."""
    return await asyncio.wait_for(request, TIMEOUT)


@asynccontextmanager
async def session(root: Path, options: object = None,
                  capabilities: types.ClientCapabilities | None = None
                  ) -> AsyncIterator[Session]:
    """``spawn lsp`` started in ``root``, initialized (with ``options`` as the
    ``initializationOptions``), shut down and exited at the end."""
    client = LanguageClient("spawn-tests", "1")
    found = Session(client)

    @client.feature(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    def published(params: types.PublishDiagnosticsParams) -> None:
        found.published.put_nowait(params)

    await client.start_io(*SPAWN, "lsp", cwd=str(root), env=spawn_env())
    try:
        await asyncio.wait_for(client.initialize_async(types.InitializeParams(
            capabilities=capabilities or types.ClientCapabilities(), root_uri=root.as_uri(),
            initialization_options=options)), TIMEOUT)
        client.initialized(types.InitializedParams())
        yield found
        await asyncio.wait_for(client.shutdown_async(None), TIMEOUT)
        client.exit(None)
    except BaseException:
        # A failed test must not wait for a server that was never told to exit.
        if client._server is not None and client._server.returncode is None:
            client._server.kill()
        raise
    finally:
        await client.stop()


def run(root: Path, scenario: Callable[[Session], Awaitable[T]], options: object = None,
        capabilities: types.ClientCapabilities | None = None) -> T:
    """Run ``scenario`` against a fresh server in ``root`` (no pytest-asyncio needed)."""

    async def main() -> T:
        async with session(root, options, capabilities) as started:
            return await scenario(started)

    return asyncio.run(main())


@pytest.fixture
def project(tmp_path: Path) -> LintProject:
    found = LintProject(tmp_path / "proj")
    for folder in ("components", "migrations", "tests", "pinned"):
        (found.spawn / folder).mkdir(parents=True)
    found.config()
    return found
