"""`embmap bench`: every pipeline on every built-in workload x query distribution, predicted and measured.

For each workload and scenario, each pipeline's plan is compiled for `ascend910` (plan time, solver gap,
predicted makespan) and for `cpu` (predicted with this machine's profile, then run for real on the reference
runtime, the pipelines taking turns on the same data). The results go to a CSV, a Markdown report and two
plots; `--quick` runs one small workload in seconds, to prove the whole path works.
"""

from __future__ import annotations

import csv
import datetime
import io
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from ir.loader import write_text_atomic
from ir.plan import ExecutionPlan
from ir.spec import HotSet, HotTables, Uniform, Zipf
from mapper.compiler import SolverOptions, compile
from mapper.profiles import machine_key


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
    from mapper.torchrec_planner import available

    return (*PIPELINES, "torchrec") if available() else PIPELINES


PAPER_RANGES = {False: "1.5-6.5x", True: ">20x"}  # the paper's speedups over the default compiler


@dataclass(frozen=True)
class BenchConfig:
    workloads: tuple[str, ...]
    scenarios: tuple[Scenario, ...] = SCENARIOS
    pipelines: tuple[str, ...] = field(default_factory=default_pipelines)
    planning_cases: tuple[str, ...] = PLANNING_CASES
    ascend_time_limit: float = 10.0
    cpu_time_limit: float = 2.0
    row_cap: int = 1_000_000  # what fits this machine's memory when run for real
    batches: int = 30
    repeats: int = 3
    measure: bool = True


@dataclass(frozen=True)
class Row:
    workload: str
    scenario: str
    pipeline: str
    tables: int
    ascend_plan_s: float
    ascend_status: str
    ascend_gap: float
    ascend_makespan_s: float
    cpu_plan_s: float
    cpu_makespan_s: float
    measured_best_s: float | None  # p50 batch latency of the best run
    measured_median_s: float | None  # p50 of the median run
    measured_spread: float | None  # slowest run / best run - 1
    correct: bool | None


def run_bench(
    config: BenchConfig, progress: Callable[[str], None] | None = None
) -> tuple[list[Row], dict[str, ExecutionPlan]]:
    """All rows, plus the ascend910 plan of every pipeline for the first case (for the per-core load plot)."""
    from runtime import RunConfig, run_interleaved

    rows: list[Row] = []
    sample_plans: dict[str, ExecutionPlan] = {}
    run_config = RunConfig(batches=config.batches, warmup=5)
    for name in config.workloads:
        for sc in config.scenarios:
            ascend, cpu = [], []
            for pipeline in config.pipelines:
                ascend.append(
                    _timed(
                        name,
                        "ascend910",
                        pipeline,
                        sc,
                        SolverOptions(time_limit=config.ascend_time_limit, workers=1, seed=0),
                        None,
                    )
                )
                cpu.append(
                    _timed(
                        name,
                        "cpu",
                        pipeline,
                        sc,
                        SolverOptions(time_limit=config.cpu_time_limit, workers=1, seed=0),
                        config.row_cap,
                    )
                )
            if not sample_plans:
                sample_plans = {p: plan for p, (plan, _) in zip(config.pipelines, ascend, strict=True)}
            runs: list[list[float]] = [[] for _ in config.pipelines]
            correct: list[bool | None] = [None] * len(config.pipelines)
            if config.measure:
                reports = run_interleaved([plan for plan, _ in cpu], run_config, config.repeats)
                runs = [[r.p50_s for r in rs] for rs in reports]
                correct = [all(r.correct for r in rs) for rs in reports]
            for i, pipeline in enumerate(config.pipelines):
                (a_plan, a_s), (c_plan, c_s) = ascend[i], cpu[i]
                best = min(runs[i]) if runs[i] else None
                rows.append(
                    Row(
                        workload=name,
                        scenario=sc.name,
                        pipeline=pipeline,
                        tables=len(a_plan.tables),
                        ascend_plan_s=a_s,
                        ascend_status=a_plan.solver.status,
                        ascend_gap=a_plan.solver.gap,
                        ascend_makespan_s=a_plan.makespan_s,
                        cpu_plan_s=c_s,
                        cpu_makespan_s=c_plan.makespan_s,
                        measured_best_s=best,
                        measured_median_s=sorted(runs[i])[len(runs[i]) // 2] if runs[i] else None,
                        measured_spread=max(runs[i]) / best - 1 if best else None,
                        correct=correct[i],
                    )
                )
            if progress:
                progress(f"{name} / {sc.name}: done")
    return rows, sample_plans


@dataclass(frozen=True)
class PlanningTime:
    workload: str
    tables: int
    cores: int
    embmap_s: float
    embmap_status: str
    embmap_gap: float
    torchrec_s: float | None


def planning_times(config: BenchConfig) -> list[PlanningTime]:
    """embmap's whole pipeline against TorchRec's planner on large synthetic cases, on ascend910."""
    out = []
    for name in config.planning_cases:
        solver = SolverOptions(time_limit=config.ascend_time_limit, workers=1, seed=0)
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
    workload: str, target: str, pipeline: str, sc: Scenario, solver: SolverOptions, row_cap: int | None
) -> tuple[ExecutionPlan, float]:
    """The plan and its planning time: the whole pipeline, or for TorchRec its planner alone."""
    if pipeline == "torchrec":
        from mapper.compiler import prepare_workload, resolve_target
        from mapper.profiles import default_profile
        from mapper.torchrec_planner import torchrec_plan

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


# Outputs ----------------------------------------------------------------------------------------------------


def rows_csv(rows: Sequence[Row]) -> str:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    names = [f.name for f in fields(Row)]
    writer.writerow(names)
    for r in rows:
        values = asdict(r)
        writer.writerow(["" if values[n] is None else values[n] for n in names])
    return text.getvalue()


def write_outputs(
    rows: Sequence[Row],
    plans: dict[str, ExecutionPlan],
    out: Path,
    command: str,
    config: BenchConfig,
    planning: Sequence[PlanningTime] = (),
) -> list[Path]:
    """results.csv, RESULTS.md and the plots, each written atomically."""
    written = [out / "results.csv", out / "RESULTS.md"]
    write_text_atomic(written[0], rows_csv(rows))
    plots = _plots(rows, plans, out)
    report = report_markdown(rows, command, config, [p.name for p in plots], planning)
    write_text_atomic(written[1], report + _kept_section(written[1]))
    return written + plots


DMP_SECTION = "## On TorchRec's DistributedModelParallel"  # written by benchmarks/torchrec_dmp.py's runs


def _kept_section(path: Path) -> str:
    """The DMP comparison of an earlier RESULTS.md, which this benchmark does not measure, kept as it was."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    at = text.find(DMP_SECTION)
    return "\n" + text[at:] if at >= 0 else ""


def _by_case(rows: Sequence[Row]) -> dict[tuple[str, str], dict[str, Row]]:
    cases: dict[tuple[str, str], dict[str, Row]] = {}
    for r in rows:
        cases.setdefault((r.workload, r.scenario), {})[r.pipeline] = r
    return cases


def _ratio(theirs: float | None, ours: float | None) -> str:
    return f"{theirs / ours:.2f}x" if theirs and ours else "-"


def losses(rows: Sequence[Row]) -> list[str]:
    """Cases where embmap's plan is slower than a baseline's: predicted at all, or measured beyond run-to-run
    noise (embmap's best run slower than the baseline's best run by more than either plan's runs spread)."""
    found = []
    for (w, s), case in _by_case(rows).items():
        ours = case.get("embmap")
        if ours is None:
            continue
        for p, r in case.items():
            if p == "embmap":
                continue
            for target, mine, theirs in (
                ("ascend910", ours.ascend_makespan_s, r.ascend_makespan_s),
                ("cpu", ours.cpu_makespan_s, r.cpu_makespan_s),
            ):
                if mine > theirs * (1 + 1e-9):
                    found.append(
                        f"{w} / {s}: predicted on {target}, embmap {mine * 1e6:.1f} us vs {p} {theirs * 1e6:.1f} us"
                    )
            if ours.measured_best_s and r.measured_best_s:
                noise = max(ours.measured_spread or 0.0, r.measured_spread or 0.0)
                if ours.measured_best_s > r.measured_best_s * (1 + noise):
                    found.append(
                        f"{w} / {s}: measured on this machine, embmap {ours.measured_best_s * 1e6:.0f} us vs {p} "
                        f"{r.measured_best_s * 1e6:.0f} us (best runs), beyond the runs' spread of {noise:.0%}"
                    )
    return found


def measured_slower(rows: Sequence[Row]) -> list[tuple[str, str, str, float]]:
    """(workload, scenario, baseline, ratio) wherever embmap's best run was slower at all, noise or not."""
    out = []
    for (w, s), case in _by_case(rows).items():
        ours = case.get("embmap")
        for p, r in case.items():
            mine, theirs = (ours.measured_best_s if ours else None), r.measured_best_s
            if p != "embmap" and mine and theirs and mine > theirs:
                out.append((w, s, p, mine / theirs))
    return out


def report_markdown(
    rows: Sequence[Row],
    command: str,
    config: BenchConfig,
    plots: Sequence[str],
    planning: Sequence[PlanningTime] = (),
) -> str:
    cases = _by_case(rows)
    baselines = [p for p in config.pipelines if p != "embmap"]
    scenario = {s.name: s for s in config.scenarios}
    out = [
        "# Benchmark results",
        "",
        f"- command: `{command}`",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {machine_key()} ({platform.machine()}, Python {platform.python_version()})",
        f"- CP-SAT: {config.ascend_time_limit:g} s on ascend910, {config.cpu_time_limit:g} s on cpu; 1 worker, seed 0",
        f"- measured: rows capped at {config.row_cap:,} per table, {config.batches} batches x {config.repeats} "
        "interleaved runs per plan; the best run's p50 batch latency",
        "",
        "Scenarios: " + "; ".join(f"**{s.name}**: {s.description}" for s in config.scenarios) + ".",
        "",
        "Pipelines: **embmap** (ours, CP-SAT); **default** (every table GM, each batch split evenly over all "
        "cores); **round-robin** (whole tables dealt to cores); **greedy** (our menu, longest-first placement)"
        + (
            "; **torchrec** (TorchRec's EmbeddingShardingPlanner with one rank per core, allowed table-wise, "
            "row-wise and data-parallel sharding; its plan is costed, scheduled and run by embmap, and its plan "
            "time is the planner's alone)."
            if "torchrec" in config.pipelines
            else "."
        ),
        "",
        "## Speedup of embmap's plan over each baseline",
        "",
        "Predicted on ascend910 (uncalibrated spec-sheet profile) and measured on this machine (cpu target,",
        "calibrated profile). The paper reports 1.5-6.5x over the default compiler on real query",
        "distributions and more than 20x on extremely unbalanced ones.",
        "",
        *_paper_comparison(cases, scenario),
        "",
        "| workload | scenario | paper vs default | "
        + " | ".join(f"ascend910 vs {b}" for b in baselines)
        + " | "
        + " | ".join(f"measured vs {b}" for b in baselines)
        + " |",
        "|" + "---|" * (3 + 2 * len(baselines)),
    ]
    for (w, s), case in cases.items():
        ours = case["embmap"]
        predicted = [_ratio(case[b].ascend_makespan_s, ours.ascend_makespan_s) for b in baselines]
        measured = [_ratio(case[b].measured_best_s, ours.measured_best_s) for b in baselines]
        out.append(f"| {w} | {s} | {PAPER_RANGES[scenario[s].extreme]} | " + " | ".join(predicted + measured) + " |")
    out += [
        "",
        "## Planning time and solver gap",
        "",
        "| workload | scenario | tables | embmap plan time (ascend910) | status | gap | "
        + " | ".join(f"{b} plan time" for b in baselines)
        + " |",
        "|" + "---|" * (6 + len(baselines)),
    ]
    for (w, s), case in cases.items():
        ours = case["embmap"]
        out.append(
            f"| {w} | {s} | {ours.tables} | {ours.ascend_plan_s:.2f} s | {ours.ascend_status} | {ours.ascend_gap:.1%} | "
            + " | ".join(f"{case[b].ascend_plan_s:.2f} s" for b in baselines)
            + " |"
        )
    if planning:
        out += [
            "",
            "Large synthetic cases (ascend910, planning time only):",
            "",
            "| workload | tables | cores | embmap plan time | status | gap | TorchRec planner time |",
            "|---|---|---|---|---|---|---|",
        ]
        out += [
            f"| `{p.workload}` | {p.tables} | {p.cores} | {p.embmap_s:.2f} s | {p.embmap_status} | {p.embmap_gap:.1%} | "
            + ("-" if p.torchrec_s is None else f"{p.torchrec_s:.2f} s")
            + " |"
            for p in planning
        ]
    out += ["", "## Predicted and measured latency on this machine", ""]
    out += [
        "| workload | scenario | pipeline | predicted | measured (best run) | median run | spread | correct |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r.workload} | {r.scenario} | {r.pipeline} | {_us(r.cpu_makespan_s)} | {_us(r.measured_best_s)} | "
            f"{_us(r.measured_median_s)} | {'-' if r.measured_spread is None else f'{r.measured_spread:.0%}'} | "
            f"{'-' if r.correct is None else ('yes' if r.correct else 'NO')} |"
        )
    found = losses(rows)
    out += ["", "## Where embmap loses", ""]
    out += (
        [f"- {f}" for f in found]
        if found
        else [
            "No case beyond noise: embmap's plan is never predicted slower than a baseline's, and never measured "
            "slower by more than the run-to-run spread of the two plans."
        ]
    )
    slower = measured_slower(rows)
    if slower:
        worst = max(slower, key=lambda x: x[3])
        out += [
            "",
            f"Within noise, embmap's best run was slower than a baseline's best run in {len(slower)} of "
            f"{sum(len(c) - 1 for c in cases.values())} comparisons, by at most {worst[3] - 1:.1%} "
            f"({worst[0]} / {worst[1]} vs {worst[2]}).",
        ]
    if plots:
        out += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    return "\n".join(out) + "\n"


def _paper_comparison(cases: dict[tuple[str, str], dict[str, Row]], scenario: dict[str, Scenario]) -> list[str]:
    """The range of predicted speedups over default on ascend910, real-like and extreme, beside the paper's."""
    lines = []
    for extreme in (False, True):
        ratios = [
            case["default"].ascend_makespan_s / case["embmap"].ascend_makespan_s
            for (_, s), case in cases.items()
            if scenario[s].extreme == extreme and "default" in case
        ]
        if not ratios:
            continue
        kind = "extremely unbalanced scenarios" if extreme else "real-like scenarios"
        line = (
            f"- {kind}: predicted {min(ratios):.2f}x-{max(ratios):.2f}x over default on ascend910 "
            f"(paper: {PAPER_RANGES[extreme]})"
        )
        if extreme and max(ratios) < 20:
            line += (
                ". Skew does not unbalance our `default` baseline, which splits every table's batch evenly "
                "over all cores: it loses by its per-item overheads and the reuse it forgoes, which skew "
                "does not grow, so these cases stay below the paper's >20x"
            )
        lines.append(line)
    return lines


def _us(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e6:.1f} us"


def _plots(rows: Sequence[Row], plans: dict[str, ExecutionPlan], out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return []
    written = []
    cases = _by_case(rows)
    labels = [f"{w}\n{s}" for w, s in cases]
    baselines = [p for p in next(iter(cases.values())) if p != "embmap"]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.55 * len(labels)), 8), sharex=True)
    width = 0.8 / max(1, len(baselines))
    for ax, key, title in (
        (axes[0], "ascend_makespan_s", "predicted on ascend910"),
        (axes[1], "measured_best_s", "measured on this machine"),
    ):
        for j, b in enumerate(baselines):
            values = []
            for case in cases.values():
                ours, theirs = getattr(case["embmap"], key), getattr(case[b], key)
                values.append(theirs / ours if ours and theirs else 0.0)
            ax.bar([i + j * width for i in range(len(labels))], values, width, label=f"vs {b}")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")
        ax.set_ylabel("speedup of embmap")
        ax.set_title(title)
        ax.legend(fontsize=8)
    axes[1].set_xticks([i + 0.4 - width / 2 for i in range(len(labels))], labels, rotation=70, fontsize=7)
    fig.tight_layout()
    written.append(_save(fig, out / "speedup.png"))
    plt.close(fig)
    if plans:
        colors = {"GM": "tab:blue", "L1": "tab:green", "GM-UB": "tab:orange", "L1-UB": "tab:red"}
        fig, axes = plt.subplots(1, len(plans), figsize=(4 * len(plans), 3.5), sharey=True, squeeze=False)
        for ax, (pipeline, plan) in zip(axes[0], plans.items(), strict=True):
            for it in plan.items:
                ax.bar(
                    it.core,
                    (it.finish_s - it.start_s) * 1e6,
                    bottom=it.start_s * 1e6,
                    color=colors[it.strategy.value],
                    edgecolor="white",
                    linewidth=0.3,
                )
            ax.set_title(f"{pipeline}: {plan.workload.name} on {plan.target.name}", fontsize=9)
            ax.set_xlabel("core")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes[0][0].set_ylabel("predicted time in batch (us)")
        handles = [plt.Rectangle((0, 0), 1, 1, color=c) for c in colors.values()]
        fig.legend(handles, list(colors), loc="upper right", fontsize=8)
        fig.tight_layout()
        written.append(_save(fig, out / "core-load.png"))
        plt.close(fig)
    return written


def _save(fig: object, path: Path) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, dpi=110, format="png")  # type: ignore[attr-defined]
    tmp.replace(path)
    return path


def default_workloads(quick: bool) -> tuple[str, ...]:
    from workloads import builtin_names

    return ("tenrec-qb-article",) if quick else tuple(builtin_names())


def quick_config() -> BenchConfig:
    return BenchConfig(
        planning_cases=(),
        workloads=default_workloads(True),
        ascend_time_limit=1.0,
        cpu_time_limit=0.5,
        row_cap=100_000,
        batches=5,
        repeats=1,
    )


__all__ = ["SCENARIOS", "BenchConfig", "Row", "Scenario", "quick_config", "run_bench", "write_outputs"]
