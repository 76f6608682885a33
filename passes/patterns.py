"""A lower bound on the makespan from the configuration LP: column generation over core patterns, branched.

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

Where the local buffer can overflow (the parts' bytes, one part per table, exceed it), a pattern may also be
asked to fit it: the buffer becomes a second dimension of the grid (`BYTE_GRID` cells, bytes rounded down as
sizes are, each option's parts at their least bytes), and of a table's options with equal parts those that
no other beats in both size and bytes all stay. Time alone lets every part take its preloaded option, which
is the fastest; a core's buffer holds one or two of the large ones (on the Huawei-like workload it raises the
bound from 39.76 to 39.96 us busy). A round updates 16 times more cells, so it is asked for only where time
alone leaves a plan more than 1% above the bound.

A table that may be cut unevenly (`passes.balance`) also has lines a + b n under the time of a part of n
samples, for n in [1, N]. Cut into exactly k pieces with one line's strategy, it is one more option: k pieces
(a row counting them, = k y) holding N samples together (a row counting samples, >= N y). A piece of a
pattern holds as many samples as its room allows, fractions included (which only weakens the bound); in the
dynamic program its value is a running maximum along the grid. Two pieces of a table on one core are one
piece, so every plan is one of these options. Of two lines, one above the other on all of [1, N] is dropped:
its pieces are never larger.

The LP alone mixes options a plan cannot mix: half a table in 3 parts and half in 32 pieces, a table in 1.7
pieces that each fill a core. So T is refuted by branch and bound over the options: where the LP fits in
`cores`, the table whose y is most spread is restricted to the parts or the pieces (when it has both), else
to the part counts up to the mean its y gives and those above, and T is refuted when every branch is. Every
plan lies in one branch, so the bound stays valid; a branch the rounds run out on refutes nothing. Branching
pays where the LP spreads few tables (`MAX_SPREAD`) and is tried for a few branches (`MAX_NODES`) and rounds
(`ROUNDS_PER_MAKESPAN`) per makespan: a makespan it cannot refute soon it would not refute in a compile's time.

The master LP is over the grid's patterns (pieces included, with the room the grid gives them), so pricing
solves it exactly and the search does not stall on patterns a hair larger than those it has. Between the
LP's duals and the best ones found so far it prices at their mean first (Wentges' smoothing), which damps the
duals' swings from round to round.

The search tests makespans between the bound already known and a plan's makespan by bisection; every T it
refutes is impossible, so the result is valid whatever the search misses. The work is counted in pricing
rounds, not seconds, so the bound is the same on every run.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from ortools.linear_solver import pywraplp

GRID = 4000  # grid cells under T: sizes rounded down lose at most one cell each, about 0.025% of T
BYTE_GRID = 64  # cells of the local buffer, where it is a second dimension: bytes rounded down lose under one each
BYTE_TIME_GRID = 1000  # grid cells under T beside the buffer's: fewer than GRID, as the buffer's cells multiply them
BYTE_ROUNDS = 600  # pricing rounds of a search with the buffer
# With the buffer, each round first prices on a coarse grid with sizes and bytes rounded *up* (every pattern it
# finds fits for real, so it is one of the fine grid's too): 16 times fewer cells. Only where that finds no
# pattern worth adding does the round price on the fine grid, which alone gives Farley's bound.
COARSE_TIME_GRID = 250
COARSE_BYTE_GRID = 16
MAX_ROUNDS = 1500  # pricing rounds over the whole search
ROUNDS_PER_MAKESPAN = 100  # of them for one makespan, all its branches together
MAX_NODES = 9  # branches per makespan: a makespan the LP cannot refute soon would take a full tree
MAX_SPREAD = 3  # no branching where the first LP spreads more tables than this over options: too many to split
PRECISION = 1e-3  # the search stops when the bracket is this narrow (relative)
_TOL = 1e-7  # relative: Farley's bound must exceed the cores by this to refute T
_SPREAD = 1e-6  # a y below this is taken as 0 when choosing what to branch on
SMOOTHING = 0.5  # the weight of the best duals so far in the duals priced first (Wentges)

Key = tuple[str, int, int]  # ("o", parts, 0): an option's part; ("f", line, k): a piece of a cut in k pieces
Pattern = tuple[tuple[int, Key, float], ...]  # (table, key, amount): 1 per part, the samples of a piece


@dataclass(frozen=True)
class PatternMenu:
    """One table as the configuration LP sees it: `options` (parts, least part size) in integer units, with
    `part_bytes` the least local-buffer bytes a part of each holds (none: no part holds any), and `lines`
    (a, b) in units, each a line a + b n under the time of a part of n samples (n in [1, `samples`]) for a
    strategy the table may be cut unevenly with (none if it may not; its pieces count no bytes)."""

    options: tuple[tuple[int, int], ...]
    lines: tuple[tuple[float, float], ...] = ()
    samples: int = 1
    part_bytes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.part_bytes and len(self.part_bytes) != len(self.options):
            raise ValueError(f"part_bytes has {len(self.part_bytes)} entries for {len(self.options)} options")

    def held(self, option: int) -> int:
        return self.part_bytes[option] if self.part_bytes else 0


@dataclass(frozen=True)
class _Grid:
    """The dynamic program's grid under a makespan: `cells` cells of `q` units, and where the local buffer is a
    second dimension, `byte_cells` cells of it (`capacity` bytes); sizes and bytes are rounded down to it."""

    q: int
    cells: int
    capacity: int = 0
    byte_cells: int = 0

    @staticmethod
    def under(T: int, capacity: int | None) -> _Grid:
        q = max(1, T // (BYTE_TIME_GRID if capacity is not None else GRID))
        if capacity is None:
            return _Grid(q, T // q)
        return _Grid(q, T // q, capacity, min(BYTE_GRID, capacity))

    def coarse(self, T: int) -> _Grid | None:
        """The coarse grid under T priced first where the buffer is a dimension (None where it is not)."""
        if not self.byte_cells:
            return None
        q = max(1, T // COARSE_TIME_GRID)
        return _Grid(q, T // q, self.capacity, min(COARSE_BYTE_GRID, self.capacity))

    def bytes_cells(self, held: int) -> int:
        return held * self.byte_cells // self.capacity if self.byte_cells else 0

    def bytes_cells_up(self, held: int) -> int:
        return -(-held * self.byte_cells // self.capacity) if self.byte_cells else 0


@dataclass
class _Pool:
    """Patterns found at any makespan and in any branch, kept for the next: (load in units, pattern)."""

    patterns: list[tuple[float, Pattern]] = field(default_factory=list)
    rounds: int = 0
    nodes: int = 0  # linear programs solved for the makespan under test


# A branch: per table, the options it may take (every option where absent).
_Branch = dict[int, frozenset[Key]]


@dataclass(frozen=True)
class _Trial:
    """A makespan under test: `menus` on `cores` cores under T, on `grid`, with the patterns of `pool` and
    until it has counted `max_rounds` rounds."""

    menus: Sequence[PatternMenu]
    cores: int
    T: int
    grid: _Grid
    pool: _Pool
    max_rounds: int


def pattern_lower_bound(
    menus: Sequence[PatternMenu],
    cores: int,
    lo: int,
    hi: int,
    max_rounds: int | None = None,
    capacity_bytes: int | None = None,
) -> int:
    """The least makespan in [lo, hi] that the configuration LP does not refute, as far as `max_rounds`
    pricing rounds tell (lo when it refutes nothing, or there is nothing to bisect). With `capacity_bytes`,
    where the parts' bytes can overflow a core's local buffer, a pattern must also fit it: the buffer is a
    second dimension of the grid, and a round updates `BYTE_GRID` / 4 times more cells (`BYTE_ROUNDS` rounds
    unless told; else `MAX_ROUNDS`)."""
    if cores <= 0 or not menus or hi <= lo:
        return lo
    menus = [_undominated(m) for m in menus]
    held = sum(max(m.part_bytes, default=0) for m in menus)  # one part per table at most
    capacity = capacity_bytes if capacity_bytes is not None and held > capacity_bytes else None
    if max_rounds is None:
        max_rounds = MAX_ROUNDS if capacity is None else BYTE_ROUNDS
    pool = _Pool()
    while lo < hi and hi - lo > PRECISION * hi and pool.rounds < max_rounds:
        mid = (lo + hi) // 2
        pool.nodes = 0
        trial = _Trial(
            menus, cores, mid, _Grid.under(mid, capacity), pool, min(max_rounds, pool.rounds + ROUNDS_PER_MAKESPAN)
        )
        if _branch_refutes(trial, {}):
            lo = mid + 1
        else:
            hi = mid
    return lo


def _undominated(menu: PatternMenu) -> PatternMenu:
    """The menu without lines that lie on or above another of its lines at both ends of [1, N]."""
    n = menu.samples
    lines = sorted(set(menu.lines))

    def above(line: tuple[float, float], other: tuple[float, float]) -> bool:
        return other != line and all(other[0] + other[1] * x <= line[0] + line[1] * x for x in (1, n))

    return dataclasses.replace(menu, lines=tuple(ln for ln in lines if not any(above(ln, o) for o in lines)))


def _branch_refutes(trial: _Trial, branch: _Branch) -> bool:
    """Whether no plan in `branch` has makespan <= T: the LP refutes it, or it refutes both halves of a split
    of the table whose y is most spread (depth first, so a branch it cannot refute ends the search)."""
    trial.pool.nodes += 1
    refuted, y = _refutes(trial, branch)
    if refuted or y is None or trial.pool.nodes >= MAX_NODES:
        return refuted
    spread = {t: w for t, w in y.items() if sum(v > _SPREAD for v in w.values()) > 1}
    if not spread or (not branch and len(spread) > MAX_SPREAD):
        return False  # every table takes one option (the LP fits them in the cores), or too many tables do not
    t = max(sorted(spread), key=lambda t: 1.0 - max(spread[t].values()))
    return all(_branch_refutes(trial, {**branch, t: half}) for half in _halves(spread[t]))


def _halves(weights: dict[Key, float]) -> tuple[frozenset[Key], frozenset[Key]]:
    """A table's options split in two, each with some the LP uses: parts against pieces where it uses both,
    else the counts up to the mean its y gives against those above, else (one count) by line."""
    used = {key: v for key, v in weights.items() if v > _SPREAD}
    counts = {key: key[1] if key[0] == "o" else key[2] for key in weights}
    if len({key[0] for key in used}) > 1:
        first = frozenset(key for key in weights if key[0] == "o")
    elif len({counts[key] for key in used}) > 1:
        mean = sum(v * counts[key] for key, v in used.items()) / sum(used.values())
        cut = max(min(counts[key] for key in used), math.floor(mean))
        first = frozenset(key for key in weights if counts[key] <= cut)
    else:
        line = min(key[1] for key in used)
        first = frozenset(key for key in weights if key[0] == "f" and key[1] <= line)
    return first, frozenset(weights) - first


def _refutes(trial: _Trial, branch: _Branch) -> tuple[bool, dict[int, dict[Key, float]] | None]:
    """Whether no plan in `branch` has makespan <= T, by column generation; when not refuted, each table's y
    where the LP was solved within the cores (None when undecided within the rounds)."""
    menus, cores, T, grid, pool, max_rounds = (
        trial.menus,
        trial.cores,
        trial.T,
        trial.grid,
        trial.pool,
        trial.max_rounds,
    )
    q, cells = grid.q, grid.cells
    # Per table, per part count, its sizes and byte cells that no other option of that count beats in both
    # (prices favour no option of a count over another, so the least size where bytes do not count); and the
    # cuts in k pieces whose largest piece (at least N / k samples) fits under T.
    usable: list[dict[int, list[tuple[int, int]]]] = []
    cuts: list[list[Key]] = []
    coarse = grid.coarse(T)
    rough: list[dict[int, list[tuple[int, int]]]] = []  # as `usable` on the coarse grid, rounded up
    for t, m in enumerate(menus):
        allowed = branch.get(t)
        best: dict[int, list[tuple[int, int]]] = {}
        up: dict[int, list[tuple[int, int]]] = {}
        for o, (parts, size) in enumerate(m.options):
            held = grid.bytes_cells(m.held(o))
            if size <= T and held <= grid.byte_cells and (allowed is None or ("o", parts, 0) in allowed):
                best.setdefault(parts, []).append((size, held))
                if coarse is not None and m.held(o) <= coarse.capacity:
                    up.setdefault(parts, []).append((-(-size // coarse.q) * coarse.q, coarse.bytes_cells_up(m.held(o))))
        best = {parts: _pareto(sizes) for parts, sizes in best.items()}
        rough.append({parts: _pareto(sizes) for parts, sizes in up.items()})
        pieces = [
            ("f", line, k)
            for line, (a, b) in enumerate(m.lines)
            for k in range(1, min(cores, m.samples) + 1)
            if a + b * math.ceil(m.samples / k) <= T and (allowed is None or ("f", line, k) in allowed)
        ]
        if not best and not pieces:
            return True, None  # some table fits under T in no way
        usable.append(best)
        cuts.append(pieces)
    solver = pywraplp.Solver.CreateSolver("GLOP")
    ones, cover, count, ys = [], {}, {}, {}
    for t, m in enumerate(menus):
        one = solver.Constraint(1, 1)
        ones.append(one)
        keys: list[tuple[Key, int]] = [(("o", parts, 0), parts) for parts in usable[t]]
        keys += [(key, m.samples) for key in cuts[t]]
        for key, need in keys:
            y = solver.NumVar(0, solver.infinity(), "")  # no upper bound: y <= 1 would add degenerate duals
            one.SetCoefficient(y, 1)
            row = solver.Constraint(0, solver.infinity())
            row.SetCoefficient(y, -need)
            cover[t, key] = row
            ys[t, key] = y
            if key[0] == "f":
                exact = solver.Constraint(0, 0)  # exactly k pieces
                exact.SetCoefficient(y, -key[2])
                count[t, key] = exact
    objective = solver.Objective()
    objective.SetMinimization()

    def add(pattern: Pattern) -> None:
        var = solver.NumVar(0, solver.infinity(), "")
        objective.SetCoefficient(var, 1)
        for t, key, amount in pattern:
            cover[t, key].SetCoefficient(var, amount)
            if key[0] == "f":
                count[t, key].SetCoefficient(var, 1)

    for t, key in cover:  # every part alone on a core: the LP is feasible from the start
        if key[0] == "o":
            add(((t, key, 1.0),))
        else:  # a piece alone holds what the grid gives it, as in `_price`
            a, b = menus[t].lines[key[1]]
            add(((t, key, min(float(menus[t].samples), ((cells + 1) * q - a) / b)),))
    for load, pattern in pool.patterns:
        if load <= T and all((t, key) in cover for t, key, _ in pattern):
            add(pattern)
    centre: tuple[float, np.ndarray, list[list[tuple[float, float]]]] | None = None  # best duals: bound, alpha, prices
    while pool.rounds < max_rounds:
        if solver.Solve() != pywraplp.Solver.OPTIMAL:
            return False, None
        solved = objective.Value() <= cores * (1 + _TOL)
        if not solved:
            alpha = np.array([one.dual_value() for one in ones])
            prices = _piece_prices(menus, cuts, alpha, cover, count)
            # Price at duals between the best found so far and the LP's (Wentges' smoothing): the LP's own
            # duals swing from round to round, and a pattern found between them is more often one it needs.
            tries = [(alpha, prices)]
            if centre is not None:
                tries.insert(0, _mixed(centre[1], centre[2], alpha, prices, SMOOTHING))
            if coarse is not None:
                _, pattern, load = _price(menus, rough, [[] for _ in menus], *tries[0], coarse)
                pool.rounds += 1
                if _worth(pattern, alpha, prices, cuts) > 1 + _TOL:
                    pool.patterns.append((load, pattern))
                    add(pattern)
                    continue
            for duals in tries:
                value, pattern, load = _price(menus, usable, cuts, *duals, grid)
                pool.rounds += 1
                bound = float(duals[0].sum()) / max(1.0, value)
                if bound > cores * (1 + _TOL):
                    return True, None  # Farley: every plan in the branch needs more than `cores` cores
                if centre is None or bound > centre[0]:
                    centre = (bound, *duals)
                if _worth(pattern, alpha, prices, cuts) > 1 + _TOL:
                    pool.patterns.append((load, pattern))
                    add(pattern)
                    break
            else:
                solved = True  # no pattern is worth more than 1 at the LP's duals: it is solved, within the cores
        if solved:
            weights: dict[int, dict[Key, float]] = {}
            for (t, key), y in ys.items():
                weights.setdefault(t, {})[key] = y.solution_value()
            return False, weights
    return False, None


def _mixed(
    alpha: np.ndarray,
    prices: list[list[tuple[float, float]]],
    alpha2: np.ndarray,
    prices2: list[list[tuple[float, float]]],
    w: float,
) -> tuple[np.ndarray, list[list[tuple[float, float]]]]:
    """w of the first duals and 1 - w of the second: feasible for every y as both are (the rows are linear)."""
    mixed = [
        [(w * p[0] + (1 - w) * p2[0], w * p[1] + (1 - w) * p2[1]) for p, p2 in zip(row, row2, strict=True)]
        for row, row2 in zip(prices, prices2, strict=True)
    ]
    return w * alpha + (1 - w) * alpha2, mixed


def _worth(
    pattern: Pattern, alpha: np.ndarray, prices: list[list[tuple[float, float]]], cuts: Sequence[Sequence[Key]]
) -> float:
    """The pattern's value at the duals `alpha` and `prices` (parts at alpha_t / k, pieces at their prices)."""
    total = 0.0
    for t, key, amount in pattern:
        if key[0] == "o":
            total += alpha[t] / key[1]
        else:
            per_sample, per_piece = prices[t][cuts[t].index(key)]
            total += per_sample * amount + per_piece
    return total


def _piece_prices(
    menus: Sequence[PatternMenu],
    cuts: Sequence[Sequence[Key]],
    alpha: np.ndarray,
    cover: dict[tuple[int, Key], pywraplp.Constraint],
    count: dict[tuple[int, Key], pywraplp.Constraint],
) -> list[list[tuple[float, float]]]:
    """Per table, per cut in k pieces, (per sample, per piece): the LP's dual of its samples row, and the least
    per-piece price its y allows (N per-sample + k per-piece >= alpha_t). No higher than the LP's duals, it
    finds no pattern they would not, and it keeps Farley's bound valid however the solver rounded."""
    prices = []
    for t, m in enumerate(menus):
        row = []
        for key in cuts[t]:
            per_sample = max(0.0, cover[t, key].dual_value())
            row.append((per_sample, (alpha[t] - m.samples * per_sample) / key[2]))
        prices.append(row)
    return prices


def _envelope(slopes: np.ndarray, offsets: np.ndarray, lo: float, hi: float) -> list[int]:
    """The lines slope n + offset that are highest somewhere on [lo, hi] (of equal ones, the first): only their
    pieces can be worth most."""
    with np.errstate(divide="ignore", invalid="ignore"):
        crossings = (offsets[None, :] - offsets[:, None]) / (slopes[:, None] - slopes[None, :])
    inside = crossings[np.isfinite(crossings) & (crossings > lo) & (crossings < hi)]
    at = np.concatenate(([lo, hi], inside))
    values = slopes[:, None] * at[None, :] + offsets[:, None]
    return sorted(set(values.argmax(axis=0).tolist()))


def _pareto(sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (size, bytes) pairs that no other pair is at or below in both, by size."""
    front: list[tuple[int, int]] = []
    for size, held in sorted(set(sizes)):
        if not front or held < front[-1][1]:
            front.append((size, held))
    return front


def _price(
    menus: Sequence[PatternMenu],
    usable: Sequence[dict[int, list[tuple[int, int]]]],
    cuts: Sequence[Sequence[Key]],
    alpha: np.ndarray,
    prices: Sequence[Sequence[tuple[float, float]]],
    grid: _Grid,
) -> tuple[float, Pattern, float]:
    """The pattern of most value within the grid (`grid.cells` cells of q units, and `grid.byte_cells` of the
    buffer), where a part of an option with k parts is worth alpha_t / k and a piece of n samples per-sample
    n + per-piece; an upper bound on its value, and the pattern with its load in units (pieces at the sizes of
    their lines)."""
    q, cells, rows = grid.q, grid.cells, grid.byte_cells + 1
    dp = np.zeros((cells + 1, rows))  # the best value within (time cells, byte cells)
    index = np.arange(cells + 1)
    steps = []  # per table: the best values before it, its (parts, size, byte cells), and its pieces' picks
    for t, m in enumerate(menus):
        new = dp.copy()
        sizes = [(parts, size, held) for parts, front in usable[t].items() for size, held in front]
        worth = alpha[t]
        if worth > 0:
            for parts, size, held in sizes:
                s = size // q
                np.maximum(new[s:, held:], dp[: cells + 1 - s, : rows - held] + worth / parts, out=new[s:, held:])
        pieces = None  # where a piece is best: -2 - its cut's index, and the time cell it starts at
        for line, (a, b) in enumerate(m.lines):
            # A piece from cell x to cell c holds n = ((c - x + 1) q - a) / b samples (at least 1): the
            # pattern's real sizes leave it at least that room (each was rounded down by under a cell). Its
            # value is at most per-sample min(n, N) + per-piece, so at most both of: the running maximum of
            # dp[x] - per-sample x q / b, plus per-sample ((c + 1) q - a) / b; and dp[c] + per-sample N.
            # Pieces hold no bytes: they stay in their byte cell.
            which = [i for i, key in enumerate(cuts[t]) if key[1] == line]
            shift = max(0, math.ceil((a + b) / q - 1 - 1e-9))
            if not which or shift > cells:
                continue
            if pieces is None:
                pieces = (np.full(dp.shape, -1, dtype=np.int64), np.zeros(dp.shape, dtype=np.int64))
            slopes = np.array([prices[t][i][0] for i in which])
            offsets = np.array([prices[t][i][1] for i in which])
            keep = _envelope(slopes, offsets, 1.0, float(m.samples))
            which = [which[i] for i in keep]
            per_sample, per_piece = slopes[keep][:, None, None], offsets[keep][:, None, None]
            base = dp[None, :, :] - per_sample * (q / b) * index[None, :, None]
            running = np.maximum.accumulate(base, axis=1)
            where = np.maximum.accumulate(np.where(base >= running, index[None, :, None], 0), axis=1)
            room = ((index[shift:] + 1) * q - a) / b
            take = np.minimum(
                running[:, : cells + 1 - shift] + per_sample * room[None, :, None],
                dp[None, shift:] + per_sample * m.samples,
            )
            take += per_piece
            top = take.argmax(axis=0)[None]
            value = np.take_along_axis(take, top, axis=0)[0]
            better = value > new[shift:]
            new[shift:] = np.where(better, value, new[shift:])
            pick, start = pieces
            pick[shift:] = np.where(better, -2 - np.array(which)[top[0]], pick[shift:])
            start[shift:] = np.where(
                better, np.take_along_axis(where[:, : cells + 1 - shift], top, axis=0)[0], start[shift:]
            )
        steps.append((dp, sizes, pieces))
        dp = new
    # Walk back: where a table raised the best value, one of its parts (or pieces) accounts for the rise.
    c, h, pattern, load = cells, rows - 1, [], 0.0
    here = dp[c, h]
    for t in range(len(menus) - 1, -1, -1):
        before, sizes, pieces = steps[t]
        if pieces is not None and pieces[0][c, h] <= -2:
            key = cuts[t][-2 - int(pieces[0][c, h])]
            x = int(pieces[1][c, h])
            a, b = menus[t].lines[key[1]]
            n = max(1.0, min(float(menus[t].samples), ((c - x + 1) * q - a) / b))
            pattern.append((t, key, n))
            load += a + b * n
            c, here = x, before[x, h]
            continue
        if here <= before[c, h]:
            continue
        for parts, size, held in sizes:
            s = size // q
            if s <= c and held <= h and abs(before[c - s, h - held] + alpha[t] / parts - here) <= 1e-12 * here:
                pattern.append((t, ("o", parts, 0), 1.0))
                load += size
                c, h, here = c - s, h - held, before[c - s, h - held]
                break
    return float(dp[cells, rows - 1]), tuple(reversed(pattern)), load
