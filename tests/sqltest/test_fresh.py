"""Fresh test databases (`[tests] database = "fresh"`): a template built from the
migrations, one copy per test, against the real PostgreSQL and the real `spawn`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import SPAWN_DATABASES
from tests.helpers import Result


def fresh_project(db_project: Any, mode: str = "fresh") -> Any:
    """``db_project`` with ``[tests] database = mode`` and a migration that makes a table;
    the migration names the test's database in a comment, so its template is its own."""
    with db_project.config_path.open("a", encoding="utf-8") as config:
        config.write(f'\n[tests]\ndatabase = "{mode}"\n')
    db_project.add_migration(
        "accounts",
        f"-- for {db_project.database.name}\n"
        "CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL);\n"
        "INSERT INTO accounts VALUES (1, 'ann');\n",
    )
    return db_project


def spawn_databases(db_project: Any) -> list[str]:
    rows = db_project.database.query(
        "SELECT datname || ' ' || datistemplate FROM pg_database WHERE datname LIKE "
        "'spawn\\_tpl\\_%' OR datname LIKE 'spawn\\_testdb\\_%' ORDER BY 1")
    return rows.splitlines()




@pytest.fixture(autouse=True)
def _drop_spawn_databases(pg_server: Any) -> Iterator[None]:
    """Templates and kept copies live on the worker's server, which its tests share one
    after another: drop them before each test (tests in other files keep theirs, and these
    count them) and after it."""
    pg_server.drop_databases_like(*SPAWN_DATABASES)
    yield
    pg_server.drop_databases_like(*SPAWN_DATABASES)


def lines(result: Result) -> list[str]:
    return result.stdout.splitlines()


def test_each_test_runs_in_its_own_copy_of_the_migrated_template(db_project: Any) -> None:
    project = fresh_project(db_project)
    for name in ("one", "two"):
        project.add_test(name, (
            f"INSERT INTO accounts VALUES (2, '{name}');\n"
            "SELECT id, owner FROM accounts ORDER BY id;\n"))
    result = project.run("test", "expect", "--yes", "-j", "2")
    assert result.exit_code == 0, result.stderr
    for name in ("one", "two"):
        expected = (project.spawn_dir / "tests" / name / "expected").read_text()
        assert expected == (f" id | owner \n----+-------\n  1 | ann\n  2 | {name}\n"
                            "(2 rows)\n\n")
    result = project.run("test", "compare", "-j", "2")
    assert result.exit_code == 0, result.stdout + result.stderr
    assert lines(result)[:2] == ["[PASS] one", "[PASS] two"]
    databases = spawn_databases(project)
    assert len(databases) == 1 and databases[0].startswith("spawn_tpl_")
    assert databases[0].endswith(" true")
    # The target itself was never migrated.
    assert project.database.query("SELECT to_regclass('accounts') IS NULL") == "t"


def test_target_mode_is_the_default_and_runs_where_the_target_connects(db_project: Any) -> None:
    db_project.add_migration("accounts", "CREATE TABLE accounts (id int);\n")
    db_project.add_test("where", "SELECT current_database() = "
                        f"'{db_project.database.name}' AS on_target;\n")
    result = db_project.run("test", "run", "where")
    assert (result.exit_code, result.stdout, result.stderr) == (
        0, " on_target \n-----------\n t\n(1 row)\n\n", "")
    assert spawn_databases(db_project) == []


def test_a_test_prints_the_same_in_both_modes(db_project: Any) -> None:
    """The \\connect to the copy is silent: a test's output does not show the mode."""
    project = fresh_project(db_project)
    project.database.query("CREATE TABLE accounts (id int PRIMARY KEY, owner text NOT NULL);"
                           "INSERT INTO accounts VALUES (1, 'ann')")
    project.add_test("same", "\\echo start\nSELECT owner FROM accounts;\n"
                     "SELECT 1/0;\n")
    fresh = project.run("test", "run", "same")
    project.config_path.write_text(project.config_path.read_text().replace(
        'database = "fresh"', 'database = "target"'))
    target = project.run("test", "run", "same")
    assert fresh.stdout == target.stdout == (
        "start\n owner \n-------\n ann\n(1 row)\n\n"
        "ERROR:  division by zero\n")
    assert target.stderr == ""
    assert fresh.stderr.startswith("Building template database spawn_tpl_")
    # `test run` shows the output rather than judging it: its copy is dropped.
    assert [d for d in spawn_databases(project) if d.startswith("spawn_testdb_")] == []


def test_a_test_stopped_by_its_timeout_keeps_its_database(db_project: Any) -> None:
    project = fresh_project(db_project)
    project.add_test("slow", "INSERT INTO accounts VALUES (3, 'slow');\n"
                     "SELECT pg_sleep(60);\n")
    result = project.run("test", "run", "slow", "--timeout", "1")
    assert result.exit_code == 1
    kept = [line for line in result.stderr.splitlines() if line.startswith("note: database")]
    assert len(kept) == 1, result.stderr
    name = kept[0].split()[2]
    assert project.database.query("SELECT count(*) FROM accounts", dbname=name) == "2"


def test_a_failed_test_keeps_its_database_and_names_it(db_project: Any) -> None:
    project = fresh_project(db_project)
    project.add_test("good", "SELECT count(*) FROM accounts;\n")
    project.add_test("bad", "INSERT INTO accounts VALUES (7, 'kept');\n"
                     "SELECT owner FROM accounts ORDER BY id;\n")
    (project.spawn_dir / "tests" / "good" / "expected").write_text(
        " count \n-------\n     1\n(1 row)\n\n")
    (project.spawn_dir / "tests" / "bad" / "expected").write_text("nothing\n")
    result = project.run("test", "compare", "-j", "1")
    assert result.exit_code == 1
    kept = [line for line in lines(result) if line.startswith("note: database ")]
    assert len(kept) == 1, result.stdout
    name = kept[0].split()[2]
    assert name.startswith("spawn_testdb_") and name.endswith("_bad")
    assert kept[0] == (f"note: database {name} was kept to inspect; `spawn test clean` "
                       "drops it")
    assert project.database.query("SELECT string_agg(owner, ',' ORDER BY id) FROM accounts",
                                   dbname=name) == "ann,kept"
    # The passing test's copy is gone: only the template and the kept copy remain.
    assert [d.split()[0] for d in spawn_databases(project)
            if d.startswith("spawn_testdb_")] == [name]


def test_the_template_is_reused_until_its_inputs_change(db_project: Any) -> None:
    project = fresh_project(db_project)
    project.add_test("t", "SELECT 1 AS one;\n")
    first = project.run("test", "run", "t")
    assert first.exit_code == 0
    built = [line for line in first.stderr.splitlines() if line.startswith("Building")]
    assert len(built) == 1
    template = built[0].split()[3]
    oid = project.database.query(f"SELECT oid FROM pg_database WHERE datname = '{template}'")
    again = project.run("test", "run", "t")
    assert (again.exit_code, again.stderr) == (0, "")
    assert project.database.query(
        f"SELECT oid FROM pg_database WHERE datname = '{template}'") == oid
    project.add_migration("more", "CREATE TABLE more (id int);\n")
    changed = project.run("test", "run", "t")
    assert changed.exit_code == 0
    assert changed.stderr.startswith("Building template database spawn_tpl_")
    assert changed.stderr.split()[3] != template
    # A variable a migration uses is an input too (through its rendered checksum).
    project.add_migration("grants", "SELECT {{ variables.level | default(1) }} AS level;\n")
    vars_file = project.root / "vars.json"
    vars_file.write_text('{"level": 2}')
    plain = project.run("test", "run", "t")
    other = project.run("test", "run", "t", "--variables", str(vars_file))
    assert plain.stderr.split()[3] != other.stderr.split()[3]


def template_name(project: Any) -> str:
    from spawn_db.config import Overrides, load_config
    from spawn_db.sqltest.fresh import render_template, template_migrations

    config = load_config(Overrides(config_file=str(project.config_path)))
    build = render_template(config, template_migrations(config))
    build.close()
    return build.inputs.name


def test_two_concurrent_runs_build_the_template_once(db_project: Any) -> None:
    """Both runs are made to wait on the build lock (held here) before either looks
    again; then one builds and the other reuses: the migration's `\\!` counter says one."""
    import subprocess

    from spawn_db.sqltest.fresh import build_lock_key
    from tests.helpers import start_spawn

    project = fresh_project(db_project)
    counter = project.root / "builds.txt"
    project.add_migration("count", f"\\! echo built >> {counter}\nCREATE TABLE c (id int);\n")
    project.add_test("t", "SELECT count(*) AS tables FROM pg_tables WHERE tablename = 'c';\n")
    (project.spawn_dir / "tests" / "t" / "expected").write_text(
        " tables \n--------\n      1\n(1 row)\n\n")
    classid, objid = build_lock_key(template_name(project))
    holder = subprocess.Popen([*project.database.psql_argv(), "-X", "-q", "-At"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdin is not None and holder.stdout is not None
    holder.stdin.write(f"SELECT 'held' FROM pg_advisory_lock({classid}, {objid});\n")
    holder.stdin.flush()
    assert holder.stdout.readline() == "held\n"
    runs = [start_spawn("test", "compare", cwd=project.root) for _ in range(2)]
    try:
        project.database.wait_until(
            "SELECT count(*) = 2 FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            f"AND classid = {classid} AND objid = {objid}")
    finally:
        holder.communicate(timeout=30)  # ends the session, and with it the lock
    outputs = [run.communicate(timeout=120) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    assert [out.splitlines()[0] for out, _ in outputs] == ["[PASS] t", "[PASS] t"]
    assert counter.read_text() == "built\n"
    assert sum(err.count("Building template database") for _, err in outputs) == 1


def test_a_template_that_fails_to_build_runs_no_test(db_project: Any) -> None:
    project = fresh_project(db_project)
    broken = project.add_migration("broken", "CREATE TABLE ok (id int);\n"
                                   "ALTER TABLE missing ADD COLUMN x int;\n")
    project.add_test("t", "SELECT 1;\n")
    (project.spawn_dir / "tests" / "t" / "expected").write_text("x\n")
    result = project.run("test", "compare")
    assert result.exit_code == 1
    assert result.stdout == ""
    error = result.stderr.splitlines()
    assert error[0].startswith("Building template database spawn_tpl_")
    assert error[1] == (
        f"error: migration {broken} failed while building the template database "
        f"{error[0].split()[3]} for fresh test databases, so no test ran; fix the migration "
        "(psql said:)")
    assert 'ERROR:  relation "missing" does not exist' in result.stderr
    # The half-built database is gone, and nothing else was made.
    assert spawn_databases(project) == []


def test_migrate_to_and_apply_migration_test_a_data_migration(db_project: Any) -> None:
    """The issue's data-migration recipe: a template up to the migration before, seed
    data, inline the data migration from its pin, assert."""
    project = fresh_project(db_project)
    split = project.add_migration("split-owner", (
        "ALTER TABLE accounts ADD COLUMN first text, ADD COLUMN last text;\n"
        "UPDATE accounts SET first = split_part(owner, ' ', 1), "
        "last = split_part(owner, ' ', 2);\n"))
    accounts = split.replace("split-owner", "accounts").replace("01-", "00-")
    test = project.add_test("split", (
        "INSERT INTO accounts VALUES (2, 'Ada Lovelace');\n"
        f"{{{{ apply_migration(\"{split}\") }}}}\n"
        "SELECT id, first, last FROM accounts ORDER BY id;\n"))
    (test.parent / "test.toml").write_text(f'migrate_to = "{accounts}"\n')
    built = project.run("test", "build", "split")
    migration = (project.spawn_dir / "migrations" / split / "up.sql").read_text()
    assert built.exit_code == 0
    # As `migration build --pinned` renders it (templates drop a file's last newline).
    pinned = project.run("migration", "build", split, "--pinned")
    assert pinned.stdout == migration
    assert built.stdout == ("INSERT INTO accounts VALUES (2, 'Ada Lovelace');\n"
                            f"{migration}SELECT id, first, last FROM accounts ORDER BY id;\n")
    result = project.run("test", "run", "split")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (" id | first |   last   \n----+-------+----------\n"
                             "  1 | ann   | \n  2 | Ada   | Lovelace\n(2 rows)\n\n")
    # A separate template: the full one (both migrations) is another database.
    project.add_test("full", "SELECT first FROM accounts;\n")
    assert project.run("test", "run", "full").exit_code == 0
    templates = [d for d in spawn_databases(project) if d.startswith("spawn_tpl_")]
    assert len(templates) == 2


def test_apply_migration_of_an_unknown_or_unpinned_migration_is_a_render_error(
        db_project: Any) -> None:
    unpinned = db_project.add_migration("draft", "SELECT 1;\n", pin=False)
    db_project.add_test("unknown", '{{ apply_migration("nope") }}\n')
    db_project.add_test("unpinned", f'{{{{ apply_migration("{unpinned}") }}}}\n')
    unknown = db_project.run("test", "build", "unknown")
    assert (unknown.exit_code, unknown.stdout) == (1, "")
    assert unknown.stderr == (
        "error: spawn/tests/unknown/test.sql:1: apply_migration('nope'): there is no "
        "migration nope (spawn/migrations/nope/up.sql does not exist); use a folder name "
        "from `spawn migration list`\n")
    result = db_project.run("test", "build", "unpinned")
    assert (result.exit_code, result.stdout) == (1, "")
    assert result.stderr == (
        f"error: spawn/tests/unpinned/test.sql:1: apply_migration('{unpinned}'): migration "
        f"{unpinned} is not pinned (no lock.toml), and tests inline migrations from their "
        f"pins; run `spawn migration pin {unpinned}`\n")
    # The template is built from pins too: under the default pin rule, no test runs.
    fresh = db_project.add_test("fresh", "SELECT 1;\n")
    (fresh.parent / "test.toml").write_text('database = "fresh"\n')
    refused = db_project.run("test", "run", "fresh")
    assert (refused.exit_code, refused.stdout) == (2, "")
    assert refused.stderr == (
        f"error: migration {unpinned} is not pinned (no lock.toml), and fresh test databases "
        f"are built from pins; run `spawn migration pin {unpinned}`, or make pins optional "
        'for this target (`pin = "optional"` in its [targets.<name>] table)\n')


def test_test_toml_database_target_runs_that_test_on_the_target(db_project: Any) -> None:
    project = fresh_project(db_project)
    test = project.add_test("here", "SELECT current_database() LIKE 'spawn\\_testdb\\_%' "
                            "AS fresh;\n")
    project.add_test("there", "SELECT current_database() LIKE 'spawn\\_testdb\\_%' AS fresh;\n")
    (test.parent / "test.toml").write_text('database = "target"\n')
    here, there = project.run("test", "run", "here"), project.run("test", "run", "there")
    assert here.stdout == " fresh \n-------\n f\n(1 row)\n\n"
    assert there.stdout == " fresh \n-------\n t\n(1 row)\n\n"


def test_test_toml_is_validated(db_project: Any) -> None:
    project = fresh_project(db_project)
    test = project.add_test("t", "SELECT 1 AS one;\n")
    settings = test.parent / "test.toml"
    settings.write_text('databse = "target"\n')
    result = project.run("test", "run", "t")
    assert result.exit_code == 0
    assert ("warning: unknown key `databse` in spawn/tests/t/test.toml (ignored; the closest "
            "known key is `database`)") in result.stderr.splitlines()
    for text, message in [
        ("database = 1\n", "spawn/tests/t/test.toml: `database` is 1; use \"target\" (this "
         "test runs where the target connects) or \"fresh\" (in its own copy of a database "
         "built from the migrations)"),
        ("migrate_to = 3\n", "spawn/tests/t/test.toml: `migrate_to` must be a migration's "
         'folder name as a string, e.g. `migrate_to = "20260101000000-add-users"`, not 3'),
        ('migrate_to = "x"\ndatabase = "target"\n', "spawn/tests/t/test.toml: `migrate_to` "
         'builds a fresh database, but `database = "target"` runs the test on the target\'s; '
         "remove one of the two"),
        ("database = \n", "spawn/tests/t/test.toml:1: invalid TOML: Invalid value "
         "(at line 1, column 12); fix the syntax and try again"),
        ('migrate_to = "nope"\n', "spawn/tests/t/test.toml: migrate_to: migration 'nope' "),
    ]:
        settings.write_text(text)
        result = project.run("test", "compare")
        assert (result.exit_code, result.stdout) == (2, ""), text
        assert result.stderr.startswith(f"error: {message}"), result.stderr


def test_tests_table_in_spawn_toml_is_validated(db_project: Any) -> None:
    db_project.add_test("t", "SELECT 1 AS one;\n")
    with db_project.config_path.open("a", encoding="utf-8") as config:
        config.write('\n[tests]\ndatabase = "fersh"\nparallel = 2\n')
    result = db_project.run("test", "run", "t")
    assert (result.exit_code, result.stdout) == (2, "")
    assert result.stderr.endswith(
        "spawn.toml: [tests] `database` is 'fersh'; use \"target\" (tests run where the "
        'target connects) or "fresh" (each test in its own copy of a database built from '
        "the migrations)\n")
    db_project.config_path.write_text(db_project.config_path.read_text().replace(
        '"fersh"', '"target"'))
    result = db_project.run("test", "run", "t")
    assert result.exit_code == 0
    assert "warning: unknown key `parallel` in " in result.stderr
    assert "spawn.toml [tests] (ignored; the closest known key is `database`)" in result.stderr


def test_clean_drops_only_spawns_templates_and_test_databases(db_project: Any) -> None:
    project = fresh_project(db_project)
    # The server is this worker's, shared by its tests one after another: what earlier
    # tests kept (drift's scratch databases) goes first, so the output below is ours.
    assert project.run("test", "clean").exit_code == 0
    project.add_test("bad", "SELECT 1 AS one;\n")
    (project.spawn_dir / "tests" / "bad" / "expected").write_text("other\n")
    assert project.run("test", "compare").exit_code == 1
    before = [d.split()[0] for d in spawn_databases(project)]
    assert before[0].startswith("spawn_testdb_") and before[1].startswith("spawn_tpl_")
    project.database.query("CREATE DATABASE spawn_tplx")
    project.database.query("CREATE DATABASE spawn_testdbx")
    try:
        result = project.run("test", "clean")
        assert (result.exit_code, result.stderr) == (0, "")
        assert result.stdout == (f"Dropped template {before[1]}\n"
                                 f"Dropped test database {before[0]}\n")
        assert spawn_databases(project) == []
        assert project.database.query(
            "SELECT string_agg(datname, ',' ORDER BY datname) FROM pg_database WHERE datname "
            f"IN ('spawn_tplx', 'spawn_testdbx', '{project.database.name}')") == ",".join(
            sorted(["spawn_testdbx", "spawn_tplx", project.database.name]))
        again = project.run("test", "clean")
        assert (again.exit_code, again.stdout, again.stderr) == (
            0, "", "Nothing to drop: no spawn_tpl_*, spawn_testdb_* or spawn_drift_* databases "
            "on the server.\n")
    finally:
        project.database.query("DROP DATABASE spawn_tplx")
        project.database.query("DROP DATABASE spawn_testdbx")


RUST_STYLE = """\
CREATE DATABASE {db};
\\c {db}
CREATE TABLE own (id int);
INSERT INTO own VALUES (1), (2);
SELECT count(*) AS own_rows FROM own;
\\c postgres
DROP DATABASE {db};
\\echo done
"""


@pytest.mark.parametrize("mode", ["target", "fresh"])
def test_tests_that_make_their_own_database_work_in_both_modes(db_project: Any,
                                                               mode: str) -> None:
    project = fresh_project(db_project, mode)
    own = f"own_{project.database.name}"[:63]
    project.add_test("rust", RUST_STYLE.format(db=own))
    result = project.run("test", "run", "rust")
    assert (result.exit_code, result.stdout) == (
        0, " own_rows \n----------\n        2\n(1 row)\n\ndone\n")
    assert project.database.query(
        f"SELECT count(*) FROM pg_database WHERE datname = '{own}'") == "0"
    # In fresh mode the copy the test started in was dropped after it.
    assert [d for d in spawn_databases(project) if d.startswith("spawn_testdb_")] == []


def test_fresh_mode_on_the_embedded_server(embedded_project: Any) -> None:
    """The default target (the project's own server) reaches its copies the same way."""
    root = embedded_project.root
    with (root / "spawn.toml").open("a", encoding="utf-8") as config:
        config.write('\n[tests]\ndatabase = "fresh"\n')
    folder = root / "spawn" / "migrations" / "20240101000000-t"
    folder.mkdir(parents=True)
    (folder / "up.sql").write_text("CREATE TABLE t (id int);\n")
    assert embedded_project.run("migration", "pin", folder.name).exit_code == 0
    test = root / "spawn" / "tests" / "t"
    test.mkdir(parents=True)
    (test / "test.sql").write_text("INSERT INTO t VALUES (1);\nSELECT count(*) FROM t;\n")
    assert embedded_project.run("test", "expect", "t").exit_code == 0
    assert (test / "expected").read_text() == " count \n-------\n     1\n(1 row)\n\n"
    result = embedded_project.run("test", "compare")
    assert (result.exit_code, result.stdout.splitlines()[0]) == (0, "[PASS] t")
    cleaned = embedded_project.run("test", "clean")
    assert cleaned.exit_code == 0
    assert cleaned.stdout.startswith("Dropped template spawn_tpl_")


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=80))
def test_copy_names_fit_postgresql_and_keep_the_prefix(label: str) -> None:
    from spawn_db.sqltest.fresh import COPY_PREFIX, copy_name

    name = copy_name(label)
    assert name.startswith(COPY_PREFIX)
    assert len(name.encode("utf-8")) <= 63
    assert label.startswith(name[len(COPY_PREFIX) + 9:])
