"""Bounds on what one template operation may allocate, so a template cannot exhaust memory.

Rendering streams, so the size of the output is free. What is not free is a
single value: ``'x' * 10**9``, ``range(10**10) | list``, a string doubled
thirty times in a loop, ``'%999999999d' % 1``, ``2 ** 10**10``. Each of these
is checked here *before* it runs, so the render stops with a ``TemplateTooLarge``
(located at its file and line by the renderer) instead of being killed.
"""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Iterable
from typing import Any

from spawn_db.errors import TemplateTooLarge

MAX_LENGTH = 64 * 2**20
"""Characters of one string (bytes of one bytes value) a template may build: 64 Mi."""
MAX_ITEMS = 1_000_000
"""Items of one ``range()``, and of one list or tuple built by ``*`` or ``+``."""
MAX_INT_BITS = 2**20
"""Bits of an integer built by ``*`` or ``**`` (about 315,000 decimal digits, more
than PostgreSQL's ``numeric`` holds)."""
MAX_INDENT = 100
"""``tojson(indent=...)``: the indent is repeated on every line of the output."""

_SIZED = (str, bytes, list, tuple)
_PERCENT_FIELD = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")
_BRACE_SPEC = re.compile(r"\{[^{}]*?:([^{}]*(?:\{[^{}]*\}[^{}]*)*)\}")
_PADDING_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})


def too_large(what: str, size: int, limit: int, unit: str) -> TemplateTooLarge:
    return TemplateTooLarge(
        f"{what} would make a value of {size:,} {unit}, over the limit of {limit:,} "
        "(spawn's guard against exhausting memory); build large SQL in a loop, whose "
        "output streams, instead of in one value"
    )


def check_length(size: int, what: str) -> None:
    if size > MAX_LENGTH:
        raise too_large(what, size, MAX_LENGTH, "characters")


def check_items(size: int, what: str) -> None:
    if size > MAX_ITEMS:
        raise too_large(what, size, MAX_ITEMS, "items")


def check_size(value: Any, size: int, what: str) -> None:
    """Characters for text and bytes, items for lists and tuples."""
    if isinstance(value, list | tuple):
        check_items(size, what)
    else:
        check_length(size, what)


def bounded_range(*args: int) -> range:
    """Python's lazy ``range`` (a loop over it streams), refused past ``MAX_ITEMS``.

    Jinja's sandbox and MiniJinja (the Rust tool) stop at 100,000; spawn allows
    ten times that, and nested loops for more.
    """
    numbers = range(*args)
    try:
        size = len(numbers)
    except OverflowError:
        size = MAX_ITEMS + 1
    if size > MAX_ITEMS:
        call = f"range({', '.join(str(a) for a in args)})"
        raise TemplateTooLarge(
            f"{call} has {_count(numbers)} items, over the limit of {MAX_ITEMS:,} "
            "for one range (spawn's guard against exhausting memory); nest two loops "
            "instead, their output streams"
        )
    return numbers


def _count(numbers: range) -> str:
    try:
        return f"{len(numbers):,}"
    except OverflowError:
        return "more than 2**63"


def check_binop(operator: str, left: Any, right: Any) -> None:
    """Refuse ``left <operator> right`` when its result would pass a limit."""
    if operator == "*":
        _check_multiply(left, right)
    elif operator == "+":
        if isinstance(left, _SIZED) and isinstance(right, _SIZED):
            check_size(left, len(left) + len(right), "`+`")
    elif operator == "**":
        _check_power(left, right)
    elif operator == "%" and isinstance(left, str):
        check_format(left, right if isinstance(right, tuple) else (right,), {})


def _check_multiply(left: Any, right: Any) -> None:
    for seq, times in ((left, right), (right, left)):
        if isinstance(seq, _SIZED) and isinstance(times, int) and times > 1:
            check_size(seq, len(seq) * times, "`*`")
            if isinstance(seq, list | tuple):
                check_length(_text_in(seq) * times, "`*`")
            return
    if isinstance(left, int) and isinstance(right, int):
        bits = left.bit_length() + right.bit_length()
        if bits > MAX_INT_BITS:
            raise too_large("`*`", bits, MAX_INT_BITS, "bits")


def _text_in(items: list[Any] | tuple[Any, ...]) -> int:
    """Characters held by the strings directly in ``items``: what repeating them repeats."""
    return sum(len(item) for item in items if isinstance(item, str | bytes))


def _check_power(base: Any, exponent: Any) -> None:
    if isinstance(base, int) and isinstance(exponent, int) and exponent > 1 and abs(base) > 1:
        bits = abs(base).bit_length() * exponent
        if bits > MAX_INT_BITS:
            raise too_large("`**`", bits, MAX_INT_BITS, "bits")


def check_format(text: str, args: Iterable[Any], kwargs: dict[str, Any]) -> None:
    """Refuse ``%`` or ``str.format`` widths and precisions past ``MAX_LENGTH``.

    ``'%999999999d' % 1`` is a short template and a gigabyte of spaces. A width
    taken from an argument (``%*d``, ``{:{w}}``) is checked through the arguments.
    """
    widths = [int(n) for field in _PERCENT_FIELD.finditer(text) for n in field.groups()
              if n and n != "*"]
    widths += [int(n) for spec in _BRACE_SPEC.findall(text) for n in re.findall(r"\d+", spec)]
    if "*" in text or "{" in text:
        widths += [v for v in [*args, *kwargs.values()] if isinstance(v, int)]
    if widths:
        check_length(max(widths), "a format width")


def bounded_method(value: Any) -> Callable[..., Any] | None:
    """A checked stand-in for a ``str``/``bytes`` method that can multiply a size, or None."""
    if not isinstance(value, types.BuiltinMethodType):
        return None
    owner = value.__self__
    if not isinstance(owner, str | bytes):
        return None
    name = value.__name__
    if name in _PADDING_METHODS:
        check = _padding_check(owner)
    elif name == "expandtabs":
        check = _tabs_check(owner)
    elif name == "replace":
        check = _replace_check(owner)
    elif name == "join":
        return _bounded_join(value, owner)
    else:
        return None

    def bounded(*args: Any, **kwargs: Any) -> Any:
        check(*args, **kwargs)
        return value(*args, **kwargs)

    return bounded


def _padding_check(owner: str | bytes) -> Callable[..., None]:
    def check(width: Any = 0, *args: Any) -> None:
        check_length(int(width), f"`{type(owner).__name__}` padding")

    return check


def _tabs_check(owner: str | bytes) -> Callable[..., None]:
    tabs = owner.count("\t") if isinstance(owner, str) else owner.count(b"\t")

    def check(tabsize: Any = 8) -> None:
        check_length(len(owner) + tabs * int(tabsize), "`expandtabs`")

    return check


def _replace_check(owner: Any) -> Callable[..., None]:
    def check(old: Any, new: Any, count: Any = -1, *args: Any) -> None:
        check_replace(owner, old, new, count)

    return check


def check_replace(text: Any, old: Any, new: Any, count: Any = -1) -> None:
    """``text.replace(old, new, count)`` grows by ``len(new) - len(old)`` per match."""
    if not isinstance(old, str | bytes) or not isinstance(new, str | bytes):
        return
    found = text.count(old) if old else len(text) + 1
    if isinstance(count, int) and count >= 0:
        found = min(found, count)
    check_length(len(text) + found * max(0, len(new) - len(old)), "`replace`")


def _bounded_join(join: Callable[..., Any], separator: Any) -> Callable[..., Any]:
    def bounded(items: Iterable[Any]) -> Any:
        parts = list(items)
        size = sum(len(p) for p in parts if isinstance(p, str | bytes))
        check_length(size + len(separator) * max(0, len(parts) - 1), "`join`")
        return join(parts)

    return bounded


def bounded_concat(parts: Iterable[str]) -> str:
    """``"".join`` for the bodies of macros, ``{% set %}`` blocks and ``{% filter %}``.

    Jinja joins these through ``environment.concat``; a macro that repeats its
    argument twice, applied thirty times, would otherwise double a value to 1 GiB.
    """
    chunks: list[str] = []
    total = 0
    for part in parts:
        total += len(part)
        if total > MAX_LENGTH:
            raise too_large("this block", total, MAX_LENGTH, "characters")
        chunks.append(part)
    return "".join(chunks)
