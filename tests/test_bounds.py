"""The bin-packing lower bound: every function is dual feasible, the bound never exceeds an optimum found by
exhaustive search, and it sees what the work bound cannot (parts too big to share a core, local buffers too
small for every table that would preload)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pytest

from embmap.cost_models import preset_profile
from embmap.ir.lowering import lower
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.passes.assignment import AssignmentProblem, OptionData, choice_lower_bound, lower_bound_units
from embmap.passes.bounds import BASE, MIXES, _Menus, dff_lower_bound, hull
from embmap.passes.placement import lower_bound_s
from tests.conftest import run, tiny_target
from tests.test_cpsat import exhaustive, random_problem


def _filled_bins(rng: random.Random, count: int) -> list[np.ndarray]:
    """Random multisets summing to at most 1, many of them exactly 1 and some with items near 1/2, 1/3, ..."""
    bins = []
    for _ in range(count):
        n = rng.randint(1, 7)
        if rng.random() < 0.5:
            cuts = sorted(rng.random() for _ in range(n - 1))
            items = [b - a for a, b in zip([0.0, *cuts], [*cuts, 1.0], strict=True)]
        else:
            k = rng.randint(1, 6)
            items = [1 / k + rng.uniform(-1e-3, 1e-3) for _ in range(k)]
            items = [x / max(1.0, sum(items)) for x in items]
        bins.append(np.array(items))
    return bins


@pytest.mark.parametrize("index", range(len(BASE)))
def test_every_base_function_is_dual_feasible(index: int) -> None:
    name, f = BASE[index]
    for items in _filled_bins(random.Random(index), 3000):
        assert items.sum() <= 1 + 1e-12
        assert f(items).sum() <= 1 + 1e-9, f"{name} maps {items} to more than 1"
        assert np.all((f(items) >= 0) & (f(items) <= 1))


def test_a_function_that_is_not_dual_feasible_is_caught_by_the_same_check() -> None:
    # Counting every part above 1/3 as a whole core is wrong (two of 0.45 fit in one): the check must see it.
    def wrong(x: np.ndarray) -> np.ndarray:
        return np.where(x > 1 / 3, 1.0, x)

    assert any(wrong(items).sum() > 1 + 1e-9 for items in _filled_bins(random.Random(0), 3000))


@pytest.mark.parametrize("seed", range(150))
def test_bound_never_exceeds_the_exhaustive_optimum(seed: int) -> None:
    problem = random_problem(random.Random(1000 + seed))
    optimum = exhaustive(problem)
    sizes = [[(o.parts, o.part_units) for o in opts] for opts in problem.options]
    bound, _ = dff_lower_bound(sizes, problem.cores)
    assert bound <= optimum
    assert lower_bound_units(problem) <= optimum


def test_parts_too_big_to_share_a_core_raise_the_bound_to_the_optimum() -> None:
    # Three whole tables of 10 on two cores: the work bound says 15, but two of them must share a core.
    problem = AssignmentProblem(
        tables=("a", "b", "c"),
        options=tuple((OptionData(parts=1, part_units=10, part_bytes=0),) for _ in range(3)),
        cores=2,
        capacity_bytes=0,
    )
    menus = [[(o.part_units, o.work_units) for o in opts] for opts in problem.options]
    assert choice_lower_bound(menus, 2) == 15
    assert lower_bound_units(problem) == 20 == exhaustive(problem)


def test_a_mix_refutes_what_no_single_function_refutes() -> None:
    # Three tables, each whole (6) or split in two (2 x 5), on two cores with T = 10. The identity charges
    # 0.6 a table (1.8 in all); u(1) charges a split table nothing (5/10 is not above 1/2). Three quarters of
    # one plus a quarter of the other charges 0.7 whole and 0.75 split: 2.1 > 2. And indeed no plan fits:
    # two whole tables cannot share a core, and a whole one leaves room for no part of 5 beside it.
    menus = [[(1, 6), (2, 5)] for _ in range(3)]
    problem = AssignmentProblem(
        tables=("a", "b", "c"),
        options=tuple(tuple(OptionData(parts=k, part_units=s, part_bytes=0) for k, s in menu) for menu in menus),
        cores=2,
        capacity_bytes=0,
    )
    data = _Menus(menus, cores=2)
    assert not any(data.refutes(10, mix) for name, mix in MIXES if "+" not in name)
    assert data.refutes(10, dict(MIXES)["0.75 identity + 0.25 u(1)"])
    bound, name = dff_lower_bound(menus, 2)
    assert 10 < bound <= exhaustive(problem) and "+" in name


def test_a_table_whose_parts_all_exceed_T_refutes_it() -> None:
    assert dff_lower_bound([[(1, 50)], [(2, 5)]], cores=8)[0] == 50


def _preload_or_stream(tables: int, cores: int) -> AssignmentProblem:
    """Tables that cost 10 preloaded (a whole core's buffer) or 30 streamed: only `cores` of them can preload."""
    return AssignmentProblem(
        tables=tuple(f"t{i}" for i in range(tables)),
        options=tuple(
            (OptionData(parts=1, part_units=10, part_bytes=100), OptionData(parts=1, part_units=30, part_bytes=0))
            for _ in range(tables)
        ),
        cores=cores,
        capacity_bytes=100,
    )


def test_priced_buffers_raise_the_bound_to_the_optimum() -> None:
    # Four tables on two cores: each core preloads one table and streams one, 10 + 30. Without the buffers
    # every table preloads, and the bound is 4 x 10 / 2 = 20.
    problem = _preload_or_stream(4, 2)
    sizes = [[(o.parts, o.part_units) for o in opts] for opts in problem.options]
    held = [[o.parts * o.part_bytes for o in opts] for opts in problem.options]
    assert dff_lower_bound(sizes, 2)[0] == 20
    bound, name = dff_lower_bound(sizes, 2, held=held, capacity_bytes=100)
    assert bound == 40 == exhaustive(problem) == lower_bound_units(problem)
    assert name.endswith("+ buffers")


def test_buffers_that_cannot_bind_leave_the_bound_alone() -> None:
    # Room for every table's preload: the priced test finds nothing to add.
    problem = _preload_or_stream(2, 2)
    sizes = [[(o.parts, o.part_units) for o in opts] for opts in problem.options]
    held = [[o.parts * o.part_bytes for o in opts] for opts in problem.options]
    assert dff_lower_bound(sizes, 2, held=held, capacity_bytes=100) == dff_lower_bound(sizes, 2)


def test_buffers_no_choice_fits_leave_the_bound_finite() -> None:
    # Every option preloads a whole buffer, three tables on two cores: no plan exists, which the placement
    # reports; the bound stays that of the parts.
    sizes = [[(1, 10)] for _ in range(3)]
    held = [[100] for _ in range(3)]
    assert dff_lower_bound(sizes, 2, held=held, capacity_bytes=100) == dff_lower_bound(sizes, 2)


def test_priced_buffers_raise_some_random_bounds() -> None:
    # The random instances of the exhaustive test above (their bounds, buffers included, never exceed the
    # optimum): on some of them the buffers are what raises the bound.
    raised = 0
    for seed in range(150):
        problem = random_problem(random.Random(1000 + seed))
        sizes = [[(o.parts, o.part_units) for o in opts] for opts in problem.options]
        raised += lower_bound_units(problem) > max(dff_lower_bound(sizes, problem.cores)[0], problem.work_bound)
    assert raised > 0


@pytest.mark.parametrize("seed", [0, 9])
def test_plan_bound_with_buffers_never_exceeds_the_optimum_of_a_real_workload(seed: int) -> None:
    """Small random workloads that CP-SAT solves to optimality, from the cost model: the plan's bound lies
    below the optimum; with seed 9 the local buffers bind, and pricing them raises the bound by over 10%."""
    rng = random.Random(seed)
    target = tiny_target(cores=rng.randint(2, 4), local_bytes=rng.choice([16, 64, 256]) * 1024)
    tables = tuple(
        TableSpec(
            name=f"t{i}",
            rows=rng.choice([100, 1000, 5000, 20000]),
            dim=rng.choice([8, 16, 32]),
            pooling=rng.randint(1, 4),
        )
        for i in range(rng.randint(3, 6))
    )
    lowered = lower(WorkloadSpec(name="w", batch_size=64, tables=tables), target, preset_profile(target))
    m = run(lowered, "profile,select-strategy,partition,assign-cores{time-limit=20},schedule")
    assert m.solver is not None and m.solver.status == "OPTIMAL" and m.lower_bound_s is not None
    start = m.cost_profile.core_start_s
    optimum, bound = m.solver.objective_s - start, m.lower_bound_s - start
    unpriced = lower_bound_s(m, buffers=False) - start
    assert unpriced <= bound <= optimum * (1 + 1e-9)
    assert (bound > unpriced * 1.1) == (seed == 9)


def _exhaustive_with_cuts(fixed: list[int], cut: tuple[int, int, int], cores: int) -> int:
    """The least makespan of whole parts `fixed` (one core each) and one table cut into k parts of any integer
    sizes, each at least `least`, doing `a * k + b` in all (cut = (a, b, least)), on `cores` cores."""
    a, b, least = cut
    best = sum(fixed) + a + b
    for k in range(1, cores + 1):
        work = a * k + b
        for sizes in itertools.product(range(least, work + 1), repeat=k):
            if sum(sizes) != work:
                continue
            for place in itertools.product(range(cores), repeat=len(fixed)):
                for spread in itertools.permutations(range(cores), k):
                    load = [0] * cores
                    for core, size in zip(place, fixed, strict=True):
                        load[core] += size
                    for core, size in zip(spread, sizes, strict=True):
                        load[core] += size
                    best = min(best, max(load))
    return best


def _cut_menus(fixed: list[int], cut: tuple[int, int, int], cores: int) -> tuple[list, list]:
    """The menus `dff_lower_bound` sees: the fixed parts as they are; the cut table's k parts as their mean
    (rounded down) with the least size a part can have."""
    a, b, least = cut
    menus = [[(1, s)] for s in fixed] + [[(k, (a * k + b) // k) for k in range(1, cores + 1)]]
    flexible = [[None] for _ in fixed] + [[None] + [least] * (cores - 1)]
    return menus, flexible


def test_the_ranked_parts_of_a_cut_table_raise_the_bound_to_the_optimum() -> None:
    # Two whole parts of 10 on three cores, and a table of 3 per part + 12 cut in any sizes of at least 4. At
    # T = 13 its least part (4) is small, but of two parts doing 18 the larger is at least 9 and the smaller
    # at least 18 - 13 = 5, so both cannot sit beside a 10: the optimum is 14 (10 + 4 beside a 14).
    fixed, cut, cores = [10, 10], (3, 12, 4), 3
    menus, flexible = _cut_menus(fixed, cut, cores)
    assert _exhaustive_with_cuts(fixed, cut, cores) == 14
    assert dff_lower_bound(menus, cores, flexible=flexible)[0] == 14


def test_many_small_parts_of_a_cut_table_cannot_all_dodge_a_threshold() -> None:
    # Two whole parts of 11 on three cores, and a table of 2 per part + 12 cut in any sizes of at least 3. At
    # T = 13 its parts can each stay under U(0.25)'s threshold, but not all of them together: by the convex
    # hull of the function at their mean part, the optimum (14) is refuted at 13.
    fixed, cut, cores = [11, 11], (2, 12, 3), 3
    menus, flexible = _cut_menus(fixed, cut, cores)
    assert _exhaustive_with_cuts(fixed, cut, cores) == 14
    assert dff_lower_bound(menus, cores, flexible=flexible)[0] == 14


@pytest.mark.parametrize("index", range(len(BASE)))
def test_every_hull_is_convex_and_lies_under_its_function(index: int) -> None:
    x = np.sort(np.concatenate([np.linspace(0, 1, 100_001), np.random.default_rng(index).random(10_000)]))
    f, h = BASE[index][1], hull(index)
    assert np.all(h(x) <= f(x) + 1e-12)
    grid = np.linspace(0, 1, 1001)
    assert np.all(np.diff(h(grid), 2) >= -1e-12), "convex"
    assert np.all(np.diff(h(grid)) >= -1e-12), "nondecreasing"


@pytest.mark.parametrize("seed", range(40))
def test_bound_with_cut_tables_never_exceeds_the_exhaustive_optimum(seed: int) -> None:
    rng = random.Random(7000 + seed)
    cores = rng.randint(2, 3)
    fixed = [rng.randint(2, 12) for _ in range(rng.randint(1, 3))]
    a, b = rng.randint(0, 4), rng.randint(1, 12)
    cut = (a, b, a + rng.randint(1, 2))
    menus, flexible = _cut_menus(fixed, cut, cores)
    assert dff_lower_bound(menus, cores, flexible=flexible)[0] <= _exhaustive_with_cuts(fixed, cut, cores)
