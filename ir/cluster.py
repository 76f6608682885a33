"""The device level: a cluster of identical devices, and the plan that shards tables across them.

A model that outgrows one chip runs on N devices (TorchRec's DistributedModelParallel, one rank per device).
Every device holds some tables, or parts of them, and serves their lookups for the whole global batch; the
pooled outputs then travel to the devices that own the samples in an all-to-all. A `ClusterPlan` records how
each table is sharded across the devices, in TorchRec's terms (`table_wise`, `row_wise`, `column_wise`,
`data_parallel`), and, for every device, the execution plans that map its share onto its cores.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Final, Literal

from pydantic import Field, model_validator

from embmap.ir.errors import SpecError, VerificationError
from embmap.ir.plan import ExecutionPlan, SolverReport
from embmap.ir.spec import Frozen, TableSpec, TargetSpec, WorkloadSpec
from embmap.ir.verify import verify_plan

CLUSTER_PLAN_SCHEMA: Final = "embmap.cluster-plan/2"


class LinkSpec(Frozen):
    """What one device can send to the others per second in the output all-to-all, and its fixed latency."""

    name: str = Field(min_length=1, max_length=64)
    bandwidth_bytes_per_s: float = Field(gt=0.0)
    latency_s: float = Field(ge=0.0, lt=1.0)


class ClusterSpec(Frozen):
    """N identical devices (ranks), each a `TargetSpec` with its own cores and memories."""

    name: str = Field(min_length=1, max_length=128)
    devices: int = Field(ge=1, le=4096)
    device: TargetSpec
    link: LinkSpec
    source: str = ""

    def digest(self) -> str:
        """As `TargetSpec.digest`: the first 16 hex digits of the SHA-256 of the compact JSON."""
        return "sha256:" + hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


class Sharding(enum.StrEnum):
    """How a table is spread over the devices (TorchRec's sharding types)."""

    TABLE_WISE = "table_wise"  # the whole table on one device
    ROW_WISE = "row_wise"  # rows in equal blocks over all devices; partial sums are reduced
    COLUMN_WISE = "column_wise"  # columns in equal blocks over all devices; outputs concatenated
    DATA_PARALLEL = "data_parallel"  # a replica on every device, serving that device's own samples


class TableSharding(Frozen):
    table: str
    sharding: Sharding
    ranks: tuple[int, ...] = Field(min_length=1, description="devices holding a part (one for table_wise)")
    rows: tuple[tuple[int, int], ...] = Field(description="per rank: the row range it holds")
    columns: tuple[tuple[int, int], ...] = Field(description="per rank: the column range it holds")
    bytes_per_rank: int
    output: Literal["pooled", "sequence"] = Field(
        "pooled", description="a pooled row per sample (EmbeddingBagCollection) or a row per id (EmbeddingCollection)"
    )

    @model_validator(mode="after")
    def _one_range_per_rank(self) -> TableSharding:
        if not len(self.rows) == len(self.columns) == len(self.ranks):
            raise SpecError(f"shardings.{self.table}", "needs one row range and one column range per rank")
        return self


class DevicePlan(Frozen):
    device: int
    plans: tuple[ExecutionPlan, ...] = Field(
        description="execution plans run one after the other on this device's cores: the model-parallel "
        "shards over the global batch, then the data-parallel replicas over this device's samples"
    )
    memory_bytes: int
    compute_s: float = Field(
        description="predicted: the makespans of its plans, one after the other, plus `sequence_write_s`"
    )
    sequence_write_s: float = Field(
        0.0, description="what its sequence tables write beyond the pooled rows its plans price (device level)"
    )
    send_bytes: int = Field(description="pooled outputs (or partial sums) this device sends to the others")
    comm_s: float
    finish_s: float


class ClusterPlan(Frozen):
    schema_version: Literal["embmap.cluster-plan/2"] = CLUSTER_PLAN_SCHEMA
    generator: str
    pipeline: str
    workload_digest: str = Field(description="`workload.digest()` when compiled; checked on load")
    cluster_digest: str = Field(description="`cluster.digest()` when compiled; checked on load")
    workload: WorkloadSpec
    cluster: ClusterSpec
    shardings: tuple[TableSharding, ...]
    devices: tuple[DevicePlan, ...]
    makespan_s: float = Field(description="predicted time of one global batch: the last device to finish")
    solver: SolverReport = Field(description="the device-level assignment")
    baselines_s: dict[str, float] = Field(default_factory=dict)

    def sharding_of(self, table: str) -> TableSharding:
        return next(s for s in self.shardings if s.table == table)


def verify_cluster_plan(plan: ClusterPlan) -> None:
    """Every table sharded exactly once, over devices that exist, its parts covering it exactly; every
    device's plans verified; the makespan the slowest device's finish."""
    bad: list[str] = []
    n = plan.cluster.devices
    tables = {t.name: t for t in plan.workload.tables}
    seen = [s.table for s in plan.shardings]
    if sorted(seen) != sorted(tables):
        bad.append("shardings must name every table of the workload exactly once")
    for s in plan.shardings:
        t = tables.get(s.table)
        if t is not None:
            bad += _sharding_violations(s, t, n)
    if len(plan.devices) != n or [d.device for d in plan.devices] != list(range(n)):
        bad.append(f"devices must be 0..{n - 1}, one plan each")
    elif plan.devices and abs(plan.makespan_s - max(d.finish_s for d in plan.devices)) > 1e-12:
        bad.append("makespan_s must be the slowest device's finish")
    if bad:
        raise VerificationError(bad, "cluster plan")
    for d in plan.devices:
        for p in d.plans:
            verify_plan(p)


def _sharding_violations(s: TableSharding, t: TableSpec, devices: int) -> list[str]:
    """One table's sharding: distinct devices that exist, and parts that cover the table exactly."""
    bad = []
    if any(not 0 <= r < devices for r in s.ranks) or len(set(s.ranks)) != len(s.ranks):
        bad.append(f"{s.table}: ranks {s.ranks} are not distinct devices of {devices}")
    whole_rows = all(r == (0, t.rows) for r in s.rows)
    whole_cols = all(c == (0, t.dim) for c in s.columns)
    if s.sharding in (Sharding.TABLE_WISE, Sharding.DATA_PARALLEL):
        ok = whole_rows and whole_cols and (len(s.ranks) == 1) == (s.sharding is Sharding.TABLE_WISE)
    elif s.sharding is Sharding.ROW_WISE:
        ok = whole_cols and _tiles(s.rows, t.rows)
    else:
        ok = whole_rows and _tiles(s.columns, t.dim)
    if not ok:
        bad.append(f"{s.table}: its {s.sharding.value} parts do not cover the table exactly")
    return bad


def _tiles(ranges: tuple[tuple[int, int], ...], size: int) -> bool:
    """Consecutive ranges from 0 to `size` (an empty last block allowed, as TorchRec's row-wise split has)."""
    at = 0
    for a, b in ranges:
        if a != at or b < a:
            return False
        at = b
    return at == size
