"""`embmap calibrate`: measure a grid of micro-benchmarks on the reference runtime and fit the cost model.

Each grid point is a one-table plan with one chosen strategy, split mode and part count, run for real; every
work item of it becomes one measurement (strategy, table, rows, samples, measured seconds). Items of whole
plans of synthetic workloads are measured too, so the fit also sees tables sharing a core and cores sharing
the caches, and so are hot-set ladders: huge tables whose reads hit a few hot rows with a growing
probability, which show how a core overlaps its misses with its hits. The fit itself (non-negative least
squares on relative error, with held-out points) lives in `cost_models.calibrate`.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from embmap.cost_models import preset_profile
from embmap.cost_models.calibrate import CalibrationResult, fit_profile
from embmap.cost_models.measurements import Measurement
from embmap.ir.cost_profile import CostProfile
from embmap.ir.errors import ResourceError, SpecError
from embmap.ir.lowering import lower
from embmap.ir.module import Module, TableOptions
from embmap.ir.plan import ExecutionPlan, PartitionMode, Strategy
from embmap.ir.spec import Distribution, HotSet, TableSpec, TargetSpec, Uniform, WorkloadSpec, Zipf
from embmap.mapper.backend import emit_plan
from embmap.mapper.compiler import compile as compile_plan
from embmap.mapper.profiles import machine_key
from embmap.passes import PassManager, parse_pipeline
from embmap.passes.solver.options import make_option
from embmap.runtime import RunConfig, RunReport, run_interleaved

KiB = 1024
CALIBRATION_RUN = RunConfig(batches=20)  # warm-up: until the caches are steady (`steady_warmup`)
PIPELINES = ("embmap", "default", "round-robin")  # whole plans measured for the fit
REPEATS = 3  # runs per plan on the same data; an item's time is its best run's median batch


@dataclass(frozen=True)
class GridPoint:
    table: TableSpec
    batch_size: int
    strategy: Strategy
    mode: PartitionMode
    parts: int


def grid(target: TargetSpec, quick: bool = False) -> list[GridPoint]:
    """Strategy x table size (within L1d, L2, L3, beyond) x dim x lookups x distribution, plus row shards."""
    sizes = (
        [16 * KiB, 256 * KiB, 4096 * KiB, 48 * 1024 * KiB]
        if quick
        else [16 * KiB, 256 * KiB, 2048 * KiB, 8 * 1024 * KiB, 24 * 1024 * KiB, 256 * 1024 * KiB]
    )
    dims = (16,) if quick else (16, 64, 128)
    lookups = ((256, 1), (1024, 4)) if quick else ((256, 1), (2048, 1), (512, 8), (128, 64), (1024, 24))
    dists: tuple[Distribution, ...] = (Uniform(), Zipf(alpha=1.05))
    local = target.local.capacity_bytes
    points = []
    for size, dim, (batch, pooling), dist in itertools.product(sizes, dims, lookups, dists):
        rows = max(2, size // (dim * 4))
        t = TableSpec(name=f"t{size // KiB}k_d{dim}_p{pooling}", rows=rows, dim=dim, pooling=pooling, distribution=dist)
        for s in Strategy:
            if s.preloaded and t.bytes > local:
                continue
            if s.streamed and t.bytes > 64 * 1024 * KiB:
                continue  # chunk by chunk through L1d: minutes per point, and never chosen
            # Every core serves its own copy of the point (a sample split of a batch as many times larger):
            # in a plan all cores are busy at once, sharing the caches and main memory.
            points.append(GridPoint(t, batch * target.cores, s, PartitionMode.SAMPLES, target.cores))
        if target.cores >= 2 and t.bytes <= 2 * local and rows >= 2:
            for s in (Strategy.L1, Strategy.GM):
                points.append(GridPoint(t, batch, s, PartitionMode.ROWS, 2))
    if not quick:
        points += huge_table_points(target)
    return points


def huge_table_points(target: TargetSpec) -> list[GridPoint]:
    """GM reads of tables of 1 and 3 GiB: their page tables (1/512 of the table with 4 KiB pages) no longer
    fit in the shared cache beside the rows, so page walks go to main memory (`page_walk_main_s`)."""
    points = []
    for size, dim, (batch, pooling), dist in itertools.product(
        (1 << 30, 3 << 30), (16, 128), ((2048, 1), (1024, 24)), (Uniform(), Zipf(alpha=1.05))
    ):
        rows = size // (dim * 4)
        t = TableSpec(name=f"t{size >> 20}m_d{dim}_p{pooling}", rows=rows, dim=dim, pooling=pooling, distribution=dist)
        points.append(GridPoint(t, batch * target.cores, Strategy.GM, PartitionMode.SAMPLES, target.cores))
    return points


def point_plan(point: GridPoint, target: TargetSpec, profile: CostProfile) -> tuple[ExecutionPlan, Module]:
    """A plan that serves one table with exactly the point's strategy, mode and parts."""
    tgt = target.model_copy(update={"cores": point.parts})
    w = WorkloadSpec(name=point.table.name, batch_size=point.batch_size, tables=(point.table,))
    return forced_plan(w, tgt, profile, point.strategy, point.mode, point.parts, "calibration point")


def forced_plan(
    workload: WorkloadSpec,
    target: TargetSpec,
    profile: CostProfile,
    strategy: Strategy,
    mode: PartitionMode,
    parts: int,
    name: str,
    method: str = "greedy",
) -> tuple[ExecutionPlan, Module]:
    """A plan that serves every table with exactly this strategy, mode and part count, placed by the
    assign-cores `method` (`round-robin` deals the tables to cores 0, 1, ... in their order)."""
    m = PassManager(parse_pipeline("profile,select-strategy")).run(lower(workload, target, profile))
    options = tuple(
        TableOptions(table=t.name, options=(make_option(m, t, strategy, mode, parts),)) for t in m.workload.tables
    )
    m = m.model_copy(update={"options": options})
    m = PassManager(parse_pipeline(f"assign-cores{{method={method}}},schedule")).run(m)
    return emit_plan(m, name, whole_space=False), m


def measurements_of(plan: ExecutionPlan, reports: Sequence[RunReport], group: str) -> list[Measurement]:
    """One measurement per work item of a plan measured in one or more runs: the item's median over the
    batches of a run, in its best run. On a shared machine, other tenants only ever add time (a busy sibling
    hyperthread, a neighbour's cache traffic), and the model describes the machine undisturbed. `group`
    names the plan, so that the fit knows which tables shared the cache."""
    tables = {t.name: t for t in plan.workload.tables}
    return [
        Measurement(
            strategy=it.strategy,
            table=tables[it.table],
            batch_size=plan.workload.batch_size,
            rows=it.rows,
            samples=it.samples,
            measured_s=min(r.item_p50_s(it.id) for r in reports),
            first_on_core=plan.cores[it.core].items[0] == it.id,
            plan=group,
            core=it.core,
        )
        for it in plan.items
    ]


def measure_grid(
    target: TargetSpec, points: Sequence[GridPoint], config: RunConfig, progress: Callable[[str], None] | None = None
) -> list[Measurement]:
    profile = preset_profile(target)
    out: list[Measurement] = []
    for n, point in enumerate(points):
        plan, _ = point_plan(point, target, profile)
        out += measurements_of(plan, run_interleaved([plan], config, REPEATS)[0], f"grid-{n}")
        if progress:
            progress(
                f"[{n + 1}/{len(points)}] {point.table.name} {point.strategy.value} {point.mode.value}x{point.parts}"
            )
    return out


def training_workloads(quick: bool) -> list[WorkloadSpec]:
    """Synthetic workloads whose whole plans are measured for the fit (never the built-in ones, which are
    kept for judging the fit)."""
    from embmap.mapper.workloads.synthetic import synthetic

    specs = [synthetic(tables=12, total_bytes=4e6, size_skew=1.0, pooling_mean=2, seed=11, name="cal-small")]
    if not quick:
        specs.append(
            synthetic(
                tables=24, total_bytes=3e8, size_skew=1.3, pooling_mean=3, pooling_skew=0.8, seed=12, name="cal-mixed"
            )
        )
        # Dozens of small one-hot tables (user and item attributes): many short items on each core, where the
        # per-item launch, not the lookups, decides the time.
        specs.append(
            synthetic(
                tables=32, total_bytes=2e6, size_skew=1.5, pooling_mean=1, dims=(16, 32), seed=15, name="cal-tiny"
            )
        )
        # Many one-hot tables of wide rows over a wide spread of sizes (click logs' categorical features): each
        # core writes pooled outputs as large as the rows it reads, and they push each other out of its cache.
        specs.append(
            synthetic(
                tables=24, total_bytes=2e9, size_skew=2.0, pooling_mean=1, dims=(128,), seed=16, name="cal-onehot"
            )
        )
        # Many lookups into tables far larger than the caches, evicting each other's hot rows.
        heavy = {"size_skew": 0.8, "pooling_mean": 12, "pooling_skew": 1.0, "dims": (64, 128)}
        specs.append(synthetic(tables=16, total_bytes=2e9, seed=13, name="cal-heavy", **heavy))  # type: ignore[arg-type]
        # Several GiB of tables: their page tables compete with the rows for the shared cache.
        specs.append(synthetic(tables=12, total_bytes=5e9, seed=14, name="cal-huge", **heavy))  # type: ignore[arg-type]
    return specs


def measure_whole_plans(target: TargetSpec, quick: bool, config: RunConfig) -> list[Measurement]:
    out: list[Measurement] = []
    dists: tuple[Distribution, ...] = (Uniform(), Zipf(alpha=1.05))
    for w, dist in itertools.product(training_workloads(quick), dists):
        plans = [compile_plan(w, target, pipeline, distribution=dist, baselines=False) for pipeline in PIPELINES]
        for pipeline, plan, reports in zip(PIPELINES, plans, run_interleaved(plans, config, REPEATS), strict=True):
            out += measurements_of(plan, reports, f"{w.name}-{dist.kind}-{pipeline}")
    return out


HOT_MASSES = (0.25, 0.5, 0.75, 0.9, 0.97)  # beside a uniform table: the rungs of a hot-set ladder
HOT_ROWS = 64  # few enough to stay in a core's L1d and L2 beside anything
LADDER_TABLE_BYTES = 512 * 1024 * KiB  # 16 times the shared cache: nearly every other read misses it
LADDERS = ((16, 1, 1024), (128, 1, 1024), (64, 8, 128))  # (dim, pooling, samples per core)


def hot_set_ladders(target: TargetSpec, quick: bool) -> list[WorkloadSpec]:
    """Workloads of tables far larger than the caches, alike but for the share h of their reads that hit
    `HOT_ROWS` hot rows (0 for the uniform table, then `HOT_MASSES`). The other reads miss every cache, so an
    item's main-memory time is measured against its share of misses 1 - h: linear if a core overlaps every
    miss with the others, flatter if a miss among hits waits alone (`main_window_rows`). Whole plans of
    mixed tables cannot separate the two from what the caches hold. None in a quick calibration (each ladder
    holds 3 GiB of tables)."""
    return [] if quick else [ladder_workload(target, dim, pooling, samples) for dim, pooling, samples in LADDERS]


def ladder_workload(target: TargetSpec, dim: int, pooling: int, samples: int) -> WorkloadSpec:
    """One hot-set ladder: a uniform table and one per hot mass, `samples` samples per core."""
    tables = tuple(
        TableSpec(
            name=f"h{round(h * 100)}_d{dim}_p{pooling}",
            rows=LADDER_TABLE_BYTES // (dim * 4),
            dim=dim,
            pooling=pooling,
            distribution=HotSet(hot_rows=HOT_ROWS, hot_mass=h) if h else Uniform(),
        )
        for h in (0.0, *HOT_MASSES)
    )
    return WorkloadSpec(name=f"ladder-d{dim}-p{pooling}", batch_size=samples * target.cores, tables=tables)


def measure_hot_set_ladders(target: TargetSpec, quick: bool, config: RunConfig) -> list[Measurement]:
    """Every table of a ladder cut by samples over all cores, read from main memory (GM): each core runs
    every rung in turn."""
    out: list[Measurement] = []
    profile = preset_profile(target)
    for w in hot_set_ladders(target, quick):
        plan, _ = forced_plan(w, target, profile, Strategy.GM, PartitionMode.SAMPLES, target.cores, w.name)
        out += measurements_of(plan, run_interleaved([plan], config, REPEATS)[0], w.name)
    return out


def calibrate(
    target: TargetSpec,
    *,
    quick: bool = False,
    command: str = "embmap calibrate --target cpu",
    config: RunConfig = CALIBRATION_RUN,
    progress: Callable[[str], None] | None = None,
    loss: str = "huber",
) -> tuple[CalibrationResult, list[Measurement]]:
    points = grid(target, quick)
    measured = measure_grid(target, points, config, progress)
    measured += measure_whole_plans(target, quick, config)
    measured += measure_hot_set_ladders(target, quick, config)
    return fit_measured_here(measured, target, command, loss), measured


def fit_measured_here(
    measured: Sequence[Measurement], target: TargetSpec, command: str, loss: str = "huber"
) -> CalibrationResult:
    """`fit` for measurements this machine just took: where they cannot be fitted (a timer that read 0, times
    all alike), the input was good and the machine's measurements were not, so a ResourceError says so."""
    try:
        return fit(measured, target, command, loss)
    except SpecError as exc:
        raise ResourceError(
            "calibrate",
            f"the {len(measured)} measurements taken on this machine cannot be fitted: {exc.field}: {exc.problem}",
            "run it again on a quieter machine (nothing else busy), or keep them with --save-csv to look at them",
        ) from None


def fit(measured: Iterable[Measurement], target: TargetSpec, command: str, loss: str = "huber") -> CalibrationResult:
    return fit_profile(
        list(measured), target, preset_profile(target), command=command, machine=machine_key(), loss=loss
    )


# Has the machine changed since it was calibrated? --------------------------------------------------------

DRIFT_POINTS = 48  # grid points re-measured by a drift check: about 20 seconds here
DRIFT_MAX_TABLE_BYTES = 256 * 1024 * KiB  # the huge-table points take seconds each to materialise


@dataclass(frozen=True)
class Drift:
    """Items of calibration grid points measured again, beside what the calibration measured for them."""

    points: int
    then_s: tuple[float, ...]  # per item, from the calibration's measurements
    now_s: tuple[float, ...]  # per item, measured again now

    @property
    def ratios(self) -> list[float]:
        return [now / then for now, then in zip(self.now_s, self.then_s, strict=True)]

    def quantile(self, q: float) -> float:
        ratios = sorted(self.ratios)
        return ratios[min(len(ratios) - 1, round(q * (len(ratios) - 1)))]

    def text(self) -> str:
        median = self.quantile(0.5)
        if median > 1.1:
            verdict = f"this machine runs {median - 1:.0%} slower than when it was calibrated"
        elif median < 1 / 1.1:
            verdict = f"this machine runs {1 - median:.0%} faster than when it was calibrated"
        else:
            verdict = "this machine runs as when it was calibrated (within 10%)"
        return (
            f"drift: {self.points} calibration grid points ({len(self.now_s)} items) measured again, now / then: "
            f"median {median:.2f}x, quartiles {self.quantile(0.25):.2f}x-{self.quantile(0.75):.2f}x; {verdict}"
        )


def check_drift(
    target: TargetSpec,
    reference: Sequence[Measurement],
    *,
    points: int = DRIFT_POINTS,
    config: RunConfig = CALIBRATION_RUN,
) -> Drift:
    """Measure again, as `calibrate` did, a sample of the grid points behind `reference` (the measurements a
    profile was fitted to, e.g. the CSV `calibrate --save-csv` wrote), and compare item by item. The cost
    model describes the machine as it was then; a machine whose other tenants now keep a core or the shared
    cache busy runs every plan slower than predicted, and this says by how much."""
    groups: dict[int, list[Measurement]] = {}
    for m in reference:
        if m.plan.startswith("grid-") and m.plan[5:].isdigit():
            groups.setdefault(int(m.plan[5:]), []).append(m)
    if not groups:
        raise SpecError(
            "--check",
            "the measurements hold no calibration grid points (plan grid-N)",
            "give the CSV that `embmap calibrate --target cpu --save-csv` wrote",
        )
    current = grid(target)
    numbers = [n for n in sorted(groups) if n < len(current) and current[n].table.bytes <= DRIFT_MAX_TABLE_BYTES]
    stride = max(1, len(numbers) // max(1, points))
    chosen = numbers[::stride][:points]
    profile = preset_profile(target)
    then, now = [], []
    for n in chosen:
        plan, _ = point_plan(current[n], target, profile)
        measured = measurements_of(plan, run_interleaved([plan], config, REPEATS)[0], f"grid-{n}")
        key = {_item_key(m): m for m in groups[n]}
        for m in measured:
            old = key.get(_item_key(m))
            if old is None:
                raise SpecError(
                    "--check",
                    f"grid point {n} ({m.table.name} {m.strategy.value}) has an item the measurements lack",
                    "the grid or the target changed since they were taken: calibrate again",
                )
            then.append(old.measured_s)
            now.append(m.measured_s)
    return Drift(points=len(chosen), then_s=tuple(then), now_s=tuple(now))


def _item_key(m: Measurement) -> tuple[object, ...]:
    t = m.table
    return (m.strategy, t.rows, t.dim, t.dtype, t.pooling, t.distribution, m.batch_size, m.rows, m.samples)
