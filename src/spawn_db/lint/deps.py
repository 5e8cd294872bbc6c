"""Component dependency tracking: which objects each component defines and references.

From the parsed statements of rendered SQL (``parse.Statement``), each ``CREATE``
of a function, procedure, view, materialized view, table, type, domain,
sequence, trigger or policy becomes a ``Definition``: the object, its *shape*
(what PostgreSQL cannot change in place: a function's result, parameter names
and defaults; a view's column list; a materialized view's or type's whole
definition) and its ``Reference`` s to other objects (function calls, relations,
types). References are *hard* when PostgreSQL records them in ``pg_depend`` (view
and materialized view queries, ``BEGIN ATOMIC``/``RETURN`` bodies, column types,
defaults and checks, argument and result types, triggers, policies) and
*late-bound* when it does not (string bodies: ``LANGUAGE sql AS '...'`` parsed
with PostgreSQL's parser, PL/pgSQL through pglast's PL/pgSQL parser, best effort;
``EXECUTE`` strings are invisible). Only hard dependents must be dropped before
their object can be.

Names are compared as written, without a search path: an unqualified name
matches the same name in any schema, a qualified one only that schema. A call
matches the functions of its name whose parameter count admits its argument
count (all of them when none does: overloads are resolved by types, which only a
database knows).

``RecreateTracker`` follows the migrations in apply order, remembering for each
component the definitions of the last migration that included it (what the
database got), and reports every change PostgreSQL cannot make in place whose
hard dependents, in other components, the migration does not include (lint rule
``RECREATE_RULE``). ``component_graph`` renders each component on its own for
``spawn component deps``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

RECREATE_RULE = "SP020"

FUNCTION_KINDS = ("function", "procedure")
RELATION_KINDS = ("table", "view", "materialized view", "sequence")
TYPE_KINDS = ("type", "domain")

# format_type's names for the parser's internal type names (the way PostgreSQL prints
# a signature, so ``f(integer)`` is also what ``to_regprocedure`` reads).
_TYPE_NAMES = {
    "int4": "integer", "int": "integer", "int8": "bigint", "int2": "smallint",
    "bool": "boolean", "float8": "double precision", "float4": "real",
    "varchar": "character varying", "bpchar": "character", "decimal": "numeric",
    "timestamptz": "timestamp with time zone", "timestamp": "timestamp without time zone",
    "timetz": "time with time zone", "time": "time without time zone",
    "varbit": "bit varying",
}
_SEQUENCE_FUNCTIONS = frozenset({"nextval", "currval", "setval"})


@dataclass(frozen=True)
class DbObject:
    """A schema object: ``kind`` (``function``, ``view``, ``type`` ...), its name as written
    (``schema.name`` or ``name``), a function's identity argument types, and the table of
    a trigger or policy."""

    kind: str
    name: str
    args: tuple[str, ...] = ()
    on: str = ""

    @property
    def key(self) -> tuple[str, str]:
        """(kind, unqualified name): how an object is matched with ``pg_describe_object``'s
        text, which qualifies names only outside the search path."""
        return self.kind, _last_name(self.name)

    @property
    def label(self) -> str:
        """``function f(integer)``, ``view v``, ``trigger t on orders``."""
        if self.kind in FUNCTION_KINDS:
            return f"{self.kind} {self.name}({', '.join(self.args)})"
        suffix = f" on {self.on}" if self.on else ""
        return f"{self.kind} {self.name}{suffix}"


@dataclass(frozen=True)
class Reference:
    """A name a definition uses: ``kind`` ``function`` (a call, with its argument count),
    ``relation`` or ``type``; ``late`` when PostgreSQL does not record it (string bodies)."""

    kind: str
    name: str
    arity: int | None = None
    late: bool = False


@dataclass(frozen=True)
class Definition:
    """One object a statement creates, where (offset in the rendered text), what may not
    change in place (``shape``), and what it references."""

    obj: DbObject
    offset: int
    shape: tuple[str, ...]
    references: tuple[Reference, ...]
    required: int = 0  # parameters without default (functions)


@dataclass(frozen=True)
class Change:
    """A change of ``old`` (as the database has it) that PostgreSQL cannot make in place,
    made by the definition at ``offset``; ``what`` says which change."""

    old: DbObject
    what: str
    offset: int


# -- definitions and references of one statement --------------------------------------


def definitions(statements: Iterable[Any], *, late: bool = True) -> list[Definition]:
    """Every object the statements (``parse.Statement``) create, in order; without
    ``late``, string bodies are not read (the recreate rule needs hard references only)."""
    found: list[Definition] = []
    for statement in statements:
        made = _define(statement.node, statement.start, late)
        if made is not None:
            found.append(made)
    return found


def _define(node: Any, offset: int, late: bool = True) -> Definition | None:
    kind = type(node).__name__
    if kind == "CreateFunctionStmt":
        return _function(node, offset, late)
    if kind == "ViewStmt":
        obj = DbObject("view", _range_name(node.view))
        columns = tuple(_names(node.aliases)) or _columns(node.query)
        return Definition(obj, offset, columns, _refs(node, obj))
    if kind == "CreateTableAsStmt":
        matview = node.objtype.name == "OBJECT_MATVIEW"
        obj = DbObject("materialized view" if matview else "table", _range_name(node.into.rel))
        return Definition(obj, offset, (_deparse(node.query),), _refs(node, obj))
    if kind == "CreateStmt":
        obj = DbObject("table", _range_name(node.relation))
        return Definition(obj, offset, (), _refs(node, obj))
    if kind == "CreateSeqStmt":
        obj = DbObject("sequence", _range_name(node.sequence))
        owned = [o for o in node.options or () if o.defname == "owned_by"]
        owner = tuple(Reference("relation", ".".join(_names(o.arg)[:-1])) for o in owned
                      if len(_names(o.arg)) > 1)
        return Definition(obj, offset, (), owner)
    if kind in ("CompositeTypeStmt", "CreateEnumStmt", "CreateRangeStmt", "CreateDomainStmt"):
        return _type(node, kind, offset)
    if kind == "DefineStmt" and node.kind.name == "OBJECT_TYPE":
        obj = DbObject("type", ".".join(_names(node.defnames)))
        return Definition(obj, offset, (_deparse(node),), _refs(node, obj))
    if kind == "CreateTrigStmt":
        table = _range_name(node.relation)
        obj = DbObject("trigger", node.trigname, on=table)
        refs = (Reference("function", ".".join(_names(node.funcname)), 0),
                Reference("relation", table))
        return Definition(obj, offset, (), refs)
    if kind == "CreatePolicyStmt":
        table = _range_name(node.table)
        obj = DbObject("policy", node.policy_name, on=table)
        return Definition(obj, offset, (), _refs(node, obj))
    return None


def _type(node: Any, kind: str, offset: int) -> Definition:
    if kind == "CompositeTypeStmt":
        name = _range_name(node.typevar)
    elif kind == "CreateDomainStmt":
        name = ".".join(_names(node.domainname))
    else:
        name = ".".join(_names(node.typeName))
    obj = DbObject("domain" if kind == "CreateDomainStmt" else "type", name)
    return Definition(obj, offset, (_deparse(node),), _refs(node, obj))


def _function(node: Any, offset: int, late: bool) -> Definition:
    """A function's identity (name, IN/INOUT/VARIADIC types) and shape: its result (the
    declared type with OUT/TABLE columns), its input names and its number of defaults,
    which ``CREATE OR REPLACE`` cannot change (or, for defaults, reduce)."""
    kind = "procedure" if node.is_procedure else "function"
    inputs, outputs, names = [], [], []
    defaults = 0
    for param in node.parameters or ():
        mode = param.mode.name
        if mode in ("FUNC_PARAM_OUT", "FUNC_PARAM_TABLE"):
            outputs.append(f"{param.name or ''} {type_text(param.argType)}".strip())
            continue
        inputs.append(type_text(param.argType))
        names.append(param.name or "")
        defaults += param.defexpr is not None
    obj = DbObject(kind, ".".join(_names(node.funcname)), tuple(inputs))
    result = type_text(node.returnType, setof=True) if node.returnType is not None else ""
    if outputs:
        result = f"{result} ({', '.join(outputs)})".strip()
    shape = (result, ",".join(names), str(defaults))
    refs = list(_refs(node, obj))
    if late:
        refs += _body_refs(node)
    return Definition(obj, offset, shape, tuple(refs), len(inputs) - defaults)


def _body_refs(node: Any) -> list[Reference]:
    """References of a string body: ``LANGUAGE sql`` through PostgreSQL's parser,
    ``plpgsql`` through pglast's PL/pgSQL parser (every embedded query and expression);
    other languages, and bodies that do not parse, yield none. All late-bound."""
    options = {o.defname: o.arg for o in node.options or ()}
    body = options.get("as")
    language = str(getattr(options.get("language"), "sval", "sql")).lower()
    if body is None or node.sql_body is not None:
        return []
    text = str(getattr(body[0] if isinstance(body, tuple) else body, "sval", ""))
    if language == "sql":
        return _late(_parsed_refs(text))
    if language == "plpgsql":
        return _late(_plpgsql_refs(node))
    return []


def _late(refs: Iterable[Reference]) -> list[Reference]:
    return [Reference(r.kind, r.name, r.arity, late=True) for r in refs]


def _parsed_refs(text: str) -> list[Reference]:
    from pglast import parse_sql
    from pglast.parser import ParseError

    try:
        raws = parse_sql(text)
    except ParseError:
        return []
    found: list[Reference] = []
    for raw in raws:
        found += _refs(raw.stmt, None)
    return found


def _plpgsql_refs(node: Any) -> list[Reference]:
    import pglast
    from pglast.parser import ParseError

    try:
        tree = pglast.parse_plpgsql(_deparse(node))
    except ParseError:
        return []
    found: list[Reference] = []
    for query, mode in _plpgsql_queries(tree):
        if mode in (3, 4, 5) and ":=" in query:
            query = "SELECT " + query.split(":=", 1)[1]
        elif mode == 2:
            query = "SELECT " + query
        elif mode != 0:
            continue
        found += _parsed_refs(query)
    return found


def _plpgsql_queries(tree: Any) -> Iterator[tuple[str, int]]:
    """Every ``PLpgSQL_expr`` of pglast's PL/pgSQL JSON tree: (text, parse mode)."""
    if isinstance(tree, dict):
        expr = tree.get("PLpgSQL_expr")
        if isinstance(expr, dict) and isinstance(expr.get("query"), str):
            yield expr["query"], int(expr.get("parseMode", 0))
            return
        for value in tree.values():
            yield from _plpgsql_queries(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from _plpgsql_queries(value)


def _refs(node: Any, own: DbObject | None) -> tuple[Reference, ...]:
    """Function calls, relations and types anywhere in ``node`` (hard references), minus
    the object itself and the names of the statement's CTEs."""
    from pglast import ast
    from pglast.visitors import Visitor

    found: list[Reference] = []
    ctes: set[str] = set()

    class _Walk(Visitor):
        def visit_FuncCall(self, _ancestors: Any, call: ast.FuncCall) -> None:
            name = ".".join(_names(call.funcname))
            found.append(Reference("function", name, len(call.args or ())))
            first = (call.args or (None,))[0]
            if name.split(".")[-1] in _SEQUENCE_FUNCTIONS and isinstance(first, ast.A_Const):
                value = getattr(first.val, "sval", None)
                if isinstance(value, str):
                    found.append(Reference("relation", value.lower()))

        def visit_RangeVar(self, _ancestors: Any, rel: ast.RangeVar) -> None:
            found.append(Reference("relation", _range_name(rel)))

        def visit_TypeName(self, _ancestors: Any, name: ast.TypeName) -> None:
            if not name.pct_type:
                found.append(Reference("type", _base_type(name)))

        def visit_CommonTableExpr(self, _ancestors: Any, cte: ast.CommonTableExpr) -> None:
            ctes.add(cte.ctename or "")

    _Walk()(node)
    result: list[Reference] = []
    for ref in found:
        if ref.kind == "relation" and ref.name in ctes:
            continue
        if own is not None and _same(ref, own):
            continue
        if ref not in result:
            result.append(ref)
    return tuple(result)


def _same(ref: Reference, obj: DbObject) -> bool:
    """Whether ``ref`` names ``obj`` itself (a view's own name, a type's own name)."""
    kinds = {"function": FUNCTION_KINDS, "relation": (*RELATION_KINDS, *TYPE_KINDS),
             "type": TYPE_KINDS}
    return obj.kind in kinds.get(ref.kind, ()) and ref.name == obj.name


def _range_name(rel: Any) -> str:
    return ".".join(p for p in (rel.schemaname, rel.relname) if p)


def _names(items: Any) -> list[str]:
    return [str(getattr(i, "sval", "")) for i in items or ()]


def _base_type(name: Any) -> str:
    parts = _names(name.names)
    if len(parts) > 1 and parts[0] == "pg_catalog":
        parts = parts[1:]
    return ".".join(parts)


def type_text(name: Any, *, setof: bool = False) -> str:
    """A type the way PostgreSQL prints it in a signature: ``integer``, ``text[]``, no
    modifiers (a function's argument types have none)."""
    base = _base_type(name)
    text = _TYPE_NAMES.get(base, base) + "[]" * len(name.arrayBounds or ())
    return f"SETOF {text}" if setof and name.setof else text


def _deparse(node: Any) -> str:
    from pglast.stream import RawStream

    return str(RawStream()(node))


def _columns(query: Any) -> tuple[str, ...]:
    """A view's output column names the way PostgreSQL picks them (``FigureColname``'s
    main cases); ``*`` stands for columns only a database can expand."""
    while query is not None and query.op.name != "SETOP_NONE":
        query = query.larg
    if query is None or query.targetList is None:
        return ()
    return tuple(target.name or _column_name(target.val) for target in query.targetList)


def _column_name(expr: Any) -> str:
    kind = type(expr).__name__
    if kind == "ColumnRef":
        last = expr.fields[-1]
        return "*" if type(last).__name__ == "A_Star" else str(last.sval)
    if kind == "FuncCall":
        return _names(expr.funcname)[-1]
    if kind == "TypeCast":
        inner = _column_name(expr.arg)
        return _names(expr.typeName.names)[-1] if inner == "?column?" else inner
    if kind == "A_Indirection":
        last = expr.indirection[-1]
        return str(getattr(last, "sval", "?column?"))
    if kind == "A_Expr" and expr.kind.name == "AEXPR_NULLIF":
        return "nullif"
    if kind == "MinMaxExpr":
        return "greatest" if expr.op.name == "IS_GREATEST" else "least"
    if kind == "SQLValueFunction":
        return _SQL_VALUE_NAMES.get(expr.op.name, "?column?")
    if kind == "SubLink":
        return _sublink_name(expr)
    simple = {"CaseExpr": "case", "A_ArrayExpr": "array", "CoalesceExpr": "coalesce",
              "RowExpr": "row", "GroupingFunc": "grouping"}
    return simple.get(kind, "?column?")


_SQL_VALUE_NAMES = {
    "SVFOP_CURRENT_DATE": "current_date", "SVFOP_CURRENT_TIME": "current_time",
    "SVFOP_CURRENT_TIME_N": "current_time", "SVFOP_CURRENT_TIMESTAMP": "current_timestamp",
    "SVFOP_CURRENT_TIMESTAMP_N": "current_timestamp", "SVFOP_LOCALTIME": "localtime",
    "SVFOP_LOCALTIME_N": "localtime", "SVFOP_LOCALTIMESTAMP": "localtimestamp",
    "SVFOP_LOCALTIMESTAMP_N": "localtimestamp", "SVFOP_CURRENT_ROLE": "current_role",
    "SVFOP_CURRENT_USER": "current_user", "SVFOP_USER": "user",
    "SVFOP_SESSION_USER": "session_user", "SVFOP_CURRENT_CATALOG": "current_catalog",
    "SVFOP_CURRENT_SCHEMA": "current_schema",
}


def _sublink_name(link: Any) -> str:
    kind = link.subLinkType.name
    if kind == "EXISTS_SUBLINK":
        return "exists"
    if kind == "ARRAY_SUBLINK":
        return "array"
    if kind == "EXPR_SUBLINK":
        columns = _columns(link.subselect)
        return columns[0] if columns else "?column?"
    return "?column?"


# -- what cannot change in place -------------------------------------------------------


def changes(old: Sequence[Definition], new: Sequence[Definition]) -> list[Change]:
    """The changes from a component's ``old`` definitions to its ``new`` ones that
    PostgreSQL cannot make with ``CREATE OR REPLACE`` (or at all, without a drop)."""
    by_object = {d.obj: d for d in new}
    found: list[Change] = []
    for before in old:
        after = by_object.get(before.obj)
        if after is None:
            if before.obj.kind in FUNCTION_KINDS:
                found += _replaced_overload(before, new)
            continue
        what = _incompatible(before, after)
        if what:
            found.append(Change(before.obj, what, after.offset))
    return found


def _replaced_overload(before: Definition, new: Sequence[Definition]) -> list[Change]:
    """A function whose argument types changed is a new function: the old one stays, and
    its dependents still call it until they are recreated."""
    same = [d for d in new if d.obj.kind == before.obj.kind and d.obj.name == before.obj.name]
    if not same:
        return []
    after = same[0]
    what = (f"changes its argument list to ({', '.join(after.obj.args)}), which makes a new "
            "function")
    return [Change(before.obj, what, after.offset)]


def _incompatible(before: Definition, after: Definition) -> str:
    kind = before.obj.kind
    if kind in FUNCTION_KINDS:
        return _function_change(before.shape, after.shape)
    if kind == "view":
        old, new = before.shape, after.shape
        if "*" in old or "*" in new or new[:len(old)] == old:
            return ""
        return (f"changes its column list ({', '.join(old)}) to ({', '.join(new)}); CREATE "
                "OR REPLACE VIEW can only add columns at the end")
    if kind in ("materialized view", *TYPE_KINDS) and before.shape != after.shape:
        return f"changes its definition, and a {kind} has no CREATE OR REPLACE"
    return ""


def _function_change(old: tuple[str, ...], new: tuple[str, ...]) -> str:
    if old[0] != new[0]:
        return (f"changes its return type ({old[0]} to {new[0]}), which CREATE OR REPLACE "
                "cannot do")
    old_names, new_names = old[1].split(","), new[1].split(",")
    for before, after in zip(old_names, new_names, strict=False):
        if before and before != after:
            return (f"renames its parameter {before} to {after or '(unnamed)'}, which CREATE "
                    "OR REPLACE cannot do")
    if int(new[2]) < int(old[2]):
        return "removes a parameter default, which CREATE OR REPLACE cannot do"
    return ""


# -- resolving references ---------------------------------------------------------------


def names_match(written: str, defined: str) -> bool:
    """``f`` matches ``s.f`` and ``f``; ``s.f`` matches ``s.f`` and ``f``."""
    a, b = written.split("."), defined.split(".")
    if a[-1] != b[-1]:
        return False
    return len(a) == 1 or len(b) == 1 or a[0] == b[0]


def resolve(ref: Reference, objects: Sequence[Definition]) -> list[Definition]:
    """The definitions ``ref`` may name (see the module docstring for the rules)."""
    kinds = {"function": FUNCTION_KINDS, "relation": RELATION_KINDS, "type": TYPE_KINDS}
    wanted = kinds.get(ref.kind, ())
    found = [d for d in objects if d.obj.kind in wanted and names_match(ref.name, d.obj.name)]
    if ref.kind == "function" and ref.arity is not None and len(found) > 1:
        fitting = [d for d in found if d.required <= ref.arity <= len(d.obj.args)]
        return fitting or found
    return found


class Graph:
    """Definitions by component, indexed by name, and who references whom."""

    def __init__(self) -> None:
        self.entries: list[tuple[str, Definition]] = []
        self._by_name: dict[str, list[Definition]] = {}
        self._owner: dict[int, str] = {}

    def add(self, component: str, defs: Iterable[Definition]) -> None:
        for definition in defs:
            self.entries.append((component, definition))
            self._owner[id(definition)] = component
            self._by_name.setdefault(_last_name(definition.obj.name), []).append(definition)

    def owner(self, definition: Definition) -> str:
        return self._owner[id(definition)]

    def uses(self, definition: Definition, *, late: bool = True
             ) -> list[tuple[Reference, Definition]]:
        """What ``definition`` references among the known definitions (itself aside)."""
        found: list[tuple[Reference, Definition]] = []
        for ref in definition.references:
            if ref.late and not late:
                continue
            candidates = self._by_name.get(_last_name(ref.name), [])
            found += [(ref, d) for d in resolve(ref, candidates)
                      if d.obj != definition.obj and (ref, d) not in found]
        return found

    def dependents(self, obj: DbObject) -> list[Definition]:
        """Every definition that depends on ``obj`` through hard references, transitively
        (what a ``DROP`` of it needs gone first), in discovery order."""
        users: dict[DbObject, list[Definition]] = {}
        for _component, definition in self.entries:
            for _ref, used in self.uses(definition, late=False):
                users.setdefault(used.obj, []).append(definition)
        found: list[Definition] = []
        queue = [obj]
        while queue:
            for user in users.get(queue.pop(0), ()):
                if user.obj != obj and all(user is not f for f in found):
                    found.append(user)
                    queue.append(user.obj)
        return found


def _last_name(name: str) -> str:
    return name.rsplit(".", 1)[-1]


# -- migrations in order: the recreate warning ----------------------------------------


@dataclass(frozen=True)
class RecreateHit:
    """A change that needs dependents recreated, which the migration does not include."""

    change: Change
    missing: tuple[tuple[str, DbObject], ...]  # (component, object)
    message: str


def attribute(statements: Sequence[Any], locate: Any) -> dict[str, list[Any]]:
    """The statements of a rendered migration by the component that produced them (the
    innermost template of each statement's first character); the migration's own
    statements are left out."""
    found: dict[str, list[Any]] = {}
    for statement in statements:
        file = locate(statement.start).file
        if file.startswith("components/"):
            found.setdefault(file[len("components/"):], []).append(statement)
    return found


@dataclass
class RecreateTracker:
    """What the database has, migration after migration: each component's definitions as
    the last migration that included it rendered them."""

    applied: dict[str, list[Definition]] = field(default_factory=dict)
    # The last migration's changes, and its statements (``created``), for ``--db``.
    last_changes: tuple[Change, ...] = ()
    _last_statements: Sequence[Any] = ()

    def created(self) -> frozenset[tuple[str, str]]:
        """What the last migration creates (``DbObject.key``), its own statements included."""
        return frozenset(d.obj.key for d in definitions(self._last_statements, late=False))

    def migration(self, statements: Sequence[Any], locate: Any) -> list[RecreateHit]:
        """The hits of the next migration (``statements`` of its rendered text, ``locate``
        its source map's), then remember what it includes."""
        included = {component: definitions(found, late=False)
                    for component, found in attribute(statements, locate).items()}
        self._last_statements = statements
        hits: list[RecreateHit] = []
        found_changes: list[Change] = []
        graph: Graph | None = None
        for component, new in included.items():
            old = self.applied.get(component)
            if not old:
                continue
            for change in changes(old, new):
                found_changes.append(change)
                if graph is None:
                    graph = Graph()
                    for name, defs in self.applied.items():
                        graph.add(name, defs)
                hit = _hit(graph, component, change, included)
                if hit is not None:
                    hits.append(hit)
        self.applied.update(included)
        self.last_changes = tuple(found_changes)
        return hits


def _hit(graph: Graph, component: str, change: Change,
         included: Mapping[str, Sequence[Definition]]) -> RecreateHit | None:
    missing = []
    for dependent in graph.dependents(change.old):
        owner = graph.owner(dependent)
        if owner == component:
            continue
        if owner in included and any(d.obj == dependent.obj for d in included[owner]):
            continue
        missing.append((owner, dependent.obj))
    if not missing:
        return None
    listed = ", ".join(f"{obj.label} (components/{owner})" for owner, obj in missing)
    message = (f"{change.old.label} {change.what}: it must be dropped and recreated, and its "
               f"dependents with it in this migration, which does not include {listed}; drop "
               "them first and include their components after it")
    return RecreateHit(change, tuple(missing), message)


# -- --db: the dependents a database records --------------------------------------------

# Objects depending on the start objects through normal (``n``) pg_depend rows,
# transitively; a view's dependency is recorded for its rewrite rule, shown as the view.
_DEPENDENTS_SQL = """
WITH RECURSIVE start(classid, objid, objsubid) AS ({start}),
found(classid, objid, objsubid) AS (
  SELECT classid, objid, objsubid FROM start WHERE objid IS NOT NULL
  UNION
  SELECT CASE WHEN d.classid = 'pg_rewrite'::regclass THEN 'pg_class'::regclass::oid
              ELSE d.classid END,
         CASE WHEN d.classid = 'pg_rewrite'::regclass THEN r.ev_class ELSE d.objid END,
         CASE WHEN d.classid = 'pg_rewrite'::regclass THEN 0 ELSE d.objsubid END
  FROM found f
  JOIN pg_depend d ON d.refclassid = f.classid AND d.refobjid = f.objid
                  AND (f.objsubid = 0 OR d.refobjsubid = f.objsubid)
  LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
  WHERE d.deptype = 'n'
)
SELECT DISTINCT pg_describe_object(classid, objid, objsubid) FROM found
WHERE (classid, objid) NOT IN (SELECT classid, objid FROM start WHERE objid IS NOT NULL)
ORDER BY 1"""


def dependents_sql(obj: DbObject) -> str:
    """The query listing what depends on ``obj`` in a database (one description a row)."""
    from spawn_db.escape import escape_literal

    if obj.kind in FUNCTION_KINDS:
        name = escape_literal(f"{obj.name}({','.join(obj.args)})")
        start = f"SELECT 'pg_proc'::regclass::oid, to_regprocedure({name})::oid, 0"
    elif obj.kind in TYPE_KINDS:
        name = escape_literal(obj.name)
        start = (f"SELECT 'pg_type'::regclass::oid, t.oid, 0 FROM pg_type t "
                 f"WHERE t.oid = to_regtype({name}) UNION ALL "
                 f"SELECT 'pg_type'::regclass::oid, t.typarray, 0 FROM pg_type t "
                 f"WHERE t.oid = to_regtype({name}) AND t.typarray <> 0")
    else:
        start = (f"SELECT 'pg_class'::regclass::oid, to_regclass("
                 f"{escape_literal(obj.name)})::oid, 0")
    return _DEPENDENTS_SQL.format(start=start)


def described_key(description: str) -> tuple[str, str]:
    """``view public.report`` -> ("view", "report"); ``function f(integer)`` -> ("function",
    "f"); other objects (columns, rules, ...) keep their whole text."""
    for kind in ("materialized view", "function", "procedure", "view", "table", "type",
                 "sequence", "trigger", "policy"):
        if description.startswith(kind + " "):
            name = description[len(kind) + 1:].split("(", 1)[0].split(" on ", 1)[0]
            return kind, _last_name(name)
    return "", description


def confirmed_message(change: Change, found: Sequence[str]) -> str:
    """SP020's message when a database lists the dependents that ``change`` needs gone."""
    return (f"{change.old.label} {change.what}: it must be dropped and recreated, and its "
            f"dependents with it in this migration; pg_depend on a scratch database with the "
            f"migrations before this one lists {', '.join(found)}, which this migration does "
            "not recreate; drop them first and recreate them after it")
