"""`embmap bench`, the plots, and their captions in RESULTS.md:

- speedup.png: one panel per rival (each baseline pipeline, each framework), a row per case; embmap's speedup
  predicted on ascend910 (a diamond) and measured on this machine (a dot: the median paired speedup, its bar
  the sign test's interval over the rounds), on a log axis with ticks at 0.5x, 1x, 2x, 5x, ...
- core-load.png: the first case's ascend910 plans, one panel per pipeline, each a Gantt chart of the predicted
  schedule (`embmap.mapper.gantt`), on one time axis so that the makespans compare.

Without matplotlib there are none. `python -m embmap.mapper.bench.plots --replot docs` draws them again from
docs/results.csv (recompiling the first case's ascend910 plans for the core-load plot) and rewrites the plots
section of docs/RESULTS.md, without measuring anything.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embmap.ir.output import write_atomic, write_text_atomic
from embmap.mapper.bench.statistics import (
    CONFIDENCE,
    baseline_names,
    by_case,
    framework_names,
    paired_speedup,
    same_plan,
)

if TYPE_CHECKING:
    from embmap.ir.plan import ExecutionPlan
    from embmap.mapper.bench.run import Row

SPEEDUP, CORE_LOAD = "speedup.png", "core-load.png"
PLOTS = (SPEEDUP, CORE_LOAD)
CAPTIONS = {
    SPEEDUP: "Speedup of embmap's plan over each rival, one panel per rival and a row per case (log axis; right "
    "of the 1x line, embmap is faster). Diamond: predicted on ascend910 (plans only). Dot: measured on this "
    f"machine, the median over rounds of the rival's latency / embmap's in the same round; its bar, the {CONFIDENCE:.0%} "
    "interval of that median (the sign test's, where there are enough rounds). Grey cross at 1x: both "
    "pipelines made the same cpu plan.",
    CORE_LOAD: "The first case's ascend910 plans, one panel per pipeline: a row per core (cores that run the same "
    "items share a row, labelled with their numbers), each item a bar over the predicted time of one batch, "
    "coloured by strategy and labelled by table where it fits; dashed line: the lower bound over every plan, "
    "red line: the plan's makespan. All panels share the time axis.",
}
TICKS = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0)
DPI = 110


def write_plots(rows: Sequence[Row], plans: dict[str, ExecutionPlan], out: Path) -> list[Path]:
    """speedup.png and, given plans, core-load.png in `out`, each written atomically; none without matplotlib."""
    from embmap.ir.errors import ResourceError
    from embmap.mapper.gantt import pyplot

    try:
        plt = pyplot()
    except ResourceError:  # no matplotlib
        return []
    written = []
    fig = speedup_figure(plt, rows)
    if fig is not None:
        written.append(_save(fig, out / SPEEDUP))
        plt.close(fig)
    if plans:
        fig = core_load_figure(plt, plans)
        written.append(_save(fig, out / CORE_LOAD))
        plt.close(fig)
    return written


def plots_section(plots: Sequence[str], note: str = "") -> list[str]:
    """RESULTS.md's plots section: each plot with its caption (after `note`, a paragraph, where given)."""
    out = ["## Plots", ""] + ([note, ""] if note else [])
    for p in plots:
        out += [f"![{p}]({p})", "", f"*{p}*: {CAPTIONS.get(p, '')}".rstrip(": "), ""]
    return out[:-1]


# speedup.png ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Point:
    """One case in one rival's panel: predicted and measured speedups (None where there is none)."""

    predicted: float | None
    measured: float | None
    interval: tuple[float, float] | None
    same: bool


def speedup_points(rows: Sequence[Row], rival: str) -> list[Point]:
    """embmap's speedup over `rival` in every case, in case order."""
    points = []
    for case in by_case(rows).values():
        ours, theirs = case.get("embmap"), case.get(rival)
        if ours is None or theirs is None:
            points.append(Point(None, None, None, False))
            continue
        predicted = (
            theirs.ascend_makespan_s / ours.ascend_makespan_s
            if theirs.ascend_makespan_s and ours.ascend_makespan_s
            else None
        )
        paired = paired_speedup(ours, theirs)
        same = same_plan(ours, theirs)
        points.append(Point(predicted, paired.median if paired else None, paired.interval if paired else None, same))
    return points


def speedup_figure(plt: Any, rows: Sequence[Row]) -> Any:
    """One panel per rival (baselines, then frameworks), the cases as rows, shared; None without a rival."""
    cases = list(by_case(rows))
    rivals = baseline_names(rows) + framework_names(rows)
    if not rivals:
        return None
    fig, axes = plt.subplots(
        1, len(rivals), figsize=(1.8 + 2.7 * len(rivals), 1.6 + 0.3 * len(cases)), sharey=True, squeeze=False
    )
    for ax, rival in zip(axes[0], rivals, strict=True):
        _speedup_panel(ax, speedup_points(rows, rival), rival)
    axes[0][0].set_yticks(range(len(cases)), [f"{w} / {s}" for w, s in cases], fontsize=8)
    axes[0][0].set_ylim(len(cases) - 0.5, -0.5)
    _workload_separators(axes[0], cases)
    _speedup_legend(fig)
    fig.suptitle("Speedup of embmap's plan over each rival (log axis; > 1x: embmap faster)", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    return fig


def _speedup_panel(ax: Any, points: Sequence[Point], rival: str) -> None:
    values: list[float] = [1.0]
    for y, p in enumerate(points):
        if p.predicted is not None:
            ax.plot(p.predicted, y, marker="D", mfc="none", mec="tab:blue", ms=6, ls="none")
            values.append(p.predicted)
        if p.same:
            ax.plot(1.0, y, marker="x", color="grey", ms=6, ls="none")
        elif p.measured is not None:
            lo, hi = p.interval or (p.measured, p.measured)
            ax.errorbar(
                p.measured,
                y,
                xerr=[[p.measured - lo], [hi - p.measured]],
                fmt="o",
                color="tab:red",
                ms=4.5,
                capsize=2.5,
                elinewidth=1.2,
            )
            values += [lo, hi]
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_title(f"vs {rival}", fontsize=10)
    log_ticks(ax, min(values), max(values))
    ax.set_xlabel("speedup of embmap")
    ax.grid(axis="x", which="major", alpha=0.3)


def log_ticks(ax: Any, low: float, high: float, axis: str = "x") -> None:
    """A log axis spanning [low, high] (with a margin) whose ticks are labelled 0.5x, 1x, 2x, 5x, ...: no
    minor labels, no powers of ten."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter, NullLocator

    lo, hi = low / 1.25, high * 1.25
    ticks = [t for t in TICKS if lo <= t <= hi]
    if len(ticks) < 2:  # a narrow range: ticks at the ends too
        ticks = sorted({*ticks, round(lo, 2), round(hi, 2)})
    which = ax.xaxis if axis == "x" else ax.yaxis
    (ax.set_xscale if axis == "x" else ax.set_yscale)("log")
    (ax.set_xlim if axis == "x" else ax.set_ylim)(lo, hi)
    which.set_major_locator(FixedLocator(ticks))
    which.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
    which.set_minor_locator(NullLocator())
    which.set_minor_formatter(NullFormatter())


def _workload_separators(axes: Sequence[Any], cases: Sequence[tuple[str, str]]) -> None:
    """A thin line between workloads, across every panel."""
    for y in range(1, len(cases)):
        if cases[y][0] != cases[y - 1][0]:
            for ax in axes:
                ax.axhline(y - 0.5, color="grey", linewidth=0.5, alpha=0.6)


def _speedup_legend(fig: Any) -> None:
    from matplotlib.lines import Line2D

    handles = [
        Line2D([], [], marker="D", mfc="none", mec="tab:blue", ls="none", label="predicted on ascend910"),
        Line2D(
            [],
            [],
            marker="o",
            color="tab:red",
            label=f"measured here: median paired speedup, {CONFIDENCE:.0%} interval",
        ),
        Line2D([], [], marker="x", color="grey", ls="none", label="same plan (1x)"),
    ]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)


# core-load.png --------------------------------------------------------------------------------------------

CORE_LOAD_ROWS = 24  # rows per panel at most (identical cores share one)


def core_load_figure(plt: Any, plans: dict[str, ExecutionPlan]) -> Any:
    """The plans' Gantt charts, two columns of panels on one time axis."""
    from embmap.ir.printer import printable
    from embmap.mapper.gantt import draw_schedule, group_cores, legend, shown_rows

    columns = 2 if len(plans) > 1 else 1
    panels = (len(plans) + columns - 1) // columns
    drawn = {p: shown_rows(group_cores(plan), CORE_LOAD_ROWS) for p, plan in plans.items()}
    tallest = max(len(rows) for rows, _ in drawn.values())
    width_in = 8.0 * columns
    fig, axes = plt.subplots(
        panels, columns, figsize=(width_in, 1.0 + panels * (1.1 + 0.17 * tallest)), squeeze=False, sharex=True
    )
    for ax, (pipeline, plan) in zip(axes.flat, plans.items(), strict=False):
        rows, left_out = drawn[pipeline]
        draw_schedule(ax, plan, rows, width_in / columns * 0.7)
        ax.set_ylim(tallest - 0.5, -0.5)  # rows of one height in every panel
        ax.tick_params(axis="y", labelsize=6)
        over = plan.makespan_s / plan.lower_bound_s - 1 if plan.lower_bound_s > 0 else 0.0
        note = f"; {sum(len(g.cores) for g in left_out)} cores finishing earlier not shown" if left_out else ""
        ax.set_title(
            f"{pipeline}: makespan {plan.makespan_s * 1e6:.1f} us, {over:+.1%} over the bound{note}", fontsize=9
        )
        ax.xaxis.set_tick_params(labelbottom=True)
    for ax in list(axes.flat)[len(plans) :]:
        ax.set_visible(False)
    first = next(iter(plans.values()))
    fig.suptitle(
        f"Predicted schedule of one batch of {printable(first.workload.name)} on {printable(first.target.name)} "
        f"({first.target.cores} cores), per pipeline",
        fontsize=11,
    )
    legend(fig, None)
    fig.tight_layout(rect=(0, 0.04, 1, 0.98))
    return fig


def _save(fig: Any, path: Path) -> Path:
    write_atomic(path, lambda f: fig.savefig(f, dpi=DPI, format="png"), "--out")
    return path


# Replotting from results.csv ----------------------------------------------------------------------------


def read_rows(path: Path) -> list[Row]:
    """The rows of a results.csv written by `report.rows_csv` (None for an empty cell; a tuple's items are
    separated by spaces)."""
    from embmap.mapper.bench.run import Row

    kinds = {f.name: str(f.type) for f in dataclasses.fields(Row)}
    with path.open(encoding="utf-8", newline="") as f:
        return [Row(**{k: _value(kinds[k], v) for k, v in line.items()}) for line in csv.DictReader(f)]


def _value(kind: str, text: str) -> Any:
    if kind.startswith("tuple"):
        return tuple(float(v) for v in text.split())
    if text == "" and "None" in kind:
        return None
    base = kind.split(" |")[0]
    if base == "bool":
        return text == "True"
    if base in ("int", "float"):
        return int(text) if base == "int" else float(text)
    return text


def first_case_plans(rows: Sequence[Row], time_limit_s: float) -> dict[str, ExecutionPlan]:
    """The first case's ascend910 plans, compiled again as `run_bench` compiles them (1 worker, seed 0)."""
    from embmap.mapper.bench.run import SCENARIOS, _timed
    from embmap.passes.solver.settings import SolverSettings

    (workload, scenario), case = next(iter(by_case(rows).items()))
    sc = next(s for s in SCENARIOS if s.name == scenario)
    solver = SolverSettings(time_limit_s=time_limit_s, workers=1, seed=0)
    return {p: _timed(workload, "ascend910", p, sc, solver, None)[0] for p, r in case.items() if not r.is_framework}


REPLOT_NOTE = (
    "Drawn again from `{out}/results.csv` by `python -m embmap.mapper.bench.plots --replot {out}`, measuring "
    "nothing; the core-load plans compiled again as the bench compiles them."
)


def replot(out: Path, time_limit_s: float = 2.0) -> list[Path]:
    """Draw the plots again from `out`/results.csv and rewrite the plots section of `out`/RESULTS.md."""
    rows = read_rows(out / "results.csv")
    written = write_plots(rows, first_case_plans(rows, time_limit_s), out)
    report = out / "RESULTS.md"
    if report.is_file():
        text = report.read_text(encoding="utf-8")
        section = plots_section([p.name for p in written], REPLOT_NOTE.format(out=out))
        write_text_atomic(report, replace_section(text, "## Plots", section))
        written.append(report)
    return written


def replace_section(text: str, heading: str, lines: Sequence[str]) -> str:
    """`text` with the section under `heading` (up to the next "## " heading) replaced by `lines`."""
    start = text.find(heading + "\n")
    if start < 0:
        return text
    end = text.find("\n## ", start + len(heading))
    rest = text[end:] if end >= 0 else "\n"
    return text[:start] + "\n".join(lines) + "\n" + rest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embmap.mapper.bench.plots", description=__doc__)
    parser.add_argument("--replot", type=Path, required=True, metavar="DIR", help="the bench's --out (results.csv)")
    parser.add_argument("--time-limit", type=float, default=2.0, help="CP-SAT seconds for the core-load plans")
    args = parser.parse_args(argv)
    for path in replot(args.replot, args.time_limit):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
