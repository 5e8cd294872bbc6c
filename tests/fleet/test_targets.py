"""Expanding a target selection (``fleet.targets``): names, ``[target_groups]`` and glob
patterns, in the order given, each target once; single-target code refuses several."""

from __future__ import annotations

from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.config import Config, Overrides, parse_config
from spawn_db.errors import ConfigError, UsageError
from spawn_db.fleet.runner import Done
from spawn_db.fleet.targets import expand, for_target, resolve_selection, run_on_targets

TARGETS = ["eu-1", "eu-2", "us-1", "us-2", "ap-1"]
GROUPS = {"eu": ["eu-*"], "us": ["us-1", "us-2"], "west": ["eu", "us"], "ap": ["ap-1"]}


def make_config(tmp_path: Path, selection: str | None = None, *, default: str = "eu-1",
                groups: dict[str, list[str]] | None = None) -> Config:
    (tmp_path / "spawn").mkdir(exist_ok=True)
    raw: dict[str, Any] = {
        "spawn_folder": "spawn", "target": default,
        "targets": {name: {"engine": "postgres-psql", "environment": name.split("-")[0],
                           "command": {"kind": "direct", "direct": ["psql", name]}}
                    for name in TARGETS},
        "target_groups": GROUPS if groups is None else groups,
    }
    return parse_config(raw, tmp_path / "spawn.toml", Overrides(target=selection))


def test_names_groups_and_patterns_expand_in_order_without_repeats(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    assert expand("us-2,eu-*", config) == ("us-2", "eu-1", "eu-2")
    assert expand("west", config) == ("eu-1", "eu-2", "us-1", "us-2")
    assert expand("ap,west,eu-1", config) == ("ap-1", "eu-1", "eu-2", "us-1", "us-2")
    assert expand("*-1", config) == ("eu-1", "us-1", "ap-1")  # spawn.toml's order
    assert expand("[ae]?-2", config) == ("eu-2",)


def test_one_target_is_as_if_named_alone_and_several_are_refused_by_target(
        tmp_path: Path) -> None:
    one = resolve_selection(make_config(tmp_path, "ap"))
    assert (one.target().name, one.environment, one.several_targets) == ("ap-1", "ap", ())
    several = resolve_selection(make_config(tmp_path, "us"))
    assert several.several_targets == ("us-1", "us-2")
    with pytest.raises(UsageError, match=r"names 2 targets \(us-1, us-2\), and this command "
                                         "works on one target at a time"):
        several.target()
    with pytest.raises(UsageError):
        _ = several.environment  # never silently the default target's environment
    each = for_target(several, "us-2")
    assert (each.target().name, each.environment) == ("us-2", "us")


def test_an_unresolved_selection_is_refused_not_taken_for_the_default(tmp_path: Path) -> None:
    config = make_config(tmp_path, "us-*")
    with pytest.raises(UsageError, match="has not been resolved"):
        config.target()


def test_the_files_own_target_may_be_a_group(tmp_path: Path) -> None:
    config = resolve_selection(make_config(tmp_path, default="west"))
    assert config.several_targets == ("eu-1", "eu-2", "us-1", "us-2")
    plain = make_config(tmp_path, default="eu-2")
    assert (plain.target_selection, plain.target().name) == (None, "eu-2")


def test_a_pattern_matching_nothing_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"the pattern 'sa-\*' matches no target"):
        resolve_selection(make_config(tmp_path, "eu-1,sa-*"))


@pytest.mark.parametrize("groups", [{"bad": []}, {"bad": "eu-1"}, {"bad": ["eu-1", 3]},
                                    {"a,b": ["eu-1"]}, {"eu-1": ["eu-2"]}])
def test_a_malformed_group_is_refused_when_the_file_loads(
        tmp_path: Path, groups: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=r"\[target_groups\]"):
        make_config(tmp_path, groups=groups)


def test_run_on_targets_gives_each_unit_its_own_target_config(tmp_path: Path) -> None:
    config = resolve_selection(make_config(tmp_path, "west"))
    report = run_on_targets(config, lambda c: Done(c.target().name, c.environment), jobs=3)
    assert [(r.name, r.summary, r.data) for r in report.results] == [
        ("eu-1", "eu-1", "eu"), ("eu-2", "eu-2", "eu"), ("us-1", "us-1", "us"),
        ("us-2", "us-2", "us")]


words = st.sampled_from([*TARGETS, *GROUPS, "eu-*", "*-2", "?s-1", "[eu]*"])


@settings(max_examples=200, deadline=None)
@given(st.lists(words, min_size=1, max_size=6))
def test_expansion_is_the_union_of_its_words_in_first_seen_order(
        tmp_path_factory: pytest.TempPathFactory, chosen: list[str]) -> None:
    config = make_config(tmp_path_factory.mktemp("c"))
    names = expand(",".join(chosen), config)
    assert len(set(names)) == len(names)
    each = [expand(word, config) for word in chosen]
    assert set(names) == set().union(*each)
    flat = [name for part in each for name in part]
    assert list(names) == sorted(set(flat), key=flat.index)
    for word, part in zip(chosen, each, strict=True):
        if word not in GROUPS:
            assert part == tuple(t for t in TARGETS if fnmatchcase(t, word))
