"""The CP-SAT core assignment against exhaustive search, and its guarantees: bound, hint, determinism."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

import pytest

from embmap.cost_models import preset_profile
from embmap.ir.errors import InfeasibleError
from embmap.ir.lowering import lower
from embmap.ir.module import Module
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.passes.assignment import (
    TIME_UNIT_S,
    Assignment,
    AssignmentProblem,
    Choice,
    OptionData,
    byte_prices,
    greedy,
    lower_bound_units,
    round_robin,
)
from embmap.passes.cpsat import SolverParams, solve
from tests.conftest import run, tiny_target

ONE_WORKER = SolverParams(time_limit_s=30.0, workers=1, seed=0)


def exhaustive(
    problem: AssignmentProblem, previous: Sequence[Choice | None] | None = None, max_moves: int | None = None
) -> float:
    """Optimal makespan by trying every option and every set of distinct cores for every table
    (branch and bound on the makespan, which keeps it exact). With `previous` and `max_moves`, only over
    plans that leave at most `max_moves` tables off their previous choice."""
    best = math.inf
    loads = [0] * problem.cores
    used = [0] * problem.cores
    budget = math.inf if max_moves is None else max_moves

    def visit(t: int, moved: int) -> None:
        nonlocal best
        if max(loads) >= best or moved > budget:
            return
        if t == len(problem.options):
            best = max(loads)
            return
        for i, o in enumerate(problem.options[t]):
            for cores in itertools.combinations(range(problem.cores), o.parts):
                if any(used[c] + o.part_bytes > problem.capacity_bytes for c in cores):
                    continue
                for c in cores:
                    loads[c] += o.part_units
                    used[c] += o.part_bytes
                move = previous is not None and previous[t] is not None and Choice(i, cores) != previous[t]
                visit(t + 1, moved + move)
                for c in cores:
                    loads[c] -= o.part_units
                    used[c] -= o.part_bytes

    visit(0, 0)
    return best


def random_problem(rng: random.Random) -> AssignmentProblem:
    cores = rng.randint(1, 3)
    tables = rng.randint(1, 6)
    capacity = 100
    options = []
    for _ in range(tables):
        menu = []
        for _ in range(rng.randint(1, 4)):
            parts = rng.randint(1, cores)
            menu.append(
                OptionData(
                    parts=parts, part_units=rng.randint(1, 60), part_bytes=rng.choice([0, 0, rng.randint(10, 70)])
                )
            )
        options.append(tuple(menu))
    return AssignmentProblem(
        tables=tuple(f"t{i}" for i in range(tables)), options=tuple(options), cores=cores, capacity_bytes=capacity
    )


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
    _assert_valid(problem, result.assignment)


def _assert_valid(problem: AssignmentProblem, a: Assignment) -> None:
    """Each table's parts on as many distinct cores of the target, and every core's local bytes within its
    buffer."""
    used = [0] * problem.cores
    for opts, ch in zip(problem.options, a.choices, strict=True):
        o = opts[ch.option]
        assert len(set(ch.cores)) == len(ch.cores) == o.parts
        assert all(0 <= c < problem.cores for c in ch.cores)
        for c in ch.cores:
            used[c] += o.part_bytes
    assert max(used) <= problem.capacity_bytes


@pytest.mark.parametrize("seed", range(10))
def test_greedy_and_round_robin_are_valid_and_no_better_than_optimal(seed: int) -> None:
    problem = random_problem(random.Random(100 + seed))
    optimum = exhaustive(problem)
    for heuristic in (greedy, round_robin):
        try:
            plan = heuristic(problem)
        except InfeasibleError:
            continue
        _assert_valid(problem, plan)
        assert plan.makespan(problem) >= optimum


def six_table_module(prune: bool) -> Module:
    target = tiny_target(cores=3)
    w = WorkloadSpec(
        name="six",
        batch_size=48,
        tables=(
            TableSpec(name="a", rows=30, dim=16),
            TableSpec(name="b", rows=900, dim=16, pooling=2),
            TableSpec(name="c", rows=5000, dim=16),
            TableSpec(name="d", rows=60_000, dim=32, pooling=4),
            TableSpec(name="e", rows=12, dim=64, pooling=3),
            TableSpec(name="f", rows=2500, dim=8, pooling=6),
        ),
    )
    return run(
        lower(w, target, preset_profile(target)), f"profile,select-strategy,partition{{prune={str(prune).lower()}}}"
    )


def test_pipeline_optimum_equals_exhaustive_search_over_the_unpruned_menu() -> None:
    """Six real tables on three cores: the pruned menu plus CP-SAT reach the optimum of the full menu."""
    full = AssignmentProblem.from_module(six_table_module(prune=False))
    solved = run(six_table_module(prune=True), "assign-cores{time-limit=30}")
    assert solved.solver is not None and solved.solver.status == "OPTIMAL"
    busy = solved.solver.objective_s - solved.cost_profile.core_start_s  # the report includes the start-up
    assert round(busy / TIME_UNIT_S) == exhaustive(full)


def test_lower_bound_holds_and_hint_is_never_beaten_by_the_result() -> None:
    m = run(six_table_module(prune=True), "assign-cores{time-limit=30},schedule")
    assert m.solver is not None and m.lower_bound_s is not None and m.makespan_s is not None
    assert m.lower_bound_s <= m.makespan_s
    assert m.solver.hint_objective_s is not None and m.solver.objective_s <= m.solver.hint_objective_s


def test_time_limit_returns_at_least_the_greedy_plan(lowered: Module) -> None:
    m = run(lowered, "profile,select-strategy,partition,assign-cores{time-limit=0.001}")
    g = run(lowered, "profile,select-strategy,partition,assign-cores{method=greedy}")
    assert m.solver is not None and g.solver is not None
    assert m.solver.objective_s <= g.solver.objective_s


def test_same_seed_and_workers_give_the_same_plan() -> None:
    a = run(six_table_module(prune=True), "assign-cores{time-limit=30,seed=7}")
    b = run(six_table_module(prune=True), "assign-cores{time-limit=30,seed=7}")
    assert a.items == b.items


def test_infeasible_capacity_is_proven_and_explained() -> None:
    # Every option of both tables preloads 60 of 100 bytes per part, on one core: no placement exists.
    heavy = (OptionData(parts=1, part_units=5, part_bytes=60),)
    problem = AssignmentProblem(tables=("x", "y"), options=(heavy, heavy), cores=1, capacity_bytes=100)
    assert solve(problem, ONE_WORKER).status == "INFEASIBLE"
    with pytest.raises(InfeasibleError):
        greedy(problem)


@pytest.mark.parametrize("seed", range(10))
def test_local_search_never_worsens_a_plan(seed: int) -> None:
    from embmap.passes.assignment import improve

    problem = random_problem(random.Random(200 + seed))
    try:
        start = round_robin(problem)
    except InfeasibleError:
        return
    better = improve(problem, start)
    _assert_valid(problem, better)
    assert better.makespan(problem) <= start.makespan(problem)
    assert better.makespan(problem) >= exhaustive(problem)


def test_time_limited_solves_repeat_exactly() -> None:
    """The limit is deterministic time, so even a solve stopped by it gives the same plan every run."""
    from embmap.mapper import SolverOptions, compile

    options = SolverOptions(time_limit=1.0, workers=2, seed=3)
    a = compile("huawei-25mb-like", "ascend910", solver=options, baselines=False)
    b = compile("huawei-25mb-like", "ascend910", solver=options, baselines=False)
    assert a.items == b.items and a.solver.best_bound_s == b.solver.best_bound_s


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
