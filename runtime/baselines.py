"""What a CPU user runs instead of a plan: the yardsticks a plan is measured against, on the same data.

`torch`: PyTorch's `embedding_bag` (mode sum) per table, with `torch.set_num_threads(cores)`, as an unsharded
EmbeddingBagCollection runs. `fbgemm-tbe`: `torch.ops.fbgemm.split_embedding_codegen_forward_cpu`, FBGEMM's
fused forward that `SplitTableBatchedEmbeddingBagsCodegen` calls on CPU, without the module's Python wrapper
(`benchmarks/fbgemm_paths.py` shows it is FBGEMM's fastest CPU path), its indices laid out before timing as a
KeyedJaggedTensor would arrive. Both read the jagged index batches as they are (each sample's own number of
ids, offsets into them, as a KeyedJaggedTensor holds them) and run the plan's index batches on the same table memory (TBE on its own
copy, on huge pages too), timed per batch, their last outputs checked against the reference lookup.
Both sum in fp32; `embedding_bag` returns an fp16 table's sums rounded to fp16 (what a user of it gets), and
is checked against the bound of that: the fp32 sum's rounding plus one rounding to fp16. TBE writes fp32.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from embmap.ir.spec import DType, TableSpec
from embmap.runtime.data import Materialized, check_outputs, huge_page_array

FRAMEWORKS = ("torch", "fbgemm-tbe")


def available(name: str) -> bool:
    """Whether this machine can run the baseline (torch, and for fbgemm-tbe FBGEMM's GPU-less build)."""
    if importlib.util.find_spec("torch") is None:
        return False
    if name == "fbgemm-tbe":
        return importlib.util.find_spec("fbgemm_gpu") is not None
    return name == "torch"


@dataclass(frozen=True)
class BaselineReport:
    """Measured batch latencies of one baseline run, and whether its outputs were right."""

    name: str
    threads: int
    batches: int
    correct: bool
    max_abs_error: float
    tolerance: float
    e2e_s: tuple[float, ...]  # per measured batch

    @property
    def p50_s(self) -> float:
        return float(np.percentile(self.e2e_s, 50))


@dataclass
class Baseline:
    """A baseline set up once on materialized data (its weights laid out, its index batches flattened), run
    as often as wanted: each run times `warmup + batches` batches, cycling through the index batches."""

    name: str
    tables: tuple[TableSpec, ...]
    data: Materialized
    threads: int
    step: Callable[[int], None]
    outputs: Callable[[], dict[str, np.ndarray]]
    rounded_to: dict[str, DType]  # the tables whose fp32 sums the framework stores in a narrower dtype

    def run(self, warmup: int, batches: int) -> BaselineReport:
        import torch

        index_batches = self.data.index_batches()
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.inference_mode():
                e2e = []
                for b in range(warmup + batches):
                    start = time.perf_counter_ns()
                    self.step(b % index_batches)
                    e2e.append((time.perf_counter_ns() - start) * 1e-9)
                last = (warmup + batches - 1) % index_batches
                correct, err, tol = check_outputs(self.tables, self.outputs(), self.data, last, self.rounded_to)
        finally:
            torch.set_num_threads(before)
        return BaselineReport(self.name, self.threads, batches, correct, err, tol, tuple(e2e[warmup:]))


def prepare_baseline(name: str, tables: tuple[TableSpec, ...], data: Materialized, threads: int) -> Baseline:
    """Set `name` up over the materialized tables and index batches, to run with `threads` threads."""
    if name not in FRAMEWORKS:
        raise ValueError(f"unknown baseline {name!r}; known: {', '.join(FRAMEWORKS)}")
    index_batches = data.index_batches()
    step, outputs = (_torch if name == "torch" else _fbgemm_tbe)(tables, data, index_batches)
    # embedding_bag's output has the table's dtype; TBE is asked for fp32 output
    rounded_to = {t.name: t.dtype for t in tables} if name == "torch" else {}
    return Baseline(name, tables, data, threads, step, outputs, rounded_to)


def run_baseline(
    name: str, tables: tuple[TableSpec, ...], data: Materialized, warmup: int, batches: int, threads: int
) -> BaselineReport:
    """Set up and run `name` once."""
    return prepare_baseline(name, tables, data, threads).run(warmup, batches)


Step = Callable[[int], None]  # run one batch, of this index batch
Outputs = Callable[[], dict[str, np.ndarray]]  # the last batch's pooled outputs, by table


def _torch(tables: tuple[TableSpec, ...], data: Materialized, index_batches: int) -> tuple[Step, Outputs]:
    import torch
    import torch.nn.functional as F  # noqa: N812

    weights = [torch.from_numpy(data.tables[t.name].array) for t in tables]
    # per index batch and table: (ids, offsets [batch + 1] from 0), laid out before timing
    bags = [
        [tuple(torch.from_numpy(a) for a in data.bags(t.name).batch(b)) for t in tables] for b in range(index_batches)
    ]
    last: list[Any] = []

    def step(b: int) -> None:
        last[:] = [
            F.embedding_bag(ids, w, offsets, mode="sum", include_last_offset=True)
            for w, (ids, offsets) in zip(weights, bags[b], strict=True)
        ]

    def outputs() -> dict[str, np.ndarray]:
        return {t.name: out.float().numpy() for t, out in zip(tables, last, strict=True)}

    return step, outputs


def _fbgemm_tbe(tables: tuple[TableSpec, ...], data: Materialized, index_batches: int) -> tuple[Step, Outputs]:
    import fbgemm_gpu  # noqa: F401  (registers torch.ops.fbgemm)
    import torch

    dtypes = {t.dtype for t in tables}
    if len(dtypes) != 1 or not dtypes <= {DType.FP32, DType.FP16}:
        raise ValueError("fbgemm-tbe needs every table in one dtype, fp32 or fp16 (TBE has one weights precision)")
    np_dtype = np.float32 if DType.FP32 in dtypes else np.float16
    sizes = [t.rows * t.dim for t in tables]
    flat = huge_page_array((sum(sizes),), np_dtype)
    offsets_of_tables = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    for t, at, n in zip(tables, offsets_of_tables, sizes, strict=True):
        flat[at : at + n] = data.tables[t.name].array.reshape(-1)
    weights = torch.from_numpy(flat)
    weights_offsets = torch.from_numpy(offsets_of_tables)
    d_offsets = torch.tensor(np.concatenate([[0], np.cumsum([t.dim for t in tables])]), dtype=torch.int32)
    total_d = int(d_offsets[-1])
    hash_size_cumsum = torch.tensor(np.concatenate([[0], np.cumsum([t.rows for t in tables])]), dtype=torch.int64)
    # per index batch: every table's ids one table after another, and offsets [tables * batch + 1] into them
    flat_indices, flat_offsets = [], []
    for b in range(index_batches):
        batches = [data.bags(t.name).batch(b) for t in tables]
        lengths = np.concatenate([np.diff(offsets) for _, offsets in batches])
        flat_indices.append(torch.from_numpy(np.concatenate([ids for ids, _ in batches])))
        flat_offsets.append(torch.from_numpy(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)))
    forward = torch.ops.fbgemm.split_embedding_codegen_forward_cpu
    last: list[Any] = []

    def step(b: int) -> None:
        # pooling mode 0 (sum), no per-sample weights, output dtype 0 (fp32)
        last[:] = [
            forward(
                weights,
                weights_offsets,
                d_offsets,
                total_d,
                hash_size_cumsum,
                flat_indices[b],
                flat_offsets[b],
                0,
                None,
                0,
            )
        ]

    def outputs() -> dict[str, np.ndarray]:
        out = last[0].numpy()
        bounds = d_offsets.tolist()
        return {t.name: out[:, bounds[k] : bounds[k + 1]] for k, t in enumerate(tables)}

    return step, outputs
