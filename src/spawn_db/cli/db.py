"""``spawn db ...``: manage the project's embedded PostgreSQL server."""

from __future__ import annotations

import click


@click.group()
def db() -> None:
    """Start, stop and inspect the embedded PostgreSQL server."""
