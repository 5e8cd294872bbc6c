"""The planner (``migrate/plan.py``) and ``migration.toml`` parsing, without a database."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.errors import DependencyCycle, MigrationSettingsError, PlanRefused
from spawn_db.migrate.plan import (
    PlanRequest,
    applied_out_of_order,
    plan,
    topological_order,
)
from spawn_db.migrate.settings import MigrationSettings, find_cycle, load_all, parse_settings
from spawn_db.migrate.tracking import HistoryRow


def row(name: str, history_id: int, status: str = "SUCCESS", activity: str = "APPLY"
        ) -> HistoryRow:
    return HistoryRow(name, "default", history_id, activity, status, "", None, "", "", "", "",
                      0.0)


def needs(*names: str) -> MigrationSettings:
    return MigrationSettings(requires=names)


# -- topological order ---------------------------------------------------------------------


def test_ties_go_by_name_and_a_migration_waits_for_its_requirements() -> None:
    settings = {"a": needs("c"), "b": MigrationSettings()}

    assert topological_order(["a", "b", "c"], settings) == ["b", "c", "a"]


@st.composite
def dags(draw: st.DrawFn) -> tuple[list[str], dict[str, MigrationSettings]]:
    """Names in a random order; each may require names that come earlier in a hidden order
    (so the graph has no cycle)."""
    count = draw(st.integers(min_value=0, max_value=25))
    hidden = draw(st.permutations([f"m{i:02d}" for i in range(count)]))
    settings = {}
    for index, name in enumerate(hidden):
        earlier = hidden[:index]
        required = draw(st.lists(st.sampled_from(earlier), unique=True, max_size=3)) \
            if earlier else []
        settings[name] = needs(*required)
    return sorted(hidden), settings


@given(dags())
@settings(max_examples=200, deadline=None)
def test_the_order_respects_every_requirement_and_is_otherwise_by_name(
    graph: tuple[list[str], dict[str, MigrationSettings]],
) -> None:
    names, settings = graph
    ordered = topological_order(names, settings)

    assert sorted(ordered) == names
    position = {name: i for i, name in enumerate(ordered)}
    for name, found in settings.items():
        assert all(position[r] < position[name] for r in found.requires)
    # Smallest-name-first: whenever a name is followed by a smaller one, the smaller one
    # was waiting for something placed in between.
    for i in range(len(ordered) - 1):
        if ordered[i + 1] < ordered[i]:
            assert settings[ordered[i + 1]].requires
    assert find_cycle({n: s.requires for n, s in settings.items()}) is None


def test_a_cycle_is_found_and_printed_in_order() -> None:
    edges = {"a": ("b",), "b": ("c",), "c": ("a",), "d": ()}

    assert find_cycle(edges) == ["a", "b", "c", "a"]


def test_a_long_chain_does_not_recurse() -> None:
    names = [f"m{i:05d}" for i in range(20000)]
    edges = {n: ((names[i - 1],) if i else ()) for i, n in enumerate(names)}

    assert find_cycle(edges) is None
    assert topological_order(reversed(names), {n: needs(*e) for n, e in edges.items()}) == names


# -- the plan ------------------------------------------------------------------------------


def test_a_requirement_applied_later_by_name_is_run_first() -> None:
    settings = {"a": needs("b")}

    assert plan(["a", "b"], settings, {}, PlanRequest()).to_run == ("b", "a")


def test_a_named_migration_with_an_unapplied_requirement_is_refused_naming_the_fix() -> None:
    with pytest.raises(PlanRefused) as refused:
        plan(["a", "b"], {"b": needs("a")}, {}, PlanRequest("b"))

    assert str(refused.value) == (
        "migration b requires a, which is not applied; run `spawn migration apply b "
        "--with-requires` to apply both, or apply a first")


def test_with_requires_brings_the_transitive_requirements_in_order() -> None:
    settings = {"c": needs("b"), "b": needs("a")}
    states = {"a": row("a", 1)}

    assert plan(["a", "b", "c", "d"], settings, states,
                PlanRequest("c", with_requires=True)).to_run == ("b", "c")


def test_conflicts_refuse_both_ways() -> None:
    settings = {"new": MigrationSettings(conflicts=("old",))}
    with pytest.raises(PlanRefused, match="migration new conflicts with old, which is applied"):
        plan(["new", "old"], settings, {"old": row("old", 1)}, PlanRequest())
    with pytest.raises(PlanRefused, match="migration old conflicts with new, which is applied"):
        plan(["new", "old"], settings, {"new": row("new", 1)}, PlanRequest())
    with pytest.raises(PlanRefused, match="which this plan applies first"):
        plan(["new", "old"], settings, {}, PlanRequest())


def test_strict_order_refuses_an_old_pending_migration_unless_it_says_out_of_order() -> None:
    states = {"b": row("b", 1)}
    request = PlanRequest(strict_order=True)

    with pytest.raises(PlanRefused) as refused:
        plan(["a", "b"], {}, states, request)
    assert str(refused.value).startswith("migration a is older than b, which is already applied")

    allowed = plan(["a", "b"], {"a": MigrationSettings(out_of_order=True)}, states, request)
    assert (allowed.to_run, allowed.out_of_order) == (("a",), ("a",))
    loose = plan(["a", "b"], {}, states, PlanRequest())
    assert (loose.to_run, loose.out_of_order) == (("a",), ("a",))


def test_drafts_are_skipped_and_refused_by_name_without_allow_draft() -> None:
    settings = {"b": MigrationSettings(draft=True)}

    everything = plan(["a", "b"], settings, {}, PlanRequest())
    assert (everything.to_run, everything.skipped_drafts) == (("a",), ("b",))
    with pytest.raises(PlanRefused, match="is a draft"):
        plan(["a", "b"], settings, {}, PlanRequest("b"))
    with pytest.raises(PlanRefused, match="refused in environment 'prod'"):
        plan(["a", "b"], settings, {}, PlanRequest("b", allow_draft=True, environment="prod"))
    assert plan(["a", "b"], settings, {}, PlanRequest("b", allow_draft=True,
                                                      environment="dev")).to_run == ("b",)


def test_a_migration_requiring_a_draft_cannot_be_planned() -> None:
    settings = {"a": MigrationSettings(draft=True), "b": needs("a")}

    with pytest.raises(PlanRefused, match="requires a, which is a draft and not applied"):
        plan(["a", "b"], settings, {}, PlanRequest())


def test_a_reverted_migration_is_planned_again_and_a_failed_revert_blocks() -> None:
    reverted = {"a": row("a", 2, activity="REVERT")}
    assert plan(["a"], {}, reverted, PlanRequest()).to_run == ("a",)

    failed = {"a": row("a", 2, status="FAILURE", activity="REVERT")}
    blocked = plan(["a", "b"], {}, failed, PlanRequest())
    assert (blocked.to_run, blocked.blocked, blocked.blocked_activity) == ((), "a", "REVERT")


def test_out_of_order_history_is_read_from_the_history_ids() -> None:
    states = {"a": row("a", 3), "b": row("b", 1), "c": row("c", 2)}

    assert applied_out_of_order(states) == {"a"}


# -- migration.toml ------------------------------------------------------------------------


def test_unknown_keys_warn_with_the_closest_known_key() -> None:
    found = parse_settings({"require": ["x"], "draft": True}, Path("m/migration.toml"))

    assert found.warnings == ("warning: unknown key `require` in m/migration.toml (ignored; "
                              "the closest known key is `requires`)",)
    assert found.draft is True


@pytest.mark.parametrize(("raw", "message"), [
    ({"draft": "yes"}, "m/migration.toml: `draft` must be true or false, not 'yes'"),
    ({"requires": "a"}, "m/migration.toml: `requires` must be a list of migration names, not "
                        "'a'; write requires = [\"20260101090000-create-customers\"]"),
    ({"description": 3}, "m/migration.toml: `description` must be a string, not 3; write "
                         "description = \"...\""),
])
def test_wrong_types_are_errors_naming_file_and_key(raw: dict[str, object], message: str
                                                    ) -> None:
    with pytest.raises(MigrationSettingsError) as error:
        parse_settings(raw, Path("m/migration.toml"))

    assert str(error.value) == message
    assert error.value.exit_code == 2


def test_load_all_refuses_unknown_references_and_cycles(tmp_path: Path) -> None:
    from spawn_db.config import Overrides, load_config

    (tmp_path / "spawn" / "migrations").mkdir(parents=True)
    (tmp_path / "spawn.toml").write_text('spawn_folder = "spawn"\n')
    config = load_config(Overrides(config_file=str(tmp_path / "spawn.toml")))
    for name, text in (("20240101000000-a", 'requires = ["20240101000001-b"]\n'),
                       ("20240101000001-b", 'requires = ["20240101000000-a"]\n')):
        folder = config.migrations_dir / name
        folder.mkdir()
        (folder / "up.sql").write_text("SELECT 1;\n")
        (folder / "migration.toml").write_text(text)
    names = ["20240101000000-a", "20240101000001-b"]

    with pytest.raises(DependencyCycle) as cycle:
        load_all(config, names)
    assert str(cycle.value).startswith(
        "migrations require each other in a cycle: 20240101000000-a -> 20240101000001-b -> "
        "20240101000000-a;")

    (config.migrations_dir / names[1] / "migration.toml").write_text('conflicts = ["a"]\n')
    with pytest.raises(MigrationSettingsError) as unknown:
        load_all(config, names)
    assert "`conflicts` names 'a', which is not a migration in" in str(unknown.value)
    assert "(did you mean '20240101000000-a'?)" in str(unknown.value)
