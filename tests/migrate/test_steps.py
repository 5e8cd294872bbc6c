"""Scripted migrations (issue 14): ``[[steps]]`` in ``migration.toml`` instead of an up.sql,
through the real ``spawn`` and the test suite's PostgreSQL."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import xxhash
from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.config import toml_string
from spawn_db.migrate.steps import Step, split_rendered
from tests.conftest import DbProject
from tests.migrate.history import history

NAME = "20240101000100-orders-total"
# Counts the rows of `orders` through SPAWN_PSQL, and notes where it ran and with what.
BACKFILL = (
    "import json, os, shlex, subprocess, sys\n"
    "psql = shlex.split(os.environ['SPAWN_PSQL'])\n"
    "subprocess.run(psql + ['-Xqc', 'UPDATE orders SET total = 7'], check=True)\n"
    "info = {k: os.environ.get(k) for k in ('SPAWN_MIGRATION', 'SPAWN_STEP', 'SPAWN_EVENT')}\n"
    "info['cwd'] = os.path.basename(os.getcwd())\n"
    "open(sys.argv[1], 'a').write(json.dumps(info) + '\\n')\n"
    "print('backfilled')\n"
)


def scripted(db_project: DbProject, steps: list[tuple[str, str | list[str]]], *,
             name: str = NAME, pin: bool = True) -> Path:
    """A scripted migration: ("sql", "steps/x.sql=<text>") or ("command", argv) per step."""
    folder = db_project.spawn_dir / "migrations" / name
    (folder / "steps").mkdir(parents=True)
    toml = []
    for kind, value in steps:
        if kind == "sql":
            assert isinstance(value, str)
            path, text = value.split("=", 1)
            (folder / path).write_text(text, encoding="utf-8")
            toml.append(f"[[steps]]\nsql = {toml_string(path)}\n")
        else:
            argv = ", ".join(toml_string(a) for a in value)
            toml.append(f"[[steps]]\ncommand = [{argv}]\n")
    (folder / "migration.toml").write_text("\n".join(toml), encoding="utf-8")
    if pin:
        assert db_project.run("migration", "pin", name).exit_code == 0
    return folder


def three_steps(db_project: DbProject, log: Path, *, fail_command: bool = False) -> Path:
    command = [sys.executable, "-c", "import sys; print('no luck', file=sys.stderr); "
               "sys.exit(4)"] if fail_command else [sys.executable, "backfill.py", str(log)]
    folder = scripted(db_project, [
        ("sql", "steps/01-add.sql=CREATE TABLE orders (id int, total int);\n"
                "INSERT INTO orders VALUES (1, NULL), (2, NULL);\n"),
        ("command", command),
        ("sql", "steps/02-not-null.sql=ALTER TABLE orders ALTER total SET NOT NULL;\n"),
    ])
    (folder / "backfill.py").write_text(BACKFILL)
    return folder


def rows(db_project: DbProject) -> list[str]:
    return db_project.database.query(
        "SELECT h.status_id_status || '|' || encode(h.checksum, 'hex') || '|' || "
        "h.status_note FROM _spawn.migration_history h JOIN _spawn.migration m ON "
        "m.migration_id = h.migration_id_migration WHERE m.namespace = 'default' "
        "ORDER BY h.migration_history_id").splitlines()


def test_steps_run_in_order_with_one_pair_of_rows_and_the_builds_checksum(
    db_project: DbProject, tmp_path: Path
) -> None:
    log = tmp_path / "log.jsonl"
    three_steps(db_project, log)
    build = db_project.run("migration", "build", NAME)
    assert build.exit_code == 0, build.stderr
    assert build.stdout == (
        "-- spawn step 1/3: steps/01-add.sql\n"
        "CREATE TABLE orders (id int, total int);\n"
        "INSERT INTO orders VALUES (1, NULL), (2, NULL);\n"
        f"-- spawn step 2/3: command {json.dumps([sys.executable, 'backfill.py', str(log)])}\n"
        "-- spawn step 3/3: steps/02-not-null.sql\n"
        "ALTER TABLE orders ALTER total SET NOT NULL;\n")
    assert not log.exists(), "nothing runs at render time"
    dry = db_project.run("migration", "apply", "--dry-run")
    assert dry.exit_code == 0, dry.stderr
    assert not log.exists(), "nothing runs at render time"

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert "backfilled" in result.stderr
    # The command ran between the SQL steps (the NOT NULL needs its UPDATE), from the
    # migration's folder, with the SPAWN_* variables.
    assert db_project.database.query("SELECT string_agg(total::text, ',' ORDER BY id) "
                                     "FROM orders") == "7,7"
    assert [json.loads(line) for line in log.read_text().splitlines()] == [
        {"SPAWN_MIGRATION": NAME, "SPAWN_STEP": "2", "SPAWN_EVENT": "step", "cwd": NAME}]
    checksum = xxhash.xxh3_128(build.stdout.rstrip("\n").encode()).hexdigest()
    assert rows(db_project) == [f"ATTEMPTED|{checksum}|", f"SUCCESS|{checksum}|"]
    status = db_project.run("migration", "status")
    assert status.exit_code == 0 and "✓ Applied" in status.stdout, status.stdout


@pytest.mark.parametrize("change", ["sql", "argv"])
def test_status_sees_a_changed_step_sql_or_command(db_project: DbProject, tmp_path: Path,
                                                   change: str) -> None:
    folder = three_steps(db_project, tmp_path / "log.jsonl")
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    if change == "sql":
        (folder / "steps" / "02-not-null.sql").write_text(
            "ALTER TABLE orders ALTER total DROP NOT NULL;\n")
    else:
        toml = (folder / "migration.toml").read_text()
        (folder / "migration.toml").write_text(toml.replace("backfill.py", "other.py"))

    status = db_project.run("migration", "status")

    assert status.exit_code == 1
    assert f"{NAME} now renders (from its pin) to checksum" in status.stdout + status.stderr


def test_a_failing_command_step_records_failure_naming_the_step(db_project: DbProject,
                                                                tmp_path: Path) -> None:
    three_steps(db_project, tmp_path / "log.jsonl", fail_command=True)

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    assert f"error: migration {NAME} failed (0 of 1 applied before it)" in result.stderr
    note = f"step 2: command {sys.executable} -c "
    assert note in result.stderr and "exited with code 4: no luck" in result.stderr
    statuses = [r.split("|")[0] for r in rows(db_project)]
    assert statuses == ["ATTEMPTED", "FAILURE"]
    assert rows(db_project)[1].split("|", 2)[2].startswith(note)
    assert rows(db_project)[1].endswith("exited with code 4: no luck")
    # Step 1 committed, step 3 never ran.
    assert db_project.database.query("SELECT attnotnull FROM pg_attribute WHERE attrelid = "
                                     "'orders'::regclass AND attname = 'total'") == "f"


def test_a_failing_sql_step_records_failure_naming_the_step(db_project: DbProject) -> None:
    scripted(db_project, [("sql", "steps/01.sql=CREATE TABLE t (id int);\n"),
                          ("sql", "steps/02.sql=SELECT 1/0;\n"),
                          ("command", [sys.executable, "-c", "open('ran', 'w')"])])

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 1
    failure = rows(db_project)[-1].split("|", 2)
    assert failure[0] == "FAILURE"
    assert failure[2].startswith("step 2: ERROR:  division by zero")
    assert db_project.database.query("SELECT to_regclass('t') IS NOT NULL") == "t"
    assert not (db_project.spawn_dir / "migrations" / NAME / "ran").exists()


def test_steps_render_from_the_pin(db_project: DbProject) -> None:
    db_project.add_component("cols.sql", "id int")
    scripted(db_project, [("sql", "steps/01.sql=CREATE TABLE p ({% include 'cols.sql' %});\n")])
    db_project.add_component("cols.sql", "id int, changed int")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    assert db_project.database.query(
        "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute "
        "WHERE attrelid = 'p'::regclass AND attnum > 0") == "id"
    assert history(db_project.database) == [(NAME, "APPLY", "ATTEMPTED"),
                                            (NAME, "APPLY", "SUCCESS")]


@pytest.mark.parametrize(("toml", "message"), [
    ('[[steps]]\nsql = "../up.sql"\n',
     "[[steps]] #1 `sql` = '../up.sql' must name a .sql template inside the migration's "
     "steps/ folder"),
    ('[[steps]]\nsql = "steps/../../x.sql"\n', "[[steps]] #1 `sql` = 'steps/../../x.sql' must"),
    ('[[steps]]\ncommand = "python backfill.py"\n',
     "[[steps]] #1 `command` must be a non-empty list of non-empty strings"),
    ('[[steps]]\nsql = "steps/a.sql"\ncommand = ["x"]\n', "[[steps]] #1 needs exactly one of"),
    ("steps = 3\n", "`steps` must be a list of [[steps]] tables"),
])
def test_bad_steps_are_a_settings_error_naming_the_key(db_project: DbProject, toml: str,
                                                       message: str) -> None:
    folder = db_project.spawn_dir / "migrations" / NAME
    folder.mkdir(parents=True)
    (folder / "migration.toml").write_text(toml)

    result = db_project.run("migration", "apply", "--yes", "--no-pin")

    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {folder / 'migration.toml'}: {message}")
    assert "Traceback" not in result.stderr


def test_steps_beside_an_up_sql_are_refused(db_project: DbProject) -> None:
    folder = scripted(db_project, [("sql", "steps/01.sql=SELECT 1;\n")], pin=False)
    (folder / "up.sql").write_text("SELECT 2;\n")

    result = db_project.run("migration", "apply", "--yes", "--no-pin")

    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {folder / 'migration.toml'}: [[steps]] and an up.sql in one migration; a "
        "scripted migration has no up.sql: move its SQL into a step (steps/NN.sql) or drop "
        "the [[steps]]\n")


_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)


@settings(max_examples=100, deadline=None)
@given(pieces=st.lists(st.one_of(st.tuples(st.just("sql"), _TEXT),
                                 st.tuples(st.just("command"),
                                           st.lists(_TEXT.filter(bool), min_size=1,
                                                    max_size=3))),
                       min_size=1, max_size=5))
def test_a_render_splits_back_into_exactly_its_steps(
        pieces: list[tuple[str, str | list[str]]]) -> None:
    steps = [Step(n, sql=f"steps/{n}.sql") if kind == "sql" else Step(n, command=tuple(value))
             for n, (kind, value) in enumerate(pieces, 1)]
    texts = [value if kind == "sql" and isinstance(value, str) else "" for kind, value in pieces]
    rendered = "".join(step.header(len(steps)) + text for step, text in zip(steps, texts,
                                                                           strict=True))
    # Jinja drops the render's last newline.
    cut = rendered[:-1] if rendered.endswith("\n") else rendered
    split = split_rendered(cut, steps)
    assert split[:-1] == texts[:-1]
    assert split[-1] in (texts[-1], texts[-1][:-1])


def test_a_scripted_migration_reverts_with_its_down_sql(db_project: DbProject) -> None:
    folder = scripted(db_project, [("sql", "steps/01.sql=CREATE TABLE r (id int);\n"),
                                   ("sql", "steps/02.sql=INSERT INTO r VALUES (1);\n")],
                      pin=False)
    (folder / "down.sql").write_text("DROP TABLE r;\n")
    assert db_project.run("migration", "pin", NAME).exit_code == 0
    assert db_project.run("migration", "apply", "--yes").exit_code == 0
    assert db_project.database.query("SELECT count(*) FROM r") == "1"

    result = db_project.run("migration", "revert", NAME, "--yes")

    assert result.exit_code == 0, result.stderr
    assert db_project.database.query("SELECT to_regclass('r') IS NULL") == "t"
    assert history(db_project.database)[-2:] == [(NAME, "REVERT", "ATTEMPTED"),
                                                 (NAME, "REVERT", "SUCCESS")]
