"""The pattern dive (`passes/solver/dive.py`): every plan it returns is a plan, it finds what greedy misses,
keeps the local buffers, and stops at a plan within the goal."""

from __future__ import annotations

import random

import pytest

from embmap.passes.solver import dive
from embmap.passes.solver.dive import pack
from embmap.passes.solver.greedy import greedy
from embmap.passes.solver.problem import AssignmentProblem, OptionData
from tests.problems import assert_valid, exhaustive, random_problem


@pytest.mark.parametrize("seed", range(40))
def test_every_plan_found_is_a_plan_no_better_than_the_optimum(seed: int) -> None:
    problem = random_problem(random.Random(seed))
    optimum = exhaustive(problem)
    if optimum == float("inf"):  # no plan fits the buffers
        assert pack(problem, 0, 10**6) is None
        return
    plan = pack(problem, 0, int(optimum) + 1)  # asked to beat a plan one unit above the optimum
    if plan is not None:
        assert_valid(problem, plan)
        assert plan.makespan(problem) == optimum


def test_the_dive_finds_the_packing_greedy_misses() -> None:
    """Parts 3, 3, 2, 2, 2 on two cores: greedy (LPT) puts a 3 on each core and reaches 7; the optimum, 6, puts
    the 3s together."""
    problem = AssignmentProblem(
        tables=tuple("abcde"),
        options=tuple((OptionData(1, size * 100, 0),) for size in (3, 3, 2, 2, 2)),
        cores=2,
        capacity_bytes=0,
    )
    assert greedy(problem).makespan(problem) == 700
    plan = pack(problem, 500, 700)
    assert plan is not None
    assert_valid(problem, plan)
    assert plan.makespan(problem) == 600


def test_the_dive_keeps_the_local_buffers() -> None:
    """Two tables are faster preloaded (80 of a core's 100 bytes), so only one per core can be; with a third
    table the best plan preloads both, on different cores."""
    fast_or_slow = (OptionData(1, 50, 80), OptionData(1, 70, 0))
    problem = AssignmentProblem(
        tables=("a", "b", "c"),
        options=(fast_or_slow, fast_or_slow, (OptionData(1, 40, 0),)),
        cores=2,
        capacity_bytes=100,
    )
    plan = pack(problem, 0, 200)
    assert plan is not None
    assert_valid(problem, plan)
    assert plan.makespan(problem) == exhaustive(problem) == 90


def test_a_problem_too_big_for_the_grid_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = random_problem(random.Random(3))
    monkeypatch.setattr(dive, "MAX_CELLS", 0)
    assert pack(problem, 0, 10**6) is None


def _three_threes_and_twos() -> AssignmentProblem:
    return AssignmentProblem(
        tables=tuple("abcde"),
        options=tuple((OptionData(1, size * 100, 0),) for size in (3, 3, 2, 2, 2)),
        cores=2,
        capacity_bytes=0,
    )


def _makespans_tried(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    tried: list[int] = []
    original = dive._dive

    def recording(search: dive._Search) -> object:
        tried.append(search.T)
        return original(search)

    monkeypatch.setattr(dive, "_dive", recording)
    return tried


def test_a_plan_within_the_goal_ends_the_search(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bisection alone would first dive at 1249; with a goal of 650 the first dive is there, finds the optimum
    (600), and no other dive follows."""
    tried = _makespans_tried(monkeypatch)
    plan = pack(_three_threes_and_twos(), 500, 2000, goal=650)
    assert plan is not None and plan.makespan(_three_threes_and_twos()) == 600
    assert tried == [650]


def test_a_goal_below_every_plan_leaves_the_bisection_to_go_on(monkeypatch: pytest.MonkeyPatch) -> None:
    tried = _makespans_tried(monkeypatch)
    problem = _three_threes_and_twos()
    plan = pack(problem, 500, 2000, goal=550)  # no plan is under 600
    assert tried[0] == 550 and len(tried) > 1
    assert plan is not None and plan.makespan(problem) == 600
