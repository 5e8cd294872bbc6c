"""``spawn component deps``: the objects each component defines and who depends on them.

Each ``*.sql`` file of ``components/`` is rendered on its own, the way a
migration's ``{% include %}`` of it renders (the working tree, with the
project's variables), cut and parsed like a migration (``parse``), and read by
``deps``. A component that includes another does not own the other's objects:
each statement belongs to the innermost template that produced it. A component
that does not render on its own (it needs a variable nobody passed, or a value
its includer sets) is listed with the reason, and has no objects.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spawn_db.config import Config
from spawn_db.errors import NotFoundError, SpawnError
from spawn_db.lint.deps import Definition, Graph, attribute, definitions


@dataclass(frozen=True)
class Edge:
    """``user`` (an object of component ``user_component``) references ``used`` (of
    ``used_component``); ``late`` when PostgreSQL does not record it."""

    user_component: str
    user: Definition
    used_component: str
    used: Definition
    late: bool


@dataclass(frozen=True)
class ComponentNode:
    """One component: its definitions with their lines in the file, or why it has none."""

    path: str
    definitions: tuple[tuple[Definition, int], ...]
    problem: str = ""


@dataclass(frozen=True)
class ComponentGraph:
    components: tuple[ComponentNode, ...]
    edges: tuple[Edge, ...]

    def select(self, start: str | None, reverse: bool) -> list[ComponentNode]:
        """Every component (``start`` None), else ``start`` and the components reached from
        it: its dependents, transitively (``reverse``: what it depends on)."""
        if start is None:
            return list(self.components)
        reached = [start]
        for path in reached:
            for edge in self.edges:
                source, target = ((edge.user_component, edge.used_component) if reverse
                                  else (edge.used_component, edge.user_component))
                if source == path and target not in reached:
                    reached.append(target)
        nodes = {node.path: node for node in self.components}
        return [nodes[start], *sorted((nodes[p] for p in reached[1:]), key=lambda n: n.path)]

    def links(self, node: ComponentNode, definition: Definition, reverse: bool) -> list[Edge]:
        """The edges of ``definition``: who uses it (``reverse``: what it uses)."""
        if reverse:
            return [e for e in self.edges if e.user_component == node.path
                    and e.user is definition]
        return [e for e in self.edges if e.used_component == node.path and e.used is definition]


def component_graph(config: Config, variables: Any = None) -> ComponentGraph:
    """Render and read every component of the working tree."""
    from spawn_db.render.template import WorkingTreeSource, template_context

    source = WorkingTreeSource(config.components_dir)
    context = template_context(config, variables or {})
    nodes = [_node(path, source, context) for path in component_paths(config)]
    graph = Graph()
    for node in nodes:
        graph.add(node.path, (d for d, _line in node.definitions))
    edges = []
    for node in nodes:
        for definition, _line in node.definitions:
            for ref, used in graph.uses(definition):
                owner = graph.owner(used)
                if owner != node.path:
                    edges.append(Edge(node.path, definition, owner, used, ref.late))
    return ComponentGraph(tuple(nodes), tuple(edges))


def component_paths(config: Config) -> list[str]:
    """The ``*.sql`` files of ``components/``, relative to it, sorted."""
    root = str(config.components_dir)
    found = []
    for dirpath, _dirs, names in os.walk(root, followlinks=True):
        found += [os.path.relpath(os.path.join(dirpath, n), root).replace(os.sep, "/")
                  for n in names if n.endswith(".sql")]
    return sorted(found)


def find_component(config: Config, name: str) -> str:
    """``name`` as a component path: relative to ``components/``, or a path to the file."""
    known = component_paths(config)
    if name in known:
        return name
    root = config.components_dir.resolve()
    for candidate in (Path(name), config.components_dir.parent / name):
        try:
            relative = candidate.resolve().relative_to(root).as_posix()
        except ValueError:
            continue
        if relative in known:
            return relative
    raise NotFoundError(
        f"component {name} does not exist: there is no {name} in {config.components_dir}; "
        "`spawn component deps` without an argument lists every component")


def _node(path: str, source: Any, context: Any) -> ComponentNode:
    from spawn_db.lint.parse import parse_script
    from spawn_db.lint.source_map import render_mapped

    try:
        mapped = render_mapped("{% include " + json.dumps(path) + " %}", "<component deps>",
                               source, context)
    except SpawnError as exc:
        return ComponentNode(path, (), f"does not render on its own: {exc.message}")
    parsed = parse_script(mapped.text)
    mine = attribute(parsed.statements, mapped.locate).get(path, [])
    found = tuple((d, mapped.locate(d.offset).line) for d in definitions(mine))
    if parsed.problems:
        where = mapped.locate(parsed.problems[0].offset)
        return ComponentNode(path, found, f"line {where.line}: syntax error: "
                             f"{parsed.problems[0].message}")
    return ComponentNode(path, found)


# -- output -------------------------------------------------------------------------------


def as_text(graph: ComponentGraph, start: str | None, reverse: bool) -> str:
    """Each component, its objects, and under each object who uses it (``<-``) or, with
    ``reverse``, what it uses (``->``), as ``component: object``."""
    lines: list[str] = []
    arrow = "->" if reverse else "<-"
    for node in graph.select(start, reverse):
        lines.append(node.path)
        if node.problem:
            lines.append(f"  (not analysed: {node.problem})")
        elif not node.definitions:
            lines.append("  (no objects)")
        for definition, line in node.definitions:
            lines.append(f"  {definition.obj.label}  (line {line})")
            for edge in graph.links(node, definition, reverse):
                other, obj = ((edge.used_component, edge.used) if reverse
                              else (edge.user_component, edge.user))
                late = "  (late-bound)" if edge.late else ""
                lines.append(f"    {arrow} {other}: {obj.obj.label}{late}")
    return "\n".join(lines)


def as_json(graph: ComponentGraph, start: str | None, reverse: bool) -> str:
    """One document: ``direction`` (``dependents`` or ``dependencies``) and the
    components, each with its objects and, per object, the linked objects."""
    key = "depends_on" if reverse else "dependents"
    components = []
    for node in graph.select(start, reverse):
        objects = []
        for definition, line in node.definitions:
            linked = []
            for edge in graph.links(node, definition, reverse):
                other, obj = ((edge.used_component, edge.used) if reverse
                              else (edge.user_component, edge.user))
                linked.append({"component": other, **_object(obj), "late": edge.late})
            objects.append({**_object(definition), "line": line, key: linked})
        components.append({"path": node.path, "problem": node.problem or None,
                           "objects": objects})
    return json.dumps({"direction": "dependencies" if reverse else "dependents",
                       "components": components}, indent=2, ensure_ascii=False)


def _object(definition: Definition) -> dict[str, Any]:
    obj = definition.obj
    return {"kind": obj.kind, "name": obj.name, "arguments": list(obj.args) or None,
            "table": obj.on or None, "label": obj.label}


def as_dot(graph: ComponentGraph, start: str | None, reverse: bool) -> str:
    """Graphviz: a box per component, an edge per object used, from the component that
    defines it to the one that uses it (``reverse``: the other way); late-bound dashed."""
    nodes = graph.select(start, reverse)
    lines = ["digraph components {", "  rankdir=LR;", "  node [shape=box];"]
    lines += [f"  {_quote(node.path)};" for node in nodes]
    for node in nodes:
        for definition, _line in node.definitions:
            for edge in graph.links(node, definition, reverse):
                pair = ((edge.user_component, edge.used_component) if reverse
                        else (edge.used_component, edge.user_component))
                style = ", style=dashed" if edge.late else ""
                lines.append(f"  {_quote(pair[0])} -> {_quote(pair[1])} "
                             f"[label={_quote(edge.used.obj.label)}{style}];")
    lines.append("}")
    return "\n".join(lines)


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
