"""Partition options: a table read with one strategy, its samples or rows cut into k parts, each part costed by
the cost model; and the pruning of options no plan needs (`partition` builds the menus, calibration one
option at a time)."""

from __future__ import annotations

import bisect
import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import TypeVar

from embmap.cost_models.analytic import ItemShape, item_cost
from embmap.ir.module import Module, PartitionOption
from embmap.ir.plan import CostBreakdown, PartitionMode, Strategy
from embmap.ir.spec import TableSpec
from embmap.passes.solver.problem import to_units

T = TypeVar("T")


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
