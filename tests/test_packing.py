"""The pattern dive (passes/packing.py): every plan it returns is a plan, and it finds what greedy misses."""

from __future__ import annotations

import random

import pytest

from passes.assignment import AssignmentProblem, OptionData, greedy
from passes.packing import pack
from tests.test_cpsat import _assert_valid, exhaustive, random_problem


@pytest.mark.parametrize("seed", range(40))
def test_every_plan_found_is_a_plan_no_better_than_the_optimum(seed: int) -> None:
    problem = random_problem(random.Random(seed))
    optimum = exhaustive(problem)
    if optimum == float("inf"):  # no plan fits the buffers
        assert pack(problem, 0, 10**6) is None
        return
    plan = pack(problem, 0, int(optimum) + 1)  # asked to beat a plan one unit above the optimum
    if plan is not None:
        _assert_valid(problem, plan)
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
    _assert_valid(problem, plan)
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
    _assert_valid(problem, plan)
    assert plan.makespan(problem) == exhaustive(problem) == 90


def test_a_problem_too_big_for_the_grid_is_left_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    from passes import packing

    problem = random_problem(random.Random(3))
    monkeypatch.setattr(packing, "MAX_CELLS", 0)
    assert pack(problem, 0, 10**6) is None
