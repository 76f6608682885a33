"""Runtime overhead: a one-task plan through the runtime vs calling the same kernel directly.

Both sides run the same kernel (`runtime.kernels.build_kernel`) on the same shared tables and index batches,
pinned to the same CPU with one torch thread; the direct side is a plain loop in this process. The runtime
side is the plan's end-to-end batch latency (barriers, output zeroing and timing included). Medians over the
same number of batches, measured back to back in one run.

Usage: python benchmarks/runtime_overhead.py [--batches 200]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cost_models import preset_profile  # noqa: E402
from ir.module import PartitionMode, Strategy  # noqa: E402
from ir.printer import fmt_s  # noqa: E402
from ir.spec import TableSpec, Uniform  # noqa: E402
from ir.targets import cpu  # noqa: E402
from mapper.calibration import GridPoint, point_plan  # noqa: E402
from runtime import RunConfig, run_plan  # noqa: E402
from runtime.data import materialize  # noqa: E402
from runtime.executor import usable_cpus  # noqa: E402
from runtime.kernels import ItemData, backend_name, build_kernel  # noqa: E402

CASES = [  # (rows, dim, batch, pooling, strategy)
    (1_000_000, 64, 2048, 8, Strategy.GM),
    (100_000, 32, 1024, 4, Strategy.GM),
    (2_000, 16, 1024, 1, Strategy.L1),
    (4_000, 16, 512, 2, Strategy.L1_UB),
]


def direct(plan, batches: int, index_batches: int) -> float:  # type: ignore[no-untyped-def]
    backend = backend_name("auto")
    if backend == "torch":
        import torch

        torch.set_num_threads(1)
    t = plan.workload.tables[0]
    data = materialize(plan.workload.tables, plan.workload.batch_size, index_batches, seed=0)
    try:
        it = plan.items[0]
        kernel = build_kernel(
            it,
            ItemData(
                t,
                data.tables[t.name].array,
                data.indices[t.name].array,
                data.outputs[t.name].array,
                plan.target.scratch.capacity_bytes,
            ),
            backend,
        )
        times = []
        for b in range(batches + 5):
            start = time.perf_counter_ns()
            kernel(b % index_batches)
            times.append(time.perf_counter_ns() - start)
        return float(np.median(times[5:])) * 1e-9
    finally:
        data.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    args = parser.parse_args()
    os.sched_setaffinity(0, {usable_cpus()[0]})
    target = cpu().model_copy(update={"cores": 1})
    print("| table | strategy | lookups | direct p50 | runtime p50 | ratio |")
    print("|---|---|---|---|---|---|")
    for rows, dim, batch, pooling, strategy in CASES:
        table = TableSpec(name="t", rows=rows, dim=dim, pooling=pooling, distribution=Uniform())
        plan, _ = point_plan(
            GridPoint(table, batch, strategy, PartitionMode.SAMPLES, 1), target, preset_profile(target)
        )
        d = direct(plan, args.batches, 8)
        r = run_plan(plan, RunConfig(batches=args.batches, warmup=5, index_batches=8)).p50_s
        print(
            f"| {rows:,} x {dim} | {strategy.value} | {batch * pooling:,} | {fmt_s(d)} | {fmt_s(r)} | {r / d:.2f}x |",
            flush=True,
        )


if __name__ == "__main__":
    main()
