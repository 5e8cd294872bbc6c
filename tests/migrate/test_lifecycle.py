"""migration.toml end to end: requires, conflicts, strict order, drafts, and what status,
check, list, pin and new make of them (real PostgreSQL, the real ``spawn``)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import DbProject
from tests.migrate.history import history


def settings(project: DbProject, name: str, text: str) -> None:
    (project.spawn_dir / "migrations" / name / "migration.toml").write_text(text)


def tables(project: DbProject) -> str:
    return project.database.query(
        "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables "
        "WHERE schemaname = 'public'")


def applied_order(project: DbProject) -> list[str]:
    return [name for name, _, status in history(project.database) if status == "SUCCESS"]


def test_apply_runs_a_requirement_first_even_when_its_name_sorts_later(
    db_project: DbProject,
) -> None:
    orders = db_project.add_migration("orders", "CREATE TABLE orders (c int REFERENCES c);\n")
    customers = db_project.add_migration("customers", "CREATE TABLE c (id int PRIMARY KEY);\n")
    settings(db_project, orders, f'requires = ["{customers}"]\n')

    dry = db_project.run("migration", "apply", "--dry-run")
    result = db_project.run("migration", "apply", "--yes")

    assert [line.split()[0] for line in dry.stdout.splitlines()] == [customers, orders]
    assert result.exit_code == 0, result.stderr
    assert applied_order(db_project) == [customers, orders]


def test_named_apply_refuses_a_missing_requirement_then_with_requires_applies_both(
    db_project: DbProject,
) -> None:
    base = db_project.add_migration("base", "CREATE TABLE base ();\n")
    top = db_project.add_migration("top", "CREATE TABLE top ();\n")
    settings(db_project, top, f'requires = ["{base}"]\n')

    refused = db_project.run("migration", "apply", top)

    assert refused.exit_code == 2
    assert refused.stderr == (
        f"error: migration {top} requires {base}, which is not applied; run `spawn migration "
        f"apply {top} --with-requires` to apply both, or apply {base} first\n")
    assert db_project.database.query("SELECT to_regclass('_spawn.migration') IS NULL") == "t"

    both = db_project.run("migration", "apply", top, "--with-requires", "--yes")

    assert both.exit_code == 0, both.stderr
    assert applied_order(db_project) == [base, top]


def test_a_cycle_is_printed_and_nothing_is_written(db_project: DbProject) -> None:
    a = db_project.add_migration("a", "CREATE TABLE a ();\n")
    b = db_project.add_migration("b", "CREATE TABLE b ();\n")
    c = db_project.add_migration("c", "CREATE TABLE c ();\n")
    settings(db_project, a, f'requires = ["{c}"]\n')
    settings(db_project, b, f'requires = ["{a}"]\n')
    settings(db_project, c, f'requires = ["{b}"]\n')

    for args in (("migration", "apply", "--yes"), ("migration", "apply", "--dry-run"),
                 ("migration", "status"), ("check",)):
        result = db_project.run(*args)
        assert result.exit_code == 2, (args, result.stderr)
        assert result.stderr == (
            f"error: migrations require each other in a cycle: {a} -> {c} -> {b} -> {a}; "
            "remove one of these `requires` entries (in migration.toml of the migrations "
            "named)\n"), args
    assert db_project.database.query("SELECT to_regclass('_spawn.migration') IS NULL") == "t"


def test_an_unknown_requirement_and_a_wrong_type_exit_2(db_project: DbProject) -> None:
    a = db_project.add_migration("a", "CREATE TABLE a ();\n")
    settings(db_project, a, 'requires = ["20990101000000-nope"]\n')

    unknown = db_project.run("migration", "apply", "--yes")

    assert unknown.exit_code == 2
    path = db_project.spawn_dir / "migrations" / a / "migration.toml"
    assert unknown.stderr.startswith(
        f"error: {path}: `requires` names '20990101000000-nope', which is not a migration in ")

    settings(db_project, a, "out_of_order = 1\n")
    wrong = db_project.run("migration", "apply", "--yes")

    assert (wrong.exit_code, wrong.stderr) == (
        2, f"error: {path}: `out_of_order` must be true or false, not 1\n")
    assert tables(db_project) == ""


def test_an_unknown_key_is_a_warning_once(db_project: DbProject) -> None:
    a = db_project.add_migration("a", "CREATE TABLE a ();\n")
    settings(db_project, a, 'descripton = "typo"\n')

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    path = db_project.spawn_dir / "migrations" / a / "migration.toml"
    warning = (f"warning: unknown key `descripton` in {path} (ignored; the closest known key "
               "is `description`)")
    assert result.stderr.splitlines().count(warning) == 1


def test_conflict_with_an_applied_migration_is_refused_before_anything_runs(
    db_project: DbProject,
) -> None:
    old = db_project.add_migration("old-idea", "CREATE TABLE old_idea ();\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    first = db_project.add_migration("fine", "CREATE TABLE fine ();\n")
    new = db_project.add_migration("new-idea", "CREATE TABLE new_idea ();\n")
    settings(db_project, new, f'conflicts = ["{old}"]\n')
    rows = len(history(db_project.database))

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 2
    assert result.stderr == (
        f"error: migration {new} conflicts with {old}, which is applied; revert {old} "
        f"(`spawn migration revert {old}`) or remove the conflict from the migration.toml "
        "that declares it\n")
    assert len(history(db_project.database)) == rows
    assert tables(db_project) == "old_idea"
    assert first  # planned before the conflict, yet not run: the plan is checked whole


def test_strict_order_refuses_an_older_pending_migration_unless_out_of_order(
    db_project: DbProject,
) -> None:
    db_project.config_path.write_text(
        db_project.config_path.read_text() + '\n[migrations]\norder = "strict"\n')
    older = db_project.add_migration("older", "CREATE TABLE older ();\n")
    newer = db_project.add_migration("newer", "CREATE TABLE newer ();\n")
    assert db_project.run("migration", "apply", newer).exit_code == 0

    refused = db_project.run("migration", "apply", "--yes")

    assert refused.exit_code == 2
    assert refused.stderr.startswith(
        f"error: migration {older} is older than {newer}, which is already applied, and "
        '[migrations] order is "strict"; add out_of_order = true')
    assert tables(db_project) == "newer"

    settings(db_project, older, "out_of_order = true\n")
    allowed = db_project.run("migration", "apply", "--yes")
    status = db_project.run("migration", "status", "--format", "json")
    text = db_project.run("migration", "status")

    assert allowed.exit_code == 0, allowed.stderr
    assert f"{older} is applied out of order (a newer migration is already applied)" \
        in allowed.stderr
    rows = {m["name"]: m for m in json.loads(status.stdout)["migrations"]}
    assert (rows[older]["out_of_order"], rows[newer]["out_of_order"]) == (True, False)
    assert f"note: {older} was applied out of order (after a newer migration)" in text.stderr


def test_loose_order_is_the_default_and_the_rust_tools_behaviour(db_project: DbProject) -> None:
    older = db_project.add_migration("older", "CREATE TABLE older ();\n")
    newer = db_project.add_migration("newer", "CREATE TABLE newer ();\n")
    assert db_project.run("migration", "apply", newer).exit_code == 0

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert applied_order(db_project) == [newer, older]


def test_unknown_order_value_is_a_config_error(db_project: DbProject) -> None:
    db_project.config_path.write_text(
        db_project.config_path.read_text() + '\n[migrations]\norder = "sorted"\n')

    result = db_project.run("migration", "list")

    assert result.exit_code == 2
    assert "[migrations] `order` is 'sorted'; use \"loose\"" in result.stderr


# -- drafts --------------------------------------------------------------------------------


def test_new_draft_writes_migration_toml_and_apply_skips_it_saying_so(
    db_project: DbProject,
) -> None:
    ready = db_project.add_migration("ready", "CREATE TABLE ready ();\n")
    made = db_project.run("migration", "new", "--draft", "wip")
    draft = made.stdout.strip()
    folder = db_project.spawn_dir / "migrations" / draft
    (folder / "up.sql").write_text("CREATE TABLE wip ();\n")

    result = db_project.run("migration", "apply", "--yes", "--no-pin")

    assert made.exit_code == 0, made.stderr
    assert "draft = true\n" in (folder / "migration.toml").read_text()
    assert result.exit_code == 0, result.stderr
    assert result.stderr.splitlines().count(f"skipped 1 draft: {draft}") == 1
    assert tables(db_project) == "ready"
    assert applied_order(db_project) == [ready]

    again = db_project.run("migration", "apply", "--yes", "--no-pin")
    assert again.stderr.splitlines()[0] == f"skipped 1 draft: {draft}"


def test_pin_refuses_a_draft_and_pin_all_skips_it(db_project: DbProject) -> None:
    draft = db_project.run("migration", "new", "--draft", "wip").stdout.strip()
    other = db_project.add_migration("other", "SELECT 1;\n", pin=False)

    refused = db_project.run("migration", "pin", draft)
    pinned = db_project.run("migration", "pin", "--all")

    assert refused.exit_code == 2
    assert refused.stderr == (
        f"error: migration {draft} is a draft (draft = true in its migration.toml), and "
        "drafts are not pinned; remove draft = true first, then pin it\n")
    assert pinned.exit_code == 0, pinned.stderr
    assert not (db_project.spawn_dir / "migrations" / draft / "lock.toml").exists()
    assert (db_project.spawn_dir / "migrations" / other / "lock.toml").exists()
    assert f"Skipped 1 draft: {draft} (remove draft = true to pin)" in pinned.stderr


@pytest.mark.parametrize("environment", ["prod", "dev"])
def test_allow_draft_applies_by_name_except_in_prod(db_project: DbProject,
                                                    environment: str) -> None:
    draft = db_project.run("migration", "new", "--draft", "wip").stdout.strip()
    (db_project.spawn_dir / "migrations" / draft / "up.sql").write_text("CREATE TABLE wip ();\n")

    without = db_project.run("migration", "apply", draft, "--no-pin")
    # A draft has no pin, so it deploys with --no-pin, which prod refuses anyway.
    no_pin = ("--no-pin",) if environment != "prod" else ()
    result = db_project.run("-e", environment, "migration", "apply", draft, "--allow-draft",
                            *no_pin)

    assert without.exit_code == 2
    assert without.stderr.startswith(f"error: migration {draft} is a draft (draft = true in its "
                                     "migration.toml), so apply skips it;")
    if environment == "prod":
        assert result.exit_code == 2
        assert result.stderr.startswith(
            f"error: migration {draft} is a draft, and --allow-draft is refused in environment "
            "'prod';")
        assert tables(db_project) == ""
    else:
        assert result.exit_code == 0, result.stderr
        assert tables(db_project) == "wip"


def test_status_shows_drafts_reverted_requires_and_descriptions(db_project: DbProject) -> None:
    base = db_project.add_migration("base", "CREATE TABLE base ();\n")
    top = db_project.add_migration("top", "CREATE TABLE top ();\n")
    settings(db_project, top, f'requires = ["{base}"]\ndescription = "the top"\n')
    draft = db_project.add_migration("wip", "SELECT 1;\n", pin=False)
    settings(db_project, draft, "draft = true\n")
    assert db_project.run("migration", "apply", base).exit_code == 0
    db_project.database.query(
        "INSERT INTO _spawn.migration_history (migration_id_migration, activity_id_activity, "
        "created_by, description, status_note, status_id_status, checksum, execution_time) "
        "SELECT migration_id, 'REVERT', 'x', '', '', 'SUCCESS', '', '1 s' "
        f"FROM _spawn.migration WHERE name = '{base}'")

    text = db_project.run("migration", "status")
    data = json.loads(db_project.run("migration", "status", "--format", "json").stdout)

    assert text.exit_code == 0, text.stderr
    assert text.stdout.splitlines()[:5] == [
        "Migration            Filesystem  Pinned  Database  Status      Requires"
        "             Description",
        "-------------------  ----------  ------  --------  ----------  -------------------"
        "  -----------",
        f"{base}  ✓           ✓       ✓         ↶ Reverted",
        f"{top}   ✓           ✓       ✗         ○ Pending   {base}  the top",
        f"{draft}   ✓           ✗       ✗         ✎ Draft",
    ]
    rows = {m["name"]: m for m in data["migrations"]}
    assert (rows[base]["status"], rows[top]["status"], rows[draft]["status"]) == (
        "reverted", "pending", "draft")
    assert (rows[top]["requires"], rows[top]["description"]) == ([base], "the top")


def test_status_table_is_unchanged_without_migration_toml(db_project: DbProject) -> None:
    name = db_project.add_migration("plain", "SELECT 1;\n")

    result = db_project.run("migration", "status")

    assert result.stdout.splitlines()[0].split() == [
        "Migration", "Filesystem", "Pinned", "Database", "Status"]
    assert result.stdout.splitlines()[2].startswith(name)


def test_check_lists_drafts_and_no_drafts_fails(db_project: DbProject) -> None:
    db_project.add_migration("ready", "SELECT 1;\n")
    draft = db_project.run("migration", "new", "--draft", "wip").stdout.strip()

    listed = db_project.run("check")
    strict = db_project.run("check", "--no-drafts", "--format", "json")

    assert (listed.exit_code, listed.stdout) == (0, "All migrations are pinned (drafts aside).\n")
    assert listed.stderr == (f"warning: migration {draft} is a draft (draft = true in its "
                             "migration.toml); apply skips it\n")
    assert strict.exit_code == 1
    assert json.loads(strict.stdout) == {"ok": False, "warnings": [{
        "migration": draft, "kind": "draft",
        "message": f"migration {draft} is a draft (draft = true in its migration.toml); "
                   "apply skips it"}]}


def test_check_require_verify_fails_for_migrations_without_one(db_project: DbProject) -> None:
    with_verify = db_project.add_migration("checked", "CREATE TABLE t ();\n")
    (db_project.spawn_dir / "migrations" / with_verify / "verify.sql").write_text(
        "SELECT 1 FROM t;\n")
    without = db_project.add_migration("unchecked", "SELECT 1;\n")

    plain = db_project.run("check")
    required = db_project.run("check", "--require-verify")

    assert plain.exit_code == 0, plain.stderr
    assert required.exit_code == 1
    assert required.stderr == (f"warning: migration {without} has no verify.sql; write one "
                               "(checks that run after it is applied), or drop "
                               "--require-verify\n")


def test_list_shows_the_draft_column_only_with_a_draft(db_project: DbProject) -> None:
    db_project.add_migration("ready", "SELECT 1;\n")
    before = db_project.run("migration", "list")
    draft = db_project.run("migration", "new", "--draft", "wip").stdout.strip()

    after = db_project.run("migration", "list")
    data = json.loads(db_project.run("migration", "list", "--format", "json").stdout)

    assert before.stdout.splitlines()[0].split() == ["Migration", "Pinned", "Last", "modified"]
    assert after.stdout.splitlines()[0].split() == ["Migration", "Pinned", "Draft", "Last",
                                                    "modified"]
    assert after.stdout.splitlines()[3].split()[:3] == [draft, "no", "yes"]
    assert [m["draft"] for m in data["migrations"]] == [False, True]


# -- pin rules -----------------------------------------------------------------------------


def test_no_pin_is_refused_where_the_environment_requires_pins(db_project: DbProject) -> None:
    name = db_project.add_migration("m", "CREATE TABLE m ();\n", pin=False)

    prod = db_project.run("-e", "prod", "migration", "apply", name, "--no-pin")
    dry = db_project.run("-e", "prod", "migration", "apply", "--dry-run", "--no-pin")
    dev = db_project.run("migration", "apply", name, "--no-pin")

    assert prod.exit_code == 2
    assert prod.stderr == (
        "error: --no-pin is refused here: pins required, --no-pin refused (environment prod "
        "(the default for prod)); pin the migrations (`spawn migration pin`), or deploy to a "
        'target whose environment allows it ([environments.prod] pin = "optional" in '
        "spawn.toml)\n")
    assert dry.exit_code == 2
    assert (dev.exit_code, tables(db_project)) == (0, "m")


def test_environment_rules_and_target_rules(db_project: DbProject) -> None:
    base = db_project.config_path.read_text()
    name = db_project.add_migration("m", "CREATE TABLE m ();\n", pin=False)
    db_project.config_path.write_text(base + '\n[environments.staging]\npin = "required"\n')

    staging = db_project.run("-e", "staging", "migration", "apply", name, "--no-pin")
    db_project.config_path.write_text(base + '\n[environments.prod]\npin = "optional"\n')
    prod_allowed = db_project.run("-e", "prod", "migration", "apply", "--dry-run", "--no-pin")
    db_project.config_path.write_text(
        base.replace('environment = "dev"', 'environment = "prod"\npin = "optional"'))
    conflict = db_project.run("migration", "apply", "--dry-run", "--no-pin")

    assert staging.exit_code == 2
    assert "--no-pin refused (environment staging)" in staging.stderr
    assert prod_allowed.exit_code == 0, prod_allowed.stderr
    assert conflict.exit_code == 2
    assert 'says pin = "optional", but environment prod (the default for prod) requires ' \
        "pins" in conflict.stderr


def test_a_bad_pin_rule_is_a_config_error(db_project: DbProject) -> None:
    db_project.config_path.write_text(
        db_project.config_path.read_text() + '\n[environments.dev]\npin = "sometimes"\n')

    result = db_project.run("migration", "list")

    assert result.exit_code == 2
    assert "[environments.dev] `pin` is 'sometimes'; use \"required\"" in result.stderr


def test_status_shows_the_pin_rule(db_project: DbProject) -> None:
    db_project.add_migration("m", "SELECT 1;\n")

    dev = db_project.run("migration", "status")
    prod = db_project.run("-e", "prod", "migration", "status")
    data = json.loads(db_project.run("-e", "prod", "migration", "status", "--format",
                                     "json").stdout)

    assert "pins" not in dev.stderr
    assert prod.stderr.splitlines()[0] == (
        "note: pins required, --no-pin refused (environment prod (the default for prod))")
    assert data["pin_rule"] == {"mode": "required", "no_pin_allowed": False,
                                "source": "environment prod (the default for prod)"}


def test_optional_pins_deploy_an_unpinned_migration_from_the_working_tree(
    db_project: DbProject,
) -> None:
    db_project.add_component("v.sql", "CREATE VIEW v AS SELECT 1 AS n;\n")
    pinned = db_project.add_migration("pinned", '{% include "v.sql" %}\n')
    db_project.add_component("v.sql", "CREATE VIEW w AS SELECT 2 AS n;\n")
    loose = db_project.add_migration("loose", '{% include "v.sql" %}\n', pin=False)
    (db_project.spawn_dir / "migrations" / loose / "down.sql").write_text("DROP VIEW w;\n")
    base = db_project.config_path.read_text()

    required = db_project.run("migration", "apply", "--yes")
    db_project.config_path.write_text(base.replace('environment = "dev"',
                                                   'environment = "dev"\npin = "optional"'))
    optional = db_project.run("migration", "apply", "--yes")
    status = json.loads(db_project.run("migration", "status", "--format", "json").stdout)
    views = db_project.database.query(
        "SELECT string_agg(viewname, ',' ORDER BY viewname) FROM pg_views "
        "WHERE schemaname = 'public'")
    reverted = db_project.run("migration", "revert", "--yes")

    assert required.exit_code == 2
    assert f"migration {loose} is not pinned" in required.stderr
    assert optional.exit_code == 0, optional.stderr
    assert views == "v,w"  # the pinned one from its pin, the unpinned one from the tree
    rows = {m["name"]: m["latest"]["pin_hash"] for m in status["migrations"]}
    assert rows[pinned] is not None and rows[loose] is None
    assert status["pin_rule"] == {"mode": "optional", "no_pin_allowed": True,
                                  "source": "[targets.local] pin"}
    assert reverted.exit_code == 0, reverted.stderr
    assert db_project.database.query(
        "SELECT string_agg(viewname, ',') FROM pg_views WHERE schemaname = 'public'") == "v"
