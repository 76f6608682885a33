"""Every lower bound on the makespan, in busy time (the per-core start-up is added once, in the plan).

The work bound and the DFFs with priced buffers (`dff`), in units (`lower_bound_units`) or from exact costs in
seconds (`lower_bound_s`), and with tables cut to any sizes along their `SampleLine`s (`uneven_lower_bound_s`);
and the configuration LP (`pattern_lower_bound`, on `config_lp` rounded down), bisected between a known bound
and a plan's makespan, with branch and bound over the options where its y spreads over few tables. Every T a
search refutes is impossible, so each result is valid whatever the search misses. What each bound covers and
why it holds: docs/design.md, "Lower bound".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from embmap.ir.module import Module, PartitionOption, SampleLine
from embmap.passes.solver.config_lp import (
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
from embmap.passes.solver.dff import choice_lower_bound, dff_lower_bound
from embmap.passes.solver.problem import TIME_UNIT_S, AssignmentProblem

# Where a plan's gap after CP-SAT (or after `balance`) is above this, the configuration LP is tried for a higher
# bound; below it, the LP's cost (up to a second; half a second on 2-core targets) buys little. The `pack` pass
# does more where a plan is still over 1% from its bound.
PATTERN_GAP = 0.002

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
SPREAD = 1e-6  # a y below this is taken as 0 when choosing what to branch on
SMOOTHING = 0.5  # the weight of the best duals so far in the duals priced first (Wentges)


def lower_bound_units(problem: AssignmentProblem) -> int:
    """A bound no plan can beat, computed without the solver: the work bound (`choice_lower_bound`), raised by
    the bin-packing argument of `dff` (parts too big to share a core, and local buffers too small for every
    table that would save by preloading)."""
    return problem.lower_bound


def work_bound_units(problem: AssignmentProblem) -> int:
    """`choice_lower_bound` of the problem, in units."""
    return problem.work_bound


class FlexibleOption(NamedTuple):
    """An option whose parts may be cut to any sizes, as a bound sees it (seconds): `parts` parts doing at
    least `work_s` in all, the largest at least `largest_s`, each at least `least_s`; `held_bytes` in all."""

    parts: int
    largest_s: float
    work_s: float
    least_s: float
    held_bytes: int


def lower_bound_s(
    module: Module, *, buffers: bool = True, flexible: Mapping[str, Sequence[FlexibleOption]] | None = None
) -> float:
    """The same bound as `lower_bound_units`, from exact (unrounded) costs in seconds; without `buffers`, the
    bound as if the local buffers were unlimited (to show what they add). `flexible` adds, per table, options
    whose parts may be cut to any sizes: the work bound sees them as they are, the bin-packing bound with their
    work under the identity and their parts at the least sizes they can have under every other function."""
    assert module.options is not None
    extra = flexible or {}
    fixed = [list(m.options) for m in module.options]
    more = [list(extra.get(m.table, ())) for m in module.options]
    cap = module.target.local.capacity_bytes
    return _menu_bound_s(fixed, more, module.target.cores, cap if buffers else None)


def flexible_lower_bound_s(
    options: Sequence[Sequence[FlexibleOption]], cores: int, capacity_bytes: int | None
) -> float:
    """The bound of `lower_bound_s` over tables that take one of their flexible options each (and nothing
    else); `capacity_bytes` None: as if the local buffers were unlimited."""
    return _menu_bound_s([[] for _ in options], [list(o) for o in options], cores, capacity_bytes)


def _menu_bound_s(
    fixed: Sequence[Sequence[PartitionOption]],
    more: Sequence[Sequence[FlexibleOption]],
    cores: int,
    capacity_bytes: int | None,
) -> float:
    """The work bound raised by the DFFs (with the buffers priced unless `capacity_bytes` is None), per table
    over its `fixed` options (parts as they are) and its `more` flexible ones."""
    menus, sizes, held, least = [], [], [], []
    for opts, flex in zip(fixed, more, strict=True):
        menus.append([(o.part_s, o.work_s) for o in opts] + [(f.largest_s, f.work_s) for f in flex])
        # The bin-packing bound on part sizes rounded down to whole units (smaller parts only weaken it).
        sizes.append(
            [(o.parts, math.floor(o.least_part_s / TIME_UNIT_S)) for o in opts]
            + [(f.parts, math.floor(max(0.0, f.work_s / f.parts) / TIME_UNIT_S)) for f in flex]
        )
        held.append([sum(o.local_bytes_per_part) for o in opts] + [f.held_bytes for f in flex])
        least.append([None] * len(opts) + [math.floor(max(0.0, f.least_s) / TIME_UNIT_S) for f in flex])
    work = choice_lower_bound(menus, cores)
    packed, _ = dff_lower_bound(
        sizes,
        cores,
        math.floor(work / TIME_UNIT_S),
        held=held if capacity_bytes is not None else None,
        capacity_bytes=capacity_bytes or 0,
        flexible=least if any(more) else None,
    )
    return max(work, packed * TIME_UNIT_S)


def uneven_lower_bound_s(module: Module, lines: Sequence[SampleLine]) -> float:
    """A lower bound on the makespan of every plan whose tables take an option of their menu, where the tables
    with `lines` may also cut their samples into parts of any sizes (with each line's strategy)."""
    batch, cores = module.workload.batch_size, module.target.cores
    flexible: dict[str, list[FlexibleOption]] = {}
    for line in lines:
        t = module.table(line.table)
        flexible.setdefault(line.table, []).extend(
            FlexibleOption(
                parts=k,
                # Some part has at least batch / k samples, and every part at least one.
                largest_s=line.at(math.ceil(batch / k)),
                work_s=line.work_s(k, batch),
                least_s=line.fixed_s + line.per_sample_s,
                held_bytes=k * t.bytes if line.strategy.preloaded else 0,
            )
            for k in range(1, min(cores, batch) + 1)
        )
    return lower_bound_s(module, flexible=flexible)


def configuration_bound_s(
    module: Module, known_s: float, busy_s: float, lines: Sequence[SampleLine] = (), buffers: bool = False
) -> float:
    """The configuration LP's bound in seconds, searched from `known_s` (a bound already proven for the same
    plans) up to `busy_s` (a plan's makespan): parts at their least sizes (and with `buffers`, least local bytes,
    which the patterns must fit in the local buffer: a round then costs about ten times more), and the tables
    with `lines` may be cut unevenly (the bound then covers such cuts)."""
    assert module.options is not None
    menus = [
        PatternMenu(
            options=tuple((o.parts, math.floor(o.least_part_s / TIME_UNIT_S)) for o in m.options),
            lines=tuple(
                (line.fixed_s / TIME_UNIT_S, line.per_sample_s / TIME_UNIT_S) for line in lines if line.table == m.table
            ),
            samples=module.workload.batch_size,
            part_bytes=tuple(min(o.local_bytes_per_part) for o in m.options),
        )
        for m in module.options
    ]
    known = math.floor(known_s / TIME_UNIT_S)
    capacity = module.target.local.capacity_bytes if buffers else None
    bound = pattern_lower_bound(menus, module.target.cores, known, math.floor(busy_s / TIME_UNIT_S), None, capacity)
    return max(known_s, bound * TIME_UNIT_S)


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


@dataclass
class _Pool:
    """Patterns found at any makespan and in any branch, kept for the next: (load in units, pattern)."""

    budget: Budget
    patterns: list[tuple[float, Pattern]] = field(default_factory=list)
    nodes: int = 0  # linear programs solved for the makespan under test

    def keep(self, pattern: Pattern, load: float) -> None:
        self.patterns.append((load, pattern))


# A branch: per table, the options it may take (every option where absent).
_Branch = dict[int, frozenset[Key]]


@dataclass(frozen=True)
class _Trial:
    """A makespan under test: `menus` on `cores` cores under T, with the buffer a dimension of the grid where
    `capacity` is given, and the patterns of `pool`."""

    menus: Sequence[PatternMenu]
    cores: int
    T: int
    capacity: int | None
    pool: _Pool


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
    pool = _Pool(Budget(0))
    while lo < hi and hi - lo > PRECISION * hi and pool.budget.spent < max_rounds:
        mid = (lo + hi) // 2
        pool.nodes = 0
        pool.budget.limit = min(max_rounds, pool.budget.spent + ROUNDS_PER_MAKESPAN)
        if _branch_refutes(_Trial(menus, cores, mid, capacity, pool), {}):
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
    spread = {t: w for t, w in y.items() if sum(v > SPREAD for v in w.values()) > 1}
    if not spread or (not branch and len(spread) > MAX_SPREAD):
        return False  # every table takes one option (the LP fits them in the cores), or too many tables do not
    t = max(sorted(spread), key=lambda t: 1.0 - max(spread[t].values()))
    return all(_branch_refutes(trial, {**branch, t: half}) for half in _halves(spread[t]))


def _halves(weights: dict[Key, float]) -> tuple[frozenset[Key], frozenset[Key]]:
    """A table's options split in two, each with some the LP uses: parts against pieces where it uses both,
    else the counts up to the mean its y gives against those above, else (one count) by line."""
    used = {key: v for key, v in weights.items() if v > SPREAD}
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
    grid = Grid.whole_units(
        trial.T, BYTE_TIME_GRID if trial.capacity is not None else GRID, Rounding.DOWN, trial.capacity, BYTE_GRID
    )
    space = _space(trial, branch, grid)
    if space is None:
        return True, None  # some table fits under T in no way
    coarse = None
    if trial.capacity is not None:  # the coarse grid priced first, rounded up
        rough = Grid.whole_units(trial.T, COARSE_TIME_GRID, Rounding.UP, trial.capacity, COARSE_BYTE_GRID)
        coarse = _coarse(trial, branch, grid, rough)
    lp = MasterLP(len(trial.menus))
    for t, m in enumerate(trial.menus):
        needs = [(key, key[1], key[1]) for key in dict.fromkeys(p.key for p in space.parts[t])]
        lp.choose(t, needs + [(key, key[2], m.samples) for key in space.cuts[t]])
    lp.add_singles(space)
    for load, pattern in trial.pool.patterns:
        if load <= trial.T and all((t, key) in lp.cover for t, key, _ in pattern):
            lp.add(pattern)
    search = Search(trial.pool.keep, coarse=coarse, smoothing=SMOOTHING)
    outcome = generate(lp, space, trial.cores, trial.pool.budget, search)
    if outcome is Outcome.REFUTED:
        return True, None
    return False, lp.weights() if outcome is Outcome.FITS else None


def _space(trial: _Trial, branch: _Branch, grid: Grid) -> Space | None:
    """Per table, per part count, its (size, bytes) that no other option of that count beats in both (prices
    favour no option of a count over another, so the least size where bytes do not count); and the cuts in k
    pieces whose largest piece (at least N / k samples) fits under T. None where a table fits under T in no way."""
    T, parts, cuts = trial.T, [], []
    for t, m in enumerate(trial.menus):
        allowed = branch.get(t)
        sizes: dict[int, list[tuple[int, int]]] = {}
        for o, (count, size) in enumerate(m.options):
            if size <= T and grid.holds(m.held(o)) and (allowed is None or ("o", count, 0) in allowed):
                sizes.setdefault(count, []).append((size, grid.bytes(m.held(o))))
        parts.append(
            [Part(("o", n, 0), n, grid.time(size), b, size) for n, front in sizes.items() for size, b in _pareto(front)]
        )
        pieces = [
            ("f", line, k)
            for line, (a, b) in enumerate(m.lines)
            for k in range(1, min(trial.cores, m.samples) + 1)
            if a + b * math.ceil(m.samples / k) <= T and (allowed is None or ("f", line, k) in allowed)
        ]
        if not parts[-1] and not pieces:
            return None
        cuts.append(pieces)
    return Space(grid, parts, [m.lines for m in trial.menus], cuts, [m.samples for m in trial.menus])


def _coarse(trial: _Trial, branch: _Branch, fine: Grid, grid: Grid) -> Space:
    """The parts of `_space` on the `fine` grid, on a coarse one rounded up (each fits the fine grid for real);
    no pieces."""
    parts = []
    for t, m in enumerate(trial.menus):
        allowed = branch.get(t)
        sizes: dict[int, list[tuple[int, int]]] = {}
        for o, (count, size) in enumerate(m.options):
            held = m.held(o)
            fits = size <= trial.T and fine.holds(held) and grid.holds(held)
            if fits and (allowed is None or ("o", count, 0) in allowed):
                sizes.setdefault(count, []).append((grid.time(size), grid.bytes(held)))
        parts.append(
            [Part(("o", n, 0), n, c, b, c * grid.unit) for n, front in sizes.items() for c, b in _pareto(front)]
        )
    return Space(grid, parts)


def _pareto(sizes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The (size, bytes) pairs that no other pair is at or below in both, by size."""
    front: list[tuple[int, int]] = []
    for size, held in sorted(set(sizes)):
        if not front or held < front[-1][1]:
            front.append((size, held))
    return front
