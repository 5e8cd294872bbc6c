"""``spawn migration revert`` end to end, against the test suite's real PostgreSQL."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.migrate.revert import by_application
from spawn_db.migrate.tracking import HistoryRow, lock_key
from tests.conftest import DbProject, TestDatabase
from tests.helpers import run_on_terminal
from tests.migrate.history import history
from tests.migrate.test_tracking import SPEC_001

SUMMARY = re.compile(r"Reverted (\d+) migrations? in [\d.]+ m?s\.")


def add(project: DbProject, name: str, up: str, down: str | None = None, *,
        pin: bool = True) -> str:
    """A migration with ``up`` (pinned) and, when given, ``down``."""
    folder = project.add_migration(name, up, pin=pin)
    if down is not None:
        (project.spawn_dir / "migrations" / folder / "down.sql").write_text(down,
                                                                           encoding="utf-8")
    return folder


def table(name: str) -> tuple[str, str]:
    return f"CREATE TABLE {name} (id int);\n", f"DROP TABLE {name};\n"


def tables(database: TestDatabase) -> list[str]:
    text = database.query("SELECT string_agg(tablename, ',' ORDER BY tablename) FROM "
                          "pg_tables WHERE schemaname = 'public'")
    return text.split(",") if text else []


def rows(database: TestDatabase) -> int:
    return int(database.query("SELECT count(*) FROM _spawn.migration_history"))


def reverts(database: TestDatabase) -> list[tuple[str, ...]]:
    return [r for r in history(database) if r[1] == "REVERT"]


def apply(project: DbProject, *args: str) -> None:
    done = project.run("migration", "apply", "--yes", *args)
    assert done.exit_code == 0, done.stderr


# -- what is reverted, in which order ---------------------------------------------------------


def test_revert_without_argument_reverts_only_the_latest_with_checksum_and_pin(
    db_project: DbProject,
) -> None:
    first = add(db_project, "a", *table("a"))
    second = add(db_project, "b", *table("b"))
    apply(db_project)

    result = db_project.run("migration", "revert")

    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""
    assert re.fullmatch(rf"\[1/1\] ✓ {second} \(\d+ ms; 0 left, \d+ ms elapsed\)",
                        result.stderr.splitlines()[0])
    assert SUMMARY.fullmatch(result.stderr.splitlines()[-1])
    assert history(db_project.database)[4:] == [
        (second, "REVERT", "ATTEMPTED"), (second, "REVERT", "SUCCESS")]
    assert tables(db_project.database) == ["a"]
    pin = (db_project.spawn_dir / "migrations" / second / "lock.toml").read_text()
    recorded = db_project.database.query(
        "SELECT encode(checksum, 'hex') || ' ' || pin_hash FROM _spawn.migration_history "
        "WHERE activity_id_activity = 'REVERT' ORDER BY migration_history_id DESC LIMIT 1")
    checksum, pin_hash = recorded.split(" ")
    assert checksum == xxhash.xxh3_128_hexdigest(b"DROP TABLE b;")
    assert pin_hash in pin
    status = db_project.run("migration", "status", "--format", "json")
    states = {m["name"]: m for m in json.loads(status.stdout)["migrations"]}
    assert states[first]["latest"]["activity"] == "APPLY"
    assert states[second]["latest"]["activity"] == "REVERT"


def test_steps_and_to_follow_the_order_of_application_not_the_names(
    db_project: DbProject,
) -> None:
    a, b, c, d = (add(db_project, n, *table(n)) for n in "abcd")
    for name in (c, a, d, b):  # applied in another order than their names
        apply(db_project, name)

    steps = db_project.run("migration", "revert", "--steps", "2", "--yes")

    assert steps.exit_code == 0, steps.stderr
    assert SUMMARY.fullmatch(steps.stderr.splitlines()[-1])
    assert [n for n, _, s in reverts(db_project.database) if s == "SUCCESS"] == [b, d]
    assert tables(db_project.database) == ["a", "c"]

    apply(db_project)  # re-applies d and b, in name order: c, a, b, d
    to = db_project.run("migration", "revert", "--to", c, "--yes")

    assert to.exit_code == 0, to.stderr
    assert [n for n, _, s in reverts(db_project.database) if s == "SUCCESS"] == [b, d, d, b, a]
    assert tables(db_project.database) == ["c"]
    assert history(db_project.database)[-6:] == [
        (d, "REVERT", "ATTEMPTED"), (d, "REVERT", "SUCCESS"),
        (b, "REVERT", "ATTEMPTED"), (b, "REVERT", "SUCCESS"),
        (a, "REVERT", "ATTEMPTED"), (a, "REVERT", "SUCCESS"),
    ]
    nothing = db_project.run("migration", "revert", "--to", c)
    assert (nothing.exit_code, nothing.stderr) == (
        0, f"Nothing to revert: no migration was applied after {c} (1 applied in total).\n")


def test_named_migration_is_reverted_even_when_not_the_latest(db_project: DbProject) -> None:
    a = add(db_project, "a", *table("a"))
    add(db_project, "b", *table("b"))
    apply(db_project)

    result = db_project.run("migration", "rollback", a)

    assert result.exit_code == 0, result.stderr
    assert reverts(db_project.database) == [(a, "REVERT", "ATTEMPTED"), (a, "REVERT", "SUCCESS")]
    assert tables(db_project.database) == ["b"]


def test_reapply_after_revert_runs_up_again(db_project: DbProject) -> None:
    a = add(db_project, "a", *table("a"))
    apply(db_project)
    assert db_project.run("migration", "revert").exit_code == 0

    again = db_project.run("migration", "apply")

    assert again.exit_code == 0, again.stderr
    assert history(db_project.database) == [
        (a, "APPLY", "ATTEMPTED"), (a, "APPLY", "SUCCESS"),
        (a, "REVERT", "ATTEMPTED"), (a, "REVERT", "SUCCESS"),
        (a, "APPLY", "ATTEMPTED"), (a, "APPLY", "SUCCESS"),
    ]
    assert tables(db_project.database) == ["a"]


def test_down_script_renders_components_from_the_pin_after_an_edit_in_place(
    db_project: DbProject,
) -> None:
    component = db_project.add_component("drop_t.sql", "DROP TABLE t;")
    name = add(db_project, "t", "CREATE TABLE t (id int);\n", "{% include 'drop_t.sql' %}\n")
    apply(db_project)
    component.write_text("SELECT 1/0;", encoding="utf-8")  # edited in place after the pin

    pinned = db_project.run("migration", "build", name, "--down", "--pinned")
    working = db_project.run("migration", "build", name, "--down")
    result = db_project.run("migration", "revert")

    assert (pinned.exit_code, pinned.stdout, pinned.stderr) == (0, "DROP TABLE t;\n", "")
    assert (working.exit_code, working.stdout) == (0, "SELECT 1/0;\n")
    assert working.stderr == (
        f"warning: {name} is pinned: `spawn migration revert` renders its down.sql from the "
        "pin, not from the working tree shown here; add --pinned to see what a revert will "
        "run\n")
    assert result.exit_code == 0, result.stderr
    assert tables(db_project.database) == []
    recorded = db_project.database.query(
        "SELECT encode(checksum, 'hex') FROM _spawn.migration_history ORDER BY "
        "migration_history_id DESC LIMIT 1")
    assert recorded == xxhash.xxh3_128_hexdigest(b"DROP TABLE t;")


def test_no_pin_renders_the_working_tree(db_project: DbProject) -> None:
    component = db_project.add_component("drop_t.sql", "SELECT 1/0;")
    add(db_project, "t", "CREATE TABLE t (id int);\n", "{% include 'drop_t.sql' %}\n")
    apply(db_project)
    component.write_text("DROP TABLE t;", encoding="utf-8")

    result = db_project.run("migration", "revert", "--no-pin")

    assert result.exit_code == 0, result.stderr
    assert tables(db_project.database) == []


# -- refusals: exit 2, one message, nothing written ------------------------------------------


def refused(project: DbProject, *args: str) -> str:
    before = rows(project.database)
    result = project.run("migration", "revert", "--yes", *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert rows(project.database) == before
    assert result.stdout == ""
    return result.stderr


def test_irreversible_migration_is_refused(db_project: DbProject) -> None:
    name = add(db_project, "a", "CREATE TABLE a ();\n")
    apply(db_project)
    down = db_project.spawn_dir / "migrations" / name / "down.sql"

    assert refused(db_project) == (
        f"error: migration {name} is irreversible: it has no down.sql; write {down} to undo "
        "its up.sql, or put the undo in a new migration\n")
    assert tables(db_project.database) == ["a"]


def test_migration_whose_folder_is_gone_is_refused(db_project: DbProject) -> None:
    name = add(db_project, "a", *table("a"))
    apply(db_project)
    folder = db_project.spawn_dir / "migrations" / name
    shutil.rmtree(folder)

    for args in ((), (name,)):
        assert refused(db_project, *args) == (
            f"error: migration {name} is applied, but its folder {folder} (or its up.sql) is "
            "gone, so its down.sql cannot be read; restore the folder (from version control) "
            "to revert it\n")


def test_failed_or_attempted_apply_is_refused(db_project: DbProject) -> None:
    good = add(db_project, "good", *table("good"))
    bad = add(db_project, "bad", "SELECT 1/0;\n", "SELECT 1;\n")
    assert db_project.run("migration", "apply", "--yes").exit_code == 1

    message = (f"error: migration {bad} failed when it was applied, so spawn cannot tell what "
               f"there is to revert; finish it first with `spawn migration apply {bad} "
               f"--retry`, or `spawn migration adopt {bad}` if you completed it by hand\n")
    assert refused(db_project) == message
    assert refused(db_project, bad, "--retry") == message
    db_project.database.query(
        "INSERT INTO _spawn.migration_history (migration_id_migration, activity_id_activity, "
        "created_by, description, status_note, status_id_status, checksum, execution_time) "
        "SELECT migration_id, 'APPLY', 'x', '', '', 'ATTEMPTED', '', '0' FROM "
        f"_spawn.migration WHERE name = '{good}'")
    assert refused(db_project, good) == message.replace(bad, good).replace(
        "failed", "was attempted but never completed")


def test_migration_required_by_an_applied_one_is_refused(db_project: DbProject) -> None:
    base = add(db_project, "base", *table("base"))
    user = add(db_project, "user", *table("usr"))
    (db_project.spawn_dir / "migrations" / user / "migration.toml").write_text(
        f'requires = ["{base}"]\n', encoding="utf-8")
    apply(db_project)

    assert refused(db_project, base) == (
        f"error: migration {base} is required by {user}, which is applied (its migration.toml "
        f"`requires` it); revert {user} first, or both in one run (with --steps or --to)\n")
    both = db_project.run("migration", "revert", "--steps", "2", "--yes")
    assert both.exit_code == 0, both.stderr
    assert [n for n, _, s in reverts(db_project.database) if s == "SUCCESS"] == [user, base]


def test_migration_not_applied_is_refused(db_project: DbProject) -> None:
    a = add(db_project, "a", *table("a"))
    pending = add(db_project, "pending", *table("p"))
    apply(db_project, a)

    assert refused(db_project, pending) == (
        f"error: migration {pending} is not applied (it has no history), so there is nothing "
        "to revert; see `spawn migration status`\n")
    assert refused(db_project, "--to", pending) == (
        f"error: --to {pending}: {pending} is not applied (it has no history), so nothing can "
        "be reverted back to it; name an applied migration (see `spawn migration status`)\n")
    assert refused(db_project, "--steps", "3") == (
        "error: --steps 3 asks to revert 3 migrations, but only 1 is applied; pass --steps 1 "
        "to revert them all\n")
    assert db_project.run("migration", "revert").exit_code == 0
    assert refused(db_project, a) == (
        f"error: migration {a} is not applied (its latest history row is REVERT SUCCESS), so "
        "there is nothing to revert; see `spawn migration status`\n")


def test_usage_errors(db_project: DbProject) -> None:
    a = add(db_project, "a", *table("a"))
    apply(db_project)

    assert refused(db_project, a, "--steps", "1") == (
        "error: MIGRATION and --steps each choose what to revert; pass only one of them\n")
    assert refused(db_project, "--steps", "0") == "error: --steps must be at least 1, not 0\n"


def test_several_without_yes_and_no_terminal_are_refused(db_project: DbProject) -> None:
    a = add(db_project, "a", *table("a"))
    b = add(db_project, "b", *table("b"))
    apply(db_project)
    before = rows(db_project.database)

    result = db_project.run("migration", "revert", "--steps", "2")

    assert result.exit_code == 2
    assert result.stderr == (
        f"2 migrations would be reverted, in this order:\n  {b}\n  {a}\n"
        "error: 2 migrations would be reverted, and spawn cannot ask for confirmation because "
        "standard input is not a terminal; pass --yes to go ahead\n")
    assert rows(db_project.database) == before


def test_several_on_a_terminal_are_listed_asked_and_shown_as_reverting(
    db_project: DbProject,
) -> None:
    a = add(db_project, "a", *table("a"))
    b = add(db_project, "b", *table("b"))
    apply(db_project)

    shown = run_on_terminal(db_project.root, ["migration", "revert", "--steps", "2"],
                            answer="y\n", env={"TERM": "dumb"})

    assert f"2 migrations will be reverted, in this order:\n  {b}\n  {a}\n" in shown
    assert "Revert these 2 migrations? [y/N]: " in shown
    assert f"[1/2] reverting {b} ..." in shown
    assert f"[2/2] reverting {a} ..." in shown
    assert [n for n, _, s in reverts(db_project.database) if s == "SUCCESS"] == [b, a]
    apply(db_project)
    before = rows(db_project.database)
    declined = run_on_terminal(db_project.root, ["migration", "revert", "--steps", "2"],
                               answer="n\n", env={"TERM": "dumb"})
    assert declined.endswith("Revert these 2 migrations? [y/N]: "
                             "Cancelled; nothing was reverted.\n")
    assert rows(db_project.database) == before


def test_unpinned_migration_needs_no_pin(db_project: DbProject) -> None:
    name = add(db_project, "a", *table("a"), pin=False)
    apply(db_project, "--no-pin")

    assert refused(db_project) == (
        f"error: migration {name} is not pinned (no lock.toml), so its down.sql has no pinned "
        "components to render from; revert from the working tree with --no-pin, or pin it "
        f"(`spawn migration pin {name}`)\n")
    assert db_project.run("migration", "revert", "--no-pin").exit_code == 0


# -- a failing down script --------------------------------------------------------------------


def test_failed_revert_blocks_apply_until_revert_retry(db_project: DbProject) -> None:
    name = add(db_project, "a", "CREATE TABLE a (id int);\n", "SELECT 1/0;\n")
    apply(db_project)

    failed = db_project.run("migration", "revert")

    assert failed.exit_code == 1
    assert failed.stderr.splitlines()[-5:] == [
        f"error: reverting migration {name} failed (0 of 1 reverted before it); recorded as "
        "REVERT FAILURE in _spawn.migration_history. psql said:",
        "ERROR:  division by zero",
        "Fix its down.sql (re-pin it if you change its components), then run `spawn migration "
        f"revert {name} --retry`; apply refuses to run until then",
    ][-5:]
    assert reverts(db_project.database) == [(name, "REVERT", "ATTEMPTED"),
                                            (name, "REVERT", "FAILURE")]
    note = db_project.database.query(
        "SELECT status_note FROM _spawn.migration_history ORDER BY migration_history_id DESC "
        "LIMIT 1")
    assert note == "ERROR:  division by zero"

    blocked = db_project.run("migration", "apply")
    assert blocked.exit_code == 1
    assert blocked.stderr == (
        f"error: reverting migration {name} failed in an earlier run, so apply stops before "
        f"it; fix its down.sql and run `spawn migration revert {name} --retry` to finish the "
        "revert, then apply again\n")
    for args in (("--retry",), (name, "--retry")):
        retry = db_project.run("migration", "apply", *args)
        assert (retry.exit_code, retry.stderr) == (1, blocked.stderr), args
    assert refused(db_project) == (
        f"error: reverting migration {name} failed in an earlier run; fix its down.sql and "
        f"run `spawn migration revert {name} --retry` to run it again\n")

    (db_project.spawn_dir / "migrations" / name / "down.sql").write_text("DROP TABLE a;\n")
    retried = db_project.run("migration", "revert", "--retry")

    assert retried.exit_code == 0, retried.stderr
    assert reverts(db_project.database)[-2:] == [(name, "REVERT", "ATTEMPTED"),
                                                 (name, "REVERT", "SUCCESS")]
    assert tables(db_project.database) == []
    apply(db_project)
    assert history(db_project.database)[-2:] == [(name, "APPLY", "ATTEMPTED"),
                                                 (name, "APPLY", "SUCCESS")]


def test_failure_part_way_keeps_what_was_reverted(db_project: DbProject) -> None:
    a = add(db_project, "a", "CREATE TABLE a (id int);\n", "SELECT 1/0;\n")
    b = add(db_project, "b", *table("b"))
    apply(db_project)

    result = db_project.run("migration", "revert", "--steps", "2", "--yes")

    assert result.exit_code == 1
    assert f"error: reverting migration {a} failed (1 of 2 reverted before it)" in result.stderr
    assert [r for r in reverts(db_project.database) if r[2] != "ATTEMPTED"] == [
        (b, "REVERT", "SUCCESS"), (a, "REVERT", "FAILURE")]


# -- dry run, JSON ---------------------------------------------------------------------------


def test_dry_run_prints_the_sql_writes_nothing_and_takes_no_lock(
    db_project: DbProject,
) -> None:
    a = add(db_project, "a", *table("a"))
    b = add(db_project, "b", *table("b"))
    apply(db_project)
    before = rows(db_project.database)
    holder = subprocess.Popen(  # holds the migration lock all along
        [*db_project.database.psql_argv(), "-c",
         f"SELECT pg_advisory_lock({lock_key()}), pg_sleep(60)"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        db_project.database.wait_until(
            "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND granted)")
        result = db_project.run("migration", "revert", "--steps", "2", "--dry-run",
                                "--lock-timeout", "0")
        as_json = db_project.run("migration", "revert", "--dry-run", "--format", "json")
    finally:
        holder.kill()
        holder.wait()

    digest_a = xxhash.xxh3_128_hexdigest(b"DROP TABLE a;")
    digest_b = xxhash.xxh3_128_hexdigest(b"DROP TABLE b;")
    pin = _pin(db_project, a)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        f"-- spawn migration {b} (revert): pin {pin}, checksum {digest_b}\nDROP TABLE b;\n"
        f"-- spawn migration {a} (revert): pin {pin}, checksum {digest_a}\nDROP TABLE a;\n")
    assert result.stderr == "Dry run: would revert 2 migrations (2 applied); nothing was written.\n"
    assert as_json.exit_code == 0, as_json.stderr
    assert json.loads(as_json.stdout) == {
        "to_revert": [{"name": b, "pin": pin, "checksum": digest_b, "size": 13,
                       "sql": "DROP TABLE b;"}],
        "applied": 2,
    }
    assert rows(db_project.database) == before
    assert tables(db_project.database) == ["a", "b"]


def test_format_json_reports_what_was_reverted(db_project: DbProject) -> None:
    a = add(db_project, "a", *table("a"))
    b = add(db_project, "b", *table("b"))
    apply(db_project)

    result = db_project.run("migration", "revert", "--steps", "2", "--yes", "--format", "json")

    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    seconds = [item.pop("seconds") for item in report["reverted"]]
    assert all(isinstance(s, float) and s >= 0 for s in seconds)
    assert isinstance(report.pop("seconds"), float)
    assert report == {"reverted": [{"name": b}, {"name": a}], "cancelled": False}
    empty = db_project.run("migration", "revert", "--format", "json")
    assert (empty.exit_code, json.loads(empty.stdout)) == (
        0, {"reverted": [], "cancelled": False, "seconds": 0.0})


def _pin(project: DbProject, name: str) -> str:
    text = (project.spawn_dir / "migrations" / name / "lock.toml").read_text()
    found = re.search(r'"([0-9a-f]{32})"', text)
    assert found is not None, text
    return found.group(1)


# -- a database the Rust tool wrote --------------------------------------------------------


def test_history_the_rust_tool_wrote_is_reverted_in_its_order(db_project: DbProject) -> None:
    """Outcome rows only, no ATTEMPTED, only 001 applied: revert reads it, runs the down
    scripts newest application first, and adds 002 and its own rows after the old ones."""
    database = db_project.database
    a = add(db_project, "a", *table("a"))
    b = add(db_project, "b", *table("b"))
    database.query("CREATE TABLE a (id int); CREATE TABLE b (id int)")
    database.query(SPEC_001.format(s="_spawn"))
    database.query(
        "INSERT INTO _spawn.migration (name, namespace) VALUES "
        f"('001-base-migration-table', 'spawn'), ('{b}', 'default'), ('{a}', 'default');"
        "INSERT INTO _spawn.migration_history (migration_id_migration, activity_id_activity, "
        "created_by, description, status_note, status_id_status, checksum, pin_hash, "
        "execution_time) SELECT migration_id, 'APPLY', 'rust', '', '', 'SUCCESS', "
        "'\\x0102'::bytea, NULL, '1 second' FROM _spawn.migration ORDER BY migration_id")
    before = database.query("SELECT string_agg(h::text, E'\\n' ORDER BY migration_history_id) "
                            "FROM _spawn.migration_history h")

    result = db_project.run("migration", "revert", "--steps", "2", "--yes")

    assert result.exit_code == 0, result.stderr
    assert result.stderr.startswith(
        "Tracking schema _spawn: applied 002-migration-history-lookup-index, 003-script-run\n")
    assert [r for r in reverts(database) if r[2] == "SUCCESS"] == [
        (a, "REVERT", "SUCCESS"), (b, "REVERT", "SUCCESS")]
    after = database.query("SELECT string_agg(h::text, E'\\n' ORDER BY migration_history_id) "
                           "FROM _spawn.migration_history h WHERE migration_history_id <= 3")
    assert after == before
    assert tables(database) == []


# -- the order, for any history --------------------------------------------------------------


def _row(name: str, history_id: int, activity: str, status: str) -> HistoryRow:
    return HistoryRow(name, "default", history_id, activity, status, "", None, "", "", "", "",
                      0.0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("abcdefgh"),
                          st.sampled_from([("APPLY", "SUCCESS"), ("ADOPT", "SUCCESS"),
                                           ("REVERT", "SUCCESS"), ("APPLY", "FAILURE"),
                                           ("REVERT", "FAILURE"), ("REVERT", "ATTEMPTED")])),
                max_size=30))
def test_candidates_are_ordered_by_their_latest_row(
    events: list[tuple[str, tuple[str, str]]],
) -> None:
    """Replaying any history as a stack (what is applied, newest on top; a successful
    revert takes a migration out; an unfinished apply or revert puts it on top, where it
    blocks) gives the order revert walks: by_application, from the latest rows alone."""
    latest: dict[str, HistoryRow] = {}
    stack: list[str] = []
    for history_id, (name, (activity, status)) in enumerate(events, 1):
        latest[name] = _row(name, history_id, activity, status)
        if name in stack:
            stack.remove(name)
        if (activity, status) != ("REVERT", "SUCCESS"):
            stack.append(name)

    assert by_application(latest) == stack[::-1]


def test_a_migration_whose_verify_failed_can_be_reverted(db_project: DbProject) -> None:
    """Its up.sql committed (only the check after it failed), so down.sql undoes it; a
    migration that failed in its up.sql stays refused (nothing known to undo)."""
    name = add(db_project, "checked", "CREATE TABLE checked (id int);\n",
               "DROP TABLE checked;\n")
    (db_project.spawn_dir / "migrations" / name / "verify.sql").write_text(
        "DO $$ BEGIN RAISE EXCEPTION 'not good'; END $$;\n")
    failed = db_project.run("migration", "apply", "--yes")
    assert failed.exit_code == 1
    assert tables(db_project.database) == ["checked"]

    reverted = db_project.run("migration", "revert")

    assert reverted.exit_code == 0, reverted.stderr
    assert tables(db_project.database) == []
    assert reverts(db_project.database)[-1] == (name, "REVERT", "SUCCESS")

    broken = add(db_project, "broken", "SELECT 1/0;\n", "SELECT 1;\n")
    assert db_project.run("migration", "apply", broken).exit_code == 1
    refused = db_project.run("migration", "revert", broken)
    assert refused.exit_code == 2
    assert "failed when it was applied" in refused.stderr
