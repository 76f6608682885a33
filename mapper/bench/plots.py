"""`embmap bench`, the plots: embmap's speedup over each rival per case (predicted and measured), and the
predicted per-core load of the first case's ascend910 plans. Without matplotlib there are none."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from embmap.ir.output import write_atomic
from embmap.mapper.bench.statistics import baseline_names, by_case, framework_names, paired_speedup, same_plan

if TYPE_CHECKING:
    from embmap.ir.plan import ExecutionPlan
    from embmap.mapper.bench.run import Row


def write_plots(rows: Sequence[Row], plans: dict[str, ExecutionPlan], out: Path) -> list[Path]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import MaxNLocator
    except ImportError:
        return []
    written = []
    cases = by_case(rows)
    labels = [f"{w}\n{s}" for w, s in cases]
    baselines, frameworks = baseline_names(rows), framework_names(rows)
    rivals = baselines + frameworks
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.55 * len(labels)), 8), sharex=True)
    width = 0.8 / max(1, len(rivals))
    for ax, measured, title in (
        (axes[0], False, "predicted on ascend910"),
        (axes[1], True, "measured on this machine (median paired speedup)"),
    ):
        # The predicted panel has plans only: a framework has no prediction.
        for j, b in enumerate(rivals if measured else baselines):
            values = [_bar(case["embmap"], case[b], measured) for case in cases.values()]
            ax.bar([i + j * width for i in range(len(labels))], values, width, label=f"vs {b}", color=f"C{j}")
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


def _bar(ours: Row, theirs: Row, measured: bool) -> float:
    """embmap's speedup over `theirs`: measured (1 for the same plan, 0 where not measured) or predicted."""
    if measured:
        paired = paired_speedup(ours, theirs)
        return 1.0 if same_plan(ours, theirs) else (paired.median if paired else 0.0)
    if theirs.ascend_makespan_s is None or ours.ascend_makespan_s is None:
        return 0.0
    return theirs.ascend_makespan_s / ours.ascend_makespan_s


def _save(fig: object, path: Path) -> Path:
    write_atomic(path, lambda f: fig.savefig(f, dpi=110, format="png"), "--out")  # type: ignore[attr-defined]
    return path
