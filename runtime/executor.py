"""Run an ExecutionPlan: one worker process per plan core, pinned to a CPU, all data in shared memory.

Workers run every batch by themselves, in lock-step through a spin barrier in shared memory (no parent in
the loop): zero the outputs that row shards accumulate into, barrier, run the core's items in schedule order
timing each, barrier. The parent only starts the workers, waits, checks the outputs against the reference
lookup and turns the recorded timestamps into statistics.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ir.errors import SpecError
from ir.plan import ExecutionPlan
from ir.spec import DType
from ir.targets import meminfo_bytes, usable_cpus
from runtime.data import Materialized, SharedArray, materialize, reference_lookup
from runtime.kernels import ItemData, backend_name, build_kernel

SPIN_CHECK_EVERY = 4096


@dataclass(frozen=True)
class RunConfig:
    batches: int = 50
    warmup: int = 5
    index_batches: int = 8
    seed: int = 0
    backend: str = "auto"  # torch | numpy | auto
    timeout_s: float = 120.0
    memory_fraction: float = 0.7  # of MemAvailable that tables, replicas and indices may use


@dataclass(frozen=True)
class RunReport:
    backend: str
    cpus: tuple[int, ...]
    batches: int
    correct: bool
    max_abs_error: float
    tolerance: float
    e2e_s: tuple[float, ...]  # per measured batch: first core start to last core end
    core_s: tuple[tuple[float, ...], ...]  # [core][batch]: the core's busy time
    item_s: tuple[tuple[float, ...], ...]  # [item][batch]
    lookups_per_batch: int
    bytes_per_batch: int

    def p(self, q: float) -> float:
        return float(np.percentile(self.e2e_s, q))

    @property
    def p50_s(self) -> float:
        return self.p(50)

    @property
    def p99_s(self) -> float:
        return self.p(99)

    def core_p50_s(self, core: int) -> float:
        return float(np.median(self.core_s[core]))

    def item_p50_s(self, item: int) -> float:
        return float(np.median(self.item_s[item]))


def check_runnable(plan: ExecutionPlan, config: RunConfig) -> None:
    cpus = usable_cpus()
    if plan.target.cores > len(cpus):
        raise SpecError(
            "plan.target.cores",
            f"the plan uses {plan.target.cores} cores, this machine offers {len(cpus)}",
            f"compile for this machine with --target cpu (or a target with at most {len(cpus)} cores)",
        )
    for t in plan.workload.tables:
        if t.dtype not in (DType.FP32, DType.FP16):
            raise SpecError(
                f"plan table {t.name}", f"dtype {t.dtype.value} is not executable here", "use fp32 or fp16 tables"
            )
    need = _bytes_needed(plan, config)
    available = meminfo_bytes("MemAvailable") or 4 << 30
    if need > config.memory_fraction * available:
        biggest = max(plan.workload.tables, key=lambda t: t.bytes)
        raise SpecError(
            "plan.workload",
            f"running it needs about {need / 2**30:.1f} GiB; {available / 2**30:.1f} GiB are available",
            f"recompile with a row cap, e.g. --row-cap {max(1, int(biggest.rows * config.memory_fraction * available / need))}",
        )
    if config.batches < 1 or config.warmup < 0 or config.index_batches < 1:
        raise SpecError("run", "batches must be >= 1, warmup >= 0, index batches >= 1", "check --batches")


def run_plan(plan: ExecutionPlan, config: RunConfig = RunConfig(), data: Materialized | None = None) -> RunReport:
    """Run the plan and check its output. `data` (from `materialize_for`) lets several plans of the same
    tables run on the same materialized data: the caller then owns and closes it."""
    check_runnable(plan, config)
    backend = backend_name(config.backend)
    cpus = tuple(usable_cpus()[: plan.target.cores])
    tables = plan.workload.tables
    total = config.warmup + config.batches
    owned = data is None
    if data is None:
        data = materialize_for(plan, config)
    else:
        _check_data(plan, config, data)
    shared = _Shared.create(plan, total)
    ctx = mp.get_context("fork")
    locks = {t.name: ctx.Lock() for t in tables}
    try:
        workers = [
            ctx.Process(
                target=_worker, args=(plan, core, cpu, data, shared, locks, backend, total, config), daemon=True
            )
            for core, cpu in enumerate(cpus)
        ]
        for w in workers:
            w.start()
        deadline = time.monotonic() + config.timeout_s
        for w in workers:
            w.join(max(0.1, deadline - time.monotonic()))
        failures = _failures(workers, shared)
        for w in workers:
            if w.is_alive():
                w.kill()
                w.join()
        if failures:
            raise RuntimeError("run failed: " + "; ".join(failures))
        correct, err, tol = _check(plan, data, (total - 1) % config.index_batches)
        return _report(plan, shared, backend, cpus, config, correct, err, tol)
    finally:
        shared.close()
        if owned:
            data.close()


def run_interleaved(
    plans: list[ExecutionPlan] | tuple[ExecutionPlan, ...], config: RunConfig, repeats: int
) -> list[list[RunReport]]:
    """Run plans of the same tables `repeats` times each on data materialized once, taking turns, so that a
    noisy moment of the machine hits one run of each plan rather than every run of one. A wrong output
    fails the whole call."""
    reports: list[list[RunReport]] = [[] for _ in plans]
    data = materialize_for(plans[0], config)
    try:
        for _ in range(repeats):
            for i, plan in enumerate(plans):
                report = run_plan(plan, config, data)
                if not report.correct:
                    raise RuntimeError(
                        f"plan {plan.pipeline} of {plan.workload.name}: wrong output "
                        f"(max error {report.max_abs_error:.3g} > tolerance {report.tolerance:.3g})"
                    )
                reports[i].append(report)
    finally:
        data.close()
    return reports


def materialize_for(plan: ExecutionPlan, config: RunConfig = RunConfig()) -> Materialized:
    """The plan's tables, index batches and outputs, as `run_plan` would make them (close it when done)."""
    check_runnable(plan, config)
    return materialize(plan.workload.tables, plan.workload.batch_size, config.index_batches, config.seed)


def _check_data(plan: ExecutionPlan, config: RunConfig, data: Materialized) -> None:
    want = (plan.workload.tables, plan.workload.batch_size, config.index_batches, config.seed)
    if data.made_for != want:
        raise SpecError(
            "run data",
            "was materialized for other tables, batch size, index batches or seed",
            "use materialize_for(plan, config)",
        )


@dataclass
class _Shared:
    """Barrier counters, per-core status and the timestamps workers record."""

    counters: SharedArray  # [cores] int64: the last barrier phase each core reached
    status: SharedArray  # [cores] int64: 0 running, 1 done, 2 failed
    starts: SharedArray  # [batches, cores] int64 ns
    ends: SharedArray  # [batches, cores] int64 ns
    items: SharedArray  # [batches, items] int64 ns

    @staticmethod
    def create(plan: ExecutionPlan, batches: int) -> _Shared:
        cores, n_items = plan.target.cores, len(plan.items)
        s = _Shared(
            SharedArray.create((cores,), np.int64),
            SharedArray.create((cores,), np.int64),
            SharedArray.create((batches, cores), np.int64),
            SharedArray.create((batches, cores), np.int64),
            SharedArray.create((batches, max(1, n_items)), np.int64),
        )
        for a in (s.counters, s.status, s.starts, s.ends, s.items):
            a.array[:] = 0
        return s

    def close(self) -> None:
        for a in (self.counters, self.status, self.starts, self.ends, self.items):
            a.close(unlink=True)


def _worker(
    plan: ExecutionPlan,
    core: int,
    cpu: int,
    data: Materialized,
    shared: _Shared,
    locks: dict[str, Any],
    backend: str,
    total: int,
    config: RunConfig,
) -> None:
    try:
        os.sched_setaffinity(0, {cpu})
        if backend == "torch":
            import torch

            torch.set_num_threads(1)
        order = plan.cores[core].items
        kernels = []
        for i in order:
            it = plan.items[i]
            t = next(t for t in plan.workload.tables if t.name == it.table)
            item_data = ItemData(
                table=t,
                weights=data.tables[t.name].array,
                indices=data.indices[t.name].array,
                output=data.outputs[t.name].array,
                scratch_bytes=plan.target.scratch.capacity_bytes,
                lock=locks[t.name],
            )
            _prefault(item_data.weights[it.rows[0] : it.rows[1]])
            kernels.append(build_kernel(it, item_data, backend))
        owned = [data.outputs[t].array for t in _zeroing_duty(plan, core)]
        zeroing = any(it.output == "accumulate" for it in plan.items)  # then every core waits for the zeroing
        counters = memoryview(shared.counters.array.data).cast("B").cast("q")
        barrier = _SpinBarrier(counters, core, config.timeout_s)
        barrier.wait()  # everyone built its kernels and replicas
        item_times, starts, ends = shared.items.array, shared.starts.array, shared.ends.array
        steps = list(zip(order, kernels, strict=True))
        clock = time.perf_counter_ns
        for b in range(total):
            ib = b % config.index_batches
            if zeroing:
                for out in owned:
                    out[:] = 0.0
                barrier.wait()
            start = clock()
            for i, kernel in steps:
                t0 = clock()
                kernel(ib)
                item_times[b, i] = clock() - t0
            end = clock()
            starts[b, core] = start
            ends[b, core] = end
            barrier.wait()
        shared.status.array[core] = 1
    except BaseException as exc:  # reported by the parent through the status array and exit code
        shared.status.array[core] = 2
        raise SystemExit(f"core {core}: {type(exc).__name__}: {exc}") from exc


PAGE_BYTES = 4096


def _prefault(rows: np.ndarray) -> None:
    """Touch one byte per page, so that this process maps the shared pages before anything is timed (a fresh
    mapping would otherwise take a page fault on the first touch of every page, inside the timed loop)."""
    flat = rows.reshape(-1).view(np.uint8)
    int(flat[::PAGE_BYTES].sum(dtype=np.uint64))


def _zeroing_duty(plan: ExecutionPlan, core: int) -> list[str]:
    """Tables whose row shards accumulate, and whose first shard this core runs: it zeroes their output."""
    firsts: dict[str, int] = {}
    for it in plan.items:
        if it.output == "accumulate" and it.table not in firsts:
            firsts[it.table] = it.core
    return [t for t, c in firsts.items() if c == core]


class _SpinBarrier:
    """All cores reach phase k before any passes it: each core publishes its phase, then spins. The counters
    are read through a plain memoryview: numpy's machinery in the spin loop would cool the caches the next
    kernel needs (measured: a 30 us kernel ran 5 us slower after a numpy-based spin)."""

    def __init__(self, counters: memoryview, core: int, timeout_s: float) -> None:
        self.counters = counters
        self.core = core
        self.phase = 0
        self.timeout_s = timeout_s

    def wait(self) -> None:
        self.phase += 1
        self.counters[self.core] = self.phase
        spins = 0
        began = time.monotonic()
        while min(self.counters) < self.phase:
            spins += 1
            if spins % SPIN_CHECK_EVERY == 0 and time.monotonic() - began > self.timeout_s:
                raise TimeoutError(f"waited {self.timeout_s:g} s at a barrier for another core")


def _failures(workers: list[Any], shared: _Shared) -> list[str]:
    out = []
    for core, w in enumerate(workers):
        if w.is_alive():
            out.append(f"core {core} did not finish in time")
        elif w.exitcode != 0 or shared.status.array[core] != 1:
            out.append(f"core {core} failed (exit code {w.exitcode})")
    return out


def _check(plan: ExecutionPlan, data: Materialized, index_batch: int) -> tuple[bool, float, float]:
    """Compare every table's pooled output of the last batch with the reference lookup."""
    worst, worst_tol, ok = 0.0, 0.0, True
    for t in plan.workload.tables:
        ref = reference_lookup(data.tables[t.name].array, data.indices[t.name].array[index_batch])
        err = float(np.abs(data.outputs[t.name].array - ref).max())
        tol = tolerance(t.pooling, t.dtype)
        ok = ok and err <= tol
        if err / tol >= (worst / worst_tol if worst_tol else 0.0):
            worst, worst_tol = err, tol
    return ok, worst, worst_tol


def tolerance(pooling: int, dtype: DType) -> float:
    """Bound on the rounding error of a float32 sum of `pooling` values in [0, 1), in any order: each of the
    pooling - 1 additions errs by at most eps times a partial sum below `pooling`."""
    eps = 2.0**-24
    return max(pooling - 1, 1) * pooling * eps * 2.0 + (1e-3 if dtype is DType.FP16 else 0.0)


def _report(
    plan: ExecutionPlan,
    shared: _Shared,
    backend: str,
    cpus: tuple[int, ...],
    config: RunConfig,
    correct: bool,
    err: float,
    tol: float,
) -> RunReport:
    measured = slice(config.warmup, config.warmup + config.batches)
    starts = shared.starts.array[measured].astype(np.float64)
    ends = shared.ends.array[measured].astype(np.float64)
    items = shared.items.array[measured].astype(np.float64) * 1e-9
    lookups = plan.workload.batch_size * sum(t.pooling for t in plan.workload.tables)
    read = plan.workload.batch_size * sum(t.pooling * t.row_bytes for t in plan.workload.tables)
    return RunReport(
        backend=backend,
        cpus=cpus,
        batches=config.batches,
        correct=correct,
        max_abs_error=err,
        tolerance=tol,
        e2e_s=tuple(((ends.max(axis=1) - starts.min(axis=1)) * 1e-9).tolist()),
        core_s=tuple(tuple(((ends[:, c] - starts[:, c]) * 1e-9).tolist()) for c in range(plan.target.cores)),
        item_s=tuple(tuple(items[:, i].tolist()) for i in range(len(plan.items))),
        lookups_per_batch=lookups,
        bytes_per_batch=read,
    )


def _bytes_needed(plan: ExecutionPlan, config: RunConfig) -> int:
    tables = sum(t.bytes for t in plan.workload.tables)
    replicas = sum(it.local_bytes for it in plan.items)
    index = sum(config.index_batches * plan.workload.batch_size * t.pooling * 8 for t in plan.workload.tables)
    return tables + replicas + index
