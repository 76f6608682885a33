"""The lower bounds (`passes/solver/dff.py`, `bounds.py`): every dual feasible function is one, and the bounds
never exceed an optimum found by exhaustive search; the bin-packing bound sees what the work bound cannot (parts
too big to share a core, local buffers too small for every table that would preload), and the configuration LP
what no function of one part can (which parts add up under T together), with and without tables cut in any
sizes, and with the local buffers in its patterns."""

from __future__ import annotations

import random

import numpy as np
import pytest

from embmap.cost_models import preset_profile
from embmap.ir.lowering import lower
from embmap.ir.plan import ExecutionPlan, SolverReport, relative_gap
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.passes import SolverSettings
from embmap.passes.solver import bounds, config_lp
from embmap.passes.solver.bounds import PatternMenu, lower_bound_s, lower_bound_units, pattern_lower_bound
from embmap.passes.solver.dff import BASE, MIXES, _Menus, choice_lower_bound, dff_lower_bound, hull
from embmap.passes.solver.problem import AssignmentProblem, OptionData
from tests.conftest import run, tiny_target
from tests.problems import cut_menus, exhaustive, exhaustive_with_cuts, random_problem


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
    m = run(lowered, "profile,select-strategy,partition,assign-cores,schedule", SolverSettings(time_limit_s=20.0))
    assert m.solver is not None and m.solver.status == "OPTIMAL" and m.lower_bound_s is not None
    optimum, bound = m.solver.objective_s, m.lower_bound_s  # busy time
    unpriced = lower_bound_s(m, buffers=False)
    assert unpriced <= bound <= optimum * (1 + 1e-9)
    assert (bound > unpriced * 1.1) == (seed == 9)


def test_the_ranked_parts_of_a_cut_table_raise_the_bound_to_the_optimum() -> None:
    # Two whole parts of 10 on three cores, and a table of 3 per part + 12 cut in any sizes of at least 4. At
    # T = 13 its least part (4) is small, but of two parts doing 18 the larger is at least 9 and the smaller
    # at least 18 - 13 = 5, so both cannot sit beside a 10: the optimum is 14 (10 + 4 beside a 14).
    fixed, cut, cores = [10, 10], (3, 12, 4), 3
    menus, flexible = cut_menus(fixed, cut, cores)
    assert exhaustive_with_cuts(fixed, cut, cores) == 14
    assert dff_lower_bound(menus, cores, flexible=flexible)[0] == 14


def test_many_small_parts_of_a_cut_table_cannot_all_dodge_a_threshold() -> None:
    # Two whole parts of 11 on three cores, and a table of 2 per part + 12 cut in any sizes of at least 3. At
    # T = 13 its parts can each stay under U(0.25)'s threshold, but not all of them together: by the convex
    # hull of the function at their mean part, the optimum (14) is refuted at 13.
    fixed, cut, cores = [11, 11], (2, 12, 3), 3
    menus, flexible = cut_menus(fixed, cut, cores)
    assert exhaustive_with_cuts(fixed, cut, cores) == 14
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
    menus, flexible = cut_menus(fixed, cut, cores)
    assert dff_lower_bound(menus, cores, flexible=flexible)[0] <= exhaustive_with_cuts(fixed, cut, cores)


@pytest.mark.parametrize("index", range(len(BASE)))
def test_every_base_function_is_nondecreasing(index: int) -> None:
    # An uneven part's image is taken at the least part a cut can have: valid only for nondecreasing functions.
    x = np.linspace(0, 1, 20001)
    assert np.all(np.diff(BASE[index][1](x)) >= 0)


# The configuration LP.


def _menus(problem: AssignmentProblem) -> list[PatternMenu]:
    return [PatternMenu(tuple((o.parts, o.part_units) for o in opts)) for opts in problem.options]


def _cut_menu(a: int, samples: int, cores: int, line: bool = True) -> PatternMenu:
    """A table whose part of n samples takes a + n: its equal cuts as options (their least part has samples // k
    samples) and, with `line`, its line for any cut."""
    equal = tuple((k, a + samples // k) for k in range(1, cores + 1))
    return PatternMenu(equal, ((float(a), 1.0),) if line else (), samples)


@pytest.mark.parametrize("seed", range(60))
def test_lp_bound_never_exceeds_the_exhaustive_optimum(seed: int) -> None:
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
    optimum = exhaustive_with_cuts(fixed, cut, cores)
    menus = [PatternMenu(((1, s),)) for s in fixed] + [_cut_menu(a, samples, cores)]
    assert pattern_lower_bound(menus, cores, 0, optimum) <= optimum


def test_a_table_cut_in_any_sizes_lowers_the_bound_to_cover_its_cuts() -> None:
    # Two whole parts of 10 on three cores, and a table whose part of n samples takes 1 + n, 12 samples. With
    # equal cuts the best is 13 (the table whole on the third core); cut unevenly it fills the room beside the
    # 10s: 10 + 2, 10 + 2, 1 + 10, a makespan of 12. The bound over equal cuts is 13, which no bound for uneven
    # cuts may claim; with the table's line the LP stays at or under 12.
    fixed, cores = [10, 10], 3
    assert exhaustive_with_cuts(fixed, (1, 12, 2), cores) == 12
    whole = [PatternMenu(((1, s),)) for s in fixed]
    assert pattern_lower_bound([*whole, _cut_menu(1, 12, cores, line=False)], cores, 0, 13) == 13
    assert pattern_lower_bound([*whole, _cut_menu(1, 12, cores)], cores, 0, 13) <= 12


def test_a_piece_is_priced_at_the_samples_it_can_hold(monkeypatch: pytest.MonkeyPatch) -> None:
    # Parts of 3 and 13 on two cores, and a table whose part of n samples takes 3 + n, 11 samples. The optimum
    # is 16 (14 whole beside the 3, or cut beside both). A piece holds at most the table's 11 samples, so a
    # pattern with the whole table is worth one table, however much room it leaves: priced so, the LP alone
    # refutes 15 (priced as if its room could hold more, it stopped at 14).
    fixed, cores = [3, 13], 2
    assert exhaustive_with_cuts(fixed, (3, 11, 4), cores) == 16
    menus = [PatternMenu(((1, s),)) for s in fixed] + [_cut_menu(3, 11, cores)]
    monkeypatch.setattr(bounds, "MAX_NODES", 1)  # the LP alone, no branching
    assert pattern_lower_bound(menus, cores, 0, 16) == 16


@pytest.mark.parametrize("width", [0, 1, 2, 3, 7, 10, 11, 25])
def test_the_window_maximum_is_the_maximum_of_the_last_entries(width: int) -> None:
    values = np.random.default_rng(width).normal(size=(3, 10, 2))
    got = config_lp._window_max(values, width)
    for j in range(10):
        window = values[:, max(0, j - width + 1) : j + 1]
        want = window.max(axis=1) if width else np.full((3, 2), -np.inf)
        assert np.array_equal(got[:, j], want)


def test_branching_on_the_options_refutes_what_the_lp_alone_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    # Six tables with options of 1 to 3 parts on three cores (a seeded random problem): the LP alone stops at
    # 44; split on the options of the table its y spreads most, neither half fits 44 or 45.
    problem = random_problem(random.Random(70019))
    optimum = exhaustive(problem)
    assert optimum == 46
    branched = pattern_lower_bound(_menus(problem), problem.cores, 0, 46)
    monkeypatch.setattr(bounds, "MAX_NODES", 1)
    alone = pattern_lower_bound(_menus(problem), problem.cores, 0, 46)
    assert alone == 44
    assert alone < branched <= optimum


def test_a_line_above_another_is_dropped() -> None:
    menu = PatternMenu(((1, 20),), ((5.0, 1.0), (6.0, 1.0), (2.0, 2.0)), 10)
    # (6, 1) lies above (5, 1) everywhere; (2, 2) is below (5, 1) at n = 1 and above it at n = 10.
    assert bounds._undominated(menu).lines == ((2.0, 2.0), (5.0, 1.0))


def test_a_table_that_fits_under_T_in_no_way_refutes_it() -> None:
    menus = [PatternMenu(((1, 50),)), PatternMenu(((2, 5),))]
    assert pattern_lower_bound(menus, 8, 10, 50) == 50


def test_the_bound_raises_the_plans_of_three_built_in_workloads() -> None:
    """On ascend910 the configuration LP proves Avazu's plan and KuaiRec's (cut unevenly) within 1% of the best
    plan of the menu; on the Huawei-like workload, where CP-SAT keeps the greedy plan, the pattern dive finds a
    faster one, and the LP with the local buffers in its patterns proves it within 1%. The bounds stay under
    the plans (verify checks that on every compile)."""
    from embmap.mapper import compile

    def menu_gap(plan: ExecutionPlan) -> float:
        assert plan.solver.menu_bound_s is not None
        return relative_gap(plan.makespan_s, plan.solver.menu_bound_s)

    avazu = compile("avazu", "ascend910", baselines=False)
    assert menu_gap(avazu) <= 0.01
    kuairec = compile("kuairec-big", "ascend910", baselines=False)
    assert menu_gap(kuairec) <= 0.01
    huawei = compile("huawei-25mb-like", "ascend910", baselines=False)
    assert menu_gap(huawei) <= 0.01
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
    monkeypatch.setattr(bounds, "_coarse", lambda *args: None)
    assert pattern_lower_bound(menus, problem.cores, 0, int(optimum), capacity_bytes=100) == with_coarse


def test_a_plan_that_meets_its_bound_up_to_rounding_is_optimal() -> None:
    """The whole-space bound and the makespan sum the same item costs in other orders: a one-core plan of
    Tenrec read 3.2272499202778446 us against a bound of 3.227249920277844 us (one unit in the last place)
    and was reported FEASIBLE with a gap of 1e-16. A gap within rounding is none; a real one stays."""
    makespan, bound = 3.2272499202778446e-06, 3.227249920277844e-06
    assert bound < makespan and relative_gap(makespan, bound) == 0.0
    report = SolverReport.of("cpsat", "FEASIBLE", makespan, makespan, 0.0).over_whole_space(makespan, bound)
    assert report.status == "OPTIMAL" and report.gap == 0.0
    worse = SolverReport.of("cpsat", "OPTIMAL", makespan, makespan, 0.0).over_whole_space(makespan, bound * (1 - 1e-9))
    assert worse.status == "FEASIBLE" and worse.gap == pytest.approx(1e-9, rel=1e-3)
