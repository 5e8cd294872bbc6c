"""Database engines: how spawn reaches a target to run SQL and keep its books.

SPEC §2 knows one engine, ``postgres-psql``: every session is a psql process
(or a command that behaves like psql: ``docker exec``, ``ssh``, a wrapper).
The protocol below is what apply, adopt and status need from an engine, so
another engine is an addition, not a rewrite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from collections.abc import Sequence

    from spawn_db.config import Config, TargetConfig
    from spawn_db.db.psql import ControlSession, PsqlProcess


class Engine(Protocol):
    """Sessions on one target."""

    def control_session(self, database: str | None) -> ControlSession:
        """A request/response session for spawn's own SQL (lock, tracking rows)."""
        ...

    def script_session(self, application_name: str | None = None,
                       options: Sequence[tuple[str, str]] = ()) -> PsqlProcess:
        """A session that runs scripts streamed to it, where the target connects;
        ``options`` are server settings to connect with where the engine can pass them
        (``carries_options``), which ``RESET ALL`` then returns to."""
        ...

    @property
    def carries_options(self) -> bool:
        """Whether ``script_session``'s ``options`` reach the server at connect time."""
        ...

    @property
    def stops_with_spawn(self) -> bool:
        """Whether a session dies with spawn, so input may be queued ahead of it."""
        ...


def engine_for(config: Config, target: TargetConfig | None = None) -> Engine:
    """The engine of ``target`` (the selected one by default)."""
    from spawn_db.db.psql import PsqlEngine
    from spawn_db.db.target import psql_argv

    return PsqlEngine(psql_argv(config, target or config.target()))
