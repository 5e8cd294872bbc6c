"""Template filters, functions and tests from ``spawn.template`` plugins.

They are looked up only for a template that names something spawn does not have
(scanning entry points costs more than rendering a small migration), never replace a
built-in name, and in a pinned render only those marked deterministic
(``spawn_db.plugins.deterministic``) may run: a pin must render the same bytes forever.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jinja2 import nodes

from spawn_db import plugins
from spawn_db.errors import TemplateError

GROUP = "spawn.template"
# Names a template may read that are no global: the render context and Jinja's own.
CONTEXT_NAMES = frozenset({"env", "variables", "loop", "caller", "varargs", "kwargs", "self",
                           "super", "true", "false", "none", "True", "False", "None"})


def unknown_names(tree: nodes.Template, filters: Iterable[str], tests: Iterable[str],
                  globals_: Iterable[str]) -> set[str]:
    """Filters, tests and free names ``tree`` uses that are not defined: the only case in
    which plugins are worth looking up."""
    wanted = {node.name for node in tree.find_all(nodes.Filter)} - set(filters)
    wanted |= {node.name for node in tree.find_all(nodes.Test)} - set(tests)
    loaded = {n.name for n in tree.find_all(nodes.Name) if n.ctx == "load"}
    return wanted | (loaded - _bound_names(tree) - set(globals_) - CONTEXT_NAMES)


def _bound_names(tree: nodes.Template) -> set[str]:
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    bound |= {n.name for n in tree.find_all(nodes.Macro)}
    bound |= {n.target for n in tree.find_all(nodes.Import)}
    for node in tree.find_all(nodes.FromImport):
        bound |= {name if isinstance(name, str) else name[1] for name in node.names}
    return bound


def add_template_plugins(filters: dict[str, Any], tests: dict[str, Any],
                         globals_: dict[str, Any], *, pinned: bool) -> None:
    """Add every installed template plugin's names that are not taken."""
    for plugin_name, plugin in plugins.load(GROUP).items():
        for kind, target in (("filters", filters), ("functions", globals_), ("tests", tests)):
            found = getattr(plugin, kind, None)
            if found is None:
                continue
            if not isinstance(found, Mapping):
                plugins.warn(f"plugin {plugin_name} ({GROUP}): `{kind}` is not a mapping of "
                             "names to callables; it is left out")
                continue
            for name, function in found.items():
                if name not in target and callable(function):
                    target[name] = _guarded(function, name, plugin_name, pinned)


def _guarded(function: Callable[..., Any], name: str, plugin: str,
             pinned: bool) -> Callable[..., Any]:
    if not pinned or plugins.is_deterministic(function):
        return function

    def refused(*_args: Any, **_kwargs: Any) -> Any:
        raise TemplateError(
            f"{name} (from plugin {plugin}) is not declared deterministic, so a pinned "
            "migration cannot use it: a pin must render the same bytes forever; if it "
            "always returns the same output for the same arguments, mark it with "
            "spawn_db.plugins.deterministic")

    return refused
