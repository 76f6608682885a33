"""The reference executor's worker processes: one forked worker per plan core, pinned, the kernels called from
Python, the data in shared memory, in lock-step through a spin barrier (zero the outputs row shards accumulate
into, barrier, run the core's items timing each, barrier). A worker that dies, raises or hangs (no core passes
a barrier for `RunConfig.timeout_s`) stops the run with one `RunFault` naming the core, batch and item.

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
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from embmap.ir.errors import EmbmapError, ResourceError, RunFault
from embmap.ir.plan import ExecutionPlan
from embmap.runtime.data import SEM_BYTES, Materialized, ProcessLock, SharedRegion
from embmap.runtime.kernels import ItemData, build_kernel

if TYPE_CHECKING:
    from embmap.runtime.executor import RunConfig

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


def run(
    plan: ExecutionPlan, config: RunConfig, data: Materialized, cpus: tuple[int, ...], backend: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run the plan's batches with one forked worker per core on `data` (in shared memory); returns the cores'
    start and end times [batches, cores] and the items' times [batches, items], in ns. Raises `RunFault` when
    a worker dies, raises or hangs; the workers are stopped and the run's memory released however it ends."""
    total = config.warmup_batches + config.batches
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
        return shared.starts.copy(), shared.ends.copy(), shared.items.copy()
    finally:
        with signals_deferred():
            _stop(workers)
            shared.close()


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
def signals_deferred() -> Iterator[None]:
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
                ids=data.indices[t.name].array,
                offsets=data.offsets[t.name].array,
                output=data.outputs[t.name].array,
                scratch_bytes=plan.target.scratch.capacity_bytes,
                lock=shared.locks.get(t.name),
            )
            _prefault(item_data.weights[it.rows[0] : it.rows[1]])
            _prefault(item_data.ids)
            _prefault(item_data.offsets)
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
