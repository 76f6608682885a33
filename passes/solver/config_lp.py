"""The configuration LP by column generation: one engine, for a lower bound (`bounds.pattern_lower_bound`) and
for a plan (`dive.pack`).

A pattern is what one core may hold under a makespan T; T needs at least as many cores as the LP
`min sum_p lambda_p` covering every table's chosen option with patterns. Patterns are priced by a dynamic
program over a grid of T (and of the local buffer) whose `Rounding` is the one difference between the uses:
DOWN for a bound (every real pattern is the grid's: a relaxation), UP for a plan (every grid pattern fits).
The lowest duals alpha_t / parts(o) and Farley's bound make it converge in tens of rounds; the work is counted
in rounds, so every run gives the same answer. Derivation: docs/design.md, "Lower bound".
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from ortools.linear_solver import pywraplp

TOL = 1e-7  # relative: Farley's bound must exceed the cores by this to refute T, a pattern be worth this over 1

Key = tuple[str, int, int]  # ("o", n, 0): a part of option n (or of n parts, as the caller keys its options);
# ("f", line, k): a piece of a table cut in k pieces along its line `line`
Entry = tuple[int, Key, float]  # (table, key, amount): 1 per part, the samples of a piece
Pattern = tuple[Entry, ...]  # by table, at most one entry each


class Rounding(enum.Enum):
    DOWN = "down"  # a bound: every real pattern is one of the grid's
    UP = "up"  # a plan: every pattern of the grid fits for real


@dataclass(frozen=True)
class Grid:
    """The dynamic program's grid under a makespan: `cells` cells over `span` units (span <= T), and where the
    local buffer is a dimension (`capacity` bytes), `byte_cells` cells of it; sizes and bytes are rounded in the
    grid's direction."""

    span: int
    cells: int
    rounding: Rounding
    capacity: int | None = None
    byte_cells: int = 0

    @staticmethod
    def whole_units(T: int, cells: int, rounding: Rounding, capacity: int | None = None, byte_cells: int = 0) -> Grid:
        """About `cells` cells of q whole units each under T (q = T // cells, at least 1)."""
        q = max(1, T // cells)
        return Grid(T // q * q, T // q, rounding, capacity, 0 if capacity is None else min(byte_cells, capacity))

    @staticmethod
    def spread(T: int, cells: int, rounding: Rounding, capacity: int | None = None, byte_cells: int = 0) -> Grid:
        """`cells` cells spread over T (one unit each, if T has fewer)."""
        return Grid(T, min(cells, T), rounding, capacity, 0 if capacity is None else min(byte_cells, capacity))

    @property
    def unit(self) -> int:
        """Units per cell, on a grid of whole units."""
        return self.span // self.cells if self.cells else 1

    def time(self, units: int) -> int:
        if not self.span:  # T = 0: only parts of no time fit
            return 0
        if self.rounding is Rounding.DOWN:
            return units * self.cells // self.span
        return -(-units * self.cells // self.span)

    def holds(self, held: int) -> bool:
        """Whether a part holding `held` local bytes may be in a pattern at all."""
        if self.capacity is None:
            return True
        if self.rounding is Rounding.DOWN:
            return self.bytes(held) <= self.byte_cells
        return held <= self.capacity

    def bytes(self, held: int) -> int:
        if not self.byte_cells or not held:
            return 0
        assert self.capacity is not None
        if self.rounding is Rounding.DOWN:
            return held * self.byte_cells // self.capacity
        return -(-held * self.byte_cells // self.capacity)


class Part(NamedTuple):
    """A part a pattern may hold: of the option `key` with `parts` parts (a free table's dual prices each at
    alpha / parts), `cells` cells of time and `byte_cells` of the buffer, `units` long (for a pattern's load)."""

    key: Key
    parts: int
    cells: int
    byte_cells: int
    units: float


@dataclass(frozen=True)
class Space:
    """What the patterns at one makespan are made of: per table its parts, on `grid`; and for a bound that
    covers uneven cuts, per table its lines (a, b) in units (a piece of n samples takes a + b n), the cuts
    ("f", line, k) it may take and its samples."""

    grid: Grid
    parts: Sequence[Sequence[Part]]
    lines: Sequence[Sequence[tuple[float, float]]] = ()
    cuts: Sequence[Sequence[Key]] = ()
    samples: Sequence[int] = ()


class Precision(NamedTuple):
    """The dynamic program's numbers, and how walking back reads them: a rise of at most `negligible` is no
    part's (rounding residue), and a part accounts for a rise within `tolerance` of its value, relative to the
    value (but at least `floor`)."""

    dtype: type[np.floating]
    tolerance: float
    negligible: float
    floor: float


DOUBLE = Precision(np.float64, 1e-12, 0.0, 0.0)
SINGLE = Precision(np.float32, 1e-5, 1e-12, 1.0)  # half the memory traffic of DOUBLE, for a dive's many rounds


@dataclass(frozen=True)
class Duals:
    """Prices from the LP's duals: `alpha` per table (its row's dual; 0 for a table fixed to an option), `fixed`
    per fixed option (the price of a part, its row's dual, at least 0), `pieces` per table and cut (per sample,
    per piece), and `total`, Farley's numerator (the duals' objective)."""

    alpha: np.ndarray
    fixed: Mapping[tuple[int, Key], float]
    pieces: Sequence[Sequence[tuple[float, float]]]
    total: float

    def part(self, t: int, part: Part) -> float:
        price = self.fixed.get((t, part.key))
        return price if price is not None else float(max(0.0, self.alpha[t])) / part.parts

    def mixed(self, other: Duals, w: float) -> Duals:
        """w of these duals and 1 - w of `other`: feasible for every y as both are (the rows are linear). For a
        bound's duals, which price no fixed options."""
        assert not self.fixed and not other.fixed
        pieces = [
            [(w * p[0] + (1 - w) * p2[0], w * p[1] + (1 - w) * p2[1]) for p, p2 in zip(row, row2, strict=True)]
            for row, row2 in zip(self.pieces, other.pieces, strict=True)
        ]
        alpha = w * self.alpha + (1 - w) * other.alpha
        return Duals(alpha, {}, pieces, float(alpha.sum()))


class MasterLP:
    """The restricted configuration LP (GLOP): per free table a row (it takes one option), per option or cut a
    row covering its parts (the parts still to place, for an option already fixed), per cut a row counting its
    pieces, and a column per pattern."""

    def __init__(self, tables: int) -> None:
        self.solver = pywraplp.Solver.CreateSolver("GLOP")
        self.objective = self.solver.Objective()
        self.objective.SetMinimization()
        self.tables = tables
        self.ones: dict[int, pywraplp.Constraint] = {}
        self.cover: dict[tuple[int, Key], pywraplp.Constraint] = {}
        self.count: dict[tuple[int, Key], pywraplp.Constraint] = {}
        self.ys: dict[tuple[int, Key], pywraplp.Variable] = {}
        self.parts: dict[tuple[int, Key], int] = {}
        self.left: dict[tuple[int, Key], int] = {}  # fixed options: parts still to place
        self.columns: dict[Pattern, pywraplp.Variable] = {}

    def choose(self, t: int, options: Sequence[tuple[Key, int, int]]) -> None:
        """Table t takes one of `options`: (key, parts, what it must cover: its parts, or a cut's samples)."""
        one = self.solver.Constraint(1, 1)
        self.ones[t] = one
        for key, parts, need in options:
            y = self.solver.NumVar(0, self.solver.infinity(), "")  # no upper bound: y <= 1 adds degenerate duals
            one.SetCoefficient(y, 1)
            row = self.solver.Constraint(0, self.solver.infinity())
            row.SetCoefficient(y, -need)
            self.cover[t, key], self.ys[t, key], self.parts[t, key] = row, y, parts
            if key[0] == "f":
                exact = self.solver.Constraint(0, 0)  # exactly k pieces
                exact.SetCoefficient(y, -key[2])
                self.count[t, key] = exact

    def fix(self, t: int, key: Key, parts: int, left: int) -> None:
        """Table t is fixed to option `key` (of `parts` parts), `left` of them still to place."""
        self.cover[t, key] = self.solver.Constraint(left, self.solver.infinity())
        self.parts[t, key], self.left[t, key] = parts, left

    def add(self, pattern: Pattern) -> None:
        var = self.solver.NumVar(0, self.solver.infinity(), "")
        self.objective.SetCoefficient(var, 1)
        for t, key, amount in pattern:
            self.cover[t, key].SetCoefficient(var, amount)
            if key[0] == "f":
                self.count[t, key].SetCoefficient(var, 1)
        self.columns[pattern] = var

    def add_singles(self, space: Space) -> None:
        """Every part alone on a core (a piece with what the grid's room gives it): the LP is feasible."""
        for t, key in self.cover:
            if key[0] == "o":
                self.add(((t, key, 1.0),))
            else:
                a, b = space.lines[t][key[1]]
                room = ((space.grid.cells + 1) * space.grid.unit - a) / b
                self.add(((t, key, min(float(space.samples[t]), room)),))

    def solve(self) -> bool:
        return bool(self.solver.Solve() == pywraplp.Solver.OPTIMAL)

    def value(self) -> float:
        return float(self.objective.Value())

    def duals(self, space: Space) -> Duals:
        alpha = np.array([self.ones[t].dual_value() if t in self.ones else 0.0 for t in range(self.tables)])
        fixed = {k: max(0.0, self.cover[k].dual_value()) for k in self.left}
        total = float(alpha.sum()) + sum(price * self.left[k] for k, price in fixed.items())
        return Duals(alpha, fixed, self._piece_prices(space, alpha), total)

    def _piece_prices(self, space: Space, alpha: np.ndarray) -> list[list[tuple[float, float]]]:
        """Per table, per cut in k pieces, (per sample, per piece): the LP's dual of its samples row, and the
        least per-piece price its y allows (N per-sample + k per-piece >= alpha_t). No higher than the LP's
        duals, it finds no pattern they would not, and it keeps Farley's bound valid however GLOP rounded."""
        prices = []
        for t, cuts in enumerate(space.cuts):
            row = []
            for key in cuts:
                per_sample = max(0.0, self.cover[t, key].dual_value())
                row.append((per_sample, (alpha[t] - space.samples[t] * per_sample) / key[2]))
            prices.append(row)
        return prices

    def worth(self, pattern: Pattern, duals: Duals, space: Space) -> float:
        """The pattern's value at `duals` (parts of a free table at alpha_t / parts, pieces at their prices)."""
        total = 0.0
        for t, key, amount in pattern:
            if (t, key) in self.left:
                total += duals.fixed[t, key]
            elif key[0] == "o":
                total += duals.alpha[t] / self.parts[t, key]
            else:
                per_sample, per_piece = duals.pieces[t][space.cuts[t].index(key)]
                total += per_sample * amount + per_piece
        return total

    def weights(self) -> dict[int, dict[Key, float]]:
        """Each free table's y."""
        weights: dict[int, dict[Key, float]] = {}
        for (t, key), y in self.ys.items():
            weights.setdefault(t, {})[key] = y.solution_value()
        return weights

    def used(self) -> dict[Pattern, float]:
        """The patterns the LP uses, with their lambda."""
        return {p: var.solution_value() for p, var in self.columns.items() if var.solution_value() > TOL}


class Outcome(enum.Enum):
    REFUTED = "refuted"  # the LP needs more than the cores: no plan of the LP's kind has makespan T
    FITS = "fits"  # the LP fits the cores (a bound: the restricted LP does; a plan: its optimum does)
    UNDECIDED = "undecided"  # the rounds ran out, or GLOP failed


@dataclass
class Budget:
    """Pricing rounds: those spent so far over a whole search, and the most it may spend."""

    limit: int
    spent: int = 0


@dataclass
class Search:
    """How `generate` goes: `keep` hears of every pattern added (the caller's pool); a bound prices on a
    `coarse` grid first and smooths its duals (`smoothing`: the weight of the best duals so far); a dive caps
    the rounds of one LP (`per_lp`) and prices in single precision."""

    keep: Callable[[Pattern, float], None]
    coarse: Space | None = None
    smoothing: float | None = None
    per_lp: int | None = None
    precision: Precision = DOUBLE
    centre: tuple[float, Duals] | None = field(default=None, init=False)  # Farley's bound of the best duals


def generate(lp: MasterLP, space: Space, cores: int, budget: Budget, search: Search) -> Outcome:
    """Column generation on `lp` at the makespan of `space`, until it refutes the cores, fits them, or the rounds
    run out (see the module's docstring for the stop rule of each rounding direction)."""
    rounds = 0
    while search.per_lp is None or rounds < search.per_lp:
        rounds += 1
        if budget.spent >= budget.limit or not lp.solve():
            return Outcome.UNDECIDED
        if space.grid.rounding is Rounding.DOWN and lp.value() <= cores * (1 + TOL):
            return Outcome.FITS
        duals = lp.duals(space)
        # Price first at duals between the best found so far and the LP's (Wentges' smoothing): the LP's own
        # duals swing from round to round, and a pattern found between them is more often one it needs.
        tries = [duals] if search.centre is None else [search.centre[1].mixed(duals, search.smoothing or 0.0), duals]
        if search.coarse is not None and _priced_coarse(lp, search, tries[0], duals, budget):
            continue
        outcome = _price_and_add(lp, space, cores, budget, search, tries, duals)
        if outcome is not None:
            return outcome
    return Outcome.UNDECIDED


def _priced_coarse(lp: MasterLP, search: Search, at: Duals, duals: Duals, budget: Budget) -> bool:
    """A round on the coarse grid (rounded up: its patterns fit the fine grid too); whether it added one."""
    assert search.coarse is not None
    _, pattern, load = price(search.coarse, at, search.precision)
    budget.spent += 1
    if lp.worth(pattern, duals, search.coarse) > 1 + TOL:
        search.keep(pattern, load)
        lp.add(pattern)
        return True
    return False


def _price_and_add(
    lp: MasterLP, space: Space, cores: int, budget: Budget, search: Search, tries: list[Duals], duals: Duals
) -> Outcome | None:
    """Price at each of `tries` until a pattern improves the LP (then add it: None), Farley's bound refutes
    the cores, or none improves it (the LP is solved)."""
    for at in tries:
        value, pattern, load = price(space, at, search.precision)
        budget.spent += 1
        farley = at.total / max(1.0, value)
        if farley > cores * (1 + TOL):
            return Outcome.REFUTED  # every plan of the LP's kind needs more than `cores` cores
        if search.smoothing is not None and (search.centre is None or farley > search.centre[0]):
            search.centre = (farley, at)
        if space.grid.rounding is Rounding.DOWN:
            better = lp.worth(pattern, duals, space) > 1 + TOL
        else:
            better = value > 1 + TOL and pattern not in lp.columns
        if better:
            search.keep(pattern, load)
            lp.add(pattern)
            return None
    # No pattern is worth more than one core at the LP's duals: the LP is solved.
    if space.grid.rounding is Rounding.UP and lp.value() > cores * (1 + TOL):
        return Outcome.REFUTED
    return Outcome.FITS


def price(space: Space, duals: Duals, precision: Precision = DOUBLE) -> tuple[float, Pattern, float]:
    """The pattern of most value within the grid, where a part is worth `duals.part` and a piece of n samples
    per-sample n + per-piece; an upper bound on its value, and the pattern with its load in units (pieces at
    the sizes of their lines)."""
    grid = space.grid
    cells, rows = grid.cells, grid.byte_cells + 1
    dp = np.zeros((cells + 1, rows), dtype=precision.dtype)  # the best value within (time cells, byte cells)
    steps = []  # per table: the best values before it, its parts with their values, and its pieces' picks
    for t, parts in enumerate(space.parts):
        valued = [(p, v) for p in parts if (v := duals.part(t, p)) > 0]
        lines = space.lines[t] if space.lines else ()
        if not valued and not lines:
            continue
        new = dp.copy()
        for p, v in valued:
            s, b = p.cells, p.byte_cells
            np.maximum(new[s:, b:], dp[: cells + 1 - s, : rows - b] + v, out=new[s:, b:])
        picks = _price_pieces(space, t, duals, dp, new) if lines else None
        steps.append((t, dp, valued, picks))
        dp = new
    return _walk_back(space, dp, steps, duals, precision)


def _walk_back(
    space: Space,
    dp: np.ndarray,
    steps: list[tuple[int, np.ndarray, list[tuple[Part, float]], np.ndarray | None]],
    duals: Duals,
    precision: Precision,
) -> tuple[float, Pattern, float]:
    """Where a table raised the best value, one of its parts (or pieces) accounts for the rise."""
    c, h = space.grid.cells, space.grid.byte_cells
    here, pattern, load = dp[c, h], [], 0.0
    for t, before, valued, picks in reversed(steps):
        if picks is not None and picks[c, h] <= -2:
            i = -2 - int(picks[c, h])
            key = space.cuts[t][i]
            x, n = _piece_start(space, t, key, duals.pieces[t][i], before[:, h], c)
            a, b = space.lines[t][key[1]]
            pattern.append((t, key, n))
            load += a + b * n
            c, here = x, before[x, h]
            continue
        if here <= before[c, h] + precision.negligible:
            continue
        near = precision.tolerance * max(precision.floor, here)
        for p, v in valued:
            s, b_ = p.cells, p.byte_cells
            if s <= c and b_ <= h and abs(before[c - s, h - b_] + v - here) <= near:
                pattern.append((t, p.key, 1.0))
                load += p.units
                c, h, here = c - s, h - b_, before[c - s, h - b_]
                break
    return float(dp[space.grid.cells, space.grid.byte_cells]), tuple(reversed(pattern)), load


def _piece_start(
    space: Space, t: int, key: Key, price: tuple[float, float], before: np.ndarray, c: int
) -> tuple[int, float]:
    """The cell a piece of cut `key` ending at cell c best starts at (the best value before it plus the piece's),
    and its samples."""
    line = key[1]
    a, b = space.lines[t][line]
    q, samples = space.grid.unit, space.samples[t]
    shift = _fewest_cells(space, t, line)
    x = np.arange(c - shift + 1)
    n = np.minimum(float(samples), ((c - x + 1) * q - a) / b)
    best = int(np.argmax(before[: c - shift + 1] + price[0] * n))
    return best, max(1.0, float(n[best]))


def _fewest_cells(space: Space, t: int, line: int) -> int:
    """The fewest grid cells a piece along the line takes (its least time, one sample)."""
    a, b = space.lines[t][line]
    return _cells(a + b, space.grid.unit)


def _cells(time: float, unit: float) -> int:
    """The cells a piece of `time` units takes on a grid of `unit`, rounded as the grid rounds down: a piece
    from cell x to cell x + m has (m + 1) units of room."""
    return max(0, math.ceil(time / unit - 1 - 1e-9))


def _price_pieces(space: Space, t: int, duals: Duals, dp: np.ndarray, new: np.ndarray) -> np.ndarray | None:
    """Raise `new` (the best values after table t) by its pieces: where a piece is best, -2 - its cut's index
    (None where no line has a cut).

    A piece from cell x to cell c holds n = min(N, ((c - x + 1) q - a) / b) samples: the pattern's real sizes
    leave it at least that room (each was rounded down by under a cell). It takes at least s cells (its least
    time), and holds all N samples from m cells on; so its value is the best of dp[c - m] + per-sample N (dp
    grows with c) and, over the x with c - m < x <= c - s, dp[x] - per-sample x q / b plus per-sample
    ((c + 1) q - a) / b (a window maximum), plus per-piece. Pieces hold no bytes: they stay in their byte cell."""
    grid, cuts, prices, samples = space.grid, space.cuts[t], duals.pieces[t], space.samples[t]
    q, cells = grid.unit, grid.cells
    index = np.arange(cells + 1)
    picks: np.ndarray | None = None
    for line, (a, b) in enumerate(space.lines[t]):
        which = [i for i, key in enumerate(cuts) if key[1] == line]
        shift = _fewest_cells(space, t, line)
        if not which or shift > cells:
            continue
        if picks is None:
            picks = np.full(dp.shape, -1, dtype=np.int64)
        slopes = np.array([prices[i][0] for i in which])
        offsets = np.array([prices[i][1] for i in which])
        keep = _envelope(slopes, offsets, 1.0, float(samples))
        which = [which[i] for i in keep]
        per_sample, per_piece = slopes[keep][:, None, None], offsets[keep][:, None, None]
        span = cells + 1 - shift  # the ends c = shift..cells, and the starts x = 0..cells - shift
        full = max(shift, _cells(a + b * samples, q))  # cells from which a piece holds all N
        base = dp[None, :span, :] - per_sample * (q / b) * index[None, :span, None]
        room = ((index[shift:] + 1) * q - a) / b
        take = _window_max(base, full - shift) + per_sample * room[None, :, None]
        whole = np.full_like(take, -np.inf)
        if full <= cells:
            whole[:, full - shift :] = dp[None, : cells + 1 - full] + per_sample * samples
        take = np.maximum(take, whole) + per_piece
        top = take.argmax(axis=0)[None]
        value = np.take_along_axis(take, top, axis=0)[0]
        better = value > new[shift:]
        new[shift:] = np.where(better, value, new[shift:])
        picks[shift:] = np.where(better, -2 - np.array(which)[top[0]], picks[shift:])
    return picks


def _window_max(values: np.ndarray, width: int) -> np.ndarray:
    """Along axis 1, the maximum of the last `width` entries up to each (fewer at the start; -inf for width 0):
    van Herk and Gil-Werman's blocks, in linear time."""
    k, n, r = values.shape
    if width <= 0:
        return np.full_like(values, -np.inf)
    if width >= n:
        return np.maximum.accumulate(values, axis=1)
    padded = np.concatenate([values, np.full((k, -n % width, r), -np.inf)], axis=1)
    blocks = padded.reshape(k, -1, width, r)
    prefix = np.maximum.accumulate(blocks, axis=2).reshape(k, -1, r)
    suffix = np.maximum.accumulate(blocks[:, :, ::-1], axis=2)[:, :, ::-1].reshape(k, -1, r)
    out = np.maximum.accumulate(values, axis=1)  # windows that start at 0
    ends = np.arange(width - 1, n)
    out[:, width - 1 :] = np.maximum(suffix[:, ends - width + 1], prefix[:, ends])
    return out


def _envelope(slopes: np.ndarray, offsets: np.ndarray, lo: float, hi: float) -> list[int]:
    """The lines slope n + offset that are highest somewhere on [lo, hi] (of equal ones, the first): only their
    pieces can be worth most."""
    with np.errstate(divide="ignore", invalid="ignore"):
        crossings = (offsets[None, :] - offsets[:, None]) / (slopes[:, None] - slopes[None, :])
    inside = crossings[np.isfinite(crossings) & (crossings > lo) & (crossings < hi)]
    at = np.concatenate(([lo, hi], inside))
    values = slopes[:, None] * at[None, :] + offsets[:, None]
    return sorted(set(values.argmax(axis=0).tolist()))
