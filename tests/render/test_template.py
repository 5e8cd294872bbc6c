"""The template engine: the escaping table, pass-through of SQL, filters, loader, errors."""

from __future__ import annotations

import base64
import datetime
import uuid
from pathlib import Path
from typing import Any

import pytest

from spawn_db.errors import TemplateError
from spawn_db.render.template import WorkingTreeSource, compile_template


def render(source: str, components: Path | None = None, **context: Any) -> str:
    root = components or Path("/nonexistent-components")
    return compile_template(source, "up.sql", WorkingTreeSource(root)).render(context)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("it's", "'it''s'"),
        ("C:\\dir", " E'C:\\\\dir'"),
        (42, "42"),
        (-7, "-7"),
        (1.25, "1.25"),
        (float("nan"), "'NaN'::float8"),
        (float("inf"), "'Infinity'::float8"),
        (True, "TRUE"),
        (False, "FALSE"),
        (None, "NULL"),
        (b"\x00\xffA", "'\\x00ff41'::bytea"),
        ([1, "a", None], "ARRAY[1, 'a', NULL]"),
        (("x", [True]), "ARRAY['x', ARRAY[TRUE]]"),
        ({"k": "v's", "n": [1, 2]}, "'{\"k\":\"v''s\",\"n\":[1,2]}'"),
        (datetime.date(2026, 1, 31), "'2026-01-31'"),
    ],
)
def test_escaping_table(value: Any, expected: str) -> None:
    assert render("{{ v }}", v=value) == expected


def test_undefined_renders_empty() -> None:
    assert render("[{{ nothing }}]") == "[]"


def test_constant_strings_are_escaped_like_variables() -> None:
    assert render("{{ \"it's\" }} {{ 'a\\\\b' }}") == "'it''s'  E'a\\\\b'"


def test_safe_values_pass_through() -> None:
    assert render("{{ v|safe }}", v="now()") == "now()"


def test_macro_caller_and_set_block_output_pass_through() -> None:
    source = (
        "{% macro ins(name) %}INSERT INTO t VALUES ({{ name }});{% endmacro %}"
        "{% macro wrap() %}BEGIN; {{ caller() }} COMMIT;{% endmacro %}"
        "{{ ins(\"O'Neil\") }}|{% call wrap() %}SELECT {{ 1 }};{% endcall %}"
    )
    assert render(source) == "INSERT INTO t VALUES ('O''Neil');|BEGIN; SELECT 1; COMMIT;"


def test_concatenation_with_sql_escapes_only_the_values() -> None:
    source = "{% macro f() %}now(){% endmacro %}{{ f() ~ ' + ' ~ x }}|{{ 'a' ~ x }}"
    assert render(source, x="o'k") == "now()' + ''o''k'|'ao''k'"


def test_super_passes_parent_block_through(tmp_path: Path) -> None:
    (tmp_path / "base.sql").write_text("{% block body %}SELECT {{ 'base' }};{% endblock %}")
    source = '{% extends "base.sql" %}{% block body %}{{ super() }} SELECT 2;{% endblock %}'
    assert render(source, tmp_path) == "SELECT 'base'; SELECT 2;"


def test_include_output_passes_through_and_drops_one_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "f.sql").write_text("SELECT {{ 'x' }};\n")
    assert render('{% include "f.sql" %}|', tmp_path) == "SELECT 'x';|"
    assert render("A\n") == "A"


@pytest.mark.parametrize("flt", ["escape", "e", "forceescape"])
def test_html_escape_filters_are_refused_with_pointer_to_sql_filters(flt: str) -> None:
    with pytest.raises(TemplateError) as info:
        render("SELECT 1;\n{{ v|" + flt + " }}", v="x")
    assert info.value.message.startswith("up.sql:2: the `" + flt + "` filter escapes for HTML")
    assert "escape_literal" in info.value.message
    assert "escape_identifier" in info.value.message


def test_identifier_and_literal_filters() -> None:
    assert render('{{ t|escape_identifier }}.{{ c|escape_literal }}', t='a"b', c="x\\y") == (
        '"a""b". E\'x\\\\y\''
    )


def test_bytes_filters(tmp_path: Path) -> None:
    (tmp_path / "blob.bin").write_bytes(b"\xff\xfe ok")
    out = render('{{ "blob.bin"|read_file|base64_encode }}|{{ "blob.bin"|read_file'
                 '|to_string_lossy }}', tmp_path)
    encoded = base64.b64encode(b"\xff\xfe ok").decode()
    assert out == f"'{encoded}'|'\ufffd\ufffd ok'"


def test_parse_filters() -> None:
    assert render('{{ (s|parse_json).a }}', s='{"a": [1]}') == "ARRAY[1]"
    assert render('{{ (s|parse_toml).a }}', s="a = 'x'") == "'x'"
    assert render('{{ (s|parse_yaml).a }}', s="a: true") == "TRUE"


def test_uuid_functions() -> None:
    assert render('{{ gen_uuid_v5("example.com") }}') == (
        f"'{uuid.uuid5(uuid.NAMESPACE_DNS, 'example.com')}'"
    )
    v4 = uuid.UUID(render("{{ gen_uuid_v4() }}").strip("'"))
    assert v4.version == 4
    v7 = uuid.UUID(render("{{ gen_uuid_v7() }}").strip("'"))
    assert v7.version == 7
    assert v7.variant == uuid.RFC_4122
    millis = int.from_bytes(v7.bytes[:6], "big")
    assert abs(millis - datetime.datetime.now(datetime.UTC).timestamp() * 1000) < 60_000


def test_builtin_filters_stay_available() -> None:
    assert render("{{ v|upper }} {{ v|length }} {{ [3,1,2]|sort|join(',') }}", v="ab") == (
        "'AB' 2 '1,2,3'"
    )


@pytest.mark.parametrize(
    "source",
    ['{% include "../secret.sql" %}', '{% include "/etc/passwd" %}',
     '{{ "../x"|read_file }}', '{{ "a/../../x"|read_json }}', '{% import "/abs.sql" as m %}'],
)
def test_paths_leaving_components_are_refused(source: str, tmp_path: Path) -> None:
    (tmp_path / "components").mkdir()
    (tmp_path / "secret.sql").write_text("SECRET")
    with pytest.raises(TemplateError) as info:
        render("SELECT 1;\n" + source, tmp_path / "components")
    message = info.value.message
    assert message.startswith("up.sql:2: ")
    assert "refused" in message


def test_missing_include_names_file_line_and_path(tmp_path: Path) -> None:
    with pytest.raises(TemplateError) as info:
        render('A\nB\n{% include "nope/missing.sql" %}', tmp_path)
    assert info.value.message == (
        "up.sql:3: component 'nope/missing.sql' not found in components/; check the path "
        "(it is relative to components/)"
    )


def test_error_inside_a_component_names_the_component(tmp_path: Path) -> None:
    (tmp_path / "inner.sql").write_text("ok\n{{ 1 // 0 }}")
    with pytest.raises(TemplateError) as info:
        render('{% include "inner.sql" %}', tmp_path)
    assert info.value.message.startswith("components/inner.sql:2: ZeroDivisionError")


def test_syntax_error_names_file_and_line() -> None:
    with pytest.raises(TemplateError) as info:
        compile_template("SELECT 1;\n{% if %}\n", "migrations/x/up.sql", WorkingTreeSource(Path()))
    assert info.value.message.startswith("migrations/x/up.sql:2: template syntax error:")
    assert info.value.line == 2


def test_sandbox_blocks_python_internals() -> None:
    with pytest.raises(TemplateError) as info:
        render("{{ ''.__class__.__mro__[1].__subclasses__() }}")
    assert "unsafe" in info.value.message or "not safely" in info.value.message or \
        "__class__" in info.value.message


def test_rendering_streams_in_chunks() -> None:
    renderer = compile_template(
        "{% for i in range(100000) %}SELECT {{ i }};\n{% endfor %}", "big.sql",
        WorkingTreeSource(Path()),
    )
    chunks = renderer.generate({})
    first = next(chunks)
    assert first == "SELECT "
    assert sum(len(c) for c in chunks) > 1_000_000


INJECTION = "1; DROP TABLE t; --'"


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ('{{ "%s"|safe|format(x) }}', "'1; DROP TABLE t; --'''"),
        ('{{ ["now()"|safe, x]|join(", ") }}', "now(), '1; DROP TABLE t; --'''"),
        ('{{ "a = "|safe + x }}', "a = '1; DROP TABLE t; --'''"),
        ('{{ "a x"|safe|replace("x", x) }}', "a '1; DROP TABLE t; --'''"),
        ("{{ x|tojson }}", "'\"1; DROP TABLE t; --''\"'"),
        ('{% macro m() %}M{% endmacro %}{{ m() ~ x }}', "M'1; DROP TABLE t; --'''"),
        ("{% set b %}B{% endset %}{{ b ~ x }}", "B'1; DROP TABLE t; --'''"),
        ('{{ [x, "b"]|join(",") }}', "'1; DROP TABLE t; --'',b'"),
    ],
)
def test_values_combined_with_sql_are_escaped_for_sql_not_html(source: str, expected: str) -> None:
    assert render(source, x=INJECTION) == expected


def test_constant_folding_keeps_safe_marking() -> None:
    assert render('{{ "now()"|safe ~ " + 1" }}') == render(
        '{% set f = "now()"|safe %}{{ f ~ " + 1" }}'
    ) == "now()' + 1'"


def test_python_spellings_never_leak() -> None:
    assert render("{{ none|safe }} {{ true|safe }} {{ none|escape_literal }}") == "NULL TRUE NULL"


def test_array_edge_cases_are_valid_sql() -> None:
    assert render("{{ [] }} {{ [u, 1] }}") == "'{}' ARRAY[NULL, 1]"


def test_range_allows_more_than_jinjas_100000_items() -> None:
    assert render("{{ range(200000)|length }}") == "200000"


def test_components_with_template_syntax_are_compiled(tmp_path: Path) -> None:
    (tmp_path / "a.sql").write_text("{# note #}SELECT {{ 1 + 1 }};\n")
    (tmp_path / "b.sql").write_text("SELECT '{' || '}';\r\n")
    assert render('{% include "a.sql" %}|{% include "b.sql" %}', tmp_path) == (
        "SELECT 2;|SELECT '{' || '}';"
    )
