"""Tenants (issue 18): shared parts in ``default``, tenant parts once per tenant schema in
``tenant:<name>``, through the real ``spawn`` on a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import DbProject, TestDatabase
from tests.migrate.history import history

TENANTS = ["acme", "globex", "initech"]


def set_tenants(project: DbProject, body: str) -> None:
    """Append a ``[tenants]`` table to the project's spawn.toml."""
    text = project.config_path.read_text(encoding="utf-8")
    project.config_path.write_text(f"{text}\n[tenants]\n{body}\n", encoding="utf-8")


def tenant_list(names: list[str]) -> str:
    return "list = [" + ", ".join(f'"{n}"' for n in names) + "]"


def add(project: DbProject, name: str, *, up: str | None = None, tenant: str | None = None,
        down: str | None = None, tenant_down: str | None = None, pin: bool = True) -> str:
    """A migration with any of its four scripts; pinned like any other."""
    from datetime import datetime, timedelta

    stamp = datetime(2024, 1, 1) + timedelta(seconds=next(project._stamps))
    folder = f"{stamp:%Y%m%d%H%M%S}-{name}"
    path = project.spawn_dir / "migrations" / folder
    path.mkdir(parents=True)
    for script, text in (("up.sql", up), ("tenant.sql", tenant), ("down.sql", down),
                         ("tenant_down.sql", tenant_down)):
        if text is not None:
            (path / script).write_text(text, encoding="utf-8")
    if pin:
        result = project.run("migration", "pin", folder)
        assert result.exit_code == 0, result.stderr
    return folder


def tables(database: TestDatabase, schema: str) -> list[str]:
    return database.query(
        f"SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
        f"WHERE schemaname = '{schema}'").split(",")


def schemas(database: TestDatabase) -> list[str]:
    text = database.query("SELECT string_agg(nspname, ',' ORDER BY nspname) FROM pg_namespace "
                          "WHERE nspname LIKE 'tenant\\_%'")
    return text.split(",") if text else []


def default_rows(database: TestDatabase) -> str:
    """Every row the Rust tool reads (namespace ``default``), with checksum and pin."""
    return database.query(
        "SELECT string_agg(concat_ws('|', m.name, m.namespace, h.activity_id_activity, "
        "h.status_id_status, encode(h.checksum, 'hex'), h.pin_hash), E'\\n' "
        "ORDER BY h.migration_history_id) FROM _spawn.migration_history h "
        "JOIN _spawn.migration m ON m.migration_id = h.migration_id_migration "
        "WHERE m.namespace = 'default'")


def two_migrations(project: DbProject) -> tuple[str, str]:
    first = add(project, "plans", up="CREATE TABLE public.plans (id int PRIMARY KEY);\n",
                tenant="CREATE TABLE users (id int, plan int REFERENCES public.plans);\n"
                       "INSERT INTO users VALUES ({{ tenant | length }}, NULL);\n",
                down="DROP TABLE public.plans;\n", tenant_down="DROP TABLE users;\n")
    second = add(project, "orders",
                 tenant="CREATE TABLE orders (id int, who text DEFAULT {{ tenant_schema }});\n",
                 tenant_down="DROP TABLE orders;\n")
    return first, second


def test_shared_parts_once_and_tenant_parts_in_every_tenant_schema(
        db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(TENANTS))
    first, second = two_migrations(db_project)

    result = db_project.run("migration", "apply", "--yes", "--jobs", "2")

    assert result.exit_code == 0, result.stderr
    assert "3 tenants: 3 ok, 0 failed, 0 skipped" in result.stdout
    db = db_project.database
    # The shared part went to default exactly as the Rust tool records it; the tenant-only
    # migration is not in default at all.
    assert history(db) == [(first, "APPLY", "ATTEMPTED"), (first, "APPLY", "SUCCESS")]
    assert schemas(db) == ["tenant_acme", "tenant_globex", "tenant_initech"]
    for name in TENANTS:
        assert tables(db, f"tenant_{name}") == ["orders", "users"]
        assert history(db, f"tenant:{name}") == [
            (first, "APPLY", "ATTEMPTED"), (first, "APPLY", "SUCCESS"),
            (second, "APPLY", "ATTEMPTED"), (second, "APPLY", "SUCCESS")]
        assert db.query(f"SELECT id FROM tenant_{name}.users") == str(len(name))
        assert db.query(f"SELECT column_default FROM information_schema.columns WHERE "
                        f"table_schema = 'tenant_{name}' AND table_name = 'orders' "
                        f"AND column_name = 'who'") == f"'tenant_{name}'::text"
    assert tables(db, "public") == ["plans"]


def test_the_default_namespace_is_what_it_would_be_without_tenants(
        db_project: DbProject, database: TestDatabase) -> None:
    """The Rust tool reads ``default``: its rows (names, activities, statuses, checksums,
    pins) are the same whether the project has tenants or not."""
    first, _ = two_migrations(db_project)
    plain = db_project.run("migration", "apply", "--yes")
    assert plain.exit_code == 0, plain.stderr
    without = default_rows(database)
    assert database.query("SELECT count(*) FROM _spawn.migration WHERE namespace LIKE "
                          "'tenant:%'") == "0"
    database.query("DROP SCHEMA _spawn CASCADE; DROP TABLE public.plans")

    set_tenants(db_project, tenant_list(TENANTS))
    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert default_rows(database) == without
    assert database.query("SELECT count(DISTINCT namespace) FROM _spawn.migration WHERE "
                          "namespace LIKE 'tenant:%'") == "3"
    assert first in without


def test_tenants_from_a_query_and_from_a_command(db_project: DbProject,
                                                 tmp_path: Path) -> None:
    db = db_project.database
    db.query("CREATE TABLE public.customers (slug text); "
             "INSERT INTO customers VALUES ('beta'), ('alpha')")
    set_tenants(db_project, 'query = "SELECT slug FROM public.customers ORDER BY slug"\n'
                            'schema = "t_{{ tenant }}"')
    add(db_project, "notes", tenant="CREATE TABLE notes (body text);\n")

    result = db_project.run("tenant", "list", "--format", "json")

    assert result.exit_code == 0, result.stderr
    listed = json.loads(result.stdout)["tenants"]
    assert [(t["name"], t["schema"], t["state"], t["schema_exists"]) for t in listed] == [
        ("alpha", "t_alpha", "pending", False), ("beta", "t_beta", "pending", False)]

    applied = db_project.run("migration", "apply", "--yes")
    assert applied.exit_code == 0, applied.stderr
    assert tables(db, "t_alpha") == ["notes"] and tables(db, "t_beta") == ["notes"]

    script = tmp_path / "list-tenants"
    script.write_text("#!/bin/sh\necho gamma\necho\necho alpha\n", encoding="utf-8")
    script.chmod(0o755)
    text = db_project.config_path.read_text(encoding="utf-8")
    db_project.config_path.write_text(
        text.replace('query = "SELECT slug FROM public.customers ORDER BY slug"',
                     f'command = ["{script}"]'), encoding="utf-8")
    listed_text = db_project.run("tenant", "list")
    assert listed_text.exit_code == 0, listed_text.stderr
    assert listed_text.stdout.splitlines() == [
        "gamma  t_gamma (no schema)  1 pending",
        "alpha  t_alpha              up to date",
    ]
    assert "2 tenants: 1 up to date, 1 pending, 0 failed." in listed_text.stderr


def test_a_bad_tenant_name_is_refused_naming_it_and_its_source(db_project: DbProject,
                                                                tmp_path: Path) -> None:
    set_tenants(db_project, tenant_list(["acme", "Evil; DROP"]))
    add(db_project, "notes", tenant="CREATE TABLE notes (body text);\n")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: tenant name 'Evil; DROP' from [tenants] list in {db_project.config_path} "
        "is refused: a tenant name uses lower-case letters, digits and `_`, starting with a "
        "letter or digit; rename it there (e.g. `acme_corp`)")
    assert schemas(db_project.database) == []

    db_project.database.query("CREATE TABLE public.customers (slug text); "
                              "INSERT INTO customers VALUES ('ok'), ('x-y')")
    text = db_project.config_path.read_text(encoding="utf-8")
    db_project.config_path.write_text(text.replace(
        'list = ["acme", "Evil; DROP"]', 'query = "SELECT slug FROM public.customers"'),
        encoding="utf-8")
    listed = db_project.run("tenant", "list")
    assert listed.exit_code == 2
    assert "tenant name 'x-y' from [tenants] query in" in listed.stderr

    create = db_project.run("tenant", "create", "../etc")
    assert create.exit_code == 2
    assert "tenant name '../etc' from the command line is refused" in create.stderr


def test_tenants_config_needs_exactly_one_source(db_project: DbProject) -> None:
    set_tenants(db_project, 'list = ["a"]\nquery = "SELECT 1"')

    result = db_project.run("tenant", "list")

    assert result.exit_code == 2
    assert "[tenants] needs exactly one of `list`" in result.stderr
    assert "(found list, query)" in result.stderr


def test_a_new_tenant_gets_only_the_tenant_parts(db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(["acme", "globex"]))
    first, second = two_migrations(db_project)
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    db = db_project.database
    shared_before = history(db)
    db.query("INSERT INTO public.plans VALUES (1)")

    result = db_project.run("tenant", "create", "umbrella")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ("Tenant umbrella: schema tenant_umbrella ready, 2 tenant parts "
                             "applied.\n")
    assert "tenant umbrella is not in the tenant source of spawn.toml" in result.stderr
    assert tables(db, "tenant_umbrella") == ["orders", "users"]
    assert history(db, "tenant:umbrella") == [
        (first, "APPLY", "ATTEMPTED"), (first, "APPLY", "SUCCESS"),
        (second, "APPLY", "ATTEMPTED"), (second, "APPLY", "SUCCESS")]
    assert history(db) == shared_before  # the shared part did not run again
    assert db.query("SELECT count(*) FROM public.plans") == "1"


def test_a_failing_tenant_stops_the_run_without_continue_on_error(
        db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(["a1", "b2", "c3", "d4"]))
    folder = add(db_project, "t", tenant="{% if tenant == 'b2' %}SELECT 1/0;{% endif %}\n"
                                         "CREATE TABLE t (id int);\n")

    result = db_project.run("migration", "apply", "--yes", "--jobs", "1")

    assert result.exit_code == 1
    db = db_project.database
    assert history(db, "tenant:a1") == [(folder, "APPLY", "ATTEMPTED"),
                                        (folder, "APPLY", "SUCCESS")]
    assert history(db, "tenant:b2") == [(folder, "APPLY", "ATTEMPTED"),
                                        (folder, "APPLY", "FAILURE")]
    assert history(db, "tenant:c3") == [] and history(db, "tenant:d4") == []
    assert "4 tenants: 1 ok, 1 failed, 2 skipped" in result.stdout
    assert f"\u2717 tenant b2: migration {folder} failed (0 of 1 applied before it); " \
        "recorded as FAILURE in namespace tenant:b2. psql said:\nERROR:  division by zero" \
        in result.stdout
    assert result.stderr.strip().splitlines()[-1] == (
        "error: 1 of 4 tenants failed and 2 were skipped; fix the failures listed above, then "
        "run `spawn migration apply --retry` with --tenants naming them")
    # b2's schema was created before its part failed (and stays, empty); c3 and d4 never
    # started.
    assert schemas(db) == ["tenant_a1", "tenant_b2"]
    assert tables(db, "tenant_a1") == ["t"] and tables(db, "tenant_b2") == [""]


def test_continue_on_error_lets_the_others_finish_and_retry_fixes_the_failed_one(
        db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(["a1", "b2", "c3", "d4"]))
    db = db_project.database
    db.query("CREATE TABLE public.broken (name text); INSERT INTO broken VALUES ('b2')")
    folder = add(db_project, "t", tenant=(
        "DO $$ BEGIN IF EXISTS (SELECT FROM public.broken WHERE name = {{ tenant }}) "
        "THEN RAISE EXCEPTION 'tenant % is broken', {{ tenant }}; END IF; END $$;\n"
        "CREATE TABLE t (id int);\n"))

    result = db_project.run("migration", "apply", "--yes", "--jobs", "2",
                            "--continue-on-error", "--format", "json")

    assert result.exit_code == 1
    report = json.loads(result.stdout)
    states = {r["name"]: (r["state"], r["data"]) for r in report["tenants"]["results"]}
    assert states == {"a1": ("ok", {"applied": [folder]}), "b2": ("failed", None),
                      "c3": ("ok", {"applied": [folder]}), "d4": ("ok", {"applied": [folder]})}
    failed = next(r for r in report["tenants"]["results"] if r["name"] == "b2")
    assert "tenant b2 is broken" in failed["error"]
    assert report["applied"] == [] and report["tenants"]["ok"] is False
    for name in ("a1", "c3", "d4"):
        assert tables(db, f"tenant_{name}") == ["t"]

    listed = db_project.run("tenant", "list")
    assert f"b2  tenant_b2  failed ({folder})" in listed.stdout

    again = db_project.run("migration", "apply", "--yes")
    assert again.exit_code == 1
    assert (f"\u2717 tenant b2: migration {folder} failed in an earlier run, so spawn stops before "
            "it; fix its tenant.sql and run `spawn migration apply --tenants b2 --retry`"
            ) in again.stdout

    db.query("TRUNCATE public.broken")
    fixed = db_project.run("migration", "apply", "--yes", "--tenants", "b2", "--retry")
    assert fixed.exit_code == 0, fixed.stderr
    assert "1 tenants: 1 ok, 0 failed, 0 skipped" in fixed.stdout
    assert history(db, "tenant:b2")[-1] == (folder, "APPLY", "SUCCESS")
    assert tables(db, "tenant_b2") == ["t"]


def test_canary_tenants_go_first_and_a_failing_canary_stops_the_rest(
        db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(["c1", "c2", "r1", "r2", "r3"]))
    folder = add(db_project, "t", tenant="{% if tenant == 'c2' %}SELECT 1/0;{% endif %}\n"
                                         "CREATE TABLE t (id int);\n")

    result = db_project.run("migration", "apply", "--yes", "--jobs", "4", "--canary", "2",
                            "--continue-on-error")

    assert result.exit_code == 1
    db = db_project.database
    assert history(db, "tenant:c1")[-1] == (folder, "APPLY", "SUCCESS")
    assert history(db, "tenant:c2")[-1] == (folder, "APPLY", "FAILURE")
    for name in ("r1", "r2", "r3"):
        assert history(db, f"tenant:{name}") == []
    assert "5 tenants: 1 ok, 1 failed, 3 skipped" in result.stdout

    (db_project.spawn_dir / "migrations" / folder / "tenant.sql").write_text(
        "CREATE TABLE t (id int);\n", encoding="utf-8")
    assert db_project.run("migration", "pin", folder, "--force").exit_code == 0
    done = db_project.run("migration", "apply", "--yes", "--jobs", "4", "--canary", "2",
                          "--retry")
    assert done.exit_code == 0, done.stderr
    assert "5 tenants: 5 ok, 0 failed, 0 skipped" in done.stdout
    assert [history(db, f"tenant:{n}")[-1][2] for n in ("c1", "c2", "r1", "r2", "r3")] == \
        ["SUCCESS"] * 5


def test_revert_runs_tenant_downs_in_every_tenant_before_the_shared_down(
        db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(["acme", "globex"]))
    first, _ = two_migrations(db_project)
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    db = db_project.database

    result = db_project.run("migration", "revert", first, "--yes", "--format", "json")

    assert result.exit_code == 0, result.stderr
    found = json.loads(result.stdout)
    assert [r["name"] for r in found["reverted"]] == [first]
    assert {r["name"]: r["data"] for r in found["tenants"]["results"]} == {
        "acme": {"reverted": [first]}, "globex": {"reverted": [first]}}
    for name in ("acme", "globex"):
        assert tables(db, f"tenant_{name}") == ["orders"]
        assert history(db, f"tenant:{name}")[-2:] == [(first, "REVERT", "ATTEMPTED"),
                                                     (first, "REVERT", "SUCCESS")]
    assert history(db)[-1] == (first, "REVERT", "SUCCESS")
    assert db.query("SELECT to_regclass('public.plans') IS NULL") == "t"

    again = db_project.run("migration", "apply", "--yes")
    assert again.exit_code == 0, again.stderr
    assert tables(db, "tenant_acme") == ["orders", "users"]


def test_revert_refuses_tenant_parts_without_tenant_down(db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(["acme"]))
    folder = add(db_project, "x", up="CREATE TABLE public.x (id int);\n",
                 down="DROP TABLE public.x;\n", tenant="CREATE TABLE y (id int);\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0

    result = db_project.run("migration", "revert", folder, "--yes")

    assert result.exit_code == 2
    assert f"migration {folder} has a tenant.sql but no tenant_down.sql" in result.stderr
    assert history(db_project.database)[-1] == (folder, "APPLY", "SUCCESS")


def test_tenant_drop_needs_yes_and_takes_schema_and_history(db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(["acme", "globex"]))
    two_migrations(db_project)
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    db = db_project.database

    refused = db_project.run("tenant", "drop", "acme")
    assert refused.exit_code == 2
    assert refused.stderr.strip() == ("error: `spawn tenant drop acme` drops schema "
                                      "tenant_acme and all its data; pass --yes to do it")
    assert "tenant_acme" in schemas(db)

    dropped = db_project.run("tenant", "drop", "acme", "--yes")
    assert dropped.exit_code == 0, dropped.stderr
    assert dropped.stdout == "Dropped tenant acme: schema tenant_acme and 4 history rows.\n"
    assert schemas(db) == ["tenant_globex"]
    assert history(db, "tenant:acme") == []
    assert db.query("SELECT count(*) FROM _spawn.migration WHERE namespace = 'tenant:acme'"
                    ) == "0"
    listed = db_project.run("tenant", "list")
    assert "acme    tenant_acme (no schema)  2 pending" in listed.stdout


def test_build_shows_a_tenant_part_rendered_and_status_sums_up(db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(["acme", "globex"]))
    _, second = two_migrations(db_project)

    built = db_project.run("migration", "build", second, "--tenant", "acme")
    assert built.exit_code == 0, built.stderr
    assert built.stdout == "CREATE TABLE orders (id int, who text DEFAULT 'tenant_acme');\n"

    dry = db_project.run("migration", "apply", "--dry-run", "--tenants", "globex")
    assert dry.exit_code == 0, dry.stderr
    assert "tenant globex (tenant_globex): " in dry.stdout
    assert "Then 2 tenant parts in 1 of 1 tenants." in dry.stderr
    assert schemas(db_project.database) == []

    assert db_project.run("migration", "apply", "--yes", "--tenants", "acme").exit_code == 0
    status = db_project.run("migration", "status")
    assert status.exit_code == 0, status.stderr
    assert ("Tenants: 2, 1 up to date, 1 with pending tenant parts, 0 failed (`spawn tenant "
            "list` for each).") in status.stderr


def test_apply_migration_runs_only_its_own_tenant_part(db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(["acme"]))
    first, second = two_migrations(db_project)

    result = db_project.run("migration", "apply", first, "--yes")

    assert result.exit_code == 0, result.stderr
    db = db_project.database
    assert history(db, "tenant:acme") == [(first, "APPLY", "ATTEMPTED"),
                                          (first, "APPLY", "SUCCESS")]
    assert tables(db, "tenant_acme") == ["users"]
    dry = db_project.run("migration", "apply", "--dry-run", "--format", "json")
    assert json.loads(dry.stdout)["tenants"] == [
        {"name": "acme", "schema": "tenant_acme", "to_run": [second], "blocked": None}]


def test_a_failing_tenant_part_while_spawn_renders_ahead_runs_nothing_after_it(
        db_project: DbProject) -> None:
    """The worker's runner psql stops at a failing tenant part while spawn still renders
    the parts after it (slow templates): the failure is recorded and no later part runs
    in a new session (the tenant variant of the runner's queued-failure defect)."""
    set_tenants(db_project, tenant_list(["a1"]))
    add(db_project, "ok", tenant="CREATE TABLE t1 (id int);\n")
    failing = add(db_project, "fails", tenant="CREATE TABLE t2 (id int);\nSELECT 1/0;\n")
    slow = "{% for i in range(400000) %}{% endfor %}"
    after = [add(db_project, f"late{n}", tenant=f"{slow}CREATE TABLE t{n} (id int);\n")
             for n in (3, 4, 5)]

    result = db_project.run("migration", "apply", "--yes", "--jobs", "1")

    assert result.exit_code == 1, result.stderr
    assert f"migration {failing} failed (1 of 5 applied before it)" in result.stdout
    db = db_project.database
    assert tables(db, "tenant_a1") == ["t1", "t2"]
    rows = history(db, "tenant:a1")
    assert rows[-2:] == [(failing, "APPLY", "ATTEMPTED"), (failing, "APPLY", "FAILURE")]
    assert not {name for name, _, _ in rows} & set(after)
