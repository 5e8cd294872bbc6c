"""Tenant names and schema names, over any input: a name is accepted only when it is safe
everywhere it goes (schema, namespace, file, shell argument), a refusal names it and its
source, and the schema template's fast path renders exactly what Jinja renders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.config import Config, Overrides, parse_config
from spawn_db.errors import ConfigError
from spawn_db.fleet.tenants import check_name, make_tenants, schema_namer

SAFE = re.compile(r"[a-z0-9][a-z0-9_]{0,47}")


def config_with(tmp_path: Path, schema: str) -> Config:
    (tmp_path / "spawn").mkdir(exist_ok=True)
    raw = {"spawn_folder": "spawn", "tenants": {"list": [], "schema": schema}}
    return parse_config(raw, tmp_path / "spawn.toml", Overrides())


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), st.from_regex(SAFE, fullmatch=True)))
def test_a_name_is_accepted_exactly_when_it_is_safe(name: str) -> None:
    if SAFE.fullmatch(name):
        assert check_name(name, "the list") == name
        return
    with pytest.raises(ConfigError) as refused:
        check_name(name, "[tenants] list in spawn.toml")
    assert str(refused.value).startswith(
        f"tenant name {name!r} from [tenants] list in spawn.toml is refused: ")


@settings(max_examples=60, deadline=None)
@given(prefix=st.text(st.characters(blacklist_characters="{}\x00", codec="utf-8"),
                      max_size=8),
       suffix=st.text(st.characters(blacklist_characters="{}\x00", codec="utf-8"),
                      max_size=8),
       spaces=st.sampled_from(["", " ", "  "]),
       name=st.from_regex(re.compile(r"[a-z0-9][a-z0-9_]{0,20}"), fullmatch=True))
def test_the_simple_schema_template_renders_as_jinja_would(
        tmp_path_factory: pytest.TempPathFactory, prefix: str, suffix: str, spaces: str,
        name: str) -> None:
    import jinja2

    template = f"{prefix}{{{{{spaces}tenant{spaces}}}}}{suffix}"
    config = config_with(tmp_path_factory.mktemp("p"), template)
    expected = jinja2.Environment().from_string(template).render(tenant=name).strip()
    fine = bool(expected) and len(expected.encode()) <= 63 and \
        not any(ord(c) < 32 for c in expected)
    if fine:
        assert schema_namer(config)(name) == expected
    else:
        with pytest.raises(ConfigError, match="is not a schema name of 1 to 63 bytes"):
            schema_namer(config)(name)


def test_a_jinja_schema_template_and_its_errors(tmp_path: Path) -> None:
    config = config_with(tmp_path, "t_{{ tenant | upper }}")
    assert [t.schema for t in make_tenants(config, ["a1", "b2"], "the list")] == \
        ["t_A1", "t_B2"]
    broken = config_with(tmp_path, "t_{{ tenant.nope.x }}")
    with pytest.raises(ConfigError, match=r"cannot be rendered for tenant 'a1': "):
        make_tenants(broken, ["a1"], "the list")
    with pytest.raises(ConfigError, match="is listed twice"):
        make_tenants(config, ["a1", "a1"], "the list")
