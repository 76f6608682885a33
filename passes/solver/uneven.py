"""Uneven cuts: a table too long for one core cut into parts of any sizes, so that the cores' loads level out.

Only tables whose fastest whole-table option is longer than the equal-cut bound (`splittable_tables`) are cut,
and only by samples. Two plans: the solver's placement re-cut by successive linear programs (`rebalance`), and a
wrap-around (McNaughton's rule: `wrap_around`, `poured`) that pours the long tables into the room the others
leave. A bound that covers such plans needs a line under the time of a part: `sample_line` reads it (ir
`SampleLine`). Derivation and measurements: docs/design.md, "Uneven cuts".
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from ortools.linear_solver import pywraplp

from embmap.cost_models.analytic import ItemShape, item_cost
from embmap.ir.module import Module, SampleLine
from embmap.ir.plan import CostBreakdown, PartitionMode, Strategy, WorkItem
from embmap.ir.spec import TableSpec
from embmap.passes.solver.bounds import lower_bound_s
from embmap.passes.solver.greedy import place_under
from embmap.passes.solver.items import items_makespan_s, place_items
from embmap.passes.solver.problem import TIME_UNIT_S, AssignmentProblem, last_true

MAX_GRID = 1024  # the most sample counts at which `sample_line` reads a part's cost
MAX_SPLITTABLE = 32  # the longest tables that may be cut unevenly (each line costs up to MAX_GRID cost calls)
MAX_ROUNDS = 12  # linear programs per re-cut
MIN_TRUST = 2  # samples: below this step the linearization is exact enough
MAX_POUR_ROUNDS = 4  # wrap-around plans per set of poured tables (see `poured`)
# How much more two halves of a table may cost than the cheapest the menu serves it with, for `wrap_around` to
# pour it: first 2%, then 10%, then any amount (each a try of its own; a table read with reuse in the caches
# loses it when cut, and is better served by its row shards).
BENDS = (0.02, 0.1, math.inf)
POUR_STEPS = 40  # bisections of the makespan a wrap-around pours under, at most (to 1e-4 of it)
SLIVER = 4  # a poured part holds at least batch / (SLIVER x cores) samples: a part pays its fixed cost

PartCost = Callable[[int], float]  # samples -> seconds


def splittable_tables(module: Module) -> frozenset[str]:
    """The tables that may be split unevenly: those whose fastest whole-table option takes longer than the
    makespan bound of plans with equal cuts (so that no such plan near the bound serves them whole); the
    `MAX_SPLITTABLE` longest of them."""
    assert module.options is not None
    bound = lower_bound_s(module)
    whole = {m.table: min((o.part_s for o in m.options if o.parts == 1), default=math.inf) for m in module.options}
    long = sorted((t for t, s in whole.items() if s > bound), key=lambda t: (-whole[t], t))
    return frozenset(long[:MAX_SPLITTABLE])


def sample_line(module: Module, table: TableSpec, strategy: Strategy) -> SampleLine:
    """c(n) >= a + b n for n in [1, N], c(n) the time of a part of n samples: the chord's slope b, and the
    largest a that keeps the line under c at every grid point and between them (for g < n < g', consecutive
    grid points, c(n) >= c(g) as c grows with n, and a + b n <= a + b (g' - 1)). Up to `MAX_GRID` samples the
    grid is every n, and the line is exact."""
    n = module.workload.batch_size
    cost = part_cost(module, table, strategy)
    grid = np.unique(np.linspace(1, n, min(n, MAX_GRID)).round().astype(np.int64))
    c = np.array([cost(int(g)) for g in grid])
    b = max(0.0, float(c[-1] - c[0]) / (n - 1)) if n > 1 else 0.0
    a = float(np.min(c - b * grid))
    inside = np.diff(grid) > 1
    if inside.any():
        a = min(a, float(np.min(c[:-1][inside] - b * (grid[1:][inside] - 1))))
    return SampleLine(table=table.name, strategy=strategy, fixed_s=a, per_sample_s=b)


def part_cost(module: Module, table: TableSpec, strategy: Strategy) -> PartCost:
    """c(n): the predicted seconds of one part of `table` reading n samples of the batch with `strategy`."""
    return lambda samples: sample_part(module, table, strategy, (0, samples)).total_s


def sample_part(module: Module, table: TableSpec, strategy: Strategy, samples: tuple[int, int]) -> CostBreakdown:
    """The predicted cost of a part reading all of `table`'s rows for the samples in `samples`."""
    shape = ItemShape(strategy, (0, table.rows), samples)
    return item_cost(shape, table, module.table_profile(table.name), module.target, module.cost_profile)


def uneven_strategies(module: Module, table: str) -> list[Strategy]:
    """The strategies a table's parts may read with when cut unevenly: those of its sample-split options (their
    cuts move in `rebalance`) and every strategy that holds no local bytes (`wrap_around` pours with one)."""
    assert module.options is not None and module.candidates is not None
    menu = next(m for m in module.options if m.table == table)
    found = {o.strategy for o in menu.options if o.mode is PartitionMode.SAMPLES}
    cands = next(c for c in module.candidates if c.table == table)
    found |= {c.strategy for c in cands.candidates if not c.strategy.preloaded}
    return sorted(found, key=lambda s: s.value)


def uneven_lines(module: Module, splittable: frozenset[str]) -> tuple[SampleLine, ...]:
    """Per table in `splittable` (by name), the line under its part cost for each strategy it may be cut
    unevenly with (by strategy)."""
    return tuple(
        sample_line(module, module.table(name), s)
        for name in sorted(splittable)
        for s in uneven_strategies(module, name)
    )


def uneven_plans(module: Module, splittable: frozenset[str], bound_s: float) -> list[tuple[WorkItem, ...]]:
    """The plans with uneven cuts of the tables in `splittable`: the module's plan re-cut in place first, then
    (not when re-planning: a new cut of everything would move tables a re-plan should keep) the wrap-arounds
    aimed from `bound_s` (the bound of such plans), one set per bend that pours other tables."""
    assert module.items is not None
    plans = [rebalance(module, module.items, splittable)]
    if module.previous is not None:
        return [priced(module, p) for p in plans]
    full = AssignmentProblem.from_module(module)
    tried: list[dict[int, Strategy]] = []
    for bend, preloaded in itertools.product(BENDS, (False, True)):
        fluid = pourable(module, splittable, bend, items_makespan_s(module.items), preloaded)
        if fluid in tried:
            continue  # a wider bend that pours no other table builds the same plan
        tried.append(fluid)
        plans.extend(poured(module, full, fluid, splittable, bound_s))
    return [priced(module, p) for p in plans]


def priced(module: Module, items: Sequence[WorkItem]) -> tuple[WorkItem, ...]:
    """`items` with each part priced as the cost model prices a part of its table's final part count: the cuts
    above are searched with the cost of a part read alone, and a table cut over every core is read together
    (`Module.part_profile`)."""
    parts = Counter(it.table for it in items)
    out = []
    for it in items:
        t, stats = module.table(it.table), module.part_profile(it.table, parts[it.table])
        cost = item_cost(ItemShape(it.strategy, it.rows, it.samples), t, stats, module.target, module.cost_profile)
        out.append(it.model_copy(update={"cost": cost}))
    return tuple(out)


def rebalance(module: Module, items: Sequence[WorkItem], splittable: frozenset[str]) -> tuple[WorkItem, ...]:
    """`items` with the sample cuts of the tables in `splittable` moved to lower the makespan (same items,
    cores, strategies and counts; samples stay contiguous, in item order); `items` itself if no move helps."""
    free = _movable(module, items, splittable)
    if not free:
        return tuple(items)
    recut = _Recut(module, items, free)
    counts = {i: items[i].samples[1] - items[i].samples[0] for idx in free.values() for i in idx}
    best = recut.level(counts)
    if best is counts:
        return tuple(items)
    out = list(items)
    for name, idx in free.items():
        lo, t = 0, module.table(name)
        for i in idx:
            hi = lo + best[i]
            cost = sample_part(module, t, items[i].strategy, (lo, hi))
            out[i] = items[i].model_copy(update={"samples": (lo, hi), "cost": cost})
            lo = hi
    return tuple(out)


def _movable(module: Module, items: Sequence[WorkItem], splittable: frozenset[str]) -> dict[str, list[int]]:
    """Per table of `splittable` split by samples into more than one item, the indices of its items."""
    groups: dict[str, list[int]] = {}
    for i, it in enumerate(items):
        if it.table in splittable:
            groups.setdefault(it.table, []).append(i)
    return {
        name: idx
        for name, idx in groups.items()
        if len(idx) > 1 and all(items[i].rows == (0, module.table(name).rows) for i in idx)
    }


class _Recut:
    """The successive linear programming of `rebalance`: the items of the tables in `free` (name -> item
    indices) change their samples, the other items' loads stay."""

    def __init__(self, module: Module, items: Sequence[WorkItem], free: dict[str, list[int]]) -> None:
        self.module, self.items, self.free = module, items, free
        self.costs = {
            name: functools.cache(part_cost(module, module.table(name), items[idx[0]].strategy))
            for name, idx in free.items()
        }
        moving = {i for idx in free.values() for i in idx}
        self.fixed = np.zeros(module.target.cores)
        for i, it in enumerate(items):
            if i not in moving:
                self.fixed[it.core] += it.cost.total_s

    def makespan(self, n: dict[int, int]) -> float:
        load = self.fixed.copy()
        for name, idx in self.free.items():
            for i in idx:
                load[self.items[i].core] += self.costs[name](n[i])
        return float(load.max())

    def level(self, counts: dict[int, int]) -> dict[int, int]:
        """Samples per item that lower the exact makespan, from `counts`; `counts` itself if no step helps."""
        best, best_span = counts, self.makespan(counts)
        trust = self.module.workload.batch_size / 2
        for _ in range(MAX_ROUNDS):
            if trust < MIN_TRUST:
                break
            proposal = _lp_step(self.module, self.items, self.free, self.costs, self.fixed, best, trust)
            span = self.makespan(proposal) if proposal is not None else math.inf
            if proposal is not None and span < best_span * (1 - 1e-9):
                best, best_span = proposal, span
            else:
                trust /= 4
        return best


def pourable(
    module: Module, splittable: frozenset[str], bend: float, span_s: float, preloaded: bool = False
) -> dict[int, Strategy]:
    """The tables `wrap_around` pours (by menu index), each with the strategy it reads with: of the tables in
    `splittable`, those with a strategy it may be poured with (below) whose one-sample part fits under `span_s`,
    and whose two halves cost at most `bend` more than the cheapest the menu serves it under `span_s` (its least-work
    option with parts that short; its fastest whole-table option if none is). A cut of a table read with reuse
    in the caches loses the reuse, and its row shards serve it better; a table the menu must cut anyway loses
    only what a part's fixed cost adds. The strategy is the one whose halves cost least, of those that hold no
    local bytes; with `preloaded`, of those whose one-sample part fits under `span_s`, preloaded ones the menu
    cuts the table's samples with included (each part then holds a replica, and the pour puts parts only where
    one fits). `span_s` is the makespan of the plan with equal cuts: a wrap-around must beat it to matter."""
    assert module.options is not None
    batch = module.workload.batch_size
    fluid: dict[int, Strategy] = {}
    for index, m in enumerate(module.options):
        if m.table not in splittable:
            continue
        t = module.table(m.table)
        shared = [s for s in uneven_strategies(module, m.table) if preloaded or not s.preloaded]
        if preloaded:  # only strategies whose one-sample part fits under the span
            shared = [s for s in shared if part_cost(module, t, s)(1) < span_s]
        # Cut in two, a strategy shows what a cut costs it (a stream pays for the whole table in every part).
        halves = {s: 2 * part_cost(module, t, s)(-(-batch // 2)) for s in shared}
        if not halves:
            continue
        fastest = min(shared, key=lambda s: (halves[s], s.value))
        if part_cost(module, t, fastest)(1) >= span_s:
            continue  # every part would take a core and more
        whole = min((o.part_s for o in m.options if o.parts == 1), default=math.inf)
        cheapest = min((o.work_s for o in m.options if o.part_s <= span_s), default=whole)
        if halves[fastest] <= (1 + bend) * cheapest:
            fluid[index] = fastest
    return fluid


def wrap_around(
    module: Module, full: AssignmentProblem, fluid: dict[int, Strategy], target_s: float
) -> tuple[WorkItem, ...] | None:
    """A plan built for uneven cuts: the tables not in `fluid` placed by the greedy gap filling under
    `target_s`, then each table in `fluid` poured, longest first, into the room the cores have left under a
    makespan T, cut wherever a core fills up (McNaughton's wrap-around), with T the least that takes everything
    (bisection). `full` is the module's assignment problem. None when nothing is poured or the greedy finds no
    packing."""
    assert module.options is not None
    if not fluid:
        return None
    rest = [i for i in range(len(module.options)) if i not in fluid]
    sub = AssignmentProblem(
        tables=tuple(full.tables[i] for i in rest),
        options=tuple(full.options[i] for i in rest),
        cores=module.target.cores,
        capacity_bytes=full.capacity_bytes,
    )
    # The other tables take their least-work options that fit under the target, on the least-loaded cores: the
    # poured tables fill around them.
    plan = place_under(sub, math.floor(target_s / TIME_UNIT_S)) if rest else None
    if rest and plan is None:
        return None
    items = list(place_items(module, dict(zip(rest, plan.choices, strict=True)) if plan else {}))
    pour = _Pour(module, fluid, items)
    parts = pour.least()
    if parts is None:
        return None
    cut: dict[int, int] = {}
    for i, core, n in parts:
        t = module.table(module.options[i].table)
        lo = cut.get(i, 0)
        cost = sample_part(module, t, fluid[i], (lo, lo + n))
        items.append(
            WorkItem(
                id=len(items),
                table=t.name,
                strategy=fluid[i],
                rows=(0, t.rows),
                samples=(lo, lo + n),
                core=core,
                local_bytes=pour.held[i],
                cost=cost,
            )
        )
        cut[i] = lo + n
    return tuple(items)


class _Pour:
    """McNaughton's wrap-around of the tables in `fluid` into the room `items` leave on the cores."""

    def __init__(self, module: Module, fluid: dict[int, Strategy], items: Sequence[WorkItem]) -> None:
        assert module.options is not None
        self.batch, self.cores = module.workload.batch_size, module.target.cores
        self.load = np.zeros(self.cores)
        self.free = [module.target.local.capacity_bytes] * self.cores  # local bytes left (Python ints: any size)
        for it in items:
            self.load[it.core] += it.cost.total_s
            self.free[it.core] -= it.local_bytes
        options = module.options
        self.costs = {i: functools.cache(part_cost(module, module.table(options[i].table), fluid[i])) for i in fluid}
        # What a part holds locally: a preloaded strategy's replica of the whole table.
        self.held = {i: module.table(options[i].table).bytes if fluid[i].preloaded else 0 for i in fluid}
        self.order = sorted(fluid, key=lambda i: (-self.costs[i](self.batch), i))
        self.min_part = max(1, self.batch // (SLIVER * self.cores))  # no sliver: a part pays its fixed cost

    def under(self, span: float) -> list[tuple[int, int, int]] | None:
        """(table index, core, samples) of every poured part under makespan `span`, or None if it overflows."""
        room, free = span - self.load, list(self.free)
        parts, core = [], 0
        for i in self.order:
            left, c = self.batch, self.costs[i]
            while left:
                if core >= self.cores:
                    return None
                n = _most_samples(c, room[core], left) if free[core] >= self.held[i] else 0
                if n < min(self.min_part, left):
                    core += 1
                    continue
                parts.append((i, core, n))
                room[core] -= c(n)
                free[core] -= self.held[i]
                left -= n
                if left:
                    core += 1
        return parts

    def least(self) -> list[tuple[int, int, int]] | None:
        """The parts under the least makespan that takes everything (bisection), or None."""
        lo = float(self.load.max())
        hi = lo + sum(c(self.batch) for c in self.costs.values())
        best = self.under(hi)
        if best is None:
            return None
        for _ in range(POUR_STEPS):
            mid = 0.5 * (lo + hi)
            got = self.under(mid)
            if got is None:
                lo = mid
            else:
                hi, best = mid, got
            if hi - lo <= 1e-4 * hi:
                break
        return best


def poured(
    module: Module, full: AssignmentProblem, fluid: dict[int, Strategy], splittable: frozenset[str], bound_s: float
) -> list[tuple[WorkItem, ...]]:
    """The wrap-around plans, re-cut: first aimed at the bound, then at the makespan the last one reached, as
    long as that improves. A target is where the other tables' parts must fit: aimed at the bound, a table
    whose least-work option lies just above it takes a costlier one, and the makespan then reached lets the
    next plan take it (taobao-ub on ascend910: a table cut in 16 row shards, then in 8)."""
    plans: list[tuple[WorkItem, ...]] = []
    target, best = bound_s, math.inf
    for _ in range(MAX_POUR_ROUNDS):
        plan = wrap_around(module, full, fluid, target)
        if plan is None:
            break
        plans.append(rebalance(module, plan, splittable))
        span = items_makespan_s(plans[-1])
        if span >= best * (1 - 1e-9):
            break
        target, best = span, span
    return plans


def _most_samples(cost: PartCost, room: float, most: int) -> int:
    """The most samples, up to `most`, whose part fits in `room` seconds (costs grow with samples); 0 if none."""
    if cost(1) > room:
        return 0
    return last_true(1, most, lambda n: cost(n) <= room)


def _lp_step(
    module: Module,
    items: Sequence[WorkItem],
    free: dict[str, list[int]],
    costs: Mapping[str, PartCost],
    fixed: np.ndarray,
    current: dict[int, int],
    trust: float,
) -> dict[int, int] | None:
    """Samples per part minimizing the largest load of the linearized costs, within `trust` samples of
    `current`; rounded to whole samples that still sum to the batch. None if GLOP fails."""
    batch = module.workload.batch_size
    solver = pywraplp.Solver.CreateSolver("GLOP")
    if solver is None:
        return None
    scale = 1 / TIME_UNIT_S  # seconds -> units, so the LP's numbers are of order 1e3-1e6
    span = solver.NumVar(0, solver.infinity(), "makespan")
    n = {}
    slope, offset = {}, {}
    for name, idx in free.items():
        for i in idx:
            now = current[i]
            lo, hi = max(1, now - trust), min(batch, now + trust)
            n[i] = solver.NumVar(lo, hi, f"n{i}")
            h = max(1, now // 8)
            left, right = max(1, now - h), min(batch, now + h)
            c = costs[name]
            slope[i] = (c(right) - c(left)) / (right - left) * scale if right > left else 0.0
            offset[i] = c(now) * scale - slope[i] * now
        solver.Add(sum(n[i] for i in idx) == batch)
    load: dict[int, list[pywraplp.LinearExpr]] = {}
    for i in n:
        load.setdefault(items[i].core, []).append(offset[i] + slope[i] * n[i])
    for core, terms in load.items():
        solver.Add(fixed[core] * scale + sum(terms) <= span)
    solver.Minimize(span)
    if solver.Solve() != pywraplp.Solver.OPTIMAL:
        return None
    out: dict[int, int] = {}
    for idx in free.values():
        values = [n[i].solution_value() for i in idx]
        whole = [max(1, math.floor(v)) for v in values]
        short = batch - sum(whole)
        order = sorted(range(len(idx)), key=lambda j: (-(values[j] - math.floor(values[j])), j))
        j = 0
        while short != 0 and order:
            k = order[j % len(order)]
            step = 1 if short > 0 else -1
            if whole[k] + step >= 1:
                whole[k] += step
                short -= step
            j += 1
        out.update(zip(idx, whole, strict=True))
    return out
