"""`embmap bench`, the run: every pipeline's plans for every built-in workload x query distribution, compiled
for `ascend910` (plan time, solver gap, predicted makespan) and for `cpu` (predicted with this machine's
profile), the cpu plans and the frameworks run for real in interleaved rounds on the same data, and a measured
loss beyond noise measured again. One `Row` per pipeline or framework and case."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from embmap.ir.plan import ExecutionPlan
from embmap.ir.spec import HotSet, HotTables, Uniform, Zipf
from embmap.mapper.bench.statistics import paired_speedup
from embmap.mapper.compiler import compile
from embmap.passes.solver.settings import DEFAULT_TIME_LIMIT_S, SolverSettings

if TYPE_CHECKING:
    from embmap.runtime import RunConfig
    from embmap.runtime.limits import Limits


@dataclass(frozen=True)
class Scenario:
    """A query distribution: how indices fall on rows, and optionally how lookups fall on tables."""

    name: str
    distribution: Uniform | Zipf | HotSet
    hot_tables: HotTables | None = None
    extreme: bool = False  # one of the paper's extremely unbalanced cases

    @property
    def description(self) -> str:
        d = self.distribution
        if isinstance(d, Zipf):
            text = f"Zipf {d.alpha}"
        elif isinstance(d, HotSet):
            text = f"hot rows ({d.hot_mass:.0%} of lookups on {d.hot_rows} rows)"
        else:
            text = "uniform"
        if self.hot_tables:
            text += f"; {self.hot_tables.mass:.0%} of lookups on the {self.hot_tables.tables} largest tables"
        return text


SCENARIOS = (
    Scenario("uniform", Uniform()),
    Scenario("zipf", Zipf(alpha=1.05)),
    Scenario("hot-rows", HotSet(hot_rows=16, hot_mass=0.9), extreme=True),
    Scenario("hot-tables", Zipf(alpha=1.05), HotTables(tables=2, mass=0.9), extreme=True),
)
PIPELINES = ("embmap", "default", "round-robin", "greedy")
PLANNING_CASES = ("synthetic:tables=500,total_bytes=2e10,seed=1",)  # planning time only, on ascend910


def default_pipelines() -> tuple[str, ...]:
    """Ours and the baselines, with TorchRec's planner where TorchRec is installed."""
    from embmap.mapper.torchrec.planner import available

    return (*PIPELINES, "torchrec") if available() else PIPELINES


def default_frameworks() -> tuple[str, ...]:
    """What a CPU user runs instead of a plan (`runtime.baselines.FRAMEWORKS`), those this machine can run."""
    from embmap.runtime.baselines import FRAMEWORKS, available

    return tuple(f for f in FRAMEWORKS if available(f))


def default_workloads(quick: bool) -> tuple[str, ...]:
    from embmap.mapper.workloads import builtin_names

    return ("tenrec-qb-article",) if quick else tuple(builtin_names())


@dataclass(frozen=True)
class BenchConfig:
    workloads: tuple[str, ...]
    scenarios: tuple[Scenario, ...] = SCENARIOS
    pipelines: tuple[str, ...] = field(default_factory=default_pipelines)
    frameworks: tuple[str, ...] = field(default_factory=default_frameworks)  # measured only, no plan
    planning_cases: tuple[str, ...] = PLANNING_CASES
    ascend_time_limit: float = DEFAULT_TIME_LIMIT_S
    cpu_time_limit: float = 2.0
    row_cap: int = 1_000_000  # what fits this machine's memory when run for real
    batches: int = 30
    repeats: int = 5  # interleaved rounds: with 5, a loss beyond noise is one that held in every round
    recheck_rounds: int = 9  # a measured loss beyond noise is measured again, embmap and the baseline alone
    # bytes of the table `runtime.limits.measure` gathers from for the machine's limits; 0: not measured
    limit_table_bytes: int = 2 << 30
    measure: bool = True


@dataclass(frozen=True)
class Row:
    """One case (workload x scenario) of one pipeline's plans, or of one framework's runs: a framework has no
    plan, so its plan fields are None (`is_framework`)."""

    workload: str
    scenario: str
    pipeline: str  # a plan pipeline, or a framework of runtime.baselines
    tables: int
    ascend_plan_s: float | None
    ascend_status: str | None
    ascend_gap: float | None
    ascend_makespan_s: float | None
    cpu_plan_s: float | None
    cpu_makespan_s: float | None
    measured_best_s: float | None  # p50 batch latency of the best run
    measured_median_s: float | None  # p50 of the median run
    measured_spread: float | None  # slowest run / best run - 1
    correct: bool | None
    measured_runs_s: tuple[float, ...] = ()  # p50 of each interleaved round, in round order
    cpu_work_digest: str = ""  # equal for two pipelines whose cpu plans run the same work the same way
    # Where embmap's plan measured slower than this baseline's beyond noise: both measured again, in
    # `recheck_rounds` rounds of their own (embmap's p50 and this plan's or framework's, per round).
    recheck_ours_s: tuple[float, ...] = ()
    recheck_theirs_s: tuple[float, ...] = ()
    bytes_per_batch: int | None = None  # bytes of table rows one batch gathers (the case's, whoever runs it)
    lookups_per_batch: int | None = None  # rows one batch gathers

    @property
    def row_bytes(self) -> float | None:
        """The mean bytes of a row the batch gathers."""
        if not self.bytes_per_batch or not self.lookups_per_batch:
            return None
        return self.bytes_per_batch / self.lookups_per_batch

    @property
    def is_framework(self) -> bool:
        """A framework's row: measured only, so it has no cpu plan (and no makespan)."""
        return self.cpu_makespan_s is None


def run_bench(
    config: BenchConfig, progress: Callable[[str], None] | None = None
) -> tuple[list[Row], dict[str, ExecutionPlan]]:
    """All rows, plus the ascend910 plan of every pipeline for the first case (for the per-core load plot)."""
    rows: list[Row] = []
    sample_plans: dict[str, ExecutionPlan] = {}
    for name in config.workloads:
        for sc in config.scenarios:
            ascend_solver = SolverSettings(time_limit_s=config.ascend_time_limit, workers=1, seed=0)
            cpu_solver = SolverSettings(time_limit_s=config.cpu_time_limit, workers=1, seed=0)
            ascend = [_timed(name, "ascend910", p, sc, ascend_solver, None) for p in config.pipelines]
            cpu = [_timed(name, "cpu", p, sc, cpu_solver, config.row_cap) for p in config.pipelines]
            if not sample_plans:
                sample_plans = {p: plan for p, (plan, _) in zip(config.pipelines, ascend, strict=True)}
            rows += _case_rows(config, name, sc, ascend, cpu)
            if progress:
                progress(f"{name} / {sc.name}: done")
    return rows, sample_plans


Timed = tuple[ExecutionPlan, float]  # a plan and its planning time


def _case_rows(config: BenchConfig, name: str, sc: Scenario, ascend: list[Timed], cpu: list[Timed]) -> list[Row]:
    """One case: a row per pipeline and, where measured, one per framework (all run in the same rounds), with
    every measured loss beyond noise measured again."""
    tables = len(ascend[0][0].tables)
    case = [
        Row(
            workload=name,
            scenario=sc.name,
            pipeline=pipeline,
            tables=tables,
            ascend_plan_s=a_s,
            ascend_status=a_plan.solver.status,
            ascend_gap=a_plan.solver.gap,
            ascend_makespan_s=a_plan.makespan_s,
            cpu_plan_s=c_s,
            cpu_makespan_s=c_plan.makespan_s,
            measured_best_s=None,
            measured_median_s=None,
            measured_spread=None,
            correct=None,
            cpu_work_digest=c_plan.work_digest(),
        )
        for pipeline, (a_plan, a_s), (c_plan, c_s) in zip(config.pipelines, ascend, cpu, strict=True)
    ]
    if not config.measure:
        return case
    from embmap.runtime import RunConfig, run_rounds

    run_config = RunConfig(batches=config.batches)
    plans = [plan for plan, _ in cpu]
    reports, measured = run_rounds(plans, run_config, config.repeats, config.frameworks)
    case += [Row(name, sc.name, f, tables, *(None,) * 10) for f in config.frameworks]
    gathered = reports[0][0].bytes_per_batch, reports[0][0].lookups_per_batch
    runs = [tuple(r.p50_s for r in rs) for rs in reports] + [tuple(b.p50_s for b in bs) for bs in measured]
    correct = [all(r.correct for r in rs) for rs in reports] + [all(b.correct for b in bs) for bs in measured]
    case = [_with_runs(r, runs_s, ok, *gathered) for r, runs_s, ok in zip(case, runs, correct, strict=True)]
    if "embmap" in config.pipelines and config.recheck_rounds:
        mine = config.pipelines.index("embmap")
        for i, r in enumerate(case):
            paired = paired_speedup(case[mine], r) if i != mine else None
            if paired and paired.slower_beyond_noise:
                theirs = plans[i] if i < len(plans) else r.pipeline
                ours_s, theirs_s = _measure_again(plans[mine], theirs, run_config, config.recheck_rounds)
                case[i] = dataclasses.replace(r, recheck_ours_s=ours_s, recheck_theirs_s=theirs_s)
    return case


def _with_runs(row: Row, runs: tuple[float, ...], correct: bool, bytes_per_batch: int, lookups: int) -> Row:
    """The row with its per-round p50s and what they give: the best and median run, and the spread."""
    best = min(runs)
    return dataclasses.replace(
        row,
        measured_best_s=best,
        measured_median_s=sorted(runs)[len(runs) // 2],
        measured_spread=max(runs) / best - 1 if best else None,
        correct=correct,
        measured_runs_s=runs,
        bytes_per_batch=bytes_per_batch,
        lookups_per_batch=lookups,
    )


def _measure_again(
    ours: ExecutionPlan, theirs: ExecutionPlan | str, run_config: RunConfig, rounds: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Embmap's plan and one rival, a plan or a framework, alone in `rounds` rounds: both p50s per round."""
    from embmap.runtime import run_rounds

    if isinstance(theirs, str):
        reports, measured = run_rounds([ours], run_config, rounds, (theirs,))
        return tuple(r.p50_s for r in reports[0]), tuple(b.p50_s for b in measured[0])
    reports, _ = run_rounds([ours, theirs], run_config, rounds)
    return tuple(r.p50_s for r in reports[0]), tuple(r.p50_s for r in reports[1])


@dataclass(frozen=True)
class PlanningTime:
    workload: str
    tables: int
    cores: int
    embmap_s: float
    embmap_status: str
    embmap_gap: float
    torchrec_s: float | None


def machine_limits(config: BenchConfig) -> Limits | None:
    """This machine's copy and gather limits, measured now (None where the bench measures nothing, or skips
    them)."""
    if not config.measure or not config.limit_table_bytes:
        return None
    from embmap.runtime.limits import measure

    return measure(config.limit_table_bytes)


def planning_times(config: BenchConfig) -> list[PlanningTime]:
    """embmap's whole pipeline against TorchRec's planner on large synthetic cases, on ascend910."""
    out = []
    for name in config.planning_cases:
        solver = SolverSettings(time_limit_s=config.ascend_time_limit, workers=1, seed=0)
        plan, seconds = _timed(name, "ascend910", "embmap", SCENARIOS[0], solver, None)
        theirs = (
            _timed(name, "ascend910", "torchrec", SCENARIOS[0], solver, None)[1]
            if "torchrec" in config.pipelines
            else None
        )
        out.append(
            PlanningTime(
                name, len(plan.tables), plan.target.cores, seconds, plan.solver.status, plan.solver.gap, theirs
            )
        )
    return out


def _timed(
    workload: str, target: str, pipeline: str, sc: Scenario, solver: SolverSettings, row_cap: int | None
) -> tuple[ExecutionPlan, float]:
    """The plan and its planning time: the whole pipeline, or for TorchRec its planner alone."""
    if pipeline == "torchrec":
        from embmap.mapper.compiler import prepare_workload, resolve_target
        from embmap.mapper.profiles import default_profile
        from embmap.mapper.torchrec.planner import torchrec_plan

        tgt = resolve_target(target)
        spec = prepare_workload(workload, row_cap=row_cap, distribution=sc.distribution, hot_tables=sc.hot_tables)
        return torchrec_plan(spec, tgt, default_profile(tgt))
    start = time.perf_counter()
    plan = compile(
        workload,
        target,
        pipeline,
        distribution=sc.distribution,
        hot_tables=sc.hot_tables,
        row_cap=row_cap,
        solver=solver,
        baselines=False,
    )
    return plan, time.perf_counter() - start


def quick_config() -> BenchConfig:
    return BenchConfig(
        planning_cases=(),
        workloads=default_workloads(True),
        ascend_time_limit=1.0,
        cpu_time_limit=0.5,
        row_cap=100_000,
        batches=5,
        repeats=1,
        limit_table_bytes=0,
    )
