"""read_csv, read_jsonl and copy_csv: the fixed dialect, the COPY text, the errors (issue 19)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spawn_db.errors import DataFileError, TemplateError
from spawn_db.render import data
from spawn_db.render.template import WorkingTreeSource, compile_template


def write(root: Path, relpath: str, content: bytes | str) -> None:
    path = root / relpath
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)


def render(source: str, components: Path, **context: Any) -> str:
    return compile_template(source, "up.sql", WorkingTreeSource(components)).render(context)


def render_error(source: str, components: Path) -> str:
    with pytest.raises(TemplateError) as caught:
        render(source, components)
    return caught.value.message


# -- read_csv ----------------------------------------------------------------------------------


def test_read_csv_rows_are_mappings_from_the_header(tmp_path: Path) -> None:
    write(tmp_path, "data/users.csv",
          b'\xef\xbb\xbfid,name,note\r\n1,"Ann ""A"", Jr.",\r\n2,"two\nlines",""\r\n3,C\\D,x')
    out = render('{% for r in read_csv("data/users.csv") %}'
                 "({{ r.id }}, {{ r.name }}, {{ r.note }});\n{% endfor %}", tmp_path)
    assert out == ("('1', 'Ann \"A\", Jr.', NULL);\n"
                   "('2', 'two\nlines', '');\n"
                   "('3',  E'C\\\\D', 'x');\n")


def test_read_csv_without_header_gives_lists_and_is_a_filter_too(tmp_path: Path) -> None:
    write(tmp_path, "data/t.tsv", "a\tb\n1\t\n")
    assert render('{{ "data/t.tsv"|read_csv("\\t", false) }}', tmp_path) == \
        "ARRAY[ARRAY['a', 'b'], ARRAY['1', NULL]]"
    assert render('{{ read_csv("data/t.tsv", delimiter="\\t", header=false)|length }}',
                  tmp_path) == "2"


def test_read_csv_of_an_empty_file_is_empty(tmp_path: Path) -> None:
    write(tmp_path, "data/empty.csv", "")
    assert render('{{ read_csv("data/empty.csv")|length }}', tmp_path) == "0"


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"a,b\n1,2\n3\n",
         "components/data/bad.csv:3: 1 field, but the header has 2; every record needs the "
         "same number of fields (quote a value that holds the delimiter)"),
        (b"a,b\n1,2\n\n",
         "components/data/bad.csv:3: an empty line (in CSV a record of one empty field) where "
         "2 fields are expected; remove the line"),
        (b"a,b\n1,2\n3,\xff\n",
         "components/data/bad.csv:3: not UTF-8 (byte 0xff: invalid start byte); save the "
         "file as UTF-8"),
        (b'a,b\n1,"open\n2,3\n',
         "components/data/bad.csv:2: a quoted value that starts on this line is never closed; "
         "add the closing double quote (a quote inside a value is written twice)"),
        (b'a,b\n1,x"y"\n',
         'components/data/bad.csv:2: field 2 has a quote inside an unquoted value, text after '
         'a closing quote, or a carriage return; enclose the whole value in double quotes and '
         'double the quotes inside it ("a ""b"" c")'),
        (b'a,b\n"1"x,2\n',
         'components/data/bad.csv:2: field 1 has a quote inside an unquoted value, text after '
         'a closing quote, or a carriage return; enclose the whole value in double quotes and '
         'double the quotes inside it ("a ""b"" c")'),
        (b"a,b\n1\r2,3\n",
         "components/data/bad.csv:2: a carriage return outside quotes that does not end the "
         "line; quote the value or end lines with LF or CRLF"),
        (b"a,b\n1,\x00\n",
         "components/data/bad.csv:2: a NUL byte, which PostgreSQL text cannot hold; remove it"),
        (b"a,,c\n",
         "components/data/bad.csv:1: header field 2 is empty; name every column (or pass "
         "header=false)"),
        (b"a,b,a\n",
         "components/data/bad.csv:1: the header names 'a' twice; column names must be unique"),
    ],
)
def test_bad_csv_names_the_template_file_and_line(tmp_path: Path, content: bytes,
                                                  problem: str) -> None:
    write(tmp_path, "data/bad.csv", content)
    assert render_error('{{ read_csv("data/bad.csv") }}', tmp_path) == f"up.sql:1: {problem}"


def test_the_line_of_a_problem_is_counted_across_read_blocks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "READ_BLOCK", 16)
    rows = "".join(f'{i},"v{i}"\n' for i in range(40))
    write(tmp_path, "data/bad.csv", "a,b\n" + rows + "1,2,3\n")
    assert render_error('{{ read_csv("data/bad.csv") }}', tmp_path).startswith(
        "up.sql:1: components/data/bad.csv:42: 3 fields, but the header has 2")
    (tmp_path / "data/utf.csv").write_bytes(b"a,b\n" + rows.encode() + b"\xc3\xa9,\n1,\xff\n")
    assert render_error('{{ read_csv("data/utf.csv") }}', tmp_path).startswith(
        "up.sql:1: components/data/utf.csv:43: not UTF-8 (byte 0xff")


@pytest.mark.parametrize("delimiter", ['"', "", ";;", "\n", "é"])
def test_a_delimiter_copy_cannot_use_is_refused(tmp_path: Path, delimiter: str) -> None:
    write(tmp_path, "data/a.csv", "a\n")
    message = render_error('{{ read_csv("data/a.csv", d) }}'.replace("d)", f"{delimiter!r})"),
                           tmp_path)
    assert message == (f"up.sql:1: delimiter {delimiter!r} refused: use one ASCII character "
                       "other than a double quote, a line break or NUL (\",\" by default, "
                       "\";\" or \"\\t\" are common)")


@pytest.mark.parametrize("path", ["../secret.csv", "/etc/passwd", "data/../../x.csv"])
def test_paths_may_not_leave_components(tmp_path: Path, path: str) -> None:
    components = tmp_path / "components"
    write(components, "data/a.csv", "a\n")
    write(tmp_path, "secret.csv", "a\n")
    for function in ("read_csv", "read_jsonl", "copy_csv"):
        call = f'{function}("{path}"' + (', "t")' if function == "copy_csv" else ")")
        assert "refused" in render_error("{{ " + call + " }}", components)


def test_a_missing_file_is_an_error_naming_it(tmp_path: Path) -> None:
    assert render_error('x\n{{ copy_csv("data/none.csv", "t") }}', tmp_path) == (
        "up.sql:2: file 'data/none.csv' not found in components/; check the path (it is "
        "relative to components/)")


# -- read_jsonl --------------------------------------------------------------------------------


def test_read_jsonl_reads_one_value_a_line_skipping_blank_lines(tmp_path: Path) -> None:
    write(tmp_path, "data/events.jsonl",
          '\ufeff{"id": 1, "tags": ["a"]}\r\n\n  \n{"id": 2, "tags": []}\n"text"')
    out = render('{% for e in read_jsonl("data/events.jsonl") %}{{ e }};{% endfor %}',
                 tmp_path)
    assert out == "'{\"id\":1,\"tags\":[\"a\"]}';'{\"id\":2,\"tags\":[]}';'text';"


def test_bad_jsonl_names_file_line_and_column(tmp_path: Path) -> None:
    write(tmp_path, "data/events.jsonl", '{"id": 1}\n\n{"id": 2,}\n')
    assert render_error('{{ read_jsonl("data/events.jsonl") }}', tmp_path) == (
        "up.sql:1: components/data/events.jsonl:3: invalid JSON at column 10: Expecting "
        "property name enclosed in double quotes (JSON Lines: one complete value per line)")


# -- copy_csv ----------------------------------------------------------------------------------


def test_copy_csv_takes_columns_from_the_header(tmp_path: Path) -> None:
    write(tmp_path, "data/users.csv", 'id,"full ""name"""\r\n1,"Ann, A"\r\n2,\r\n')
    out = render('BEGIN;\n{{ copy_csv("data/users.csv", "app users") }}\nCOMMIT;\n', tmp_path)
    assert out == ('BEGIN;\nCOPY "app users" ("id", "full ""name""") FROM STDIN WITH '
                   '(FORMAT csv);\n1,"Ann, A"\n2,\n\\.\n\nCOMMIT;')


def test_copy_csv_with_columns_a_qualified_table_and_a_delimiter(tmp_path: Path) -> None:
    write(tmp_path, "data/u.csv", "x;y\n1;2\n")
    out = render('{{ copy_csv("data/u.csv", ["app", "users"], ["id", "n"], ";") }}', tmp_path)
    assert out == ('COPY "app"."users" ("id", "n") FROM STDIN WITH (FORMAT csv, '
                   "DELIMITER ';');\n1;2\n\\.\n")


def test_copy_csv_without_header_copies_every_record_into_all_columns(tmp_path: Path) -> None:
    write(tmp_path, "data/u.csv", "1,2\n3,4")
    out = render('{{ copy_csv("data/u.csv", "t", header=false) }}', tmp_path)
    assert out == 'COPY "t" FROM STDIN WITH (FORMAT csv);\n1,2\n3,4\n\\.\n'


def test_a_record_that_is_the_end_of_data_marker_is_quoted(tmp_path: Path) -> None:
    write(tmp_path, "data/u.csv", 'v\n\\.\nx\n"\\."\n\\.\r\n')
    out = render('{{ copy_csv("data/u.csv", "t") }}', tmp_path)
    assert out == 'COPY "t" ("v") FROM STDIN WITH (FORMAT csv);\n"\\."\nx\n"\\."\n"\\."\n\\.\n'


def test_a_quoted_value_with_a_line_psql_would_end_on_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "data/u.csv", 'v\n"a\n\\.\nb"\n')
    assert render_error('{{ copy_csv("data/u.csv", "t") }}', tmp_path) == (
        "up.sql: components/data/u.csv:2: a quoted value holds a line that is exactly `\\.`, "
        "which psql reads as the end of COPY data whatever the quotes say; change that line "
        "of the value")


def test_copy_csv_errors_name_the_csv_line(tmp_path: Path) -> None:
    write(tmp_path, "data/u.csv", "a,b\n1,2\n3,4,5\n")
    assert render_error('{{ copy_csv("data/u.csv", "t") }}', tmp_path) == (
        "up.sql: components/data/u.csv:3: 3 fields, but the header has 2; every record needs "
        "the same number of fields (quote a value that holds the delimiter)")
    assert render_error('{{ copy_csv("data/u.csv", "t", ["a"]) }}', tmp_path) == (
        "up.sql: components/data/u.csv:1: 2 fields, but copy_csv was given columns for 1; "
        "every record needs the same number of fields (quote a value that holds the "
        "delimiter)")
    write(tmp_path, "data/empty.csv", "")
    assert render_error('{{ copy_csv("data/empty.csv", "t") }}', tmp_path) == (
        "up.sql: components/data/empty.csv: the file is empty, so it has no header line; add "
        "one, or pass header=false")


@pytest.mark.parametrize(
    ("call", "problem"),
    [
        ('copy_csv("data/u.csv", "")',
         "copy_csv table '' refused: give a table name, or a list such as [\"schema\", "
         "\"table\"] for a qualified name"),
        ('copy_csv("data/u.csv", "t", [])',
         "copy_csv columns [] refused: give a non-empty list of column names, or leave it out "
         "to take the header's"),
    ],
)
def test_copy_csv_refuses_bad_names(tmp_path: Path, call: str, problem: str) -> None:
    write(tmp_path, "data/u.csv", "a\n")
    assert render_error("{{ " + call + " }}", tmp_path) == f"up.sql:1: {problem}"


@pytest.mark.parametrize(
    "source",
    ['{{ copy_csv("data/u.csv", "t")|upper }}',
     '{% set x = copy_csv("data/u.csv", "t") %}nothing',
     '{{ copy_csv("data/u.csv", "t")|truncate(20) }}'],
)
def test_copy_csv_output_changed_or_dropped_is_an_error(tmp_path: Path, source: str) -> None:
    write(tmp_path, "data/u.csv", "a\n1\n")
    assert render_error(source, tmp_path) == (
        "up.sql: the result of copy_csv(...) was not written as it was returned (a filter "
        "changed it, or it was stored and never written); write it with {{ copy_csv(...) }} "
        "on a line of its own")


def test_copy_csv_through_a_macro_and_twice(tmp_path: Path) -> None:
    write(tmp_path, "data/u.csv", "a\n1\n")
    out = render('{% macro load(t) %}-- {{ t|safe }}\n{{ copy_csv("data/u.csv", t) }}'
                 '{% endmacro %}{{ load("x") }}{% set y = copy_csv("data/u.csv", "y") %}'
                 "{{ y }}{{ y }}", tmp_path)
    once = 'COPY "{}" ("a") FROM STDIN WITH (FORMAT csv);\n1\n\\.\n'
    assert out == "-- x\n" + once.format("x") + once.format("y") * 2


def test_copy_csv_streams_in_blocks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data, "READ_BLOCK", 64)
    monkeypatch.setattr(data, "OUTPUT_BLOCK", 100)
    rows = [f"{i},{'x' * (i % 7)}" if i % 5 else f'{i},"q""{i}"' for i in range(200)]
    write(tmp_path, "data/u.csv", "a,b\n" + "\n".join(rows) + "\n")
    renderer = compile_template('{{ copy_csv("data/u.csv", "t") }}', "up.sql",
                                WorkingTreeSource(tmp_path))
    chunks = list(renderer.generate({}))
    assert len(chunks) > 10
    assert max(len(c) for c in chunks) < 400
    assert "".join(chunks) == ('COPY "t" ("a", "b") FROM STDIN WITH (FORMAT csv);\n'
                               + "\n".join(rows) + "\n\\.\n")


# -- the dialect, for any table ----------------------------------------------------------------

VALUES = st.one_of(st.none(), st.text(
    alphabet=st.sampled_from(['a', 'é', ' ', ',', ';', '"', '\n', '\r', '\\', '.', '1']),
    max_size=8))


def encode(rows: list[list[str | None]], delimiter: str, crlf: bool) -> bytes:
    """A CSV writer by the dialect's rules: None unquoted and empty, every string quoted
    when it must be (and sometimes when it need not)."""
    def field(value: str | None) -> str:
        if value is None:
            return ""
        if value == "" or any(c in value for c in f'"\r\n{delimiter}') or value == "\\.":
            return '"' + value.replace('"', '""') + '"'
        return value
    end = "\r\n" if crlf else "\n"
    return "".join(delimiter.join(map(field, row)) + end for row in rows).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(width=st.integers(1, 4), data_=st.data(), delimiter=st.sampled_from([",", ";", "\t"]),
       crlf=st.booleans())
def test_read_csv_reads_back_what_the_dialect_writes(width: int, data_: st.DataObject,
                                                    delimiter: str, crlf: bool) -> None:
    rows = data_.draw(st.lists(st.lists(VALUES, min_size=width, max_size=width), max_size=6))
    rows = [r for r in rows if r != [None]]  # a lone NULL field is an empty line
    raw = encode(rows, delimiter, crlf)
    assert data.read_csv(io.BytesIO(raw), "t.csv", delimiter, header=False) == rows
    spec = data.CopySpec("t.csv", "t.csv", '"t"', None, delimiter, False)
    ends_data = any(v is not None and ("\n\\.\n" in v or "\n\\.\r\n" in v)
                    for r in rows for v in r)
    try:
        copied = "".join(data.copy_chunks(spec, io.BytesIO(raw)))
    except DataFileError as exc:
        assert ends_data and "a line that is exactly `\\.`" in exc.message
        return
    assert not ends_data
    body = copied.split("\n", 1)[1].removesuffix("\\.\n")
    assert "\n\\.\n" not in "\n" + body
    assert data.read_csv(io.BytesIO(body.encode()), "t.csv", delimiter, header=False) == rows


def test_errors_are_data_file_errors_outside_templates() -> None:
    with pytest.raises(DataFileError, match=r"^x.csv:2: 1 field, but the first record has 2"):
        data.read_csv(io.BytesIO(b"1,2\n3\n"), "x.csv", header=False)
