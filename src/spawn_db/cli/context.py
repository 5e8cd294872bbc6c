"""The ``App`` object every command receives: flags, and the config read once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

import click

if TYPE_CHECKING:
    from spawn_db.config import Config, Overrides
    from spawn_db.remote.mirror import Mirror


@dataclass
class App:
    overrides: Overrides
    debug: bool = False
    _config: Config | None = field(default=None, repr=False)
    _mirror: Mirror | None = field(default=None, repr=False)

    def config(self) -> Config:
        """The config, read once; a remote spawn folder is pulled into its mirror first."""
        if self._config is None:
            from spawn_db.config import load_config

            config = load_config(self.overrides)
            for warning in config.warnings:
                click.echo(warning, err=True)
            if config.target_selection is not None:
                from spawn_db.fleet.targets import resolve_selection

                config = resolve_selection(config)
            if config.spawn_folder_url is not None:
                from spawn_db.remote.mirror import Mirror

                mirror = Mirror(config.spawn_folder_url, config.spawn_folder)
                mirror.pull()
                self._mirror = mirror
            self._config = config
        return self._config

    def push_remote(self) -> None:
        """Send what the command wrote into a remote spawn folder's mirror back to it."""
        if self._mirror is not None:
            self._mirror.push()


P = ParamSpec("P")
R = TypeVar("R")


def pass_app(f: Callable[Concatenate[App, P], R]) -> Callable[P, R]:
    """Click's pass decorator for ``App``, typed so mypy sees the command's real arguments."""
    decorated: Callable[P, R] = click.make_pass_decorator(App)(f)
    return decorated


def _project_names(ctx: click.Context, kind: str) -> list[str]:
    """Names for shell completion; any problem with the project just means no names."""
    from spawn_db.config import Overrides, load_config
    from spawn_db.errors import SpawnError
    from spawn_db.project import Project

    root = ctx.find_root().params
    try:
        config = load_config(Overrides.from_flags(
            config_file=root.get("config_file"), target=None, environment=None))
    except SpawnError:
        return []
    project = Project(config)
    return project.migration_names() if kind == "migration" else project.test_names()


def complete_migrations(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    """Names containing what was typed (so a suffix completes, as commands accept one),
    ignoring the trailing ``/`` a folder name completed by the shell carries."""
    typed = incomplete.rstrip("/")
    return [n for n in _project_names(ctx, "migration") if typed in n]


def complete_tests(ctx: click.Context, _param: click.Parameter, incomplete: str) -> list[str]:
    return [n for n in _project_names(ctx, "test") if n.startswith(incomplete)]
