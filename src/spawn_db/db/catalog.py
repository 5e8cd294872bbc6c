"""A database's schema as one JSON document, read through the system catalogs.

Schema drift compares two databases (the target, and a scratch database built
from the applied migrations) object by object. Everything is read in **one
query** per database, sent through an ordinary psql session, so it works
wherever the target's command reaches (``docker exec``, ``ssh``) and a schema
of hundreds of tables costs one round trip.

Each object is ``{"kind", "name", "parent", "attrs"}``: ``name`` is
schema-qualified (``public.t``, ``public.t.c`` for a column, ``public.f(integer)``
for a function), ``parent`` the ``"kind name"`` of the table an object belongs
to (so a dropped table is not also reported column by column), and ``attrs``
the compared attributes as the server itself prints them (``format_type``,
``pg_get_expr``, ``pg_get_*def``), so the same definition reads the same on
both sides. System schemas, spawn's own schemas (tracking, ``spawn_frozen``) and
objects that belong to an extension are left out (the extension itself is compared).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from spawn_db.escape import escape_literal

# The catalog query; {excluded} is the list of schema names left out, as SQL literals.
_QUERY = """
WITH ext AS (
  SELECT classid, objid FROM pg_catalog.pg_depend WHERE deptype = 'e'
), ns AS (
  SELECT n.oid, n.nspname, n.nspacl FROM pg_catalog.pg_namespace n
  WHERE n.nspname NOT IN ({excluded}) AND n.nspname NOT LIKE 'pg\\_toast%'
    AND n.nspname NOT LIKE 'pg\\_temp\\_%'
    AND (n.oid, 'pg_catalog.pg_namespace'::regclass) NOT IN (SELECT objid, classid FROM ext)
), rel AS (
  SELECT c.oid, c.relname, c.relkind, c.relacl, c.relrowsecurity, c.relforcerowsecurity,
         ns.nspname, pg_catalog.format('%I.%I', ns.nspname, c.relname) AS qname
  FROM pg_catalog.pg_class c JOIN ns ON ns.oid = c.relnamespace
  WHERE c.relkind IN ('r', 'p', 'f', 'v', 'm', 'S')
    AND (c.oid, 'pg_catalog.pg_class'::regclass) NOT IN (SELECT objid, classid FROM ext)
), objects AS (
  SELECT 'schema' AS kind, pg_catalog.format('%I', nspname) AS name, NULL::text AS parent,
         pg_catalog.jsonb_build_object('grants', nspacl::text) AS attrs
  FROM ns
  UNION ALL
  SELECT 'extension', pg_catalog.format('%I', e.extname), NULL,
         pg_catalog.jsonb_build_object('version', e.extversion, 'schema', n.nspname)
  FROM pg_catalog.pg_extension e JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
  WHERE e.extname <> 'plpgsql'
  UNION ALL
  SELECT CASE WHEN relkind IN ('v', 'm') THEN 'view' WHEN relkind = 'S' THEN 'sequence'
              ELSE 'table' END,
         qname, NULL,
         pg_catalog.jsonb_build_object(
           'kind', relkind::text, 'grants', relacl::text,
           'row_security', CASE WHEN relkind IN ('r', 'p')
             THEN CASE WHEN relrowsecurity THEN 'enabled' ELSE 'disabled' END
               || CASE WHEN relforcerowsecurity THEN ', forced' ELSE '' END END,
           'definition', CASE WHEN relkind IN ('v', 'm') THEN pg_catalog.pg_get_viewdef(oid) END)
         || COALESCE((
           SELECT pg_catalog.jsonb_build_object(
             'type', s.seqtypid::regtype::text, 'start', s.seqstart::text,
             'increment', s.seqincrement::text, 'min', s.seqmin::text, 'max', s.seqmax::text,
             'cache', s.seqcache::text, 'cycle', s.seqcycle)
           FROM pg_catalog.pg_sequence s WHERE s.seqrelid = rel.oid), '{{}}')
  FROM rel
  UNION ALL
  SELECT 'column', pg_catalog.format('%s.%I', r.qname, a.attname), 'table ' || r.qname,
         pg_catalog.jsonb_build_object(
           'type', pg_catalog.format_type(a.atttypid, a.atttypmod),
           'nullable', CASE WHEN a.attnotnull THEN 'NOT NULL' ELSE 'NULL' END,
           'default', pg_catalog.pg_get_expr(d.adbin, d.adrelid),
           'identity', NULLIF(a.attidentity::text, ''),
           'generated', NULLIF(a.attgenerated::text, ''),
           'collation', CASE WHEN a.attcollation <> t.typcollation
                             THEN a.attcollation::regcollation::text END,
           'grants', a.attacl::text)
  FROM rel r JOIN pg_catalog.pg_attribute a ON a.attrelid = r.oid
  JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
  WHERE r.relkind IN ('r', 'p', 'f') AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'constraint', pg_catalog.format('%s.%I', r.qname, k.conname), 'table ' || r.qname,
         pg_catalog.jsonb_build_object('definition', pg_catalog.pg_get_constraintdef(k.oid))
  FROM rel r JOIN pg_catalog.pg_constraint k ON k.conrelid = r.oid
  WHERE k.contype <> 'n'  -- PostgreSQL 18 lists NOT NULL here too: columns carry nullability
  UNION ALL
  SELECT 'index', pg_catalog.format('%I.%I', r.nspname, ic.relname), 'table ' || r.qname,
         pg_catalog.jsonb_build_object('definition', pg_catalog.pg_get_indexdef(i.indexrelid))
  FROM rel r JOIN pg_catalog.pg_index i ON i.indrelid = r.oid
  JOIN pg_catalog.pg_class ic ON ic.oid = i.indexrelid
  UNION ALL
  SELECT 'trigger', pg_catalog.format('%s.%I', r.qname, g.tgname), 'table ' || r.qname,
         pg_catalog.jsonb_build_object('definition', pg_catalog.pg_get_triggerdef(g.oid),
                                       'enabled', g.tgenabled::text)
  FROM rel r JOIN pg_catalog.pg_trigger g ON g.tgrelid = r.oid
  WHERE NOT g.tgisinternal
  UNION ALL
  SELECT 'policy', pg_catalog.format('%s.%I', r.qname, p.polname), 'table ' || r.qname,
         pg_catalog.jsonb_build_object(
           'command', p.polcmd::text, 'permissive', p.polpermissive,
           'roles', (SELECT pg_catalog.string_agg(
                       CASE WHEN o = 0 THEN 'public' ELSE o::regrole::text END, ', ' ORDER BY 1)
                     FROM pg_catalog.unnest(p.polroles) AS o),
           'using', pg_catalog.pg_get_expr(p.polqual, p.polrelid),
           'with_check', pg_catalog.pg_get_expr(p.polwithcheck, p.polrelid))
  FROM rel r JOIN pg_catalog.pg_policy p ON p.polrelid = r.oid
  UNION ALL
  SELECT 'function',
         pg_catalog.format('%I.%I(%s)', ns.nspname, f.proname,
                           pg_catalog.oidvectortypes(f.proargtypes)),
         NULL,
         pg_catalog.jsonb_build_object(
           'definition', CASE WHEN f.prokind <> 'a' THEN pg_catalog.pg_get_functiondef(f.oid)
                         END,
           'kind', f.prokind::text, 'grants', f.proacl::text)
  FROM pg_catalog.pg_proc f JOIN ns ON ns.oid = f.pronamespace
  WHERE (f.oid, 'pg_catalog.pg_proc'::regclass) NOT IN (SELECT objid, classid FROM ext)
  UNION ALL
  SELECT 'type', pg_catalog.format('%I.%I', ns.nspname, t.typname), NULL,
         pg_catalog.jsonb_build_object(
           'kind', t.typtype::text,
           'labels', (SELECT pg_catalog.string_agg(e.enumlabel, ', ' ORDER BY e.enumsortorder)
                      FROM pg_catalog.pg_enum e WHERE e.enumtypid = t.oid),
           'base', CASE WHEN t.typtype = 'd'
                        THEN pg_catalog.format_type(t.typbasetype, t.typtypmod) END,
           'constraints', (SELECT pg_catalog.string_agg(pg_catalog.pg_get_constraintdef(k.oid),
                                                        ', ' ORDER BY k.conname)
                           FROM pg_catalog.pg_constraint k WHERE k.contypid = t.oid))
  FROM pg_catalog.pg_type t JOIN ns ON ns.oid = t.typnamespace
  WHERE t.typtype IN ('e', 'd')
    AND (t.oid, 'pg_catalog.pg_type'::regclass) NOT IN (SELECT objid, classid FROM ext)
)
SELECT COALESCE(pg_catalog.json_agg(pg_catalog.json_build_object(
         'kind', kind, 'name', name, 'parent', parent,
         'attrs', pg_catalog.jsonb_strip_nulls(attrs)) ORDER BY kind, name), '[]')
FROM objects
"""

SYSTEM_SCHEMAS = ("pg_catalog", "information_schema")
# The helper schema a deterministic test (``freeze_time``, sqltest/determinism.py) leaves in
# the database it ran on: spawn's own, not the migrations', so never drift.
FROZEN_SCHEMA = "spawn_frozen"


@dataclass(frozen=True)
class CatalogObject:
    """One object of a schema, with the attributes drift compares."""

    kind: str
    name: str
    parent: str | None
    attrs: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.kind} {self.name}"


def catalog_query(excluded_schemas: tuple[str, ...] = ()) -> str:
    """The one query that reads a database's schema; ``excluded_schemas`` (spawn's tracking
    schema) are left out with the system ones and spawn's helper schema."""
    names = (*SYSTEM_SCHEMAS, FROZEN_SCHEMA, *excluded_schemas)
    return _QUERY.format(excluded=", ".join(escape_literal(name) for name in names)).strip()


def parse_catalog(text: str) -> dict[str, CatalogObject]:
    """The query's JSON output as objects by ``"kind name"``."""
    found: dict[str, CatalogObject] = {}
    for row in json.loads(text or "[]"):
        item = CatalogObject(row["kind"], row["name"], row["parent"], dict(row["attrs"]))
        found[item.key] = item
    return found
