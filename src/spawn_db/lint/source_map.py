"""Render a migration as apply would, remembering which template line made each piece.

A syntax error must be reported where the user can fix it: in the template
source, through the include chain, not at a line of text they never see. The
render here runs the normal sandboxed environment with two additions that do
not change one byte of the output:

* every piece of literal template text is compiled as an output expression
  (instead of a folded constant), so Jinja's ``debug_info`` records its line;
* every template's ``root_render_func`` is wrapped: after each chunk the
  template yields, the wrapper reads the suspended generator's current Python
  line, maps it to the template line (``Template.get_corresponding_lineno``)
  and emits a ``Mark`` (an empty ``str`` carrying the location) before the
  chunk. A chunk that comes out of an included template passes through the
  includer's wrapper, which adds its own position to the mark's include chain.

Limits: text produced by an expression, a loop or a macro call maps to the
line of its tag; the column is exact for literal text that starts a line, and
otherwise derived from the template line when that line ends with the text.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any

import jinja2
from jinja2 import nodes

from spawn_db.render.template import (
    ComponentLoader,
    ComponentSource,
    Renderer,
    SqlEnvironment,
)

Frame = tuple[str, int]  # (file, line) of one step of an include chain


@dataclass(frozen=True)
class Location:
    """A place in a template source: 1-based line and column, and the includes that led
    there (outermost first), each as (file, line)."""

    file: str
    line: int
    column: int
    chain: tuple[Frame, ...] = ()

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"

    def chain_text(self) -> str:
        """``included from a.sql:3, from b.sql:7``, innermost includer first; empty when direct."""
        if not self.chain:
            return ""
        return "included from " + ", from ".join(f"{f}:{n}" for f, n in reversed(self.chain))


class Mark(str):
    """An empty string that says where the next chunk came from; it renders as nothing, so
    a captured block (``{% set %}``, a macro) loses it without changing its text."""

    __slots__ = ("chain", "column", "file", "line")

    def __new__(cls, file: str, line: int, column: int | None,
                chain: tuple[Frame, ...]) -> Mark:
        mark = super().__new__(cls, "")
        mark.file, mark.line, mark.column, mark.chain = file, line, column, chain
        return mark

    file: str
    line: int
    column: int | None
    chain: tuple[Frame, ...]


@dataclass(frozen=True)
class _Entry:
    start: int  # offset in the rendered text (characters)
    file: str
    line: int
    column: int | None
    chain: tuple[Frame, ...]


class SourceMap:
    """Rendered-text offsets back to template locations (see the module docstring)."""

    def __init__(self, text: str, entries: list[_Entry]) -> None:
        self.text = text
        self._entries = entries
        self._starts = [e.start for e in entries]

    @classmethod
    def identity(cls, text: str, file: str) -> SourceMap:
        """A template with no Jinja syntax: every offset maps to itself."""
        return cls(text, [_Entry(0, file, 1, 1, ())])

    def locate(self, offset: int) -> Location:
        """The template location of the rendered character at ``offset``."""
        index = bisect.bisect_right(self._starts, offset) - 1
        if index < 0:
            return Location(self._entries[0].file if self._entries else "?", 1, 1)
        entry = self._entries[index]
        newlines = self.text.count("\n", entry.start, offset)
        line_start = self.text.rfind("\n", 0, offset) + 1
        if newlines:
            return Location(entry.file, entry.line + newlines, offset - line_start + 1,
                            entry.chain)
        if entry.column is not None:
            return Location(entry.file, entry.line, entry.column + offset - entry.start,
                            entry.chain)
        return Location(entry.file, entry.line, offset - line_start + 1, entry.chain)


class _MappingEnvironment(SqlEnvironment):
    """The normal environment, whose literal text keeps its line and whose templates mark
    each chunk with its location."""

    def __init__(self, source: ComponentSource, sources: dict[str, str]) -> None:
        super().__init__(source)
        self.loader = _MappingLoader(source, sources)
        self.sources = sources

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        unknown_filter_or_test(self, tree, filename or name)
        for output in tree.find_all((nodes.Output,)):
            output.nodes = [_unfolded(child) for child in output.nodes]
        return tree


def unknown_filter_or_test(env: jinja2.Environment, tree: nodes.Template,
                           name: str | None) -> None:
    """Raise for the first filter or test ``env`` does not have, in any branch: Jinja 3.1
    only reports one when a branch that uses it runs (a test even then only at render),
    so a typo in an ``{% if %}`` branch not taken would pass the check unseen."""
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        known = env.filters if isinstance(node, nodes.Filter) else env.tests
        if node.name not in known:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            raise jinja2.TemplateAssertionError(
                f"no {kind} named '{node.name}'; check its spelling against "
                "docs/templating.md (every branch is checked, also one that does not run)",
                node.lineno, name, name)


def _unfolded(child: nodes.Expr) -> nodes.Expr:
    """Literal text as ``MarkSafe(Const)``: the same output, but not a constant, so the code
    generator gives it a line of its own in ``debug_info``."""
    if not isinstance(child, nodes.TemplateData):
        return child
    return nodes.MarkSafe(nodes.Const(child.data, lineno=child.lineno), lineno=child.lineno)


class _MappingLoader(ComponentLoader):
    def __init__(self, source: ComponentSource, sources: dict[str, str]) -> None:
        super().__init__(source)
        self.sources = sources

    def get_source(self, environment: jinja2.Environment, template: str
                   ) -> tuple[str, str | None, Callable[[], bool] | None]:
        text, filename, uptodate = super().get_source(environment, template)
        if filename is not None:
            self.sources[filename] = text
        return text, filename, uptodate

    def load(self, environment: jinja2.Environment, name: str,
             globals: MutableMapping[str, Any] | None = None) -> jinja2.Template:
        template = super().load(environment, name, globals)
        mark_chunks(template, self.sources)
        return template


def mark_chunks(template: jinja2.Template, sources: Mapping[str, str]) -> None:
    """Wrap ``template``'s root render function so each chunk is preceded by its ``Mark``."""
    root = template.root_render_func
    filename = template.filename or template.name or "?"
    plain = not getattr(template, "_debug_info", "")
    lines = (sources.get(filename) or "").splitlines()
    line_of = _line_finder(template)

    def marked(context: Any) -> Iterator[str]:
        generator = root(context)
        inner = False  # the last event was an included template's mark: its chunk follows
        for event in generator:
            if inner and not isinstance(event, Mark):
                inner = False
                yield event
                continue
            frame = getattr(generator, "gi_frame", None)
            line = 1 if plain or frame is None else line_of(frame.f_lineno)
            if isinstance(event, Mark):
                yield Mark(event.file, event.line, event.column,
                           ((filename, line), *event.chain))
                inner = True
                continue
            column = 1 if plain else _column(lines, line, event)
            yield Mark(filename, line, column, ())
            yield event

    template.root_render_func = marked


def _line_finder(template: jinja2.Template) -> Callable[[int], int]:
    """``Template.get_corresponding_lineno`` with the debug table parsed once: Jinja's parses
    it on every call, which is quadratic over a long template's chunks."""
    table = sorted((code, line) for line, code in template.debug_info)
    codes = [code for code, _ in table]

    def line_of(code_line: int) -> int:
        index = bisect.bisect_right(codes, code_line) - 1
        return table[index][1] if index >= 0 else 1

    return line_of


def _column(lines: list[str], line: int, chunk: str) -> int | None:
    """Where ``chunk``'s first line starts on template ``line``, when that line ends with it."""
    if not 0 < line <= len(lines):
        return None
    first = chunk.split("\n", 1)[0].rstrip("\r")
    source = lines[line - 1]
    if "\n" in chunk and first == "":
        return len(source) + 1
    if first and source.endswith(first):
        return len(source) - len(first) + 1
    return None


def render_mapped(template_text: str, display: str, components: ComponentSource,
                  context: Mapping[str, Any]) -> SourceMap:
    """Render ``template_text`` (named ``display``) with its source map; raises what the
    normal render raises (``TemplateError``)."""
    from spawn_db.render.template import _syntax_error

    sources = {display: template_text}
    env = _MappingEnvironment(components, sources)
    try:
        code = env.compile(template_text, name=display, filename=display)
        template = env.template_class.from_code(env, code, env.make_globals(None), None)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(exc, display) from None
    mark_chunks(template, sources)
    text, entries = collect_marked(Renderer(template, display).generate(context))
    return SourceMap(text, entries)


def collect_marked(chunks: Iterable[str | Mark]) -> tuple[str, list[_Entry]]:
    """A marked render's text, and an entry (offset → template place) for each output
    chunk that follows a ``Mark``."""
    pieces: list[str] = []
    entries: list[_Entry] = []
    size = 0
    pending: Mark | None = None
    for chunk in chunks:
        if isinstance(chunk, Mark):
            pending = chunk
            continue
        if not chunk:
            continue
        if pending is not None:
            entries.append(_Entry(size, pending.file, pending.line, pending.column,
                                  pending.chain))
            pending = None
        pieces.append(chunk)
        size += len(chunk)
    return "".join(pieces), entries
