"""Lower bounds from dual feasible functions (DFFs), a bin-packing argument, and the work bound.

In a plan with makespan T the images f(part / T) of all parts sum to at most the cores for any dual feasible f;
a T for which every choice of options needs more is impossible. The identity gives the work bound; Fekete and
Schepers' functions (and mixes of two) see parts too big to share a core; a Lagrangian price on the local
buffers sees tables that cannot all preload; options cut to any sizes count their parts at the least size they
can have. Part sizes are nudged down first, so rounding only ever weakens a bound. The derivations and what
each one adds on the built-in workloads: docs/design.md, "Lower bound".
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np

Dff = Callable[[np.ndarray], np.ndarray]  # x in [0, 1] (part / T) -> f(x) in [0, 1]

MAX_RANKED = 8  # of an option cut to any sizes, the largest parts counted one by one (more cost time)
_NUDGE = 1e-12  # relative: x is shrunk by this before any f is applied
_SUM_TOL = 1e-9  # relative: the images must exceed the cores by more than this to refute T


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


def _fraction(size: np.ndarray, T: float) -> np.ndarray:
    """size / T in [0, 1], nudged down so that float rounding can only weaken a bound."""
    return np.minimum(1.0, np.maximum(0.0, size / T * (1 - _NUDGE)))


def identity(x: np.ndarray) -> np.ndarray:
    return x


def big_items(eps: float) -> Dff:
    """U^eps: parts above 1 - eps count as a whole core, parts below eps as nothing (eps <= 1/2)."""
    assert 0 < eps <= 0.5

    def f(x: np.ndarray) -> np.ndarray:
        return np.where(x > 1 - eps, 1.0, np.where(x >= eps, x, 0.0))

    return f


def rounded(k: int) -> Dff:
    """u^(k): x rounded down to a multiple of 1 / (k + 1), scaled by (k + 1) / k; x itself where it is such a
    multiple (k >= 1)."""
    assert k >= 1

    def f(x: np.ndarray) -> np.ndarray:
        steps = np.floor((k + 1) * x)
        return np.where(steps == (k + 1) * x, x, steps / k)

    return f


def staircase(eps: float) -> Dff:
    """phi^eps: a part above 1/2 counts 1 less the number of eps-steps left beside it; one in [eps, 1/2]
    counts 1 / floor(1 / eps); one below eps nothing (eps <= 1/2)."""
    assert 0 < eps <= 0.5
    steps = int(1 / eps + 1e-9)

    def f(x: np.ndarray) -> np.ndarray:
        big = 1 - np.floor((1 - x) / eps) / steps
        return np.where(x > 0.5, big, np.where(x >= eps, 1.0 / steps, 0.0))

    return f


BASE: tuple[tuple[str, Dff], ...] = (
    ("identity", identity),
    *((f"U({e:g})", big_items(e)) for e in (0.5, 0.4, 0.3, 0.25, 0.2, 0.125, 0.1, 0.05)),
    *((f"u({k})", rounded(k)) for k in range(1, 6)),
    *((f"phi({e:g})", staircase(e)) for e in (1 / 3, 0.25, 0.2, 0.125)),
)
IDENTITY = 0  # BASE's index of the identity: the work bound


def convex_hull(f: Dff, grid: int = 4096) -> Dff:
    """A convex function under the nondecreasing f on [0, 1]: the lower convex hull of the points (x_i, f(x_(i-1)))
    on a grid, which lie under f between x_(i-1) and x_i."""
    x = np.linspace(0.0, 1.0, grid + 1)
    y = np.concatenate([[f(x[:1])[0]], f(x[:-1])])
    hx: list[float] = []
    hy: list[float] = []
    for px, py in zip(x.tolist(), y.tolist(), strict=True):
        while len(hx) >= 2 and (hy[-1] - hy[-2]) * (px - hx[-2]) >= (py - hy[-2]) * (hx[-1] - hx[-2]):
            hx.pop()
            hy.pop()
        hx.append(px)
        hy.append(py)
    xs, ys = np.array(hx), np.array(hy)
    return lambda v: np.interp(v, xs, ys)


@functools.cache
def hull(i: int) -> Dff:
    """The convex hull of base function i, built on first use (not at import: most commands never bound)."""
    return convex_hull(BASE[i][1])


MIX = (0.25, 0.5, 0.75)


Mix = tuple[tuple[float, int], ...]  # (weight, index into BASE): a convex combination of base functions

MIXES: tuple[tuple[str, Mix], ...] = (
    *((name, ((1.0, i),)) for i, (name, _) in enumerate(BASE)),
    *(
        (f"{lam:g} {BASE[i][0]} + {1 - lam:g} {BASE[j][0]}", ((lam, i), (1 - lam, j)))
        for i in range(len(BASE))
        for j in range(i + 1, len(BASE))
        for lam in MIX
    ),
)


class _Menus:
    """The options of every table as flat arrays, grouped by table, for vectorized tests."""

    def __init__(
        self,
        menus: Sequence[Sequence[tuple[int, int]]],
        cores: int,
        held: Sequence[Sequence[int]] | None = None,
        capacity_bytes: int = 0,
        flexible: Sequence[Sequence[int | None]] | None = None,
    ) -> None:
        self.cores = cores
        self.parts = np.array([k for menu in menus for k, _ in menu], dtype=np.float64)
        self.size = np.array([s for menu in menus for _, s in menu], dtype=np.float64)
        self.starts = np.cumsum([0] + [len(menu) for menu in menus[:-1]])
        self.group = np.repeat(np.arange(len(menus)), [len(menu) for menu in menus])
        # Options whose parts may be cut to any sizes have the mean part as their size, which the identity
        # counts exactly, and the least part any cut can have, which with the work bounds every other
        # (nondecreasing) function (`_ranked_least`).
        self.least = self.size
        if flexible is not None:
            least = [
                s if f is None else f
                for row, sizes in zip(flexible, menus, strict=True)
                for f, (_, s) in zip(row, sizes, strict=True)
            ]
            self.least = np.array(least, dtype=np.float64)
            if self.least.shape != self.size.shape:
                raise ValueError("flexible must give one entry per option of every menu")
        self.cut = self.least < self.size  # options whose parts may differ: their ranked parts count too
        # Bytes held as a fraction of one core's buffer; None where the buffers cannot bind.
        self.held: np.ndarray | None = None
        if held is not None and capacity_bytes > 0:
            fraction = np.array([b for row in held for b in row], dtype=np.float64) / capacity_bytes
            if fraction.shape != self.size.shape:
                raise ValueError("held must give one byte count per option of every menu")
            # Tables whose leanest options overfill all buffers have no plan at all, and would be refuted at
            # every T: that is for the placement to report, not for a bound.
            if np.minimum.reduceat(fraction, self.starts).sum() <= cores:
                self.held = fraction

    def images(self, T: float, which: Sequence[int]) -> dict[int, np.ndarray]:
        """k * f(part / T) per option for the base functions `which`; for options cut to any sizes, the larger of
        two lower bounds on their parts' images: f at the least sizes their parts can have in order
        (`_ranked_least`), and k times f's convex hull at their mean part (Jensen's inequality)."""
        x = _fraction(self.size, T)
        out = {IDENTITY: self.parts * identity(x)} if IDENTITY in which else {}
        others = [i for i in which if i != IDENTITY]
        if not others:
            return out
        least, ranked = self._ranked_least(T)
        mean, k = _fraction(self.size[self.cut], T), self.parts[self.cut]
        for i in others:
            f = BASE[i][1]
            floor = f(least)
            images = self.parts * floor
            if ranked:
                in_order = images[self.cut] + sum(f(r) - floor[self.cut] for r in ranked)
                # f is at least its convex hull, so k parts' images are at least k times the hull at their mean.
                images[self.cut] = np.maximum(in_order, k * hull(i)(mean))
            out[i] = images
        return out

    def _ranked_least(self, T: float) -> tuple[np.ndarray, list[np.ndarray]]:
        """The least size / T of every part of an option at makespan T, and for the options cut to any sizes
        the least size / T of their j-th largest part, j = 1, 2, ..., at most `MAX_RANKED` (a part not counted
        on its own counts at the least size, which only weakens the bound).

        k parts doing work W, each at most T: the j - 1 largest hold at most (j - 1) T, the k - j + 1 others
        at most (k - j + 1) times the j-th largest, so that one is at least (W - (j - 1) T) / (k - j + 1); the
        smallest (j = k) at least W - (k - 1) T. Past j = W / T the bound is below zero."""
        work = self.parts * self.size
        least = np.maximum(self.least, work - (self.parts - 1) * T)
        ranked: list[np.ndarray] = []
        if self.cut.any():
            k, w, low = self.parts[self.cut], work[self.cut], least[self.cut]
            for j in range(1, int(min(k.max(), math.ceil(w.max() / T), MAX_RANKED)) + 1):
                bound = np.where(j <= k, (w - (j - 1) * T) / np.maximum(1.0, k - j + 1), 0.0)
                ranked.append(_fraction(np.maximum(low, bound), T))
        return _fraction(least, T), ranked

    def _weights(self, T: float, mix: Mix, images: dict[int, np.ndarray] | None) -> np.ndarray:
        images = images if images is not None else self.images(T, [i for _, i in mix])
        w = sum(lam * images[i] for lam, i in mix)
        return np.where(self.size <= T, w, np.inf)

    def refutes(self, T: float, mix: Mix, images: dict[int, np.ndarray] | None = None) -> bool:
        """Whether every choice of options needs more than `cores` cores' worth of images at makespan T;
        options with a part above T cannot be chosen."""
        need = float(np.minimum.reduceat(self._weights(T, mix, images), self.starts).sum())
        return need > self.cores * (1 + _SUM_TOL)

    def refutes_with_buffers(self, T: float, mix: Mix) -> bool:
        """`refutes`, with the local buffers priced in (see the module's docstring)."""
        w = self._weights(T, mix, None)
        fraction = self.held
        if fraction is None or not np.isfinite(np.minimum.reduceat(w, self.starts)).all():
            return self.refutes(T, mix)  # no buffers to count, or some table has no option under T

        def at(price: float) -> tuple[float, float]:
            """The left side less the right at `price`, and the least bytes the chosen options hold less
            the cores' buffers (a slope of that difference in the price: > 0 means a higher price helps)."""
            cost = w + price * fraction
            least = np.minimum.reduceat(cost, self.starts)
            chosen = np.where(cost <= least[self.group], fraction, np.inf)
            held = float(np.minimum.reduceat(chosen, self.starts).sum())
            return float(least.sum()) - self.cores * (1 + price), held - self.cores

        def refuted(excess: float, price: float) -> bool:
            return excess > self.cores * (1 + price) * _SUM_TOL

        excess, slope = at(0.0)
        if refuted(excess, 0.0):
            return True
        if slope <= 0:
            return False  # the chosen options fit the buffers: no price helps
        lo, hi = 0.0, 1.0
        for _ in range(_PRICE_STEPS):
            excess, slope = at(hi)
            if refuted(excess, hi):
                return True
            if slope <= 0:
                break
            lo, hi = hi, hi * 4
        for _ in range(_PRICE_STEPS):
            mid = 0.5 * (lo + hi)
            excess, slope = at(mid)
            if refuted(excess, mid):
                return True
            lo, hi = (mid, hi) if slope > 0 else (lo, mid)
        return False


_PRICE_STEPS = 40  # of the search for a byte price: x4 per step up, then as many bisections


def dff_lower_bound(
    menus: Sequence[Sequence[tuple[int, int]]],
    cores: int,
    start: int = 0,
    *,
    held: Sequence[Sequence[int]] | None = None,
    capacity_bytes: int = 0,
    flexible: Sequence[Sequence[int | None]] | None = None,
) -> tuple[int, str]:
    """The smallest integer makespan T >= start that no function of the family refutes, and the function that
    raised the bound most ("" if none beat `start`). `menus` lists, per table, (parts, part size) of each
    option, sizes in integer units. Valid for any assignment of the parts to distinct cores.

    With `held` (per table, the local bytes each option holds in all) and `capacity_bytes` (one core's
    buffer), the single functions and the best mix are tried again with the buffers priced in; their names
    then end in " + buffers"."""
    if not menus or cores <= 0:
        return start, ""
    data = _Menus(menus, cores, held, capacity_bytes, flexible)
    best, name = max(start, 1), ""
    everything = range(len(BASE))
    images = data.images(best, everything)
    best_mix: Mix = MIXES[0][1]
    for mix_name, mix in MIXES:
        if not data.refutes(best, mix, images):
            continue
        best, name, best_mix = _first_unrefuted(data.refutes, mix, best + 1), mix_name, mix
        images = data.images(best, everything)
    if data.held is None:
        return best, name
    # Priced buffers cost a search on the price per T: only the single functions and the best mix.
    for mix_name, mix in [(n, mix) for n, mix in MIXES if len(mix) == 1 or mix == best_mix]:
        if data.refutes_with_buffers(best, mix):
            best, name = _first_unrefuted(data.refutes_with_buffers, mix, best + 1), f"{mix_name} + buffers"
    return best, name


def _first_unrefuted(refutes: Callable[[float, Mix], bool], mix: Mix, lo: int) -> int:
    """Smallest T >= lo that `mix` does not refute (it refutes lo - 1). Gallops up, then bisects."""
    step = max(1, lo // 4096)
    hi = lo
    while refutes(hi, mix):
        lo = hi + 1
        hi = lo + step
        step *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if refutes(mid, mix):
            lo = mid + 1
        else:
            hi = mid
    return lo
