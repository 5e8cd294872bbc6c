"""The names compiled templates import at run time, with SQL-safe markup.

Jinja's generated code imports ``Markup``, ``escape``, ``markup_join`` and
``Macro`` from ``jinja2.runtime``; ``template.SqlCodeGenerator`` points that
import here, so macro output, ``caller()``, set blocks and ``~`` all produce
``SqlMarkup`` and never fall back to HTML escaping.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jinja2 import runtime
from jinja2.exceptions import TemplateNotFound, TemplateRuntimeError
from jinja2.runtime import LoopContext, TemplateReference, Undefined, identity
from jinja2.utils import Namespace, internalcode, missing

from spawn_db.render.limits import check_length
from spawn_db.render.sqlvalue import SqlMarkup, sql_markup, sql_value

Markup = SqlMarkup
escape = sql_markup


def markup_join(seq: Any) -> str:
    """``~``: when any part is SQL already, the other parts are escaped as values.

    The joined length is checked before the join (``limits.MAX_LENGTH``), so a
    string doubled in a loop stops at the limit instead of exhausting memory.
    """
    parts = list(seq)
    if any(hasattr(p, "__html__") for p in parts):
        texts = [sql_value(p) for p in parts]
        check_length(sum(map(len, texts)), "`~`")
        return SqlMarkup("".join(texts))
    plain = [p if type(p) is str else str(p) for p in parts]
    check_length(sum(map(len, plain)), "`~`")
    return "".join(plain)


def str_join(seq: Iterable[Any]) -> str:
    """``~`` inside ``{% autoescape false %}``: plain text, bounded the same way."""
    texts = [p if type(p) is str else str(p) for p in seq]
    check_length(sum(map(len, texts)), "`~`")
    return "".join(texts)


class Macro(runtime.Macro):
    def _invoke(self, arguments: list[Any], autoescape: bool) -> str:
        rv = super()._invoke(arguments, autoescape)
        return SqlMarkup(rv) if autoescape else rv


__all__ = [
    "LoopContext", "Macro", "Markup", "Namespace", "TemplateNotFound", "TemplateReference",
    "TemplateRuntimeError", "Undefined", "escape", "identity", "internalcode", "markup_join",
    "missing", "str_join",
]
