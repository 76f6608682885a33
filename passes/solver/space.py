"""The whole space of plans, as a bound sees it: every plan the format allows, whatever a menu offers.

A plan serves each table with one strategy, cut by samples (every part all rows) or by rows (every part the
whole batch) into k parts of any sizes, 1 <= k <= cores, one per core. For every table, strategy, mode and k,
`space_options` gives a `FlexibleOption`: the least its largest part can take (the cost of ceil(n / k)), the
least its parts can take together (k times the convex envelope of the part cost at n / k) and its local
bytes; `space_bound_s` is the work bound and the DFFs over them. Why it holds: docs/design.md, "The
whole-space bound".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from embmap.cost_models.analytic import ItemShape, item_seconds
from embmap.ir.module import Module, TableProfile, reads_together
from embmap.ir.plan import PartitionMode, Strategy
from embmap.ir.spec import TableSpec
from embmap.passes.solver.bounds import FlexibleOption, flexible_lower_bound_s
from embmap.passes.solver.dff import choice_lower_bound

EXACT = 64  # part sizes read exactly at both ends of a range read on a grid
RATIO = 1.01  # between them, sizes on a geometric grid growing by this factor (the bound loses about 1% of
# what the grid steps over, and the grid costs ln(n / EXACT) / ln(RATIO) calls of the cost model)
TOGETHER_RATIO = 1.02  # the same for the cost of parts read together, which one part count uses
# Where the local memory is a cache, a part's cost is not monotone in its samples (its private cache hits grow
# with its draws: a part of more samples may cost 39% less), so sample cuts are read at every size. Elsewhere
# it never falls with more samples, and row shards cost at most 0.19% less with more rows (tests/
# test_solver_space.py checks both): those are read on the grid, the cost between grid points taken as at
# least (1 - ROW_DROP) x the cost at the grid point below (twice the fall measured).
ROW_DROP = 0.004
# At scale: a compile reads about this many part costs on grids (the grids coarsen as tables grow, at least
# MIN_POINTS sizes a curve: the bound weakens, it stays valid), and above MAX_COUNTS cores the part counts are
# taken in ranges (the least largest part and the least work of the range: valid for the work bound, which then
# stands alone, without the DFFs, whose images need each option's own part count).
SPACE_CALLS = 200_000
MIN_POINTS = 12
MAX_COUNTS = 64
MAX_DFF_OPTIONS = 300_000  # above, the DFFs' arrays cost seconds and a GiB (5000 tables x 32 cores: 1.3 million)


def space_bound_s(module: Module) -> float:
    """A lower bound (busy time) on the makespan of every plan of the module's workload on its target under its
    cost model: any strategy, mode, part count and cut of every table."""
    options = list(space_options(module).values())
    if work_only(module):
        return choice_lower_bound([[(o.largest_s, o.work_s) for o in menu] for menu in options], module.target.cores)
    return flexible_lower_bound_s(options, module.target.cores, module.target.local.capacity_bytes)


def work_only(module: Module) -> bool:
    """Whether the bound is the work bound alone: above MAX_COUNTS cores (ranges of part counts), or where the
    options would number more than MAX_DFF_OPTIONS."""
    cores = module.target.cores
    return cores > MAX_COUNTS or 8 * cores * len(module.workload.tables) > MAX_DFF_OPTIONS


def space_options(module: Module) -> dict[str, list[FlexibleOption]]:
    """Per table, a flexible option for each way to serve it: strategy, mode and part count (or, above
    MAX_COUNTS cores, range of part counts); for the work bound alone, only those no other option beats in both
    largest part and work."""
    points = max(MIN_POINTS, SPACE_CALLS // (8 * max(1, len(module.workload.tables))))
    context: tuple[object, ...] = (module.workload.batch_size, points, work_only(module))
    context += (module.target.model_dump_json(), module.cost_profile.model_dump_json())
    return {t.name: table_options(module, t, points, context) for t in module.workload.tables}


_CACHE: dict[tuple[object, ...], list[FlexibleOption]] = {}  # a process compiles the same tables many times
_CACHE_SIZE = 4096


def clear_cache() -> None:
    """Forget the options computed so far (a benchmark that times compiles of the same tables calls it)."""
    _CACHE.clear()


def table_options(module: Module, t: TableSpec, points: int, context: tuple[object, ...]) -> list[FlexibleOption]:
    """`t`'s options, computed once per process for the same table, profile and `context` (the batch, the grid's
    points, the target and the cost profile)."""
    key = (t, module.table_profile(t.name), *context)
    if key not in _CACHE:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        options = _table_options(module, t, points)
        _CACHE[key] = _least_work_front(options) if context[2] else options
    return _CACHE[key]


def _least_work_front(options: list[FlexibleOption]) -> list[FlexibleOption]:
    """The options no other has both a smaller-or-equal largest part and less work (all the work bound reads)."""
    front: list[FlexibleOption] = []
    for o in sorted(options, key=lambda o: (o.largest_s, o.work_s)):
        if not front or o.work_s < front[-1].work_s:
            front.append(o)
    return front


def _table_options(module: Module, t: TableSpec, points: int) -> list[FlexibleOption]:
    out: list[FlexibleOption] = []
    base = module.table_profile(t.name)
    for strategy in Strategy:
        for mode in PartitionMode:
            counts = part_counts(module, t, strategy, mode)
            for together in (False, True):
                group = [k for k in counts if reads_together(k, module.target.cores) == together]
                if group:
                    stats = base.read_together() if together else base
                    ratio = TOGETHER_RATIO if together else RATIO
                    out += _options(module, t, strategy, mode, stats, group, ratio, points)
    return out


def part_counts(module: Module, t: TableSpec, strategy: Strategy, mode: PartitionMode) -> list[int]:
    """The part counts a plan may cut `t` into with `strategy` and `mode`: 1..cores samples parts (none if a
    preloaded table does not fit the local buffer), 2..cores row shards (as many as hold all rows)."""
    cores, cap = module.target.cores, module.target.local.capacity_bytes
    if mode is PartitionMode.SAMPLES:
        if strategy.preloaded and t.bytes > cap:
            return []
        return list(range(1, min(cores, module.workload.batch_size) + 1))
    fewest = 2
    if strategy.preloaded:
        fit = cap // t.row_bytes  # rows of one shard that fit the local buffer
        if fit == 0:
            return []
        fewest = max(fewest, -(-t.rows // fit))
    return list(range(fewest, min(cores, t.rows) + 1))


def _options(
    module: Module,
    t: TableSpec,
    strategy: Strategy,
    mode: PartitionMode,
    stats: TableProfile,
    counts: list[int],
    ratio: float,
    points: int,
) -> list[FlexibleOption]:
    batch = module.workload.batch_size
    n = batch if mode is PartitionMode.SAMPLES else t.rows

    def cost(size: int) -> float:
        if mode is PartitionMode.SAMPLES:
            shape = ItemShape(strategy, (0, t.rows), (0, size))
        else:
            shape = ItemShape(strategy, (0, size), (0, batch))
        return item_seconds(shape, t, stats, module.target, module.cost_profile)

    k = np.asarray(counts, dtype=np.int64)
    if strategy.preloaded:
        held = k * t.bytes if mode is PartitionMode.SAMPLES else np.full(len(k), t.bytes)
    else:
        held = np.zeros(len(k), dtype=np.int64)
    if counts == [1]:  # one part (a one-core target): the whole table, its only size, priced as it is
        whole = np.array([cost(n)])
        return _ranges(k, whole, whole, whole, held)
    queries = [n / k for k in counts] if 8 * len(counts) <= points else []
    if mode is PartitionMode.SAMPLES and module.target.local_is_cache:
        curve = Envelope(cost, n, queries)  # every size: nothing is assumed of the cost between sizes
    elif mode is PartitionMode.SAMPLES:
        curve = Envelope(cost, n, queries, _grid(n, ratio, points))  # a cost that never falls with more samples
    else:  # a row shard holds fewer rows than the table (a whole table is priced without a shard's costs)
        curve = Envelope(cost, n - 1, queries, _grid(n - 1, ratio, points), drop=ROW_DROP)
    largest = curve.least_from(-(-n // k))  # some part has at least ceil(n / k)
    work = k * curve.at(n / k)  # sum of c(n_i) >= sum of e(n_i) >= k e(n / k), e convex under c
    least = np.full(len(k), float(curve.least_from(np.array([1]))[0]))
    return _ranges(k, largest, work, least, held)


class Envelope:
    """A convex function e <= c on the sizes 1..n: the lower convex hull of c read at every size, or (with a
    `ratio`) at a grid of sizes (every size near both ends, a geometric grid between, and the sizes next to each
    of `queries`) with, between grid points g < g', the point (g' - 1, (1 - drop) c(g)): a cost that falls by at
    most `drop` from a size to a larger one is at least that for g <= m < g'."""

    def __init__(
        self,
        cost: Callable[[int], float],
        n: int,
        queries: Sequence[float],
        grid: np.ndarray | None = None,
        drop: float = 0.0,
    ) -> None:
        self._cost = cost
        self._exact: dict[int, float] = {}
        near = [max(1, min(n, f(q))) for q in queries for f in (math.floor, math.ceil)]
        every = np.arange(1, n + 1, dtype=np.int64)
        g = np.unique(np.concatenate([every if grid is None else grid, np.asarray(near, dtype=np.int64)]))
        values = np.array([self.exact(int(x)) for x in g])
        gaps = np.diff(g) > 1
        xs = np.concatenate([g, g[1:][gaps] - 1]).astype(np.float64)
        ys = np.concatenate([values, (1.0 - drop) * values[:-1][gaps]])
        self._drop, self._grid, self._values = drop, g, values
        self._suffix = np.minimum.accumulate(values[::-1])[::-1] if grid is None else None
        self.xs, self.ys = _lower_hull(xs, ys)

    def least_from(self, size: np.ndarray) -> np.ndarray:
        """The least cost of a part of `size` or more (per size): read at every size, or at most `drop` below c
        at the grid point at or below `size`."""
        if self._suffix is not None:
            out: np.ndarray = self._suffix[size - 1]
            return out
        below = np.searchsorted(self._grid, size, side="right") - 1
        return (1.0 - self._drop) * self._values[below]

    def exact(self, size: int) -> float:
        if size not in self._exact:
            self._exact[size] = float(self._cost(size))
        return self._exact[size]

    def at(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(np.interp(x, self.xs, self.ys), dtype=np.float64)


def _grid(n: int, ratio: float, points: int) -> np.ndarray:
    """Sizes 1..n to read: every size near both ends and a geometric grid between, about `points` in all (more
    where `ratio` asks for them and `points` allows)."""
    exact = min(EXACT, max(2, points // 4))
    if n <= 2 * exact:
        return np.arange(1, n + 1, dtype=np.int64)
    steps = min(math.ceil(math.log(n / exact) / math.log(ratio)), max(2, points - 2 * exact))
    middle = np.geomspace(exact, n - exact, num=max(2, steps)).round().astype(np.int64)
    ends = np.concatenate([np.arange(1, exact + 1), np.arange(n - exact, n + 1)])
    return np.unique(np.concatenate([ends, middle]))


def _ranges(
    k: np.ndarray, largest: np.ndarray, work: np.ndarray, least: np.ndarray, held: np.ndarray
) -> list[FlexibleOption]:
    """The options of the part counts `k`; above MAX_COUNTS of them, geometric ranges of counts, each as its
    fewest parts with the least largest part, work, least part and bytes of the range (for the work bound
    only: see MAX_COUNTS)."""
    if len(k) > MAX_COUNTS:
        starts = np.unique(np.concatenate([[0], np.geomspace(1, len(k), MAX_COUNTS).round().astype(np.int64)]))
        starts = starts[starts < len(k)]
        k = k[starts]
        largest, work, least, held = (np.minimum.reduceat(a, starts) for a in (largest, work, least, held))
    return [
        FlexibleOption(parts=int(p), largest_s=float(a), work_s=float(w), least_s=float(s), held_bytes=int(b))
        for p, a, w, s, b in zip(k, largest, work, least, held, strict=True)
    ]


def _lower_hull(xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The vertices of the lower convex hull of the points (xs, ys), by increasing x (Andrew's monotone chain)."""
    order = np.lexsort((ys, xs))
    hull: list[tuple[float, float]] = []
    for x, y in zip(xs[order].tolist(), ys[order].tolist(), strict=True):
        if hull and hull[-1][0] == x:
            continue  # the lowest point of this x came first
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = hull[-2], hull[-1]
            if (x2 - x1) * (y - y1) - (y2 - y1) * (x - x1) <= 0:  # the middle point is not below the chord
                hull.pop()
            else:
                break
        hull.append((x, y))
    return np.array([h[0] for h in hull]), np.array([h[1] for h in hull])
