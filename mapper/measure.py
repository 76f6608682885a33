"""`embmap run`: execute a plan on this machine and put measured beside predicted."""

from __future__ import annotations

from typing import Any

from embmap.ir.plan import ExecutionPlan
from embmap.ir.printer import fmt_s
from embmap.runtime import RunReport


def run_data(plan: ExecutionPlan, report: RunReport) -> dict[str, Any]:
    p50 = report.p50_s
    return {
        "workload": plan.workload.name,
        "target": plan.target.name,
        "backend": report.backend,
        "cpus": list(report.cpus),
        "batches": report.batches,
        "correct": report.correct,
        "max_abs_error": report.max_abs_error,
        "tolerance": report.tolerance,
        "predicted_s": plan.makespan_s,
        "measured_p50_s": p50,
        "measured_p99_s": report.p99_s,
        "error": (plan.makespan_s - p50) / p50 if p50 else 0.0,
        "lookups_per_s": report.lookups_per_batch / p50 if p50 else 0.0,
        "gb_per_s": report.bytes_per_batch / p50 / 1e9 if p50 else 0.0,
        "calibrated": plan.cost_profile.calibrated,
        "cores": [
            {"core": c.core, "predicted_s": c.finish_s, "measured_s": report.core_p50_s(c.core)} for c in plan.cores
        ],
        "items": [
            {
                "item": it.id,
                "table": it.table,
                "strategy": it.strategy.value,
                "core": it.core,
                "predicted_s": it.cost.total_s,
                "measured_s": report.item_p50_s(it.id),
            }
            for it in plan.items
        ],
    }


def run_text(plan: ExecutionPlan, report: RunReport) -> str:
    d = run_data(plan, report)
    verdict = "correct" if d["correct"] else "WRONG"
    lines = [
        f"ran {d['workload']} plan on cpus {d['cpus']} with {d['backend']}: {d['batches']} batches, output {verdict} "
        f"(max error {d['max_abs_error']:.2g}, tolerance {d['tolerance']:.2g})",
        f"batch latency  measured p50 {fmt_s(d['measured_p50_s'])}  p99 {fmt_s(d['measured_p99_s'])}   "
        f"predicted {fmt_s(d['predicted_s'])} ({d['error']:+.1%})"
        + ("" if d["calibrated"] else "   [cost profile uncalibrated]"),
        f"throughput     {d['lookups_per_s'] / 1e6:.2f} M lookups/s, {d['gb_per_s']:.2f} GB/s of rows",
        "",
        "core  predicted   measured",
    ]
    for c in d["cores"]:
        lines.append(f"{c['core']:>4}  {fmt_s(c['predicted_s']):>9}  {fmt_s(c['measured_s']):>9}")
    return "\n".join(lines)
