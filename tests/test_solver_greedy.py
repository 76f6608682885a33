"""Plans without a solver (`passes/solver/greedy.py`): the greedy portfolio, round-robin and the local search give
valid plans no better than the optimum, and the byte prices keep the local buffers for the tables that save most."""

from __future__ import annotations

import random

import pytest

from embmap.ir.errors import InfeasibleError
from embmap.passes.solver.greedy import byte_prices, greedy, improve, round_robin
from embmap.passes.solver.problem import AssignmentProblem, OptionData
from tests.problems import assert_valid, exhaustive, random_problem


@pytest.mark.parametrize("seed", range(10))
def test_greedy_and_round_robin_are_valid_and_no_better_than_optimal(seed: int) -> None:
    problem = random_problem(random.Random(100 + seed))
    optimum = exhaustive(problem)
    for heuristic in (greedy, round_robin):
        try:
            plan = heuristic(problem)
        except InfeasibleError:
            continue
        assert_valid(problem, plan)
        assert plan.makespan(problem) >= optimum


@pytest.mark.parametrize("seed", range(10))
def test_local_search_never_worsens_a_plan(seed: int) -> None:
    problem = random_problem(random.Random(200 + seed))
    try:
        start = round_robin(problem)
    except InfeasibleError:
        return
    better = improve(problem, start)
    assert_valid(problem, better)
    assert better.makespan(problem) <= start.makespan(problem)
    assert better.makespan(problem) >= exhaustive(problem)


def test_greedy_prices_local_bytes_when_least_work_first_fills_the_buffer() -> None:
    """One core of 100 local bytes. Least work first gives the buffer to b (it comes first: its least-work
    part is larger) and a pays 100 from shared memory: 140, a local optimum of the local search. Priced, the
    buffer goes to a, which saves 90 units with it where b saves 10: 60, the optimum."""
    a = (OptionData(parts=1, part_units=10, part_bytes=100), OptionData(parts=1, part_units=100, part_bytes=0))
    b = (OptionData(parts=1, part_units=40, part_bytes=100), OptionData(parts=1, part_units=50, part_bytes=0))
    problem = AssignmentProblem(tables=("a", "b"), options=(a, b), cores=1, capacity_bytes=100)
    prices = byte_prices(problem)
    assert prices[0] == 0.0 and 0.1 < prices[1] < 0.9  # b turns to shared memory at 0.1 per byte, a at 0.9
    assert greedy(problem).makespan(problem) == exhaustive(problem) == 60
