"""Deterministic tests: ``freeze_time`` and ``seed`` in ``test.toml`` (docs/testing.md).

Three pieces, because time and randomness reach a test three ways:

* Functions (``now()``, ``clock_timestamp()``, ``gen_random_uuid()`` …) are
  looked up through the ``search_path``. The schema ``spawn_frozen`` holds
  same-named functions that return the instant in the session setting
  ``spawn.freeze_time`` (or the real time when it is empty), and the test
  session puts it first: ``spawn_frozen, pg_catalog, <the path it had>``
  (``pg_catalog`` must be listed, or it is searched before everything).
  ``random()`` is the server's own, seeded with ``setseed``; the uuid
  functions draw from it, so they follow the seed too.
* ``current_timestamp``, ``current_date``, ``current_time``, ``localtimestamp``
  and ``localtime`` are SQL keywords, not functions: no ``search_path`` reaches
  them. The rendered test is rewritten so that each one outside strings,
  quoted names, comments and psql meta-commands calls ``spawn_frozen`` instead.
* Render-time ``gen_uuid_v4()``/``gen_uuid_v7()`` draw from a generator seeded by
  the seed and the test's name, and v7 takes its time from ``freeze_time``.

The schema stays in the database the test ran on (it holds only functions
and is the same for every test): it is created once, under an advisory lock
so that parallel tests do not race, and a version marker says when to
replace it.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable
from datetime import datetime

from spawn_db.db.catalog import FROZEN_SCHEMA
from spawn_db.db.psqlscan import _TOKEN
from spawn_db.escape import escape_literal
from spawn_db.sqltest.settings import MAX_SEED, TestSettings

SCHEMA = FROZEN_SCHEMA
VERSION_MARKER = "spawn_frozen_version_1"
# pg_advisory_xact_lock key: hashtext('spawn_frozen'), fixed so every spawn agrees.
LOCK_KEY = 1_926_314_497

_NOW = (
    "coalesce(nullif(pg_catalog.current_setting('spawn.freeze_time', true), '')"
    "::pg_catalog.timestamptz, pg_catalog.{real}())"
)
# name -> (return type, body expression over the frozen instant `t`)
_KEYWORDS: dict[str, tuple[str, str]] = {
    "current_timestamp": ("timestamptz", "t"),
    "current_date": ("date", "t::date"),
    "current_time": ("timetz", "t::timetz"),
    "localtimestamp": ("timestamp", "t::timestamp"),
    "localtime": ("time", "t::time"),
}
_PRECISION_TYPES = ("timestamptz", "timetz", "timestamp", "time")


def _function(name: str, returns: str, body: str, args: str = "") -> str:
    return (
        f"CREATE OR REPLACE FUNCTION {SCHEMA}.{name}({args}) RETURNS {returns} "
        f"LANGUAGE sql VOLATILE PARALLEL SAFE AS $f$ {body} $f$"
    )


def _schema_statements() -> list[str]:
    """The statements that create ``spawn_frozen`` and its functions.

    Bodies are SQL functions, parsed when called with the caller's ``search_path``:
    every function they call that ``spawn_frozen`` also defines is written
    ``pg_catalog.``-qualified.
    """
    parts = [f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}"]
    for real in ("now", "transaction_timestamp", "statement_timestamp", "clock_timestamp"):
        parts.append(_function(real, "timestamptz", "SELECT " + _NOW.format(real=real)))
    parts.append(_function(
        "timeofday", "text",
        "SELECT pg_catalog.to_char(" + _NOW.format(real="clock_timestamp")
        + ", 'Dy Mon DD HH24:MI:SS.US YYYY TZ')"))
    for keyword, (returns, expression) in _KEYWORDS.items():
        frozen = f"(SELECT {_NOW.format(real='now')} AS t) AS f"
        parts.append(_function(f'"{keyword}"', returns, f"SELECT {expression} FROM {frozen}"))
        if returns in _PRECISION_TYPES:
            rounded = " ".join(
                f"WHEN {p} THEN ({expression})::{returns}({p})" for p in range(7))
            parts.append(_function(
                f'"{keyword}"', returns,
                f"SELECT CASE p {rounded} ELSE {expression} END FROM {frozen}, "
                "(SELECT $1 AS p) AS a", "integer"))
    hex_digits = "pg_catalog.md5(pg_catalog.random()::text || ':' || pg_catalog.random()::text)"
    v4 = ("SELECT (substr(h, 1, 12) || '4' || substr(h, 14, 3) || substr('89ab', "
          "get_byte(decode(substr(h, 17, 2), 'hex'), 0) % 4 + 1, 1) || substr(h, 18, 15))::uuid "
          f"FROM (SELECT {hex_digits} AS h) AS r")
    parts.append(_function("gen_random_uuid", "uuid", v4))
    parts.append(_function("uuidv4", "uuid", v4))
    millis = ("lpad(to_hex((extract(epoch FROM " + _NOW.format(real="clock_timestamp")
              + ") * 1000)::bigint), 12, '0')")
    v7 = ("SELECT (m || '7' || substr(h, 14, 3) || substr('89ab', "
          "get_byte(decode(substr(h, 17, 2), 'hex'), 0) % 4 + 1, 1) || substr(h, 18, 15))::uuid "
          f"FROM (SELECT {hex_digits} AS h, {millis} AS m) AS r")
    parts.append(_function("uuidv7", "uuid", v7))
    parts.append(_function(VERSION_MARKER, "integer", "SELECT 1"))
    return parts


def install_sql() -> str:
    """Creates ``spawn_frozen`` unless this version is there; one DO block, silent under QUIET."""
    marker = escape_literal(f"{SCHEMA}.{VERSION_MARKER}()")
    body = "".join(f"  EXECUTE {escape_literal(s)};\n" for s in _schema_statements())
    return (
        "DO $spawn_frozen$\nBEGIN\n"
        f"  PERFORM pg_catalog.pg_advisory_xact_lock({LOCK_KEY});\n"
        f"  IF pg_catalog.to_regprocedure({marker}) IS NOT NULL THEN RETURN; END IF;\n"
        f"{body}"
        "END\n$spawn_frozen$;\n"
    )


def effective_seed(settings: TestSettings) -> int:
    """The seed, or one taken from the frozen instant: either key makes randomness repeat."""
    if settings.seed is not None:
        return settings.seed
    assert settings.freeze_time is not None
    return int(settings.freeze_time.timestamp()) % MAX_SEED


def session_sql(settings: TestSettings) -> str:
    """What the test session runs first: install, freeze, seed, ``search_path``. No output."""
    frozen = "" if settings.freeze_time is None else settings.freeze_time.isoformat()
    seed = effective_seed(settings) / MAX_SEED
    return (
        install_sql()
        + f"SET spawn.freeze_time = {escape_literal(frozen)};\n"
        + "DO $spawn_frozen$ BEGIN\n"
        + f"  PERFORM pg_catalog.setseed({seed!r});\n"
        + "  PERFORM pg_catalog.set_config('search_path', "
        + f"'{SCHEMA}, pg_catalog, ' || pg_catalog.current_setting('search_path'), false);\n"
        + "END $spawn_frozen$;\n"
    )


_KEYWORD_BYTES = {k.encode(): k for k in _KEYWORDS}
_META_END = re.compile(rb"[\n\r]")
_BODIES = {
    "str": re.compile(rb"(?:[^']++|'')*+'"),
    "estr": re.compile(rb"(?:[^'\\]++|''|\\.)*+'", re.S),
    "qid": re.compile(rb'(?:[^"]++|"")*+"'),
}
_COMMENT_EDGE = re.compile(rb"/\*|\*/")
_VARIABLE_CLOSE = {b"'": b"'", b'"': b'"', b"{": b"}"}


def rewrite_keywords(text: str) -> str:
    """``text`` with the time keywords outside quotes, comments and meta-commands replaced
    by calls into ``spawn_frozen`` (``current_timestamp(3)`` keeps its precision).

    A keyword after ``.`` or ``AS`` is a name (``t.current_date``, ``AS localtime``) and
    stays.
    """
    data = text.encode("utf-8")
    out: list[bytes] = []
    pos, copied, previous = 0, 0, b""
    while pos < len(data):
        match = _TOKEN.match(data, pos)
        assert match is not None
        kind, start, pos = match.lastgroup, match.start(), match.end()
        token = match.group()
        if kind in ("ws", "line"):
            continue
        if kind == "backslash":
            end = _META_END.search(data, pos)
            pos = end.start() if end else len(data)
        elif kind == "block":
            pos = _comment_end(data, pos)
        elif kind == "dollar":
            close = data.find(token, pos)
            pos = len(data) if close < 0 else close + len(token)
        elif kind in _BODIES:
            body = _BODIES[kind].match(data, pos)
            pos = len(data) if body is None else body.end()
        elif kind == "colon" and token[1:] in _VARIABLE_CLOSE:
            close = data.find(_VARIABLE_CLOSE[token[1:]], pos)  # :'name', :"name", :{?name}
            pos = len(data) if close < 0 else close + 1
        elif kind == "ident" and token.lower() in _KEYWORD_BYTES and previous not in (b".", b"as"):
            name = _KEYWORD_BYTES[token.lower()]
            call = f'{SCHEMA}."{name}"'
            if not data[pos:].lstrip().startswith(b"("):
                call += "()"
            out += [data[copied:start], call.encode()]
            copied = pos
        previous = token.lower()
    out.append(data[copied:])
    return b"".join(out).decode("utf-8")


def _comment_end(data: bytes, pos: int) -> int:
    depth = 1
    while depth:
        edge = _COMMENT_EDGE.search(data, pos)
        if edge is None:
            return len(data)
        depth += 1 if edge.group() == b"/*" else -1
        pos = edge.end()
    return pos


def render_globals(settings: TestSettings, test_name: str) -> dict[str, Callable[[], str]]:
    """``gen_uuid_v4``/``gen_uuid_v7`` for one test's render: the same sequence every run."""
    rng = random.Random(f"{effective_seed(settings)}/{test_name}")
    frozen = settings.freeze_time

    def gen_uuid_v4() -> str:
        return str(uuid.UUID(int=rng.getrandbits(128), version=4))

    def gen_uuid_v7() -> str:
        millis = (time.time_ns() // 1_000_000 if frozen is None
                  else _millis(frozen))
        value = (millis & ((1 << 48) - 1)) << 80 | rng.getrandbits(80)
        value = value & ~(0xF << 76) | 0x7 << 76
        value = value & ~(0x3 << 62) | 0x2 << 62
        return str(uuid.UUID(int=value))

    return {"gen_uuid_v4": gen_uuid_v4, "gen_uuid_v7": gen_uuid_v7}


def _millis(instant: datetime) -> int:
    return int(instant.timestamp() * 1000)
