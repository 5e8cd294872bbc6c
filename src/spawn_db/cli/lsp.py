"""``spawn lsp``: the language server, over stdin/stdout (docs/editors.md)."""

from __future__ import annotations

import click


@click.command()
def lsp() -> None:
    """Run the language server over stdio: diagnostics of unsaved buffers, the rendered
    SQL preview (command spawn.preview and hover), go to definition and completion of
    component paths. Editors start it; see docs/editors.md."""
    from spawn_db.lsp.server import serve

    serve()
