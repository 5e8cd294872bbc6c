"""The source-mapped render of ``spawn lint``, made fast for a buffer edited keystroke by
keystroke.

Jinja compiles a whole template at once, and for a 2,000-line template with a
tag on every other line that compile takes most of a second: far too slow to
redo on every change. Two caches make a change cost only what it touched:

* compiled code is kept per source text (``_CODE``), so the components an
  edit did not touch, and the buffers re-checked because of another buffer,
  are not compiled again;
* the buffer is cut into segments at top-level line breaks (outside any block
  tag, expression, comment or ``raw``), each compiled as a template of its own
  and rendered in order with one shared context: the top-level ``{% set %}``,
  macros and imports of a segment are in the context of the next, as they
  would be later in one template. A segment ends where a line's CRC is 0
  modulo ``SEGMENT_SPREAD`` (content-defined, so inserting a line moves no other
  boundary), and each is compiled at line 1 and shifted afterwards, so
  editing a segment recompiles that one only.

The output is the same as ``source_map.render_mapped``'s: a buffer with
``{% extends %}``, ``{% block %}`` or ``{% macro %}`` (which need the whole
template) is one segment; no boundary is put where whitespace control (``{%-``, ``-%}``) would
reach across it, nor inside a run of text and expressions that Jinja maps as
one; each segment but the last gets back the line break Jinja drops at the end
of a template; a segment that assigns a name an earlier one assigned starts
with ``{% set name = name %}`` (see ``_with_names``). When a segment does not
compile, the whole buffer is compiled to report exactly the error ``spawn
lint`` reports. ``tests/lsp/test_render.py`` checks the equivalence with
Hypothesis.
"""

from __future__ import annotations

import re
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import CodeType
from typing import Any

import jinja2
from jinja2 import nodes

from spawn_db.errors import TemplateError
from spawn_db.lint.source_map import (
    SourceMap,
    _Entry,
    _MappingEnvironment,
    collect_marked,
    mark_chunks,
    render_mapped,
)
from spawn_db.render.template import ComponentSource, Renderer

SEGMENT_SPREAD = 16  # a boundary on one candidate line in 16, on average
CODE_CACHE_SIZE = 4096
_CODE: OrderedDict[tuple[str | None, str], CodeType] = OrderedDict()
# The names each compiled source assigns (set, for, macro, import): see ``_with_names``.
_STORED: dict[str, frozenset[str]] = {}
# The names a pure compiled source loads (None: not pure): see ``_Output``.
_LOADED: dict[str, frozenset[str] | None] = {}
_IMPURE_NODES = (nodes.Include, nodes.Import, nodes.FromImport, nodes.Extends, nodes.Block,
                 nodes.CallBlock, nodes.Macro)
_IMPURE_FILTERS = frozenset({"random", "shuffle"})
OUTPUT_CACHE_SIZE = 4096
_OUTPUT: OrderedDict[tuple[Any, ...], _Output] = OrderedDict()
_IMMUTABLE = (str, int, float, bool, type(None))

# Templates that need to be compiled whole: blocks, and macros (a macro sees the names
# the template assigns after it, which a later segment's assignment would not be).
_WHOLE = re.compile(r"\{%[-+]?\s*(?:extends|block|macro)\b")
_TOKEN = re.compile(
    r"\{%-?\s*raw\s*-?%\}.*?\{%-?\s*endraw\s*-?%\}"  # raw: its text is not syntax
    r"|\{#.*?#\}|\{\{.*?\}\}|\{%-?\s*(\w*)(.*?)%\}|\n", re.S)
_OPENERS = frozenset({"if", "for", "macro", "call", "filter", "with", "autoescape"})
_CLOSERS = frozenset({"endif", "endfor", "endmacro", "endcall", "endfilter", "endwith",
                      "endautoescape", "endset"})
_TRIM_AFTER = re.compile(r"-(?:%\}|\}\}|#\})$")
_TRIM_BEFORE = re.compile(r"\s*\{[%{#]-")


class Cancelled(Exception):
    """A newer change made this analysis useless; it stops at the next check."""


class _CachingEnvironment(_MappingEnvironment):
    """The mapping environment, compiling each distinct source text once per server."""

    def compile(self, source: Any, name: str | None = None, filename: str | None = None,
                raw: bool = False, defer_init: bool = False) -> Any:
        if raw or defer_init or not isinstance(source, str):
            return super().compile(source, name, filename, raw,  # type: ignore[call-overload]
                                   defer_init)
        key = (filename or name, source)
        code = _CODE.get(key)
        if code is None:
            code = super().compile(source, name, filename)
            _CODE[key] = code
            if len(_CODE) > CODE_CACHE_SIZE:
                (_, dropped), _ = _CODE.popitem(last=False)
                _STORED.pop(dropped, None)
                _LOADED.pop(dropped, None)
        else:
            _CODE.move_to_end(key)
        return code

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        _STORED[source], _LOADED[source] = _names(tree)
        return tree


def _names(tree: nodes.Template) -> tuple[frozenset[str], frozenset[str] | None]:
    """In one walk: the names the template assigns (set, for, macro, import), and the
    names it loads when its output depends on nothing else (None otherwise: an include,
    import, macro, call other than ``range``, a reading or random filter)."""
    stored: set[str] = set()
    loaded: set[str] = set()
    pure = True
    for node in tree.find_all((nodes.Node,)):
        if isinstance(node, nodes.Name):
            (stored if node.ctx == "store" else loaded).add(node.name)
        elif isinstance(node, nodes.Macro):
            stored.add(node.name)
            pure = False
        elif isinstance(node, nodes.Import):
            stored.add(node.target)
            pure = False
        elif isinstance(node, nodes.FromImport):
            stored |= {n if isinstance(n, str) else n[1] for n in node.names}
            pure = False
        elif isinstance(node, _IMPURE_NODES):
            pure = False
        elif isinstance(node, nodes.Call):
            pure = pure and isinstance(node.node, nodes.Name) and node.node.name == "range"
        elif isinstance(node, nodes.Filter):
            pure = pure and not (node.name.startswith("read_") or node.name in _IMPURE_FILTERS)
    return frozenset(stored), frozenset(loaded) if pure else None


@dataclass(frozen=True)
class _Output:
    """A pure segment's render: its text, its map entries (from its own start, lines of
    the segment) and the names it assigned, for the same loaded values next time."""

    text: str
    entries: tuple[_Entry, ...]
    assigned: tuple[tuple[str, Any], ...]


def _frozen(value: Any, budget: list[int]) -> Any:
    """``value`` as an immutable, comparable snapshot (dicts and lists of plain data), or
    ``_UNCACHEABLE`` for anything else (a macro, an object) or too much of it."""
    budget[0] -= 1
    if budget[0] < 0:
        return _UNCACHEABLE
    if isinstance(value, _IMMUTABLE) and not isinstance(value, jinja2.Undefined):
        return (type(value), value)
    if isinstance(value, dict):
        items = tuple((k, _frozen(v, budget)) for k, v in value.items())
        return _UNCACHEABLE if any(v is _UNCACHEABLE for _, v in items) else ("d", items)
    if isinstance(value, list | tuple):
        found = tuple(_frozen(v, budget) for v in value)
        return _UNCACHEABLE if any(v is _UNCACHEABLE for v in found) else (type(value), found)
    return _UNCACHEABLE


_UNCACHEABLE = object()
_MISSING = object()
FROZEN_BUDGET = 10_000  # values looked at per segment before giving up on its cache


def _output_key(source: str, values: Mapping[str, Any], strict: bool) -> tuple[Any, ...] | None:
    loaded = _LOADED.get(source)
    if loaded is None:
        return None
    budget = [FROZEN_BUDGET]
    snapshot = tuple((name, _frozen(values[name], budget) if name in values else _MISSING)
                     for name in sorted(loaded))
    if any(v is _UNCACHEABLE for _, v in snapshot):
        return None
    return (source, strict, snapshot)


@dataclass(frozen=True)
class _Segment:
    first_line: int  # 1-based line of the buffer the segment starts at
    text: str


def segments(text: str) -> list[_Segment]:
    """``text`` cut at top-level line breaks where a line's CRC says so (see the module
    docstring); one segment when the template needs to be whole.

    A cut must not fall inside a run of text and ``{{ }}`` expressions (one Output node,
    whose expressions Jinja maps to the run's first line): a candidate cut waits
    (``pending``) until the next statement tag confirms it, and an expression first
    drops it.
    """
    if _WHOLE.search(text):
        return [_Segment(1, text)]
    cuts: list[int] = []
    pending: list[int] = []
    depth = token_end = line_start = 0
    trims = False  # the last tag strips the whitespace after it (``-%}``), up to here
    for match in _TOKEN.finditer(text):
        token = match.group(0)
        if text[token_end:match.start()].strip():
            trims = False
        token_end = match.end()
        if token != "\n":
            if token.startswith("{{"):
                pending.clear()
            elif match.group(1) is not None:  # a statement tag ends the run
                cuts += pending
                pending.clear()
            depth = max(0, depth + _depth_change(match.group(1), match.group(2)))
            trims = bool(_TRIM_AFTER.search(token))
            continue
        previous = text[line_start:match.start()]
        line_start = token_end
        if not (depth or trims or token_end == len(text)
                or _TRIM_BEFORE.match(text, token_end)
                or zlib.crc32(previous.encode()) % SEGMENT_SPREAD):
            pending.append(token_end)
    cuts += pending
    found: list[_Segment] = []
    start, start_line = 0, 1
    for cut in cuts:
        found.append(_Segment(start_line, text[start:cut]))
        start_line += text.count("\n", start, cut)
        start = cut
    found.append(_Segment(start_line, text[start:]))
    return found


def _depth_change(keyword: str | None, rest: str | None) -> int:
    if keyword is None:
        return 0
    if keyword in _OPENERS or (keyword == "set" and "=" not in (rest or "")):
        return 1
    return -1 if keyword in _CLOSERS else 0


def render_fast(text: str, display: str, components: ComponentSource,
                context: Mapping[str, Any], cancelled: Callable[[], bool]) -> SourceMap:
    """``text`` rendered as ``render_mapped`` renders it (same output, same map, same
    errors), from cached compiled segments; raises ``Cancelled`` between segments when
    ``cancelled()`` says so."""
    sources: dict[str, str] = {display: text}
    env = _CachingEnvironment(components, sources)
    parts = segments(text)
    try:
        compiled = [_compiled(env, part, display, last=index == len(parts) - 1)
                    for index, part in enumerate(parts)]
    except jinja2.TemplateSyntaxError:
        # The authoritative error (and line) is the whole template's.
        return render_mapped(text, display, components, context)
    return _render(env, compiled, parts, display, context, cancelled)


def _source(part: _Segment, last: bool) -> str:
    # Jinja drops one line break at the end of a template: only the last one's is the end.
    return part.text if last or not part.text.endswith("\n") else part.text + "\n"


def _compiled(env: _CachingEnvironment, part: _Segment, display: str, last: bool,
              preamble: str = "") -> tuple[str, CodeType]:
    """The segment's source (the output cache's key) and its code."""
    source = preamble + _source(part, last)
    return source, env.compile(source, name=display, filename=display)


def _template(env: _CachingEnvironment, code: CodeType, part: _Segment,
              display: str) -> jinja2.Template:
    """The segment as a template whose chunks are marked; made only when it renders (a
    cached output needs none: reading Jinja's debug table is not free)."""
    template = env.template_class.from_code(env, code, env.make_globals(None), None)
    mark_chunks(template, {display: part.text})
    return template


def _render(env: _CachingEnvironment, compiled: list[tuple[str, CodeType]],
            parts: list[_Segment], display: str, context: Mapping[str, Any],
            cancelled: Callable[[], bool]) -> SourceMap:
    values = type(context)(context) if isinstance(context, dict) else dict(context)
    values.__dict__.update(getattr(context, "__dict__", {}))  # strict, and what comes
    pieces: list[str] = []
    entries: list[_Entry] = []
    size = 0
    assigned: set[str] = set()  # the names earlier segments assigned
    for index, part in enumerate(parts):
        if cancelled():
            raise Cancelled
        source, code = _with_names(env, compiled[index], part, display,
                                   index == len(parts) - 1, assigned)
        shift = part.first_line - 1
        key = _output_key(source, values, bool(getattr(values, "strict", False)))
        output = _OUTPUT.get(key) if key is not None else None
        if output is None:
            try:
                output = _render_segment(_template(env, code, part, display), display, values)
            except TemplateError as exc:
                _shift_error(exc, shift, display)
                raise
            if key is not None and _keep(output):
                _OUTPUT[key] = output
                if len(_OUTPUT) > OUTPUT_CACHE_SIZE:
                    _OUTPUT.popitem(last=False)
        entries += [_shifted(e, size + e.start, shift, display) for e in output.entries]
        pieces.append(output.text)
        size += len(output.text)
        values.update(output.assigned)
        assigned |= {name for name, _ in output.assigned}
    return SourceMap("".join(pieces), entries)


def _keep(output: _Output) -> bool:
    """Only outputs whose assigned values are immutable: a later segment cannot change
    them in place behind the cache."""
    return all(isinstance(v, _IMMUTABLE) and not isinstance(v, jinja2.Undefined)
               for _, v in output.assigned)


def _render_segment(template: jinja2.Template, display: str,
                    values: Mapping[str, Any]) -> _Output:
    """One segment rendered alone: text, entries from 0 (segment lines), assigned names."""
    seen: list[jinja2.runtime.Context] = []
    _capture_context(template, seen)
    text, entries = collect_marked(Renderer(template, display).generate(values))
    assigned = tuple(seen[0].vars.items()) if seen else ()
    return _Output(text, tuple(entries), assigned)


def _shifted(mark: _Entry, start: int, shift: int, display: str) -> _Entry:
    """The entry of ``mark`` at ``start``, with the buffer's line numbers (the segment's
    start at 1)."""
    if not shift:
        return _Entry(start, mark.file, mark.line, mark.column, mark.chain)
    chain = tuple((f, n + shift if f == display else n) for f, n in mark.chain)
    line = mark.line + shift if mark.file == display else mark.line
    return _Entry(start, mark.file, line, mark.column, chain)


def _shift_error(exc: TemplateError, shift: int, display: str) -> None:
    """Move an error in the segment to the buffer's line (in its message too)."""
    if not shift or exc.template != display or not exc.line:
        return
    prefix = f"{display}:{exc.line}:"
    exc.line += shift
    if exc.message.startswith(prefix):
        exc.message = f"{display}:{exc.line}:" + exc.message[len(prefix):]
        exc.args = (exc.message,)


def _with_names(env: _CachingEnvironment, compiled: tuple[str, CodeType], part: _Segment,
                display: str, last: bool, assigned: set[str]) -> tuple[str, CodeType]:
    """The segment, recompiled to start with ``{% set x = x %}`` for each name it assigns
    that an earlier segment assigned: in one template such a name is a local of the
    whole template, which a ``{% set %}`` block before the new assignment sees with the
    earlier value; in a segment of its own it would be undefined there."""
    names = _STORED.get(compiled[0], frozenset()) & assigned
    if not names:
        return compiled
    preamble = "".join(f"{{% set {name} = {name} %}}" for name in sorted(names))
    return _compiled(env, part, display, last, preamble)


def _capture_context(template: jinja2.Template, seen: list[jinja2.runtime.Context]) -> None:
    """Keep the context the segment renders in: its top-level names go to the next."""
    root = template.root_render_func

    def capturing(context: jinja2.runtime.Context) -> Iterator[str]:
        seen.append(context)
        yield from root(context)

    template.root_render_func = capturing
