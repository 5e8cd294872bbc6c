"""The facade methods and keywords the CLI is rebuilt on (issue 20): ``adopt``, ``plan``,
``expect``, ``render``, ``pin(changed=...)``, ``[[sources]]`` names, and the ``reporter`` /
``confirm`` / ``each`` / ``sink`` keywords, each compared with what the real ``spawn``
command does on a real database."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from spawn_db import Project
from spawn_db.api import NullTestReporter, TestReport
from spawn_db.errors import MigrationFailed, PreviousAttemptFailed, UsageError
from tests.api.test_project import add
from tests.conftest import DbProject
from tests.migrate.history import history

SOURCES = '\n[[sources]]\nname = "audit"\npath = "../shared/audit"\n'


class Recorder:
    """An ``ApplyReporter`` that keeps what it heard."""

    def __init__(self) -> None:
        self.events: list[tuple[str, ...]] = []
        self.printed: list[str] = []

    def waiting_for_lock(self, holders: Sequence[object], waited: float) -> None:
        self.events.append(("waiting",))

    def started(self, name: str, position: int, total: int, elapsed: float) -> None:
        self.events.append(("started", name, f"{position}/{total}"))

    def finished(self, outcome: Any, position: int, total: int, elapsed: float) -> None:
        self.events.append(("finished", outcome.name, f"{position}/{total}"))

    def output(self, text: str) -> None:
        self.printed.append(text)


class TestRecorder(NullTestReporter):
    """A ``TestReporter`` that keeps the order of what it heard."""

    __test__ = False

    def __init__(self) -> None:
        self.events: list[str] = []

    def running(self, names: Sequence[str]) -> None:
        self.events.append(f"running {','.join(names)}")

    def started(self, name: str) -> None:
        self.events.append(f"started {name}")

    def ended(self, name: str) -> None:
        self.events.append(f"ended {name}")

    def result(self, result: Any) -> None:
        self.events.append(f"result {result.name}")

    def stopped(self) -> None:
        self.events.append("stopped")

    def finished(self, report: TestReport) -> None:
        self.events.append(f"finished {len(report.outcomes)}")


@pytest.fixture
def three(db_project: DbProject) -> tuple[DbProject, list[str]]:
    names = [add(db_project, "a", "CREATE TABLE a (id int);\n", "DROP TABLE a;\n"),
             add(db_project, "b", "CREATE TABLE b (id int);\n", "DROP TABLE b;\n"),
             add(db_project, "c", "CREATE TABLE c (id int);\n", "DROP TABLE c;\n")]
    return db_project, names


def saying_no(asked: list[Any], what: Any) -> bool:
    """A ``confirm`` that notes what it was asked about and says no."""
    asked.append(what)
    return False


def cli(project: DbProject, *args: str, code: int = 0) -> Any:
    done = project.run(*args)
    assert done.exit_code == code, done.stderr
    return done


# -- apply, adopt, revert ---------------------------------------------------------------------


def test_apply_reports_progress_and_asks_like_the_cli(
        three: tuple[DbProject, list[str]]) -> None:
    project_dir, names = three
    project = Project.load(project_dir.root)
    asked: list[tuple[str, ...]] = []

    refused = project.apply(confirm=lambda plan: saying_no(asked, plan.to_run))
    assert refused.cancelled and refused.applied == []
    assert asked == [tuple(names)]
    assert project_dir.database.query(
        "SELECT count(*) FROM pg_tables WHERE tablename IN ('a', 'b', 'c')") == "0"

    recorder = Recorder()
    result = project.apply(names[0], reporter=recorder, confirm=lambda plan: True)
    assert recorder.events == [("started", names[0], "1/1"), ("finished", names[0], "1/1")]
    assert [o.name for o in result.applied] == [names[0]]
    shown = cli(project_dir, "migration", "apply", "--yes")
    assert [line.split()[2] for line in shown.stderr.splitlines()
            if line.startswith("[")] == names[1:]
    assert [m.state for m in project.status().migrations] == ["applied"] * 3


def test_plan_keeps_the_refusal_the_cli_ends_with(db_project: DbProject) -> None:
    broken = add(db_project, "broken", "SELECT 1/0;\n")
    later = add(db_project, "later", "SELECT 1;\n")
    project = Project.load(db_project.root)
    with pytest.raises(MigrationFailed):
        project.apply()
    dry = project.plan()
    assert dry.plan.blocked == broken and dry.plan.to_run == ()
    assert isinstance(dry.refusal, PreviousAttemptFailed)
    shown = cli(db_project, "migration", "apply", "--dry-run", code=dry.refusal.exit_code)
    assert shown.stderr.endswith(f"error: {dry.refusal.message}\n")
    with pytest.raises(PreviousAttemptFailed) as raised:
        project.apply(dry_run=True)
    assert raised.value.message == dry.refusal.message
    assert later not in dry.plan.already_applied


def test_plan_streams_each_migration_with_its_sql(three: tuple[DbProject, list[str]]) -> None:
    project_dir, names = three
    seen: dict[str, str] = {}
    dry = Project.load(project_dir.root).plan(
        names[1], with_requires=False,
        each=lambda item, sql: seen.__setitem__(item.name, sql.read().decode()))
    shown = json.loads(cli(project_dir, "migration", "apply", names[1], "--dry-run", "--sql",
                           "--format", "json").stdout)
    assert seen == {row["name"]: row["sql"] for row in shown["to_apply"]} \
        == {names[1]: "CREATE TABLE b (id int);"}
    assert [m.checksum for m in dry.migrations] == [row["checksum"] for row in shown["to_apply"]]


def test_adopt_records_what_migration_adopt_records(three: tuple[DbProject, list[str]]) -> None:
    project_dir, names = three
    project = Project.load(project_dir.root)
    asked: list[Sequence[str]] = []

    cancelled = project.adopt(confirm=lambda found: saying_no(asked, list(found)))
    assert cancelled.cancelled and cancelled.adopted == () and asked == [names]
    assert project.adopt(names[0], description="built by hand").adopted == (names[0],)
    cli(project_dir, "migration", "adopt", names[1], "--description", "built by hand")
    again = project.adopt(names[0])
    shown = cli(project_dir, "migration", "adopt", names[0])

    assert again.adopted == () and again.already_applied == (names[0],)
    assert shown.stderr == f"Migration {names[0]} is already applied; nothing recorded.\n"
    rows = history(project_dir.database)
    assert rows == [(names[0], "ADOPT", "SUCCESS"), (names[1], "ADOPT", "SUCCESS")]
    assert project_dir.database.query(
        "SELECT string_agg(DISTINCT description, ',') FROM _spawn.migration_history "
        "WHERE activity_id_activity = 'ADOPT'") == "built by hand"
    assert [m.state for m in project.status().migrations] == ["adopted", "adopted", "pending"]


def test_revert_reports_asks_and_streams_its_dry_run(three: tuple[DbProject, list[str]]) -> None:
    project_dir, names = three
    project = Project.load(project_dir.root)
    project.apply()
    seen: list[tuple[str, str]] = []
    dry = project.revert(steps=2, dry_run=True,
                         each=lambda item, sql: seen.append((item.name, sql.read().decode())))
    shown = json.loads(cli(project_dir, "migration", "revert", "--steps", "2", "--dry-run",
                           "--format", "json").stdout)
    assert seen == [(row["name"], row["sql"]) for row in shown["to_revert"]] \
        == [(names[2], "DROP TABLE c;"), (names[1], "DROP TABLE b;")]
    assert dry.plan.applied == shown["applied"] == 3

    assert project.revert(steps=2, confirm=lambda plan: False).cancelled
    recorder = Recorder()
    done = project.revert(steps=2, reporter=recorder, confirm=lambda plan: True)
    assert [o.name for o in done.reverted] == [names[2], names[1]]
    assert [e[:2] for e in recorder.events] == [
        ("started", names[2]), ("finished", names[2]), ("started", names[1]),
        ("finished", names[1])]
    assert [m.state for m in project.status().migrations] == ["applied", "reverted",
                                                              "reverted"]


# -- build, pin -------------------------------------------------------------------------------


def test_render_streams_and_warns_as_migration_build_does(db_project: DbProject) -> None:
    db_project.add_component("cols.sql", "id int")
    name = add(db_project, "t", "CREATE TABLE t ({% include 'cols.sql' %});\n",
               "DROP TABLE t; -- {% include 'cols.sql' %}\n")
    db_project.add_component("cols.sql", "id bigint")
    project = Project.load(db_project.root)
    for down in (False, True):
        warnings: list[str] = []
        chunks = list(project.render("t", pinned=False, down=down, warn=warnings.append))
        args = ["migration", "build", "t", *(["--down"] if down else [])]
        shown = cli(db_project, *args)
        assert "".join(chunks) + "\n" == shown.stdout
        assert [f"warning: {w}\n" for w in warnings] == [shown.stderr]
        assert project.build(name, pinned=False, down=down) == "".join(chunks)
    quiet: list[str] = []
    assert "".join(project.render(name, warn=quiet.append)) == "CREATE TABLE t (id int);"
    assert quiet == []


def test_pin_changed_repins_what_migration_pin_changed_repins(db_project: DbProject) -> None:
    db_project.add_component("x.sql", "SELECT 1;")
    pinned = add(db_project, "p", "{% include 'x.sql' %}\n")
    unpinned = add(db_project, "u", "SELECT 2;\n", pin=False)
    db_project.add_component("x.sql", "SELECT 10;")
    project = Project.load(db_project.root)

    batch = project.pin(unpinned=False, changed=True)

    assert batch.repinned == (pinned,) and batch.pinned == ()
    assert not (db_project.spawn_dir / "migrations" / unpinned / "lock.toml").exists()
    shown = cli(db_project, "migration", "pin", "--changed")
    assert shown.stderr == "Nothing to pin: no migration is pinned to older components.\n"
    assert project.pin(unpinned=True, changed=True).pinned == (unpinned,)
    with pytest.raises(UsageError, match="drop them to pin only p"):
        project.pin("p", changed=True)


def test_build_and_pin_find_a_source_migration_by_its_qualified_name(
        db_project: DbProject) -> None:
    audit = db_project.root.parent / "shared" / "audit"
    for folder in ("components", "migrations", "pinned"):
        (audit / folder).mkdir(parents=True)
    with db_project.config_path.open("a", encoding="utf-8") as file:
        file.write(SOURCES)
    (audit / "components" / "stamp.sql").write_text("SELECT 'audit v1';\n")
    (audit / "migrations" / "20250101000000-create-stamp").mkdir()
    (audit / "migrations" / "20250101000000-create-stamp" / "up.sql").write_text(
        '{% include "stamp.sql" %}\n')
    main_pins = sorted(p.name for p in (db_project.spawn_dir / "pinned").iterdir())
    project = Project.load(db_project.root)

    batch = project.pin("audit:create-stamp")

    assert batch.pinned == ("audit:20250101000000-create-stamp",)
    assert (audit / "migrations" / "20250101000000-create-stamp" / "lock.toml").read_text() \
        == f'pin = "{batch.root}"\n'
    assert sorted(p.name for p in (db_project.spawn_dir / "pinned").iterdir()) == main_pins
    (audit / "components" / "stamp.sql").write_text("SELECT 'audit v2';\n")
    assert project.build("audit:create-stamp") == "SELECT 'audit v1';" == cli(
        db_project, "migration", "build", "--pinned", "audit:create-stamp").stdout.rstrip()
    assert project.build("audit:20250101000000-create-stamp", pinned=False) \
        == "SELECT 'audit v2';"
    assert project.pin("audit:create-stamp", force=True).repinned == (
        "audit:20250101000000-create-stamp",)
    assert cli(db_project, "migration", "pin", "audit:create-stamp").stdout.strip() \
        == project.pin("audit:create-stamp").root
    project.apply()
    assert db_project.database.query(
        "SELECT string_agg(m.name, ',') FROM _spawn.migration m WHERE namespace = 'audit'") \
        == "20250101000000-create-stamp"


# -- golden-file tests ------------------------------------------------------------------------


def test_expect_writes_what_test_expect_writes(db_project: DbProject) -> None:
    db_project.add_test("one", "SELECT 1 AS one;\n")
    db_project.add_test("two", "SELECT 2 AS two;\n")
    project = Project.load(db_project.root)
    expected = db_project.spawn_dir / "tests" / "one" / "expected"

    asked: list[Sequence[str]] = []
    refused = project.expect(confirm=lambda names: saying_no(asked, list(names)))
    assert refused.cancelled and asked == [["one", "two"]] and not expected.exists()

    recorder = TestRecorder()
    report = project.expect(reporter=recorder)
    assert [r.name for r in report.results] == ["one", "two"] and report.failed == ()
    assert recorder.events == ["running one,two", "started one", "ended one", "result one",
                               "started two", "ended two", "result two", "stopped"]
    written = expected.read_bytes()
    expected.unlink()
    shown = cli(db_project, "test", "expect", "one")
    assert expected.read_bytes() == written == b" one \n-----\n   1\n(1 row)\n\n"
    assert shown.stdout == "Wrote spawn/tests/one/expected (5 lines)\n"
    assert project.compare().passed


def test_compare_and_run_test_report_as_they_go(db_project: DbProject) -> None:
    db_project.add_test("one", "SELECT 1 AS one;\n")
    project = Project.load(db_project.root)
    project.expect()
    recorder = TestRecorder()
    report = project.compare(reporter=recorder)
    assert report.passed
    assert recorder.events == ["running one", "started one", "ended one", "result one",
                               "stopped", "finished 1"]

    streamed: list[bytes | None] = []
    recorder = TestRecorder()
    run = project.run_test("one", reporter=recorder, sink=streamed.append)
    assert b"".join(d for d in streamed if d) == cli(db_project, "test", "run",
                                                     "one").stdout.encode()
    assert streamed[-1] is None and run.name == "one"
    assert recorder.events == ["running one", "started one", "ended one", "stopped",
                               "result one"]


def test_hook_output_reaches_the_reporter(db_project: DbProject) -> None:
    with db_project.config_path.open("a", encoding="utf-8") as file:
        file.write('\n[[hooks.after_apply]]\ncommand = ["echo", "applied it"]\n')
    add(db_project, "a", "SELECT 1;\n")
    recorder = Recorder()
    Project.load(db_project.root).apply(reporter=recorder)
    assert [text for text in recorder.printed if "applied it" in text] != []


# -- tenants ----------------------------------------------------------------------------------


def test_tenants_go_through_apply_and_revert_as_with_the_cli(db_project: DbProject) -> None:
    from spawn_db import TenantOptions
    from tests.fleet.test_tenants import add as add_tenanted
    from tests.fleet.test_tenants import schemas, set_tenants, tenant_list

    set_tenants(db_project, tenant_list(["acme", "globex"]))
    add_tenanted(db_project, "t", up="CREATE TABLE public.shared (id int);\n",
                 tenant="CREATE TABLE t (id int);\n", down="DROP TABLE public.shared;\n",
                 tenant_down="DROP TABLE t;\n")
    project = Project.load(db_project.root)
    sizes: list[int] = []

    result = project.apply(tenants="acme", tenant_options=TenantOptions(
        progress=lambda total: _Counting(sizes, total)))

    report: Any = result.after_shared
    assert [(r.name, r.state) for r in report.results] == [("acme", "ok")]
    assert sizes == [1]
    assert schemas(db_project.database) == ["tenant_acme"]
    shown = cli(db_project, "migration", "apply", "--yes")  # the default: every tenant
    assert schemas(db_project.database) == ["tenant_acme", "tenant_globex"]
    assert "globex" in shown.stdout + shown.stderr and "acme" not in shown.stdout
    heard: list[Any] = []
    done = project.revert(tenant_options=TenantOptions(report=heard.append))
    assert [o.name for o in done.reverted] == [result.plan.to_run[0]]
    assert [sorted(r.name for r in found.results) for found in heard] == [["acme", "globex"]]
    assert db_project.database.query(
        "SELECT count(*) FROM pg_tables WHERE tablename IN ('t', 'shared')") == "0"


class _Counting:
    """A tenant progress bar that notes how many tenants it was made for."""

    def __init__(self, sizes: list[int], total: int) -> None:
        sizes.append(total)

    def __enter__(self) -> _Counting:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def unit_started(self, name: str) -> None:
        pass

    def unit_finished(self, result: object, done: int, total: int) -> None:
        pass
