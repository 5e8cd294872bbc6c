"""The Jinja environment Spawn renders migrations, tests and components with (SPEC §4).

Sandboxed, SQL auto-escaping (see ``sqlvalue``), a loader that resolves
includes against ``components/`` of the working tree or of a pin, and the
filters and functions the Rust tool offers. Rendering is a generator of
chunks, so large outputs stream instead of being built in memory.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import traceback
import uuid
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.filters import make_attrgetter
from jinja2.lexer import Lexer, TokenStream
from jinja2.sandbox import SandboxedEnvironment
from jinja2.utils import generate_lorem_ipsum

from spawn_db.errors import (
    ComponentNotFound,
    OutsideLink,
    RefusedPath,
    SecretError,
    SpawnError,
    TemplateError,
    TemplateTooLarge,
)
from spawn_db.escape import escape_identifier, escape_literal
from spawn_db.fsutil import is_inside, open_regular, real_folder
from spawn_db.render.data import Streams, expand_streams, open_component
from spawn_db.render.data import template_functions as data_functions
from spawn_db.render.limits import (
    MAX_INDENT,
    MAX_INT_BITS,
    bounded_concat,
    bounded_method,
    bounded_range,
    check_binop,
    check_format,
    check_items,
    check_length,
    check_replace,
)
from spawn_db.render.plaintext import newline_of, plain_output, without_bom
from spawn_db.render.sqlvalue import SqlMarkup, sql_markup, sql_value

if TYPE_CHECKING:
    from spawn_db.config import Config
    from spawn_db.secret.values import SecretReferences

HTML_FILTERS = ("escape", "e", "forceescape", "urlize", "xmlattr")
RUNTIME_IMPORT = "from jinja2.runtime import "
READER_FILTERS = ("read_file", "read_json", "read_toml", "read_yaml", "read_csv", "read_jsonl",
                  "copy_csv")


class ComponentSource(Protocol):
    """Where ``components/`` files come from: the working tree or a pinned snapshot."""

    @property
    def description(self) -> str: ...

    def read(self, parts: list[str]) -> bytes | None: ...


@dataclass(frozen=True)
class WorkingTreeSource:
    """``components/`` of the working tree, confined to itself.

    Symbolic links are followed only when they resolve inside ``components/``
    (and ``components/`` itself only when it resolves inside the folder that
    holds it): a link to ``/etc/passwd`` or ``/proc/self/environ`` would
    otherwise be rendered, and pinned into a store that users commit.
    """

    root: Path
    description: str = "components/"

    @cached_property
    def real_root(self) -> str:
        """The resolved ``components/`` folder; refuses one that is a link leaving its parent."""
        real, escaped = real_folder(str(self.root))
        if escaped is not None:
            raise OutsideLink(
                f"{os.path.abspath(self.root)} is a symbolic link to {real}, outside {escaped}; "
                "spawn reads components only from inside the project (move the files into it)"
            )
        return real

    def read(self, parts: list[str]) -> bytes | None:
        """The bytes of a regular file under ``components/``, or None if there is none."""
        file = self.open(parts)
        if file is None:
            return None
        with file:
            return file.read()

    def open(self, parts: list[str]) -> IO[bytes] | None:
        """A regular file under ``components/`` opened for reading (``copy_csv`` streams
        it), or None if there is none."""
        root = self.real_root
        real = os.path.realpath(os.path.join(root, *parts))
        if not is_inside(real, root):
            raise OutsideLink(outside_link_message(root, parts, real))
        return open_regular(real)


def outside_link_message(root: str, parts: list[str], real: str) -> str:
    """Names the first link on the way to ``parts`` that leaves ``root``, and its target."""
    link, target = "/".join(parts), real
    for depth in range(1, len(parts) + 1):
        path = os.path.join(root, *parts[:depth])
        if os.path.islink(path) and not is_inside(os.path.realpath(path), root):
            link, target = "/".join(parts[:depth]), os.path.realpath(path)
            break
    return (
        f"components/{link} is a symbolic link to {target}, outside components/; spawn "
        "follows links only inside components/ (copy the file into components/ instead)"
    )


class PinnedSource:
    """Components resolved only through a pin's tree objects."""

    def __init__(self, tree: Any, description: str) -> None:
        self.tree = tree
        self.description = description

    def read(self, parts: list[str]) -> bytes | None:
        result: bytes | None = self.tree.read(parts)
        return result

    def open(self, parts: list[str]) -> IO[bytes] | None:
        """The pinned file, verified against its hash, opened for streaming."""
        result: IO[bytes] | None = self.tree.open(parts)
        return result


def component_parts(path: str) -> list[str]:
    """Split a components-relative path, refusing absolute paths and ``..``."""
    if not isinstance(path, str):
        raise RefusedPath(f"component path must be a string, not {type(path).__name__}")
    if path.startswith("/") or os.path.isabs(path):
        raise RefusedPath(
            f"absolute path {path!r} refused: paths are relative to components/"
        )
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise RefusedPath(f"path {path!r} refused: it leaves components/ (remove the `..`)")
    if not parts:
        raise RefusedPath(f"path {path!r} names no file under components/")
    return parts


class SqlCodeGenerator(CodeGenerator):
    """Escapes constant output for SQL and imports SQL-safe markup at run time.

    Only plain constants are folded at compile time: folding ``"x"|safe ~ y``
    would lose the safe marking.
    """

    def _output_child_to_const(
        self, node: nodes.Expr, frame: Frame, finalize: CodeGenerator._FinalizeInfo
    ) -> str:
        if not isinstance(node, nodes.TemplateData | nodes.Const):
            raise nodes.Impossible()
        const = node.as_const(frame.eval_ctx)
        if isinstance(node, nodes.TemplateData):
            return str(const)
        return sql_value(const)

    def writeline(self, x: str, node: nodes.Node | None = None, extra: int = 0) -> None:
        if x.startswith(RUNTIME_IMPORT):
            x = "from spawn_db.render.jinja_runtime import " + x[len(RUNTIME_IMPORT):]
        super().writeline(x, node, extra)


class ComponentLoader(jinja2.BaseLoader):
    def __init__(self, source: ComponentSource) -> None:
        self.source = source

    def load(
        self,
        environment: jinja2.Environment,
        name: str,
        globals: MutableMapping[str, Any] | None = None,
    ) -> jinja2.Template:
        """Like Jinja's, but a component with no template syntax is not compiled.

        Most components are plain SQL; skipping Jinja's lexer, parser and
        ``compile()`` for them makes a 1,000-include migration render 2-3x faster.
        """
        text, filename, uptodate = self.get_source(environment, name)
        output = plain_output(text)
        if output is None:
            code = environment.compile(text, name, filename)
            return environment.template_class.from_code(
                environment, code, environment.make_globals(globals), uptodate
            )
        return plain_template(environment, output, name, filename, globals)

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        parts = component_parts(template)
        if parts[0] == LIBRARY_FOLDER:
            return library_source(parts, self.source), "/".join(parts), lambda: True
        data = self.source.read(parts)
        if data is None:
            raise ComponentNotFound(
                f"component {template!r} not found in {self.source.description}; "
                "check the path (it is relative to components/)"
            )
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ComponentNotFound(
                f"component {template!r} is not UTF-8 text and cannot be included; "
                "use read_file for binary files"
            ) from None
        return text, "components/" + "/".join(parts), lambda: True


LIBRARY_FOLDER = "spawn"


def library_source(parts: list[str], components: ComponentSource) -> str:
    """The text of ``spawn/...``, a file of spawn's own template library (``render/library``).

    ``spawn/`` is reserved: a component at the same path would otherwise change what
    ``{% import "spawn/assert.sql" %}`` means depending on the project, so it is an
    error that names the file, never a silent override.
    """
    from importlib.resources import files

    name = "/".join(parts)
    if components.read(parts) is not None:
        raise RefusedPath(
            f"components/{name} cannot be included: the path spawn/ is reserved for spawn's "
            "own template library; move the file to another folder of components/ "
            "(e.g. components/app/) and include it from there"
        )
    node = files("spawn_db.render").joinpath("library", *parts)
    if not node.is_file():
        known = ", ".join(sorted(library_files()))
        raise ComponentNotFound(
            f"{name!r} is not a file of spawn's template library ({known}); the path spawn/ "
            "is reserved for it, so check the name"
        )
    return node.read_text(encoding="utf-8")


def library_files() -> list[str]:
    """The paths the library provides (``spawn/assert.sql``), for messages and docs."""
    from importlib.resources import files

    folder = files("spawn_db.render").joinpath("library", LIBRARY_FOLDER)
    return [f"{LIBRARY_FOLDER}/{node.name}" for node in folder.iterdir() if node.is_file()]


def plain_template(
    environment: jinja2.Environment,
    output: str,
    name: str,
    filename: str | None,
    globals: MutableMapping[str, Any] | None,
) -> jinja2.Template:
    """A template whose output is ``output`` (see ``plaintext.plain_output``)."""

    def root(context: Any) -> Iterator[str]:
        if output:
            yield output

    namespace: dict[str, Any] = {
        "environment": environment, "__file__": filename, "name": name,
        "root": root, "blocks": {}, "debug_info": "",
    }
    template_class: Any = environment.template_class
    template: jinja2.Template = template_class._from_namespace(
        environment, namespace, environment.make_globals(globals)
    )
    return template


class SqlEnvironment(SandboxedEnvironment):
    """Jinja's sandbox, escaping for SQL, with bounds on what one operation may allocate.

    Output streams, so its size is free; but ``'x' * 10**9``, ``range(10**10)|list``
    or a string doubled in a loop would build one value until memory runs out.
    The operators that can multiply a size (``*``, ``+``, ``%``, ``**``) are
    intercepted and checked before they run (see ``limits``).
    """

    code_generator_class = SqlCodeGenerator
    intercepted_binops = frozenset({"*", "+", "%", "**"})
    concat = staticmethod(bounded_concat)

    def __init__(self, source: ComponentSource) -> None:
        super().__init__(
            loader=ComponentLoader(source),
            autoescape=True,
            finalize=_finalize,
            keep_trailing_newline=False,
            optimized=False,
            auto_reload=False,
            cache_size=-1,
        )
        self.source = source
        self._lexers: dict[str, Lexer] = {}
        self._plugins_added = False
        for name in HTML_FILTERS:
            self.filters.pop(name, None)
        self.filters.update(_filters(self))
        self.streams = Streams()
        self.filters.update(data_functions(self))
        for name in READER_FILTERS:
            self.globals[name] = self.filters[name]
        self.globals.update(
            gen_uuid_v4=gen_uuid_v4, gen_uuid_v5=gen_uuid_v5, gen_uuid_v7=gen_uuid_v7,
            range=bounded_range, lipsum=_bounded(generate_lorem_ipsum, _lipsum_size),
            secret=_secret_function(None),
        )

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """Refuse an operation whose result would pass a limit, before it allocates.

        Integer ``+`` and ``*`` of ordinary size (the arithmetic of row loops)
        take a short path: they run once per generated row.
        """
        if type(left) is int and type(right) is int:
            if operator == "+":
                return left + right
            if operator == "*" and left.bit_length() + right.bit_length() <= MAX_INT_BITS:
                return left * right
        check_binop(operator, left, right)
        return self.binop_table[operator](left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """Jinja's sandboxed ``str.format``, and the ``str`` and ``bytes`` methods that pad
        or multiply (``ljust``, ``center``, ``zfill``, ``expandtabs``, ``replace``,
        ``join``), each checked against the size limit before it runs."""
        wrapped = super().wrap_str_format(value)
        if wrapped is not None:
            return _bounded(wrapped, lambda *a, **k: check_format(str(value.__self__), a, k))
        return bounded_method(value)

    def _tokenize(
        self, source: str, name: str | None, filename: str | None = None,
        state: str | None = None,
    ) -> TokenStream:
        """Tokens of ``source`` without its BOM, its line breaks kept as the file has them.

        Jinja's lexer turns every line break into ``newline_sequence``, so a CRLF
        file would reach PostgreSQL with its CR bytes gone, inside string
        literals too. Each template gets a lexer whose sequence is its own first
        line break (``plaintext.newline_of``), as ``plain_output`` does.
        """
        source = without_bom(source)
        newline = newline_of(source)
        lexer = self._lexers.get(newline)
        if lexer is None:
            lexer = copy.copy(self.lexer)
            lexer.newline_sequence = newline  # type: ignore[assignment]
            self._lexers[newline] = lexer
        return lexer.tokenize(source, name, filename, state)

    def _parse(self, source: str, name: str | None, filename: str | None) -> nodes.Template:
        tree = super()._parse(source, name, filename)
        for node in tree.find_all((nodes.Filter,)):
            if node.name in HTML_FILTERS:
                raise TemplateError(
                    f"{filename or name}:{node.lineno}: the `{node.name}` filter escapes for "
                    "HTML, not SQL; use `escape_literal` for values or `escape_identifier` "
                    "for names",
                    template=filename or name, line=node.lineno,
                )
        if not self._plugins_added:
            self._add_plugins_for(tree)
        return tree

    def _add_plugins_for(self, tree: nodes.Template) -> None:
        from spawn_db.render.extensions import add_template_plugins, unknown_names

        if unknown_names(tree, self.filters, self.tests, self.globals):
            self._plugins_added = True
            add_template_plugins(self.filters, self.tests, self.globals,
                                 pinned=isinstance(self.source, PinnedSource))

    def read_component(self, path: str) -> bytes:
        data = self.source.read(component_parts(path))
        if data is None:
            raise ComponentNotFound(
                f"file {path!r} not found in {self.source.description}; check the path "
                "(it is relative to components/)"
            )
        return data

    def open_component(self, path: str) -> tuple[IO[bytes], str]:
        """A components file opened for streaming, and its name for messages."""
        parts = component_parts(path)
        stream = open_component(self.source, parts)
        if stream is None:
            raise ComponentNotFound(
                f"file {path!r} not found in {self.source.description}; check the path "
                "(it is relative to components/)"
            )
        return stream, "components/" + "/".join(parts)


def _filters(env: SqlEnvironment) -> dict[str, Callable[..., Any]]:
    from spawn_db.render.variables import parse_json, parse_toml, parse_yaml

    def read_file(path: str) -> bytes:
        return env.read_component(path)

    def reader(parse: Callable[[str, str], Any]) -> Callable[[str], Any]:
        return lambda path: parse(without_bom(_as_text(env.read_component(path))), path)

    jinja = env.filters
    return {
        "center": _bounded(jinja["center"], lambda v, width=80: _padding(v, width, 1)),
        "indent": _bounded(jinja["indent"], _indent_size),
        "batch": _bounded(jinja["batch"], lambda v, n, *a: check_items(int(n), "`batch`")),
        "slice": _bounded(jinja["slice"], lambda v, n, *a: check_items(int(n), "`slice`")),
        "sum": _bounded_sum,
        "safe": _safe,
        "escape_identifier": lambda v: SqlMarkup(escape_identifier(_as_text(v))),
        "escape_literal": _escape_literal,
        "join": _join,
        "format": _format,
        "replace": _replace,
        "tojson": _tojson,
        "read_file": read_file,
        "to_string_lossy": lambda v: _as_bytes(v).decode("utf-8", errors="replace"),
        "base64_encode": lambda v: base64.b64encode(_as_bytes(v)).decode("ascii"),
        "parse_json": lambda v: parse_json(_as_text(v), "parse_json input"),
        "parse_toml": lambda v: parse_toml(_as_text(v), "parse_toml input"),
        "parse_yaml": lambda v: parse_yaml(_as_text(v), "parse_yaml input"),
        "read_json": reader(parse_json),
        "read_toml": reader(parse_toml),
        "read_yaml": reader(parse_yaml),
    }


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    """``%`` formatting; into SQL text, the arguments are escaped as values."""
    check_binop("%", str(value), kwargs or args)
    if hasattr(value, "__html__"):
        return _sql_safe(value) % (kwargs or args)
    return str(value) % (kwargs or args)


def _tojson(value: Any, indent: int | None = None) -> SqlMarkup:
    if indent is not None and int(indent) > MAX_INDENT:
        raise TemplateTooLarge(
            f"tojson(indent={indent}) is over the limit of {MAX_INDENT} (an indent is "
            "repeated on every line); use a smaller indent"
        )
    text = json.dumps(value, indent=indent, ensure_ascii=False, default=str)
    return SqlMarkup(escape_literal(text))


def _bounded(function: Callable[..., Any], check: Callable[..., Any]) -> Callable[..., Any]:
    """``function``, after ``check`` (same arguments) accepted the size of its result.

    Keeps Jinja's ``pass_environment``/``pass_context`` marks, so Jinja still
    passes the same leading argument to it.
    """

    def bounded(*args: Any, **kwargs: Any) -> Any:
        check(*args[_passed(function):], **kwargs)
        return function(*args, **kwargs)

    pass_arg = getattr(function, "jinja_pass_arg", None)
    if pass_arg is not None:
        bounded.jinja_pass_arg = pass_arg  # type: ignore[attr-defined]
    return bounded


def _passed(function: Callable[..., Any]) -> int:
    """How many leading arguments Jinja adds (the environment or context)."""
    return 1 if getattr(function, "jinja_pass_arg", None) is not None else 0


def _padding(value: Any, width: Any, lines: int) -> None:
    check_length(len(str(value)) + int(width) * lines, "padding to that width")


def _indent_size(value: Any, width: Any = 4, *args: Any, **kwargs: Any) -> None:
    pad = len(width) if isinstance(width, str) else int(width)
    text = str(value)
    check_length(len(text) + pad * (text.count("\n") + 1), "`indent`")


def _lipsum_size(n: int = 5, *args: Any, **kwargs: Any) -> None:
    check_length(int(n) * 1000, "`lipsum`")  # up to 100 words a paragraph


@jinja2.pass_environment
def _bounded_sum(env: Any, iterable: Any, attribute: Any = None, start: Any = 0) -> Any:
    """Jinja's ``sum``, checking each addition (``start=[]`` concatenates lists)."""
    if attribute is not None:
        getter = make_attrgetter(env, attribute)
        iterable = (getter(item) for item in iterable)
    total = start
    for item in iterable:
        check_binop("+", total, item)
        total = total + item
    return total


def _finalize(value: Any) -> SqlMarkup:
    """``sql_markup``, after refusing a strict undefined value, also inside a list or
    mapping (``sql_value`` would write it as nothing or NULL)."""
    _check_defined(value)
    return sql_markup(value)


def _check_defined(value: Any, depth: int = 0) -> None:
    if isinstance(value, jinja2.StrictUndefined):
        value._fail_with_undefined_error()
    if depth < 32 and isinstance(value, list | tuple):
        for item in value:
            _check_defined(item, depth + 1)
    elif depth < 32 and isinstance(value, dict):
        for item in value.values():
            _check_defined(item, depth + 1)


def _sql_safe(value: Any) -> SqlMarkup:
    return value if isinstance(value, SqlMarkup) else SqlMarkup(value)


def _safe(value: Any) -> SqlMarkup:
    """Mark as SQL; non-strings become their SQL spelling (``none`` is NULL, not None)."""
    _check_defined(value)
    if hasattr(value, "__html__"):
        return _sql_safe(value)
    if isinstance(value, str):
        return SqlMarkup(value)
    return sql_markup(value)


def _escape_literal(value: Any) -> SqlMarkup:
    if value is None:
        return SqlMarkup("NULL")
    return SqlMarkup(escape_literal(_as_text(value)))


def _join(value: Any, d: str = "", attribute: Any = None) -> str:
    """Jinja's ``join``, escaping plain items for SQL when any part is SQL already."""
    items = list(value)
    if attribute is not None:
        items = [getattr(i, attribute, None) if not isinstance(i, dict) else i.get(attribute)
                 for i in items]
    if hasattr(d, "__html__") or any(hasattr(i, "__html__") for i in items):
        texts = [sql_value(i) for i in items]
    else:
        texts = [str(i) for i in items]
    check_length(sum(map(len, texts)) + len(d) * max(0, len(texts) - 1), "`join`")
    if hasattr(d, "__html__") or any(hasattr(i, "__html__") for i in items):
        return SqlMarkup(str(_sql_safe(d)).join(texts))
    return str(d).join(texts)


def _replace(value: Any, old: Any, new: Any, count: int | None = None) -> str:
    """Textual replace; into SQL text, a plain replacement is inserted as an escaped value."""
    limit = -1 if count is None else count
    replacement = str(new) if not hasattr(value, "__html__") else sql_value(new)
    check_replace(str(value), str(old), replacement, limit)
    if not hasattr(value, "__html__"):
        return str(value).replace(str(old), str(new), limit)
    return SqlMarkup(str.replace(str(value), str(old), sql_value(new), limit))


def _as_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return str(value).encode("utf-8")


def gen_uuid_v4() -> str:
    return str(uuid.uuid4())


def gen_uuid_v5(seed: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, str(seed)))


def gen_uuid_v7() -> str:
    """RFC 9562 version 7: 48-bit Unix milliseconds, then random bits."""
    import time

    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80 | rand & ((1 << 80) - 1)
    value = value & ~(0xF << 76) | 0x7 << 76
    value = value & ~(0x3 << 62) | 0x2 << 62
    return str(uuid.UUID(int=value))


@dataclass
class Renderer:
    """A compiled template ready to stream; build it with ``compile_template``."""

    template: jinja2.Template
    display_name: str

    def generate(self, context: Mapping[str, Any]) -> Iterator[str]:
        """The output's chunks; a ``RenderContext`` with ``strict`` set makes an undefined
        value an error (the environment is this template's own, so setting its
        ``undefined`` class here affects no other render)."""
        values = dict(context)
        strict = bool(getattr(context, "strict", False))
        self.template.environment.undefined = (
            strict_undefined(values) if strict else jinja2.Undefined)
        secrets = getattr(context, "secrets", None)
        self.template.environment.globals["secret"] = _secret_function(secrets)
        env = self.template.environment
        streams = env.streams = Streams()  # type: ignore[attr-defined]
        try:
            yield from expand_streams(self.template.generate(values), streams, self.display_name)
        except SpawnError as exc:
            if isinstance(exc, TemplateError):
                raise
            located = _located(exc, exc.message, self.display_name)
            if isinstance(exc, SecretError):  # configuration, exit 2: keep its kind
                raise SecretError(located.message) from None
            raise located from None
        except jinja2.TemplateSyntaxError as exc:
            raise _syntax_error(exc, self.display_name) from None
        except jinja2.TemplateError as exc:
            raise _located(exc, str(exc), self.display_name) from None
        except (TypeError, ValueError, LookupError, ArithmeticError) as exc:
            raise _located(exc, f"{type(exc).__name__}: {exc}", self.display_name) from None

    def render(self, context: Mapping[str, Any]) -> str:
        return "".join(self.generate(context))


def compile_template(source_text: str, display_name: str, components: ComponentSource) -> Renderer:
    """Parse ``source_text``; syntax errors name ``display_name`` and the line."""
    env = SqlEnvironment(components)
    try:
        code = env.compile(source_text, name=display_name, filename=display_name)
        template = env.template_class.from_code(env, code, env.make_globals(None), None)
    except jinja2.TemplateSyntaxError as exc:
        raise _syntax_error(exc, display_name) from None
    return Renderer(template, display_name)


def _syntax_error(exc: jinja2.TemplateSyntaxError, display_name: str) -> TemplateError:
    where = exc.filename or exc.name or display_name
    return TemplateError(
        f"{where}:{exc.lineno}: template syntax error: {exc.message}",
        template=where, line=exc.lineno,
    )


def _located(exc: BaseException, message: str, display_name: str) -> TemplateError:
    """Attach the innermost template file and line from Jinja's rewritten traceback."""
    where, line = display_name, None
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename == display_name or frame.filename.startswith("components/"):
            where, line = frame.filename, frame.lineno
    location = f"{where}:{line}" if line else where
    return TemplateError(f"{location}: {message}", template=where, line=line)


class RenderContext(dict[str, Any]):
    """The values a template sees, whether an undefined one is an error, and the secrets
    it may reference (``secrets.used`` lists those it did, once rendered)."""

    strict: bool = False
    secrets: SecretReferences | None = None


def template_context(config: Config, variables: Any) -> RenderContext:
    """``env`` and ``variables`` for a render, with the project's undefined-value mode
    (``[templates] undefined``, ``--strict``/``--lenient``); already pinned migrations
    render with today's setting too, since strictness is not part of a pin."""
    from spawn_db.secret.values import references

    context = RenderContext(env=config.environment, variables=variables)
    context.strict = config.strict_undefined
    context.secrets = references(config)
    return context


def _secret_function(secrets: SecretReferences | None) -> Callable[[Any], SqlMarkup]:
    """``secret(name)``: the psql variable reference, emitted as is (the value never enters
    the rendered text; the runner sets the variable in the session)."""
    def secret(name: Any) -> SqlMarkup:
        if secrets is None:
            raise TemplateError(f"secret({name!r}) is only available when rendering for a "
                                "project (with [secrets] in spawn.toml)")
        return SqlMarkup(secrets.reference(name))

    return secret


# A variables file can be large; naming an undefined key looks at this many values at most.
MAX_NAMING_NODES = 10_000


def strict_undefined(roots: Mapping[str, Any]) -> type[jinja2.Undefined]:
    """Jinja's ``StrictUndefined``, whose error names the value by its path from the
    context (``variables.db.role``), so the message says what to define.

    ``is defined``, ``default`` and ``variables.get('x')`` keep working: only using
    an undefined value (printing, iterating, comparing, ``if``) is an error.
    """

    class SpawnStrictUndefined(jinja2.StrictUndefined):
        __slots__ = ()

        @property
        def _undefined_message(self) -> str:
            name, owner = undefined_name(self._undefined_obj, self._undefined_name, roots)
            return (
                f"`{name}`{owner} is undefined (strict mode: [templates] undefined = "
                f"\"strict\" or --strict); define it, or write `{name} | default(...)` or "
                f"test `{name} is defined`"
            )

    return SpawnStrictUndefined


def undefined_name(obj: Any, name: Any, roots: Mapping[str, Any]) -> tuple[str, str]:
    """How a template would spell the undefined value (``app_role``, ``variables.app_role``,
    ``variables.readers[3]``), and, when its owner is not reachable from the context,
    what kind of value lacks it."""
    key = "?" if name is None else str(name)
    if obj is jinja2.utils.missing:
        return key, ""
    found = _path_of(obj, roots)
    if found is None:
        return key, f" (a key or attribute of a {jinja2.utils.object_type_repr(obj)})"
    return found + _step(name), ""


def _step(key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f".{key}"
    return f"[{json.dumps(key, ensure_ascii=False, default=str)}]"


def _path_of(target: Any, roots: Mapping[str, Any]) -> str | None:
    """The path from the context to ``target`` (by identity), breadth first, bounded."""
    queue: list[tuple[str, Any]] = list(roots.items())
    for visited, (path, value) in enumerate(queue):
        if value is target:
            return path
        if visited + len(queue) > MAX_NAMING_NODES:
            return None
        if isinstance(value, Mapping):
            queue.extend((path + _step(k), v) for k, v in value.items())
        elif isinstance(value, list | tuple):
            queue.extend((f"{path}[{i}]", v) for i, v in enumerate(value))
    return None
