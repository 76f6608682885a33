"""Lower bounds on the makespan from dual feasible functions (DFFs), a bin-packing argument.

A function f: [0, 1] -> [0, 1] is dual feasible when any numbers that sum to at most 1 have images that sum to
at most 1. In a plan with makespan at most T, every core's parts sum to at most T, so the images f(s / T) of all
parts sum to at most the number of cores. Each table may pick the option that makes its images smallest, so

    T is impossible  if  sum over tables of  min over options with parts <= T of  k * f(part / T)  >  cores.

With f the identity this is the work bound; the functions below also see that two parts above T / 2 cannot
share a core, or three above T / 3 (Fekete and Schepers, "New classes of fast lower bounds for bin packing
problems", Math. Programming 91, 2001). A convex combination of DFFs is a DFF, and a pair mixed can refute a T
that neither refutes alone: e.g. a table split to dodge one function's jump pays the other's slope.

For a fixed f the test only gets easier as T grows (parts shrink relative to T, and more options qualify), so
the smallest T it cannot refute is found by a galloping then binary search. Part sizes are nudged down before f
is applied, so float rounding can only weaken the bound, never make it wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Dff = Callable[[np.ndarray], np.ndarray]  # x in [0, 1] (part / T) -> f(x) in [0, 1]

_NUDGE = 1e-12  # relative: x is shrunk by this before any f is applied
_SUM_TOL = 1e-9  # relative: the images must exceed the cores by more than this to refute T


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

    def __init__(self, menus: Sequence[Sequence[tuple[int, int]]], cores: int) -> None:
        self.cores = cores
        self.parts = np.array([k for menu in menus for k, _ in menu], dtype=np.float64)
        self.size = np.array([s for menu in menus for _, s in menu], dtype=np.float64)
        self.starts = np.cumsum([0] + [len(menu) for menu in menus[:-1]])

    def images(self, T: float, which: Sequence[int]) -> dict[int, np.ndarray]:
        """k * f(part / T) per option for the base functions `which`."""
        x = np.minimum(1.0, np.maximum(0.0, self.size / T * (1 - _NUDGE)))
        return {i: self.parts * BASE[i][1](x) for i in which}

    def refutes(self, T: float, mix: Mix, images: dict[int, np.ndarray] | None = None) -> bool:
        """Whether every choice of options needs more than `cores` cores' worth of images at makespan T;
        options with a part above T cannot be chosen."""
        images = images if images is not None else self.images(T, [i for _, i in mix])
        w = sum(lam * images[i] for lam, i in mix)
        w = np.where(self.size <= T, w, np.inf)
        need = float(np.minimum.reduceat(w, self.starts).sum())
        return need > self.cores * (1 + _SUM_TOL)


def dff_lower_bound(menus: Sequence[Sequence[tuple[int, int]]], cores: int, start: int = 0) -> tuple[int, str]:
    """The smallest integer makespan T >= start that no function of the family refutes, and the function that
    raised the bound most ("" if none beat `start`). `menus` lists, per table, (parts, part size) of each
    option, sizes in integer units. Valid for any assignment of the parts to distinct cores."""
    if not menus or cores <= 0:
        return start, ""
    data = _Menus(menus, cores)
    best, name = max(start, 1), ""
    everything = range(len(BASE))
    images = data.images(best, everything)
    for mix_name, mix in MIXES:
        if not data.refutes(best, mix, images):
            continue
        best, name = _first_unrefuted(data, mix, best + 1), mix_name
        images = data.images(best, everything)
    return best, name


def _first_unrefuted(data: _Menus, mix: Mix, lo: int) -> int:
    """Smallest T >= lo that `mix` does not refute (it refutes lo - 1). Gallops up, then bisects."""
    step = max(1, lo // 4096)
    hi = lo
    while data.refutes(hi, mix):
        lo = hi + 1
        hi = lo + step
        step *= 2
    while lo < hi:
        mid = (lo + hi) // 2
        if data.refutes(mid, mix):
            lo = mid + 1
        else:
            hi = mid
    return lo
