"""The CP-SAT core assignment (`passes/solver/cpsat.py`) against exhaustive search: optimal on random instances,
its bound never above the optimum, infeasibility proven."""

from __future__ import annotations

import math
import random

import pytest

from embmap.ir.errors import InfeasibleError
from embmap.passes import SolverSettings
from embmap.passes.solver.bounds import lower_bound_units
from embmap.passes.solver.cpsat import solve
from embmap.passes.solver.greedy import greedy
from embmap.passes.solver.problem import AssignmentProblem, OptionData
from tests.problems import assert_valid, exhaustive, random_problem

ONE_WORKER = SolverSettings(time_limit_s=30.0, workers=1, seed=0)


@pytest.mark.parametrize("seed", range(40))
def test_solver_matches_exhaustive_search_on_random_instances(seed: int) -> None:
    problem = random_problem(random.Random(seed))
    optimum = exhaustive(problem)
    result = solve(problem, ONE_WORKER)
    if optimum == math.inf:
        assert result.status == "INFEASIBLE"
        return
    assert result.status == "OPTIMAL"
    assert result.objective_units == optimum
    assert result.assignment is not None and result.assignment.makespan(problem) == optimum
    assert lower_bound_units(problem) <= optimum
    assert_valid(problem, result.assignment)


def test_infeasible_capacity_is_proven_and_explained() -> None:
    # Every option of both tables preloads 60 of 100 bytes per part, on one core: no placement exists.
    heavy = (OptionData(parts=1, part_units=5, part_bytes=60),)
    problem = AssignmentProblem(tables=("x", "y"), options=(heavy, heavy), cores=1, capacity_bytes=100)
    assert solve(problem, ONE_WORKER).status == "INFEASIBLE"
    with pytest.raises(InfeasibleError):
        greedy(problem)
