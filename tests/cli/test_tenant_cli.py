"""``--tenants`` and the ``spawn tenant`` commands' usage errors, through the real ``spawn``:
exit 2 with one sentence that says what to do, nothing written."""

from __future__ import annotations

from tests.conftest import DbProject
from tests.fleet.test_tenants import add, schemas, set_tenants, tenant_list


def test_tenants_without_a_tenants_table_is_a_usage_error(db_project: DbProject) -> None:
    result = db_project.run("migration", "apply", "--yes", "--tenants", "acme")

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: {db_project.config_path} has no [tenants] table; declare the tenants first, "
        'e.g. [tenants] then `list = ["acme", "globex"]` (see docs/fleets.md)')
    assert db_project.database.query("SELECT to_regnamespace('_spawn') IS NULL") == "t"

    listed = db_project.run("tenant", "list")
    assert listed.exit_code == 2
    assert "has no [tenants] table" in listed.stderr


def test_an_unknown_tenant_is_refused_before_anything_runs(db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(["acme", "globex"]))
    add(db_project, "t", up="CREATE TABLE public.shared (id int);\n",
        tenant="CREATE TABLE t (id int);\n")

    result = db_project.run("migration", "apply", "--yes", "--tenants", "acme,umbrella")

    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1] == (
        "error: --tenants 'acme,umbrella': 'umbrella' is not a tenant of [tenants] list in "
        f"{db_project.config_path}; pass `all`, `none` or tenant names separated by commas "
        "(`spawn tenant list` lists them)")
    assert schemas(db_project.database) == []


def test_tenants_none_applies_only_the_shared_parts(db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(["acme"]))
    add(db_project, "t", up="CREATE TABLE public.shared (id int);\n",
        tenant="CREATE TABLE t (id int);\n")

    result = db_project.run("migration", "apply", "--yes", "--tenants", "none")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert db_project.database.query("SELECT to_regclass('public.shared') IS NOT NULL") == "t"
    assert schemas(db_project.database) == []


def test_a_schema_template_that_maps_two_tenants_to_one_schema_is_refused(
        db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(["acme", "globex"]) + '\nschema = "shared"')

    result = db_project.run("tenant", "list")

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: tenant 'globex' from [tenants] list in {db_project.config_path} gets the "
        "schema 'shared' of tenant 'acme'; each tenant needs a schema of its own (use "
        "`{{ tenant }}` in [tenants] `schema`)")


def test_an_unpinned_tenant_part_is_refused_before_anything_runs(
        db_project: DbProject) -> None:
    set_tenants(db_project, tenant_list(["acme"]))
    add(db_project, "shared", up="CREATE TABLE public.shared (id int);\n")
    folder = add(db_project, "t", tenant="CREATE TABLE t (id int);\n", pin=False)

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: migration {folder} (a tenant part) is not pinned (no lock.toml); run "
        f"`spawn migration pin {folder}` first, or render from the working tree with --no-pin")
    assert db_project.database.query("SELECT to_regclass('public.shared') IS NULL") == "t"

    created = db_project.run("tenant", "create", "acme")
    assert created.exit_code == 2
    assert "(a tenant part) is not pinned" in created.stderr
    assert schemas(db_project.database) == []
