"""Repeatable migrations (``migrate/repeatable.py``) against the real PostgreSQL: order,
``repeatable.toml``, what runs and what is recorded, failures, the lock, status, and the
checksum cache."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spawn_db.config import Config, Overrides, load_config
from spawn_db.errors import (
    DependencyCycle,
    LockUnavailable,
    MigrationFailed,
    MigrationSettingsError,
    PreviousAttemptFailed,
    TemplateError,
)
from spawn_db.migrate.apply import apply, status
from spawn_db.migrate.apply import tracking_session as session_of
from spawn_db.migrate.repeatable import (
    NAMESPACE,
    Checksums,
    RepeatableRequest,
    RepeatableSettings,
    apply_repeatables,
    changed_repeatables,
    in_order,
    load_all,
    render_repeatable,
)
from spawn_db.migrate.tracking import Record, lock_key
from tests.conftest import DbProject
from tests.migrate.history import history


def config_of(project: DbProject, environment: str | None = None) -> Config:
    return load_config(Overrides(config_file=str(project.config_path), environment=environment))


def add_repeatable(project: DbProject, name: str, sql: str, toml: str | None = None) -> Path:
    folder = project.spawn_dir / "repeatable" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "up.sql").write_text(sql, encoding="utf-8")
    if toml is not None:
        (folder / "repeatable.toml").write_text(toml, encoding="utf-8")
    return folder


def all_rows(project: DbProject) -> list[tuple[str, ...]]:
    """(namespace, name, activity, status) of every history row, oldest first."""
    text = project.database.query(
        "SELECT m.namespace, m.name, h.activity_id_activity, h.status_id_status "
        "FROM _spawn.migration_history h JOIN _spawn.migration m "
        "ON m.migration_id = h.migration_id_migration ORDER BY h.migration_history_id")
    return [tuple(line.split("|")) for line in text.splitlines()]


def run_apply(config: Config, request: RepeatableRequest | None = None,
              migration: str | None = None) -> object:
    return apply(config, migration, repeatables=request)


# -- order and repeatable.toml ---------------------------------------------------------------


def test_order_is_requires_first_then_name() -> None:
    settings = {"c-grants": RepeatableSettings(requires=("a-views",)),
                "b-functions": RepeatableSettings(),
                "a-views": RepeatableSettings(requires=("z-types",)),
                "z-types": RepeatableSettings()}

    assert in_order(settings) == ["b-functions", "z-types", "a-views", "c-grants"]


@st.composite
def acyclic(draw: st.DrawFn) -> dict[str, RepeatableSettings]:
    names = draw(st.lists(st.text("abcdefgh", min_size=1, max_size=3), unique=True,
                          max_size=12))
    rank = draw(st.permutations(names))  # edges only point to earlier ranks: no cycle
    return {n: RepeatableSettings(requires=tuple(draw(st.sets(st.sampled_from(
        rank[:rank.index(n)]), max_size=3)) if rank.index(n) else ()))
        for n in names}


@given(acyclic())
def test_order_is_the_smallest_by_name_that_respects_requires(
        settings: dict[str, RepeatableSettings]) -> None:
    ordered = in_order(settings)

    assert sorted(ordered) == sorted(settings)
    placed: set[str] = set()
    for name in ordered:
        free = [n for n in settings if n not in placed
                and set(settings[n].requires) <= placed]
        assert name == min(free)
        placed.add(name)


def test_unknown_key_warns_with_the_closest_key(db_project: DbProject) -> None:
    folder = add_repeatable(db_project, "views", "SELECT 1;\n",
                            'descriptio = "views"\nrequire = []\n')

    found = load_all(config_of(db_project), ["views"])

    path = folder / "repeatable.toml"
    assert found["views"].warnings == (
        f"warning: unknown key `descriptio` in {path} (ignored; the closest known key is "
        "`description`)",
        f"warning: unknown key `require` in {path} (ignored; the closest known key is "
        "`requires`)",
    )


@pytest.mark.parametrize(("toml", "error", "message"), [
    ("description = 1\n", MigrationSettingsError,
     "{path}: `description` must be a string, not 1; write description = \"...\""),
    ('requires = "views"\n', MigrationSettingsError,
     "{path}: `requires` must be a list of repeatable names, not 'views'; write requires = "
     "[\"base-views\"]"),
    ('requires = ["view"]\n', MigrationSettingsError,
     "{path}: `requires` names 'view', which is not a repeatable in {folder} (did you mean "
     "'views'?); name a folder of repeatable/ that holds an up.sql"),
    ('requires = ["grants"]\n', MigrationSettingsError,
     "{path}: `requires` names the repeatable itself; remove it"),
    ("requires = [\n", MigrationSettingsError, "{path}: invalid TOML: "),
])
def test_bad_settings_are_configuration_errors(db_project: DbProject, toml: str,
                                               error: type[Exception], message: str) -> None:
    add_repeatable(db_project, "views", "SELECT 1;\n")
    folder = add_repeatable(db_project, "grants", "SELECT 2;\n", toml)
    config = config_of(db_project)

    with pytest.raises(error) as raised:
        load_all(config, ["grants", "views"])

    expected = message.format(path=folder / "repeatable.toml",
                              folder=config.spawn_folder / "repeatable")
    assert str(raised.value).startswith(expected)
    assert raised.value.exit_code == 2  # type: ignore[attr-defined]


def test_a_cycle_is_named(db_project: DbProject) -> None:
    add_repeatable(db_project, "a", "SELECT 1;\n", 'requires = ["b"]\n')
    add_repeatable(db_project, "b", "SELECT 1;\n", 'requires = ["c"]\n')
    add_repeatable(db_project, "c", "SELECT 1;\n", 'requires = ["a"]\n')

    with pytest.raises(DependencyCycle) as raised:
        load_all(config_of(db_project), ["a", "b", "c"])

    assert raised.value.message == (
        "repeatables require each other in a cycle: a -> b -> c -> a; remove one of these "
        "`requires` entries (in repeatable.toml of the repeatables named)")
    assert raised.value.exit_code == 2


# -- apply -----------------------------------------------------------------------------------


def test_apply_runs_migrations_then_repeatables_in_order_in_their_own_namespace(
    db_project: DbProject,
) -> None:
    users = db_project.add_migration("users", "CREATE TABLE users (id int, name text);\n")
    db_project.add_component("views/names.sql",
                             "CREATE OR REPLACE VIEW user_names AS SELECT name FROM users;")
    add_repeatable(db_project, "views", "{% include 'views/names.sql' %}\n")
    add_repeatable(db_project, "a-grants", "GRANT SELECT ON user_names TO PUBLIC;\n",
                   'requires = ["views"]\ndescription = "who reads what"\n')

    result = apply(config_of(db_project))

    assert result.repeatables is not None
    assert [o.name for o in result.repeatables.applied] == ["views", "a-grants"]
    assert all_rows(db_project)[3:] == [
        ("default", users, "APPLY", "ATTEMPTED"), ("default", users, "APPLY", "SUCCESS"),
        ("repeatable", "views", "APPLY", "ATTEMPTED"), ("repeatable", "views", "APPLY", "SUCCESS"),
        ("repeatable", "a-grants", "APPLY", "ATTEMPTED"),
        ("repeatable", "a-grants", "APPLY", "SUCCESS"),
    ]
    assert db_project.database.query(
        "SELECT has_table_privilege('public', 'user_names', 'SELECT')") == "t"
    rendered = render_repeatable(config_of(db_project), "views", variables={})
    checksum = rendered.checksum.hex()
    rendered.close()
    assert db_project.database.query(
        "SELECT encode(h.checksum, 'hex'), h.pin_hash IS NULL FROM _spawn.migration_history h "
        "JOIN _spawn.migration m ON m.migration_id = h.migration_id_migration WHERE m.name = "
        "'views' AND h.status_id_status = 'SUCCESS'") == f"{checksum}|t"


def test_unchanged_repeatables_write_nothing(db_project: DbProject) -> None:
    add_repeatable(db_project, "one", "CREATE OR REPLACE VIEW one AS SELECT 1 AS n;\n")
    add_repeatable(db_project, "two",
                   "{% if env %}CREATE OR REPLACE VIEW two AS SELECT 2 AS n;{% endif %}\n")
    config = config_of(db_project)
    apply(config)
    before = all_rows(db_project)

    again = apply(config)

    assert again.repeatables is not None
    assert (again.repeatables.applied, again.repeatables.unchanged) == ((), ("one", "two"))
    assert all_rows(db_project) == before


@pytest.mark.parametrize("edit", ["component", "variables", "environment"])
def test_what_the_render_reads_makes_it_run_again(db_project: DbProject, tmp_path: Path,
                                                  edit: str) -> None:
    db_project.add_component("views/n.sql",
                             "CREATE OR REPLACE VIEW n AS SELECT {{ variables.n | default(1) }}"
                             " AS n, {{ env }}::text AS env;")
    add_repeatable(db_project, "n", "{% include 'views/n.sql' %}\n")
    apply(config_of(db_project))
    variables: dict[str, int] = {}
    environment = None
    if edit == "component":
        db_project.add_component("views/n.sql",
                                 "CREATE OR REPLACE VIEW n AS SELECT 7 AS n, 'x'::text AS env;")
    elif edit == "variables":
        variables = {"n": 7}
    else:
        environment = "staging"
    config = config_of(db_project, environment)

    assert changed_repeatables(config, _states(config), variables=variables).names == ["n"]
    result = apply(config, variables=variables)

    assert result.repeatables is not None
    assert [o.name for o in result.repeatables.applied] == ["n"]
    expected = {"component": "7|x", "variables": "7|dev", "environment": "1|staging"}[edit]
    assert db_project.database.query("SELECT n, env FROM n") == expected


def _states(config: Config) -> dict[str, object]:
    with session_of(config) as tracking:
        return dict(tracking.latest(NAMESPACE))


def test_a_failure_is_recorded_stops_the_run_and_the_next_apply_retries(
    db_project: DbProject,
) -> None:
    folder = add_repeatable(db_project, "a-table", "BEGIN;\nCREATE TABLE IF NOT EXISTS t (n int);"
                                                   "\nINSERT INTO t VALUES (1/0);\nCOMMIT;\n")
    add_repeatable(db_project, "b-view", "CREATE OR REPLACE VIEW v AS SELECT * FROM t;\n",
                   'requires = ["a-table"]\n')
    config = config_of(db_project)

    with pytest.raises(MigrationFailed) as raised:
        apply(config)

    assert raised.value.exit_code == 1
    assert raised.value.message == (
        "repeatable a-table failed (0 of 2 re-applied before it); recorded as FAILURE in "
        "_spawn.migration_history (namespace repeatable). psql said:\n"
        "ERROR:  division by zero\n"
        "Fix spawn/repeatable/a-table/up.sql (or what it includes); the next `spawn migration "
        "apply` runs it again")
    assert history(db_project.database, NAMESPACE) == [
        ("a-table", "APPLY", "ATTEMPTED"), ("a-table", "APPLY", "FAILURE")]
    assert db_project.database.query(
        "SELECT count(*) FROM pg_class WHERE relname IN ('t', 'v')") == "0"

    (folder / "up.sql").write_text("CREATE TABLE IF NOT EXISTS t (n int);\n", encoding="utf-8")
    fixed = apply(config)

    assert fixed.repeatables is not None
    assert [o.name for o in fixed.repeatables.applied] == ["a-table", "b-view"]
    assert [s for _, _, s in history(db_project.database, NAMESPACE)] == [
        "ATTEMPTED", "FAILURE", "ATTEMPTED", "SUCCESS", "ATTEMPTED", "SUCCESS"]


def test_an_unfixed_failure_runs_again_on_the_next_apply(db_project: DbProject) -> None:
    add_repeatable(db_project, "broken", "SELECT 1/0;\n")
    config = config_of(db_project)
    with pytest.raises(MigrationFailed):
        apply(config)

    with pytest.raises(MigrationFailed):
        apply(config)

    assert [s for _, _, s in history(db_project.database, NAMESPACE)] == [
        "ATTEMPTED", "FAILURE", "ATTEMPTED", "FAILURE"]


def test_the_attempted_row_is_committed_before_the_repeatable_runs_and_an_attempt_reruns(
    db_project: DbProject,
) -> None:
    add_repeatable(db_project, "probe", (
        "DO $$ BEGIN IF (SELECT h.status_id_status FROM _spawn.migration_history h JOIN "
        "_spawn.migration m ON m.migration_id = h.migration_id_migration WHERE m.name = 'probe' "
        "AND m.namespace = 'repeatable' ORDER BY h.migration_history_id DESC LIMIT 1) "
        "<> 'ATTEMPTED' THEN RAISE EXCEPTION 'no ATTEMPTED row'; END IF; END $$;\n"
        "CREATE TABLE IF NOT EXISTS runs (n int);\nINSERT INTO runs VALUES (1);\n"))
    config = config_of(db_project)
    apply(config)
    with session_of(config) as tracking:  # as a crash during the run would leave it
        latest = tracking.latest(NAMESPACE)["probe"]
        tracking.write([Record("probe", "APPLY", "ATTEMPTED",
                               checksum=bytes.fromhex(latest.checksum), namespace=NAMESPACE)])

    result = apply(config)

    assert result.repeatables is not None
    assert [o.name for o in result.repeatables.applied] == ["probe"]
    assert db_project.database.query("SELECT count(*) FROM runs") == "2"


def test_a_failed_or_blocked_migration_keeps_the_repeatables_from_running(
    db_project: DbProject,
) -> None:
    db_project.add_migration("bad", "SELECT 1/0;\n")
    add_repeatable(db_project, "views", "CREATE VIEW v AS SELECT 1 AS n;\n")
    config = config_of(db_project)

    with pytest.raises(MigrationFailed):
        apply(config)
    with pytest.raises(PreviousAttemptFailed):
        apply(config)

    assert history(db_project.database, NAMESPACE) == []


def test_a_template_error_stops_the_apply_before_anything_runs(db_project: DbProject) -> None:
    db_project.add_migration("users", "CREATE TABLE users (id int);\n")
    add_repeatable(db_project, "views", "{% include 'missing.sql' %}\n")

    with pytest.raises(TemplateError, match=r"component 'missing\.sql' not found") as raised:
        apply(config_of(db_project))

    assert raised.value.exit_code == 1
    assert db_project.database.query(
        "SELECT count(*) FROM pg_namespace WHERE nspname = '_spawn'") == "0"


def test_a_script_with_meta_commands_runs_in_its_own_psql_and_is_recorded(
    db_project: DbProject,
) -> None:
    add_repeatable(db_project, "meta",
                   "\\set n 3\nCREATE OR REPLACE VIEW meta AS SELECT :n AS n;\n")

    apply(config_of(db_project))

    assert db_project.database.query("SELECT n FROM meta") == "3"
    assert history(db_project.database, NAMESPACE) == [
        ("meta", "APPLY", "ATTEMPTED"), ("meta", "APPLY", "SUCCESS")]


def test_requests_no_repeatable_named_migration_and_forced_repeatable(
    db_project: DbProject,
) -> None:
    users = db_project.add_migration("users", "CREATE TABLE IF NOT EXISTS users (id int);\n")
    add_repeatable(db_project, "counter", "CREATE TABLE IF NOT EXISTS c (n int);\n"
                                          "INSERT INTO c VALUES (1);\n")
    add_repeatable(db_project, "other", "SELECT 1;\n")
    config = config_of(db_project)

    skipped = apply(config, repeatables=RepeatableRequest(skip=True))
    named = apply(config, users, retry=True)

    assert skipped.repeatables is None and named.repeatables is None
    assert history(db_project.database, NAMESPACE) == []
    apply(config)
    forced = apply(config, repeatables=RepeatableRequest(named=("counter",)))
    assert forced.repeatables is not None
    assert ([o.name for o in forced.repeatables.applied], forced.repeatables.unchanged) == (
        ["counter"], ())
    assert db_project.database.query("SELECT count(*) FROM c") == "2"


def test_apply_repeatables_waits_for_the_migration_lock(db_project: DbProject) -> None:
    add_repeatable(db_project, "views", "CREATE OR REPLACE VIEW v AS SELECT 1 AS n;\n")
    holder = subprocess.Popen([*db_project.database.psql_argv(), "-X", "-q"],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        assert holder.stdin is not None
        holder.stdin.write(f"SELECT pg_advisory_lock({lock_key()});\n")
        holder.stdin.flush()
        db_project.database.wait_until(
            "SELECT count(*) = 1 FROM pg_locks WHERE locktype = 'advisory' AND granted")

        with pytest.raises(LockUnavailable):
            apply_repeatables(config_of(db_project), lock_timeout=0.3)

        assert db_project.database.query(
            "SELECT count(*) FROM pg_class WHERE relname = 'v'") == "0"
    finally:
        holder.communicate("\\q\n", timeout=30)
    result = apply_repeatables(config_of(db_project))
    assert [o.name for o in result.applied] == ["views"]
    assert apply_repeatables(config_of(db_project)).unchanged == ("views",)


# -- the Rust tool's view, status ------------------------------------------------------------


def test_repeatables_leave_the_default_namespace_as_the_rust_tool_reads_it(
    db_project: DbProject,
) -> None:
    db_project.add_migration("users", "CREATE TABLE users (id int);\n")
    add_repeatable(db_project, "users", "CREATE OR REPLACE VIEW u AS SELECT * FROM users;\n")
    config = config_of(db_project)
    apply(config, repeatables=RepeatableRequest(skip=True))
    before = (db_project.run("migration", "status", "--format", "json").stdout,
              history(db_project.database))

    apply(config)

    report = json.loads(db_project.run("migration", "status", "--format", "json").stdout)
    old = json.loads(before[0])
    assert report["migrations"] == old["migrations"]
    assert history(db_project.database) == before[1]
    assert [r["name"] for r in report["repeatables"]] == ["users"]
    assert db_project.database.query(
        "SELECT namespace, count(*) FROM _spawn.migration GROUP BY 1 ORDER BY 1") == (
        "default|1\nrepeatable|1\nspawn|3")


def test_a_removed_repeatable_is_database_only_and_nothing_is_dropped(
    db_project: DbProject,
) -> None:
    folder = add_repeatable(db_project, "views", "CREATE OR REPLACE VIEW v AS SELECT 1 AS n;\n")
    config = config_of(db_project)
    apply(config)
    (folder / "up.sql").unlink()

    report = status(config)
    result = apply(config)

    assert [(r.name, r.on_filesystem, r.state) for r in report.repeatables] == [
        ("views", False, "database only")]
    assert result.repeatables is None  # nothing on disk to consider
    assert db_project.database.query("SELECT n FROM v") == "1"


# -- the checksum cache ----------------------------------------------------------------------


def test_a_cached_checksum_never_trusts_a_component_now_outside_components(
    db_project: DbProject, tmp_path: Path,
) -> None:
    component = db_project.add_component("v.sql", "SELECT 1;")
    add_repeatable(db_project, "v", "{% include 'v.sql' %}\n")
    config = config_of(db_project)
    first = Checksums(config, {})
    checksum = first.of("v")
    first.save()
    saved = json.loads((db_project.root / ".spawn" / "repeatable-cache.json").read_bytes())
    rendered = render_repeatable(config, "v", variables={})
    assert [[*entry[:2], entry[2]] for entry in saved["entries"].values()] == [
        [rendered.checksum.hex(), 9, {"v.sql": rendered.checksum.hex()}]]
    rendered.close()
    assert Checksums(config, {}).of("v") == checksum
    outside = tmp_path / "outside.sql"
    outside.write_text("SELECT 1;", encoding="utf-8")
    component.unlink()
    os.symlink(outside, component)

    with pytest.raises(TemplateError, match=r"is a symbolic link to .*, outside components/"):
        Checksums(config, {}).of("v")


def test_a_random_render_is_never_cached(db_project: DbProject) -> None:
    add_repeatable(db_project, "r", "SELECT '{{ gen_uuid_v4() }}';\n")
    config = config_of(db_project)
    first = Checksums(config, {})
    one = first.of("r")
    first.save()

    assert Checksums(config, {}).of("r") != one


EDITS = st.lists(st.tuples(st.sampled_from(["a.sql", "b.sql", "up", "vars", "env"]),
                           st.sampled_from(["1", "2", "{{ variables.x | default(0) }}",
                                            "{% include 'b.sql' %}", "{{ env }}"])),
                 min_size=1, max_size=6)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(EDITS)
def test_the_cache_always_agrees_with_a_fresh_render(db_project: DbProject,
                                                     edits: list[tuple[str, str]]) -> None:
    """Whatever sequence of edits to components, up.sql, variables and environment, the
    cached checksum is the one a render from scratch gives."""
    import shutil

    shutil.rmtree(db_project.spawn_dir / "repeatable", ignore_errors=True)
    (db_project.root / ".spawn" / "repeatable-cache.json").unlink(missing_ok=True)
    db_project.add_component("a.sql", "A")
    db_project.add_component("b.sql", "B")
    add_repeatable(db_project, "r", "{% include 'a.sql' %}\n")
    variables: dict[str, str] = {}
    environment = "dev"
    for what, text in [("up", "{% include 'a.sql' %}"), *edits]:
        if what == "up":
            add_repeatable(db_project, "r", "{% include 'a.sql' %}|" + text + "\n")
        elif what == "vars":
            variables = {"x": text}
        elif what == "env":
            environment = "staging" if environment == "dev" else "dev"
        elif text != "{% include 'b.sql' %}" or what == "a.sql":
            db_project.add_component(what, text)
        config = config_of(db_project, environment)
        cached = Checksums(config, variables)
        got = cached.of("r")
        cached.save()
        fresh = render_repeatable(config, "r", variables=variables)
        assert got == (fresh.checksum.hex(), fresh.size)
        fresh.close()


def test_a_template_error_names_the_repeatable_file(db_project: DbProject) -> None:
    add_repeatable(db_project, "bad", "SELECT {{ 1 +\n")

    with pytest.raises(TemplateError) as raised:
        Checksums(config_of(db_project), {}).of("bad")

    assert raised.value.message.startswith("spawn/repeatable/bad/up.sql:1: template syntax error")
