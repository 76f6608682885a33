"""TorchRec in and out: a workload from a TorchRec model's tables, and a cluster plan as a TorchRec
ShardingPlan that DistributedModelParallel executes.

Import reads an `EmbeddingBagCollection` (or its `EmbeddingBagConfig`s): every table's name, rows, dim and
dtype. TorchRec's configs do not say how many ids a sample looks up, so the pooling factor of each table
comes from `pooling` (table -> mean ids per sample), else from TorchRec `ParameterConstraints`
(`pooling_factors`, one per feature), else TorchRec's own default of 1.0. A table read by several features
looks up the sum of their pooling factors per sample. Factors are means and stay fractional (0.3 is 0.3
lookups per sample): the cost model prices the mean.

Export builds the ShardingPlan with TorchRec's public constructors (`table_wise`, `row_wise`,
`column_wise`, `data_parallel`, `construct_module_sharding_plan`), so TorchRec itself lays out the shards;
`row_wise` and `column_wise` split evenly, as the cluster plan assumed (`mapper.torchrec.cluster.row_blocks`).
Sharded tables use FBGEMM's fused table-batched kernel, as TorchRec's planner picks on CPU; data-parallel
replicas use the dense kernel, the only one TorchRec allows for them.

TorchRec is an optional dependency: `make` installs it (see the README).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from embmap.ir.cluster import ClusterPlan, Sharding, TableSharding
from embmap.ir.errors import SpecError
from embmap.ir.output import write_atomic
from embmap.ir.spec import MAX_POOLING, Distribution, DType, TableSpec, Uniform, WorkloadSpec
from embmap.mapper.torchrec.planner import available

DEFAULT_POOLING = 1.0  # TorchRec's planner assumes one id per sample and feature when told nothing
FUSED = "fused"  # FBGEMM's table-batched kernel for sharded tables (data-parallel replicas stay dense)
DTYPES = {"FP32": DType.FP32, "FP16": DType.FP16, "INT8": DType.INT8}


def _require_torchrec(what: str) -> None:
    if not available():
        raise SpecError(what, "needs TorchRec, which is not installed", "run `make test` once, or see the README")


def workload_from_torchrec(
    tables: Any,
    *,
    batch_size: int,
    pooling: Mapping[str, float] | None = None,
    constraints: Mapping[str, Any] | None = None,
    distribution: Distribution | None = None,
    name: str = "torchrec-model",
) -> WorkloadSpec:
    """A workload from an EmbeddingBagCollection or a sequence of EmbeddingBagConfig.

    `batch_size` is the global batch of one step: TorchRec's per-rank batch times the world size.
    """
    _require_torchrec("workload_from_torchrec")
    configs: Sequence[Any] = tables.embedding_bag_configs() if hasattr(tables, "embedding_bag_configs") else tables
    if not configs:
        raise SpecError("tables", "no embedding tables given", "pass an EmbeddingBagCollection or its configs")
    pooling = dict(pooling or {})
    constraints = dict(constraints or {})
    known = {c.name for c in configs}
    for what, names in (("pooling", pooling), ("constraints", constraints)):
        unknown = sorted(set(names) - known)
        if unknown:
            raise SpecError(
                f"{what}.{unknown[0]}", "names no table of the model", f"use one of {', '.join(sorted(known))}"
            )
    specs, assumed = [], []
    for c in configs:
        dtype = DTYPES.get(getattr(c.data_type, "name", str(c.data_type)))
        if dtype is None:
            raise SpecError(f"tables.{c.name}.data_type", f"{c.data_type} is not supported", "use FP32, FP16 or INT8")
        factor = _pooling_of(c, pooling, constraints)
        if factor is None:
            factor = DEFAULT_POOLING * len(c.feature_names)
            assumed.append(c.name)
        specs.append(TableSpec(name=c.name, rows=c.num_embeddings, dim=c.embedding_dim, dtype=dtype, pooling=factor))
    notes = []
    if assumed:
        notes.append(
            f"pooling factor {DEFAULT_POOLING:g} per feature (TorchRec's default) for {len(assumed)} tables "
            f"without one: {', '.join(assumed[:5])}{' ...' if len(assumed) > 5 else ''}"
        )
    return WorkloadSpec(
        name=name,
        batch_size=batch_size,
        distribution=distribution or Uniform(),
        tables=tuple(specs),
        source="TorchRec EmbeddingBagConfigs",
        assumptions=tuple(notes),
    )


def _pooling_of(config: Any, pooling: Mapping[str, float], constraints: Mapping[str, Any]) -> float | None:
    if config.name in pooling:
        factor = float(pooling[config.name])
        where = f"pooling.{config.name}"
    elif config.name in constraints and getattr(constraints[config.name], "pooling_factors", None):
        factor = float(sum(constraints[config.name].pooling_factors))
        where = f"constraints.{config.name}.pooling_factors"
    else:
        return None
    if not 0 < factor <= MAX_POOLING:
        raise SpecError(
            where, f"must be in (0, {MAX_POOLING:,}], got {factor}", "give the mean number of ids per sample"
        )
    return factor


def collection(workload: WorkloadSpec, device: str = "meta") -> Any:
    """An EmbeddingBagCollection of the workload's tables, one feature per table, named as the table."""
    import torch
    from torchrec.modules.embedding_configs import DataType, EmbeddingBagConfig
    from torchrec.modules.embedding_modules import EmbeddingBagCollection

    kinds = {DType.FP32: DataType.FP32, DType.FP16: DataType.FP16, DType.INT8: DataType.INT8}
    return EmbeddingBagCollection(
        tables=[
            EmbeddingBagConfig(
                name=t.name,
                embedding_dim=t.dim,
                num_embeddings=t.rows,
                feature_names=[t.name],
                data_type=kinds[t.dtype],
            )
            for t in workload.tables
        ],
        device=torch.device(device),
    )


def sharding_plan(plan: ClusterPlan, module: Any = None, module_path: str = "", device_type: str | None = None) -> Any:
    """The device level of a cluster plan as a TorchRec ShardingPlan for the EmbeddingBagCollection at
    `module_path` (built from the plan's tables when `module` is None). `device_type` defaults to "cpu" for
    the cpu target and "cuda" otherwise."""
    _require_torchrec("export")
    from torchrec.distributed.types import ShardingPlan

    ebc = module if module is not None else collection(plan.workload)
    tables = {c.name: c for c in ebc.embedding_bag_configs()}
    for t in plan.workload.tables:
        c = tables.get(t.name)
        if c is None or (c.num_embeddings, c.embedding_dim) != (t.rows, t.dim):
            have = "missing" if c is None else f"{c.num_embeddings} x {c.embedding_dim}"
            raise SpecError(
                f"tables.{t.name}",
                f"the plan has {t.rows} x {t.dim}, the module {have}",
                "plan the module's own tables (no row cap), or export without a module",
            )
    world = plan.cluster.devices
    kind = device_type or ("cpu" if plan.cluster.device.name == "cpu" else "cuda")
    return ShardingPlan({module_path: module_sharding_plan(ebc, plan.shardings, world, kind)})


def module_sharding_plan(
    module: Any,
    shardings: Iterable[TableSharding],
    world: int,
    device_type: str,
    sharder: Any = None,
    local_size: int | None = None,
) -> Any:
    """One sharded module's EmbeddingModuleShardingPlan from the device level's shardings of its tables, built
    by TorchRec's constructors so that TorchRec lays out the shards."""
    from torchrec.distributed.sharding_plan import (
        column_wise,
        construct_module_sharding_plan,
        data_parallel,
        row_wise,
        table_wise,
    )

    per_param = {}
    for s in shardings:
        if s.sharding is Sharding.TABLE_WISE:
            per_param[s.table] = table_wise(rank=s.ranks[0], compute_kernel=FUSED)
        elif s.sharding is Sharding.ROW_WISE:
            per_param[s.table] = row_wise(compute_kernel=FUSED)
        elif s.sharding is Sharding.COLUMN_WISE:
            per_param[s.table] = column_wise(ranks=list(s.ranks), compute_kernel=FUSED)
        else:
            per_param[s.table] = data_parallel()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return construct_module_sharding_plan(
            module,
            per_param,
            sharder=sharder,
            local_size=local_size or world,
            world_size=world,
            device_type=device_type,
        )


def export_torchrec(plan: ClusterPlan, path: Path, device_type: str | None = None) -> None:
    """Write the ShardingPlan with `torch.save` (load it with `torch.load(path, weights_only=False)`), whole or
    not at all (`write_atomic`)."""
    import torch

    result = sharding_plan(plan, device_type=device_type)
    write_atomic(path, lambda f: torch.save(result, f), "--output")
