"""Plans without a solver: the greedy portfolio (longest first, gap filling, under target makespans), its local
search, and round-robin. The greedy plan seeds CP-SAT and stands where CP-SAT cannot run.

The portfolio places tables in decreasing order of their least-work part; each takes its cheapest option (its
work, plus a price per local byte held) whose parts all fit under a target makespan T on the least-loaded
cores with room, so small tables are split just enough to fill the gaps big ones leave. One placement per
target (from the bounds up) and per byte price (0, and the Lagrangian prices at which the cheapest options
just fill the local buffers); then a bisection towards the least target everything fits under. The local
search re-inserts tables that touch a most-loaded core with whichever option serves best.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from embmap.passes.solver.errors import capacity_error, no_room
from embmap.passes.solver.problem import Assignment, AssignmentProblem, Choice, OptionData

# Target makespans of the portfolio, as multiples of the lower bounds: dense near the bound, where the best
# plans are, sparse above it (a target far above the bound is least work first).
GREEDY_TARGETS = (1.0, 1.01, 1.02, 1.04, 1.07, 1.1, 1.15, 1.2, 1.3, 1.5, 2.0, 3.0)
# After the targets above, bisect between the largest target some table did not fit under and the best
# makespan, for at most this many placements or until they are this close (relative).
REFINE_STEPS = 8
REFINE_TOLERANCE = 0.002
GREEDY_IMPROVED = 3  # how many of the best placements the local search polishes: it ends in different optima
PRICE_FILLS = (1.0, 0.85)  # 0.85: on 5000 tables x 512 cores whose least-work options fill 96%, 6% -> 2% gap
PRICE_STEPS = 32  # of the search for a price: x4 per step up, then bisection (to 2**-32 of the bracket)


def greedy(problem: AssignmentProblem) -> Assignment:
    """The best of a portfolio of gap-filling, longest-first placements, one per target makespan T (from the
    lower bounds up to unbounded) and price of local bytes, polished by local search. Tables go in decreasing
    order of their least-work part; each takes its cheapest option (its work, plus the price of the local
    bytes it holds) whose parts all fit under T on the least-loaded cores with room, so a small table is split
    just enough to fill the gaps the big ones leave. When nothing fits under T, the option that leaves the
    smallest makespan is taken. The prices are 0 (least work first) and those at which the cheapest options
    just fill the local buffers (see `byte_prices`)."""
    starts = _portfolio(problem, {})[:GREEDY_IMPROVED]
    if not starts:
        raise capacity_error(problem, "the greedy placement found no way to pack the local buffers")
    # The local search ends in different optima from different starts: polish the best few.
    return min((improve(problem, plan) for plan in starts), key=lambda a: a.makespan(problem))


def place_around(problem: AssignmentProblem, fixed: Mapping[int, Choice]) -> Assignment | None:
    """The gap-filling placements of `greedy` for the tables not in `fixed`, on top of the loads and bytes
    of those in `fixed` (which keep their choice); the best of them, without local search, or None."""
    plans = _portfolio(problem, fixed)
    return plans[0] if plans else None


def place_under(problem: AssignmentProblem, target: int) -> Assignment | None:
    """The gap-filling placement of `greedy` for one target makespan (in units) and no price on local bytes,
    without local search; None if some table finds no room."""
    return _place_under_target(problem, target, _Ranking.of(problem, 0.0))


def _portfolio(problem: AssignmentProblem, fixed: Mapping[int, Choice]) -> list[Assignment]:
    """The distinct placements of every price and target, fastest first (ties: the lower price, then the
    lower target first)."""
    # Targets from both bounds: the packing bound is closer to the optimum, but a placement aimed at the
    # lower work bound sometimes packs better.
    bounds = {problem.work_bound, problem.lower_bound}
    targets = sorted({math.inf, *(int(lb * f) for lb in bounds for f in GREEDY_TARGETS)})
    plans: dict[Assignment, int] = {}
    for price in byte_prices(problem):
        for plan in _under_targets(problem, _Ranking.of(problem, price), targets, fixed):
            if plan not in plans:
                plans[plan] = plan.makespan(problem)
    return sorted(plans, key=plans.__getitem__)


def byte_prices(problem: AssignmentProblem) -> list[float]:
    """Prices of a local byte, in time units: 0, and for each fill in `PRICE_FILLS` that the least-work options
    overfill, the least price at which each table's option of least (work + price x local bytes) holds no more
    than that fill of all cores' local buffers. That is a Lagrangian price of the capacity: it keeps the
    buffers for the tables that save the most work per byte, where least work first hands them to whichever
    comes first; a fill below 1 leaves room for the parts to pack onto the cores."""
    menus = [[(o.work_units, o.parts * o.part_bytes, o.parts) for o in opts] for opts in problem.options]

    def held(price: float) -> int:
        return sum(min(menu, key=lambda o: (o[0] + price * o[1], o[2]))[1] for menu in menus)

    prices = [0.0]
    for fill in PRICE_FILLS:
        have = fill * problem.cores * problem.capacity_bytes
        if held(0.0) <= have:
            continue
        lo, hi = 0.0, 1.0
        for _ in range(PRICE_STEPS):
            if held(hi) <= have:
                break
            lo, hi = hi, hi * 4.0
        else:
            continue  # no price makes them fit: the tables that must be preloaded need more than that
        for _ in range(PRICE_STEPS):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if held(mid) > have else (lo, mid)
        prices.append(hi)
    return sorted(set(prices))


def improve(
    problem: AssignmentProblem,
    plan: Assignment,
    max_rounds: int = 1000,
    *,
    previous: Sequence[Choice | None] | None = None,
    max_moves: int | None = None,
) -> Assignment:
    """Local search: take one table with a part on a most-loaded core out of the plan and put it back with
    whichever option and cores serve best; keep the move when it lowers (makespan, cores at the makespan,
    total work). Stops at a local optimum. Deterministic. With `previous` (per table, a choice to keep or
    None) and `max_moves`, no step leaves more than `max_moves` tables off their previous choice."""
    search = _LocalSearch(problem, plan, previous, max_moves)
    for _ in range(max_rounds):
        move = search.best_move()
        if move is None:
            break
        search.make(*move)
    return Assignment(tuple(search.choices))


class _LocalSearch:
    """The state of `improve`: the plan's choices, its core loads, the tables on each core, its work and how
    many tables it moved off their previous choice."""

    def __init__(
        self,
        problem: AssignmentProblem,
        plan: Assignment,
        previous: Sequence[Choice | None] | None,
        max_moves: int | None,
    ) -> None:
        self.problem = problem
        self.choices = list(plan.choices)
        self.prev: Sequence[Choice | None] = previous or [None] * len(self.choices)
        self.max_moves = max_moves
        self.moved = sum(p is not None and ch != p for ch, p in zip(self.choices, self.prev, strict=True))
        self.state = CoreLoads(problem.cores, problem.capacity_bytes)
        self.holders: list[set[int]] = [set() for _ in range(problem.cores)]  # the tables with a part on each core
        for t, ch in enumerate(self.choices):
            self.state.place(problem.options[t][ch.option], ch.cores)
            for c in ch.cores:
                self.holders[c].add(t)
        self.work = sum(problem.options[t][ch.option].work_units for t, ch in enumerate(self.choices))

    def best_move(self) -> tuple[int, Choice] | None:
        """The re-insertion of a table on a most-loaded core that lowers (makespan, cores at it, work) most."""
        at_peak = self.state.at_peak()
        current = (self.state.peak, len(at_peak), self.work)
        best: tuple[tuple[int, int, int], int, Choice] | None = None
        for t in sorted(set().union(*(self.holders[c] for c in at_peak))):
            old = self.choices[t]
            o_old = self.problem.options[t][old.option]
            self.state.place(o_old, old.cores, sign=-1)
            for i, o in enumerate(self.problem.options[t]):
                floor = self.state.floor(o.parts) + o.part_units
                if floor > current[0] or (best is not None and floor > best[0][0]):
                    continue  # its peak would exceed the plan's or the best move's
                found = self.state.least(o.parts, o.part_bytes)
                if found is None or not self._within_budget(t, Choice(i, tuple(sorted(found)))):
                    continue
                candidate = (*self.state.peak_with(found, o.part_units), self.work - o_old.work_units + o.work_units)
                if candidate < current and (best is None or candidate < best[0]):
                    best = (candidate, t, Choice(i, tuple(sorted(found))))
            self.state.place(o_old, old.cores)
        return None if best is None else (best[1], best[2])

    def _within_budget(self, t: int, new: Choice) -> bool:
        """Whether moving table t to `new` leaves at most `max_moves` tables off their previous choice."""
        p = self.prev[t]
        if p is None or self.max_moves is None:
            return True
        return self.moved + (new != p) - (self.choices[t] != p) <= self.max_moves

    def make(self, t: int, new: Choice) -> None:
        old = self.choices[t]
        o_old, o_new = self.problem.options[t][old.option], self.problem.options[t][new.option]
        self.state.place(o_old, old.cores, sign=-1)
        self.state.place(o_new, new.cores)
        for c in old.cores:
            self.holders[c].discard(t)
        for c in new.cores:
            self.holders[c].add(t)
        self.work += o_new.work_units - o_old.work_units
        p = self.prev[t]
        if p is not None:
            self.moved += (new != p) - (old != p)
        self.choices[t] = new


@dataclass(frozen=True)
class _Ranking:
    """The order in which tables are placed (decreasing least-work part) and, per table, its options from
    cheapest to dearest: work plus `price` per local byte held (ties: fewer parts)."""

    tables: tuple[int, ...]
    options: tuple[tuple[int, ...], ...]

    @staticmethod
    def of(problem: AssignmentProblem, price: float) -> _Ranking:
        least = [min(opts, key=lambda o: (o.work_units, o.parts)) for opts in problem.options]
        return _Ranking(
            tables=tuple(sorted(range(len(problem.tables)), key=lambda t: (-least[t].part_units, t))),
            options=tuple(
                tuple(
                    sorted(
                        range(len(opts)),
                        key=lambda i: (opts[i].work_units + price * opts[i].parts * opts[i].part_bytes, opts[i].parts),
                    )
                )
                for opts in problem.options
            ),
        )


def _under_targets(
    problem: AssignmentProblem, ranking: _Ranking, targets: list[float], fixed: Mapping[int, Choice]
) -> list[Assignment]:
    """The placements under the targets, then under targets bisecting between the largest target some table
    did not fit under and the best makespan: a plan is best when its target is just above the least one
    everything fits under, and the fixed targets only bracket that."""
    plans = []
    span = math.inf
    missed = []  # targets some table did not fit under
    for target in targets:
        plan = _place_under_target(problem, target, ranking, fixed)
        plan_span = math.inf if plan is None else plan.makespan(problem)
        if plan is not None:
            plans.append(plan)
        if plan_span > target:
            missed.append(target)
        span = min(span, plan_span)
    lo = max((t for t in missed if t < span), default=None)
    for _ in range(REFINE_STEPS):
        if lo is None or span - lo <= max(1.0, REFINE_TOLERANCE * span):
            break
        mid = (lo + span) // 2
        plan = _place_under_target(problem, mid, ranking, fixed)
        if plan is not None and plan.makespan(problem) <= mid:
            plans.append(plan)
            span = plan.makespan(problem)
        else:
            lo = mid
    return plans


def _place_under_target(
    problem: AssignmentProblem, target: float, ranking: _Ranking, fixed: Mapping[int, Choice] | None = None
) -> Assignment | None:
    state = CoreLoads(problem.cores, problem.capacity_bytes)
    choices: dict[int, Choice] = dict(fixed or {})
    for t, ch in choices.items():
        state.place(problem.options[t][ch.option], ch.cores)
    for t in (t for t in ranking.tables if t not in choices):
        fallback: tuple[tuple[int, int], int, list[int]] | None = None
        picked: tuple[int, list[int]] | None = None
        for i in ranking.options[t]:
            o = problem.options[t][i]
            floor = state.floor(o.parts) + o.part_units
            if floor > target and fallback is not None and (floor, o.work_units) >= fallback[0]:
                continue  # can neither fit under the target nor beat the fallback
            cores = state.least(o.parts, o.part_bytes)
            if cores is None:
                continue
            peak = state.loads[cores[-1]] + o.part_units
            if peak <= target:
                picked = (i, cores)
                break
            if fallback is None or (peak, o.work_units) < fallback[0]:
                fallback = ((peak, o.work_units), i, cores)
        if picked is None:
            if fallback is None:
                return None
            picked = (fallback[1], fallback[2])
        i, cores = picked
        state.place(problem.options[t][i], cores)
        choices[t] = Choice(i, tuple(sorted(cores)))
    return Assignment(tuple(choices[t] for t in range(len(problem.tables))))


class CoreLoads:
    """Each core's load and local bytes, with the cores kept sorted by (load, core): the least-loaded cores
    with room for a part come from a walk along that order instead of a scan and sort of every core, which
    is what makes placements on hundreds of cores cheap."""

    def __init__(self, cores: int, capacity_bytes: int) -> None:
        self.loads = [0] * cores
        self.used = [0] * cores
        self.capacity_bytes = capacity_bytes
        self.order = [(0, c) for c in range(cores)]
        self.used_order = [0] * cores  # every core's local bytes, sorted: how many cores have room for a part

    def add(self, core: int, units: int, part_bytes: int) -> None:
        """Put (or, with negative amounts, take) a part's units and bytes on `core`."""
        load, used = self.loads[core], self.used[core]
        del self.order[bisect.bisect_left(self.order, (load, core))]
        bisect.insort(self.order, (load + units, core))
        self.loads[core] = load + units
        if part_bytes:
            del self.used_order[bisect.bisect_left(self.used_order, used)]
            bisect.insort(self.used_order, used + part_bytes)
            self.used[core] = used + part_bytes

    def place(self, o: OptionData, cores: Iterable[int], sign: int = 1) -> None:
        for c in cores:
            self.add(c, sign * o.part_units, sign * o.part_bytes)

    def floor(self, parts: int) -> int:
        """The `parts`-th smallest load: no set of `parts` distinct cores has a lower largest load."""
        return self.order[parts - 1][0]

    def least(self, parts: int, part_bytes: int) -> list[int] | None:
        """The `parts` least-loaded cores (ties: lower index) with room for `part_bytes` more local bytes, in
        that order; None if fewer have room."""
        if part_bytes == 0:  # every core has room for nothing more
            return [c for _, c in self.order[:parts]]
        limit = self.capacity_bytes - part_bytes
        if bisect.bisect_right(self.used_order, limit) < parts:
            return None
        found = []
        for _, c in self.order:
            if self.used[c] <= limit:
                found.append(c)
                if len(found) == parts:
                    return found
        return None

    def peak_with(self, cores: list[int], units: int) -> tuple[int, int]:
        """(largest load, cores at it) were `units` added to each of `cores` (as `least` returns them)."""
        chosen = set(cores)
        top = self.loads[cores[-1]]
        peak, count = top + units, sum(1 for _ in itertools.takewhile(lambda c: self.loads[c] == top, reversed(cores)))
        for load, c in reversed(self.order):
            if c in chosen:
                continue
            if load < peak:
                break
            if load > peak:
                peak, count = load, 0
            count += 1
        return peak, count

    @property
    def peak(self) -> int:
        return self.order[-1][0]

    def at_peak(self) -> list[int]:
        """The cores whose load is the largest."""
        return [c for _, c in itertools.takewhile(lambda e: e[0] == self.peak, reversed(self.order))]


def round_robin(problem: AssignmentProblem) -> Assignment:
    """Whole tables dealt to cores in turn, in workload order; each takes its cheapest one-part option that
    fits the local buffer of the core whose turn it is."""
    used = [0] * problem.cores
    choices = []
    for t, opts in enumerate(problem.options):
        core = t % problem.cores
        fitting = [
            (o.part_units, i)
            for i, o in enumerate(opts)
            if o.parts == 1 and used[core] + o.part_bytes <= problem.capacity_bytes
        ]
        if not fitting:
            raise no_room(problem, t, used)
        _, i = min(fitting)
        used[core] += opts[i].part_bytes
        choices.append(Choice(i, (core,)))
    return Assignment(tuple(choices))
