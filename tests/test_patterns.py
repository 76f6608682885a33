"""The configuration-LP bound (passes/patterns.py): never above the optimum, sometimes above every dual
feasible function, and what it does to the plans of built-in workloads."""

from __future__ import annotations

import random

import pytest

from embmap.passes import patterns
from embmap.passes.assignment import AssignmentProblem, OptionData
from embmap.passes.bounds import dff_lower_bound
from embmap.passes.patterns import PatternMenu, pattern_lower_bound
from tests.test_bounds import _exhaustive_with_cuts
from tests.test_cpsat import exhaustive, random_problem


def _menus(problem: AssignmentProblem) -> list[PatternMenu]:
    return [PatternMenu(tuple((o.parts, o.part_units) for o in opts)) for opts in problem.options]


def _cut_menu(a: int, samples: int, cores: int, line: bool = True) -> PatternMenu:
    """A table whose part of n samples takes a + n: its equal cuts as options (their least part has samples // k
    samples) and, with `line`, its line for any cut."""
    equal = tuple((k, a + samples // k) for k in range(1, cores + 1))
    return PatternMenu(equal, ((float(a), 1.0),) if line else (), samples)


@pytest.mark.parametrize("seed", range(60))
def test_bound_never_exceeds_the_exhaustive_optimum(seed: int) -> None:
    problem = random_problem(random.Random(3000 + seed))
    optimum = exhaustive(problem)  # local buffers only raise it: the bound ignores them
    if optimum == float("inf"):
        return
    assert pattern_lower_bound(_menus(problem), problem.cores, 0, int(optimum)) <= optimum


def _menus_with_bytes(problem: AssignmentProblem) -> list[PatternMenu]:
    return [
        PatternMenu(tuple((o.parts, o.part_units) for o in opts), part_bytes=tuple(o.part_bytes for o in opts))
        for opts in problem.options
    ]


@pytest.mark.parametrize("seed", range(60))
def test_bound_with_the_local_buffers_never_exceeds_the_exhaustive_optimum(seed: int) -> None:
    problem = random_problem(random.Random(5000 + seed))
    optimum = exhaustive(problem)  # with the buffers: no core holds more than 100 bytes
    if optimum == float("inf"):
        return
    bound = pattern_lower_bound(_menus_with_bytes(problem), problem.cores, 0, int(optimum), capacity_bytes=100)
    assert bound <= optimum


def test_the_local_buffers_raise_the_bound_where_preloaded_parts_do_not_fit_together() -> None:
    # Four tables, each one part of 10 units preloaded (60 of the 100 bytes a core holds) or of 14 without, on
    # two cores. Time alone sees four 10s: 20. But a core holds one preloaded part at most, so the best is a
    # 10 and a 14 per core: 24, which the LP sees once the buffer is a dimension of its patterns.
    option_sets = tuple((OptionData(1, 10, 60), OptionData(1, 14, 0)) for _ in range(4))
    problem = AssignmentProblem(tables=("a", "b", "c", "d"), options=option_sets, cores=2, capacity_bytes=100)
    assert exhaustive(problem) == 24
    assert pattern_lower_bound(_menus_with_bytes(problem), 2, 0, 28) == 20
    assert pattern_lower_bound(_menus_with_bytes(problem), 2, 0, 28, capacity_bytes=100) == 24


def test_a_menu_with_bytes_for_other_options_is_refused() -> None:
    with pytest.raises(ValueError, match="part_bytes has 1 entries for 2 options"):
        PatternMenu(((1, 5), (2, 3)), part_bytes=(7,))


def test_parts_that_do_not_add_up_under_T_raise_the_bound_above_every_dff() -> None:
    # Parts of 3, 13, 15 and 16 on two cores. Under T = 27 the 16 has room for the 3 alone, which leaves 13 and
    # 15 (28) for the other core: the optimum is 28. Every DFF sees the parts one by one, and stops at 27.
    items, cores = [3, 13, 15, 16], 2
    problem = AssignmentProblem(
        tables=tuple(f"t{i}" for i in range(len(items))),
        options=tuple((OptionData(parts=1, part_units=s, part_bytes=0),) for s in items),
        cores=cores,
        capacity_bytes=0,
    )
    assert exhaustive(problem) == 28
    assert dff_lower_bound([[(1, s)] for s in items], cores)[0] == 27
    assert pattern_lower_bound(_menus(problem), cores, 27, 28) == 28


@pytest.mark.parametrize("seed", range(40))
def test_bound_with_a_table_cut_in_any_sizes_never_exceeds_the_exhaustive_optimum(seed: int) -> None:
    rng = random.Random(4000 + seed)
    cores = rng.randint(2, 3)
    fixed = [rng.randint(2, 14) for _ in range(rng.randint(1, 3))]
    a, samples = rng.randint(0, 4), rng.randint(4, 14)
    cut = (a, samples, a + 1)  # a part of n samples takes a + n: at least a + 1, a k + samples for k parts
    optimum = _exhaustive_with_cuts(fixed, cut, cores)
    menus = [PatternMenu(((1, s),)) for s in fixed] + [_cut_menu(a, samples, cores)]
    assert pattern_lower_bound(menus, cores, 0, optimum) <= optimum


def test_a_table_cut_in_any_sizes_lowers_the_bound_to_cover_its_cuts() -> None:
    # Two whole parts of 10 on three cores, and a table whose part of n samples takes 1 + n, 12 samples. With
    # equal cuts the best is 13 (the table whole on the third core); cut unevenly it fills the room beside the
    # 10s: 10 + 2, 10 + 2, 1 + 10, a makespan of 12. The bound over equal cuts is 13, which no bound for uneven
    # cuts may claim; with the table's line the LP stays at or under 12.
    fixed, cores = [10, 10], 3
    assert _exhaustive_with_cuts(fixed, (1, 12, 2), cores) == 12
    whole = [PatternMenu(((1, s),)) for s in fixed]
    assert pattern_lower_bound([*whole, _cut_menu(1, 12, cores, line=False)], cores, 0, 13) == 13
    assert pattern_lower_bound([*whole, _cut_menu(1, 12, cores)], cores, 0, 13) <= 12


def test_branching_on_the_options_refutes_what_the_lp_alone_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    # Parts of 3 and 13 on two cores, and a table whose part of n samples takes 3 + n, 11 samples. The optimum
    # is 16 (14 whole beside the 3, or cut beside both). The LP alone mixes the whole table with a cut of it
    # and stops at 14; split into plans with the table whole and plans with it cut, neither fits 14.
    fixed, cores = [3, 13], 2
    assert _exhaustive_with_cuts(fixed, (3, 11, 4), cores) == 16
    menus = [PatternMenu(((1, s),)) for s in fixed] + [_cut_menu(3, 11, cores)]
    branched = pattern_lower_bound(menus, cores, 0, 16)
    monkeypatch.setattr(patterns, "MAX_NODES", 1)
    alone = pattern_lower_bound(menus, cores, 0, 16)
    assert alone == 14
    assert alone < branched <= 16


def test_a_line_above_another_is_dropped() -> None:
    menu = PatternMenu(((1, 20),), ((5.0, 1.0), (6.0, 1.0), (2.0, 2.0)), 10)
    # (6, 1) lies above (5, 1) everywhere; (2, 2) is below (5, 1) at n = 1 and above it at n = 10.
    assert patterns._undominated(menu).lines == ((2.0, 2.0), (5.0, 1.0))


def test_a_table_that_fits_under_T_in_no_way_refutes_it() -> None:
    menus = [PatternMenu(((1, 50),)), PatternMenu(((2, 5),))]
    assert pattern_lower_bound(menus, 8, 10, 50) == 50


def test_the_bound_raises_the_plans_of_three_built_in_workloads() -> None:
    """On ascend910 the configuration LP proves Avazu's plan and KuaiRec's (cut unevenly) within 1%; on the
    Huawei-like workload, where CP-SAT keeps the greedy plan, the pattern dive finds a faster one, and the LP
    with the local buffers in its patterns proves it within 1%. The bounds stay under the plans (verify checks
    that on every compile)."""
    from embmap.mapper import compile

    avazu = compile("avazu", "ascend910", baselines=False)
    assert avazu.solver is not None and avazu.solver.gap <= 0.01
    kuairec = compile("kuairec-big", "ascend910", baselines=False)
    assert kuairec.solver is not None and kuairec.solver.gap <= 0.01
    huawei = compile("huawei-25mb-like", "ascend910", baselines=False)
    assert huawei.solver is not None and huawei.solver.gap <= 0.01
    assert huawei.solver.packed_objective_s is not None
    assert huawei.solver.objective_s <= huawei.solver.packed_objective_s <= huawei.solver.hint_objective_s
    assert huawei.lower_bound_s <= huawei.makespan_s


@pytest.mark.parametrize("seed", range(20))
def test_the_coarse_pricing_changes_no_bound(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the buffer, a round prices first on a coarse grid rounded up: a shortcut to patterns the fine grid
    also has. A coarse pattern that did not fit would weaken the bound (the LP would lean on it); one the fine
    grid has leaves the LP, and the bound, as they were."""
    problem = random_problem(random.Random(5000 + seed))
    optimum = exhaustive(problem)
    if optimum == float("inf"):
        return
    menus = _menus_with_bytes(problem)
    with_coarse = pattern_lower_bound(menus, problem.cores, 0, int(optimum), capacity_bytes=100)
    monkeypatch.setattr(patterns._Grid, "coarse", lambda self, T: None)
    assert pattern_lower_bound(menus, problem.cores, 0, int(optimum), capacity_bytes=100) == with_coarse
