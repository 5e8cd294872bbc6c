"""The ``App`` object every command receives: flags, and the config read once."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

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


pass_app: Any = click.make_pass_decorator(App)
