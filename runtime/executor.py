"""Run an ExecutionPlan on this machine and check its output: the native executor, or the reference one.

`run_plan` dispatches on `RunConfig.backend`: the native executor (`runtime.native`, compiled, one thread per
core) by default, or the reference executor (`runtime.workers`: one forked worker process per plan core, the
kernels called from Python). Either way every pooled output of the last batch is checked against the
reference lookup; `run_rounds` pairs plans and the frameworks users run in rounds on the same data.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from embmap.ir.errors import ResourceError, SpecError
from embmap.ir.plan import ExecutionPlan
from embmap.ir.spec import DType, TableSpec, TargetSpec, tables_difference
from embmap.ir.targets import meminfo_bytes, usable_cpus
from embmap.runtime import kernels, native, workers
from embmap.runtime.baselines import BaselineReport, prepare_baseline
from embmap.runtime.data import Bags, Materialized, check_outputs, materialize, memory_refused
from embmap.runtime.kernels import backend_name as kernels_backend
from embmap.runtime.workers import Fault


@dataclass(frozen=True)
class RunConfig:
    batches: int = 50
    # Batches run before the measured ones. None: as many as the caches take to reach the state a long run
    # keeps them in (`steady_warmup`), decided per plan (`for_plan`).
    warmup: int | None = None
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
        return self.warmup_batches + self.batches if self.index_batches is None else self.index_batches

    @property
    def warmup_batches(self) -> int:
        """The warm-up, once decided (`for_plan` decides a None)."""
        if self.warmup is None:
            raise ValueError("the warm-up is not decided yet: use RunConfig.for_plan(plan)")
        return self.warmup

    def for_plan(self, plan: ExecutionPlan) -> RunConfig:
        """This config with its warm-up decided for `plan`: None becomes `steady_warmup` of its tables."""
        if self.warmup is not None:
            return self
        return dataclasses.replace(
            self, warmup=steady_warmup(plan.workload.tables, plan.workload.batch_size, plan.target)
        )


# Warm-up batches: at least the few that settle the code and the private caches, at most what keeps a run of
# tiny batches short; `STEADY_SWEEPS` passes over what the caches could hold in between.
MIN_WARMUP, MAX_WARMUP = 5, 1000
STEADY_SWEEPS = 3


def steady_warmup(tables: Sequence[TableSpec], batch_size: int, target: TargetSpec) -> int:
    """Batches to run before measuring, so that the caches hold what they hold in a long run, which is what
    the cost model prices (steady-state hit ratios).

    A table's row enters the caches the first time it is drawn. A run that starts measuring after a few
    batches finds most rows of a table of 24,516 rows read 1,024 times a batch not drawn yet, and pays main
    memory for rows a serving process would find in the shared cache (Tenrec's `user_id` alone on a core:
    4.5-7 ns a lookup after 5 batches, about 3 ns after 72; a 2 MiB table read 512 times a batch: 2.4x
    slower after 3 batches than after 192). So the warm-up runs until either every table has been drawn
    `STEADY_SWEEPS` times its rows (95% of a uniform table's rows drawn at least once) or the rows read
    amount to `STEADY_SWEEPS` times the shared cache (what it holds then is what the latest reads left: a
    table larger than the cache never needs every row drawn), whichever comes first, within
    [`MIN_WARMUP`, `MAX_WARMUP`]."""
    cache = target.shared_cache.capacity_bytes if target.shared_cache else target.local.capacity_bytes * target.cores
    read = sum(batch_size * t.pooling * t.row_bytes for t in tables)  # bytes of rows a batch reads
    if read <= 0:
        return MIN_WARMUP
    sweeps = max(t.rows / (batch_size * t.pooling) for t in tables if t.pooling > 0)
    batches = STEADY_SWEEPS * min(cache / read, sweeps)
    return int(min(MAX_WARMUP, max(MIN_WARMUP, math.ceil(batches))))


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
    lookups_per_batch: int  # the mean over the measured batches (whole numbers: exact)
    bytes_per_batch: int
    ids_from: str = ""  # where the index batches came from: drawn with a seed, or a trace's own
    warmup: int = 0  # batches run before the measured ones

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
    if config.batches < 1 or config.warmup_batches < 0 or config.index_batch_count < 1:
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
    tables run on the same materialized data: the caller then owns and closes it. A warm-up of None is
    decided for the plan (`RunConfig.for_plan`)."""
    config = config.for_plan(plan)
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
        (data.tables[t.name].array, data.indices[t.name].array, data.offsets[t.name].array, data.outputs[t.name].array)
        for t in plan.workload.tables
    ]
    try:
        timings = native.run(plan, tables, cpus, config.warmup_batches, config.batches, config.index_batch_count)
    except MemoryError:  # the cores' private replicas, scratch buffers and partial sums
        raise memory_refused(sum(it.local_bytes for it in plan.items), "the cores' replicas and buffers") from None
    correct, err, tol = _check(plan, data, (config.warmup_batches + config.batches - 1) % config.index_batch_count)
    return _report(plan, data, timings.starts, timings.ends, timings.items, "native", cpus, config, (correct, err, tol))


def _run_reference(
    plan: ExecutionPlan,
    config: RunConfig,
    data: Materialized,
    cpus: tuple[int, ...],
    backend: str,
    owned: bool,
) -> RunReport:
    """One forked worker process per core, kernels called from Python, data in shared memory (`workers`)."""
    try:
        starts, ends, items = workers.run(plan, config, data, cpus, backend)
        correct, err, tol = _check(plan, data, (config.warmup_batches + config.batches - 1) % config.index_batch_count)
        return _report(plan, data, starts, ends, items, backend, cpus, config, (correct, err, tol))
    finally:
        if owned:
            with workers.signals_deferred():
                data.close()


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
    config = config.for_plan(plans[0])  # plans of the same tables: one warm-up for all
    data = materialize_for(plans[0], config)
    try:
        prepared = [prepare_baseline(n, plans[0].workload.tables, data, plans[0].target.cores) for n in baselines]
        for _ in range(repeats):
            for i, plan in enumerate(plans):
                report = run_plan(plan, config, data)
                _require_correct(f"plan {plan.pipeline}", plan, report.correct, report.max_abs_error, report.tolerance)
                reports[i].append(report)
            for k, baseline in enumerate(prepared):
                b = baseline.run(config.warmup_batches, config.batches)
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


def materialize_for(
    plan: ExecutionPlan, config: RunConfig = RunConfig(), bags: Mapping[str, Bags] | None = None, ids_from: str = ""
) -> Materialized:
    """The plan's tables, index batches and outputs, as `run_plan` would make them (close it when done): in
    shared memory for the reference executor's worker processes, in this process's memory for the native one.
    `bags`: the index batches to run instead of drawn ones (a trace's own, `ids_from` saying which), as many
    per table as `config.index_batch_count`, each of the plan's batch size, every id below the table's rows."""
    config = config.for_plan(plan)
    check_runnable(plan, config)
    shared = backend_name(config) != "native"
    return materialize(
        plan.workload.tables,
        plan.workload.batch_size,
        config.index_batch_count,
        config.seed,
        shared=shared,
        bags=bags,
        ids_from=ids_from,
    )


def _check_data(plan: ExecutionPlan, config: RunConfig, data: Materialized) -> None:
    tables, batch_size, index_batches, seed, _ = data.made_for
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


def _check(plan: ExecutionPlan, data: Materialized, index_batch: int) -> tuple[bool, float, float]:
    """Compare every table's pooled output of the last batch with the reference lookup."""
    outputs = {t.name: data.outputs[t.name].array for t in plan.workload.tables}
    return check_outputs(plan.workload.tables, outputs, data, index_batch)


def _report(
    plan: ExecutionPlan,
    data: Materialized,
    starts_ns: np.ndarray,
    ends_ns: np.ndarray,
    items_ns: np.ndarray,
    backend: str,
    cpus: tuple[int, ...],
    config: RunConfig,
    check: tuple[bool, float, float],
) -> RunReport:
    measured = slice(config.warmup_batches, config.warmup_batches + config.batches)
    starts = starts_ns[measured].astype(np.float64)
    ends = ends_ns[measured].astype(np.float64)
    items = items_ns[measured].astype(np.float64) * 1e-9
    lookups, read = _gathered(plan, data, config)
    correct, err, tol = check
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
        ids_from=data.ids_from,
        warmup=config.warmup_batches,
    )


def _gathered(plan: ExecutionPlan, data: Materialized, config: RunConfig) -> tuple[int, int]:
    """(lookups, bytes of rows) a measured batch gathers, the mean over the measured batches (rounded): what
    the index batches they cycle through hold."""
    run = (np.arange(config.warmup_batches, config.warmup_batches + config.batches) % config.index_batch_count).astype(
        np.int64
    )
    lookups, read = 0.0, 0.0
    for t in plan.workload.tables:
        offsets = data.offsets[t.name].array
        n = float(np.mean(offsets[run, -1] - offsets[run, 0]))
        lookups, read = lookups + n, read + n * t.row_bytes
    return round(lookups), round(read)


def _bytes_needed(plan: ExecutionPlan, config: RunConfig) -> int:
    tables = sum(t.bytes for t in plan.workload.tables)
    replicas = sum(it.local_bytes for it in plan.items)
    index = sum(  # ids of a fractional factor p: at most ceil(p) per sample; offsets: one per sample
        config.index_batch_count * plan.workload.batch_size * (math.ceil(t.pooling) + 1) * 8
        for t in plan.workload.tables
    )
    return tables + replicas + index
