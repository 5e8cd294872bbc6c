"""A template cannot exhaust memory silently (issue 11, item 7).

Every operation that can multiply a size is checked before it runs and fails
with a ``TemplateError`` naming the file and line; output that streams is not
limited (a render far larger than any limit still works in constant memory).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from spawn_db.errors import TemplateError
from spawn_db.render.limits import MAX_ITEMS, MAX_LENGTH
from spawn_db.render.template import WorkingTreeSource, compile_template
from tests.helpers import SPAWN, run_spawn, spawn_env

GUARD = "(spawn's guard against exhausting memory); build large SQL in a loop, whose output " \
        "streams, instead of in one value"


def render(source: str) -> str:
    return compile_template(source, "up.sql", WorkingTreeSource(Path("/nonexistent"))).render({})


def failure(source: str) -> str:
    with pytest.raises(TemplateError) as info:
        render(source)
    return info.value.message


DOUBLE = "{% set ns = namespace(s='x') %}{% for i in range(40) %}"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{{ 'x' * 10**9 }}", "`*` would make a value of 1,000,000,000 characters"),
        ("{{ 10**9 * 'x' }}", "`*` would make a value of 1,000,000,000 characters"),
        ("{{ 'x'|safe * 10**9 }}", "`*` would make a value of 1,000,000,000 characters"),
        ("{{ [0] * 10**7 }}", "`*` would make a value of 10,000,000 items"),
        ("{{ (1, 2) * 10**6 }}", "`*` would make a value of 2,000,000 items"),
        ("{{ ['x' * 10**6] * 100 }}", "`*` would make a value of 100,000,000 characters"),
        (DOUBLE + "{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
         "`~` would make a value of 134,217,728 characters"),
        (DOUBLE + "{% set ns.s = ns.s + ns.s %}{% endfor %}",
         "`+` would make a value of 134,217,728 characters"),
        ("{% macro d(s) %}{{ s|safe }}{{ s|safe }}{% endmacro %}" + DOUBLE
         + "{% set ns.s = d(ns.s) %}{% endfor %}",
         "this block would make a value of 134,217,728 characters"),
        ("{% set b %}{% for i in range(70000) %}{{ 'x' * 1000 }}{% endfor %}{% endset %}",
         "this block would make a value of 67,108,950 characters"),
        ("{{ '%999999999d' % 1 }}", "a format width would make a value of 999,999,999"),
        ("{{ '%*d' % (999999999, 1) }}", "a format width would make a value of 999,999,999"),
        ("{{ '%999999999s'|format('a') }}", "a format width would make a value of 999,999,999"),
        ("{{ '{:>999999999}'.format(1) }}", "a format width would make a value of 999,999,999"),
        ("{{ 'x'.ljust(10**9) }}", "`str` padding would make a value of 1,000,000,000"),
        ("{{ 'x'.zfill(10**9) }}", "`str` padding would make a value of 1,000,000,000"),
        ("{{ ('\t' * 1000).expandtabs(10**6) }}", "`expandtabs` would make a value of "
                                                  "1,000,001,000"),
        ("{{ ('x' * 10**6).replace('x', 'y' * 100) }}", "`replace` would make a value of "
                                                        "100,000,000"),
        ("{{ ','.join(['x' * 10**6] * 60 + ['x' * 10**6] * 60) }}",
         "`join` would make a value of 120,000,119"),
        ("{{ (['x' * 10**6] * 60 + ['x' * 10**6] * 60)|join }}",
         "`join` would make a value of 120,000,000"),
        ("{{ ('x' * 10**6)|replace('x', 'y' * 100) }}", "`replace` would make a value of "
                                                       "100,000,000"),
        ("{{ ('x' * 10**6)|safe|replace('x', 'y' * 100) }}", "`replace` would make a value of "
                                                            "102,000,000"),
        ("{{ 'x'|center(10**9) }}", "padding to that width would make a value of 1,000,000,001"),
        ("{{ 'a\\nb'|indent(10**9) }}", "`indent` would make a value of 2,000,000,003"),
        ("{{ [1]|batch(10**9, 0)|list }}", "`batch` would make a value of 1,000,000,000 items"),
        ("{{ [1]|slice(10**9)|list }}", "`slice` would make a value of 1,000,000,000 items"),
        ("{{ ([[0] * 10**6] * 3)|sum(start=[]) }}", "`+` would make a value of 2,000,000 items"),
        ("{{ lipsum(10**6) }}", "`lipsum` would make a value of 1,000,000,000 characters"),
        ("{{ 2 ** (10**7) }}", "`**` would make a value of 20,000,000 bits"),
        ("{% set ns = namespace(n=3) %}{% for i in range(30) %}{% set ns.n = ns.n * ns.n %}"
         "{% endfor %}", "`*` would make a value of 1,661,954 bits"),
    ],
)
def test_each_amplifier_is_refused_before_it_allocates(source: str, message: str) -> None:
    message_got = failure(source)
    assert message_got.startswith(f"up.sql:1: {message}"), message_got
    assert message_got.endswith(GUARD)


def test_the_error_names_the_limit_and_what_to_do() -> None:
    assert failure("{{ 'x' * 10**9 }}") == (
        f"up.sql:1: `*` would make a value of 1,000,000,000 characters, over the limit of "
        f"{MAX_LENGTH:,} {GUARD}"
    )


def test_range_is_bounded_but_lazy() -> None:
    assert render(f"{{{{ range({MAX_ITEMS})|length }}}}") == f"{MAX_ITEMS}"
    assert render(f"{{{{ range(10, {MAX_ITEMS + 10})|last }}}}") == f"{MAX_ITEMS + 9}"
    assert failure("{{ range(10**7)|list }}") == (
        "up.sql:1: range(10000000) has 10,000,000 items, over the limit of 1,000,000 for one "
        "range (spawn's guard against exhausting memory); nest two loops instead, their "
        "output streams"
    )
    assert "has more than 2**63 items" in failure("{{ range(10**30) }}")
    assert "range(0, 10000000, 2) has 5,000,000 items" in failure("{{ range(0, 10**7, 2) }}")


def test_ordinary_values_are_untouched() -> None:
    assert render("{{ 'ab' * 3 }} {{ [1] * 2 }} {{ 'a' ~ 1 }} {{ 'a' + 'b' }} {{ 7 * 6 }}") == \
        "'ababab' ARRAY[1, 1] 'a1' 'ab' 42"
    assert render("{{ '%05d'|format(7) }} {{ '{:>4}'.format(7) }} {{ 'x'.center(5) }}") == \
        "'00007' '   7' '  x  '"
    assert render("{{ [[1], [2]]|sum(start=[]) }} {{ [1, 2]|sum }} {{ 2 ** 64 }}") == \
        "ARRAY[1, 2] 3 18446744073709551616"
    assert render("{{ 'a\nb'|indent(2) }}{{ [1, 2]|tojson(indent=2) }}") == \
        "'a\n  b''[\n  1,\n  2\n]'"


def test_the_error_points_at_the_line_inside_an_included_component(tmp_path: Path) -> None:
    assert run_spawn("init", cwd=tmp_path).exit_code == 0
    (tmp_path / "spawn" / "components" / "big.sql").write_text("SELECT 1;\n{{ 'x' * 10**10 }}\n")
    test = tmp_path / "spawn" / "tests" / "t"
    test.mkdir(parents=True)
    (test / "test.sql").write_text("SELECT 0;\n{% include 'big.sql' %}\n")
    result = run_spawn("test", "build", "t", cwd=tmp_path)
    assert result.exit_code == 1
    assert result.stderr == (
        "error: components/big.sql:2: `*` would make a value of 10,000,000,000 characters, "
        f"over the limit of {MAX_LENGTH:,} {GUARD}\n"
    )


def test_output_larger_than_any_limit_still_streams_in_little_memory(tmp_path: Path) -> None:
    """150 MB of SQL, over twice ``MAX_LENGTH``: output is never one value."""
    assert run_spawn("init", cwd=tmp_path).exit_code == 0
    test = tmp_path / "spawn" / "tests" / "big"
    test.mkdir(parents=True)
    (test / "test.sql").write_text(
        "{% set row = 'x' * 1500 %}{% for j in range(10) %}{% for i in range(10000) %}"
        "SELECT {{ row }};\n{% endfor %}{% endfor %}"
    )
    done = subprocess.run(["/usr/bin/time", "-f", "%M", *SPAWN, "test", "build", "big"],
                          cwd=tmp_path, env=spawn_env(), capture_output=True, check=False)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout) == 100_000 * len("SELECT '" + "x" * 1500 + "';\n") + 1
    assert len(done.stdout) > 2 * MAX_LENGTH
    peak_kb = int(done.stderr.decode().strip().splitlines()[-1])
    assert peak_kb < 100_000
