"""Byte order marks and line breaks reach PostgreSQL as the file has them (issue 11, item 25).

A UTF-8 BOM at the start of a template (migration, test or component) is
dropped: it is never SQL, and psql would send it as an invisible syntax error.
Line breaks are kept as they are: a CRLF file renders CRLF, so a string literal
that spans lines keeps its CR bytes, on the compiled path and the plain-text
fast path alike.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
from pathlib import Path

import jinja2
from hypothesis import given
from hypothesis import strategies as st

from spawn_db.render.plaintext import plain_output
from spawn_db.render.template import WorkingTreeSource, compile_template
from tests.conftest import DbProject
from tests.helpers import SPAWN, spawn_env

BOM = "\ufeff"


def rows(project: DbProject) -> list[str]:
    """``id|hex of body`` for every row of the table the migrations fill."""
    return project.database.query(
        "SELECT id || '|' || encode(convert_to(body, 'UTF8'), 'hex') FROM nl ORDER BY id"
    ).splitlines()


def hexed(text: str) -> str:
    return text.encode().hex()


def test_crlf_literals_and_boms_reach_the_server_unchanged(db_project: DbProject) -> None:
    db_project.add_component("part.sql", BOM + "INSERT INTO nl VALUES (5, 'e\r\nf');\r\n")
    db_project.add_component("lf.sql", "INSERT INTO nl VALUES (6, 'g\nh');\n")
    db_project.add_migration("table", BOM + "CREATE TABLE nl (id int, body text);\r\n")
    db_project.add_migration("compiled", (
        "INSERT INTO nl VALUES (1, 'a\r\nb');\r\n"
        "INSERT INTO nl VALUES (2, {{ 'c\r\nd' }});\r\n"
        "{% include 'part.sql' %}\r\n{% include 'lf.sql' %}\r\n"
    ))
    db_project.add_migration("plain", BOM + "INSERT INTO nl VALUES (3, 'x\r\ny\r\n');\r\n")
    db_project.add_migration("cr", "INSERT INTO nl VALUES (4, 'p\rq');\r{# c #}\r")

    result = db_project.run("migration", "apply", "--yes")

    assert result.exit_code == 0, result.stderr
    bodies = ["a\r\nb", "c\r\nd", "x\r\ny\r\n", "p\rq", "e\r\nf", "g\nh"]
    assert rows(db_project) == [f"{n}|{hexed(body)}" for n, body in enumerate(bodies, 1)]


def test_a_test_file_with_a_bom_and_crlf_builds_byte_for_byte(db_project: DbProject) -> None:
    db_project.add_component("c.sql", BOM + "SELECT 'c\r\n';\r\n")
    db_project.add_test("t", BOM + "SELECT 'a\r\nb';\r\n{% include 'c.sql' %}\r\n")
    done = subprocess.run([*SPAWN, "test", "build", "t"], cwd=db_project.root,
                          capture_output=True, env=spawn_env(), check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout == b"SELECT 'a\r\nb';\r\nSELECT 'c\r\n';\n"


def test_spawn_test_run_sends_no_bom(db_project: DbProject) -> None:
    db_project.add_test("t", BOM + "SELECT length(E'a\\r\\nb') = length('a\r\nb') AS same;\r\n")
    expect = db_project.run("test", "expect", "t")
    assert expect.exit_code == 0, expect.stderr
    expected = (db_project.spawn_dir / "tests" / "t" / "expected").read_text()
    assert "ERROR" not in expected
    assert " t\n" in expected


def render(text: str, components: Path) -> str:
    return compile_template(text, "up.sql", WorkingTreeSource(components)).render({})


def jinja_reference(text: str) -> str:
    """Plain Jinja, told to write every line break as the template's first one."""
    first = re.search(r"\r\n|\r|\n", text)
    newline = first.group() if first else "\n"
    env = jinja2.Environment(keep_trailing_newline=False,
                             newline_sequence=newline)  # type: ignore[arg-type]
    return env.from_string(text).render()


LINES = st.text(alphabet=st.sampled_from(list("ab {}%#'\"\\\r\n\t;é")))


@given(LINES.filter(lambda t: "{{" not in t and "{%" not in t and "{#" not in t))
def test_the_fast_path_and_jinja_agree_on_plain_text(text: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "plain.sql").write_bytes(text.encode())
        included = render('{% include "plain.sql" %}', Path(tmp))
    assert included == plain_output(text) == jinja_reference(text)
    assert render(text + " {# c #}", Path(tmp)) == jinja_reference(text + " {# c #}")


def test_a_file_that_mixes_line_breaks_gets_its_first_kind_on_both_paths(
    tmp_path: Path,
) -> None:
    text = "SELECT 'a\r\nb\nc\rd';\r\n"
    (tmp_path / "mixed.sql").write_text(text)
    expected = "SELECT 'a\r\nb\r\nc\r\nd';"
    assert plain_output(text) == expected
    assert render('{% include "mixed.sql" %}', tmp_path) == expected
    assert render(text.replace("SELECT", "{{ 'SELECT' | safe }}"), tmp_path) == expected


@given(st.sampled_from(["\n", "\r\n", "\r"]), st.lists(st.text(alphabet="ab' ;"), max_size=6))
def test_a_file_with_one_kind_of_line_break_keeps_it_exactly(nl: str, lines: list[str]) -> None:
    text = nl.join(lines)
    with tempfile.TemporaryDirectory() as tmp:
        compiled = render(text + "{# c #}" + nl, Path(tmp))
        literal = render("{{ '" + nl.join(["x", "y"]) + "' }}", Path(tmp))
    assert compiled == text
    assert plain_output(BOM + text + nl) == text
    assert literal == "'x" + nl + "y'"


def test_only_a_leading_bom_is_dropped(tmp_path: Path) -> None:
    assert plain_output(BOM + "a" + BOM + "b") == "a" + BOM + "b"
    assert render(BOM + "a{{ 1 }}" + BOM, tmp_path) == "a1" + BOM
    assert render('{{ read_json("j.json") }}', _write(tmp_path, "j.json", BOM + '{"k": 1}')) \
        == "'{\"k\":1}'"
    assert render('{{ read_file("j.json") }}', tmp_path) == "'\\xefbbbf7b226b223a20317d'::bytea"


def _write(folder: Path, name: str, text: str) -> Path:
    (folder / name).write_text(text, encoding="utf-8")
    return folder
