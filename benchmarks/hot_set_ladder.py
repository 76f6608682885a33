"""How a core overlaps its misses with its hits: hot-set ladders on the reference runtime.

A ladder is six tables of 512 MiB, alike but for the share h of their reads that hit 64 hot rows (0, 0.25,
0.5, 0.75, 0.9, 0.97); the other reads are uniform over the table and miss every cache. Each table is cut by
samples over all cores (GM), and each core runs the six in turn. For each ladder the script prints the
items' time (best run's median batch, the slower core) against h, and the window W for which
t(h) = F + M (1 - h^W) fits best (least squares over W on a grid; W = 1 is the linear model): the
measurement behind the cost model's `main_window_rows` (docs/calibration.md).

Usage: python benchmarks/hot_set_ladder.py [--ladders DIM:POOLING:SAMPLES ...] [--repeats N] [--batches N]
(needs about 3.5 GiB of free memory per ladder)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embmap.ir.module import Strategy  # noqa: E402
from embmap.ir.plan import PartitionMode
from embmap.mapper.calibration import HOT_MASSES, forced_plan, ladder_workload  # noqa: E402
from embmap.mapper.compiler import resolve_target  # noqa: E402
from embmap.mapper.profiles import default_profile  # noqa: E402
from embmap.runtime import RunConfig, run_interleaved  # noqa: E402

WINDOWS = np.arange(1.0, 16.01, 0.25)


def best_window(h: np.ndarray, t: np.ndarray) -> tuple[float, float, float]:
    """(W, rms at W, rms at W = 1) of the least-squares fit t = F + M (1 - h^W)."""

    def rms(w: float) -> float:
        a = np.c_[np.ones_like(h), 1.0 - h**w]
        coef, *_ = np.linalg.lstsq(a, t, rcond=None)
        return float(np.sqrt(np.mean((a @ coef - t) ** 2)))

    errors = [rms(w) for w in WINDOWS]
    i = int(np.argmin(errors))
    return float(WINDOWS[i]), errors[i], rms(1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ladders", nargs="*", default=["16:1:1024", "64:1:1024", "128:1:1024", "64:8:128", "64:32:32"]
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=30)
    args = parser.parse_args()
    target = resolve_target("cpu")
    masses = np.array([0.0, *HOT_MASSES])
    print(f"| dim, pooling | {' | '.join(f'h = {h:g}' for h in masses)} | best window W | rms at W | rms, linear |")
    print(f"|---|{'---|' * len(masses)}---|---|---|")
    for spec in args.ladders:
        dim, pooling, samples = (int(v) for v in spec.split(":"))
        w = ladder_workload(target, dim, pooling, samples)
        plan, _ = forced_plan(
            w, target, default_profile(target), Strategy.GM, PartitionMode.SAMPLES, target.cores, "ladder"
        )
        reports = run_interleaved([plan], RunConfig(batches=args.batches, warmup=5), args.repeats)[0]
        times = np.array(
            [
                max(min(r.item_p50_s(it.id) for r in reports) for it in plan.items if it.table == t.name)
                for t in w.tables
            ]
        )
        window, at_w, linear = best_window(masses, times * 1e6)
        cells = " | ".join(f"{v * 1e6:.1f} us" for v in times)
        print(f"| {dim}, {pooling} | {cells} | {window:g} | {at_w:.2f} us | {linear:.2f} us |")


if __name__ == "__main__":
    main()
