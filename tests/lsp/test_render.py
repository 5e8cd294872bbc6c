"""The language server's segmented, cached render gives exactly what ``spawn lint``'s
source-mapped render gives: the same text, the same template location for every
character, the same error."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.errors import SpawnError
from spawn_db.lint.source_map import SourceMap, render_mapped
from spawn_db.lsp import render
from spawn_db.render.template import RenderContext, WorkingTreeSource

PIECES = [
    "SELECT 1;", "{% set x = 2 %}", "{% set x = x + 1 %}", "SELECT {{ x }};",
    "{% if x > 3 %}\nSELECT 'big';\n{% else %}\nSELECT 'small';\n{% endif %}",
    "{% for i in range(2) %}\nINSERT INTO t VALUES ({{ i }});\n{% endfor %}",
    "{% macro m(a) %}SELECT {{ a }}, {{ x }};{% endmacro %}", "{{ m(x) if m is defined }}",
    "{%- if true %} trimmed{% endif -%}", "{{- ' left' }}", "{# comment\nover lines #}",
    "{% include 'c.sql' %}", "{% set y %}\nblock {{ x }}\n{% endset %}{{ y }}", "", "  ",
    "SELEC oops;", "{{ 'a' ~\n 'b' }}", "{% raw %}{{ raw }}\n{% endraw %}",
    "{% import 'lib.sql' as lib %}", "{{ lib.f() if lib is defined }}",
    "{% from 'lib.sql' import f %}{{ f() }}", "{{ undefined_thing }}", "{% endif %}",
    "{{ 1 / 0 if x == 4 }}", "{% if x %}", "{{ variables.n }}", "{% set s = 'str' %}",
    "{% for v in variables.names %}{{ v }},{% endfor %}", "{{ s if s is defined }}",
    "{% set l = [x, 2] %}", "{{ l | join(',') if l is defined }}", "{{ variables.gone }}",
]
DISPLAY = "spawn/migrations/20260101000000-a/up.sql"


@pytest.fixture(scope="module")
def components(tmp_path_factory: pytest.TempPathFactory) -> WorkingTreeSource:
    root = tmp_path_factory.mktemp("components")
    (root / "c.sql").write_text("-- c\n{% set inner = 1 %}SELECT {{ x | default(0) }};\n")
    (root / "lib.sql").write_text("{% macro f() %}SELECT 'f';{% endmacro %}\n")
    return WorkingTreeSource(root)


def outcome(produce: object) -> tuple[object, ...]:
    try:
        mapped = produce()  # type: ignore[operator]
    except SpawnError as exc:
        return ("error", exc.message)
    assert isinstance(mapped, SourceMap)
    return ("ok", mapped.text, [mapped.locate(i) for i in range(len(mapped.text) + 1)])


@pytest.mark.parametrize("spread", [1, 3])
@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=30),
       ending=st.sampled_from(["", "\n", "\n\n"]), crlf=st.booleans(),
       strict=st.booleans())
def test_segmented_render_is_the_whole_render(
        components: WorkingTreeSource, spread: int, pieces: list[str], ending: str,
        crlf: bool, strict: bool) -> None:
    text = "\n".join(pieces) + ending
    if crlf:
        text = text.replace("\n", "\r\n")
    context = RenderContext(env="dev", variables={"n": 3, "names": ["a", "b"]})
    context.strict = strict
    whole = outcome(lambda: render_mapped(text, DISPLAY, components, context))
    with pytest.MonkeyPatch.context() as patched:
        patched.setattr(render, "SEGMENT_SPREAD", spread)
        for _ in range(2):  # the second time from the caches
            assert outcome(lambda: render.render_fast(text, DISPLAY, components, context,
                                                      lambda: False)) == whole


def test_a_long_template_is_cut_and_an_edit_recompiles_one_segment(
        components: WorkingTreeSource) -> None:
    text = "".join(f"{{% set v{i} = {i} %}}\nSELECT {{{{ v{i} }}}};\n" for i in range(1000))
    parts = render.segments(text)
    assert 20 < len(parts) < 200
    assert "".join(p.text for p in parts) == text
    context = RenderContext(env="dev", variables={})
    render.render_fast(text, DISPLAY, components, context, lambda: False)
    before = len(render._CODE)
    edited = text.replace("SELECT {{ v500 }}", "SELECT {{ v500 + 1 }}")
    mapped = render.render_fast(edited, DISPLAY, components, context, lambda: False)
    assert len(render._CODE) == before + 1
    assert "SELECT 501;" in mapped.text
    assert str(mapped.locate(mapped.text.index("SELECT 501;"))) == f"{DISPLAY}:1002:1"


@pytest.mark.parametrize("tag", ["{% extends 'base.sql' %}", "{% block b %}{% endblock %}",
                                 "{%- macro m() %}{{ later }}{% endmacro %}"])
def test_a_template_with_blocks_or_macros_is_one_segment(tag: str) -> None:
    text = tag + "\n" + "{% set later = 1 %}\nSELECT 1;\n" * 500
    assert len(render.segments(text)) == 1


def test_a_cancelled_render_stops(components: WorkingTreeSource) -> None:
    text = "".join(f"{{% set v{i} = {i} %}}\nSELECT {{{{ v{i} }}}};\n" for i in range(300))
    with pytest.raises(render.Cancelled):
        render.render_fast(text, DISPLAY, components, RenderContext(env="dev", variables={}),
                           lambda: True)
