"""A plan from the configuration LP: diving over core patterns (price and dive).

Where CP-SAT cannot improve the greedy plan (parts that fill a third of a core or more, local buffers nearly
full), the configuration LP of `passes.patterns` still knows which parts go well together: its patterns are
whole cores. This module turns it into plans. For a makespan T:

- a pattern is a set of parts, at most one of each table, whose sizes sum to at most T and whose local bytes
  fit the buffer. Patterns are generated (Gilmore and Gomory) by a dynamic program over a grid of T and of the
  buffer, with sizes and bytes rounded *up* to the grid: every pattern found fits for real (the bound of
  `passes.patterns` rounds down instead, to stay a bound). A part of an option with k parts is priced at
  alpha_t / k, as there;
- diving: every pattern the LP uses whole is fixed on floor(lambda) cores at once, which fixes its tables'
  options and lowers what they still need, and the LP of what remains is solved again; where it uses none
  whole, its most used pattern is fixed on one core. Depth first, with up to `WIDTH` single patterns tried
  per level after that: a level whose LP needs more cores than are left is abandoned. When nothing remains,
  the fixed patterns are the plan, one per core.

The makespans tried are bisected between a bound and the plan to beat; a dive that fails says nothing about
T (it is a heuristic), it only moves the bisection up. The work is counted in pricing rounds, so the plan is
the same on every run.

The `pack` pass runs both searches where the plan is still more than `PACK_GAP` from its bound after
`assign-cores` and `balance`: first the configuration LP with the local buffers in its patterns (a higher
bound, `passes.patterns`), then the dive from that bound. It comes last because it costs seconds, and uneven
cuts (`balance`) often close the gap for less.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np
from ortools.linear_solver import pywraplp

from embmap.ir.module import Module
from embmap.passes.assignment import TIME_UNIT_S, Assignment, AssignmentProblem, Choice, held_bytes
from embmap.passes.balance import line_pieces, splittable_tables, uneven_lines
from embmap.passes.base import ModulePass, register
from embmap.passes.placement import build_items, configuration_bound_s, cpsat_ran, items_makespan_s, with_plan

# Where a plan is more than this above its bound (start-up included; the bar a plan is held to), `pack` runs:
# up to tens of seconds on a tight packing, so not for plans already this close.
PACK_GAP = 0.01

GRID = 1000  # cells under T (or T of them, one unit each, if fewer): parts are rounded up by under a cell
BYTE_GRID = 32  # cells of the local buffer (or one per byte, if fewer), where the buffers can bind
WIDTH = 3  # patterns tried per level of the dive
MAX_ROUNDS = 1000  # pricing rounds over the whole search
ROUNDS_PER_LP = 100  # a node whose LP is not solved in these is abandoned
ROUNDS_PER_MAKESPAN = 300  # a dive that finds no plan in these is abandoned
PRECISION = 1e-3  # the bisection stops when the bracket is this narrow (relative)
MAX_CELLS = 60_000_000  # grid cells the dynamic program may update per round (options x cells): a bigger
# problem is left to the other searches
_TOL = 1e-7

Item = tuple[int, int]  # (table, option)
Pattern = tuple[Item, ...]  # sorted by table: at most one part of each


@dataclass
class _Search:
    problem: AssignmentProblem
    T: int
    max_rounds: int
    pool: set[Pattern]
    rounds: int = 0
    grid: dict[Item, tuple[int, int]] = field(default_factory=dict)  # cells of time and of bytes per part
    cells: int = 0
    byte_cells: int = 0


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
        search = _Search(problem, T, min(ROUNDS_PER_MAKESPAN, max_rounds - rounds), pool)
        plan = _dive(search)
        rounds += search.rounds
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
    search.cells = min(GRID, T)
    search.byte_cells = min(BYTE_GRID, p.capacity_bytes) if binds else 0
    for t, opts in enumerate(p.options):
        for o, d in enumerate(opts):
            if d.part_units > T or (binds and d.part_bytes > p.capacity_bytes):
                continue
            b = -(-d.part_bytes * search.byte_cells // p.capacity_bytes) if binds and d.part_bytes else 0
            search.grid[t, o] = (-(-d.part_units * search.cells // T), b)  # integer ceilings
    if any(not any((t, o) in search.grid for o in range(len(opts))) for t, opts in enumerate(p.options)):
        return None  # some table fits under T in no way
    chosen = _node(search, {}, p.cores)
    if chosen is None:
        return None
    cores: dict[int, list[int]] = {}
    option: dict[int, int] = {}
    for c, pattern in enumerate(chosen):
        for t, o in pattern:
            cores.setdefault(t, []).append(c)
            option[t] = o
    return Assignment(tuple(Choice(option[t], tuple(cores[t])) for t in range(len(p.options))))


def _node(search: _Search, fixed: dict[int, tuple[int, int]], cores: int) -> list[Pattern] | None:
    """Patterns, one per core, for what `fixed` (table -> (option, parts still to place)) and the free tables
    still need, on `cores` cores; None where the dive finds none."""
    used = _solve(search, fixed, cores)
    if used is None:
        return None
    if not used:
        return []
    p = search.problem
    ranked = sorted(used.items(), key=lambda kv: (-kv[1], -sum(p.options[t][o].part_units for t, o in kv[0]), kv[0]))
    # First every pattern the LP uses whole at once (floor(lambda) copies each), then one at a time.
    whole = [(pattern, math.floor(value + _TOL)) for pattern, value in ranked if value >= 1 - _TOL]
    tries = [whole] if len(whole) > 1 else []
    tries += [[(pattern, max(1, math.floor(value + _TOL)))] for pattern, value in ranked[:WIDTH]]
    for fixes in tries:
        step = _fix(p, fixed, fixes)
        if step is None:
            continue
        rest = _node(search, step[0], cores - len(step[1]))
        if rest is not None:
            return step[1] + rest
        if search.rounds >= search.max_rounds:
            return None
    return None


def _fix(
    p: AssignmentProblem, fixed: dict[int, tuple[int, int]], fixes: list[tuple[Pattern, int]]
) -> tuple[dict[int, tuple[int, int]], list[Pattern]] | None:
    """`fixed` after placing each pattern of `fixes` on up to its count of cores, as far as the parts still to
    place allow (None if they allow none); with the patterns placed, one per core."""
    fixed = dict(fixed)
    placed: list[Pattern] = []
    for pattern, count in fixes:
        if any(t in fixed and fixed[t][0] != o for t, o in pattern):
            continue  # an earlier pattern chose another option of one of its tables
        left = {t: fixed[t][1] if t in fixed else p.options[t][o].parts for t, o in pattern}
        k = min(count, *left.values())
        if k <= 0:
            continue
        fixed.update({t: (o, left[t] - k) for t, o in pattern})
        placed += [pattern] * k
    return (fixed, placed) if placed else None


def _solve(search: _Search, fixed: dict[int, tuple[int, int]], cores: int) -> dict[Pattern, float] | None:
    """The residual LP by column generation: the patterns it uses (lambda > 0), or None when it needs more
    than `cores` cores (or is not solved within the rounds)."""
    p = search.problem
    items = {t: [o for o in range(len(opts)) if (t, o) in search.grid] for t, opts in enumerate(p.options)}
    solver = pywraplp.Solver.CreateSolver("GLOP")
    objective = solver.Objective()
    objective.SetMinimization()
    ones: dict[int, pywraplp.Constraint] = {}
    cover: dict[Item, pywraplp.Constraint] = {}
    for t in items:
        if t in fixed:
            o, left = fixed[t]
            if left > 0:
                cover[t, o] = solver.Constraint(left, solver.infinity())
            continue
        ones[t] = solver.Constraint(1, 1)
        for o in items[t]:
            y = solver.NumVar(0, solver.infinity(), "")
            ones[t].SetCoefficient(y, 1)
            cover[t, o] = solver.Constraint(0, solver.infinity())
            cover[t, o].SetCoefficient(y, -p.options[t][o].parts)
    columns: dict[Pattern, pywraplp.Variable] = {}

    def add(pattern: Pattern) -> None:
        var = solver.NumVar(0, solver.infinity(), "")
        objective.SetCoefficient(var, 1)
        for item in pattern:
            cover[item].SetCoefficient(var, 1)
        columns[pattern] = var

    for item in cover:
        add((item,))
    for pattern in sorted(search.pool):
        if pattern not in columns and all(item in cover for item in pattern) and _fits(search, pattern):
            add(pattern)
    for _ in range(ROUNDS_PER_LP):
        if search.rounds >= search.max_rounds or solver.Solve() != pywraplp.Solver.OPTIMAL:
            return None
        prices: dict[Item, float] = {}
        total = 0.0
        for (t, o), row in cover.items():
            if t in fixed:
                prices[t, o] = max(0.0, row.dual_value())
                total += prices[t, o] * fixed[t][1]
            else:
                prices[t, o] = max(0.0, ones[t].dual_value()) / p.options[t][o].parts
        total += sum(one.dual_value() for one in ones.values())
        value, pattern = _price(search, prices)
        search.rounds += 1
        if total / max(1.0, value) > cores * (1 + _TOL):
            return None  # Farley: more than `cores` cores are needed
        if value <= 1 + _TOL or pattern in columns:  # the LP is solved
            if objective.Value() > cores * (1 + _TOL):
                return None
            return {pattern: var.solution_value() for pattern, var in columns.items() if var.solution_value() > _TOL}
        search.pool.add(pattern)
        add(pattern)
    return None


def _fits(search: _Search, pattern: Pattern) -> bool:
    """Whether a pattern (found under another makespan) fits the grid of this one."""
    cells = [search.grid[item] for item in pattern]
    return sum(a for a, _ in cells) <= search.cells and sum(b for _, b in cells) <= search.byte_cells


def _price(search: _Search, prices: dict[Item, float]) -> tuple[float, Pattern]:
    """The pattern of most value (at most one part per table, its cells within the grid of T and of the
    buffer) and its value."""
    by_table: dict[int, list[tuple[int, float]]] = {}
    for (t, o), value in prices.items():
        if value > 0:
            by_table.setdefault(t, []).append((o, value))
    rows, cols = search.cells + 1, search.byte_cells + 1
    dp = np.zeros((rows, cols), dtype=np.float32)  # single precision halves the memory traffic
    steps: list[tuple[int, np.ndarray]] = []  # the table, and the best values before it
    for t in sorted(by_table):
        new = dp.copy()
        for o, value in by_table[t]:
            a, b = search.grid[t, o]
            np.maximum(new[a:, b:], dp[: rows - a, : cols - b] + value, out=new[a:, b:])
        steps.append((t, dp))
        dp = new
    # Walk back: where a table raised the best value, one of its parts accounts for the rise.
    a, b, pattern, best = search.cells, search.byte_cells, [], dp[search.cells, search.byte_cells]
    here = best
    for t, before in reversed(steps):
        if here <= before[a, b] + 1e-12:
            continue
        for o, value in by_table[t]:
            da, db = search.grid[t, o]
            if da <= a and db <= b and abs(before[a - da, b - db] + value - here) <= 1e-5 * max(1.0, here):
                pattern.append((t, o))
                a, b, here = a - da, b - db, before[a - da, b - db]
                break
    return float(best), tuple(sorted(pattern))


@register
@dataclasses.dataclass(frozen=True)
class PackPass(ModulePass):
    """Where the plan is still more than `PACK_GAP` above its bound (start-up included) after CP-SAT and
    `balance`: the configuration LP with the local buffers in its patterns for a higher bound, then the
    pattern dive for a faster plan (equal cuts), which replaces the plan where it is faster in seconds. The
    bound covers uneven cuts where the plan has them. Not when re-planning (the dive would move every table),
    nor where CP-SAT did not run."""

    name = "pack"
    summary = "where a plan is over 1% from its bound: configuration LP with the local buffers, pattern dive"
    requires = ("items", "options")
    ensures = ("items",)

    def apply(self, module: Module) -> Module:
        assert module.items is not None and module.lower_bound_s is not None
        report = module.solver
        if report is None or not cpsat_ran(report) or report.gap <= PACK_GAP or module.previous is not None:
            return module
        start = module.cost_profile.core_start_s
        busy = items_makespan_s(module.items)
        lines = line_pieces(uneven_lines(module, splittable_tables(module))) if cut_unevenly(module) else None
        bound = configuration_bound_s(module, module.lower_bound_s - start, busy, lines, buffers=True)
        problem = AssignmentProblem.from_module(module)
        # A plan of at most `goal` units (seconds: at most the units) is within PACK_GAP of the bound.
        goal = math.floor(((bound + start) / (1 - PACK_GAP) - start) / TIME_UNIT_S)
        packed = pack(problem, math.floor(bound / TIME_UNIT_S), math.ceil(busy / TIME_UNIT_S) + 1, goal=goal)
        if packed is None:
            return with_plan(module, module.items, bound)
        candidate = build_items(module, packed)
        items = candidate if items_makespan_s(candidate) < busy else module.items
        return with_plan(module, items, bound, packed_objective_s=packed.makespan(problem) * TIME_UNIT_S + start)


def cut_unevenly(module: Module) -> bool:
    """Whether some table's sample cuts differ by more than one sample (`balance` re-cut them)."""
    assert module.items is not None
    sizes: dict[str, list[int]] = {}
    for it in module.items:
        if it.samples != (0, module.workload.batch_size):
            sizes.setdefault(it.table, []).append(it.samples[1] - it.samples[0])
    return any(max(n) - min(n) > 1 for n in sizes.values())
