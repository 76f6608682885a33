"""The native executor: a plan's items run in compiled code (`runtime/_native.cpp`), one pinned thread per core.

Python lays the plan out as flat arrays once; the extension then runs every batch with nothing in Python
inside the timed loop, and returns when the cores have finished: per batch and core, when the core started
and ended, and per batch and item, its time. Tables, index batches and outputs are ordinary arrays of this
process (the threads share them), so a native run needs no shared memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from embmap.ir.errors import ResourceError
from embmap.ir.plan import ExecutionPlan
from embmap.ir.spec import DType

try:
    from embmap.runtime import _native as _ext  # type: ignore[attr-defined]

    NATIVE: ModuleType | None = _ext
except ImportError:  # pragma: no cover - the extension is built by `pip install`; absent only in a broken install
    NATIVE = None

STRATEGY_CODES = {"GM": 0, "L1": 1, "GM-UB": 2, "L1-UB": 3}
DTYPE_CODES = {DType.FP32: 0, DType.FP16: 1}
SPIN_S = 100e-6  # a core waiting at the batch barrier spins this long, then sleeps until the last core arrives


def available() -> bool:
    return NATIVE is not None


def not_built() -> ResourceError:
    """The one-line error for a run that needs the extension where the install did not build it."""
    return ResourceError(
        "native executor",
        "is not built in this install (runtime/_native.cpp was not compiled)",
        "reinstall embmap with a C++ compiler present (pip install -e .), or run with --backend numpy",
    )


def vector_isa() -> str:
    """The vector instructions the extension was compiled for (avx512, avx2 or scalar)."""
    return str(NATIVE.VECTOR_ISA) if NATIVE is not None else "none"


@dataclass(frozen=True)
class Timings:
    """What the cores recorded: int64 nanoseconds, warm-up batches included."""

    starts: np.ndarray  # [batches, cores]: when the core began the batch
    ends: np.ndarray  # [batches, cores]: when it finished its last item
    items: np.ndarray  # [batches, items]: each item's time, by item id


def plan_arrays(plan: ExecutionPlan) -> tuple[dict[str, int], np.ndarray, list[list[int]]]:
    """(table index by name, items as int64 [n, 8], each core's item rows in execution order)."""
    table_of = {t.name: i for i, t in enumerate(plan.workload.tables)}
    items = np.array(
        [
            (
                it.id,
                table_of[it.table],
                STRATEGY_CODES[it.strategy.value],
                it.rows[0],
                it.rows[1],
                it.samples[0],
                it.samples[1],
                it.output == "accumulate",
            )
            for it in plan.items
        ],
        dtype=np.int64,
    ).reshape(-1, 8)
    row_of = {it.id: row for row, it in enumerate(plan.items)}
    order = [[row_of[i] for i in core.items] for core in sorted(plan.cores, key=lambda c: c.core)]
    return table_of, items, order


def run(
    plan: ExecutionPlan,
    tables: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    cpus: tuple[int, ...],
    warmup: int,
    batches: int,
    index_batches: int,
    spin_s: float = SPIN_S,
) -> Timings:
    """Run the plan on `cpus` (one per plan core). `tables`: per table of the plan's workload, in its order,
    (weights [rows, dim], ids int64 [n], offsets int64 [index_batches, batch + 1] into ids, output [batch, dim]
    float32): sample s of index batch b looks up ids[offsets[b, s]:offsets[b, s + 1]]."""
    if NATIVE is None:
        raise not_built()
    _, items, order = plan_arrays(plan)
    total = warmup + batches
    n_ids = max((it.id for it in plan.items), default=0) + 1
    starts = np.zeros((total, len(cpus)), dtype=np.int64)
    ends = np.zeros((total, len(cpus)), dtype=np.int64)
    item_ns = np.zeros((total, n_ids), dtype=np.int64)
    specs = [
        (weights, ids, offsets, output, DTYPE_CODES[t.dtype])
        for t, (weights, ids, offsets, output) in zip(plan.workload.tables, tables, strict=True)
    ]
    NATIVE.run_plan(
        specs,
        items,
        order,
        list(cpus),
        warmup,
        batches,
        index_batches,
        plan.target.scratch.capacity_bytes,
        int(spin_s * 1e9),
        starts,
        ends,
        item_ns,
    )
    return Timings(starts, ends, item_ns)


def kernel_loop(
    weights: np.ndarray,
    dtype: DType,
    ids: np.ndarray,
    offsets: np.ndarray,
    output: np.ndarray,
    strategy: str,
    rows: tuple[int, int],
    samples: tuple[int, int],
    scratch_bytes: int,
    cpu: int,
    batches: int,
) -> np.ndarray:
    """One item's kernel called directly in a loop on one pinned thread: seconds per batch. The yardstick for
    the executor's own overhead (`benchmarks/runtime_overhead.py`)."""
    if NATIVE is None:
        raise not_built()
    return np.asarray(
        NATIVE.kernel_loop(
            weights,
            DTYPE_CODES[dtype],
            ids,
            offsets,
            output,
            STRATEGY_CODES[strategy],
            rows[0],
            rows[1],
            samples[0],
            samples[1],
            scratch_bytes,
            cpu,
            batches,
        )
    )
