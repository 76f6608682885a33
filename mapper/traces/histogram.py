"""Counting ids and compressing what was counted into an empirical rank histogram.

`IdCounter` counts the ids of one table chunk by chunk (a dense `np.bincount` for tables of up to
`DENSE_ROWS` rows, else sorted unique ids and their counts, merged), so memory grows with the distinct ids,
never with the trace. `RankCounts` is what it counted, as a count of counts: `values[i]` lookups were made
of each of `rows_with[i]` rows, lossless for ranks (rows read equally often are alike). From it:

- `smoothed`, the probability of one row of each count value. A row read r times of N lookups has frequency
  r / N, an unbiased estimate of its probability when r is large. Rows read rarely (r < `GOOD_TURING_BELOW`)
  are the lucky ones among many rarer rows, and r / N overstates them: they get Good-Turing's
  r* = (r + 1) n_{r+1} / n_r instead (n_r: rows read r times), and the rows never read share the mass of
  the rows read once, n_1 / N (at most half of the rare rows' mass), so every row of the table has a
  positive probability. The rare rows and the unseen ones share what the often read rows leave; the often
  read rows keep their frequencies exactly (scaling them all down instead would shift the head's mass,
  which decides the hit ratio of small caches, by the unseen mass: points of hit ratio on short traces).
- `empirical`, those buckets compressed to at most a given number: grouped by geometric bins of
  probability, [p0 / b^(k+1), p0 / b^k), with the smallest ratio b that leaves few enough non-empty bins, so
  every row of a bucket is within a factor b of the others. A bucket keeps its rows and its lookups (its
  probability is their mean): the total mass is exact; only the spread inside a bucket is lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from embmap.ir.distributions import RankHistogram
from embmap.ir.spec import MAX_BUCKETS, Empirical

DENSE_ROWS = 1 << 21  # tables of up to this many rows are counted in one array (16 MiB of counts)
MERGE_IDS = 1 << 22  # sparse counting merges its pending chunks once they hold this many entries
GOOD_TURING_BELOW = 10  # rows read fewer times than this get Good-Turing estimates
FIT_MIN_COUNT = 5  # the Zipf fit reads ranks seen at least this often (rarer ones are mostly noise)


@dataclass(frozen=True)
class RankCounts:
    """A table's measured popularity: `rows_with[i]` rows were each read `values[i]` times (values
    decreasing), `lookups` in all; `max_id` the largest id seen (-1 if none)."""

    values: np.ndarray
    rows_with: np.ndarray
    lookups: int
    max_id: int

    @property
    def seen_rows(self) -> int:
        return int(self.rows_with.sum())

    def lossless(self, rows: int) -> RankHistogram:
        """The histogram before compression: one bucket per count value, the unseen rows as one more."""
        counts, probs = smoothed(self, rows)
        return RankHistogram(counts, probs)


class IdCounter:
    """Counts the ids of one table, chunk by chunk."""

    def __init__(self, rows: int | None) -> None:
        self._dense = np.zeros(rows, dtype=np.int64) if rows is not None and rows <= DENSE_ROWS else None
        self._ids = np.zeros(0, dtype=np.int64)
        self._counts = np.zeros(0, dtype=np.int64)
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []
        self._pending_size = 0
        self.lookups = 0
        self.max_id = -1

    def add(self, ids: np.ndarray) -> None:
        """Count `ids` (non-negative, below the table's rows: checked by the reader)."""
        if ids.size == 0:
            return
        self.lookups += int(ids.size)
        self.max_id = max(self.max_id, int(ids.max()))
        if self._dense is not None:
            self._dense += np.bincount(ids, minlength=self._dense.size)
            return
        unique, counts = np.unique(ids, return_counts=True)
        self._pending.append((unique, counts.astype(np.int64)))
        self._pending_size += unique.size
        if self._pending_size > max(MERGE_IDS, 2 * self._ids.size):
            self._merge()

    def _merge(self) -> None:
        if not self._pending:
            return
        ids = np.concatenate([self._ids, *(u for u, _ in self._pending)])
        counts = np.concatenate([self._counts, *(c for _, c in self._pending)])
        self._ids, inverse = np.unique(ids, return_inverse=True)
        self._counts = np.bincount(inverse, weights=counts).astype(np.int64)
        self._pending, self._pending_size = [], 0

    def result(self) -> RankCounts:
        if self._dense is not None:
            per_row = self._dense[self._dense > 0]
        else:
            self._merge()
            per_row = self._counts
        values, rows_with = np.unique(per_row, return_counts=True)
        return RankCounts(values[::-1].astype(np.int64), rows_with[::-1].astype(np.int64), self.lookups, self.max_id)


def smoothed(counts: RankCounts, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, probability of one row) of every count value, and of the rows never read, most popular first:
    the module docstring's estimate (raw frequencies for rows read often, Good-Turing below)."""
    values = counts.values.astype(np.float64)
    rows_of = counts.rows_with.astype(np.float64)
    probs = values / counts.lookups
    low = counts.values < GOOD_TURING_BELOW
    n_of = dict(zip(counts.values.tolist(), counts.rows_with.tolist(), strict=True))
    for i in np.flatnonzero(low):  # r* = (r + 1) n_{r+1} / n_r, where rows were read r + 1 times
        r = int(counts.values[i])
        if n_of.get(r + 1):
            probs[i] = (r + 1) * n_of[r + 1] / n_of[r] / counts.lookups
    unseen_rows = rows - counts.seen_rows
    low_raw = float(np.dot(rows_of[low], values[low])) / counts.lookups
    unseen = 0.0
    if unseen_rows > 0:  # Good-Turing: the mass of the unseen is that of the rows read once
        unseen = max(n_of.get(1, 0), 1) / counts.lookups
        unseen = min(unseen, 0.5 * low_raw) if low_raw > 0 else unseen
    head = float(np.dot(rows_of[~low], probs[~low]))
    low_mass = float(np.dot(rows_of[low], probs[low]))
    if low_mass > 0:  # the rarely read rows and the unseen share what the often read ones leave
        probs[low] *= (1.0 - head - unseen) / low_mass
    else:
        probs *= (1.0 - unseen) / head
    if unseen_rows > 0:
        rows_of = np.append(rows_of, float(unseen_rows))
        probs = np.append(probs, unseen / unseen_rows)
    order = np.argsort(-probs, kind="stable")
    return rows_of[order], probs[order]


def empirical(counts: RankCounts, rows: int, buckets: int = MAX_BUCKETS) -> Empirical:
    """The measured popularity of a table of `rows` rows as at most `buckets` buckets (module docstring)."""
    if not 1 <= buckets <= MAX_BUCKETS:
        raise ValueError(f"buckets must be 1 to {MAX_BUCKETS}, got {buckets}")
    rows_of, probs = smoothed(counts, rows)
    bins = _bins(probs, buckets)
    rows_in = np.bincount(bins, weights=rows_of)
    mass = np.bincount(bins, weights=rows_of * probs)
    probs = mass / rows_in / math.fsum(mass)
    return Empirical(
        counts=tuple(int(round(c)) for c in rows_in), probs=tuple(float(p) for p in probs), alpha=fit_alpha(counts)
    )


def _bins(probs: np.ndarray, most: int) -> np.ndarray:
    """The geometric bin of each probability (decreasing probabilities get non-decreasing bins from 0), with
    the smallest ratio that leaves at most `most` non-empty bins, numbered without gaps."""
    if probs.size <= most:
        return np.arange(probs.size, dtype=np.int64)
    logs = np.log(probs)
    spread = float(logs[0] - logs[-1])

    def binned(log_ratio: float) -> np.ndarray:
        out: np.ndarray = np.floor((logs[0] - logs) / log_ratio + 1e-9).astype(np.int64)
        return out

    lo, hi = 0.0, spread + 1.0  # at hi every probability falls in one bin
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if np.unique(binned(mid)).size <= most:
            hi = mid
        else:
            lo = mid
    return np.unique(binned(hi), return_inverse=True)[1].astype(np.int64)


def fit_alpha(counts: RankCounts) -> float | None:
    """A Zipf exponent fitted to the measured ranks, for display: the least-squares slope of log(count)
    against log(rank) over the count values read at least `FIT_MIN_COUNT` times (each at its middle rank)."""
    ends = np.cumsum(counts.rows_with)
    starts = ends - counts.rows_with + 1
    keep = counts.values >= FIT_MIN_COUNT
    if int(keep.sum()) < 3:
        keep = counts.values >= 1
    if int(keep.sum()) < 2:
        return None
    x = 0.5 * (np.log(starts[keep]) + np.log(ends[keep]))
    y = np.log(counts.values[keep].astype(np.float64))
    slope = float(np.polyfit(x, y, 1)[0])
    return round(min(5.0, max(0.0, -slope)), 3)
