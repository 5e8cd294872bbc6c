"""``spawn check`` and ``spawn lint`` read every ``[[sources]]`` folder (issue 18): drafts,
``--no-drafts``, ``--require-verify``, unpinned and stale pins, lint findings with the
path of the source's file. The real ``spawn``, the real PostgreSQL for ``--database`` and
``--db``."""

from __future__ import annotations

import json

from tests.conftest import DbProject
from tests.migrate.test_sources import audit_dir, migration, sourced, write

__all__ = ["sourced"]

CUSTOMERS = "20250101000000-create-customers"
LOG = "20250102000000-create-log"
DRAFT = "20250103000000-log-drafted"


def audit_migrations(project: DbProject) -> None:
    """One pinned main-folder migration with a verify.sql; in the audit source one
    unpinned migration and one draft."""
    migration(project.spawn_dir, CUSTOMERS, "CREATE TABLE customers (id int);\n")
    assert project.run("migration", "pin", CUSTOMERS).exit_code == 0
    write(project.spawn_dir, f"migrations/{CUSTOMERS}/verify.sql", "SELECT 1;\n")
    migration(audit_dir(project), LOG, "CREATE TABLE audit_log (id int);\n")
    migration(audit_dir(project), DRAFT, "ALTER TABLE audit_log ADD note text;\n",
              toml="draft = true\n")


UNPINNED = (f"warning: migration audit:{LOG} is not pinned; run `spawn migration pin "
            f"audit:{LOG}`\n")
DRAFTED = (f"warning: migration audit:{DRAFT} is a draft (draft = true in its "
           "migration.toml); apply skips it\n")


def no_verify(name: str) -> str:
    return (f"warning: migration audit:{name} has no verify.sql; write one (checks that run "
            "after it is applied), or drop --require-verify\n")


def test_check_reports_a_sources_unpinned_draft_and_verify_less_migrations(
        sourced: DbProject) -> None:
    audit_migrations(sourced)

    plain = sourced.run("check")
    strict = sourced.run("check", "--no-drafts", "--require-verify")
    assert sourced.run("migration", "pin", f"audit:{LOG}").exit_code == 0
    pinned = sourced.run("check")
    no_drafts = sourced.run("check", "--no-drafts")

    assert (plain.exit_code, plain.stdout, plain.stderr) == (1, "", UNPINNED + DRAFTED)
    assert (strict.exit_code, strict.stderr) == (
        1, no_verify(LOG) + UNPINNED + no_verify(DRAFT) + DRAFTED)
    assert (pinned.exit_code, pinned.stderr) == (0, DRAFTED)
    assert (no_drafts.exit_code, no_drafts.stderr) == (1, DRAFTED)


def test_check_database_reports_a_pending_source_migration_pinned_to_an_older_component(
        sourced: DbProject) -> None:
    audit = audit_dir(sourced)
    write(audit, "components/audit/stamp.sql", "SELECT 1;\n")
    migration(audit, LOG, "{% include 'audit/stamp.sql' %}\n")
    assert sourced.run("migration", "pin", f"audit:{LOG}").exit_code == 0
    write(audit, "components/audit/stamp.sql", "SELECT 2;\n")

    done = sourced.run("check", "--database")

    assert done.exit_code == 0, done.stderr
    assert done.stdout == ("All migrations are pinned, and none was modified since it was "
                           "applied.\n")
    assert done.stderr == (
        f"warning: audit:{LOG} is pinned to an older components/audit/stamp.sql: the working "
        "tree has a newer version, which this migration will not apply (pins are "
        f"snapshots); run `spawn migration pin audit:{LOG}` to take the new version\n")


def test_lint_lints_source_migrations_and_shows_their_files(sourced: DbProject) -> None:
    audit_migrations(sourced)
    write(audit_dir(sourced), f"migrations/{LOG}/up.sql",
          "BEGIN;\nCREATE TABLE audit_log (id int);\nSELEC 1;\nCOMMIT;\n")
    up = audit_dir(sourced) / "migrations" / LOG / "up.sql"

    every = sourced.run("lint")
    one = json.loads(sourced.run("lint", "audit:create-log", "--format", "json").stdout)

    assert every.exit_code == 1
    assert every.stdout.splitlines()[0] == (
        f'{up}:3:1: error SP000: syntax error: syntax error at or near "SELEC"')
    assert [line.split(": ")[0] for line in every.stdout.splitlines()] == [
        f"{up}:3:1", f"{audit_dir(sourced) / 'migrations' / DRAFT / 'up.sql'}:1:1"]
    assert every.stderr == "3 migrations linted: 1 error, 1 warning\n"
    assert one["migrations"] == [f"audit:{LOG}"]
    assert [(f["migration"], f["file"], f["line"], f["rule"]) for f in one["findings"]] == [
        (f"audit:{LOG}", str(up), 3, "SP000")]


def test_lint_db_runs_every_sources_migrations_on_the_scratch_database_in_apply_order(
        sourced: DbProject) -> None:
    migration(sourced.spawn_dir, CUSTOMERS, "CREATE TABLE customers (id int);\n")
    migration(audit_dir(sourced), LOG, "CREATE TABLE audit_log (id int);\n")
    migration(sourced.spawn_dir, "20250103000000-use-log",
              "BEGIN;\nINSERT INTO audit_log VALUES (1);\nINSERT INTO nowhere VALUES (1);\n"
              "COMMIT;\n")

    done = sourced.run("lint", "--db")

    assert done.exit_code == 1
    assert done.stdout == (
        "spawn/migrations/20250103000000-use-log/up.sql:3:13: error SP901: fails on a scratch "
        'database: relation "nowhere" does not exist\n')
    assert done.stderr == ("3 migrations linted: 1 error, 0 warnings; a statement failed on "
                           "a scratch database (the check stops at the first)\n")
