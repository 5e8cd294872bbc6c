"""``run_fleet``'s rules: at most ``jobs`` at once, canaries first, stop after the first
failure unless ``continue_on_error``; every unit accounted for in the given order."""

from __future__ import annotations

import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spawn_db.errors import SpawnError
from spawn_db.fleet.runner import Done, UnitResult, run_fleet


class Recorder:
    def __init__(self, failing: set[str], pause: float = 0.0) -> None:
        self.failing = failing
        self.pause = pause
        self.order: list[str] = []
        self.now = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, name: str) -> Done:
        with self.lock:
            self.order.append(name)
            self.now += 1
            self.most = max(self.most, self.now)
        time.sleep(self.pause)
        with self.lock:
            self.now -= 1
        if name in self.failing:
            raise SpawnError(f"{name} broke")
        return Done(f"{name} done", data={"name": name})


def test_every_unit_runs_and_reports_in_the_given_order() -> None:
    names = [f"t{i}" for i in range(12)]
    work = Recorder(set(), pause=0.01)
    report = run_fleet(names, work, jobs=4)
    assert [r.name for r in report.results] == names
    assert all(r.state == "ok" and r.summary == f"{r.name} done" for r in report.results)
    assert report.results[0].data == {"name": "t0"}
    assert report.ok and work.most <= 4 and work.most > 1


def test_the_first_failure_stops_new_units_but_not_running_ones() -> None:
    names = ["a", "b", "c", "d"]
    report = run_fleet(names, Recorder({"a"}), jobs=1)
    assert [(r.name, r.state) for r in report.results] == [
        ("a", "failed"), ("b", "skipped"), ("c", "skipped"), ("d", "skipped")]
    assert report.results[0].error == "a broke"
    assert not report.ok


def test_continue_on_error_runs_everyone_and_lists_each_failure() -> None:
    report = run_fleet(["a", "b", "c"], Recorder({"a", "c"}), jobs=2, continue_on_error=True)
    assert [(r.name, r.state) for r in report.results] == [
        ("a", "failed"), ("b", "ok"), ("c", "failed")]
    assert [r.name for r in report.failed] == ["a", "c"]


def test_a_failing_canary_stops_the_rest_even_with_continue_on_error() -> None:
    work = Recorder({"b"})
    report = run_fleet(["a", "b", "c", "d"], work, jobs=2, canary=2, continue_on_error=True)
    assert sorted(work.order) == ["a", "b"]
    assert [r.state for r in report.results] == ["ok", "failed", "skipped", "skipped"]


def test_canaries_finish_before_anything_else_starts() -> None:
    work = Recorder(set(), pause=0.02)
    run_fleet(["a", "b", "c", "d", "e"], work, jobs=4, canary=2)
    assert sorted(work.order[:2]) == ["a", "b"]
    assert work.most <= 4


def test_a_bug_in_the_work_is_raised_not_reported() -> None:
    def broken(name: str) -> Done:
        raise RuntimeError("bug")

    with pytest.raises(RuntimeError, match="bug"):
        run_fleet(["a", "b"], broken)


def test_progress_hears_of_every_unit() -> None:
    seen: list[tuple[str, int, int]] = []

    class Progress:
        def unit_started(self, name: str) -> None:
            seen.append((name, 0, 0))

        def unit_finished(self, result: UnitResult, done: int, total: int) -> None:
            seen.append((result.name, done, total))

    run_fleet(["a", "b"], Recorder(set()), progress=Progress())
    assert seen == [("a", 0, 0), ("a", 1, 2), ("b", 0, 0), ("b", 2, 2)]


@settings(max_examples=60, deadline=None)
@given(
    failing=st.sets(st.integers(0, 7)),
    jobs=st.integers(1, 4),
    canary=st.integers(0, 8),
    keep_going=st.booleans(),
)
def test_the_rules_hold_for_any_mix(failing: set[int], jobs: int, canary: int,
                                    keep_going: bool) -> None:
    names = [f"u{i}" for i in range(8)]
    bad = {names[i] for i in failing}
    work = Recorder(bad)
    report = run_fleet(names, work, jobs=jobs, canary=canary, continue_on_error=keep_going)
    states = {r.name: r.state for r in report.results}
    assert len(work.order) == len(set(work.order))  # nobody runs twice
    assert {n for n, s in states.items() if s != "skipped"} == set(work.order)
    assert {n for n, s in states.items() if s == "failed"} == bad & set(work.order)
    canaries = names[:canary]
    if bad & set(canaries):
        assert set(work.order) <= set(canaries)
    elif keep_going:
        assert sorted(work.order) == sorted(names)
    if not keep_going and jobs == 1 and bad:
        first_bad = min(bad, key=names.index)
        assert work.order[-1] == first_bad
