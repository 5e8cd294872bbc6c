"""The ``App`` object every command receives: flags, and the config read once."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Concatenate, ParamSpec, TypeVar

import click

if TYPE_CHECKING:
    from spawn_db.config import Config, Overrides


@dataclass
class App:
    overrides: Overrides
    debug: bool = False
    _config: Config | None = field(default=None, repr=False)

    def config(self) -> Config:
        if self._config is None:
            from spawn_db.config import load_config

            self._config = load_config(self.overrides)
            for warning in self._config.warnings:
                click.echo(warning, err=True)
        return self._config


P = ParamSpec("P")
R = TypeVar("R")


def pass_app(f: Callable[Concatenate[App, P], R]) -> Callable[P, R]:
    """Click's pass decorator for ``App``, typed so mypy sees the command's real arguments."""
    decorated: Callable[P, R] = click.make_pass_decorator(App)(f)
    return decorated
