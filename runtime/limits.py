"""This machine's physical limits for embedding lookups, measured on all cores with the native extension.

- copy: STREAM's copy (each core copies its slice of a large array); bytes read plus bytes written per second.
- gather: each core sums rows of a table far larger than the shared cache at random (uniform) indices, every
  line of a row prefetched some lookups ahead; the best over a few prefetch distances. Bytes of rows per second,
  per row size: what a plan whose rows all come from main memory could reach at most.

A plan's gathered bytes per second over the gather limit of its row size says how much of the machine it
uses; above 100% means the caches served part of its rows.
"""

from __future__ import annotations

import errno
from dataclasses import dataclass

import numpy as np

from embmap.ir.targets import usable_cpus
from embmap.runtime import native
from embmap.runtime.data import huge_page_array, memory_refused

ROW_DIMS = (16, 32, 64, 128)  # fp32 rows of 64 to 512 bytes
PREFETCH_DISTANCES = (0, 8, 16, 32)


@dataclass(frozen=True)
class Limits:
    cores: int
    copy_bytes_per_s: float
    gather_bytes_per_s: dict[int, float]  # by row bytes
    table_bytes: int

    def gather_limit(self, row_bytes: float) -> float:
        """The gather limit at this row size, interpolated (log-log) between the measured sizes."""
        sizes = sorted(self.gather_bytes_per_s)
        x = np.log(np.clip(row_bytes, sizes[0], sizes[-1]))
        return float(np.exp(np.interp(x, np.log(sizes), np.log([self.gather_bytes_per_s[s] for s in sizes]))))

    def text(self) -> str:
        gathers = ", ".join(f"{b} B rows {v / 1e9:.1f} GB/s" for b, v in sorted(self.gather_bytes_per_s.items()))
        return (
            f"{self.cores} cores: copy {self.copy_bytes_per_s / 1e9:.1f} GB/s; random gather from a "
            f"{self.table_bytes >> 20} MiB table: {gathers}"
        )


def measure(
    table_bytes: int = 2 << 30, lookups: int = 1 << 20, repeats: int = 3, cpus: list[int] | None = None
) -> Limits:
    """Measure both limits on `cpus` (default: every usable CPU)."""
    if not native.available():
        raise native.not_built()
    assert native.NATIVE is not None
    cpus = cpus if cpus is not None else usable_cpus()
    try:
        src = huge_page_array((table_bytes,), np.uint8)
        src[:] = 1
        dst = huge_page_array((table_bytes,), np.uint8)
        dst[:] = 0
    except (MemoryError, OSError) as exc:
        if isinstance(exc, OSError) and exc.errno not in (errno.ENOMEM, errno.EAGAIN):
            raise
        what = "the arrays the machine's limits are measured on"
        raise memory_refused(2 * table_bytes, what, "measure on a smaller table") from None
    copy = 2 * table_bytes / native.NATIVE.copy_seconds(src, dst, cpus, repeats)
    del dst
    rng = np.random.default_rng(0)
    gathers = {}
    for dim in ROW_DIMS:
        rows = table_bytes // (dim * 4)
        table = src.view(np.float32).reshape(rows, dim)
        idx = rng.integers(0, rows, size=lookups, dtype=np.int64)
        best = min(native.NATIVE.gather_seconds(table, idx, cpus, d, repeats) for d in PREFETCH_DISTANCES)
        gathers[dim * 4] = lookups * dim * 4 / best
    return Limits(len(cpus), copy, gathers, table_bytes)
