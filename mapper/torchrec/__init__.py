"""Plans across devices, and TorchRec in and out.

`cluster` plans a workload for N identical devices in two levels (`passes/solver/device_level` shards the
tables over the devices, the core level maps each device's share onto its cores); `io` imports a TorchRec model's tables as a
workload and exports the device level as a TorchRec `ShardingPlan`; `dmp` runs such a plan on TorchRec's
DistributedModelParallel; `planner` runs TorchRec's own EmbeddingShardingPlanner as a baseline pipeline;
`sharding_planner.EmbmapShardingPlanner` (importable from here) is a drop-in for EmbeddingShardingPlanner.
TorchRec is an optional dependency: `cluster` needs none of it. docs/torchrec.md has the details.
"""


def __getattr__(name: str) -> object:
    """`EmbmapShardingPlanner` on first use: importing it imports TorchRec, which this package does not need."""
    if name == "EmbmapShardingPlanner":
        from embmap.mapper.torchrec.sharding_planner import EmbmapShardingPlanner

        return EmbmapShardingPlanner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
