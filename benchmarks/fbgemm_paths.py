"""Which of FBGEMM's CPU paths is fastest: the one `embmap bench` uses as the `fbgemm-tbe` baseline.

On one workload's tables and fresh index batches (rows capped), with `torch.set_num_threads(cores)`, the p50
batch latency of:
- `SplitTableBatchedEmbeddingBagsCodegen` on `ComputeDevice.CPU`, forward under `torch.no_grad()`, with its
  default bounds check (WARNING) and with `BoundsCheckMode.NONE`;
- `torch.ops.fbgemm.split_embedding_codegen_forward_cpu`, the forward kernel that module calls on CPU, called
  directly (what `runtime.baselines` runs);
- `IntNBitTableBatchedEmbeddingBagsCodegen`, FBGEMM's inference module, with FP32 and FP16 weights
  (fp32 output);
- PyTorch's `embedding_bag` per table (the `torch` baseline), for reference.
Every path's output is checked against the reference lookup. The paths take turns in `--rounds` rounds.

Usage: python benchmarks/fbgemm_paths.py [--workload avazu] [--row-cap 1000000] [--batches 30] [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embmap.ir.spec import DType  # noqa: E402
from embmap.ir.targets import usable_cpus  # noqa: E402
from embmap.mapper.compiler import prepare_workload  # noqa: E402
from embmap.mapper.profiles import machine_key  # noqa: E402
from embmap.runtime.baselines import run_baseline  # noqa: E402
from embmap.runtime.data import check_outputs, materialize  # noqa: E402

WARMUP = 5


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workload", default="avazu")
    parser.add_argument("--row-cap", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import fbgemm_gpu  # noqa: F401
    import torch

    spec = prepare_workload(args.workload, row_cap=args.row_cap).effective()
    tables = spec.tables
    cores = len(usable_cpus())
    total = WARMUP + args.batches
    data = materialize(tables, spec.batch_size, total, seed=0, shared=False)
    torch.set_num_threads(cores)
    paths = {
        "SplitTableBatchedEmbeddingBagsCodegen, bounds check WARNING": _split_module(tables, data, total, none=False),
        "SplitTableBatchedEmbeddingBagsCodegen, bounds check NONE": _split_module(tables, data, total, none=True),
        "IntNBitTableBatchedEmbeddingBagsCodegen, FP32 weights": _int_nbit(tables, data, total, "FP32"),
        "IntNBitTableBatchedEmbeddingBagsCodegen, FP16 weights": _int_nbit(tables, data, total, "FP16"),
    }
    times: dict[str, list[float]] = {name: [] for name in paths}
    times["split_embedding_codegen_forward_cpu (the fbgemm-tbe baseline)"] = []
    times["torch embedding_bag per table (the torch baseline)"] = []
    for _ in range(args.rounds):
        for name, (step, outputs) in paths.items():
            with torch.no_grad():
                latencies = []
                for b in range(total):
                    start = time.perf_counter_ns()
                    step(b)
                    latencies.append((time.perf_counter_ns() - start) * 1e-9)
            # FP16 weights round the fp32 tables: judged with an fp16 table's tolerance
            judged = tuple(t.model_copy(update={"dtype": DType.FP16}) for t in tables) if "FP16" in name else tables
            ok, err, tol = check_outputs(judged, outputs(), data, total - 1)
            if not ok:
                raise SystemExit(f"{name}: wrong output (max error {err:.3g} > {tol:.3g})")
            times[name].append(float(np.median(latencies[WARMUP:])))
        for key, baseline in (
            ("split_embedding_codegen_forward_cpu (the fbgemm-tbe baseline)", "fbgemm-tbe"),
            ("torch embedding_bag per table (the torch baseline)", "torch"),
        ):
            report = run_baseline(baseline, tables, data, WARMUP, args.batches, cores)
            if not report.correct:
                raise SystemExit(f"{baseline}: wrong output")
            times[key].append(report.p50_s)
    print(
        f"{args.workload} ({len(tables)} tables, rows capped at {args.row_cap:,}), batch {spec.batch_size}, "
        f"{cores} threads; {machine_key()}; p50 batch latency, median and best of {args.rounds} rounds\n"
    )
    print("| path | median round | best round |")
    print("|---|---|---|")
    for name, ts in sorted(times.items(), key=lambda kv: statistics.median(kv[1])):
        print(f"| {name} | {statistics.median(ts) * 1e6:.1f} us | {min(ts) * 1e6:.1f} us |")


Path_ = tuple[Callable[[int], None], Callable[[], dict[str, np.ndarray]]]


def _split_module(tables, data, total: int, none: bool) -> Path_:  # type: ignore[no-untyped-def]
    import torch
    from fbgemm_gpu.split_embedding_configs import EmbOptimType, SparseType
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import BoundsCheckMode, EmbeddingLocation, PoolingMode
    from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
        ComputeDevice,
        SplitTableBatchedEmbeddingBagsCodegen,
    )

    tbe = SplitTableBatchedEmbeddingBagsCodegen(
        [(t.rows, t.dim, EmbeddingLocation.HOST, ComputeDevice.CPU) for t in tables],
        optimizer=EmbOptimType.EXACT_SGD,
        pooling_mode=PoolingMode.SUM,
        weights_precision=SparseType.FP32,
        output_dtype=SparseType.FP32,
        bounds_check_mode=BoundsCheckMode.NONE if none else BoundsCheckMode.WARNING,
    )
    with torch.no_grad():
        for w, t in zip(tbe.split_embedding_weights(), tables, strict=True):
            w.copy_(torch.from_numpy(data.tables[t.name].array))
    return _fused(tbe, tables, data, total)


def _int_nbit(tables, data, total: int, precision: str) -> Path_:  # type: ignore[no-untyped-def]
    import torch
    from fbgemm_gpu.split_embedding_configs import SparseType
    from fbgemm_gpu.split_table_batched_embeddings_ops_common import EmbeddingLocation, PoolingMode
    from fbgemm_gpu.split_table_batched_embeddings_ops_inference import IntNBitTableBatchedEmbeddingBagsCodegen

    sparse = SparseType.FP32 if precision == "FP32" else SparseType.FP16
    tbe = IntNBitTableBatchedEmbeddingBagsCodegen(
        [(t.name, t.rows, t.dim, sparse, EmbeddingLocation.HOST) for t in tables],
        pooling_mode=PoolingMode.SUM,
        device="cpu",
        output_dtype=SparseType.FP32,
    )
    tbe.initialize_weights()
    with torch.no_grad():
        for (w, _), t in zip(tbe.split_embedding_weights(), tables, strict=True):
            src = torch.from_numpy(data.tables[t.name].array)
            w.copy_(src.to(torch.float32 if precision == "FP32" else torch.float16).view(torch.uint8).view(w.shape))
    return _fused(tbe, tables, data, total, index_dtype=torch.int32)


def _fused(tbe, tables, data, total: int, index_dtype=None) -> Path_:  # type: ignore[no-untyped-def]
    import torch

    flat, offsets = [], []
    for b in range(total):  # every table's ids of the batch, one table after another, and offsets into them
        batches = [data.bags(t.name).batch(b) for t in tables]
        lengths = np.concatenate([np.diff(o) for _, o in batches])
        flat.append(torch.from_numpy(np.concatenate([ids for ids, _ in batches])))
        offsets.append(torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)))
    if index_dtype is not None:
        flat = [f.to(index_dtype) for f in flat]
        offsets = [o.to(index_dtype) for o in offsets]
    last: list[torch.Tensor] = []

    def step(b: int) -> None:
        last[:] = [tbe(flat[b], offsets[b])]

    def outputs() -> dict[str, np.ndarray]:
        out = last[0].float().numpy()
        bounds = np.concatenate([[0], np.cumsum([t.dim for t in tables])])
        return {t.name: out[:, bounds[k] : bounds[k + 1]] for k, t in enumerate(tables)}

    return step, outputs


if __name__ == "__main__":
    main()
