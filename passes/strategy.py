"""`select-strategy` and `partition`: what each table could do, and the menu the core assignment picks from."""

from __future__ import annotations

import bisect
import dataclasses
import enum
import itertools
from collections.abc import Callable, Sequence
from typing import TypeVar

from embmap.cost_models.analytic import ItemShape, item_cost
from embmap.ir.errors import InfeasibleError
from embmap.ir.module import Module, PartitionOption, StrategyCandidate, TableCandidates, TableOptions
from embmap.ir.plan import CostBreakdown, PartitionMode, Strategy
from embmap.ir.printer import fmt_bytes
from embmap.ir.spec import TableSpec
from embmap.passes.assignment import to_units
from embmap.passes.base import ModulePass, register

ALL_STRATEGIES = tuple(Strategy)
T = TypeVar("T")


@register
@dataclasses.dataclass(frozen=True)
class SelectStrategyPass(ModulePass):
    """Cost every allowed strategy for each whole table on one core, and whether it fits the local buffer."""

    name = "select-strategy"
    summary = "cost of each lookup strategy (GM, L1, GM-UB, L1-UB) per table on one core, and local-buffer fit"
    requires = ("table_profiles",)
    ensures = ("candidates",)
    strategies: tuple[Strategy, ...] = ALL_STRATEGIES

    def __post_init__(self) -> None:
        if not self.strategies:
            raise ValueError("strategies: name at least one of GM, L1, GM-UB, L1-UB")

    def apply(self, module: Module) -> Module:
        batch = module.workload.batch_size
        cands = []
        for t in module.workload.tables:
            stats = module.table_profile(t.name)
            candidates = tuple(
                StrategyCandidate(
                    strategy=s,
                    fits_local=t.bytes <= module.target.local.capacity_bytes,
                    cost=item_cost(ItemShape(s, (0, t.rows), (0, batch)), t, stats, module.target, module.cost_profile),
                )
                for s in self.strategies
            )
            cands.append(TableCandidates(table=t.name, candidates=candidates))
        return module.model_copy(update={"candidates": tuple(cands)})


class PartitionPolicy(enum.StrEnum):
    ENUMERATE = "enumerate"  # every useful (strategy, mode, parts); dominated options pruned
    SPLIT_ALL = "split-all"  # the batch split evenly over every core (what a default compiler does)
    WHOLE = "whole"  # one part per table: table-wise placement


@register
@dataclasses.dataclass(frozen=True)
class PartitionPass(ModulePass):
    """Build each table's menu of partition options: replicate or split its samples over k cores, or shard its
    rows over k cores, for each candidate strategy, with per-part costs and local-buffer bytes."""

    name = "partition"
    summary = "menu of (strategy, replicate/split samples/shard rows, parts) per table, dominated options pruned"
    requires = ("table_profiles", "candidates")
    ensures = ("options",)
    policy: PartitionPolicy = PartitionPolicy.ENUMERATE
    max_parts: int = 0  # 0: up to the number of cores
    prune: bool = True

    def __post_init__(self) -> None:
        if self.max_parts < 0:
            raise ValueError("max-parts must be >= 0 (0 means: up to the number of cores)")

    def apply(self, module: Module) -> Module:
        assert module.candidates is not None
        cores = module.target.cores
        limit = min(cores, self.max_parts) if self.max_parts else cores
        menus = []
        cap = module.target.local.capacity_bytes
        for t, cands in zip(module.workload.tables, module.candidates, strict=True):
            strategies = [c.strategy for c in cands.candidates]
            shapes = [s for s in self._enumerate(module, t, strategies, limit) if s.part_bytes <= cap]
            if not shapes:
                raise self._no_option(module, t, strategies, limit)
            if self.prune:  # before the options are built: most are dominated, and some have hundreds of parts
                shapes = pareto_front(shapes, key=lambda s: (s.parts, to_units(s.part_s), s.part_bytes))
            menus.append(TableOptions(table=t.name, options=tuple(s.build() for s in shapes)))
        return module.model_copy(update={"options": tuple(menus)})

    def _no_option(self, module: Module, t: TableSpec, strategies: list[Strategy], limit: int) -> InfeasibleError:
        """Only preloaded strategies are allowed and no part of the table fits one core's local buffer: the
        numbers, and each fix that would work (a shared strategy, more parts, a row cap, a bigger buffer)."""
        local = module.target.local
        cap = local.capacity_bytes
        rows_per_core = cap // t.row_bytes
        sharded = self.policy is PartitionPolicy.ENUMERATE
        shards = -(-t.bytes // cap)  # the fewest row shards that each fit
        if sharded:
            holds = f"{limit} row shards on {limit} cores hold {fmt_bytes(limit * cap)}"
            largest = limit * rows_per_core
        else:
            holds = f"policy {self.policy.value} keeps the whole table in each part"
            largest = rows_per_core
        fixes = [
            f"allow a shared-memory strategy for it (select-strategy{{strategies=GM:GM-UB:{':'.join(strategies)}}})"
        ]
        if sharded and shards <= module.target.cores and limit < shards:
            fixes.append(f"allow {shards} parts (partition{{max-parts={shards}}})")
        if largest > 0:
            fixes.append(f"--row-cap {largest} or less")
        fixes.append(f"a target whose {local.name} holds {fmt_bytes(-(-t.bytes // (limit if sharded else 1)))} or more")
        return InfeasibleError(
            f"table {t.name}",
            f"no option fits: strategies {', '.join(s.value for s in strategies)} preload it, it needs "
            f"{fmt_bytes(t.bytes)} ({t.rows} rows x {t.row_bytes} B) and one core's {local.name} holds "
            f"{fmt_bytes(cap)} ({rows_per_core} rows); {holds}",
            ", ".join(fixes[:-1]) + ", or " + fixes[-1],
        )

    def _enumerate(self, module: Module, t: TableSpec, strategies: list[Strategy], limit: int) -> list[OptionShape]:
        batch = module.workload.batch_size
        if self.policy is PartitionPolicy.SPLIT_ALL:
            shapes = [(s, PartitionMode.SAMPLES, min(limit, batch)) for s in strategies]
        elif self.policy is PartitionPolicy.WHOLE:
            shapes = [(s, PartitionMode.SAMPLES, 1) for s in strategies]
        else:
            local = module.target.local.capacity_bytes
            shapes = []
            for s in strategies:
                shapes += [(s, PartitionMode.SAMPLES, k) for k in part_counts(min(limit, batch))]
                rows_k = set(part_counts(min(limit, t.rows)))
                if s.preloaded and t.bytes > local:
                    rows_k.add(-(-t.bytes // local))  # the fewest shards that fit the local buffer
                shapes += [(s, PartitionMode.ROWS, k) for k in sorted(rows_k) if 1 < k <= min(limit, t.rows)]
        return [option_shape(module, t, s, mode, k) for s, mode, k in shapes]


def part_counts(limit: int) -> list[int]:
    """Candidate numbers of parts: every count up to 8, then powers of two, and the limit itself."""
    counts = {k for k in range(1, min(limit, 8) + 1)}
    k = 16
    while k < limit:
        counts.add(k)
        k *= 2
    counts.add(limit)
    return sorted(counts)


@dataclasses.dataclass(frozen=True)
class OptionShape:
    """A partition option before it is built. Its parts differ by at most one row or sample, so they come in at
    most two sizes: `runs` holds (parts of that size, their cost, their local bytes), larger parts first,
    each costed once."""

    table: str
    strategy: Strategy
    mode: PartitionMode
    parts: int
    runs: tuple[tuple[int, CostBreakdown, int], ...]

    @property
    def part_s(self) -> float:
        return max(cost.total_s for _, cost, _ in self.runs)

    @property
    def part_bytes(self) -> int:
        return max(local for _, _, local in self.runs)

    def build(self) -> PartitionOption:
        return PartitionOption(
            table=self.table,
            strategy=self.strategy,
            mode=self.mode,
            parts=self.parts,
            part_costs=tuple(itertools.chain.from_iterable((cost,) * n for n, cost, _ in self.runs)),
            local_bytes_per_part=tuple(itertools.chain.from_iterable((local,) * n for n, _, local in self.runs)),
        )


def option_shape(module: Module, t: TableSpec, strategy: Strategy, mode: PartitionMode, parts: int) -> OptionShape:
    batch = module.workload.batch_size
    stats = module.part_profile(t.name, parts)
    runs = []
    for size, n in _sizes(batch if mode is PartitionMode.SAMPLES else t.rows, parts):
        if mode is PartitionMode.SAMPLES:
            shape = ItemShape(strategy, (0, t.rows), (0, size))
        else:
            shape = ItemShape(strategy, (0, size), (0, batch))
        cost = item_cost(shape, t, stats, module.target, module.cost_profile)
        local = (shape.rows[1] - shape.rows[0]) * t.row_bytes if strategy.preloaded else 0
        runs.append((n, cost, local))
    return OptionShape(table=t.name, strategy=strategy, mode=mode, parts=parts, runs=tuple(runs))


def _sizes(n: int, parts: int) -> list[tuple[int, int]]:
    """The sizes of `split_range(n, parts)`'s ranges, larger first, with how many ranges have each."""
    q, r = divmod(n, parts)
    return [(size, count) for size, count in ((q + 1, r), (q, parts - r)) if count]


def make_option(module: Module, t: TableSpec, strategy: Strategy, mode: PartitionMode, parts: int) -> PartitionOption:
    return option_shape(module, t, strategy, mode, parts).build()


def prune_dominated(options: list[PartitionOption]) -> list[PartitionOption]:
    """Drop option B when some A needs no more parts, no more time per part and no more local bytes per part:
    A can replace B on a subset of B's cores in any plan without raising any load or any buffer's use. Time is
    compared as the solver sees it, in whole `TIME_UNIT_S`: of two options it cannot tell apart, the one that
    holds fewer local bytes stands (on a CPU, a private replica and the shared table cost the same to within
    a picosecond, and the replica measured 3% slower)."""
    return pareto_front(options, key=lambda o: (o.parts, to_units(o.part_s), max(o.local_bytes_per_part)))


def pareto_front(items: Sequence[T], key: Callable[[T], tuple[int, float, int]]) -> list[T]:
    """The items whose key (parts, time, bytes) no other item's key is at most in all three, in key order (of
    equal keys, the first). In key order every earlier item has no more parts, so an item is dominated when
    an earlier kept one has no more time and no more bytes: the kept items' least bytes by time answer that."""
    keyed = sorted(((key(x), x) for x in items), key=lambda kx: kx[0])
    kept: list[T] = []
    times: list[float] = []  # the (time, bytes) of kept items that no other kept one beats in both,
    least: list[int] = []  # by increasing time (and so decreasing bytes)
    for (_, time, size), x in keyed:
        i = bisect.bisect_right(times, time)
        if i and least[i - 1] <= size:
            continue
        kept.append(x)
        j = i
        while j < len(times) and least[j] >= size:
            j += 1
        times[i:j], least[i:j] = [time], [size]
    return kept
