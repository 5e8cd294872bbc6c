"""How a template value becomes SQL text: SPEC §4's auto-escaping table."""

from __future__ import annotations

import datetime
import json
import math
from collections.abc import Mapping
from typing import Any

from markupsafe import Markup

from spawn_db.escape import escape_bytea, escape_literal


def sql_value(value: Any) -> str:
    """SQL for one ``{{ expr }}`` output, chosen by the value's type.

    Anything that has ``__html__`` (marked safe, or produced by a macro,
    ``caller()`` or an include) is already SQL and passes through unchanged.
    """
    if hasattr(value, "__html__"):
        return str(value.__html__())
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return _float(value)
    if isinstance(value, str):
        return escape_literal(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return escape_bytea(bytes(value))
    if isinstance(value, list | tuple):
        if not value:
            return "'{}'"
        return "ARRAY[" + ", ".join(_array_element(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return escape_literal(to_json(value))
    if _is_undefined(value):
        return ""
    if isinstance(value, datetime.date | datetime.time):
        return escape_literal(value.isoformat())
    return escape_literal(str(value))


class SqlMarkup(Markup):
    """Text that is already SQL: combining it with values escapes them for SQL.

    Markupsafe's ``Markup`` escapes for HTML when joined, formatted or added
    to; that would let ``{{ "%s"|safe|format(v) }}`` inject ``v`` raw. Every
    safe string the template engine creates is this class instead.
    """

    __slots__ = ()

    @classmethod
    def escape(cls, s: Any, /) -> SqlMarkup:
        return cls(sql_value(s))


def sql_markup(value: Any) -> SqlMarkup:
    return SqlMarkup(sql_value(value))


def _array_element(value: Any) -> str:
    return "NULL" if _is_undefined(value) else sql_value(value)


def _float(value: float) -> str:
    if math.isnan(value):
        return "'NaN'::float8"
    if math.isinf(value):
        return "'Infinity'::float8" if value > 0 else "'-Infinity'::float8"
    return repr(value)


def _is_undefined(value: Any) -> bool:
    from jinja2 import Undefined

    return isinstance(value, Undefined)


def to_json(value: Any) -> str:
    """Compact JSON, as serde_json writes it, for mappings rendered as literals."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, bytes):
        return list(value)
    if _is_undefined(value):
        return None
    raise TypeError(f"cannot represent {type(value).__name__} as JSON")
