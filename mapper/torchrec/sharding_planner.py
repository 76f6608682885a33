"""`EmbmapShardingPlanner`: TorchRec's planner interface, planned by embmap's device level.

A drop-in for TorchRec's `EmbeddingShardingPlanner`:

    planner = EmbmapShardingPlanner(topology=topology, batch_size=batch_size, constraints=constraints)
    model = DistributedModelParallel(model, plan=planner.collective_plan(model, sharders, pg))

Plans are for inference: the device level prices forward lookups and the output all-to-all, not the backward
pass, gradient exchange or optimizer state. A module in training mode, or sharders whose fused parameters
name an optimizer, get a warning.

It walks the module tree and plans every EmbeddingBagCollection and EmbeddingCollection the sharders cover, all
tables together, keyed by the modules' real paths (`compile_cluster`, then `io.module_sharding_plan`).
`batch_size` is per rank, as TorchRec means it; the device level plans the global batch, batch_size x
world_size. Constraints are read by `constraints.read_constraints`: honoured, or refused in one line. An
EmbeddingCollection's tables output a row per id (sequences, not pooled sums): the device level prices those
outputs, pooling factor times a pooled table's, in the writes and in the all-to-all (`sequence_tables` of
`compile_cluster`). An EmbeddingBagCollection with weighted features is refused (the cost model prices unweighted
sums). MEAN pooling is planned as SUM: the same lookups and output bytes; the division of each output by its
length is not priced.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

from torch import nn
from torchrec.distributed.planner.constants import BATCH_SIZE
from torchrec.distributed.planner.storage_reservations import (
    FixedPercentageStorageReservation,
    HeuristicalStorageReservation,
)
from torchrec.distributed.types import ShardingPlan, ShardingPlanner
from torchrec.modules.embedding_modules import EmbeddingBagCollection, EmbeddingCollection

from embmap.ir.cluster import ClusterPlan
from embmap.ir.errors import SpecError
from embmap.ir.spec import TargetSpec
from embmap.mapper.torchrec.cluster import cluster, compile_cluster, explain_cluster
from embmap.mapper.torchrec.constraints import TableConstraints, read_constraints
from embmap.mapper.torchrec.io import module_sharding_plan, workload_from_torchrec
from embmap.passes.solver.settings import SolverSettings

log = logging.getLogger("embmap.torchrec")

DEFAULT_RESERVATION = 0.15  # TorchRec's default storage reservation (HeuristicalStorageReservation(0.15))
# EmbeddingShardingPlanner's arguments that embmap replaces by its own stages: refused when given.
REPLACED = ("enumerator", "proposer", "partitioner", "performance_model", "stats", "callbacks", "plan_loader")
INFERENCE_ONLY = (
    "embmap plans are for inference (forward lookups and the output all-to-all); the backward pass, gradient "
    "exchange and optimizer state are not planned"
)


class EmbmapShardingPlanner(ShardingPlanner):
    """TorchRec's `ShardingPlanner`, planned by embmap: plans are for inference (see the module docstring).

    `topology`, `batch_size` (per rank), `constraints` and `storage_reservation` mean what they mean to
    `EmbeddingShardingPlanner`. `target` is the embmap target of one device (required for a non-cpu topology:
    TorchRec's topology does not say which accelerator it is); `solver` bounds the device level's search (in
    deterministic time: the same settings give the same plan). `debug` logs the plan's explanation.
    `timeout_seconds` (a wall-clock limit) and the stages embmap replaces (`REPLACED`) are refused when set.
    """

    def __init__(
        self,
        topology: Any = None,
        batch_size: int | None = None,
        storage_reservation: Any = None,
        constraints: dict[str, Any] | None = None,
        debug: bool = True,
        timeout_seconds: int | None = None,
        *,
        target: TargetSpec | str | None = None,
        solver: SolverSettings | None = None,
        **replaced: Any,
    ) -> None:
        for name, value in replaced.items():
            if name not in REPLACED:
                raise TypeError(f"EmbmapShardingPlanner got an unexpected argument {name!r}")
            if value is not None:
                raise SpecError(name, "embmap plans with its own device level and cost model", f"leave {name} unset")
        if timeout_seconds is not None:
            raise SpecError(
                "timeout_seconds", "wall-clock limits are not used (plans repeat)", "pass solver=SolverSettings(...)"
            )
        if topology is None:
            raise SpecError("topology", "is required", "pass Topology(world_size=N, compute_device=...)")
        self._topology = topology
        self._batch_size = batch_size or BATCH_SIZE
        self._constraints = dict(constraints or {})
        self._reservation = _reserved_fraction(storage_reservation)
        self._debug = debug
        self._target = target if target is not None else _target_of(topology)
        self._solver = solver or SolverSettings()
        self.last_plan: ClusterPlan | None = None  # the latest plan, devices and cores, for explain_cluster

    def collective_plan(self, module: nn.Module, sharders: list[Any] | None = None, pg: Any = None) -> ShardingPlan:
        """`plan` on rank 0, broadcast to every rank of `pg` (the default group when None), as TorchRec does."""
        import torch.distributed as dist
        from torchrec.distributed.collective_utils import invoke_on_rank_and_broadcast_result
        from torchrec.distributed.sharding_plan import get_default_sharders

        if pg is None:
            if not dist.is_initialized():
                raise SpecError("pg", "no process group", "call torch.distributed.init_process_group first, or plan()")
            pg = dist.GroupMember.WORLD
        return invoke_on_rank_and_broadcast_result(pg, 0, self.plan, module, sharders or get_default_sharders())

    def plan(self, module: nn.Module, sharders: list[Any]) -> ShardingPlan:
        """A ShardingPlan for every EmbeddingBagCollection in `module` that `sharders` cover."""
        _warn_if_training(module, sharders)
        n = self._topology.world_size
        kind = self._topology.compute_device
        found = _sharded_modules(module, sharders)
        if not found:
            raise SpecError("module", "has no EmbeddingBagCollection the sharders cover", "pass its sharders")
        configs, per_table, owner = self._tables(found, kind, n)
        pooling = {name: tc.pooling for name, tc in per_table.items() if tc.pooling is not None}
        workload = workload_from_torchrec(configs, batch_size=self._batch_size * n, pooling=pooling)
        spec = cluster(self._target, n, memory_bytes=self._memory_bytes(module, found))
        shardings = {name: list(tc.allowed) for name, tc in per_table.items()}
        sequence = [name for name, path in owner.items() if not isinstance(found[path][0], EmbeddingBagCollection)]
        result = compile_cluster(workload, spec, solver=self._solver, shardings=shardings, sequence_tables=sequence)
        self.last_plan = result
        if self._debug:
            log.info("%s", explain_cluster(result))
        plans = {}
        for path, (mod, sharder) in found.items():
            mine = [s for s in result.shardings if owner[s.table] == path]
            mp = module_sharding_plan(mod, mine, n, kind, sharder, self._topology.local_world_size)
            for s in mine:
                for field, value in per_table[s.table].passed_through.items():
                    setattr(mp[s.table], field, value)
            plans[path] = mp
        return ShardingPlan(plans)

    def _tables(
        self, found: dict[str, tuple[Any, Any]], kind: str, n: int
    ) -> tuple[list[Any], dict[str, TableConstraints], dict[str, str]]:
        """Every planned table's config, constraints read, and owning module path."""
        configs: list[Any] = []
        per_table: dict[str, TableConstraints] = {}
        owner: dict[str, str] = {}
        for path, (mod, sharder) in found.items():
            offered = {st: sharder.compute_kernels(st, kind) for st in sharder.sharding_types(kind)}
            pooled = isinstance(mod, EmbeddingBagCollection)
            if pooled and mod.is_weighted():
                raise SpecError(f"module {path or '<root>'}", "has weighted features", "not modelled: unweighted sums")
            for c in mod.embedding_bag_configs() if pooled else mod.embedding_configs():
                if c.name in owner:
                    raise SpecError(
                        f"tables.{c.name}",
                        f"in both {owner[c.name] or '<root>'} and {path or '<root>'}",
                        "give tables unique names: constraints name tables, not modules",
                    )
                owner[c.name] = path
                per_table[c.name] = read_constraints(c, self._constraints.get(c.name), offered, n, self._batch_size)
                configs.append(c)
        unknown = sorted(set(self._constraints) - set(owner))
        if unknown:
            raise SpecError(f"constraints.{unknown[0]}", "names no planned table", f"use one of {', '.join(owner)}")
        return configs, per_table, owner

    def _memory_bytes(self, module: nn.Module, found: dict[str, tuple[Any, Any]]) -> int:
        """One device's memory for tables: the topology's (HBM, or DDR on cpu) less the reservation and the
        dense parameters every rank holds (what TorchRec's heuristical reservation sets aside, too)."""
        storage = {(d.storage.hbm, d.storage.ddr) for d in self._topology.devices}
        if len(storage) != 1:
            raise SpecError("topology", "devices with different storage are not modelled", "give identical devices")
        hbm, ddr = storage.pop()
        total = ddr if self._topology.compute_device == "cpu" else hbm
        sharded = {id(p) for mod, _ in found.values() for p in mod.parameters()}
        dense = sum(p.numel() * p.element_size() for p in module.parameters() if id(p) not in sharded)
        return max(1, int(total * (1 - self._reservation)) - dense)


def _reserved_fraction(reservation: Any) -> float:
    if reservation is None:
        return DEFAULT_RESERVATION
    if isinstance(reservation, (HeuristicalStorageReservation, FixedPercentageStorageReservation)):
        return float(reservation._percentage)
    raise SpecError(
        "storage_reservation",
        f"{type(reservation).__name__} is not modelled",
        "use HeuristicalStorageReservation or FixedPercentageStorageReservation",
    )


def _target_of(topology: Any) -> str:
    if topology.compute_device == "cpu":
        return "cpu"
    raise SpecError(
        "target",
        f"a {topology.compute_device} topology does not say which device it is",
        "pass target= (a built-in target name or a TargetSpec of one device)",
    )


def _sharded_modules(module: nn.Module, sharders: list[Any]) -> dict[str, tuple[Any, Any]]:
    """Module path -> (module, sharder) for every EmbeddingBagCollection or EmbeddingCollection a sharder
    covers; other sharded modules are refused."""
    by_type = {s.module_type: s for s in sharders}
    found: dict[str, tuple[Any, Any]] = {}
    for path, mod in module.named_modules():
        if any(path.startswith(f"{p}.") or p == "" for p in found):
            continue  # inside a module already planned
        sharder = by_type.get(type(mod))
        if sharder is None:
            continue
        if not isinstance(mod, (EmbeddingBagCollection, EmbeddingCollection)):
            raise SpecError(
                f"module {path or '<root>'}",
                f"{type(mod).__name__} is not modelled: the cost model prices embedding lookups",
                "plan it with TorchRec's planner, or leave its sharder out",
            )
        found[path] = (mod, sharder)
    return found


def _warn_if_training(module: nn.Module, sharders: list[Any]) -> None:
    if module.training:
        warnings.warn(f"the module is in training mode: {INFERENCE_ONLY}", stacklevel=3)
    for s in sharders:
        fused = getattr(s, "fused_params", None) or {}
        if "optimizer" in fused:
            warnings.warn(f"{type(s).__name__} has an optimizer in its fused_params: {INFERENCE_ONLY}", stacklevel=3)
