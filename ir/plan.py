"""The execution plan: the versioned JSON an outside runtime executes.

A plan is self-contained: it embeds the workload (row cap applied) and target it was compiled for, the cost
profile that scored it, every work item with its core, rows, samples, strategy and predicted cost, each core's
ordered schedule, and how good the plan provably is (solver report and an independent lower bound).
"""

from __future__ import annotations

import enum
import hashlib
from typing import Final, Literal

from pydantic import Field

from embmap.ir.cost_profile import CostProfile
from embmap.ir.spec import Distribution, DType, Frozen, Pooling, TargetSpec, WorkloadSpec

# What a plan is made of: the strategies and modes, a work item and its cost, a core's schedule and the
# solver's report. The compiler's IR (`embmap.ir.module`) annotates its module with the same types; a runtime
# needs only these.


class Strategy(enum.StrEnum):
    """How one core reads one table (the four single-core strategies)."""

    GM = "GM"  # rows read one at a time from shared memory, double-buffered
    L1 = "L1"  # table preloaded into the core's local buffer, rows read from there
    GM_UB = "GM-UB"  # table streamed from shared memory through the scratchpad, vector gather per chunk
    L1_UB = "L1-UB"  # table preloaded locally, chunks moved local -> scratchpad, vector gather

    @property
    def preloaded(self) -> bool:
        """Occupies local-buffer capacity on every core that serves (a part of) the table."""
        return self in (Strategy.L1, Strategy.L1_UB)

    @property
    def streamed(self) -> bool:
        return self in (Strategy.GM_UB, Strategy.L1_UB)


class PartitionMode(enum.StrEnum):
    SAMPLES = "samples"  # each part serves a slice of the batch over the whole table (replicas if preloaded)
    ROWS = "rows"  # each part owns a slice of the rows for the whole batch and accumulates into the output


class CostBreakdown(Frozen):
    """Predicted seconds of one work item, by cause. Addable."""

    fixed_s: float = 0.0
    lookup_s: float = 0.0
    stream_s: float = 0.0
    combine_s: float = 0.0

    @property
    def total_s(self) -> float:
        return self.fixed_s + self.lookup_s + self.stream_s + self.combine_s

    def __add__(self, other: CostBreakdown) -> CostBreakdown:
        return CostBreakdown(
            fixed_s=self.fixed_s + other.fixed_s,
            lookup_s=self.lookup_s + other.lookup_s,
            stream_s=self.stream_s + other.stream_s,
            combine_s=self.combine_s + other.combine_s,
        )


OutputMode = Literal["write", "accumulate"]


class WorkItem(Frozen):
    """A unit of work on one core: a table's row range x sample range read with one strategy.

    An item that owns all rows writes its samples' pooled outputs; a row shard accumulates its partial sums
    into them (an atomic-add DMA on an NPU; on a CPU, the last shard to finish adds every shard's partials),
    so no separate combine step, and no barrier, is needed.
    """

    id: int = Field(ge=0)
    table: str
    output: OutputMode = "write"
    strategy: Strategy
    rows: tuple[int, int]
    samples: tuple[int, int]
    core: int = Field(ge=0)
    local_bytes: int = Field(0, ge=0)
    cost: CostBreakdown
    depends_on: tuple[int, ...] = ()


class CoreSchedule(Frozen):
    """The ordered items of one core with their predicted start and finish times."""

    core: int
    items: tuple[int, ...]
    start_s: tuple[float, ...]
    finish_s: tuple[float, ...]

    @property
    def busy_s(self) -> float:
        return sum(f - s for s, f in zip(self.start_s, self.finish_s, strict=True))


SolverStatus = Literal["OPTIMAL", "FEASIBLE", "INFEASIBLE", "MODEL_INVALID", "UNKNOWN", "NOT_SOLVED"]


class MoveReport(Frozen):
    """Re-planning from a previous plan, counted per table: a table *moves* when its new option (strategy,
    mode, parts) or any of its cores differs from its previous placement, although that placement was still
    on offer. Tables without one to keep (new, or whose previous option is no longer on the menu) are free:
    placed anew, not counted as moves. Every table of the new plan is kept, moved or free."""

    max_moves: int | None = Field(None, ge=0, description="the most tables allowed to move; null: no bound")
    moved_tables: int = Field(ge=0, description="tables whose option or cores changed")
    moved_items: int = Field(ge=0, description="work items of the moved tables, in the new plan")
    kept_tables: int = Field(ge=0, description="tables on their previous option and cores")
    free_tables: int = Field(ge=0, description="new tables, and tables whose previous option is no longer offered")


GAP_ROUNDING = 1e-12  # relative: a bound and a makespan summed from the same costs in another order differ by this


def relative_gap(objective: float, bound: float) -> float:
    """(objective - bound) / objective, at least 0 (and 0 for an empty plan): the one formula of a gap. A gap
    within floating-point rounding (`GAP_ROUNDING`) is 0: the plan meets its bound, summed in another order."""
    if not objective:
        return 0.0
    gap = (objective - bound) / objective
    return gap if gap > GAP_ROUNDING else 0.0


class SolverReport(Frozen):
    """How the core assignment was obtained and how good it is provably."""

    # Built with `of` and changed with `updated`, which compute the gap: it is written nowhere else.

    method: str
    status: SolverStatus
    objective_s: float
    best_bound_s: float
    gap: float = Field(ge=0, description="(objective - best bound) / objective")
    wall_s: float
    workers: int = 1
    seed: int = 0
    time_limit_s: float | None = None
    hint_objective_s: float | None = Field(
        None, description="objective of the heuristic plan used as hint (greedy, or the warm start when re-planning)"
    )
    packed_objective_s: float | None = Field(
        None,
        description="objective of the plan the pattern dive found (passes/solver/dive.py), where it ran and found one",
    )
    options_considered: int = 0
    moves: MoveReport | None = Field(None, description="re-planning only: how much of the previous plan moved")
    interrupted: bool = Field(
        False, description="Ctrl-C stopped the search: the plan is the best found by then, and the gap says how good"
    )
    part_counts: str | None = Field(
        None,
        description="the part counts the menu offered: 'every' (1 to the cores), 'sparse' (1 to 8, powers of two, "
        "the cores, the fewest row shards that fit) where every count would make the model too big, the "
        "partition policy that restricts them, or 'forced' (calibration's one-option plans, whose bounds are that "
        "option's)",
    )
    menu_bound_s: float | None = Field(
        None,
        description="a bound over the plans of this pipeline's own menu only (its strategies, part counts and cuts), "
        "as its passes proved it; other plans may be faster. best_bound_s is the bound over every plan",
    )

    @classmethod
    def of(
        cls, method: str, status: SolverStatus, objective_s: float, best_bound_s: float, wall_s: float, **more: object
    ) -> SolverReport:
        """A report whose gap is computed from `objective_s` and `best_bound_s`; `more` sets the other fields."""
        gap = relative_gap(objective_s, best_bound_s)
        return cls.model_validate(
            {
                "method": method,
                "status": status,
                "objective_s": objective_s,
                "best_bound_s": best_bound_s,
                "gap": gap,
                "wall_s": wall_s,
                **more,
            }
        )

    def updated(self, objective_s: float, best_bound_s: float, **more: object) -> SolverReport:
        """The report with a new objective and bound (the gap follows) and the fields in `more`."""
        gap = relative_gap(objective_s, best_bound_s)
        return self.model_copy(update={"objective_s": objective_s, "best_bound_s": best_bound_s, "gap": gap, **more})

    def over_whole_space(self, objective_s: float, space_bound_s: float) -> SolverReport:
        """The report of the plan written: its makespan as the objective and the bound over every plan the format
        allows as the best bound (the gap follows); the bound proven over the pipeline's menu moves to
        `menu_bound_s`. OPTIMAL exactly where the plan meets the whole-space bound."""
        # The menu's bound is the solver's, on costs rounded up to whole nanoseconds: at most the plan's makespan,
        # as the plan is one of the menu's.
        report = self.updated(objective_s, space_bound_s, menu_bound_s=min(self.best_bound_s, objective_s))
        if report.gap == 0.0:
            return report.model_copy(update={"status": "OPTIMAL"})
        return report.model_copy(update={"status": "FEASIBLE"}) if report.status == "OPTIMAL" else report

    def with_start_up(self, start_s: float) -> SolverReport:
        """The report with the per-core start-up added to its objectives and bound (the gap follows). The
        compiler keeps a report in busy time (start-up excluded) and adds the start-up once, in the plan."""

        def shifted(seconds: float | None) -> float | None:
            return None if seconds is None else seconds + start_s

        return self.updated(
            self.objective_s + start_s,
            self.best_bound_s + start_s,
            hint_objective_s=shifted(self.hint_objective_s),
            packed_objective_s=shifted(self.packed_objective_s),
        )


def stream_chunk_rows(scratch_bytes: int, row_bytes: int) -> int:
    """Rows per streamed chunk: half the scratchpad (the other half receives the next chunk), at least one."""
    return max(1, (scratch_bytes // 2) // row_bytes)


PLAN_SCHEMA: Final = "embmap.plan/1"


class PlanTable(Frozen):
    name: str
    rows: int
    dim: int
    dtype: DType
    pooling: Pooling
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
    lower_bound_s: float = Field(
        description="no plan the format allows on this target can be faster under this cost model: any strategy, "
        "mode, part count and cut of every table (solver.menu_bound_s holds the bound over this pipeline's menu)"
    )
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
