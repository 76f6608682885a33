"""Index distributions as rank histograms: the few numbers the cost model needs from a distribution.

A histogram is a list of buckets (row count, probability of each row in the bucket), hottest first. Small
tables get one bucket per row; large Zipf tables get exact head ranks and geometric buckets for the tail,
so that a 40M-row table costs about a thousand buckets; an empirical distribution (a profiled trace) is its
own histogram. From it follow the expected number of distinct rows
among n lookups and the lookup mass of the hottest m rows (what a cache of m rows catches).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from embmap.ir.spec import AnyDistribution, Empirical, HotSet, Uniform

EXACT_ZIPF_ROWS = 65_536  # below this, one bucket per rank
ZIPF_HEAD_ROWS = 4_096  # above it, exact head ranks, then geometric buckets
ZIPF_BUCKET_RATIO = 1.01


def crossing(below: Callable[[float], bool], hi: float, steps: int) -> tuple[float, float]:
    """Where a nondecreasing quantity reaches its target: `hi` doubles while `below(hi)`, then `steps` bisections
    of the bracket. Returns (lo, hi), with `below(lo)` and not `below(hi)` (lo is 0 if `below(hi)` never held)."""
    lo = 0.0
    while below(hi):
        lo, hi = hi, 2.0 * hi
    for _ in range(steps):
        mid = 0.5 * (lo + hi)
        if below(mid):
            lo = mid
        else:
            hi = mid
    return lo, hi


@dataclass(frozen=True)
class RankHistogram:
    counts: np.ndarray  # rows in each bucket (float64 so that sums do not overflow)
    probs: np.ndarray  # probability of one row in the bucket; sum(counts * probs) == 1

    @property
    def rows(self) -> int:
        return int(round(float(self.counts.sum())))

    def expected_distinct(self, lookups: float) -> float:
        """E[number of distinct rows] among `lookups` independent draws."""
        if lookups <= 0:
            return 0.0
        hit = -np.expm1(lookups * self._log_miss)  # 1 - (1 - p)^n
        return float(np.dot(self.counts, hit))

    @cached_property
    def _log_miss(self) -> np.ndarray:
        """log(1 - p) of each bucket's rows, without cancellation for tiny p: read by every expectation over
        draws, dozens of times per root found (`_filling_draws`), so computed once."""
        out: np.ndarray = np.log1p(-np.minimum(self.probs, 1.0 - 1e-16))
        return out

    @cached_property
    def _mass(self) -> np.ndarray:
        """The lookup mass of each bucket, counts * probs."""
        out: np.ndarray = self.counts * self.probs
        return out

    def lru_hit_ratio(self, cache_rows: float) -> float:
        """Steady-state hit ratio of an LRU cache of `cache_rows` rows under independent draws (Che's
        approximation): row r stays cached while drawn within the characteristic time T, where T is the
        number of draws after which `cache_rows` distinct rows have been touched; hit(r) = 1 - exp(-p_r T)."""
        if cache_rows <= 0:
            return 0.0
        if cache_rows >= self.rows:
            return 1.0
        return self._steady_hit_ratio(self._filling_draws(cache_rows))

    def cache_rows_for(self, hit_ratio: float) -> float:
        """The inverse of `lru_hit_ratio`: the rows of an LRU cache whose steady-state hit ratio is `hit_ratio`."""
        if hit_ratio <= 0:
            return 0.0
        if hit_ratio >= 1:
            return float(self.rows)
        _, filling = crossing(lambda draws: self._steady_hit_ratio(draws) < hit_ratio, 1.0, 60)
        return min(float(self.rows), self.expected_distinct(filling))

    def _steady_hit_ratio(self, filling: float) -> float:
        """Che's hit ratio for the characteristic time `filling` (draws)."""
        hit = -np.expm1(filling * self._log_miss)
        return float(np.dot(self._mass, hit))

    def cold_lru_hits(self, draws: float, cache_rows: float) -> float:
        """Expected hits among `draws` draws of an LRU cache of `cache_rows` rows that starts empty: every
        distinct row misses once while the cache fills; once it is full (after T draws, the characteristic
        time of `lru_hit_ratio`), draws hit at the steady-state ratio."""
        if draws <= 0 or cache_rows <= 0:
            return 0.0
        distinct = self.expected_distinct(draws)
        if distinct <= cache_rows:
            return draws - distinct
        filling = self._filling_draws(cache_rows)
        return max(0.0, filling - cache_rows) + (draws - filling) * self._steady_hit_ratio(filling)

    def _filling_draws(self, cache_rows: float) -> float:
        """The draws after which `cache_rows` (< rows) distinct rows have been touched. Memoized: items cut by
        samples ask it for the same cache at every part size."""
        found = self._fillings.get(cache_rows)
        if found is None:
            found = self._fillings[cache_rows] = self._find_filling_draws(cache_rows)
        return found

    @cached_property
    def _fillings(self) -> dict[float, float]:
        return {}

    def _find_filling_draws(self, cache_rows: float) -> float:
        lo, hi = 0.0, 1.0
        while self.expected_distinct(hi) < cache_rows:
            hi *= 2.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if self.expected_distinct(mid) < cache_rows:
                lo = mid
            else:
                hi = mid
        return hi

    def touched_groups(self, draws: float, per_group: int) -> float:
        """Expected groups touched among `draws` draws, when ids are hashed into groups of `per_group` rows
        of random popularity ranks (pages, lines of page-table entries), treating a group's rows as
        independent: groups * (1 - (1 - distinct(draws) / rows) ** per_group)."""
        rows = float(self.counts.sum())
        k = max(1, per_group)
        return rows / k * -float(np.expm1(k * np.log1p(-min(self.expected_distinct(draws) / rows, 1.0 - 1e-16))))

    def group_miss_ratio(self, draws: float, per_group: int) -> float:
        """The rate at which new groups are touched after `draws` draws: under Che's approximation, the
        miss ratio of an LRU cache of groups whose characteristic time is `draws`."""
        step = max(1.0, 1e-3 * draws)
        new = self.touched_groups(draws + step, per_group) - self.touched_groups(draws, per_group)
        return float(min(1.0, max(0.0, new / step)))

    def page_miss_ratio(self, rows_per_page: int, entries: int) -> float:
        """Steady-state fraction of lookups whose page an LRU translation cache of `entries` pages misses,
        when ids are hashed (each page holds `rows_per_page` rows of random popularity ranks): the rate of
        new pages at the characteristic time, where the touched pages fill the translation cache."""
        if float(self.counts.sum()) / max(1, rows_per_page) <= entries:
            return 0.0
        _, hi = crossing(lambda draws: self.touched_groups(draws, rows_per_page) < entries, float(entries), 60)
        return self.group_miss_ratio(hi, rows_per_page)

    def top_mass(self, rows: float) -> float:
        """Fraction of lookups that fall on the `rows` hottest rows."""
        if rows <= 0:
            return 0.0
        cum_rows = np.cumsum(self.counts)
        mass = self.counts * self.probs
        full = cum_rows <= rows
        total = float(mass[full].sum())
        k = int(full.sum())
        if k < len(self.counts):
            already = float(cum_rows[k - 1]) if k else 0.0
            total += (rows - already) * float(self.probs[k])
        return min(1.0, total)


def histogram(distribution: AnyDistribution, rows: int) -> RankHistogram:
    if isinstance(distribution, Empirical):
        return _empirical(distribution, rows)
    if isinstance(distribution, Uniform) or rows == 1:
        return RankHistogram(np.array([float(rows)]), np.array([1.0 / rows]))
    if isinstance(distribution, HotSet):
        hot = min(distribution.hot_rows, rows)
        if hot == rows:
            return histogram(Uniform(), rows)
        buckets = [(hot, distribution.hot_mass / hot), (rows - hot, (1.0 - distribution.hot_mass) / (rows - hot))]
        buckets.sort(key=lambda b: -b[1])
        return RankHistogram(np.array([float(c) for c, _ in buckets]), np.array([p for _, p in buckets]))
    return _zipf(distribution.alpha, rows)


def _empirical(distribution: Empirical, rows: int) -> RankHistogram:
    """The measured histogram as it is: over fewer rows (a row cap, a row shard), its most popular ranks
    renormalised (`Empirical.capped`); over more, each bucket stretched in proportion (the same shape)."""
    if rows < distribution.rows:
        distribution = distribution.capped(rows)
    counts = np.array(distribution.counts, dtype=np.float64)
    probs = np.array(distribution.probs, dtype=np.float64)
    if rows > distribution.rows:
        stretch = rows / distribution.rows
        counts, probs = counts * stretch, probs / stretch
    return RankHistogram(counts, probs / float(np.dot(counts, probs)))


def _zipf(alpha: float, rows: int) -> RankHistogram:
    if rows <= EXACT_ZIPF_ROWS:
        weights = np.arange(1, rows + 1, dtype=np.float64) ** -alpha
        return RankHistogram(np.ones(rows), weights / weights.sum())
    head = np.arange(1, ZIPF_HEAD_ROWS + 1, dtype=np.float64)
    edges = [float(ZIPF_HEAD_ROWS + 1)]
    while edges[-1] < rows + 1:
        edges.append(max(edges[-1] + 1.0, np.floor(edges[-1] * ZIPF_BUCKET_RATIO)))
    edges[-1] = float(rows + 1)
    lo, hi = np.array(edges[:-1]), np.array(edges[1:])
    counts = hi - lo
    # Mass of ranks [lo, hi) approximated by the integral of x^-alpha over [lo - 1/2, hi - 1/2).
    if abs(alpha - 1.0) < 1e-12:
        tail_mass = np.log((hi - 0.5) / (lo - 0.5))
    else:
        tail_mass = ((hi - 0.5) ** (1 - alpha) - (lo - 0.5) ** (1 - alpha)) / (1 - alpha)
    counts_all = np.concatenate([np.ones(len(head)), counts])
    mass_all = np.concatenate([head**-alpha, tail_mass])
    mass_all /= mass_all.sum()
    return RankHistogram(counts_all, mass_all / counts_all)
