"""The native GM kernel against PyTorch's `embedding_bag` (mode sum), one thread each, on the same table and
jagged index batches: the per-lookup speed of the kernel itself, without any executor.

For each row width x pooling factor x distribution (uniform; hot rows: 90% of lookups on 16 rows, where the
rows come from the core's caches and the adds decide the time), a 1M-row fp32 table and a batch of 1024: the
compiled GM kernel called in a loop (`runtime.native.kernel_loop`, pinned) and `torch.nn.functional.embedding_bag`
on one intra-op thread, pinned to the same CPU, in `--rounds` rounds that take turns. Prints each side's p50
batch time and the median over rounds of native / torch in the same round.

Usage: python benchmarks/kernel_vs_torch.py [--dims 16 32 64 128] [--poolings 1 2 8 32 100] [--rounds 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.runtime_overhead import INDEX_BATCHES, WARMUP, native_direct  # noqa: E402
from embmap.cost_models import preset_profile  # noqa: E402
from embmap.ir.module import Strategy  # noqa: E402
from embmap.ir.plan import PartitionMode  # noqa: E402
from embmap.ir.printer import fmt_s  # noqa: E402
from embmap.ir.spec import HotSet, TableSpec, Uniform  # noqa: E402
from embmap.ir.targets import cpu  # noqa: E402
from embmap.mapper.calibration import GridPoint, point_plan  # noqa: E402
from embmap.runtime import RunConfig, materialize_for  # noqa: E402
from embmap.runtime.executor import usable_cpus  # noqa: E402

DISTRIBUTIONS = {"uniform": Uniform(), "hot-rows": HotSet(hot_rows=16, hot_mass=0.9)}


def main() -> None:
    import torch
    import torch.nn.functional as F  # noqa: N812

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, nargs="+", default=[16, 32, 64, 128])
    parser.add_argument("--poolings", type=int, nargs="+", default=[1, 2, 8, 32, 100])
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    core = usable_cpus()[0]
    os.sched_setaffinity(0, {core})
    torch.set_num_threads(1)
    target = cpu().model_copy(update={"cores": 1})
    print(
        f"1,000,000 x dim fp32, batch 1024, {args.batches} batches per run, {args.rounds} rounds, one thread on cpu {core}\n"
    )
    print("| dim | pooling | distribution | native p50 | torch p50 | native / torch |")
    print("|---|---|---|---|---|---|")
    ratios = []
    for dim in args.dims:
        for pooling in args.poolings:
            for name, dist in DISTRIBUTIONS.items():
                table = TableSpec(name="t", rows=1_000_000, dim=dim, pooling=pooling, distribution=dist)
                point = GridPoint(table, 1024, Strategy.GM, PartitionMode.SAMPLES, 1)
                plan, _ = point_plan(point, target, preset_profile(target))
                config = RunConfig(batches=args.batches, warmup=WARMUP, index_batches=INDEX_BATCHES)
                data = materialize_for(plan, config)
                try:
                    weights = torch.from_numpy(data.tables["t"].array)
                    bags = [tuple(torch.from_numpy(a) for a in data.bags("t").batch(b)) for b in range(INDEX_BATCHES)]
                    pairs = []
                    for _ in range(args.rounds):
                        native_s = native_direct(plan, data, args.batches)
                        times = []
                        for b in range(WARMUP + args.batches):
                            ids, offsets = bags[b % INDEX_BATCHES]
                            start = time.perf_counter_ns()
                            F.embedding_bag(ids, weights, offsets, mode="sum", include_last_offset=True)
                            times.append(time.perf_counter_ns() - start)
                        pairs.append((native_s, float(np.median(times[WARMUP:])) * 1e-9))
                finally:
                    data.close()
                ratio = statistics.median(n / t for n, t in pairs)
                ratios.append(ratio)
                print(
                    f"| {dim} | {pooling} | {name} | {fmt_s(statistics.median(p[0] for p in pairs))} "
                    f"| {fmt_s(statistics.median(p[1] for p in pairs))} | {ratio:.2f}x |",
                    flush=True,
                )
    print(
        f"\nnative / torch over {len(ratios)} cases: median {statistics.median(ratios):.2f}x, worst {max(ratios):.2f}x"
    )


if __name__ == "__main__":
    main()
