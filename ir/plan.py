"""The execution plan: the versioned JSON an outside runtime executes.

A plan is self-contained: it embeds the workload (row cap applied) and target it was compiled for, the cost
profile that scored it, every work item with its core, rows, samples, strategy and predicted cost, each core's
ordered schedule, and how good the plan provably is (solver report and an independent lower bound).
"""

from __future__ import annotations

import hashlib
from typing import Final, Literal

from pydantic import Field

from embmap.ir.cost_profile import CostProfile
from embmap.ir.module import CoreSchedule, CostBreakdown, PartitionMode, SolverReport, Strategy, WorkItem
from embmap.ir.spec import Distribution, DType, Frozen, TargetSpec, WorkloadSpec

PLAN_SCHEMA: Final = "embmap.plan/1"


class PlanTable(Frozen):
    name: str
    rows: int
    dim: int
    dtype: DType
    pooling: int
    distribution: Distribution
    strategy: Strategy
    mode: PartitionMode
    parts: int = Field(description="number of lookup items (cores) serving this table")
    bytes: int


class PlanItem(WorkItem):
    """A work item with its predicted place in time."""

    start_s: float = Field(ge=0)
    finish_s: float = Field(ge=0)


class PlanCore(Frozen):
    core: int
    items: tuple[int, ...] = Field(description="item ids in execution order")
    busy_s: float
    finish_s: float
    local_bytes: int = Field(description="local-buffer bytes held by preloaded tables")


class ExecutionPlan(Frozen):
    schema_version: Literal["embmap.plan/1"] = PLAN_SCHEMA
    generator: str = Field(description="the tool and version that wrote this plan")
    pipeline: str
    workload_digest: str
    target_digest: str
    workload: WorkloadSpec
    target: TargetSpec
    cost_profile: CostProfile
    tables: tuple[PlanTable, ...]
    items: tuple[PlanItem, ...]
    cores: tuple[PlanCore, ...]
    makespan_s: float = Field(description="predicted time of one batch: the last core to finish")
    lower_bound_s: float = Field(description="no plan on this target can be faster, under this cost model")
    total_work_s: float
    solver: SolverReport
    baselines_s: dict[str, float] = Field(
        default_factory=dict, description="predicted makespan of baseline pipelines under the same cost model"
    )

    def work_items(self) -> tuple[WorkItem, ...]:
        fields = set(WorkItem.model_fields)
        return tuple(WorkItem(**{k: v for k, v in it if k in fields}) for it in self.items)

    def schedules(self) -> tuple[CoreSchedule, ...]:
        by_id = {it.id: it for it in self.items}
        return tuple(
            CoreSchedule(
                core=c.core,
                items=c.items,
                start_s=tuple(by_id[i].start_s for i in c.items if i in by_id),
                finish_s=tuple(by_id[i].finish_s for i in c.items if i in by_id),
            )
            for c in self.cores
        )

    def work_digest(self) -> str:
        """A digest of what a runtime executes: each core's items in order (table, strategy, rows, samples,
        output). Two plans with the same digest run the same work the same way, whatever their predictions."""
        by_id = {it.id: it for it in self.items}
        work = [
            [(it.table, it.strategy.value, it.rows, it.samples, it.output) for it in (by_id[i] for i in c.items)]
            for c in sorted(self.cores, key=lambda c: c.core)
        ]
        return "sha256:" + hashlib.sha256(repr(work).encode()).hexdigest()[:16]

    def table_cost(self, name: str) -> CostBreakdown:
        total = CostBreakdown()
        for it in self.items:
            if it.table == name:
                total = total + it.cost
        return total
