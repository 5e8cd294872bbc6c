"""The mapped render is byte for byte the normal render, and literal text maps back to the
line it was written on."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.errors import TemplateError
from spawn_db.lint.source_map import render_mapped
from spawn_db.render.template import RenderContext, WorkingTreeSource, compile_template

COMPONENT = "-- component\nSELECT 'c;' AS c;\n"
PIECES = [
    "SELECT 1;", "  INSERT INTO t VALUES ('x');", "{% if true %}", "{% endif %}",
    "{{ 42 }}", "{{ 'o''k' }}", "{%- if false %}no{% endif -%}", "{# note #}",
    "{% include 'c.sql' %}", "{% for i in range(2) %}v{{ i }}{% endfor %}",
    "{% set x %}captured{% endset %}{{ x }}", "-- plain comment", "",
    "{% macro m(a) %}[{{ a }}]{% endmacro %}{{ m(1) }}", "é ünïcode;",
]


def source(tmp_path: Path) -> WorkingTreeSource:
    (tmp_path / "components").mkdir(exist_ok=True)
    (tmp_path / "components" / "c.sql").write_text(COMPONENT, encoding="utf-8")
    return WorkingTreeSource(tmp_path / "components")


@settings(max_examples=150, deadline=None)
@given(lines=st.lists(st.sampled_from(PIECES), max_size=12),
       newline=st.sampled_from(["\n", "\r\n"]), trailing=st.booleans())
def test_mapped_render_is_the_normal_render(tmp_path_factory: object, lines: list[str],
                                            newline: str, trailing: bool) -> None:
    tmp = Path(str(tmp_path_factory.mktemp("sm")))  # type: ignore[attr-defined]
    components = source(tmp)
    text = newline.join(lines) + (newline if trailing else "")
    try:
        normal = compile_template(text, "up.sql", components).render(RenderContext())
    except TemplateError as exc:  # unbalanced blocks: the mapped render refuses the same way
        with pytest.raises(TemplateError) as mapped_error:
            render_mapped(text, "up.sql", components, RenderContext())
        assert mapped_error.value.message == exc.message
        return
    mapped = render_mapped(text, "up.sql", components, RenderContext())
    assert mapped.text == normal


@settings(max_examples=100, deadline=None)
@given(lines=st.lists(st.sampled_from(["SELECT 1;", "SELECT 'a' AS x;", "-- c", "{# n #}",
                                       "{% if true %}"]), min_size=1, max_size=15))
def test_literal_lines_locate_to_their_source_line(tmp_path_factory: object,
                                                   lines: list[str]) -> None:
    """Every rendered line that is a whole literal line of the template points at it."""
    tmp = Path(str(tmp_path_factory.mktemp("sm")))  # type: ignore[attr-defined]
    lines = lines + ["{% endif %}"] * lines.count("{% if true %}")
    text = "\n".join(lines) + "\n"
    mapped = render_mapped(text, "up.sql", source(tmp), RenderContext())
    offset = 0
    for rendered in mapped.text.split("\n"):
        if rendered.startswith(("SELECT", "--")):
            location = mapped.locate(offset)
            assert lines[location.line - 1] == rendered
            assert location.column == 1
        offset += len(rendered) + 1


def test_component_lines_carry_the_include_chain(tmp_path: Path) -> None:
    components = source(tmp_path)
    text = "BEGIN;\n\n{% include 'c.sql' %}\nCOMMIT;\n"
    mapped = render_mapped(text, "up.sql", components, RenderContext())
    select = mapped.text.index("SELECT")
    location = mapped.locate(select + 7)
    assert (str(location), location.chain) == ("components/c.sql:2:8", (("up.sql", 3),))
    commit = mapped.locate(mapped.text.index("COMMIT"))
    assert (str(commit), commit.chain) == ("up.sql:4:1", ())
