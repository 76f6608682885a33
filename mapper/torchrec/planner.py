"""TorchRec's EmbeddingShardingPlanner as a baseline: plan the same tables with cores as ranks, then score
and run its plan like any other.

The planner sees each table (rows, dim, pooling factor) and the batch size, with one rank per core of the
target, and may shard table-wise, row-wise or data-parallel (the forms an embmap plan expresses; column-wise
splits are not offered to it). Its plan becomes work items: a table-wise table is one GM item on its rank;
a row-wise table one GM row shard per rank, accumulating into the output; a data-parallel table one GM item
per rank over that rank's share of the batch. The items are then costed by embmap's cost model, scheduled
and verified by the same passes as every other pipeline.

TorchRec is an optional dependency: `make` installs it (see the README); without it `available()` is false.
"""

from __future__ import annotations

import time
from typing import Any

from embmap.cost_models.analytic import ItemShape, item_cost
from embmap.ir.cost_profile import CostProfile
from embmap.ir.errors import SpecError
from embmap.ir.lowering import lower
from embmap.ir.module import Module, split_range
from embmap.ir.plan import ExecutionPlan, SolverReport, Strategy, WorkItem
from embmap.ir.spec import TargetSpec, WorkloadSpec
from embmap.mapper.backend import emit_plan
from embmap.passes import PassManager, parse_pipeline
from embmap.passes.solver.bounds import lower_bound_s
from embmap.passes.solver.items import items_makespan_s

ANALYSIS = "profile,select-strategy,partition"
PIPELINE_TEXT = "torchrec:EmbeddingShardingPlanner{table_wise,row_wise,data_parallel},schedule,verify"


def available() -> bool:
    try:
        import torchrec  # noqa: F401
        from torchrec.distributed.planner import EmbeddingShardingPlanner  # noqa: F401
    except Exception:  # an absent or broken install (e.g. a mismatched FBGEMM) both mean "not here"
        return False
    return True


def torchrec_sharding(workload: WorkloadSpec, ranks: int) -> tuple[dict[str, Any], float]:
    """TorchRec's plan for the workload's tables on `ranks` CPU ranks: table name -> ParameterSharding, and
    the planner's wall time in seconds."""
    if not available():
        raise SpecError(
            "pipeline torchrec", "TorchRec is not installed", "run `make test` once, or see the README's TorchRec notes"
        )
    import logging

    from torchrec.distributed.planner.types import ParameterConstraints
    from torchrec.distributed.types import ShardingType
    from torchrec.modules.embedding_configs import EmbeddingBagConfig

    tables = workload.effective().tables
    configs = [
        EmbeddingBagConfig(name=t.name, embedding_dim=t.dim, num_embeddings=t.rows, feature_names=[t.name])
        for t in tables
    ]
    kinds = [ShardingType.TABLE_WISE.value, ShardingType.ROW_WISE.value, ShardingType.DATA_PARALLEL.value]
    constraints = {
        t.name: ParameterConstraints(sharding_types=kinds, pooling_factors=[float(t.pooling)]) for t in tables
    }
    logging.getLogger("torchrec").setLevel(logging.ERROR)
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the planner warns through the root logger about specs of meta tensors
    try:
        return _plan(workload, ranks, constraints, configs)
    finally:
        root.setLevel(level)


def _plan(
    workload: WorkloadSpec, ranks: int, constraints: dict[str, Any], configs: list[Any]
) -> tuple[dict[str, Any], float]:
    import warnings

    import torch
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        collection = EmbeddingBagCollection(tables=configs, device=torch.device("meta"))
        planner = EmbeddingShardingPlanner(
            topology=Topology(world_size=ranks, compute_device="cpu"),
            batch_size=workload.batch_size,
            constraints=constraints,
        )
        start = time.perf_counter()
        plan = planner.plan(collection, [EmbeddingBagCollectionSharder()])
        seconds = time.perf_counter() - start
    return dict(plan.plan[""].items()), seconds


def torchrec_plan(workload: WorkloadSpec, target: TargetSpec, profile: CostProfile) -> tuple[ExecutionPlan, float]:
    """TorchRec's plan for the workload on the target's cores, as an embmap plan; and the planner's time."""
    sharding, seconds = torchrec_sharding(workload, target.cores)
    module = PassManager(parse_pipeline(ANALYSIS)).run(lower(workload, target, profile))
    items = _items(module, sharding)
    bound = lower_bound_s(module)  # busy time, as the objective: the plan adds the start-up to both
    report = SolverReport.of("torchrec", "NOT_SOLVED", items_makespan_s(items), bound, seconds)
    module = module.model_copy(update={"items": items, "solver": report, "lower_bound_s": bound})
    module = PassManager(parse_pipeline("schedule,verify")).run(module)
    return emit_plan(module, PIPELINE_TEXT, {}), seconds


def _items(module: Module, sharding: dict[str, Any]) -> tuple[WorkItem, ...]:
    batch = module.workload.batch_size
    items: list[WorkItem] = []
    for t in module.workload.tables:
        ps = sharding[t.name]
        kind = str(ps.sharding_type)
        if kind == "table_wise":
            parts = [((0, t.rows), (0, batch), ps.ranks[0])]
        elif kind == "row_wise":
            shards = sorted(ps.sharding_spec.shards, key=lambda s: s.shard_offsets[0])
            parts = [
                ((s.shard_offsets[0], s.shard_offsets[0] + s.shard_sizes[0]), (0, batch), _rank(s.placement))
                for s in shards
                if s.shard_sizes[0] > 0
            ]
        elif kind == "data_parallel":
            parts = [((0, t.rows), s, r) for s, r in zip(split_range(batch, len(ps.ranks)), ps.ranks, strict=True)]
        else:
            raise SpecError(
                f"torchrec plan of {t.name}",
                f"sharding type {kind} has no embmap form",
                "allow only table_wise, row_wise, data_parallel",
            )
        stats = module.part_profile(t.name, len({core for _, _, core in parts}))
        for rows, samples, core in parts:
            items.append(
                WorkItem(
                    id=len(items),
                    table=t.name,
                    output="accumulate" if kind == "row_wise" and len(parts) > 1 else "write",
                    strategy=Strategy.GM,
                    rows=rows,
                    samples=samples,
                    core=core,
                    cost=item_cost(ItemShape(Strategy.GM, rows, samples), t, stats, module.target, module.cost_profile),
                )
            )
    return tuple(items)


def _rank(placement: Any) -> int:
    """`rank:3/cpu` -> 3."""
    return int(str(placement).split("rank:")[1].split("/")[0])
