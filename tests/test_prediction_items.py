"""benchmarks/prediction_error.py --items: each item's measured p50 over its predicted cost, grouped by
workload, strategy and where its table fits."""

from __future__ import annotations

from types import ModuleType

from embmap.ir.spec import TableSpec, Uniform, WorkloadSpec
from embmap.mapper import compile
from embmap.runtime.executor import RunReport
from tests.conftest import load_script


def _bench() -> ModuleType:
    return load_script("benchmarks/prediction_error.py", "prediction_error")


def test_items_are_grouped_by_where_their_table_fits_with_measured_over_predicted() -> None:
    bench = _bench()
    workload = WorkloadSpec(
        name="three-sizes",
        batch_size=64,
        distribution=Uniform(),
        tables=[
            TableSpec(name="small", rows=100, dim=16),  # 6.4 KB: any core's private cache
            TableSpec(name="mid", rows=100_000, dim=32),  # 12.8 MB: a shared cache of 32 MiB, no private one
            TableSpec(name="big", rows=4_000_000, dim=32),  # 512 MB: no cache
        ],
    )
    plan = compile(workload, "ascend910", baselines=False)
    shared = plan.target.shared_cache
    assert shared is not None and plan.target.local.capacity_bytes < 12_800_000 <= shared.capacity_bytes
    # A run in which every item took exactly twice its predicted cost.
    assert [item.id for item in plan.items] == list(range(len(plan.items)))  # a report's items are by id
    twice = tuple((2 * item.cost.total_s,) for item in plan.items)
    report = RunReport("native", (0,), 1, True, 0.0, 0.0, (1.0,), ((1.0,),), twice, 1, 1)
    groups = bench.item_groups([("three-sizes", plan, report)])
    places = {t.name: bench.fits_in(t.bytes, plan.target) for t in plan.workload.tables}
    assert places == {
        "small": "private cache",
        "mid": "shared cache",
        "big": "neither",
    }
    assert {place for _, _, place in groups} == {"private cache", "shared cache", "neither"}
    assert sum(len(r) for r in groups.values()) == len(plan.items)
    assert all(abs(r - 2.0) < 1e-12 for ratios in groups.values() for r in ratios)
    assert {(s, p) for _, s, p in groups} == {(item.strategy.value, places[item.table]) for item in plan.items}
