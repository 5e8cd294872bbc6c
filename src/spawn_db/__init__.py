"""Spawn: a database build system for PostgreSQL.

The public Python API is what ``__all__`` lists (``spawn_db.api``'s ``Project`` and its
result types, and the ``SpawnError`` family of ``spawn_db.errors``); every other module
is internal. The names are imported when first used, so ``import spawn_db`` (and
``spawn --version``) load nothing else.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

# The only place the version is written: pyproject.toml reads it from here when the
# package is built (``dynamic = ["version"]``), and ``spawn --version`` prints it
# without the cost of importlib.metadata.
__version__ = "0.1.0"

if TYPE_CHECKING:
    from spawn_db.api import (
        ExpectReport,
        Project,
        RevertDryRun,
        TenantOptions,
        TestReport,
        TestReporter,
    )
    from spawn_db.errors import SpawnError

__all__ = ["ExpectReport", "Project", "RevertDryRun", "SpawnError", "TenantOptions",
           "TestReport", "TestReporter", "__version__"]

_LAZY = {"ExpectReport": "spawn_db.api", "Project": "spawn_db.api",
         "RevertDryRun": "spawn_db.api", "TenantOptions": "spawn_db.api",
         "TestReport": "spawn_db.api", "TestReporter": "spawn_db.api",
         "SpawnError": "spawn_db.errors"}


def __getattr__(name: str) -> Any:
    """``spawn_db.Project`` and friends, imported on first use (PEP 562)."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spawn_db' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
