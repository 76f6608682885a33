"""A plan from the configuration LP: diving over core patterns (price and dive).

For a makespan T, the LP of `config_lp` on a grid rounded up (every pattern fits for real); the patterns it
uses whole are fixed on floor(lambda) cores, else its most used one on one core (up to `WIDTH` alternatives per
level, depth first), and the LP of the rest solved again, until the fixed patterns are the plan. Makespans are
bisected between a bound and the plan to beat; a failed dive only moves the bisection up. Counted in pricing
rounds, so the plan is the same on every run. Measurements: docs/design.md, "Lower bound" (the pattern dive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from embmap.passes.solver.config_lp import (
    SINGLE,
    TOL,
    Budget,
    Grid,
    Key,
    MasterLP,
    Outcome,
    Part,
    Pattern,
    Rounding,
    Search,
    Space,
    generate,
)
from embmap.passes.solver.problem import Assignment, AssignmentProblem, Choice, held_bytes

GRID = 1000  # cells under T (or T of them, one unit each, if fewer): parts are rounded up by under a cell
BYTE_GRID = 32  # cells of the local buffer (or one per byte, if fewer), where the buffers can bind
WIDTH = 3  # patterns tried per level of the dive
MAX_ROUNDS = 1000  # pricing rounds over the whole search
ROUNDS_PER_LP = 100  # a node whose LP is not solved in these is abandoned
ROUNDS_PER_MAKESPAN = 300  # a dive that finds no plan in these is abandoned
PRECISION = 1e-3  # the bisection stops when the bracket is this narrow (relative)
MAX_CELLS = 60_000_000  # grid cells the dynamic program may update per round (options x cells): a bigger
# problem is left to the other searches

Fixed = dict[int, tuple[int, int]]  # table -> (option, parts still to place)


@dataclass
class _Search:
    problem: AssignmentProblem
    T: int
    budget: Budget
    pool: set[Pattern]
    grid: Grid = field(init=False)
    parts: dict[tuple[int, int], Part] = field(default_factory=dict)  # (table, option) -> its part on the grid

    def keep(self, pattern: Pattern, load: float) -> None:
        self.pool.add(pattern)


def pack(
    problem: AssignmentProblem, lo: int, hi: int, max_rounds: int = MAX_ROUNDS, goal: int | None = None
) -> Assignment | None:
    """The best plan a dive finds with makespan below `hi`, trying makespans from `lo` up by bisection (None if
    it finds none, or the problem is too big for the dynamic program). With a `goal`, a makespan good enough
    for the caller: the first makespan tried is at most the goal, and a plan at or under it ends the search."""
    if lo >= hi or problem.cores <= 0 or packing_cells(problem) > MAX_CELLS:
        return None
    pool: set[Pattern] = set()
    best, rounds = None, 0
    lo = max(lo, 1)  # the grid divides T
    hi -= 1  # a plan must beat the one given
    while lo <= hi and rounds < max_rounds and (best is None or hi - lo > PRECISION * hi):
        if best is not None and goal is not None and best.makespan(problem) <= goal:
            break
        T = (lo + hi) // 2
        if goal is not None and lo <= goal < T:
            T = goal  # a dive at the goal, where a plan is good enough, before any below it
        search = _Search(problem, T, Budget(min(ROUNDS_PER_MAKESPAN, max_rounds - rounds)), pool)
        plan = _dive(search)
        rounds += search.budget.spent
        if plan is None:
            lo = T + 1
        else:
            best = plan
            hi = plan.makespan(problem) - 1
    return best


def packing_cells(problem: AssignmentProblem) -> int:
    """The grid cells one pricing round updates: options x time cells x byte cells."""
    byte_cells = BYTE_GRID + 1 if held_bytes(problem) > problem.capacity_bytes else 1
    return sum(len(opts) for opts in problem.options) * (GRID + 1) * byte_cells


def _dive(search: _Search) -> Assignment | None:
    p, T = search.problem, search.T
    binds = held_bytes(p) > p.capacity_bytes
    search.grid = Grid.spread(T, GRID, Rounding.UP, p.capacity_bytes if binds else None, BYTE_GRID)
    for t, opts in enumerate(p.options):
        for o, d in enumerate(opts):
            if d.part_units <= T and search.grid.holds(d.part_bytes):
                cells = search.grid.time(d.part_units)
                search.parts[t, o] = Part(_key(o), d.parts, cells, search.grid.bytes(d.part_bytes), d.part_units)
    if any(not any((t, o) in search.parts for o in range(len(opts))) for t, opts in enumerate(p.options)):
        return None  # some table fits under T in no way
    chosen = _node(search, {}, p.cores)
    if chosen is None:
        return None
    cores: dict[int, list[int]] = {}
    option: dict[int, int] = {}
    for c, pattern in enumerate(chosen):
        for t, key, _ in pattern:
            cores.setdefault(t, []).append(c)
            option[t] = key[1]
    return Assignment(tuple(Choice(option[t], tuple(cores[t])) for t in range(len(p.options))))


def _key(option: int) -> Key:
    return ("o", option, 0)


def _node(search: _Search, fixed: Fixed, cores: int) -> list[Pattern] | None:
    """Patterns, one per core, for what `fixed` and the free tables still need, on `cores` cores; None where the
    dive finds none."""
    used = _solve(search, fixed, cores)
    if used is None:
        return None
    if not used:
        return []
    p = search.problem

    def units(pattern: Pattern) -> int:
        return sum(p.options[t][key[1]].part_units for t, key, _ in pattern)

    ranked = sorted(used.items(), key=lambda kv: (-kv[1], -units(kv[0]), kv[0]))
    # First every pattern the LP uses whole at once (floor(lambda) copies each), then one at a time.
    whole = [(pattern, math.floor(value + TOL)) for pattern, value in ranked if value >= 1 - TOL]
    tries = [whole] if len(whole) > 1 else []
    tries += [[(pattern, max(1, math.floor(value + TOL)))] for pattern, value in ranked[:WIDTH]]
    for fixes in tries:
        step = _fix(p, fixed, fixes)
        if step is None:
            continue
        rest = _node(search, step[0], cores - len(step[1]))
        if rest is not None:
            return step[1] + rest
        if search.budget.spent >= search.budget.limit:
            return None
    return None


def _fix(p: AssignmentProblem, fixed: Fixed, fixes: list[tuple[Pattern, int]]) -> tuple[Fixed, list[Pattern]] | None:
    """`fixed` after placing each pattern of `fixes` on up to its count of cores, as far as the parts still to
    place allow (None if they allow none); with the patterns placed, one per core."""
    fixed = dict(fixed)
    placed: list[Pattern] = []
    for pattern, count in fixes:
        if any(t in fixed and fixed[t][0] != key[1] for t, key, _ in pattern):
            continue  # an earlier pattern chose another option of one of its tables
        left = {t: fixed[t][1] if t in fixed else p.options[t][key[1]].parts for t, key, _ in pattern}
        k = min(count, *left.values())
        if k <= 0:
            continue
        fixed.update({t: (key[1], left[t] - k) for t, key, _ in pattern})
        placed += [pattern] * k
    return (fixed, placed) if placed else None


def _solve(search: _Search, fixed: Fixed, cores: int) -> dict[Pattern, float] | None:
    """The residual LP by column generation: the patterns it uses (lambda > 0), or None when it needs more
    than `cores` cores (or is not solved within the rounds)."""
    p = search.problem
    lp = MasterLP(len(p.options))
    parts: list[list[Part]] = []
    for t, opts in enumerate(p.options):
        mine = [search.parts[t, o] for o in range(len(opts)) if (t, o) in search.parts]
        if t in fixed:
            o, left = fixed[t]
            mine = [search.parts[t, o]] if left > 0 else []
            if left > 0:
                lp.fix(t, _key(o), opts[o].parts, left)
        else:
            lp.choose(t, [(part.key, part.parts, part.parts) for part in mine])
        parts.append(mine)
    space = Space(search.grid, parts)
    lp.add_singles(space)
    for pattern in sorted(search.pool):
        if pattern not in lp.columns and all((t, key) in lp.cover for t, key, _ in pattern) and _fits(search, pattern):
            lp.add(pattern)
    outcome = generate(lp, space, cores, search.budget, Search(search.keep, per_lp=ROUNDS_PER_LP, precision=SINGLE))
    return lp.used() if outcome is Outcome.FITS else None


def _fits(search: _Search, pattern: Pattern) -> bool:
    """Whether a pattern (found under another makespan) fits the grid of this one."""
    parts = [search.parts[t, key[1]] for t, key, _ in pattern]
    return (
        sum(x.cells for x in parts) <= search.grid.cells and sum(x.byte_cells for x in parts) <= search.grid.byte_cells
    )
