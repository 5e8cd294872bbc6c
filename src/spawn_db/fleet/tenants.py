"""Tenants (docs/fleets.md#tenants): who they are, their schemas, and what each one lacks.

A tenant is a name from ``[tenants]`` in spawn.toml (a list, a query run on the target,
or a command's output) with a schema of its own, named by the ``schema`` template. A
migration's ``tenant.sql`` is applied once per tenant schema and recorded in the
namespace ``tenant:<name>``; the shared ``up.sql`` stays in ``default``, so the Rust
tool sees exactly what it saw before. Everything here is read-only: running the tenant
parts is ``fleet.tenant_run``'s job.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spawn_db.config import PG_NAME_MAX_BYTES, Config, TenantsConfig
from spawn_db.errors import ConfigError, DataSourceError, NotPinned, UsageError
from spawn_db.escape import escape_literal
from spawn_db.migrate.migration import TENANT, tenant_migration_names
from spawn_db.migrate.plan import is_done, state_of
from spawn_db.migrate.tracking import USER_NAMESPACE, HistoryRow

if TYPE_CHECKING:
    from spawn_db.db.psql import ControlSession
    from spawn_db.migrate.tracking import Tracking
    from spawn_db.render.template import RenderContext

NAMESPACE_PREFIX = "tenant:"
# Lower-case letters, digits and `_`, starting with a letter or digit: the name is safe as
# it is in a schema name, a namespace, a file name and a shell argument, and two names
# never differ only in case (PostgreSQL would fold an unquoted one).
TENANT_NAME = re.compile(r"[a-z0-9][a-z0-9_]*")
MAX_TENANT_NAME = 48
COMMAND_TIMEOUT = 120.0


@dataclass(frozen=True)
class Tenant:
    """One tenant: its name and its schema (the ``schema`` template rendered)."""

    name: str
    schema: str

    @property
    def namespace(self) -> str:
        return namespace(self.name)


def namespace(name: str) -> str:
    """The tracking namespace of tenant ``name``'s parts."""
    return f"{NAMESPACE_PREFIX}{name}"


def tenants_config(config: Config) -> TenantsConfig:
    """``[tenants]``, or a usage error saying how to declare it."""
    if config.tenants is None:
        raise UsageError(
            f"{config.path} has no [tenants] table; declare the tenants first, e.g. "
            '[tenants] then `list = ["acme", "globex"]` (see docs/fleets.md)')
    return config.tenants


def source_label(config: Config) -> str:
    """Where the names come from, for messages: ``[tenants] list in spawn.toml``."""
    tenants = tenants_config(config)
    return f"[tenants] {tenants.source} in {config.path}"


def check_name(name: str, source: str) -> str:
    """``name`` if it is a valid tenant name; else a configuration error naming it and
    where it came from."""
    if TENANT_NAME.fullmatch(name) and len(name) <= MAX_TENANT_NAME:
        return name
    why = (f"it is longer than {MAX_TENANT_NAME} characters" if len(name) > MAX_TENANT_NAME
           else "a tenant name uses lower-case letters, digits and `_`, starting with a "
                "letter or digit")
    raise ConfigError(f"tenant name {name!r} from {source} is refused: {why}; rename it "
                      "there (e.g. `acme_corp`)")


# ``prefix{{ tenant }}suffix``, the usual shape of the schema template: rendered without
# Jinja (importing and compiling it costs more than a fleet that is up to date).
_SIMPLE_SCHEMA = re.compile(r"([^{}]*)\{\{\s*tenant\s*\}\}([^{}]*)")


def schema_namer(config: Config) -> Callable[[str], str]:
    """Tenant name -> schema name: ``[tenants] schema`` compiled once, rendered with
    ``tenant`` for each, and checked."""
    template = tenants_config(config).schema
    simple = _SIMPLE_SCHEMA.fullmatch(template)
    render: Callable[[str], str]
    if simple is not None:
        prefix, suffix = simple.groups()
        render = lambda name: f"{prefix}{name}{suffix}"  # noqa: E731
    else:
        render = _jinja_schema(config, template)

    def schema_of(name: str) -> str:
        schema = render(name).strip()
        if not schema or len(schema.encode("utf-8")) > PG_NAME_MAX_BYTES \
                or any(ord(c) < 32 for c in schema):
            raise ConfigError(
                f"{config.path}: [tenants] `schema` = {template!r} makes {schema!r} for "
                f"tenant {name!r}, which is not a schema name of 1 to {PG_NAME_MAX_BYTES} "
                "bytes; shorten the template or the name")
        return schema

    return schema_of


def _jinja_schema(config: Config, template: str) -> Callable[[str], str]:
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def failed(exc: jinja2.TemplateError, name: str | None) -> ConfigError:
        whose = f" for tenant {name!r}" if name else ""
        return ConfigError(f"{config.path}: [tenants] `schema` = {template!r} cannot be "
                           f"rendered{whose}: {exc}; it may use only `{{{{ tenant }}}}`, e.g. "
                           "`schema = \"tenant_{{ tenant }}\"`")

    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined, autoescape=False)
    try:
        compiled = env.from_string(template)
    except jinja2.TemplateError as exc:
        raise failed(exc, None) from None

    def render(name: str) -> str:
        try:
            return compiled.render(tenant=name)
        except jinja2.TemplateError as exc:
            raise failed(exc, name) from None

    return render


def schema_of(config: Config, name: str) -> str:
    """Tenant ``name``'s schema: ``[tenants] schema`` rendered with ``tenant``."""
    return schema_namer(config)(name)


def make_tenants(config: Config, names: Sequence[str], source: str) -> list[Tenant]:
    """``names`` checked (valid, no duplicate, one schema each) and turned into tenants."""
    tenants: list[Tenant] = []
    owners: dict[str, str] = {}
    schema_of = schema_namer(config)
    for name in names:
        check_name(name, source)
        schema = schema_of(name)
        if schema in owners:
            what = ("is listed twice" if owners[schema] == name
                    else f"gets the schema {schema!r} of tenant {owners[schema]!r}")
            raise ConfigError(f"tenant {name!r} from {source} {what}; each tenant needs a "
                              "schema of its own (use `{{ tenant }}` in [tenants] `schema`)")
        owners[schema] = name
        tenants.append(Tenant(name, schema))
    return tenants


def load_tenants(config: Config, session: Callable[[], ControlSession]) -> list[Tenant]:
    """Every tenant, in the order the source gives them. ``session`` opens (or lends) a
    session on the target, only asked for when the source is a query."""
    tenants = tenants_config(config)
    source = source_label(config)
    if tenants.source == "list":
        names = list(tenants.names)
    elif tenants.source == "query":
        text = session().query(tenants.query, what=f"listing the tenants ({source})")
        names = [line.strip() for line in text.splitlines() if line.strip()]
    else:
        names = _command_names(config, tenants.command, source)
    return make_tenants(config, names, source)


def _command_names(config: Config, argv: Sequence[str], source: str) -> list[str]:
    """The names a ``[tenants] command`` prints, one per line (no shell involved)."""
    try:
        done = subprocess.run(list(argv), cwd=config.project_dir, capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT, check=False,
                              stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DataSourceError(f"cannot run the tenant command {list(argv)!r} ({source}): "
                              f"{exc}; fix `command` in [tenants]") from None
    if done.returncode != 0:
        detail = done.stderr.strip().splitlines()[-1:] or ["no error output"]
        raise DataSourceError(f"the tenant command {list(argv)!r} ({source}) exited with code "
                              f"{done.returncode}: {detail[0]}; fix it and retry")
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def select(tenants: Sequence[Tenant], choice: str, source: str) -> list[Tenant]:
    """``--tenants``: ``all``, ``none``, or names separated by commas (each must be one of
    the tenants; the order stays the source's)."""
    if choice == "all":
        return list(tenants)
    if choice == "none":
        return []
    wanted = [n.strip() for n in choice.split(",") if n.strip()]
    known = {t.name for t in tenants}
    unknown = [n for n in wanted if n not in known]
    if unknown or not wanted:
        raise UsageError(f"--tenants {choice!r}: {unknown[0] if unknown else 'no name'!r} is "
                         f"not a tenant of {source}; pass `all`, `none` or tenant names "
                         "separated by commas (`spawn tenant list` lists them)")
    return [t for t in tenants if t.name in set(wanted)]


# -- the history of every tenant, in one query -----------------------------------------------


Latest = dict[str, HistoryRow]


def fleet_history(tracking: Tracking, *, exists: bool = False
                  ) -> tuple[Latest, dict[str, Latest]]:
    """The latest row of every shared migration (``default``) and of every tenant part
    (``tenant:*``, by tenant name), in one query: a fleet that is up to date costs this
    one query whatever its size. Empty when the tracking schema does not exist (asked
    first, unless the caller knows it does: ``exists``)."""
    if not exists and not tracking.exists():
        return {}, {}
    return split_history(tracking.latest_rows(
        f"(m.namespace = {escape_literal(USER_NAMESPACE)} "
        f"OR m.namespace LIKE {escape_literal(NAMESPACE_PREFIX + '%')})"))


def split_history(rows: Sequence[HistoryRow]) -> tuple[Latest, dict[str, Latest]]:
    """Latest rows by namespace: the shared migrations' (``default``), and each tenant's
    (``tenant:*``, by tenant name); rows of other namespaces are left out."""
    shared: dict[str, HistoryRow] = {}
    tenants: dict[str, dict[str, HistoryRow]] = {}
    for row in rows:
        if row.namespace == USER_NAMESPACE:
            shared[row.name] = row
        elif row.namespace.startswith(NAMESPACE_PREFIX):
            tenants.setdefault(row.namespace[len(NAMESPACE_PREFIX):], {})[row.name] = row
    return shared, tenants


# -- what each tenant lacks ------------------------------------------------------------------


@dataclass(frozen=True)
class TenantPlan:
    """A tenant's tenant parts to run, in order; ``blocked``: the part a failed or
    unfinished earlier attempt stops it at (its state in ``blocked_state``)."""

    tenant: Tenant
    to_run: tuple[str, ...]
    blocked: str | None = None
    blocked_state: str = ""
    waiting: str | None = None

    @property
    def up_to_date(self) -> bool:
        return not self.to_run and self.blocked is None


@dataclass(frozen=True)
class TenantParts:
    """The migrations with a tenant part, and which of them also have a shared part."""

    names: tuple[str, ...]
    shared: frozenset[str]

    @classmethod
    def load(cls, config: Config) -> TenantParts:
        names = tenant_migration_names(config)
        folder = config.migrations_dir
        return cls(tuple(names),
                   frozenset(n for n in names if (folder / n / "up.sql").is_file()))


def plan_tenant(tenant: Tenant, parts: TenantParts, shared: Mapping[str, HistoryRow],
                rows: Mapping[str, HistoryRow], *, retry: bool = False,
                only: str | None = None) -> TenantPlan:
    """What ``tenant`` lacks, in name order. A part whose migration has a shared part
    that is not applied waits (with everything after it): a tenant part may rely on
    its shared part. A failed or attempted part blocks, unless ``retry``."""
    to_run: list[str] = []
    for name in parts.names:
        if only is not None and name != only:
            continue
        if name in parts.shared and not is_done(state_of(shared.get(name))):
            return TenantPlan(tenant, tuple(to_run), waiting=name)
        state = state_of(rows.get(name))
        if is_done(state):
            continue
        if state in ("failed", "attempted") and not retry:
            return TenantPlan(tenant, tuple(to_run), name, state)
        to_run.append(name)
    return TenantPlan(tenant, tuple(to_run))


def require_pins(config: Config, names: Sequence[str], *, pinned: bool,
                 unpinned_from_tree: bool) -> None:
    """Refuse (exit 2) before any tenant starts when a tenant part is not pinned and pins
    are required, as apply does for the shared parts."""
    if not pinned or unpinned_from_tree:
        return
    unpinned = [n for n in names if not (config.migrations_dir / n / "lock.toml").is_file()]
    if unpinned:
        raise NotPinned(
            f"migration {unpinned[0]} (a tenant part) is not pinned (no lock.toml); run "
            f"`spawn migration pin {unpinned[0]}` first, or render from the working tree "
            "with --no-pin")


# -- rendering --------------------------------------------------------------------------------


def tenant_context(config: Config, variables: Any, tenant: Tenant) -> RenderContext:
    """A tenant part's template context: the usual one, plus ``tenant`` (the name) and
    ``tenant_schema`` (printed as literals, like any value; ``| escape_identifier`` for
    an identifier)."""
    from spawn_db.render.template import template_context

    context = template_context(config, variables or {})
    context["tenant"] = tenant.name
    context["tenant_schema"] = tenant.schema
    return context


def build_tenant_part(config: Config, migration: str, name: str, *, down: bool = False,
                      pinned: bool = False, variables: Any = None) -> Iterator[str]:
    """``spawn migration build MIGRATION --tenant NAME``: the tenant part (or its down
    script) rendered for tenant ``name``, as apply would send it."""
    from spawn_db.migrate.migration import (
        TENANT_DOWN,
        compile_migration,
        migration_source,
    )

    tenant = make_tenants(config, [name], "--tenant")[0]
    source = migration_source(config, migration, pinned=pinned,
                              script=TENANT_DOWN if down else TENANT)
    renderer = compile_migration(config, source)
    return renderer.generate(tenant_context(config, variables, tenant))
