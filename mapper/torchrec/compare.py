"""Any TorchRec plan priced by embmap's device level: compare planners on one cost model.

`shardings_of` reads a TorchRec ShardingPlan as table -> (sharding type, ranks); `predicted_s` prices such
shardings with the options the device level itself prices (`cluster.table_options`): each table takes the
option of its sharding type on its ranks, and the prediction is the slowest device's finish (compute spread
over its cores, then sending its outputs over the link). For embmap's own plan this is the device level's
objective, up to its integer time unit (1 ns per part). Compute kernels are not read: the device level prices
a table's lookups with the cheapest strategy of the cost model, whatever kernel a plan names. An
EmbeddingCollection's tables output a row per id: price them with `options=all_options(..., sequence=names)`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from embmap.ir.cluster import ClusterSpec, Sharding
from embmap.ir.cost_profile import CostProfile
from embmap.ir.errors import SpecError
from embmap.ir.spec import WorkloadSpec
from embmap.mapper.profiles import default_profile
from embmap.mapper.torchrec.cluster import device_loads, finish_s, table_options
from embmap.passes.solver.device_level import Option

Shardings = Mapping[str, tuple[Sharding, tuple[int, ...]]]


def shardings_of(plan: Any, module_path: str = "") -> dict[str, tuple[Sharding, tuple[int, ...]]]:
    """Table -> (sharding type, ranks) of the module at `module_path` in a TorchRec ShardingPlan (or of one
    module's plan, a mapping of table -> ParameterSharding). Types embmap has no form for are refused."""
    per_module = plan.plan.get(module_path) if hasattr(plan, "plan") else plan
    if per_module is None:
        raise SpecError("plan", f"plans no module at {module_path!r}", f"use one of {sorted(plan.plan)}")
    kinds = {s.value: s for s in Sharding}
    out = {}
    for table, ps in per_module.items():
        kind = str(getattr(ps.sharding_type, "value", ps.sharding_type))
        if kind not in kinds:
            raise SpecError(
                f"plan.{table}", f"sharding type {kind} has no embmap form", f"use one of {', '.join(kinds)}"
            )
        ranks = tuple(int(r) for r in ps.ranks or ())
        sharding = kinds[kind]
        # A replica's ranks are a set; a row or column block's order is which block each rank holds.
        out[table] = (sharding, tuple(sorted(ranks)) if sharding is Sharding.DATA_PARALLEL else ranks)
    return out


def all_options(
    workload: WorkloadSpec, spec: ClusterSpec, profile: CostProfile | None = None, sequence: Collection[str] = ()
) -> list[list[Option]]:
    """Every table's device-level options, of every sharding type (to price several plans of one cell);
    `sequence`: the tables whose outputs are a row per id (an EmbeddingCollection's)."""
    return table_options(workload.effective(), spec, profile or default_profile(spec.device), {}, sequence)


def chosen_options(
    workload: WorkloadSpec,
    spec: ClusterSpec,
    shardings: Shardings,
    profile: CostProfile | None = None,
    options: list[list[Option]] | None = None,
) -> list[Option]:
    """Per table of the workload, the device level's option of its sharding type on its ranks (`options`:
    `all_options`, computed here when not given)."""
    options = options if options is not None else all_options(workload, spec, profile)
    missing = sorted({t.name for t in workload.tables} - set(shardings))
    if missing:
        raise SpecError(f"shardings.{missing[0]}", "the plan does not shard this table", "plan every table")
    choice = []
    for t, opts in zip(workload.tables, options, strict=True):
        sharding, ranks = shardings[t.name]
        match = [o for o in opts if o.sharding is sharding and o.ranks == ranks]
        if not match:
            offered = sorted({str(list(o.ranks)) for o in opts if o.sharding is sharding})
            raise SpecError(
                f"shardings.{t.name}",
                f"{sharding.value} on ranks {list(ranks)} is no option of the device level "
                f"(it has {sharding.value} on {', '.join(offered[:3]) or 'none'}{' ...' if len(offered) > 3 else ''})",
                "use TorchRec's even splits over all ranks, or one rank for table_wise",
            )
        choice.append(match[0])
    return choice


def device_finishes_s(
    workload: WorkloadSpec,
    spec: ClusterSpec,
    shardings: Shardings,
    profile: CostProfile | None = None,
    options: list[list[Option]] | None = None,
) -> list[float]:
    """Every device's predicted finish: its compute spread over its cores, then sending its outputs."""
    compute, send, _ = device_loads(chosen_options(workload, spec, shardings, profile, options), spec)
    return [finish_s(c, s, spec.link) for c, s in zip(compute, send, strict=True)]


def predicted_s(
    workload: WorkloadSpec,
    spec: ClusterSpec,
    shardings: Shardings,
    profile: CostProfile | None = None,
    options: list[list[Option]] | None = None,
) -> float:
    """The device level's prediction of these shardings: the slowest device's finish."""
    return max(device_finishes_s(workload, spec, shardings, profile, options))


def memory_bytes(
    workload: WorkloadSpec, spec: ClusterSpec, shardings: Shardings, options: list[list[Option]] | None = None
) -> list[int]:
    """Every device's bytes of tables under these shardings (to check a plan against the memory)."""
    _, _, memory = device_loads(chosen_options(workload, spec, shardings, None, options), spec)
    return memory
