"""A lower bound on the makespan from the configuration LP: column generation over core patterns.

A pattern is what one core may hold under a makespan T: at most one part of each table, their sizes summing
to at most T. Every plan with makespan at most T covers each table's chosen option with one pattern per core,
so T is impossible if the linear program

    min sum_p lambda_p   s.t.  sum_o y[t,o] = 1,   sum_p a[p,t,o] lambda_p >= parts(o) y[t,o],   y, lambda >= 0

needs more than `cores` patterns. Unlike the dual feasible functions of `passes.bounds`, which see each part
alone against T, it sees which parts add up under T together: parts of 13 and 30 units under T = 40 fill a
core with 3 to spare, whatever else there is.

The patterns are too many to list, so they are generated (Gilmore and Gomory): the restricted LP over the
patterns found so far gives duals alpha_t (one per table), and a dynamic program over the core's time, in
units of T / `GRID`, finds the pattern of most value. Two things make it converge in tens of rounds rather
than thousands:

- Of the optimal duals of the restricted LP, the one that prices an option's part lowest is alpha_t / parts(o)
  (an option's y only asks parts(o) pi[t,o] >= alpha_t): the others are degenerate, and pricing with them
  finds patterns of parts the LP will never use. Every table's parts are then priced by one number per part
  count, so of a table's options with equal parts only the smallest matters.
- Farley's bound: if no pattern is worth more than v, the duals divided by v are feasible for the whole LP, so
  sum_t alpha_t / v bounds it from below at every round. T is refuted as soon as that exceeds `cores`, and
  kept as soon as the restricted LP fits in `cores`.

Sizes are rounded down to the grid and T with them, so a pattern of the real sizes is always one of the
grid's, and the bound can only weaken, never be wrong. An option's parts count at its least part's size.

A table that may be cut unevenly (`passes.balance`) also has lines a + b n under the time of a part of n
samples, for n in [1, N]: its pieces enter patterns at any n >= 1 (fractional, which only weakens the bound),
and cover its N samples together. In the dynamic program a piece fills whatever room it is given, so its
value is a running maximum along the grid.

The search tests makespans between the bound already known and a plan's makespan by bisection; every T it
refutes is impossible, so the result is valid whatever the search misses. The work is counted in pricing
rounds, not seconds, so the bound is the same on every run.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ortools.linear_solver import pywraplp

GRID = 4000  # grid cells under T: sizes rounded down lose at most one cell each, about 0.025% of T
MAX_ROUNDS = 1500  # pricing rounds over the whole search
PRECISION = 1e-3  # the search stops when the bracket is this narrow (relative)
_TOL = 1e-7  # relative: Farley's bound must exceed the cores by this to refute T


@dataclass(frozen=True)
class PatternMenu:
    """One table as the configuration LP sees it: `options` (parts, least part size) in integer units, and
    `lines` (a, b) in units, each a line a + b n under the time of a part of n samples (n in [1, `samples`])
    for a strategy the table may be cut unevenly with (none if it may not)."""

    options: tuple[tuple[int, int], ...]
    lines: tuple[tuple[float, float], ...] = ()
    samples: int = 1


@dataclass
class _Pool:
    """Patterns found at any makespan, kept for the next: (load in units, ((table, key, amount), ...))."""

    patterns: list[tuple[float, tuple[tuple[int, tuple[str, int], float], ...]]] = field(default_factory=list)
    rounds: int = 0


def pattern_lower_bound(
    menus: Sequence[PatternMenu], cores: int, lo: int, hi: int, max_rounds: int = MAX_ROUNDS
) -> int:
    """The least makespan in [lo, hi] that the configuration LP does not refute, as far as `max_rounds`
    pricing rounds tell (lo when it refutes nothing, or there is nothing to bisect)."""
    if cores <= 0 or not menus or hi <= lo:
        return lo
    pool = _Pool()
    while lo < hi and hi - lo > PRECISION * hi and pool.rounds < max_rounds:
        mid = (lo + hi) // 2
        if _refutes(menus, cores, mid, pool, max_rounds):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _refutes(menus: Sequence[PatternMenu], cores: int, T: int, pool: _Pool, max_rounds: int) -> bool:
    """Whether no plan has makespan <= T, by column generation (False when undecided within the rounds)."""
    q = max(1, T // GRID)
    cells = T // q
    # Per table, per part count, the least size: the only option of that count that prices can favour.
    usable: list[dict[int, int]] = []
    for m in menus:
        best: dict[int, int] = {}
        for parts, size in m.options:
            if size <= T and size < best.get(parts, T + 1):
                best[parts] = size
        lines = [(a, b) for a, b in m.lines if a + b <= T]
        if not best and not lines:
            return True  # some table fits under T in no way
        usable.append(best)
    solver = pywraplp.Solver.CreateSolver("GLOP")
    ones, cover = [], {}
    for t, m in enumerate(menus):
        one = solver.Constraint(1, 1)
        ones.append(one)
        keys = [(("o", parts), parts) for parts in usable[t]]
        keys += [(("f", k), m.samples) for k, (a, b) in enumerate(m.lines) if a + b <= T]
        for key, need in keys:
            y = solver.NumVar(0, solver.infinity(), "")  # no upper bound: y <= 1 would add degenerate duals
            one.SetCoefficient(y, 1)
            row = solver.Constraint(0, solver.infinity())
            row.SetCoefficient(y, -need)
            cover[t, key] = row
    objective = solver.Objective()
    objective.SetMinimization()

    def add(pattern: tuple[tuple[int, tuple[str, int], float], ...]) -> None:
        var = solver.NumVar(0, solver.infinity(), "")
        objective.SetCoefficient(var, 1)
        for t, key, amount in pattern:
            cover[t, key].SetCoefficient(var, amount)

    for t, key in cover:  # every part alone on a core: the LP is feasible from the start
        if key[0] == "o":
            add(((t, key, 1.0),))
        else:
            a, b = menus[t].lines[key[1]]
            add(((t, key, min(float(menus[t].samples), (T - a) / b)),))
    for load, pattern in pool.patterns:
        if load <= T and all((t, key) in cover for t, key, _ in pattern):
            add(pattern)
    while pool.rounds < max_rounds:
        if solver.Solve() != pywraplp.Solver.OPTIMAL:
            return False
        if objective.Value() <= cores * (1 + _TOL):
            return False  # these patterns already fit the cores
        alpha = np.array([one.dual_value() for one in ones])
        value, pattern, load = _price(menus, usable, alpha, q, cells)
        pool.rounds += 1
        if float(alpha.sum()) / max(1.0, value) > cores * (1 + _TOL):
            return True  # Farley: every plan needs more than `cores` cores
        if value <= 1 + _TOL:
            return False  # the LP is solved, within the cores
        pool.patterns.append((load, pattern))
        add(pattern)
    return False


def _price(
    menus: Sequence[PatternMenu], usable: Sequence[dict[int, int]], alpha: np.ndarray, q: int, cells: int
) -> tuple[float, tuple[tuple[int, tuple[str, int], float], ...], float]:
    """The pattern of most value under `cells` grid cells of q units, where a part of an option with k parts
    is worth alpha_t / k and a piece of n samples of a table cut unevenly alpha_t n / N; its value, and the
    pattern with its load in units (pieces at the sizes of their lines)."""
    dp = np.zeros(cells + 1)
    index = np.arange(cells + 1)
    steps = []
    for t, m in enumerate(menus):
        new = dp.copy()
        pick = np.full(cells + 1, -1, dtype=np.int64)  # -1: nothing of table t; k >= 0: a part count; else line
        start = index.copy()  # the cell the pattern stood at before table t
        worth = alpha[t]
        if worth > 0:
            for parts, size in usable[t].items():
                s = size // q
                take = dp[: cells + 1 - s] + worth / parts
                better = take > new[s:]
                new[s:] = np.where(better, take, new[s:])
                pick[s:] = np.where(better, parts, pick[s:])
                start[s:] = np.where(better, index[: cells + 1 - s], start[s:])
            for k, (a, b) in enumerate(m.lines):
                # A piece from cell x to cell c holds n = ((c - x + 1) q - a) / b samples (at least 1): the
                # pattern's real sizes leave it at least that room (each was rounded down by under a cell).
                per_cell = worth * q / (b * m.samples)
                shift = max(0, math.ceil((a + b) / q - 1 - 1e-9))
                if shift > cells:
                    continue
                base = dp - per_cell * index
                running = np.maximum.accumulate(base)
                where = np.maximum.accumulate(np.where(base >= running, index, 0))
                take = running[: cells + 1 - shift] + worth * ((index[shift:] + 1) * q - a) / (b * m.samples)
                better = take > new[shift:]
                new[shift:] = np.where(better, take, new[shift:])
                pick[shift:] = np.where(better, -2 - k, pick[shift:])
                start[shift:] = np.where(better, where[: cells + 1 - shift], start[shift:])
        dp = new
        steps.append((pick, start))
    c, pattern, load = cells, [], 0.0
    for t in range(len(menus) - 1, -1, -1):
        pick, start = steps[t]
        chosen, x = int(pick[c]), int(start[c])
        if chosen >= 0:
            pattern.append((t, ("o", chosen), 1.0))
            load += usable[t][chosen]
        elif chosen <= -2:
            a, b = menus[t].lines[-2 - chosen]
            n = max(1.0, min(float(menus[t].samples), ((c - x + 1) * q - a) / b))
            pattern.append((t, ("f", -2 - chosen), n))
            load += a + b * n
        c = x
    return float(dp[cells]), tuple(reversed(pattern)), load
