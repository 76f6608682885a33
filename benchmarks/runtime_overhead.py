"""Runtime overhead: a one-item plan through an executor vs calling the same kernel directly.

For each case, on the same tables and index batches, pinned to the same CPU:
- native: `run_plan` on the native executor (its thread, barrier and per-item timing included) against the
  same compiled kernel called in a loop (`runtime.native.kernel_loop`);
- reference: `run_plan` on the reference executor (a worker process, barriers, output zeroing) against its
  Python kernel (`runtime.kernels.build_kernel`) called in a loop, one torch thread.
Each side's p50 batch latency, in `--rounds` rounds that take turns; the ratio is the median over rounds of
runtime / direct in the same round.

Usage: python benchmarks/runtime_overhead.py [--batches 200] [--rounds 5]
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

from embmap.cost_models import preset_profile  # noqa: E402
from embmap.ir.module import Strategy  # noqa: E402
from embmap.ir.plan import (
    ExecutionPlan,  # noqa: E402
    PartitionMode,
)
from embmap.ir.printer import fmt_s  # noqa: E402
from embmap.ir.spec import TableSpec, Uniform  # noqa: E402
from embmap.ir.targets import cpu  # noqa: E402
from embmap.mapper.calibration import GridPoint, point_plan  # noqa: E402
from embmap.runtime import RunConfig, materialize_for, native, run_plan  # noqa: E402
from embmap.runtime.data import Materialized  # noqa: E402
from embmap.runtime.executor import usable_cpus  # noqa: E402
from embmap.runtime.kernels import ItemData, backend_name, build_kernel  # noqa: E402

CASES = [  # (rows, dim, batch, pooling, strategy)
    (1_000_000, 64, 2048, 8, Strategy.GM),
    (100_000, 32, 1024, 4, Strategy.GM),
    (2_000, 16, 1024, 1, Strategy.L1),
    (4_000, 16, 512, 2, Strategy.L1_UB),
]
INDEX_BATCHES = 8
WARMUP = 5


def native_direct(plan: ExecutionPlan, data: Materialized, batches: int) -> float:
    t, it = plan.workload.tables[0], plan.items[0]
    seconds = native.kernel_loop(
        data.tables[t.name].array,
        t.dtype,
        data.indices[t.name].array,
        data.offsets[t.name].array,
        data.outputs[t.name].array,
        it.strategy.value,
        it.rows,
        it.samples,
        plan.target.scratch.capacity_bytes,
        usable_cpus()[0],
        WARMUP + batches,
    )
    return float(np.median(seconds[WARMUP:]))


def reference_direct(plan: ExecutionPlan, data: Materialized, batches: int) -> float:
    backend = backend_name("auto")
    if backend == "torch":
        import torch

        torch.set_num_threads(1)
    t, it = plan.workload.tables[0], plan.items[0]
    item_data = ItemData(
        t,
        data.tables[t.name].array,
        data.indices[t.name].array,
        data.offsets[t.name].array,
        data.outputs[t.name].array,
        plan.target.scratch.capacity_bytes,
    )
    kernel = build_kernel(it, item_data, backend)
    times = []
    for b in range(WARMUP + batches):
        start = time.perf_counter_ns()
        kernel(b % INDEX_BATCHES)
        times.append(time.perf_counter_ns() - start)
    return float(np.median(times[WARMUP:])) * 1e-9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    os.sched_setaffinity(0, {usable_cpus()[0]})
    target = cpu().model_copy(update={"cores": 1})
    print(f"{args.batches} batches per run, {args.rounds} rounds; ratio: median over rounds of runtime / direct\n")
    print("| table | strategy | lookups | executor | direct p50 | runtime p50 | ratio |")
    print("|---|---|---|---|---|---|---|")
    for rows, dim, batch, pooling, strategy in CASES:
        table = TableSpec(name="t", rows=rows, dim=dim, pooling=pooling, distribution=Uniform())
        plan, _ = point_plan(
            GridPoint(table, batch, strategy, PartitionMode.SAMPLES, 1), target, preset_profile(target)
        )
        for executor, direct in (("native", native_direct), ("reference", reference_direct)):
            config = RunConfig(
                batches=args.batches, warmup=WARMUP, index_batches=INDEX_BATCHES, backend=_backend(executor)
            )
            data = materialize_for(plan, config)
            try:
                pairs = [
                    (direct(plan, data, args.batches), run_plan(plan, config, data).p50_s) for _ in range(args.rounds)
                ]
            finally:
                data.close()
            d = statistics.median(p[0] for p in pairs)
            r = statistics.median(p[1] for p in pairs)
            ratio = statistics.median(p[1] / p[0] for p in pairs)
            print(
                f"| {rows:,} x {dim} | {strategy.value} | {batch * pooling:,} | {executor} | {fmt_s(d)} | {fmt_s(r)} "
                f"| {ratio:.2f}x |",
                flush=True,
            )


def _backend(executor: str) -> str:
    return "native" if executor == "native" else backend_name("auto")


if __name__ == "__main__":
    main()
