"""The IR: a module holds the target, the tables and their lookup ops, and the annotations passes add.

Annotations appear in pipeline order: table profiles, strategy candidates, partition options (the menu the
core assignment chooses from), work items placed on cores, per-core schedules, and the solver report. Every
field is immutable; a pass returns a new module with `module.model_copy(update=...)`.
"""

from __future__ import annotations

from functools import cached_property

from pydantic import Field

from embmap.ir.cost_profile import CostProfile
from embmap.ir.plan import (
    CoreSchedule,
    CostBreakdown,
    PartitionMode,
    SolverReport,
    Strategy,
    WorkItem,
)
from embmap.ir.spec import Distribution, Frozen, MeanCount, Pooling, TableSpec, TargetSpec, WorkloadSpec


class LookupOp(Frozen):
    """`batch_size x pooling` lookups into one table, sum-pooled per sample."""

    table: str
    batch_size: int = Field(gt=0)
    pooling: Pooling
    distribution: Distribution


class TableProfile(Frozen):
    """Per-table facts the cost model needs, computed once by the `profile` pass."""

    table: str
    bytes: int
    lookups_per_batch: MeanCount
    distinct_rows_per_batch: float
    cache_share_bytes: float = Field(description="bytes of the table's rows the shared cache holds in steady state")
    walk_hit_ratio: float = Field(
        1.0, ge=0.0, le=1.0, description="fraction of the table's page walks whose page-table line the cache holds"
    )
    neighbour_bytes: float = Field(
        0.0,
        ge=0.0,
        description="bytes the other work of the table's core reads per batch (where the local memory is a cache, "
        "they evict the table's rows from it between batches)",
    )
    neighbour_pages: float = Field(
        0.0,
        ge=0.0,
        description="pages the other work of the table's core touches per batch (on a target with a TLB, they "
        "evict the table's translations from it between batches)",
    )
    together_share_bytes: float | None = Field(
        None,
        ge=0.0,
        description="bytes of the table's rows the shared cache holds, in effect, while every core reads this "
        "table and no other (its parts on all cores, read together; `cost_models.analytic.together_cache_share`); "
        "None: as cache_share_bytes",
    )

    def read_together(self) -> TableProfile:
        """The facts of a part of the table while every core reads a part of it at the same time
        (the `schedule` pass runs such parts side by side)."""
        share = max(self.cache_share_bytes, self.together_share_bytes or 0.0)
        return self.model_copy(update={"cache_share_bytes": share})


class StrategyCandidate(Frozen):
    strategy: Strategy
    fits_local: bool
    cost: CostBreakdown = Field(description="the whole table on one core")


class TableCandidates(Frozen):
    table: str
    candidates: tuple[StrategyCandidate, ...]

    @property
    def best(self) -> StrategyCandidate:
        usable = [c for c in self.candidates if c.fits_local or not c.strategy.preloaded]
        return min(usable or self.candidates, key=lambda c: c.cost.total_s)


class PartitionOption(Frozen):
    """One way to serve a table: a strategy, a split mode and a number of parts, each part on its own core."""

    table: str
    strategy: Strategy
    mode: PartitionMode
    parts: int = Field(gt=0)
    part_costs: tuple[CostBreakdown, ...]
    local_bytes_per_part: tuple[int, ...]

    @property
    def label(self) -> str:
        return f"{self.strategy.value}/{self.mode.value}x{self.parts}"

    @property
    def part_s(self) -> float:
        """The largest part's time."""
        return max(self._part_totals)

    @property
    def least_part_s(self) -> float:
        return min(self._part_totals)

    @property
    def work_s(self) -> float:
        return sum(self._part_totals)

    @cached_property
    def _part_totals(self) -> tuple[float, ...]:
        """Each part's total seconds, computed once per option and once per distinct cost object: an option
        may have hundreds of parts, and its equal parts share one."""
        costs = self.part_costs
        totals = {id(c): c.total_s for c in dict(zip(map(id, costs), costs, strict=True)).values()}
        return tuple(map(totals.__getitem__, map(id, costs)))


class TableOptions(Frozen):
    table: str
    options: tuple[PartitionOption, ...] = Field(min_length=1)


class PlacedTable(Frozen):
    """Where a previous plan served one table: the shape of its option and the cores of its parts, ascending
    (part i on the i-th core, as `assign-cores` places them)."""

    table: str
    strategy: Strategy
    mode: PartitionMode
    parts: int = Field(gt=0)
    cores: tuple[int, ...]


class SampleLine(Frozen):
    """A line under the time of a part of a table read with one strategy: a part of n samples (all rows) takes at
    least `fixed_s + per_sample_s * n` seconds, for every n from 1 to the batch. Cut unevenly into k parts, the
    table then costs at least `k * fixed_s + per_sample_s * batch`, which is how a bound covers uneven cuts."""

    table: str
    strategy: Strategy
    fixed_s: float
    per_sample_s: float = Field(ge=0.0)

    def at(self, samples: int) -> float:
        return self.fixed_s + self.per_sample_s * samples

    def work_s(self, parts: int, samples: int) -> float:
        """The least time of `parts` parts holding `samples` samples in all."""
        return parts * self.fixed_s + self.per_sample_s * samples


class Module(Frozen):
    workload: WorkloadSpec = Field(description="effective workload: row cap applied, distributions explicit")
    target: TargetSpec
    cost_profile: CostProfile
    lookups: tuple[LookupOp, ...]
    table_profiles: tuple[TableProfile, ...] | None = None
    candidates: tuple[TableCandidates, ...] | None = None
    options: tuple[TableOptions, ...] | None = None
    part_counts: str | None = Field(
        None,
        description="the part counts the menus offer: 'every' (1 to the cores), 'sparse' (1 to 8, powers of "
        "two, the cores and the fewest row shards that fit) where every count would make the model too big, or "
        "the partition policy that restricts them (split-all, whole)",
    )
    items: tuple[WorkItem, ...] | None = None
    schedules: tuple[CoreSchedule, ...] | None = None
    solver: SolverReport | None = Field(
        None, description="how the placement was found, in busy time (start-up excluded; the plan adds it)"
    )
    lower_bound_s: float | None = Field(
        None, description="no plan of the menu is faster, in busy time (start-up excluded; the plan adds it)"
    )
    uneven_lines: tuple[SampleLine, ...] | None = Field(
        None,
        description="set by balance where it cut the plan's samples unevenly: per table it may cut so, and per "
        "strategy, the line under its part's time that the bound covers such cuts with (pack's bound reads them); "
        "None while the plan's cuts are equal",
    )
    previous: tuple[PlacedTable, ...] | None = Field(
        None, description="re-planning: a previous plan's placement, which assign-cores keeps where it can"
    )
    history: tuple[str, ...] = Field((), description="passes applied so far, with their options")

    def __str__(self) -> str:
        """The textual IR (`embmap.ir.printer`): what `print(module)` shows, not pydantic's field dump."""
        from embmap.ir.printer import print_module  # the printer imports this module

        return print_module(self)

    def table(self, name: str) -> TableSpec:
        return self._tables[name]

    @cached_property
    def _tables(self) -> dict[str, TableSpec]:
        return {t.name: t for t in self.workload.tables}

    def table_profile(self, name: str) -> TableProfile:
        return self._table_profiles[name]

    def part_profile(self, name: str, parts: int) -> TableProfile:
        """The facts of one of a table's `parts` parts: where they cover every core, the cores read them together
        (`TableProfile.read_together`)."""
        stats = self.table_profile(name)
        return stats.read_together() if reads_together(parts, self.target.cores) else stats

    @cached_property
    def _table_profiles(self) -> dict[str, TableProfile]:
        if self.table_profiles is None:
            raise KeyError("no table profiles: run the profile pass first")
        return {p.table: p for p in self.table_profiles}

    @property
    def makespan_s(self) -> float | None:
        if self.schedules is None:
            return None
        return max((s.finish_s[-1] for s in self.schedules if s.finish_s), default=0.0)


def reads_together(parts: int, cores: int) -> bool:
    """Whether a table cut into `parts` parts has one on every core, so that the cores read it at the same
    time: the schedule runs such tables first, in the same order on every core."""
    return 1 < parts == cores


def split_range(n: int, parts: int) -> tuple[tuple[int, int], ...]:
    """[0, n) cut into `parts` contiguous ranges whose sizes differ by at most one, larger ones first."""
    q, r = divmod(n, parts)
    bounds, lo = [], 0
    for i in range(parts):
        hi = lo + q + (1 if i < r else 0)
        bounds.append((lo, hi))
        lo = hi
    return tuple(bounds)
