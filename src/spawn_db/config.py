"""``spawn.toml`` parsed into frozen dataclasses, with CLI and ``SPAWN_*`` overrides.

Loading never prints: unknown keys become ``Config.warnings`` for the CLI to
show, because older Rust-tool configs carry retired keys and must still load.
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from spawn_db.errors import ConfigError, UsageError

CONFIG_FILE_NAME = "spawn.toml"
DEFAULT_SCHEMA = "_spawn"
DEFAULT_ENVIRONMENT = "prod"
DEFAULT_LOCK_TIMEOUT = 300.0
DEFAULT_TEST_TIMEOUT = 300
ENGINES = ("postgres-psql",)
COMMAND_KINDS = ("direct", "provider", "embedded")

TOP_LEVEL_KEYS = ("spawn_folder", "target", "environment", "project_id", "telemetry", "targets",
                  "variables", "templates", "migrations", "environments", "lint",
                  "secrets", "tests", "hooks", "data", "sources", "tenants",
                  "target_groups")
TARGET_KEYS = (
    "engine",
    "spawn_database",
    "spawn_schema",
    "environment",
    "command",
    "postgres_bin",
    "variables",
    "pin",
)
ENVIRONMENT_KEYS = ("pin",)
PIN_RULES = ("required", "optional")
PROD_ENVIRONMENTS = ("prod", "production")
TEMPLATES_KEYS = ("undefined",)
LINT_KEYS = ("disable",)
UNDEFINED_MODES = ("lenient", "strict")
MIGRATIONS_KEYS = ("order",)
TESTS_KEYS = ("database", "tablespace")
TEST_DATABASES = ("target", "fresh")
DATA_KEYS = ("url", "sha256", "command", "path")
DATA_SCHEMES = ("https", "http")
COMMAND_KEYS = ("kind", "direct", "provider", "append", "database")
HOOK_EVENTS = ("before_apply", "after_apply", "after_apply_error", "before_each_migration",
               "after_each_migration", "before_revert", "after_revert", "before_test",
               "after_tests")
HOOK_KEYS = ("sql", "command", "plugin", "on_error", "environments")
HOOKS_FOLDER = "hooks"
SOURCE_KEYS = ("name", "path", "package")
# A source's name is its tracking namespace: these belong to the main folder, the
# repeatable migrations and the tenants.
RESERVED_SOURCE_NAMES = ("default", "repeatable", "spawn")
_SOURCE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
TENANTS_KEYS = ("list", "query", "command", "schema")
TENANT_SOURCES = ("list", "query", "command")
DEFAULT_TENANT_SCHEMA = "tenant_{{ tenant }}"

CommandKind = Literal["direct", "provider", "embedded"]
UndefinedMode = Literal["lenient", "strict"]
MigrationOrder = Literal["loose", "strict"]
TestDatabase = Literal["target", "fresh"]
PinMode = Literal["required", "optional"]


@dataclass(frozen=True)
class PinRule:
    """``mode``: "required" (unpinned migrations need ``--no-pin``) or "optional" (they
    deploy from the working tree); ``no_pin_allowed``: False where pins are enforced."""

    mode: PinMode
    no_pin_allowed: bool
    source: str

    def describe(self) -> str:
        if not self.no_pin_allowed:
            return f"pins required, --no-pin refused ({self.source})"
        if self.mode == "optional":
            return ("pins optional: unpinned migrations deploy from the working tree "
                    f"({self.source})")
        return f"pins required, --no-pin allowed ({self.source})"


@dataclass(frozen=True)
class CommandSpec:
    """How to reach psql for a target (SPEC §2 ``command``)."""

    kind: CommandKind
    direct: tuple[str, ...] = ()
    provider: tuple[str, ...] = ()
    append: tuple[str, ...] = ()
    database: str = "postgres"


@dataclass(frozen=True)
class HookConfig:
    """One ``[[hooks.<event>]]`` entry: a SQL template under ``<spawn_folder>/hooks/`` or
    a command (argv, no shell); ``number`` is its place in the event's list, from 1, so
    a message can point at the entry."""

    event: str
    number: int
    sql: str | None = None
    command: tuple[str, ...] = ()
    on_error: Literal["fail", "warn"] = "fail"
    environments: tuple[str, ...] = ()
    plugin: str | None = None  # a ``spawn.hooks`` entry point (a Python callable)

    @property
    def label(self) -> str:
        """How messages name the hook: its event, place and what it runs."""
        import shlex

        if self.plugin is not None:
            what = f"plugin = {toml_string(self.plugin)}"
        else:
            what = f"sql = {toml_string(self.sql)}" if self.sql is not None else \
                f"command = {shlex.join(self.command)}"
        return f"hook [[hooks.{self.event}]] #{self.number} ({what})"


@dataclass(frozen=True)
class DataSource:
    """``[data.<name>]``: where ``spawn data fetch`` gets a file (a download checked against
    ``sha256``, or a command's standard output) and where it puts it, ``path`` relative to
    ``components/data/``. Nothing is fetched while rendering: pins stay reproducible."""

    name: str
    path: str
    url: str | None = None
    command: tuple[str, ...] = ()
    sha256: str | None = None


@dataclass(frozen=True)
class SourceConfig:
    """One ``[[sources]]`` entry: another spawn folder whose migrations are recorded in
    tracking namespace ``name``; ``path`` (resolved against spawn.toml's folder) or
    ``package`` (a Python package's ``spawn.sources`` entry point, looked up when used)."""

    name: str
    path: Path | None = None
    package: str | None = None


@dataclass(frozen=True)
class TenantsConfig:
    """``[tenants]``: where the tenant names come from (exactly one of ``list``, ``query``
    run on the target, or ``command`` printing one per line) and ``schema``, the Jinja
    template of a tenant's schema name. Names are checked by ``fleet.tenants``, which
    also checks those a query or command returns."""

    source: Literal["list", "query", "command"]
    names: tuple[str, ...] = ()
    query: str = ""
    command: tuple[str, ...] = ()
    schema: str = DEFAULT_TENANT_SCHEMA


@dataclass(frozen=True)
class TargetConfig:
    name: str
    engine: str
    command: CommandSpec
    spawn_schema: str = DEFAULT_SCHEMA
    spawn_database: str | None = None
    environment: str | None = None
    postgres_bin: str | None = None
    variables: str | None = None
    pin: PinMode | None = None


@dataclass(frozen=True)
class Overrides:
    """Values from flags and environment variables; flags win over variables."""

    config_file: str | None = None
    target: str | None = None
    environment: str | None = None
    strict: bool | None = None
    spawn_folder: str | None = None

    @classmethod
    def from_flags(
        cls,
        *,
        config_file: str | None,
        target: str | None,
        environment: str | None,
        strict: bool | None = None,
        environ: Mapping[str, str] | None = None,
        spawn_folder: str | None = None,
    ) -> Overrides:
        env = os.environ if environ is None else environ
        return cls(
            config_file=config_file or env.get("SPAWN_CONFIG_FILE") or None,
            target=target or env.get("SPAWN_TARGET") or None,
            environment=environment or env.get("SPAWN_ENVIRONMENT") or None,
            strict=strict,
            spawn_folder=spawn_folder or env.get("SPAWN_FOLDER") or None,
        )


@dataclass(frozen=True)
class Config:
    path: Path
    spawn_folder: Path
    targets: Mapping[str, TargetConfig]
    default_target: str | None = None
    top_environment: str | None = None
    environment_override: str | None = None
    target_override: str | None = None
    project_id: str | None = None
    warnings: tuple[str, ...] = field(default=())
    environment_variables: Mapping[str, str] = field(default_factory=dict)
    undefined: UndefinedMode = "lenient"
    strict_override: bool | None = None
    migration_order: MigrationOrder = "loose"
    environment_pins: Mapping[str, PinMode] = field(default_factory=dict)
    lint_disable: tuple[str, ...] = ()
    # ``[secrets]`` as written; ``spawn_db.secret.settings`` checks it when a secret is used.
    secrets_table: Mapping[str, Any] = field(default_factory=dict)
    # A remote spawn_folder (s3://...): ``spawn_folder`` is then its local mirror, which
    # ``spawn_db.remote.mirror`` pulls before a command and pushes after it.
    spawn_folder_url: str | None = None
    tests_database: TestDatabase = "target"
    # ``[tests] tablespace``: where fresh mode's template (so its copies) is created; None:
    # the embedded server's RAM tablespace, else the server's default (``sqltest.fresh``).
    tests_tablespace: str | None = None
    hooks: Mapping[str, tuple[HookConfig, ...]] = field(default_factory=dict)
    data_sources: Mapping[str, DataSource] = field(default_factory=dict)
    sources: tuple[SourceConfig, ...] = ()
    tenants: TenantsConfig | None = None
    # ``[target_groups]``: a group name -> target names, group names and glob patterns.
    target_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # --target / SPAWN_TARGET / ``target`` when it is not one target's name (a list, a group
    # or a pattern): ``spawn_db.fleet.targets.resolve_selection`` turns it into one target
    # (``target_override``) or several (``several_targets``) before a command runs.
    target_selection: str | None = None
    several_targets: tuple[str, ...] = ()

    @property
    def project_dir(self) -> Path:
        return self.path.parent

    @property
    def components_dir(self) -> Path:
        return self.spawn_folder / "components"

    @property
    def migrations_dir(self) -> Path:
        return self.spawn_folder / "migrations"

    @property
    def tests_dir(self) -> Path:
        return self.spawn_folder / "tests"

    @property
    def pinned_dir(self) -> Path:
        return self.spawn_folder / "pinned"

    @property
    def target_name(self) -> str | None:
        if self.several_targets or self.target_selection is not None:
            self.target()  # refuses: a command for one target, given several
        return self.target_override or self.default_target

    def target(self) -> TargetConfig:
        """The selected target; an error that says what to add when there is none, or
        that only the fan-out commands take several."""
        if self.several_targets or self.target_selection is not None:
            raise UsageError(_several_targets_message(self))
        name = self.target_name
        if name is None:
            raise ConfigError(
                f"{self.path}: no target selected; set `target = \"<name>\"` at the top of "
                "the file or pass --target NAME"
            )
        found = self.targets.get(name)
        if found is None:
            raise ConfigError(
                f"{self.path}: target {name!r} is not defined"
                f"{_suggest(name, (*self.targets, *self.target_groups))}; "
                f"add a [targets.{name}] table or pick one of: "
                f"{', '.join(sorted(self.targets)) or '(none defined)'}"
            )
        return found

    def pin_rule(self) -> PinRule:
        """Whether migrations must deploy from their pins here, and why.

        An environment that requires pins (``prod`` and ``production`` by
        default, or ``[environments.<env>] pin = "required"``) refuses
        ``--no-pin``; otherwise the target's ``pin`` (default ``required``: an
        unpinned migration needs ``--no-pin``, the Rust tool's behaviour), then
        the environment's, decides.
        """
        env = self.environment
        declared = self.environment_pins.get(env)
        env_rule = declared or ("required" if env in PROD_ENVIRONMENTS else None)
        target = self.target() if self.target_name is not None else None
        target_rule = target.pin if target is not None else None
        where = f"environment {env}" + ("" if declared else " (the default for prod)")
        if env_rule == "required":
            if target_rule == "optional":
                raise ConfigError(
                    f"{self.path}: [targets.{target.name if target else '?'}] says "
                    f"pin = \"optional\", but {where} requires pins; set "
                    f'[environments.{env}] pin = "optional" to allow it there, or give the '
                    "target another environment")
            return PinRule("required", no_pin_allowed=False, source=where)
        if target_rule is not None and target is not None:
            return PinRule(target_rule, True, f"[targets.{target.name}] pin")
        if env_rule is not None:
            return PinRule(env_rule, True, f"[environments.{env}] pin")
        return PinRule("required", True, "the default")

    @property
    def environment(self) -> str:
        """``env`` for templates: -e, SPAWN_ENVIRONMENT, top-level, target's, then prod."""
        if self.environment_override:
            return self.environment_override
        if self.top_environment:
            return self.top_environment
        if self.target_name is None:
            return DEFAULT_ENVIRONMENT
        return self.target().environment or DEFAULT_ENVIRONMENT

    @property
    def strict_undefined(self) -> bool:
        """Whether an undefined template value is an error: --strict/--lenient, else
        ``[templates] undefined`` (default lenient, the Rust tool's behaviour)."""
        if self.strict_override is not None:
            return self.strict_override
        return self.undefined == "strict"

    def variables_file(self, explicit: str | None = None) -> Path | None:
        """The variables file a render uses: ``--variables`` (relative to the current
        folder), else the selected target's ``variables``, else the ``[variables]`` entry
        for the environment (both relative to spawn.toml's folder); None when none is set.

        A configured file that does not exist is a ``ConfigError`` naming the key: it
        would otherwise render every template without its variables.
        """
        if explicit is not None:
            return Path(explicit)
        configured = self._configured_variables()
        if configured is None:
            return None
        key, value = configured
        path = self.project_dir / value
        if not path.is_file():
            problem = "is not a file" if path.exists() else "does not exist"
            raise ConfigError(
                f"{self.path}: {key} = {toml_string(value)} points to {path}, which "
                f"{problem}; create it, fix the path (it is relative to the folder of "
                f"{self.path.name}), or pass --variables FILE"
            )
        return path

    def _configured_variables(self) -> tuple[str, str] | None:
        """(where the key is, its value) of the variables file spawn.toml selects."""
        name = self.target_name
        if name is not None:
            target = self.target()
            if target.variables is not None:
                return f"[targets.{name}] `variables`", target.variables
        environment = self.environment
        found = self.environment_variables.get(environment)
        if found is not None:
            return f"[variables] `{environment}`", found
        return None


def toml_error_location(path: Path, exc: tomllib.TOMLDecodeError) -> str:
    """``path:line`` when tomllib's message carries a line number, else the path."""

    found = re.search(r"at line (\d+)", str(exc))
    return f"{path}:{found.group(1)}" if found else str(path)


def _current_directory() -> Path:
    try:
        return Path.cwd()
    except FileNotFoundError:
        raise ConfigError(
            "the current directory no longer exists; cd into your project and try again"
        ) from None


def find_config_file(overrides: Overrides, cwd: Path | None = None) -> Path:
    """The config file: --config-file / SPAWN_CONFIG_FILE, else the nearest ``spawn.toml``.

    Without an explicit file, the current folder and then each parent up to the
    file system root are searched, the way git finds ``.git``, so every command
    works from any sub-folder of a project. There is deliberately no boundary
    at a repository root or the home folder: a project folder that is itself a
    git checkout (or a submodule) inside a bigger project must not silently
    stop being part of it.
    """
    base = cwd or _current_directory()
    if overrides.config_file:
        path = Path(overrides.config_file)
        path = path if path.is_absolute() else base / path
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; check --config-file")
        return path
    found = find_project_config(base)
    if found is None:
        raise ConfigError(
            f"no {CONFIG_FILE_NAME} in {base} or any folder above it; run `spawn init` to "
            "create a project here, or pass --config-file PATH"
        )
    return found


def find_project_config(start: Path) -> Path | None:
    """The nearest ``spawn.toml`` in ``start`` or one of its parents, or None."""
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_FILE_NAME
        if _is_file(candidate):
            return candidate
    return None


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False for a folder spawn may not look into (not a traceback)."""
    try:
        return path.is_file()
    except OSError:
        return False


def load_config(overrides: Overrides | None = None, cwd: Path | None = None) -> Config:
    overrides = overrides or Overrides()
    path = find_config_file(overrides, cwd)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{toml_error_location(path, exc)}: invalid TOML: {exc}; fix the syntax "
                          "and try again") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason}); save it as UTF-8") from exc
    return parse_config(raw, path, overrides)


def parse_config(raw: Mapping[str, Any], path: Path, overrides: Overrides) -> Config:
    warnings: list[str] = []
    _warn_unknown(raw, TOP_LEVEL_KEYS, f"{path}", warnings)

    folder = overrides.spawn_folder or raw.get("spawn_folder")
    if not isinstance(folder, str) or not folder:
        raise ConfigError(
            f"{path}: `spawn_folder` is missing; add `spawn_folder = \"spawn\"` "
            "(the folder holding components/, migrations/, tests/ and pinned/)"
        )
    folder_url = folder if REMOTE_URL.match(folder) else None
    spawn_folder = (_mirror_folder(path.parent, folder) if folder_url
                    else _existing_folder(path, folder))
    targets_raw = raw.get("targets", {})
    if not isinstance(targets_raw, dict):
        raise ConfigError(f"{path}: `targets` must be a table of [targets.<name>] sections")
    targets = {
        _table_name(name, path): _parse_target(name, table, path, warnings)
        for name, table in targets_raw.items()
    }
    undefined = _undefined_mode(raw, path, warnings)
    # Before Config(...): its `warnings=` argument is evaluated first, so a table parsed in
    # the call would add its unknown-key warnings too late to be shown.
    migration_order = _migration_order(raw, path, warnings)
    lint_disable = _lint_disable(raw, path, warnings)
    environment_pins = _environment_pins(raw, path, warnings)
    secrets_table = raw.get("secrets", {})
    if not isinstance(secrets_table, dict):
        raise ConfigError(f"{path}: `secrets` must be a table: [secrets] then "
                          '`recipients = ["age1..."]`, and [secrets.<name>] per secret')
    tests_database = _tests_database(raw, path, warnings)
    tests_tablespace = _optional_name(raw.get("tests", {}), "tablespace", path, "[tests]",
                                      pg_name=True)
    hooks = _hooks(raw, path, warnings)
    data_sources = _data_sources(raw, path, warnings)
    sources = _sources(raw, path, warnings)
    tenants = _tenants(raw, path, warnings)
    target_groups = _target_groups(raw, path, targets)
    default_target = _optional_name(raw, "target", path)
    selection = _selection(overrides.target or default_target, targets, target_groups)
    config = Config(
        path=path,
        spawn_folder=spawn_folder,
        targets=targets,
        default_target=default_target,
        top_environment=_optional_name(raw, "environment", path),
        environment_override=_override_name(overrides.environment, "environment", path),
        target_override=overrides.target,
        project_id=_optional_str(raw, "project_id", path),
        warnings=tuple(warnings),
        environment_variables=_environment_variables(raw, path),
        undefined=undefined,
        strict_override=overrides.strict,
        migration_order=migration_order,
        environment_pins=environment_pins,
        lint_disable=lint_disable,
        secrets_table=secrets_table,
        spawn_folder_url=folder_url,
        tests_database=tests_database,
        tests_tablespace=tests_tablespace,
        hooks=hooks,
        data_sources=data_sources,
        sources=sources,
        tenants=tenants,
        target_groups=target_groups,
        target_selection=selection,
    )
    if overrides.target is not None:
        _override_name(overrides.target, "target", path)
        if selection is None:
            config.target()
    return config


TARGET_PATTERN_CHARS = frozenset("*?[")


def _selection(chosen: str | None, targets: Mapping[str, TargetConfig],
               groups: Mapping[str, tuple[str, ...]]) -> str | None:
    """``chosen`` (--target, SPAWN_TARGET or ``target``) when it is not one target's name
    but a comma-separated list, a group or a glob pattern; None otherwise."""
    if chosen is None or chosen in targets:
        return None
    if chosen in groups or "," in chosen or TARGET_PATTERN_CHARS & set(chosen):
        return chosen
    return None


def _several_targets_message(config: Config) -> str:
    if config.several_targets:
        chosen = ", ".join(config.several_targets)
        return (f"the target selection names {len(config.several_targets)} targets "
                f"({chosen}), and this command works on one target at a time; pass one "
                "target name with --target (only `migration apply`, `status`, `revert` and "
                "`drift` run on several targets)")
    return (f"the target selection {config.target_selection!r} (a list, a group or a "
            "pattern) has not been resolved to targets; pass one target name, or run the "
            "command through the `spawn` command line, which resolves it")


def _target_groups(raw: Mapping[str, Any], path: Path, targets: Mapping[str, TargetConfig]
                   ) -> dict[str, tuple[str, ...]]:
    """``[target_groups]``: each a list of target names, group names and glob patterns
    (``spawn_db.fleet.targets`` expands them; here only their shape is checked)."""
    table = raw.get("target_groups", {})
    example = 'e.g. [target_groups] then `shards = ["shard-1", "shard-2"]`'
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: `target_groups` must be a table, {example}")
    groups: dict[str, tuple[str, ...]] = {}
    for name, members in table.items():
        where = f"[target_groups] `{toml_key(name)}`"
        if name in targets:
            raise ConfigError(f"{path}: {where} has the name of a target; a group and a "
                              "target cannot share a name, so rename the group")
        if (not isinstance(members, list) or not members
                or not all(isinstance(m, str) and not name_problem(m, pg_name=False)
                           for m in members)):
            raise ConfigError(f"{path}: {where} must be a non-empty list of target names, "
                              f"group names or glob patterns, {example}")
        problem = name_problem(name, pg_name=False)
        if problem is not None or "," in name or TARGET_PATTERN_CHARS & set(name):
            raise ConfigError(f"{path}: {where} cannot be used as a group name: "
                              f"{problem or 'it contains `,`, `*`, `?` or `[`'}; rename it")
        groups[name] = tuple(members)
    return groups


def _environment_variables(raw: Mapping[str, Any], path: Path) -> dict[str, str]:
    """``[variables]``: environment name -> variables file, relative to spawn.toml's folder."""
    table = raw.get("variables", {})
    if not isinstance(table, dict):
        raise ConfigError(
            f"{path}: top-level `variables` must be a table mapping an environment to a "
            'file, e.g. [variables] then `dev = "vars/dev.yaml"` (a file for one target '
            "goes in its [targets.<name>] table)"
        )
    for environment, file in table.items():
        if not isinstance(file, str) or not file:
            raise ConfigError(
                f"{path}: [variables] `{environment}` must be the path of a variables file, "
                f'e.g. `{environment} = "vars/{environment}.yaml"`'
            )
    return dict(table)


def _undefined_mode(raw: Mapping[str, Any], path: Path, warnings: list[str]) -> UndefinedMode:
    """``[templates] undefined``: "lenient" (default) renders an undefined value as
    nothing, "strict" makes it an error."""
    table = _section(raw, "templates", TEMPLATES_KEYS, path, warnings, 'undefined = "strict"')
    mode = table.get("undefined", "lenient")
    if mode == "strict":
        return "strict"
    if mode != "lenient":
        raise ConfigError(
            f"{path}: [templates] `undefined` is {mode!r}; use \"strict\" (an undefined "
            'value is an error) or "lenient" (it renders as nothing)'
        )
    return "lenient"


def _environment_pins(raw: Mapping[str, Any], path: Path, warnings: list[str]
                      ) -> dict[str, PinMode]:
    """``[environments.<env>] pin``: the pin rule of every target in that environment."""
    table = raw.get("environments", {})
    if not isinstance(table, dict):
        raise ConfigError(f'{path}: `environments` must be a table of [environments.<name>] '
                          'tables, e.g. [environments.dev] then `pin = "optional"`')
    rules: dict[str, PinMode] = {}
    for name, settings in table.items():
        where = f"[environments.{name}]"
        if not isinstance(settings, dict):
            raise ConfigError(f"{path}: {where} must be a table")
        _warn_unknown(settings, ENVIRONMENT_KEYS, f"{path} {where}", warnings)
        rule = _pin_mode(settings, path, where)
        if rule is not None:
            rules[name] = rule
    return rules


def _pin_mode(table: Mapping[str, Any], path: Path, where: str) -> PinMode | None:
    value = table.get("pin")
    if value is None:
        return None
    if value not in PIN_RULES:
        raise ConfigError(
            f"{path}: {where} `pin` is {value!r}; use \"required\" (migrations deploy from "
            'their pins) or "optional" (an unpinned migration deploys from the working tree)')
    return "optional" if value == "optional" else "required"


def _hooks(raw: Mapping[str, Any], path: Path, warnings: list[str]
           ) -> dict[str, tuple[HookConfig, ...]]:
    """``[[hooks.<event>]]``: what runs around apply, revert and tests (docs/hooks.md)."""
    table = raw.get("hooks", {})
    if not isinstance(table, dict):
        raise ConfigError(f'{path}: `hooks` must be a table of [[hooks.<event>]] entries, '
                          'e.g. [[hooks.after_apply]] then `sql = "hooks/grants.sql"`')
    hooks: dict[str, tuple[HookConfig, ...]] = {}
    for event, entries in table.items():
        if event not in HOOK_EVENTS:
            raise ConfigError(
                f"{path}: [hooks.{event}] is not a hook event{_suggest(event, HOOK_EVENTS)}; "
                f"use one of: {', '.join(HOOK_EVENTS)}")
        if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
            raise ConfigError(
                f"{path}: [hooks.{event}] must be a list of tables: write each hook as "
                f'[[hooks.{event}]] followed by `sql = "hooks/x.sql"` or `command = [...]`')
        hooks[event] = tuple(_hook(event, number, entry, path, warnings)
                             for number, entry in enumerate(entries, 1))
    return hooks


def _hook(event: str, number: int, entry: Mapping[str, Any], path: Path,
          warnings: list[str]) -> HookConfig:
    where = f"[[hooks.{event}]] #{number}"
    _warn_unknown(entry, HOOK_KEYS, f"{path} {where}", warnings)
    sql, command, plugin = entry.get("sql"), entry.get("command"), entry.get("plugin")
    if [sql, command, plugin].count(None) != 2:
        raise ConfigError(
            f"{path}: {where} needs exactly one of `sql` (a template under "
            f'{HOOKS_FOLDER}/, e.g. `sql = "{HOOKS_FOLDER}/grants.sql"`), `command` (an '
            'argv list, e.g. `command = ["./notify.sh"]`) and `plugin` (the name of an '
            "installed spawn.hooks plugin)")
    if plugin is not None and (not isinstance(plugin, str) or not plugin):
        raise ConfigError(f"{path}: {where} `plugin` must be the name of a spawn.hooks "
                          'entry point, e.g. `plugin = "audit"`')
    if sql is not None:
        _hook_path(sql, path, where)
    if command is not None and (not isinstance(command, list) or not command
                                or not all(isinstance(a, str) and a for a in command)):
        raise ConfigError(
            f"{path}: {where} `command` must be a non-empty list of non-empty strings (the "
            'program and its arguments, run without a shell), e.g. `command = ["./notify.sh", '
            '"deployed"]`')
    on_error = entry.get("on_error", "fail")
    if on_error not in ("fail", "warn"):
        raise ConfigError(
            f'{path}: {where} `on_error` is {on_error!r}; use "fail" (a failing hook stops '
            'the command, exit 1) or "warn" (it is reported and the command goes on)')
    environments = entry.get("environments", [])
    if not isinstance(environments, list) or not all(isinstance(e, str) and e
                                                     for e in environments):
        raise ConfigError(
            f'{path}: {where} `environments` must be a list of environment names, e.g. '
            '`environments = ["dev", "staging"]`')
    return HookConfig(event, number, sql, tuple(command or ()),
                      "warn" if on_error == "warn" else "fail", tuple(environments), plugin)


def _hook_path(value: Any, path: Path, where: str) -> None:
    """A hook's ``sql``: relative to the spawn folder and inside ``hooks/`` (checked
    again, links resolved, when it runs)."""
    from pathlib import PurePosixPath

    parts = PurePosixPath(value).parts if isinstance(value, str) else ()
    if (not isinstance(value, str) or "\\" in value or PurePosixPath(value).is_absolute()
            or len(parts) < 2 or parts[0] != HOOKS_FOLDER or ".." in parts
            or not value.endswith(".sql")):
        raise ConfigError(
            f"{path}: {where} `sql` = {value!r} must name a .sql template inside the "
            f'{HOOKS_FOLDER}/ folder of the spawn folder, e.g. `sql = "{HOOKS_FOLDER}/'
            'grants.sql"` (no absolute path, no `..`)')


def _lint_disable(raw: Mapping[str, Any], path: Path, warnings: list[str]) -> tuple[str, ...]:
    """``[lint] disable``: the rule IDs ``spawn lint`` skips for every migration (the IDs
    themselves are checked by ``lint``, which knows the rules)."""
    table = _section(raw, "lint", LINT_KEYS, path, warnings, 'disable = ["SP003"]')
    disable = table.get("disable", [])
    if not isinstance(disable, list) or not all(isinstance(i, str) for i in disable):
        raise ConfigError(f'{path}: [lint] `disable` must be a list of rule IDs, e.g. '
                          '`disable = ["SP003", "SP013"]`')
    return tuple(i.strip().upper() for i in disable)


def _migration_order(raw: Mapping[str, Any], path: Path, warnings: list[str]) -> MigrationOrder:
    """``[migrations] order``: "loose" (default; the Rust tool's behaviour) applies an older
    pending migration after newer ones, "strict" refuses unless it says out_of_order."""
    table = _section(raw, "migrations", MIGRATIONS_KEYS, path, warnings, 'order = "strict"')
    order = table.get("order", "loose")
    if order not in ("loose", "strict"):
        raise ConfigError(
            f"{path}: [migrations] `order` is {order!r}; use \"loose\" (apply pending "
            'migrations whatever their age) or "strict" (refuse one older than the newest '
            "applied, unless its migration.toml says out_of_order = true)"
        )
    return "strict" if order == "strict" else "loose"


def _tenants(raw: Mapping[str, Any], path: Path, warnings: list[str]) -> TenantsConfig | None:
    """``[tenants]``: exactly one source (``list``, ``query`` or ``command``) and the
    optional ``schema`` template; absent means the project has no tenants."""
    if raw.get("tenants") is None:
        return None
    table = _section(raw, "tenants", TENANTS_KEYS, path, warnings, 'list = ["acme", "globex"]')
    given = [key for key in TENANT_SOURCES if key in table]
    if len(given) != 1:
        found = f" (found {', '.join(given)})" if given else ""
        raise ConfigError(
            f"{path}: [tenants] needs exactly one of `list` (e.g. `list = [\"acme\"]`), "
            "`query` (e.g. `query = \"SELECT slug FROM public.tenants\"`) or `command` (e.g. "
            f"`command = [\"./list-tenants\"]`, one name per line){found}")
    schema = _optional_str(table, "schema", path, "[tenants]") or DEFAULT_TENANT_SCHEMA
    if given[0] == "list":
        names = table["list"]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f'{path}: [tenants] `list` must be a list of names, e.g. '
                              '`list = ["acme", "globex"]`')
        return TenantsConfig("list", names=tuple(names), schema=schema)
    if given[0] == "query":
        query = _optional_str(table, "query", path, "[tenants]")
        if not query or not query.strip():
            raise ConfigError(f'{path}: [tenants] `query` must be a SELECT returning one '
                              'name per row, e.g. `query = "SELECT slug FROM public.tenants"`')
        return TenantsConfig("query", query=query, schema=schema)
    command = _argv(table, "command", path, "[tenants]")
    if not command:
        raise ConfigError(f'{path}: [tenants] `command` must be a non-empty list of strings, '
                          'e.g. `command = ["./list-tenants"]`')
    return TenantsConfig("command", command=command, schema=schema)


REMOTE_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def _mirror_folder(project_dir: Path, url: str) -> Path:
    """Where a remote ``spawn_folder`` is mirrored: one folder per URL in ``.spawn/``."""
    import hashlib

    key = hashlib.sha256(url.rstrip("/").encode("utf-8")).hexdigest()[:16]
    return project_dir / ".spawn" / "remote" / key


def _tests_database(raw: Mapping[str, Any], path: Path, warnings: list[str]) -> TestDatabase:
    """``[tests] database``: "target" (default; the Rust tool's behaviour) runs each test
    where the target connects, "fresh" in its own copy of a template database built from
    the migrations (``sqltest.fresh``)."""
    table = _section(raw, "tests", TESTS_KEYS, path, warnings, 'database = "fresh"')
    database = table.get("database", "target")
    if database not in TEST_DATABASES:
        raise ConfigError(
            f"{path}: [tests] `database` is {database!r}; use \"target\" (tests run where "
            'the target connects) or "fresh" (each test in its own copy of a database built '
            "from the migrations)"
        )
    return "fresh" if database == "fresh" else "target"


_DATA_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_SHA256 = re.compile(r"[0-9a-fA-F]{64}")


def _data_sources(raw: Mapping[str, Any], path: Path, warnings: list[str]
                  ) -> dict[str, DataSource]:
    """``[data.<name>]`` tables: exactly one of ``url`` (with ``sha256``) or ``command``."""
    table = raw.get("data", {})
    if not isinstance(table, dict):
        raise ConfigError(f'{path}: `data` must be a table of [data.<name>] tables, e.g. '
                          '[data.countries] then `url = "https://..."` and `sha256 = "..."`')
    return {name: _data_source(name, settings, path, warnings)
            for name, settings in table.items()}


def _data_source(name: str, settings: Any, path: Path, warnings: list[str]) -> DataSource:
    where = f"[data.{toml_key(name)}]"
    if not _DATA_NAME.fullmatch(name) or ".." in name:
        raise ConfigError(f"{path}: {where}: a data source name uses letters, digits, `_`, "
                          "`-` and `.` (it names the file), e.g. [data.countries]")
    if not isinstance(settings, dict):
        raise ConfigError(f"{path}: {where} must be a table with `url` and `sha256`, or "
                          "`command`")
    _warn_unknown(settings, DATA_KEYS, f"{path} {where}", warnings)
    url = _optional_str(settings, "url", path, where)
    has_command = "command" in settings
    if (url is None) == (not has_command):
        raise ConfigError(f"{path}: {where} needs exactly one of `url` (a download, with "
                          '`sha256`) or `command` (a program whose output is the file, e.g. '
                          '`command = ["./export.sh"]`)')
    command = _argv(settings, "command", path, where)
    if has_command and not command:
        raise ConfigError(f"{path}: {where} `command` must be a non-empty list of strings, "
                          'e.g. `command = ["./export.sh"]`')
    sha256 = _optional_str(settings, "sha256", path, where)
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        raise ConfigError(f"{path}: {where} `sha256` must be 64 hex digits (the output of "
                          "`sha256sum FILE`)")
    if url is not None:
        _check_data_url(url, sha256, path, where)
    file = _optional_str(settings, "path", path, where) or name + _data_extension(url)
    parts = file.split("/")
    if file.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"{path}: {where} `path` {file!r} must be a relative path under "
                          "components/data/ (no `..`, no leading `/`)")
    return DataSource(name, file, url, command, None if sha256 is None else sha256.lower())


def _sources(raw: Mapping[str, Any], path: Path, warnings: list[str]
             ) -> tuple[SourceConfig, ...]:
    """``[[sources]]``: each a ``name`` and exactly one of ``path`` or ``package``, names
    unique and not a namespace spawn uses itself (docs/sources.md)."""
    entries = raw.get("sources", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ConfigError(f'{path}: `sources` must be an array of tables: [[sources]] then '
                          '`name = "audit"` and `path = "../shared/audit"`')
    found: list[SourceConfig] = []
    for number, entry in enumerate(entries, 1):
        source = _source(number, entry, path, warnings)
        if any(s.name == source.name for s in found):
            raise ConfigError(f"{path}: [[sources]] entry {number}: the name {source.name!r} "
                              "is used by an earlier entry; give each source its own name")
        found.append(source)
    return tuple(found)


def _source(number: int, entry: Mapping[str, Any], path: Path, warnings: list[str]
            ) -> SourceConfig:
    where = f"[[sources]] entry {number}"
    _warn_unknown(entry, SOURCE_KEYS, f"{path} {where}", warnings)
    name = entry.get("name")
    if isinstance(name, str) and (name in RESERVED_SOURCE_NAMES or name.startswith("tenant:")):
        raise ConfigError(f"{path}: {where}: the name {name!r} is reserved for spawn's own "
                          f"tracking namespaces ({', '.join(RESERVED_SOURCE_NAMES)}, "
                          "tenant:...); choose another name")
    if not isinstance(name, str) or not _SOURCE_NAME.fullmatch(name):
        raise ConfigError(f"{path}: {where}: `name` must be a lower-case identifier (letters, "
                          f'digits and `_`, at most 63), not {name!r}; e.g. name = "audit"')
    where = f"[[sources]] {name!r}"
    folder = _optional_str(entry, "path", path, where)
    package = _optional_str(entry, "package", path, where)
    if (folder is None) == (package is None):
        raise ConfigError(f"{path}: {where} needs exactly one of `path` (a spawn folder, "
                          'relative to spawn.toml\'s folder) or `package` (a Python package '
                          'with a spawn.sources entry point), e.g. path = "../shared/audit"')
    if package is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", package):
        raise ConfigError(f"{path}: {where}: `package` must be an importable package name, "
                          f"not {package!r}")
    resolved = None if folder is None else (path.parent / folder).resolve()
    return SourceConfig(name, resolved, package)


def _check_data_url(url: str, sha256: str | None, path: Path, where: str) -> None:
    from urllib.parse import urlsplit

    if urlsplit(url).scheme.lower() not in DATA_SCHEMES or not urlsplit(url).netloc:
        raise ConfigError(f"{path}: {where} `url` {url!r} must be an https:// (or http://) "
                          "address")
    if sha256 is None:
        raise ConfigError(f"{path}: {where} has a `url` but no `sha256`; add `sha256 = "
                          '"<64 hex digits>"` (run `sha256sum` on a copy you checked), so a '
                          "changed download is refused")


def _data_extension(url: str | None) -> str:
    """The extension of the URL's last path segment, or ``.csv``."""
    from urllib.parse import unquote, urlsplit

    if url is None:
        return ".csv"
    last = unquote(urlsplit(url).path).rsplit("/", 1)[-1]
    stem, dot, extension = last.rpartition(".")
    if stem and dot and extension.isalnum() and len(extension) <= 10:
        return "." + extension.lower()
    return ".csv"


def toml_key(name: str) -> str:
    """``name`` as a TOML key in a message: bare when it can be, else quoted."""
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else toml_string(name)


def _existing_folder(path: Path, folder: str) -> Path:
    """``spawn_folder`` resolved beside spawn.toml; an error naming it when it is missing.

    Without this check a missing folder looks like a project with no
    migrations (or every migration failing with a file-system error).
    """
    resolved = path.parent / folder
    if not resolved.is_dir():
        problem = "is not a folder" if resolved.exists() else "does not exist"
        raise ConfigError(
            f"{path}: `spawn_folder = {toml_string(folder)}` points to {resolved}, which "
            f"{problem}; fix `spawn_folder` or create that folder with components/, "
            "migrations/, tests/ and pinned/ in it"
        )
    return resolved


# PostgreSQL truncates names to NAMEDATALEN - 1 bytes, so a longer name silently
# becomes another one.
PG_NAME_MAX_BYTES = 63
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def name_problem(value: str, *, pg_name: bool) -> str | None:
    """Why ``value`` cannot be used as a name that reaches psql or SQL, or None if it can.

    psql reads its input line by line, so a line break in a name that is put on a
    meta-command line (``\\connect``) would end the command and run the rest as
    psql input; control characters are refused everywhere for that reason.
    """
    if not value:
        return "it is empty"
    control = _CONTROL.search(value)
    if control:
        return f"it contains the control character U+{ord(control.group()):04X}"
    if pg_name and len(value.encode("utf-8")) > PG_NAME_MAX_BYTES:
        return (f"it is {len(value.encode('utf-8'))} bytes long and PostgreSQL names have at "
                f"most {PG_NAME_MAX_BYTES}")
    return None


def _checked_name(value: str, key: str, path: Path, where: str, *, pg_name: bool) -> str:
    problem = name_problem(value, pg_name=pg_name)
    if problem is not None:
        place = f" {where}" if where else ""
        example = f'{key} = "{_EXAMPLES.get(key, "dev")}"'
        raise ConfigError(
            f"{path}:{place} `{key}` {value!r} cannot be used: {problem}; use a plain name "
            f"of letters, digits and `_`, e.g. `{example}`"
        )
    return value


_EXAMPLES = {"spawn_database": "spawn", "spawn_schema": DEFAULT_SCHEMA, "database": "postgres",
             "tablespace": "pg_default", "target": "local", "environment": "dev"}


def _optional_name(
    raw: Mapping[str, Any], key: str, path: Path, where: str = "", *, pg_name: bool = False,
) -> str | None:
    value = _optional_str(raw, key, path, where)
    if value is None:
        return None
    return _checked_name(value, key, path, where, pg_name=pg_name)


def _table_name(name: str, path: Path) -> str:
    problem = name_problem(name, pg_name=False)
    if problem is not None:
        raise ConfigError(
            f"{path}: target name {name!r} in [targets.<name>] cannot be used: {problem}; "
            "rename the table, e.g. [targets.local]"
        )
    return name


def _override_name(value: str | None, key: str, path: Path) -> str | None:
    """A --target / --environment value (or SPAWN_TARGET / SPAWN_ENVIRONMENT), checked."""
    if value is None:
        return None
    problem = name_problem(value, pg_name=False)
    if problem is not None:
        variable = f"SPAWN_{key.upper()}"
        raise ConfigError(
            f"the {key} {value!r} from --{key} or {variable} cannot be used: {problem}; pass a "
            f"plain name (it is checked against {path})"
        )
    return value


def _parse_target(
    name: str, table: Any, path: Path, warnings: list[str]
) -> TargetConfig:
    where = f"[targets.{name}]"
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: {where} must be a table")
    _warn_unknown(table, TARGET_KEYS, f"{path} {where}", warnings)
    engine = table.get("engine")
    if engine is None:
        raise ConfigError(f"{path}: {where} has no engine; add `engine = \"postgres-psql\"`")
    if engine not in ENGINES:
        raise ConfigError(
            f"{path}: {where} engine {engine!r} is not supported; use `engine = \"postgres-psql\"`"
        )
    command = table.get("command")
    if command is None:
        raise ConfigError(
            f"{path}: {where} has no command; add for example "
            '`command = { kind = "embedded" }` or '
            '`command = { kind = "direct", direct = ["psql", "mydb"] }`'
        )
    return TargetConfig(
        name=name,
        engine=engine,
        command=_parse_command(command, path, where, warnings),
        spawn_schema=_optional_name(table, "spawn_schema", path, where,
                                    pg_name=True) or DEFAULT_SCHEMA,
        spawn_database=_optional_name(table, "spawn_database", path, where,
                                      pg_name=True),
        environment=_optional_name(table, "environment", path, where),
        pin=_pin_mode(table, path, where),
        postgres_bin=_optional_str(table, "postgres_bin", path, where),
        variables=_optional_str(table, "variables", path, where),
    )


def _parse_command(raw: Any, path: Path, where: str, warnings: list[str]) -> CommandSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: {where} command must be a table like {{ kind = \"direct\" }}")
    _warn_unknown(raw, COMMAND_KEYS, f"{path} {where} command", warnings)
    kind = raw.get("kind")
    if kind not in COMMAND_KINDS:
        raise ConfigError(
            f"{path}: {where} command kind {kind!r} is not one of {', '.join(COMMAND_KINDS)}"
        )
    direct = _argv(raw, "direct", path, where)
    provider = _argv(raw, "provider", path, where)
    append = _argv(raw, "append", path, where)
    if kind == "direct" and not direct:
        raise ConfigError(
            f"{path}: {where} command kind \"direct\" needs `direct = [\"psql\", ...]`"
        )
    if kind == "provider" and not provider:
        raise ConfigError(
            f"{path}: {where} command kind \"provider\" needs `provider = [argv]`, the command "
            "that prints the psql command line"
        )
    database = raw.get("database", "postgres")
    if not isinstance(database, str) or not database:
        raise ConfigError(f"{path}: {where} command `database` must be a non-empty string")
    _checked_name(database, "database", path, f"{where} command", pg_name=True)
    return CommandSpec(kind=kind, direct=direct, provider=provider, append=append,
                       database=database)


def _argv(raw: Mapping[str, Any], key: str, path: Path, where: str) -> tuple[str, ...]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: {where} command `{key}` must be a list of strings")
    return tuple(value)


def _optional_str(
    raw: Mapping[str, Any], key: str, path: Path, where: str = ""
) -> str | None:
    value = raw.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        place = f" {where}" if where else ""
        raise ConfigError(f"{path}:{place} `{key}` must be a string, not {value!r}")
    return value


def _section(raw: Mapping[str, Any], key: str, known: tuple[str, ...], path: Path,
             warnings: list[str], example: str) -> dict[str, Any]:
    """``[key]``'s table (empty when absent): anything but a table is an error showing
    ``example``; an unknown key in it is a warning naming the closest known one."""
    table = raw.get(key, {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: `{key}` must be a table: [{key}] then `{example}`")
    _warn_unknown(table, known, f"{path} [{key}]", warnings)
    return table


def _warn_unknown(
    raw: Mapping[str, Any], known: tuple[str, ...], where: str, warnings: list[str]
) -> None:
    for key in raw:
        if key not in known:
            warnings.append(
                f"warning: unknown key `{key}` in {where} (ignored; the closest known key is "
                f"`{closest_key(key, known)}`)"
            )


def closest_key(name: str, candidates: tuple[str, ...]) -> str:
    return max(candidates, key=lambda c: difflib.SequenceMatcher(None, name, c).ratio())


def _suggest(name: str, candidates: Mapping[str, Any] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.5)
    return f" (did you mean `{close[0]}`?)" if close else ""


_PLAIN_NAME = re.compile(r'[^"\\\x00-\x1f\x7f]*')
_BASIC_ESCAPES = {
    "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\",
}


def toml_string(value: str) -> str:
    """A TOML string the way toml_edit picks its style for one-line values.

    Plain text is a basic string; text with a backslash (and no control
    characters) becomes a literal string, which needs no escapes.
    """
    if _PLAIN_NAME.fullmatch(value):
        return f'"{value}"'
    has_control = any((c < " " and c != "\t") or c == "\x7f" for c in value)
    if "\\" in value and not has_control:
        if "'" not in value:
            return f"'{value}'"
        if "'''" not in value and not value.endswith("'"):
            return f"'''{value}'''"
    out = []
    for ch in value:
        if ch in _BASIC_ESCAPES:
            out.append(_BASIC_ESCAPES[ch])
        elif ch < " " or ch == "\x7f":
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
