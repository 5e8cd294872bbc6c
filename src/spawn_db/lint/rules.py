"""The lint rules: DDL that is risky on a table that already holds data.

Each rule has a stable ID (``SP001`` ...), a severity and a one-line summary;
``docs/lint.md`` says for each why it is risky and what to write instead. The
checks walk the statements of one migration in order, because whether a
statement is risky depends on what came before it in the same migration: a
table created earlier is empty and locked by nobody else ("existing" tables
are the others), ``BEGIN`` opens a transaction block, ``SET lock_timeout``
bounds every lock after it. Tables are compared by name without schema.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

ERROR, WARNING = "error", "warning"
SYNTAX_RULE = "SP000"
RENDER_RULE = "SP900"
DATABASE_RULE = "SP901"


@dataclass(frozen=True)
class Rule:
    """A lint rule: ``id`` is stable (configuration and comments name it), ``name`` is the
    squawk-style slug."""

    id: str
    name: str
    severity: str
    summary: str


RULES: dict[str, Rule] = {rule.id: rule for rule in (
    Rule("SP000", "syntax-error", ERROR, "PostgreSQL's parser refuses the statement"),
    Rule("SP001", "adding-volatile-default", ERROR,
         "a column added to an existing table with a volatile default (or a serial or "
         "stored generated column) rewrites the table under an ACCESS EXCLUSIVE lock"),
    Rule("SP002", "adding-required-field", ERROR,
         "a NOT NULL column without a default cannot be added to a table that has rows"),
    Rule("SP003", "require-concurrent-index-creation", WARNING,
         "CREATE INDEX without CONCURRENTLY on an existing table blocks its writes"),
    Rule("SP004", "concurrently-in-transaction", ERROR,
         "CONCURRENTLY cannot run inside a transaction block"),
    Rule("SP005", "changing-column-type", WARNING,
         "changing a column's type rewrites the table and breaks running clients"),
    Rule("SP006", "renaming", WARNING,
         "renaming a column or table breaks every client that uses the old name"),
    Rule("SP007", "dropping", WARNING,
         "dropping a column or table breaks clients that still use it and loses its data"),
    Rule("SP008", "constraint-missing-not-valid", WARNING,
         "adding a foreign key or check constraint without NOT VALID scans the table "
         "under a lock"),
    Rule("SP009", "set-not-null", WARNING,
         "SET NOT NULL scans the table under an ACCESS EXCLUSIVE lock unless a validated "
         "CHECK (col IS NOT NULL) exists"),
    Rule("SP011", "require-lock-timeout", WARNING,
         "DDL that takes an ACCESS EXCLUSIVE lock without a lock_timeout set first can "
         "queue every other query behind it"),
    Rule("SP012", "table-rewrite-maintenance", ERROR,
         "VACUUM FULL and CLUSTER rewrite the table under an ACCESS EXCLUSIVE lock"),
    Rule("SP013", "truncate", WARNING, "TRUNCATE deletes every row and takes an ACCESS "
         "EXCLUSIVE lock"),
    Rule("SP014", "multiple-ddl-without-transaction", WARNING,
         "more than one DDL statement outside a transaction block leaves a half-applied "
         "migration when one fails"),
    # SP015-SP016: indexes and foreign keys built inside ALTER TABLE (lsp2's block).
    Rule("SP015", "constraint-without-using-index", WARNING,
         "ADD CONSTRAINT ... UNIQUE/PRIMARY KEY without USING INDEX builds the index under "
         "an ACCESS EXCLUSIVE lock"),
    Rule("SP016", "adding-column-with-reference", WARNING,
         "ADD COLUMN ... REFERENCES validates the foreign key under a lock"),
    Rule("SP900", "render-error", ERROR, "the template does not render"),
    Rule("SP901", "database-error", ERROR,
         "the statement fails on a scratch database (spawn lint --db)"),
)}
# Rules over components across migrations (``lint/deps.py``), not over one migration's
# statements: SP020 onwards.
COMPONENT_RULES = frozenset({"SP020"})
RULES["SP020"] = Rule(
    "SP020", "recreate-dependents", WARNING,
    "a re-included component changes an object in a way CREATE OR REPLACE cannot, and "
    "objects of other components that depend on it are not recreated in the migration")
DISABLEABLE = frozenset(RULES) - {SYNTAX_RULE, RENDER_RULE, DATABASE_RULE}

VOLATILE_FUNCTIONS = frozenset({
    "random", "random_normal", "gen_random_uuid", "uuidv4", "uuidv7", "uuid_generate_v1",
    "uuid_generate_v1mc", "uuid_generate_v4", "clock_timestamp", "timeofday", "nextval",
    "setseed", "txid_current", "pg_current_xact_id",
})
SERIAL_TYPES = frozenset({"serial", "serial2", "serial4", "serial8", "smallserial",
                          "bigserial"})
# Statement node types that change the schema (for SP014).
_DDL_PREFIXES = ("Create", "Alter", "Drop", "Rename", "Comment", "Grant", "Truncate")
_DDL_TYPES = frozenset({"IndexStmt", "ViewStmt", "DefineStmt", "CompositeTypeStmt",
                        "RuleStmt", "ClusterStmt", "ReindexStmt"})


@dataclass(frozen=True)
class Hit:
    """A rule that fired: its ID, the message (one sentence, naming the object and the fix)
    and the statement's offset in the rendered text."""

    rule: str
    message: str
    offset: int


@dataclass
class _State:
    in_transaction: bool = False
    lock_timeout: bool = False
    lock_timeout_reported: bool = False
    created: set[str] = field(default_factory=set)
    checked_not_null: set[tuple[str, str]] = field(default_factory=set)
    ddl_outside: int = 0


def check_statements(statements: Iterable[Any]) -> list[Hit]:
    """Every rule's hits over one migration's statements (``parse.Statement``), in order."""
    state = _State()
    hits: list[Hit] = []
    for statement in statements:
        node, offset = statement.node, statement.start
        found = list(_check(node, state))
        hits += [Hit(rule, message, offset) for rule, message in found]
        _advance(node, state)
        if _is_ddl(node) and not state.in_transaction:
            state.ddl_outside += 1
            if state.ddl_outside == 2:
                hits.append(Hit("SP014", "this is the second DDL statement outside a "
                                "transaction block; wrap the migration in BEGIN; ... COMMIT; "
                                "(or split it into migrations of one statement each)",
                                offset))
    return hits


def _name(node: Any) -> str:
    return str(getattr(node, "relname", "") or "")


def _kind(node: Any) -> str:
    return type(node).__name__


def _check(node: Any, state: _State) -> Iterable[tuple[str, str]]:
    kind = _kind(node)
    if kind == "AlterTableStmt":
        table = _name(node.relation)
        if table not in state.created:
            for cmd in node.cmds or ():
                yield from _alter_table_cmd(cmd, table, state)
            yield from _lock_timeout(state, f"ALTER TABLE {table}", _exclusive_alter(node))
    elif kind == "IndexStmt":
        table = _name(node.relation)
        if node.concurrent and state.in_transaction:
            yield "SP004", (f"CREATE INDEX CONCURRENTLY on {table} inside a transaction block "
                            "fails; put it in a migration without BEGIN/COMMIT")
        elif not node.concurrent and table not in state.created:
            yield "SP003", (f"CREATE INDEX on existing table {table} blocks writes to it "
                            "while the index builds; use CREATE INDEX CONCURRENTLY (outside "
                            "a transaction block)")
    elif kind == "DropStmt":
        yield from _drop(node, state)
    elif kind == "ReindexStmt":
        concurrent = any(getattr(p, "defname", "") == "concurrently" for p in node.params or ())
        if concurrent and state.in_transaction:
            yield "SP004", ("REINDEX CONCURRENTLY inside a transaction block fails; put it in "
                            "a migration without BEGIN/COMMIT")
    elif kind == "RenameStmt":
        yield from _rename(node, state)
    elif kind == "VacuumStmt":
        if any(getattr(o, "defname", "") == "full" for o in node.options or ()):
            yield "SP012", ("VACUUM FULL rewrites the table and blocks every query on it; "
                            "use plain VACUUM, or pg_repack for a rewrite without the lock")
    elif kind == "ClusterStmt":
        yield "SP012", ("CLUSTER rewrites the table and blocks every query on it; use "
                        "pg_repack, or run it in a maintenance window outside migrations")
    elif kind == "TruncateStmt":
        tables = ", ".join(_name(r) for r in node.relations or ())
        if any(_name(r) not in state.created for r in node.relations or ()):
            yield "SP013", (f"TRUNCATE {tables} deletes every row under an ACCESS EXCLUSIVE "
                            "lock; use DELETE in batches, or disable SP013 if intended")
            yield from _lock_timeout(state, f"TRUNCATE {tables}", True)


def _alter_table_cmd(cmd: Any, table: str, state: _State) -> Iterable[tuple[str, str]]:
    subtype = cmd.subtype.name
    yield from _built_under_lock(cmd, table)
    if subtype == "AT_AddColumn":
        yield from _add_column(cmd.def_, table)
    elif subtype == "AT_AlterColumnType":
        yield "SP005", (f"changing the type of {table}.{cmd.name} rewrites the table under an "
                        "ACCESS EXCLUSIVE lock; add a new column, backfill it, and switch "
                        "over")
    elif subtype == "AT_DropColumn":
        yield "SP007", (f"dropping column {table}.{cmd.name} breaks clients that still read "
                        "it; stop using it in a deployed release first, then drop it")
    elif subtype == "AT_AddConstraint":
        yield from _add_constraint(cmd.def_, table, state)
    elif subtype == "AT_SetNotNull" and (table, cmd.name) not in state.checked_not_null:
        yield "SP009", (f"SET NOT NULL on {table}.{cmd.name} scans the table under an ACCESS "
                        f"EXCLUSIVE lock; first ADD CONSTRAINT ... CHECK ({cmd.name} IS NOT "
                        "NULL) NOT VALID and VALIDATE CONSTRAINT it")


def _add_column(column: Any, table: str) -> Iterable[tuple[str, str]]:
    constraints = list(column.constraints or ())
    types = {c.contype.name for c in constraints}
    type_name = _type_name(column.typeName)
    name = f"{table}.{column.colname}"
    default = next((c for c in constraints if c.contype.name == "CONSTR_DEFAULT"), None)
    if type_name in SERIAL_TYPES:
        yield "SP001", (f"adding {type_name} column {name} to an existing table rewrites it "
                        "under an ACCESS EXCLUSIVE lock; add a plain column, backfill it in "
                        "batches, then set its default")
    elif "CONSTR_GENERATED" in types:
        yield "SP001", (f"adding stored generated column {name} rewrites the table under an "
                        "ACCESS EXCLUSIVE lock; add a plain column and fill it with a "
                        "trigger and batched updates")
    elif default is not None and _volatile(default.raw_expr):
        yield "SP001", (f"column {name} gets a volatile default, which rewrites the table "
                        "under an ACCESS EXCLUSIVE lock; add it without the default, set the "
                        "default, then backfill in batches")
    not_null = column.is_not_null or "CONSTR_NOTNULL" in types or "CONSTR_PRIMARY" in types
    filled = default is not None or types & {"CONSTR_IDENTITY", "CONSTR_GENERATED"}
    if not_null and not filled and type_name not in SERIAL_TYPES:
        yield "SP002", (f"NOT NULL column {name} has no default, so adding it fails on a "
                        "table with rows; give it a (non-volatile) DEFAULT, or add it "
                        "nullable, backfill, then SET NOT NULL")


def _add_constraint(constraint: Any, table: str, state: _State) -> Iterable[tuple[str, str]]:
    contype = constraint.contype.name
    if contype == "CONSTR_CHECK" and constraint.skip_validation:
        column = _not_null_check_column(constraint.raw_expr)
        if column:
            state.checked_not_null.add((table, column))
    if contype in ("CONSTR_FOREIGN", "CONSTR_CHECK") and not constraint.skip_validation:
        what = "foreign key" if contype == "CONSTR_FOREIGN" else "check constraint"
        label = f" {constraint.conname}" if constraint.conname else ""
        yield "SP008", (f"adding {what}{label} to {table} without NOT VALID scans the whole "
                        "table under a lock; add it NOT VALID, then VALIDATE CONSTRAINT in "
                        "a later statement")


# --- SP015-SP016 (lsp2's block): what ALTER TABLE builds while it holds its lock -------

def _built_under_lock(cmd: Any, table: str) -> Iterable[tuple[str, str]]:
    """SP015 for a UNIQUE/PRIMARY KEY (a constraint, or inline on an added column) that
    builds its own index; SP016 for an added column with an inline REFERENCES."""
    subtype = cmd.subtype.name
    if subtype == "AT_AddConstraint":
        yield from _index_built(cmd.def_, table, cmd.def_.conname or "")
    elif subtype == "AT_AddColumn":
        column = f"{table}.{cmd.def_.colname}"
        for constraint in cmd.def_.constraints or ():
            yield from _index_built(constraint, table, "", column)
            if constraint.contype.name == "CONSTR_FOREIGN":
                target = _name(constraint.pktable)
                yield "SP016", (
                    f"column {column} is added with an inline REFERENCES {target}, which "
                    f"validates the foreign key while locking {table} and {target}; add the "
                    "column, then ADD CONSTRAINT ... FOREIGN KEY ... NOT VALID, then "
                    "VALIDATE CONSTRAINT in a later statement")


def _index_built(constraint: Any, table: str, name: str,
                 column: str = "") -> Iterable[tuple[str, str]]:
    contype = constraint.contype.name
    if contype not in ("CONSTR_UNIQUE", "CONSTR_PRIMARY") or constraint.indexname:
        return
    what = "UNIQUE" if contype == "CONSTR_UNIQUE" else "PRIMARY KEY"
    subject = f"{what} on column {column}" if column else (
        f"{what} constraint {name} on {table}" if name else f"{what} constraint on {table}")
    yield "SP015", (f"{subject} builds its index under an ACCESS EXCLUSIVE lock; CREATE "
                    "UNIQUE INDEX CONCURRENTLY first (in its own migration), then ADD "
                    f"CONSTRAINT ... {what} USING INDEX")


def _drop(node: Any, state: _State) -> Iterable[tuple[str, str]]:
    remove = node.removeType.name
    if node.concurrent and state.in_transaction:
        yield "SP004", ("DROP INDEX CONCURRENTLY inside a transaction block fails; put it in "
                        "a migration without BEGIN/COMMIT")
    if remove != "OBJECT_TABLE":
        return
    names = [_last(obj) for obj in node.objects or ()]
    existing = [n for n in names if n not in state.created]
    if existing:
        yield "SP007", (f"dropping table {', '.join(existing)} breaks clients that still use "
                        "it and loses its data; stop using it in a deployed release first")
        yield from _lock_timeout(state, f"DROP TABLE {', '.join(existing)}", True)


def _rename(node: Any, state: _State) -> Iterable[tuple[str, str]]:
    rename = node.renameType.name
    table = _name(node.relation) if node.relation is not None else ""
    if table in state.created or rename not in ("OBJECT_COLUMN", "OBJECT_TABLE"):
        return
    old = f"{table}.{node.subname}" if rename == "OBJECT_COLUMN" else table
    kind = "column" if rename == "OBJECT_COLUMN" else "table"
    yield "SP006", (f"renaming {kind} {old} to {node.newname} breaks clients that use the old "
                    f"name; add the new {kind} (or a view), move clients, then drop the old "
                    "one")
    yield from _lock_timeout(state, f"renaming {old}", True)


def _lock_timeout(state: _State, what: str, exclusive: bool) -> Iterable[tuple[str, str]]:
    if exclusive and not state.lock_timeout and not state.lock_timeout_reported:
        state.lock_timeout_reported = True
        yield "SP011", (f"{what} takes an ACCESS EXCLUSIVE lock with no lock_timeout set; "
                        "start the migration with SET lock_timeout = '2s' (or SET LOCAL "
                        "inside the transaction) so it fails instead of blocking every query")


def _exclusive_alter(node: Any) -> bool:
    """ALTER TABLE takes ACCESS EXCLUSIVE except for the commands that take less."""
    lighter = {"AT_ValidateConstraint", "AT_SetStatistics", "AT_ClusterOn",
               "AT_DropCluster", "AT_SetRelOptions", "AT_ResetRelOptions"}
    return any(cmd.subtype.name not in lighter for cmd in node.cmds or ())


def _advance(node: Any, state: _State) -> None:
    kind = _kind(node)
    if kind == "TransactionStmt":
        name = node.kind.name
        if name in ("TRANS_STMT_BEGIN", "TRANS_STMT_START"):
            state.in_transaction = True
        elif name in ("TRANS_STMT_COMMIT", "TRANS_STMT_ROLLBACK", "TRANS_STMT_PREPARE"):
            state.in_transaction = False
    elif kind == "VariableSetStmt" and node.name == "lock_timeout":
        state.lock_timeout = node.kind.name != "VAR_RESET"
    elif kind == "CreateStmt":
        state.created.add(_name(node.relation))
    elif kind == "CreateTableAsStmt":
        state.created.add(_name(node.into.rel))


def _is_ddl(node: Any) -> bool:
    kind = _kind(node)
    return kind in _DDL_TYPES or kind.startswith(_DDL_PREFIXES)


def _type_name(type_name: Any) -> str:
    names = [getattr(n, "sval", "") for n in (type_name.names or ())] if type_name else []
    return str(names[-1]).lower() if names else ""


def _last(obj: Any) -> str:
    items = obj if isinstance(obj, tuple | list) else (obj,)
    return str(getattr(items[-1], "sval", "")) if items else ""


def _volatile(expr: Any) -> bool:
    """Whether ``expr`` calls a function known to be volatile (anywhere inside it)."""
    from pglast import ast
    from pglast.visitors import Visitor

    found = False

    class _Calls(Visitor):
        def visit_FuncCall(self, _ancestors: Any, call: ast.FuncCall) -> None:
            nonlocal found
            if _last(call.funcname).lower() in VOLATILE_FUNCTIONS:
                found = True

    if isinstance(expr, ast.FuncCall) and _last(expr.funcname).lower() in VOLATILE_FUNCTIONS:
        return True
    _Calls()(expr)
    return found


def _not_null_check_column(expr: Any) -> str:
    """``col`` for ``CHECK (col IS NOT NULL)``, else empty."""
    if _kind(expr) != "NullTest" or expr.nulltesttype.name != "IS_NOT_NULL":
        return ""
    if _kind(expr.arg) != "ColumnRef":
        return ""
    return _last(expr.arg.fields)
