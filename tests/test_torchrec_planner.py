"""TorchRec's planner as a baseline: its shardings become verified embmap plans that run correctly."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from embmap.cost_models import preset_profile
from embmap.ir.lowering import lower
from embmap.ir.plan import Strategy
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.ir.targets import ascend910
from embmap.ir.verify import item_violations
from embmap.mapper.compiler import prepare_workload, resolve_target
from embmap.mapper.profiles import default_profile
from embmap.mapper.torchrec.planner import ANALYSIS, _items, available, torchrec_plan
from embmap.passes import PassManager, parse_pipeline


def shard(row: int, rows: int, rank: int) -> SimpleNamespace:
    return SimpleNamespace(shard_offsets=[row, 0], shard_sizes=[rows, 8], placement=f"rank:{rank}/cpu")


def test_every_sharding_type_becomes_items_that_tile_the_tables() -> None:
    tables = tuple(TableSpec(name=n, rows=1000, dim=8, pooling=2) for n in ("tw", "rw", "dp"))
    w = WorkloadSpec(name="w", batch_size=64, tables=tables)
    target = ascend910().model_copy(update={"cores": 4})
    module = PassManager(parse_pipeline(ANALYSIS)).run(lower(w, target, preset_profile(target)))
    sharding = {
        "tw": SimpleNamespace(sharding_type="table_wise", ranks=[2], sharding_spec=None),
        "rw": SimpleNamespace(
            sharding_type="row_wise",
            ranks=[0, 1, 3],
            sharding_spec=SimpleNamespace(shards=[shard(600, 400, 3), shard(0, 300, 0), shard(300, 300, 1)]),
        ),
        "dp": SimpleNamespace(sharding_type="data_parallel", ranks=[0, 1, 2, 3], sharding_spec=None),
    }
    items = _items(module, sharding)
    assert item_violations(w.tables, target, 64, items) == []  # every lookup served exactly once
    by = {name: [it for it in items if it.table == name] for name in ("tw", "rw", "dp")}
    assert [(it.core, it.rows, it.samples, it.output) for it in by["tw"]] == [(2, (0, 1000), (0, 64), "write")]
    assert [(it.core, it.rows, it.output) for it in by["rw"]] == [
        (0, (0, 300), "accumulate"),
        (1, (300, 600), "accumulate"),
        (3, (600, 1000), "accumulate"),
    ]
    assert [it.samples for it in by["dp"]] == [(0, 16), (16, 32), (32, 48), (48, 64)]
    assert all(it.strategy is Strategy.GM and it.cost.total_s > 0 for it in items)


needs_torchrec = pytest.mark.skipif(not available(), reason="TorchRec is not installed")


@needs_torchrec
def test_torchrec_plan_is_verified_and_runs_correctly() -> None:
    from embmap.runtime import RunConfig, run_plan

    target = resolve_target("cpu")
    plan, seconds = torchrec_plan(
        prepare_workload("tenrec-qb-article", row_cap=100_000), target, default_profile(target)
    )
    assert seconds > 0 and plan.solver.method == "torchrec"
    assert plan.makespan_s >= plan.lower_bound_s
    assert run_plan(plan, RunConfig(batches=3, warmup=1, index_batches=2)).correct


@needs_torchrec
def test_torchrec_plan_is_never_better_than_embmap_predicted() -> None:
    from embmap.mapper import SolverSettings, compile

    target = resolve_target("ascend910")
    spec = prepare_workload("avazu")
    theirs, _ = torchrec_plan(spec, target, default_profile(target))
    ours = compile(spec, target, solver=SolverSettings(time_limit_s=2.0, workers=1, seed=0), baselines=False)
    assert ours.makespan_s <= theirs.makespan_s
