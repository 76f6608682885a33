"""The whole-space bound (`passes/solver/space.py`): what it assumes of the cost model, its envelope, and the
bound itself against plans it must not exceed (the exhaustive checker, tests/test_exhaustive.py, checks it
against every plan of small instances)."""

from __future__ import annotations

import numpy as np
import pytest

from embmap.cost_models.analytic import ItemShape, item_cost, item_seconds
from embmap.ir.lowering import lower
from embmap.ir.plan import PartitionMode, Strategy
from embmap.ir.targets import builtin_target
from embmap.mapper import compile as compile_plan
from embmap.mapper.profiles import default_profile
from embmap.mapper.workloads import builtin_workload
from embmap.passes.base import PassContext
from embmap.passes.profile import ProfilePass
from embmap.passes.solver.space import ROW_DROP, Envelope, _grid, space_bound_s
from tests.exhaustive import Pricer, random_instance


def part_costs(pricer: Pricer, table: str, strategy: Strategy, mode: PartitionMode, parts: int) -> np.ndarray:
    t = pricer.module.table(table)
    n = pricer.workload.batch_size if mode is PartitionMode.SAMPLES else t.rows
    if mode is PartitionMode.SAMPLES:
        return np.array([pricer.cost(table, strategy, t.rows, size, parts).total_s for size in range(1, n + 1)])
    # A row shard holds fewer rows than the table.
    batch = pricer.workload.batch_size
    return np.array([pricer.cost(table, strategy, size, batch, parts).total_s for size in range(1, n)])


def largest_fall(costs: np.ndarray) -> float:
    """The most a part's cost falls, relative, from one size to any larger one."""
    if len(costs) < 2:
        return 0.0
    later = np.minimum.accumulate(costs[::-1])[::-1][1:]  # the least cost at any larger size
    return float(np.max((costs[:-1] - later) / costs[:-1]))


@pytest.mark.parametrize("seed", range(0, 400, 4))
def test_part_costs_fall_no_more_than_the_bound_assumes(seed: int) -> None:
    """What the envelope's grid assumes of the cost model, checked at every size of random small instances: a
    row shard costs at most ROW_DROP / 2 less with more rows; where the local memory is not a cache, a sample
    cut never costs less with more samples (where it is a cache, the bound reads every size)."""
    inst = random_instance(seed, max_batch=40, max_rows=60)
    pricer = Pricer.of(inst)
    cores = pricer.target.cores
    for t in pricer.workload.tables:
        for strategy in Strategy:
            for mode in PartitionMode:
                if mode is PartitionMode.SAMPLES and pricer.target.local_is_cache:
                    continue
                least = 1 if mode is PartitionMode.SAMPLES else 2
                for parts in {k for k in (least, cores) if least <= k <= cores}:
                    fall = largest_fall(part_costs(pricer, t.name, strategy, mode, parts))
                    allowed = 0.0 if mode is PartitionMode.SAMPLES else ROW_DROP / 2
                    assert fall <= allowed, (
                        f"{t.name} {strategy.value}/{mode.value} x{parts}: the cost falls by {fall:.3%} with a larger "
                        f"part; {inst.to_json()}"
                    )


@pytest.mark.parametrize("workload", ["kuairec-big", "tenrec-qb-article", "avazu"])
def test_a_part_costs_no_less_with_more_samples_on_built_in_tables(workload: str) -> None:
    target = builtin_target("ascend910")
    module = ProfilePass().apply(lower(builtin_workload(workload), target, default_profile(target)), PassContext())
    batch = module.workload.batch_size
    for t in module.workload.tables[:8]:
        stats = module.table_profile(t.name)
        for strategy in Strategy:
            if strategy.preloaded and t.bytes > target.local.capacity_bytes:
                continue
            c = np.array(
                [
                    item_seconds(ItemShape(strategy, (0, t.rows), (0, n)), t, stats, target, module.cost_profile)
                    for n in range(1, batch + 1)
                ]
            )
            assert (np.diff(c) >= 0).all(), f"{workload} {t.name} {strategy.value}: cost drops with more samples"


def test_item_seconds_is_item_cost_total() -> None:
    pricer = Pricer.of(random_instance(7))
    t = pricer.workload.tables[0]
    stats = pricer.module.table_profile(t.name)
    for strategy in Strategy:
        shape = ItemShape(strategy, (0, t.rows), (0, pricer.workload.batch_size))
        full = item_cost(shape, t, stats, pricer.target, pricer.profile).total_s
        assert item_seconds(shape, t, stats, pricer.target, pricer.profile) == full


@pytest.mark.parametrize("n", [7, 300, 5000])
def test_the_envelope_lies_under_a_nondecreasing_cost_at_every_size(n: int) -> None:
    """Under the cost at every size, whatever its shape: steps, a concave rise, a convex one; and exact (equal
    to the cost) where the cost is linear and the grid reads every size."""
    rng = np.random.default_rng(n)
    shapes = {
        "steps": np.cumsum(rng.random(n) < 0.05) * 1e-6 + 1e-6,
        "concave": np.sqrt(np.arange(1, n + 1)) * 1e-7,
        "convex": (np.arange(1, n + 1) ** 1.7) * 1e-10,
        "linear": 2e-6 + np.arange(1, n + 1) * 3e-9,
    }
    for name, values in shapes.items():
        curve = Envelope(lambda m, v=values: float(v[m - 1]), n, [n / k for k in (1, 2, 3, 5)], _grid(n, 1.05, 10**6))
        e = curve.at(np.arange(1, n + 1, dtype=np.float64))
        assert (e <= values * (1 + 1e-12)).all(), (
            f"{name}: the envelope exceeds the cost at size {np.argmax(e > values) + 1}"
        )
        if name == "linear" and n <= 128:
            assert e == pytest.approx(values, rel=1e-12)


def test_read_at_every_size_the_envelope_and_least_costs_need_no_monotone_cost() -> None:
    """A cost that rises and falls (as a part's private cache hits can make it): the envelope stays under it and
    the least cost from a size on is the least of the larger sizes."""
    n = 500
    x = np.arange(1, n + 1)
    values = 1e-6 + 1e-8 * x * (1.2 + np.sin(x / 17.0))
    curve = Envelope(lambda m: float(values[m - 1]), n, [n / k for k in range(1, 9)])
    assert (curve.at(x.astype(np.float64)) <= values * (1 + 1e-12)).all()
    for size in (1, 40, 250, 499):
        assert curve.least_from(np.array([size]))[0] == pytest.approx(values[size - 1 :].min(), rel=1e-12)


@pytest.mark.parametrize("workload", ["tenrec-qb-article", "taobao-ub"])
def test_the_bound_is_under_the_plans_of_every_pipeline(workload: str) -> None:
    """The same bound for every pipeline (it depends on the workload, target and cost model only), under each
    pipeline's plan; the menu's own bound is kept apart."""
    plans = {p: compile_plan(workload, "ascend910", p, baselines=False) for p in ("embmap", "default", "greedy")}
    bounds = {p: plan.lower_bound_s for p, plan in plans.items()}
    assert len(set(bounds.values())) == 1, bounds
    for p, plan in plans.items():
        assert plan.lower_bound_s <= plan.makespan_s, p
        assert plan.solver.best_bound_s == plan.lower_bound_s
        assert plan.solver.menu_bound_s is not None
        assert plan.solver.objective_s == plan.makespan_s
    target = builtin_target("ascend910")
    module = ProfilePass().apply(lower(builtin_workload(workload), target, default_profile(target)), PassContext())
    assert space_bound_s(module) + module.cost_profile.core_start_s == pytest.approx(bounds["embmap"], rel=1e-12)


def test_on_one_core_every_table_is_one_whole_part_and_the_bound_is_the_plans_busy_time() -> None:
    """One core holds one part of each table: its options are the whole table's costs, read at the batch alone
    (reading every size of a cache target's batch made a 16-table device of a 32-rank cluster take 19 s)."""
    target = builtin_target("cpu").model_copy(update={"cores": 1})
    w = builtin_workload("tenrec-qb-article").model_copy(update={"batch_size": 256})
    plan = compile_plan(w, target, "embmap")
    module = lower(w.effective(), target, default_profile(target))
    module = ProfilePass().apply(module, PassContext())
    whole = {
        t.name: min(
            item_seconds(
                ItemShape(s, (0, t.rows), (0, 256)), t, module.table_profile(t.name), target, module.cost_profile
            )
            for s in Strategy
            if not s.preloaded or t.bytes <= target.local.capacity_bytes
        )
        for t in module.workload.tables
    }
    assert space_bound_s(module) == pytest.approx(sum(whole.values()), rel=1e-9)
    assert plan.solver.status == "OPTIMAL" and plan.lower_bound_s == pytest.approx(plan.makespan_s, rel=1e-9)
