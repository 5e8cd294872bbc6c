"""Several migration folders (``[[sources]]``, issue 18) against the real PostgreSQL,
through the real ``spawn`` entry point: a path source beside the project."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spawn_db.config import Overrides, load_config
from spawn_db.migrate.plan import PlanRequest, plan
from tests.conftest import DbProject
from tests.migrate.history import history

SOURCES = '\n[[sources]]\nname = "audit"\npath = "../shared/audit"\n'
PROGRESS = re.compile(r"^\[(\d+)/(\d+)\] \S+ (\S+) \(")


def write(folder: Path, relpath: str, text: str) -> Path:
    path = folder / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def migration(spawn_dir: Path, name: str, up: str, *, down: str | None = None,
              toml: str | None = None) -> str:
    write(spawn_dir, f"migrations/{name}/up.sql", up)
    if down is not None:
        write(spawn_dir, f"migrations/{name}/down.sql", down)
    if toml is not None:
        write(spawn_dir, f"migrations/{name}/migration.toml", toml)
    return name


def audit_dir(project: DbProject) -> Path:
    return project.root.parent / "shared" / "audit"


@pytest.fixture
def sourced(db_project: DbProject) -> DbProject:
    """db_project with an ``audit`` path source at ../shared/audit (empty folders)."""
    for folder in ("components", "migrations", "pinned"):
        (audit_dir(db_project) / folder).mkdir(parents=True)
    with db_project.config_path.open("a", encoding="utf-8") as file:
        file.write(SOURCES)
    return db_project


def applied_order(stdout: str) -> list[str]:
    return [m.group(3) for line in stdout.splitlines() if (m := PROGRESS.match(line))]


def tables(project: DbProject) -> list[str]:
    text = project.database.query(
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
        "WHERE schemaname = 'public'")
    return text.split(",") if text else []


def four_migrations(project: DbProject) -> None:
    """Two in the main folder, two in the audit source; one timestamp shared by both."""
    audit = audit_dir(project)
    migration(project.spawn_dir, "20250101000000-create-customers",
              "CREATE TABLE customers (id int);\n", down="DROP TABLE customers;\n")
    migration(project.spawn_dir, "20250103000000-create-orders",
              "CREATE TABLE orders (id int);\n", down="DROP TABLE orders;\n")
    migration(audit, "20250101000000-create-log", "CREATE TABLE audit_log (id int);\n",
              down="DROP TABLE audit_log;\n")
    migration(audit, "20250102000000-create-log-archive",
              "CREATE TABLE audit_log_archive (id int);\n",
              down="DROP TABLE audit_log_archive;\n")


# -- order, namespaces ---------------------------------------------------------------------


def test_migrations_of_all_sources_interleave_by_timestamp_main_folder_first_on_a_tie(
        sourced: DbProject) -> None:
    four_migrations(sourced)

    dry = sourced.run("migration", "apply", "--dry-run", "--no-pin")
    done = sourced.run("migration", "apply", "--yes", "--no-pin")

    assert dry.exit_code == 0, dry.stderr
    assert [line.split("  ")[0] for line in dry.stdout.splitlines()[:4]] == [
        "20250101000000-create-customers", "audit:20250101000000-create-log",
        "audit:20250102000000-create-log-archive", "20250103000000-create-orders"]
    assert done.exit_code == 0, done.stderr
    assert applied_order(done.stderr) == [
        "20250101000000-create-customers", "audit:20250101000000-create-log",
        "audit:20250102000000-create-log-archive", "20250103000000-create-orders"]
    assert [m.group(1) for line in done.stderr.splitlines()
            if (m := PROGRESS.match(line))] == ["1", "2", "3", "4"]
    assert "Applied 4 migrations in" in done.stderr
    assert tables(sourced) == ["audit_log", "audit_log_archive", "customers", "orders"]
    assert history(sourced.database) == [
        ("20250101000000-create-customers", "APPLY", "ATTEMPTED"),
        ("20250101000000-create-customers", "APPLY", "SUCCESS"),
        ("20250103000000-create-orders", "APPLY", "ATTEMPTED"),
        ("20250103000000-create-orders", "APPLY", "SUCCESS")]
    assert history(sourced.database, "audit") == [
        ("20250101000000-create-log", "APPLY", "ATTEMPTED"),
        ("20250101000000-create-log", "APPLY", "SUCCESS"),
        ("20250102000000-create-log-archive", "APPLY", "ATTEMPTED"),
        ("20250102000000-create-log-archive", "APPLY", "SUCCESS")]
    again = sourced.run("migration", "apply", "--yes", "--no-pin")
    assert (again.exit_code, applied_order(again.stderr)) == (0, [])


def test_the_default_namespace_and_the_rust_visible_status_are_unchanged_by_sources(
        sourced: DbProject) -> None:
    """The Rust tool reads namespace ``default`` only: it must find exactly the main
    folder's migrations, recorded as a project without sources records them."""
    four_migrations(sourced)
    assert sourced.run("migration", "apply", "--yes", "--no-pin").exit_code == 0
    with_sources = json.loads(sourced.run("migration", "status", "--format", "json").stdout)
    text = sourced.run("migration", "status").stdout

    sourced.config_path.write_text(
        sourced.config_path.read_text(encoding="utf-8").replace(SOURCES, ""), encoding="utf-8")
    without = json.loads(sourced.run("migration", "status", "--format", "json").stdout)
    plain_text = sourced.run("migration", "status").stdout

    assert sourced.database.query(
        "SELECT string_agg(name, ',' ORDER BY name) FROM _spawn.migration "
        "WHERE namespace = 'default'") == \
        "20250101000000-create-customers,20250103000000-create-orders"
    assert sourced.database.query(
        "SELECT string_agg(DISTINCT namespace, ',' ORDER BY namespace) FROM _spawn.migration"
    ) == "audit,default,spawn"
    assert with_sources["migrations"] == without["migrations"]
    assert without["sources"] == []
    assert text.startswith(plain_text.rstrip("\n") + "\n\nSource audit (../shared/audit):\n")
    assert "audit" not in plain_text
    nothing = sourced.run("migration", "apply", "--dry-run", "--no-pin")
    assert nothing.stderr == ("Dry run: would apply 0 migrations (2 already applied); nothing "
                              "was written.\n")


def test_requires_orders_across_sources_and_an_unqualified_name_means_the_same_source(
        sourced: DbProject) -> None:
    audit = audit_dir(sourced)
    migration(sourced.spawn_dir, "20250101000000-use-log", "SELECT count(*) FROM audit_log;\n",
              toml='requires = ["audit:20250105000000-create-log"]\n')
    migration(sourced.spawn_dir, "20250105000000-create-log", "CREATE TABLE main_log ();\n")
    migration(audit, "20250105000000-create-log", "CREATE TABLE audit_log ();\n")
    migration(audit, "20250106000000-log-view",
              "CREATE VIEW audit_view AS SELECT * FROM audit_log;\n",
              toml='requires = ["20250105000000-create-log"]\n')

    done = sourced.run("migration", "apply", "--yes", "--no-pin")
    status = json.loads(sourced.run("migration", "status", "--format", "json").stdout)

    assert done.exit_code == 0, done.stderr
    assert applied_order(done.stderr) == [
        "20250105000000-create-log", "audit:20250105000000-create-log",
        "20250101000000-use-log", "audit:20250106000000-log-view"]
    view = status["sources"][0]["migrations"][1]
    assert (view["name"], view["requires"]) == (
        "20250106000000-log-view", ["audit:20250105000000-create-log"])
    assert status["migrations"][0]["requires"] == ["audit:20250105000000-create-log"]
    assert [m["name"] for m in status["migrations"]] == [
        "20250101000000-use-log", "20250105000000-create-log"]


def test_a_named_migration_with_requires_from_another_source(sourced: DbProject) -> None:
    migration(sourced.spawn_dir, "20250101000000-use-log", "SELECT count(*) FROM audit_log;\n",
              toml='requires = ["audit:20250105000000-create-log"]\n')
    migration(audit_dir(sourced), "20250105000000-create-log", "CREATE TABLE audit_log ();\n")

    refused = sourced.run("migration", "apply", "use-log", "--yes", "--no-pin")
    done = sourced.run("migration", "apply", "use-log", "--with-requires", "--yes", "--no-pin")

    assert refused.exit_code == 2
    assert "migration 20250101000000-use-log requires audit:20250105000000-create-log, which " \
           "is not applied" in refused.stderr
    assert done.exit_code == 0, done.stderr
    assert applied_order(done.stderr) == ["audit:20250105000000-create-log",
                                          "20250101000000-use-log"]


@pytest.mark.parametrize(("required", "message"), [
    ("audit:20250101000000-missing",
     "`requires` names 'audit:20250101000000-missing', which is not a migration of source "
     "audit; use the full folder name of an existing migration (<source>:<folder> for "
     "another source)"),
    ("billing:20250101000000-create-log",
     "`requires` names 'billing:20250101000000-create-log', but 'billing' is not a migration "
     "source (default, audit); fix the prefix or add the source to [[sources]] in spawn.toml"),
    ("20250101000000-create-log",
     "`requires` names '20250101000000-create-log', which is not a migration of the main "
     "folder;"),
])
def test_an_unknown_requires_is_refused_before_anything_runs(
        sourced: DbProject, required: str, message: str) -> None:
    migration(audit_dir(sourced), "20250101000000-create-log", "CREATE TABLE audit_log ();\n")
    migration(sourced.spawn_dir, "20250102000000-use-log", "SELECT 1;\n",
              toml=f'requires = ["{required}"]\n')

    done = sourced.run("migration", "apply", "--yes", "--no-pin")

    assert done.exit_code == 2
    assert str(sourced.spawn_dir / "migrations" / "20250102000000-use-log" /
               "migration.toml") in done.stderr
    assert message in done.stderr
    assert tables(sourced) == []
    assert sourced.database.query("SELECT count(*) FROM pg_namespace "
                                  "WHERE nspname = '_spawn'") == "0"


def test_a_cycle_across_sources_is_refused(sourced: DbProject) -> None:
    migration(sourced.spawn_dir, "20250101000000-a", "SELECT 1;\n",
              toml='requires = ["audit:20250101000000-b"]\n')
    migration(audit_dir(sourced), "20250101000000-b", "SELECT 1;\n",
              toml='requires = ["default:20250101000000-a"]\n')

    done = sourced.run("migration", "apply", "--yes", "--no-pin")

    assert done.exit_code == 2
    assert "migrations require each other in a cycle: 20250101000000-a -> " \
           "audit:20250101000000-b -> 20250101000000-a" in done.stderr


def test_duplicate_names_within_a_source_are_an_error_naming_both_paths(
        sourced: DbProject) -> None:
    audit = audit_dir(sourced)
    migration(audit, "20250101000000-create-log", "SELECT 1;\n")
    migration(audit, "20250301000000-create-log", "SELECT 2;\n")
    migration(sourced.spawn_dir, "20250101000000-create-log", "SELECT 3;\n")

    for args in (["migration", "apply", "--yes", "--no-pin"], ["migration", "status"]):
        done = sourced.run(*args)
        assert done.exit_code == 2, args
        assert done.stderr.strip() == (
            f"error: source audit has two migrations named 'create-log': "
            f"{audit / 'migrations' / '20250101000000-create-log'} and "
            f"{audit / 'migrations' / '20250301000000-create-log'}; rename one of them (the "
            "same name in two sources is fine)")


def test_the_same_name_in_two_sources_is_fine(sourced: DbProject) -> None:
    migration(sourced.spawn_dir, "20250101000000-create-log", "CREATE TABLE main_log ();\n")
    migration(audit_dir(sourced), "20250101000000-create-log", "CREATE TABLE audit_log ();\n")

    done = sourced.run("migration", "apply", "--yes", "--no-pin")
    main_only = sourced.run("migration", "apply", "create-log", "--yes", "--no-pin")

    assert done.exit_code == 0, done.stderr
    assert tables(sourced) == ["audit_log", "main_log"]
    assert main_only.exit_code == 0
    assert "already applied" in main_only.stdout + main_only.stderr


# -- components and pins ---------------------------------------------------------------------


def test_components_and_pins_stay_per_source(sourced: DbProject) -> None:
    audit = audit_dir(sourced)
    write(sourced.spawn_dir, "components/stamp.sql",
          "CREATE FUNCTION stamp() RETURNS text LANGUAGE sql AS $$ SELECT 'main' $$;\n")
    component = write(audit, "components/stamp.sql",
                      "CREATE FUNCTION audit_stamp() RETURNS text LANGUAGE sql "
                      "AS $$ SELECT 'audit v1' $$;\n")
    migration(audit, "20250101000000-create-stamp", '{% include "stamp.sql" %}\n')
    main_pinned = sorted(p.name for p in (sourced.spawn_dir / "pinned").iterdir())

    pinned = sourced.run("migration", "pin", "audit:create-stamp")
    component.write_text(component.read_text().replace("audit v1", "audit v2"))
    build = sourced.run("migration", "build", "audit:create-stamp", "--pinned")
    tree = sourced.run("migration", "build", "audit:20250101000000-create-stamp")
    done = sourced.run("migration", "apply", "--yes")

    assert pinned.exit_code == 0, pinned.stderr
    root = pinned.stdout.strip()
    assert (audit / "migrations" / "20250101000000-create-stamp" / "lock.toml").read_text() \
        == f'pin = "{root}"\n'
    assert (audit / "pinned" / root[:2] / root[2:]).is_file()
    assert sorted(p.name for p in (sourced.spawn_dir / "pinned").iterdir()) == main_pinned
    assert build.stdout == ("CREATE FUNCTION audit_stamp() RETURNS text LANGUAGE sql "
                            "AS $$ SELECT 'audit v1' $$;\n")
    assert "'audit v2'" in tree.stdout
    assert "is pinned: `spawn migration apply` renders it from the pin" in tree.stderr
    assert done.exit_code == 0, done.stderr
    assert sourced.database.query("SELECT audit_stamp()") == "audit v1"
    assert sourced.database.query(
        "SELECT h.pin_hash FROM _spawn.migration_history h JOIN _spawn.migration m ON "
        "m.migration_id = h.migration_id_migration WHERE m.namespace = 'audit' AND "
        "h.status_id_status = 'SUCCESS'") == root


def test_an_unpinned_source_migration_is_named_when_pins_are_required(
        sourced: DbProject) -> None:
    migration(audit_dir(sourced), "20250101000000-create-log", "CREATE TABLE audit_log ();\n")

    done = sourced.run("migration", "apply", "--yes")

    assert done.exit_code == 2
    assert ("migration audit:20250101000000-create-log is not pinned (no lock.toml); run "
            "`spawn migration pin audit:20250101000000-create-log` first") in done.stderr


def test_an_applied_source_migration_keeps_its_pin(sourced: DbProject) -> None:
    migration(audit_dir(sourced), "20250101000000-create-log", "CREATE TABLE audit_log ();\n")
    assert sourced.run("migration", "pin", "audit:create-log").exit_code == 0
    assert sourced.run("migration", "apply", "--yes").exit_code == 0

    again = sourced.run("migration", "pin", "audit:create-log")

    assert again.exit_code == 2
    assert "migration 20250101000000-create-log is applied" in again.stderr


# -- status ----------------------------------------------------------------------------------


def test_status_groups_migrations_by_source(sourced: DbProject) -> None:
    four_migrations(sourced)
    migration(audit_dir(sourced), "20250104000000-pending", "SELECT 1;\n",
              toml='description = "not yet"\n')
    assert sourced.run("migration", "apply", "--no-pin", "--yes", "create-customers").exit_code \
        == 0
    assert sourced.run("migration", "apply", "--no-pin", "--yes", "audit:create-log").exit_code \
        == 0

    text = sourced.run("migration", "status")
    as_json = json.loads(sourced.run("migration", "status", "--format", "json").stdout)

    assert text.exit_code == 0, text.stderr
    assert text.stdout == (
        "Migration                        Filesystem  Pinned  Database  Status\n"
        "-------------------------------  ----------  ------  --------  ---------\n"
        "20250101000000-create-customers  \u2713           \u2717       \u2713         "
        "\u2713 Applied\n"
        "20250103000000-create-orders     \u2713           \u2717       \u2717         "
        "\u25cb Pending\n"
        "\n"
        f"1 applied, 1 pending (database {sourced.database.name}, schema _spawn)\n"
        "\n"
        "Source audit (../shared/audit):\n"
        "Migration                          Filesystem  Pinned  Database  Status     "
        "Description\n"
        "---------------------------------  ----------  ------  --------  ---------  "
        "-----------\n"
        "20250101000000-create-log          \u2713           \u2717       \u2713         "
        "\u2713 Applied\n"
        "20250102000000-create-log-archive  \u2713           \u2717       \u2717         "
        "\u25cb Pending\n"
        "20250104000000-pending             \u2713           \u2717       \u2717         "
        "\u25cb Pending  not yet\n"
        "\n"
        "1 applied, 2 pending\n")
    assert [m["name"] for m in as_json["migrations"]] == [
        "20250101000000-create-customers", "20250103000000-create-orders"]
    assert [(s["name"], s["folder"]) for s in as_json["sources"]] == [
        ("audit", "../shared/audit")]
    assert [(m["name"], m["status"], m["description"])
            for m in as_json["sources"][0]["migrations"]] == [
        ("20250101000000-create-log", "applied", ""),
        ("20250102000000-create-log-archive", "pending", ""),
        ("20250104000000-pending", "pending", "not yet")]


def test_status_exits_1_for_a_modified_source_migration(sourced: DbProject) -> None:
    up = audit_dir(sourced) / "migrations" / migration(
        audit_dir(sourced), "20250101000000-create-log", "CREATE TABLE audit_log ();\n") / "up.sql"
    assert sourced.run("migration", "apply", "--no-pin", "--yes").exit_code == 0
    up.write_text("CREATE TABLE audit_log (id int);\n")

    done = sourced.run("migration", "status")

    assert done.exit_code == 1
    assert "\u270e Modified" in done.stdout.split("Source audit")[1]
    assert "20250101000000-create-log" in done.stderr


# -- failure, retry and revert ---------------------------------------------------------------


def test_a_failing_source_migration_is_recorded_in_its_namespace_and_retried_by_name(
        sourced: DbProject) -> None:
    four_migrations(sourced)
    up = write(audit_dir(sourced), "migrations/20250102000000-create-log-archive/up.sql",
               "CREATE TABLE audit_log_archive (id nosuchtype);\n")

    failed = sourced.run("migration", "apply", "--yes", "--no-pin")
    after_failure = history(sourced.database, "audit")
    up.write_text("CREATE TABLE audit_log_archive (id int);\n")
    blocked = sourced.run("migration", "apply", "--yes", "--no-pin")
    retried = sourced.run("migration", "apply", "audit:create-log-archive", "--retry", "--yes",
                          "--no-pin")
    rest = sourced.run("migration", "apply", "--yes", "--no-pin")

    assert failed.exit_code == 1
    assert "migration audit:20250102000000-create-log-archive failed (2 of 4 applied before " \
           "it)" in failed.stderr
    assert "`spawn migration apply audit:20250102000000-create-log-archive --retry`" \
        in failed.stderr
    assert after_failure[-1] == ("20250102000000-create-log-archive", "APPLY", "FAILURE")
    assert blocked.exit_code == 1
    assert "migration audit:20250102000000-create-log-archive failed in an earlier run" \
        in blocked.stderr
    assert retried.exit_code == 0, retried.stderr
    assert applied_order(rest.stderr) == ["20250103000000-create-orders"]
    assert tables(sourced) == ["audit_log", "audit_log_archive", "customers", "orders"]


def test_revert_of_a_source_migration_by_name_and_as_the_latest(sourced: DbProject) -> None:
    four_migrations(sourced)
    assert sourced.run("migration", "apply", "--yes", "--no-pin").exit_code == 0

    named = sourced.run("migration", "revert", "audit:create-log-archive", "--yes", "--no-pin")
    latest = sourced.run("migration", "revert", "--yes", "--no-pin")
    dry = sourced.run("migration", "revert", "--dry-run", "--steps", "2", "--no-pin")
    status = json.loads(sourced.run("migration", "status", "--format", "json").stdout)

    assert named.exit_code == 0, named.stderr
    assert applied_order(named.stderr) == ["audit:20250102000000-create-log-archive"]
    assert latest.exit_code == 0, latest.stderr
    assert applied_order(latest.stderr) == ["20250103000000-create-orders"]
    assert dry.exit_code == 0, dry.stderr
    assert [line.split(" ")[3] for line in dry.stdout.splitlines()
            if line.startswith("-- spawn migration ")] == [
        "audit:20250101000000-create-log", "20250101000000-create-customers"]
    assert tables(sourced) == ["audit_log", "customers"]
    assert history(sourced.database, "audit")[-2:] == [
        ("20250102000000-create-log-archive", "REVERT", "ATTEMPTED"),
        ("20250102000000-create-log-archive", "REVERT", "SUCCESS")]
    assert [(m["name"], m["status"]) for m in status["sources"][0]["migrations"]] == [
        ("20250101000000-create-log", "applied"),
        ("20250102000000-create-log-archive", "reverted")]
    assert [r[1] for r in history(sourced.database)].count("REVERT") == 2


def test_an_unknown_source_on_the_command_line_is_a_usage_error(sourced: DbProject) -> None:
    done = sourced.run("migration", "build", "billing:create-log")

    assert done.exit_code == 2
    assert done.stderr.strip() == (
        f"error: 'billing' is not a migration source of {sourced.config_path} (sources: "
        "audit); write <source>:<migration>, with a name from [[sources]]")


# -- spawn.toml ------------------------------------------------------------------------------


@pytest.mark.parametrize(("entry", "message"), [
    ('name = "audit"',
     "[[sources]] 'audit' needs exactly one of `path` (a spawn folder, relative to "
     "spawn.toml's folder) or `package`"),
    ('name = "audit"\npath = "../shared/audit"\npackage = "spawn_audit"',
     "[[sources]] 'audit' needs exactly one of `path`"),
    ('name = "audit"\npackage = "no_such_package"',
     "[[sources]] 'audit': no installed package declares 'no_such_package' in entry point "
     "group spawn.sources"),
    ('name = "audit"\npath = "../nowhere"',
     "is not a spawn folder (it has no migrations/ folder)"),
    ('name = "Audit Log"\npath = "../shared/audit"',
     "[[sources]] entry 1: `name` must be a lower-case identifier (letters, digits and `_`, "
     "at most 63), not 'Audit Log'"),
    ('name = "a;b"\npath = "../shared/audit"', "`name` must be a lower-case identifier"),
    ('path = "../shared/audit"', "`name` must be a lower-case identifier"),
    ('name = "default"\npath = "../shared/audit"',
     "[[sources]] entry 1: the name 'default' is reserved for spawn's own tracking namespaces "
     "(default, repeatable, spawn, tenant:...); choose another name"),
    ('name = "repeatable"\npath = "../shared/audit"', "the name 'repeatable' is reserved"),
    ('name = "tenant:acme"\npath = "../shared/audit"', "the name 'tenant:acme' is reserved"),
    ('name = "audit"\npath = "../shared/audit"\n\n[[sources]]\nname = "audit"\n'
     'path = "../shared/audit"',
     "[[sources]] entry 2: the name 'audit' is used by an earlier entry; give each source its "
     "own name"),
])
def test_a_bad_sources_entry_is_a_configuration_error_naming_it(
        db_project: DbProject, entry: str, message: str) -> None:
    (audit_dir(db_project) / "migrations").mkdir(parents=True)
    with db_project.config_path.open("a", encoding="utf-8") as file:
        file.write(f"\n[[sources]]\n{entry}\n")

    done = db_project.run("migration", "status")

    assert done.exit_code == 2
    assert message in done.stderr
    assert str(db_project.config_path) in done.stderr
    assert "Traceback" not in done.stderr


# -- the order, over many names ----------------------------------------------------------------

stamps = st.integers(min_value=0, max_value=5).map(lambda d: f"2025010{d}000000")
names = st.lists(st.tuples(stamps, st.sampled_from(["a", "b", "log"])), max_size=6,
                 unique=True)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(main=names, audit=names, billing=names)
def test_without_requires_the_plan_is_by_timestamp_then_main_then_source_name(
        tmp_path: Path, main: list[tuple[str, str]], audit: list[tuple[str, str]],
        billing: list[tuple[str, str]]) -> None:
    from spawn_db.migrate.sources import Sources

    root = tmp_path / "order"
    shutil.rmtree(root, ignore_errors=True)
    folders = {"default": root / "spawn", "audit": root / "audit", "billing": root / "billing"}
    for folder in folders.values():
        (folder / "migrations").mkdir(parents=True)
    write(root, "spawn.toml", 'spawn_folder = "spawn"\n' + "".join(
        f'[[sources]]\nname = "{n}"\npath = "{n}"\n' for n in ("billing", "audit")))
    chosen = {"default": main, "audit": audit, "billing": billing}
    for source, entries in chosen.items():
        for name, stamp in dict((n, s) for s, n in entries).items():
            migration(folders[source], f"{stamp}-{name}", "SELECT 1;\n")
    sources = Sources(load_config(Overrides(config_file=str(root / "spawn.toml"))))

    planned = plan(sources.names, sources.settings(sources.names), {},
                   PlanRequest(order_key=sources.key)).to_run

    rank = {"default": 0, "audit": 1, "billing": 2}
    expected = sorted(((source, stamp, f"{stamp}-{name}") for source, entries in chosen.items()
                       for name, stamp in dict((n, s) for s, n in entries).items()),
                      key=lambda p: (p[1], rank[p[0]], p[2]))
    assert list(planned) == [n if s == "default" else f"{s}:{n}" for s, _, n in expected]


def test_a_blank_source_migration_is_warned_about_before_it_is_applied(
        sourced: DbProject) -> None:
    migration(audit_dir(sourced), "20250101000000-not-written", "\n")

    done = sourced.run("migration", "apply", "--yes", "--no-pin")

    assert done.exit_code == 0, done.stderr
    assert "warning: migration 20250101000000-not-written: up.sql renders to nothing but " \
           "whitespace" in done.stderr
