"""``spawn lsp``: a language server for templates (diagnostics, preview, definition)."""
