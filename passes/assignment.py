"""The core-assignment problem in integers, and its non-solver solutions: greedy (LPT) and round-robin.

Every table picks one option from its menu; an option's parts go to distinct cores. A core's load is the sum
of what it holds; the makespan is the largest load; preloaded parts use local-buffer bytes on their core.
Costs are integers in `TIME_UNIT_S` units, shared by the greedy placement, the CP-SAT model and the
exhaustive search in the tests, so that they compare exactly.
"""

from __future__ import annotations

import bisect
import functools
import itertools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from embmap.ir.errors import InfeasibleError, SpecError
from embmap.ir.module import Module, PartitionOption
from embmap.ir.printer import fmt_bytes
from embmap.passes.bounds import dff_lower_bound

TIME_UNIT_S = 1e-9  # the one integer scale used inside CP-SAT: 1 unit = 1 ns
# CP-SAT refuses a model whose linear sums could overflow 64-bit integers; every sum the model forms (of
# times in units, of local bytes) must stay below this. 2**60 ns is 36 years of work per batch.
MAX_MODEL_SUM = 2**60


def to_units(seconds: float) -> int:
    if not math.isfinite(seconds):
        raise SpecError(
            "cost", f"a work item's predicted time is {seconds}", "check the target's bandwidths and the cost profile"
        )
    return max(0, math.ceil(seconds / TIME_UNIT_S - 1e-6))


@dataclass(frozen=True)
class OptionData:
    parts: int
    part_units: int  # the largest part's cost: the model treats all parts of an option alike
    part_bytes: int  # local-buffer bytes of the largest part (0 unless preloaded)

    @property
    def work_units(self) -> int:
        return self.parts * self.part_units


@dataclass(frozen=True)
class AssignmentProblem:
    tables: tuple[str, ...]
    options: tuple[tuple[OptionData, ...], ...]  # per table
    cores: int
    capacity_bytes: int
    rows: tuple[int, ...] = ()  # per table, where known: lets an infeasibility error suggest a row cap

    @staticmethod
    def from_module(module: Module) -> AssignmentProblem:
        assert module.options is not None
        return AssignmentProblem(
            tables=tuple(m.table for m in module.options),
            options=tuple(tuple(option_data(o) for o in m.options) for m in module.options),
            cores=module.target.cores,
            capacity_bytes=module.target.local.capacity_bytes,
            rows=tuple(t.rows for t in module.workload.tables),
        )

    # The bounds are asked for by the pass, the greedy portfolio (once per re-placement) and the solver:
    # computed once per problem.
    @functools.cached_property
    def work_bound(self) -> int:
        menus = [[(o.part_units, o.work_units) for o in opts] for opts in self.options]
        return math.ceil(choice_lower_bound(menus, self.cores) - 1e-9)

    @functools.cached_property
    def lower_bound(self) -> int:
        sizes = [[(o.parts, o.part_units) for o in opts] for opts in self.options]
        held = [[o.parts * o.part_bytes for o in opts] for opts in self.options]
        return dff_lower_bound(sizes, self.cores, self.work_bound, held=held, capacity_bytes=self.capacity_bytes)[0]


def option_data(o: PartitionOption) -> OptionData:
    return OptionData(
        parts=o.parts,
        part_units=to_units(o.part_s),
        part_bytes=max(o.local_bytes_per_part),
    )


@dataclass(frozen=True)
class Choice:
    option: int
    cores: tuple[int, ...]  # one per part, distinct


@dataclass(frozen=True)
class Assignment:
    choices: tuple[Choice, ...]  # per table

    def loads(self, problem: AssignmentProblem) -> list[int]:
        loads = [0] * problem.cores
        for opts, ch in zip(problem.options, self.choices, strict=True):
            for c in ch.cores:
                loads[c] += opts[ch.option].part_units
        return loads

    def makespan(self, problem: AssignmentProblem) -> int:
        return max(self.loads(problem))

    def relabel_by_load(self, problem: AssignmentProblem) -> Assignment:
        """The same plan with cores renumbered so that loads decrease (cores are identical)."""
        loads = self.loads(problem)
        order = sorted(range(problem.cores), key=lambda c: (-loads[c], c))
        new = {old: i for i, old in enumerate(order)}
        return Assignment(tuple(Choice(ch.option, tuple(sorted(new[c] for c in ch.cores))) for ch in self.choices))


def check_model_size(problem: AssignmentProblem) -> None:
    """The integer model's sums fit CP-SAT's 64-bit arithmetic, else one line says which table's cost is out
    of scale (absurd bandwidths, batch sizes or pooling factors end here rather than in a solver crash)."""
    work = sum(o.work_units for opts in problem.options for o in opts)
    span = sum(max(o.work_units for o in opts) for opts in problem.options)
    held = held_bytes(problem)
    if held > problem.capacity_bytes and held >= MAX_MODEL_SUM:
        raise SpecError(
            "target.local.capacity_bytes",
            f"the preloaded options hold {held:.3g} bytes in all, beyond the {MAX_MODEL_SUM:.3g} the core "
            "assignment can sum",
            "give the local buffer its real size, or fewer and smaller tables",
        )
    if max(work, problem.cores * span) < MAX_MODEL_SUM:
        return
    t = max(range(len(problem.tables)), key=lambda t: max(o.work_units for o in problem.options[t]))
    worst = max(o.work_units for o in problem.options[t]) * TIME_UNIT_S
    raise SpecError(
        "workload",
        f"table {problem.tables[t]}'s costliest option takes {worst:.3g} s per batch and the options together "
        f"{work * TIME_UNIT_S:.3g} s, beyond the {MAX_MODEL_SUM * TIME_UNIT_S:.3g} s the core assignment can count "
        f"in {TIME_UNIT_S:g} s units",
        "check the target's bandwidths and latencies, and use a smaller batch size or pooling factor",
    )


def held_bytes(problem: AssignmentProblem) -> int:
    """Local bytes of every part of every option: what a core could hold at the very most."""
    return sum(o.part_bytes for opts in problem.options for o in opts)


def lower_bound_units(problem: AssignmentProblem) -> int:
    """A bound no plan can beat, computed without the solver: the work bound of `choice_lower_bound`, raised
    by the bin-packing argument of `passes.bounds` (parts too big to share a core, and local buffers too small
    for every table that would save by preloading)."""
    return problem.lower_bound


def work_bound_units(problem: AssignmentProblem) -> int:
    """`choice_lower_bound` of the problem, in units."""
    return problem.work_bound


def choice_lower_bound(menus: Sequence[Sequence[tuple[float, float]]], cores: int) -> float:
    """min over T of max(T, W(T) / cores), where W(T) is the least total work when every table takes an
    option whose largest item is at most T. Valid: an optimal plan with makespan M uses only options with
    items <= M, so its work is at least W(M), and M >= W(M) / cores. Each menu lists (largest item, work)."""
    events = sorted((largest, t, work) for t, menu in enumerate(menus) for largest, work in menu)
    best_work: list[float | None] = [None] * len(menus)
    missing, total, bound = len(menus), 0.0, math.inf
    for largest, t, work in events:
        current = best_work[t]
        if current is None:
            missing -= 1
            total += work
            best_work[t] = work
        elif work < current:
            total += work - current
            best_work[t] = work
        if missing == 0:
            bound = min(bound, max(largest, total / cores))
    return bound


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
    bounds = {work_bound_units(problem), lower_bound_units(problem)}
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


PRICE_FILLS = (1.0, 0.85)  # 0.85: on 5000 tables x 512 cores whose least-work options fill 96%, 6% -> 2% gap
PRICE_STEPS = 32  # of the search for a price: x4 per step up, then bisection (to 2**-32 of the bracket)


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
    choices = list(plan.choices)
    prev: Sequence[Choice | None] = previous or [None] * len(choices)
    moved = sum(p is not None and ch != p for ch, p in zip(choices, prev, strict=True))
    state = CoreLoads(problem.cores, problem.capacity_bytes)
    holders: list[set[int]] = [set() for _ in range(problem.cores)]  # the tables with a part on each core
    for t, ch in enumerate(choices):
        state.place(problem.options[t][ch.option], ch.cores)
        for c in ch.cores:
            holders[c].add(t)
    work = sum(problem.options[t][ch.option].work_units for t, ch in enumerate(choices))
    for _ in range(max_rounds):
        at_peak = state.at_peak()
        current = (state.peak, len(at_peak), work)
        best_move: tuple[tuple[int, int, int], int, Choice] | None = None
        for t in sorted(set().union(*(holders[c] for c in at_peak))):
            old = choices[t]
            o_old = problem.options[t][old.option]
            state.place(o_old, old.cores, sign=-1)
            for i, o in enumerate(problem.options[t]):
                floor = state.floor(o.parts) + o.part_units
                if floor > current[0] or (best_move is not None and floor > best_move[0][0]):
                    continue  # its peak would exceed the plan's or the best move's
                found = state.least(o.parts, o.part_bytes)
                if found is None:
                    continue
                cores = tuple(sorted(found))
                p = prev[t]
                if p is not None and max_moves is not None and moved + (Choice(i, cores) != p) - (old != p) > max_moves:
                    continue  # the move budget is spent
                candidate = (*state.peak_with(found, o.part_units), work - o_old.work_units + o.work_units)
                if candidate < current and (best_move is None or candidate < best_move[0]):
                    best_move = (candidate, t, Choice(i, cores))
            state.place(o_old, old.cores)
        if best_move is None:
            break
        _, t, new = best_move
        o_old, o_new = problem.options[t][choices[t].option], problem.options[t][new.option]
        state.place(o_old, choices[t].cores, sign=-1)
        state.place(o_new, new.cores)
        for c in choices[t].cores:
            holders[c].discard(t)
        for c in new.cores:
            holders[c].add(t)
        work += o_new.work_units - o_old.work_units
        p = prev[t]
        if p is not None:
            moved += (new != p) - (choices[t] != p)
        choices[t] = new
    return Assignment(tuple(choices))


GREEDY_IMPROVED = 3  # how many of the best placements the local search polishes
GREEDY_TARGETS = (1.0, 1.01, 1.02, 1.04, 1.07, 1.1, 1.15, 1.2, 1.3, 1.5, 2.0, 3.0)
# After the targets above, bisect between the largest target some table did not fit under and the best
# makespan, for at most this many placements or until they are this close (relative).
REFINE_STEPS = 8
REFINE_TOLERANCE = 0.002


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
            raise _no_room(problem, t, used)
        _, i = min(fitting)
        used[core] += opts[i].part_bytes
        choices.append(Choice(i, (core,)))
    return Assignment(tuple(choices))


def _no_room(problem: AssignmentProblem, t: int, used: list[int]) -> InfeasibleError:
    need = min((o.part_bytes for o in problem.options[t] if o.parts == 1), default=0)
    core = t % problem.cores
    return InfeasibleError(
        f"table {problem.tables[t]}",
        f"round-robin deals it to core {core}, whose local buffer has {fmt_bytes(problem.capacity_bytes - used[core])} "
        f"left of {fmt_bytes(problem.capacity_bytes)}; its smallest whole-table option needs {fmt_bytes(need)}",
        "use the embmap or greedy pipeline, which place tables where they fit, or allow a shared-memory "
        "strategy (GM or GM-UB) for it",
    )


def capacity_error(problem: AssignmentProblem, headline: str) -> InfeasibleError:
    """No placement fits the local buffers: the tables that must be preloaded (every option of theirs holds
    local bytes), the bytes they need at the least and what the cores hold, and the fixes with numbers."""
    cap, cores = problem.capacity_bytes, problem.cores
    needs = []  # (local bytes in all, parts, table index) of each table's least-bytes option
    for t, opts in enumerate(problem.options):
        least = min(opts, key=lambda o: (o.part_bytes * o.parts, o.parts))
        if least.part_bytes > 0:
            needs.append((least.part_bytes * least.parts, least.parts, t))
    needs.sort(key=lambda n: (-n[0], n[2]))
    total, have = sum(n[0] for n in needs), cap * cores
    names = [problem.tables[t] for _, _, t in needs]
    shown = ", ".join(
        f"{problem.tables[t]} {fmt_bytes(b)}" + (f" in {k} parts" if k > 1 else "") for b, k, t in needs[:3]
    )
    more = f" and {len(needs) - 3} more" if len(needs) > 3 else ""
    if total > have:
        why = f"the {cores} cores hold {cores} x {fmt_bytes(cap)} = {fmt_bytes(have)}"
    else:
        why = (
            f"the {cores} cores hold {fmt_bytes(have)} in all but {fmt_bytes(cap)} each, and the parts of one "
            "table need distinct cores: they do not pack"
        )
    fixes = [
        f"allow a shared-memory strategy for {', '.join(names[:3])}{more} "
        "(select-strategy{strategies=GM:GM-UB:L1:L1-UB})",
        f"a target with at least {max(cores + 1, -(-total // cap))} cores",
    ]
    row_cap = _fitting_row_cap(problem, needs, have)
    if row_cap:
        fixes.insert(1, f"--row-cap {row_cap} or less")
    return InfeasibleError(
        "assign-cores",
        f"{headline}: tables that must be preloaded need {fmt_bytes(total)} of local buffer "
        f"at the least ({shown}{more}); {why}",
        ", ".join(fixes[:-1]) + ", or " + fixes[-1],
    )


def _fitting_row_cap(problem: AssignmentProblem, needs: list[tuple[int, int, int]], have: int) -> int:
    """About the largest row cap under which the preloaded tables' bytes (scaled with their rows) fit in
    `have`; 0 where rows are unknown or no cap helps."""
    if not problem.rows or not needs:
        return 0
    rows = problem.rows

    def need(cap: int) -> float:
        return sum(b * min(1.0, cap / rows[t]) for b, _, t in needs)

    largest = max(rows[t] for _, _, t in needs)
    cap = last_true(0, largest, lambda cap: need(cap) <= have)
    return cap if cap < largest else 0


def last_true(lo: int, hi: int, ok: Callable[[int], bool]) -> int:
    """The largest n in [lo, hi] with ok(n), for ok true up to some n and false after it; lo if none is."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
