"""Run an ExecutionPlan on this machine and check its output: the native executor, or the reference one.

`run_plan` dispatches on `RunConfig.backend`: the native executor (`runtime.native`, compiled, one thread per
core) by default, or the reference executor here: one forked worker process per plan core, pinned, data in
shared memory, in lock-step through a spin barrier (zero the outputs row shards accumulate into, barrier, run
the core's items timing each, barrier). A reference worker that dies, raises or hangs (no core passes a barrier
for `RunConfig.timeout_s`) stops the run with one `RunFault` naming the core, batch and item. Either way every
pooled output of the last batch is checked against the reference lookup; `run_rounds` pairs plans and the
frameworks users run in rounds on the same data.

Nothing outlives a run: its shared memory is one anonymous region (`data.SharedRegion`, no name in /dev/shm),
each worker asks the kernel to kill it when the parent dies (PR_SET_PDEATHSIG) and checks at every barrier
that its parent lives, and the parent stops its workers with Ctrl-C, SIGTERM and SIGHUP held back.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from embmap.ir.errors import EmbmapError, ResourceError, RunFault, SpecError
from embmap.ir.plan import ExecutionPlan
from embmap.ir.spec import DType, tables_difference
from embmap.ir.targets import meminfo_bytes, usable_cpus
from embmap.runtime import kernels, native
from embmap.runtime.baselines import BaselineReport, prepare_baseline
from embmap.runtime.data import (
    SEM_BYTES,
    Materialized,
    ProcessLock,
    SharedRegion,
    check_outputs,
    materialize,
    memory_refused,
)
from embmap.runtime.kernels import ItemData, build_kernel
from embmap.runtime.kernels import backend_name as kernels_backend

SPIN_CHECK_EVERY = 4096
POLL_S = 0.05  # how often the parent looks at the barrier counters while it waits
ERROR_BYTES = 240  # per core: the worker's last words, when it fails by an exception
# Signals that stop a command: held back while workers start (a worker starts with them blocked, then ignores
# the terminal's, which the parent handles for the whole run) and while the parent stops its workers.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when the thread that forked it ends


@dataclass(frozen=True)
class Fault:
    """For tests of the runtime only: make one core's worker fail just before its first item of `batch`
    (batches count from 0, warm-up included). `exit`: the process exits at once with status 3; `kill`: it
    sends itself SIGKILL; `raise`: a kernel raises; `hang`: it sleeps until it is killed."""

    core: int
    batch: int
    kind: Literal["exit", "kill", "raise", "hang"] = "exit"


@dataclass(frozen=True)
class RunConfig:
    batches: int = 50
    warmup: int = 5
    # Batches of indices drawn; the run cycles through them. None: one per batch run, warm-up included, so
    # that no batch reads rows a recent one read (as fresh queries would not): a few batches cycled would let
    # their rows settle in the caches, and a "uniform" table would run at the speed of a small working set.
    index_batches: int | None = None
    seed: int = 0
    # native (compiled kernels, one thread per core) | torch | numpy (the reference executor: one process per
    # core, kernels called from Python) | auto (native where it is built)
    backend: str = "auto"
    timeout_s: float = 120.0  # a run in which no core passes a barrier for this long has a hung core
    memory_fraction: float = 0.7  # of MemAvailable that tables, replicas and indices may use
    fault: Fault | None = None  # test-only fault injection; None (the default) in every real run

    @property
    def index_batch_count(self) -> int:
        return self.warmup + self.batches if self.index_batches is None else self.index_batches


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
    if config.batches < 1 or config.warmup < 0 or config.index_batch_count < 1:
        raise SpecError("run", "batches must be >= 1, warmup >= 0, index batches >= 1", "check --batches")
    if not config.timeout_s > 0:
        raise SpecError("run.timeout_s", f"must be positive, got {config.timeout_s}", "give seconds, e.g. 120")
    if config.fault is not None and not 0 <= config.fault.core < plan.target.cores:
        raise SpecError("run.fault.core", f"is {config.fault.core}, the plan has {plan.target.cores} cores", "")


def backend_name(config: RunConfig) -> str:
    """The executor a run uses: `auto` is the native one where it is built, except for a run with an injected
    fault (a test of the reference executor's supervision)."""
    requested = config.backend
    if requested == "native" and not native.available():
        raise native.not_built()
    if requested == "torch" and not kernels.HAVE_TORCH:
        raise ResourceError(
            "torch",
            "--backend torch needs PyTorch, which is not installed here",
            "pip install 'embmap[runtime]' (or pip install torch), or run with --backend numpy or native",
        )
    if requested == "auto" and config.fault is None and native.available():
        return "native"
    if requested == "native" and config.fault is not None:
        raise SpecError("run.fault", "faults are injected into the reference executor only", "use backend torch")
    return kernels_backend(requested)


def run_plan(plan: ExecutionPlan, config: RunConfig = RunConfig(), data: Materialized | None = None) -> RunReport:
    """Run the plan and check its output. `data` (from `materialize_for`) lets several plans of the same
    tables run on the same materialized data: the caller then owns and closes it."""
    check_runnable(plan, config)
    backend = backend_name(config)
    cpus = tuple(usable_cpus()[: plan.target.cores])
    owned = data is None
    if data is None:
        data = materialize_for(plan, config)
    else:
        _check_data(plan, config, data)
    if backend == "native":
        try:
            return _run_native(plan, config, data, cpus)
        finally:
            if owned:
                data.close()
    return _run_reference(plan, config, data, cpus, backend, owned)


def _run_native(plan: ExecutionPlan, config: RunConfig, data: Materialized, cpus: tuple[int, ...]) -> RunReport:
    tables = [
        (data.tables[t.name].array, data.indices[t.name].array, data.outputs[t.name].array)
        for t in plan.workload.tables
    ]
    try:
        timings = native.run(plan, tables, cpus, config.warmup, config.batches, config.index_batch_count)
    except MemoryError:  # the cores' private replicas, scratch buffers and partial sums
        raise memory_refused(sum(it.local_bytes for it in plan.items), "the cores' replicas and buffers") from None
    correct, err, tol = _check(plan, data, (config.warmup + config.batches - 1) % config.index_batch_count)
    return _report(plan, timings.starts, timings.ends, timings.items, "native", cpus, config, correct, err, tol)


def _run_reference(
    plan: ExecutionPlan,
    config: RunConfig,
    data: Materialized,
    cpus: tuple[int, ...],
    backend: str,
    owned: bool,
) -> RunReport:
    """One forked worker process per core, kernels called from Python, data in shared memory."""
    total = config.warmup + config.batches
    shared = _Shared.create(plan, total)
    ctx = mp.get_context("fork")
    workers: list[Any] = []
    try:
        parent = os.getpid()
        workers = [
            ctx.Process(
                target=_worker, args=(plan, core, cpu, data, shared, backend, total, config, parent), daemon=True
            )
            for core, cpu in enumerate(cpus)
        ]
        with _signals_blocked():
            for w in workers:
                w.start()
        _supervise(plan, workers, shared, config.timeout_s)
        correct, err, tol = _check(plan, data, (total - 1) % config.index_batch_count)
        return _report(plan, shared.starts, shared.ends, shared.items, backend, cpus, config, correct, err, tol)
    finally:
        with _signals_deferred():
            _stop(workers)
            shared.close()
            if owned:
                data.close()


@contextlib.contextmanager
def _signals_blocked() -> Iterator[None]:
    """STOP_SIGNALS blocked in this thread while it forks the workers: a worker starts with them blocked and
    lets them through once it ignores the terminal's (a Ctrl-C before that would print its traceback)."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C, SIGTERM and SIGHUP wait while the parent stops its workers and releases the memory (a SIGKILL
    and a reap each: short), so that a second Ctrl-C does not cut the clean-up short or print a traceback.
    One that came is delivered after, unless the run is already ending by an exception (a first Ctrl-C)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    came: list[int] = []
    saved = {s: h for s in STOP_SIGNALS if (h := signal.getsignal(s)) not in (signal.SIG_IGN, None)}
    for s in saved:
        signal.signal(s, lambda signum, frame: came.append(signum))
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
    for signum in dict.fromkeys(came):
        signal.raise_signal(signum)


def run_interleaved(
    plans: list[ExecutionPlan] | tuple[ExecutionPlan, ...], config: RunConfig, repeats: int
) -> list[list[RunReport]]:
    """Run plans of the same tables `repeats` times each on data materialized once, taking turns, so that a
    noisy moment of the machine hits one run of each plan rather than every run of one. A wrong output
    fails the whole call."""
    return run_rounds(plans, config, repeats)[0]


def run_rounds(
    plans: Sequence[ExecutionPlan], config: RunConfig, repeats: int, baselines: Sequence[str] = ()
) -> tuple[list[list[RunReport]], list[list[BaselineReport]]]:
    """As `run_interleaved`, with the named baselines (`runtime.baselines`: what users run instead) taking
    their turn in every round too, on the same tables and index batches, with one thread per plan core."""
    reports: list[list[RunReport]] = [[] for _ in plans]
    measured: list[list[BaselineReport]] = [[] for _ in baselines]
    data = materialize_for(plans[0], config)
    try:
        prepared = [prepare_baseline(n, plans[0].workload.tables, data, plans[0].target.cores) for n in baselines]
        for _ in range(repeats):
            for i, plan in enumerate(plans):
                report = run_plan(plan, config, data)
                _require_correct(f"plan {plan.pipeline}", plan, report.correct, report.max_abs_error, report.tolerance)
                reports[i].append(report)
            for k, baseline in enumerate(prepared):
                b = baseline.run(config.warmup, config.batches)
                _require_correct(baseline.name, plans[0], b.correct, b.max_abs_error, b.tolerance)
                measured[k].append(b)
                time.sleep(BASELINE_COOLDOWN_S)
    finally:
        data.close()
    return reports, measured


# After a baseline's last parallel region, its OpenMP threads spin for a while before they sleep: the next
# run waits that out rather than share its cores with them.
BASELINE_COOLDOWN_S = 0.05


def _require_correct(what: str, plan: ExecutionPlan, correct: bool, error: float, tolerance: float) -> None:
    if not correct:
        raise RuntimeError(
            f"{what} of {plan.workload.name}: wrong output (max error {error:.3g} > tolerance {tolerance:.3g})"
        )


def materialize_for(plan: ExecutionPlan, config: RunConfig = RunConfig()) -> Materialized:
    """The plan's tables, index batches and outputs, as `run_plan` would make them (close it when done): in
    shared memory for the reference executor's worker processes, in this process's memory for the native one."""
    check_runnable(plan, config)
    shared = backend_name(config) != "native"
    return materialize(
        plan.workload.tables, plan.workload.batch_size, config.index_batch_count, config.seed, shared=shared
    )


def _check_data(plan: ExecutionPlan, config: RunConfig, data: Materialized) -> None:
    tables, batch_size, index_batches, seed = data.made_for
    difference = tables_difference(plan.workload.tables, tables)  # type: ignore[arg-type]
    if not difference and batch_size != plan.workload.batch_size:
        difference = f"has batch size {batch_size} where the plan has {plan.workload.batch_size}"
    if not difference and (index_batches, seed) != (config.index_batch_count, config.seed):
        difference = (
            f"has {index_batches} index batches of seed {seed} where the run config asks "
            f"{config.index_batch_count} of seed {config.seed}"
        )
    if difference:
        raise SpecError(
            "run data",
            f"does not fit plan {plan.pipeline} of {plan.workload.name}: it {difference}",
            "use materialize_for(plan, config) with this plan and config",
        )


@dataclass
class _Shared:
    """Barrier counters, per-core status, the timestamps workers record and the row shards' locks: one
    SharedRegion, zeroed by the kernel."""

    region: SharedRegion
    counters: np.ndarray  # [cores] int64: the last barrier phase each core reached
    status: np.ndarray  # [cores] int64: 0 running, 1 done, 2 failed
    starts: np.ndarray  # [batches, cores] int64 ns
    ends: np.ndarray  # [batches, cores] int64 ns
    items: np.ndarray  # [batches, items] int64 ns; 0 until the item has run in that batch
    errors: np.ndarray  # [cores, ERROR_BYTES] uint8: a failed worker's message, UTF-8, NUL-padded
    locks: dict[str, ProcessLock]  # per table whose row shards accumulate into its output

    @staticmethod
    def create(plan: ExecutionPlan, batches: int) -> _Shared:
        cores, n_items = plan.target.cores, len(plan.items)
        sharded = sorted({it.table for it in plan.items if it.output == "accumulate"})
        region = SharedRegion(
            [
                ((cores,), np.int64),
                ((cores,), np.int64),
                ((batches, cores), np.int64),
                ((batches, cores), np.int64),
                ((batches, max(1, n_items)), np.int64),
                ((cores, ERROR_BYTES), np.uint8),
                ((max(1, len(sharded)), SEM_BYTES), np.uint8),
            ],
            "the run's barrier counters and timings",
        )
        counters, status, starts, ends, items, errors, sems = region.arrays
        locks = {name: ProcessLock(sems[k]) for k, name in enumerate(sharded)}
        return _Shared(region, counters, status, starts, ends, items, errors, locks)

    def close(self) -> None:
        self.locks.clear()
        self.region.close()

    def error_of(self, core: int) -> str:
        return bytes(self.errors[core]).rstrip(b"\0").decode("utf-8", "replace")


def _worker(
    plan: ExecutionPlan,
    core: int,
    cpu: int,
    data: Materialized,
    shared: _Shared,
    backend: str,
    total: int,
    config: RunConfig,
    parent: int,
) -> None:
    try:
        _bind_to(parent)
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
                lock=shared.locks.get(t.name),
            )
            _prefault(item_data.weights[it.rows[0] : it.rows[1]])
            _prefault(item_data.indices)
            kernels.append(build_kernel(it, item_data, backend))
        owned = [data.outputs[t].array for t in _zeroing_duty(plan, core)]
        zeroing = any(it.output == "accumulate" for it in plan.items)  # then every core waits for the zeroing
        counters = memoryview(shared.counters.data).cast("B").cast("q")
        # The parent stops the run when no core passes a barrier for timeout_s; the workers' own limit is a
        # backstop for a parent that is stuck.
        barrier = _SpinBarrier(counters, core, 2 * config.timeout_s + 1.0, parent)
        barrier.wait()  # everyone built its kernels and replicas
        item_times, starts, ends = shared.items, shared.starts, shared.ends
        steps = list(zip(order, kernels, strict=True))
        clock = time.perf_counter_ns
        fault = config.fault if config.fault is not None and config.fault.core == core else None
        fault_batch = fault.batch if fault is not None else -1
        for b in range(total):
            ib = b % config.index_batch_count
            if zeroing:
                for out in owned:
                    out[:] = 0.0
                barrier.wait()
            if b == fault_batch:
                assert fault is not None
                _inject(fault)
            start = clock()
            for i, kernel in steps:
                t0 = clock()
                kernel(ib)
                item_times[b, i] = clock() - t0
            end = clock()
            starts[b, core] = start
            ends[b, core] = end
            barrier.wait()
        shared.status[core] = 1
    except BaseException as exc:  # reported by the parent through the status and error arrays
        shared.status[core] = 2
        message = f"{type(exc).__name__}: {exc}".encode()[:ERROR_BYTES]
        shared.errors[core, : len(message)] = np.frombuffer(message, dtype=np.uint8)
        os._exit(1)  # no interpreter teardown in a forked child (it would run the parent's exit handlers)


def _bind_to(parent: int) -> None:
    """A worker's first act: have the kernel kill it when its parent dies (PR_SET_PDEATHSIG, then a check that
    the parent did not die before), leave the terminal's Ctrl-C and hangup to the parent, which stops the
    workers itself, and let through the signals the parent blocked while forking."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    with contextlib.suppress(OSError, AttributeError):  # no prctl: the barrier's check of the parent remains
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)


def _inject(fault: Fault) -> None:
    """Fail as `fault` says (tests only)."""
    if fault.kind == "exit":
        os._exit(3)
    if fault.kind == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if fault.kind == "hang":
        while True:
            time.sleep(3600)
    raise RuntimeError(f"injected fault at batch {fault.batch}")


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

    def __init__(self, counters: memoryview, core: int, timeout_s: float, parent: int) -> None:
        self.counters = counters
        self.core = core
        self.phase = 0
        self.timeout_s = timeout_s
        self.parent = parent

    def wait(self) -> None:
        self.phase += 1
        self.counters[self.core] = self.phase
        spins = 0
        began = time.monotonic()
        while min(self.counters) < self.phase:
            spins += 1
            if spins % SPIN_CHECK_EVERY == 0:
                if os.getppid() != self.parent:  # the parent is gone: nobody waits for this run
                    os._exit(1)
                if time.monotonic() - began > self.timeout_s:
                    raise TimeoutError(f"waited {self.timeout_s:g} s at a barrier for another core")


def _supervise(plan: ExecutionPlan, workers: list[Any], shared: _Shared, timeout_s: float) -> None:
    """Wait until every worker has finished its batches. Raise `RunFault` as soon as one exits without
    finishing, or when no core has passed a barrier for `timeout_s` (the core furthest behind is hung)."""
    counters = shared.counters
    seen = counters.copy()
    quiet_since = time.monotonic()
    poll_s = min(POLL_S, timeout_s / 4)
    while True:
        running = [w for w in workers if w.exitcode is None]
        for core, w in enumerate(workers):
            if w.exitcode is not None and (w.exitcode != 0 or shared.status[core] != 1):
                raise _death(plan, shared, core, w.exitcode)
        if not running:
            return
        multiprocessing.connection.wait([w.sentinel for w in running], timeout=poll_s)
        now = counters.copy()
        if (now != seen).any():
            seen, quiet_since = now, time.monotonic()
        elif time.monotonic() - quiet_since > timeout_s:
            core = int(np.argmin(now))
            others = int((now == now[core]).sum()) - 1
            also = f" (and {others} other core{'s' if others > 1 else ''})" if others else ""
            raise RunFault(
                f"core {core}",
                f"hung {_whereabouts(plan, shared, core)}{also}: no core passed a barrier for {timeout_s:g} s; "
                "the run was stopped",
                "raise RunConfig.timeout_s if the machine is busy; otherwise the kernel never returned",
            )


def _death(plan: ExecutionPlan, shared: _Shared, core: int, exitcode: int) -> EmbmapError:
    where = _whereabouts(plan, shared, core)
    message = shared.error_of(core)
    if message.startswith("MemoryError"):  # the machine refused memory: not a fault of the run
        return ResourceError(
            "memory",
            f"core {core} ran out of memory {where}; the run was stopped",
            "free memory, raise the address-space limit (ulimit -v), or recompile with a row cap (--row-cap N)",
        )
    if exitcode < 0:
        try:
            signame = signal.Signals(-exitcode).name
        except ValueError:
            signame = f"signal {-exitcode}"
        problem = f"was killed by {signame} {where}"
        fix = "check the machine's memory (the kernel's OOM killer) and whoever sends signals to the run"
    elif message:
        problem = f"raised {where}: {message}"
        fix = ""
    else:
        problem = f"exited with status {exitcode} {where}, before finishing"
        fix = "a kernel or library ended the process; rerun with --backend numpy to tell them apart"
    return RunFault(f"core {core}", f"{problem}; the run was stopped", fix)


def _whereabouts(plan: ExecutionPlan, shared: _Shared, core: int) -> str:
    """Where a core was, read from its barrier counter and the item times it recorded: the phase after
    the set-up barrier is 1; each batch then takes two phases (zeroing, items) or one (items)."""
    phase = int(shared.counters[core])
    if phase == 0:
        return "while building its kernels"
    zeroing = any(it.output == "accumulate" for it in plan.items)
    batch, step = divmod(phase - 1, 2) if zeroing else (phase - 1, 1)
    if batch >= shared.items.shape[0]:
        return "after its last batch"
    if step == 0:
        return f"at batch {batch}, zeroing outputs"
    times = shared.items[batch]
    pending = [i for i in plan.cores[core].items if times[i] == 0]
    if not pending:
        return f"at batch {batch}, after its items"
    item = plan.items[pending[0]]
    return f"at batch {batch}, item {item.id} (table {item.table})"


def _stop(workers: list[Any]) -> None:
    """Kill whichever workers still run (spinning at a barrier, or hung) and reap them all."""
    started = [w for w in workers if w.pid is not None]
    for w in started:
        if w.exitcode is None:
            w.kill()
    for w in started:
        w.join()


def _check(plan: ExecutionPlan, data: Materialized, index_batch: int) -> tuple[bool, float, float]:
    """Compare every table's pooled output of the last batch with the reference lookup."""
    outputs = {t.name: data.outputs[t.name].array for t in plan.workload.tables}
    return check_outputs(plan.workload.tables, outputs, data, index_batch)


def _report(
    plan: ExecutionPlan,
    starts_ns: np.ndarray,
    ends_ns: np.ndarray,
    items_ns: np.ndarray,
    backend: str,
    cpus: tuple[int, ...],
    config: RunConfig,
    correct: bool,
    err: float,
    tol: float,
) -> RunReport:
    measured = slice(config.warmup, config.warmup + config.batches)
    starts = starts_ns[measured].astype(np.float64)
    ends = ends_ns[measured].astype(np.float64)
    items = items_ns[measured].astype(np.float64) * 1e-9
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
    index = sum(config.index_batch_count * plan.workload.batch_size * t.pooling * 8 for t in plan.workload.tables)
    return tables + replicas + index
