"""`explain`: what a plan does, per core, and how good it is."""

from __future__ import annotations

from typing import Any

from embmap.ir.plan import ExecutionPlan, MoveReport, SolverReport
from embmap.ir.printer import fmt_bytes, fmt_s, printable


def baselines_of(plan: ExecutionPlan) -> dict[str, float]:
    """The plan's recorded baseline makespans, or, for plans written without them, recomputed under the plan's
    own workload, target and cost profile."""
    if plan.baselines_s:
        return dict(plan.baselines_s)
    from embmap.mapper.compiler import compile as compile_plan
    from embmap.mapper.pipelines import BASELINES

    return {
        name: compile_plan(plan.workload, plan.target, name, cost_profile=plan.cost_profile, baselines=False).makespan_s
        for name in BASELINES
    }


def explain_data(plan: ExecutionPlan) -> dict[str, Any]:
    baselines = baselines_of(plan)
    cores = []
    for c in plan.cores:
        entries = []
        for i in c.items:
            it = plan.items[i]
            table = next(t for t in plan.tables if t.name == it.table)
            share = ((it.rows[1] - it.rows[0]) / table.rows) * (
                (it.samples[1] - it.samples[0]) / plan.workload.batch_size
            )
            entries.append(
                {
                    "item": it.id,
                    "table": it.table,
                    "strategy": it.strategy.value,
                    "rows": list(it.rows),
                    "samples": list(it.samples),
                    "share": share,
                    "predicted_s": it.cost.total_s,
                }
            )
        cores.append(
            {"core": c.core, "busy_s": c.busy_s, "finish_s": c.finish_s, "local_bytes": c.local_bytes, "items": entries}
        )
    return {
        "workload": plan.workload.name,
        "target": plan.target.name,
        "cores_total": plan.target.cores,
        "batch_size": plan.workload.batch_size,
        "pipeline": plan.pipeline,
        "makespan_s": plan.makespan_s,
        "lower_bound_s": plan.lower_bound_s,
        "total_work_s": plan.total_work_s,
        "calibrated": plan.cost_profile.calibrated,
        "solver": plan.solver.model_dump(),
        "baselines_s": baselines,
        "speedup_over": {k: (v / plan.makespan_s if plan.makespan_s else 0.0) for k, v in baselines.items()},
        "tables": [
            {
                "name": t.name,
                "strategy": t.strategy.value,
                "mode": t.mode.value,
                "parts": t.parts,
                "bytes": t.bytes,
                "predicted_work_s": plan.table_cost(t.name).total_s,
            }
            for t in plan.tables
        ],
        "cores": cores,
    }


def _bounds_note(plan: ExecutionPlan) -> str:
    """What each bound covers: the plan's over every plan the format allows (the same for every pipeline, so a
    baseline's plan is compared with what any plan, embmap's included, can reach), the menu's over its own."""
    s = plan.solver
    text = "  the lower bound covers every plan the format allows (any strategy, part count and cut)"
    if s.menu_bound_s is not None:
        counts = f" (part counts: {s.part_counts})" if s.part_counts else ""
        text += f"; this pipeline's menu{counts} is bounded by {fmt_s(s.menu_bound_s)}"
    return text


def explain_text(plan: ExecutionPlan) -> str:
    d = explain_data(plan)
    s = plan.solver
    hint = (
        ""
        if s.hint_objective_s is None
        else f", {'warm-start' if s.moves else 'greedy'} hint {fmt_s(s.hint_objective_s)}"
    )
    if s.packed_objective_s is not None:
        hint += f", pattern dive {fmt_s(s.packed_objective_s)}"
    note = _status_note(s)
    lines = [
        f"plan: {printable(d['workload'])} on {printable(d['target'])} ({d['cores_total']} cores), "
        f"batch {d['batch_size']}",
        f"pipeline: {printable(d['pipeline'])}",
        f"predicted makespan {fmt_s(plan.makespan_s)}   lower bound {fmt_s(plan.lower_bound_s)}"
        f"   (within {_ratio(plan.makespan_s, plan.lower_bound_s)} of the bound)"
        + ("" if d["calibrated"] else "   [cost profile uncalibrated]"),
        _bounds_note(plan),
        f"solver: {s.method} {s.status}{note}, objective {fmt_s(s.objective_s)}, "
        f"best bound {fmt_s(s.best_bound_s)}, gap {s.gap:.2%}, {s.wall_s:.2f}s" + hint,
    ]
    if s.moves is not None:
        lines.append(moves_text(s.moves))
    if d["speedup_over"]:
        lines.append(
            "predicted speedup: "
            + ", ".join(f"{v:.2f}x over {k} ({fmt_s(d['baselines_s'][k])})" for k, v in d["speedup_over"].items())
        )
    lines += ["", "tables:"]
    for t in d["tables"]:
        how = "whole" if t["parts"] == 1 else f"{t['mode']} x{t['parts']}"
        lines.append(
            f"  {printable(t['name']):<24} {t['strategy']:<6} {how:<12} {fmt_bytes(t['bytes']):>9}  work {fmt_s(t['predicted_work_s'])}"
        )
    lines += ["", "cores:"]
    for c in d["cores"]:
        parts = "; ".join(
            f"{printable(e['table'])} {e['strategy']}"
            + ("" if e["share"] >= 0.9999 else f" {e['share']:.0%}")
            + f" {fmt_s(e['predicted_s'])}"
            for e in c["items"]
        )
        lines.append(
            f"  core {c['core']:>3}  busy {fmt_s(c['busy_s']):>8}  local {fmt_bytes(c['local_bytes']):>8}  {parts or '(idle)'}"
        )
    return "\n".join(lines)


def moves_text(moves: MoveReport) -> str:
    """One line: how much of the previous plan a re-plan moved."""
    bound = "no bound" if moves.max_moves is None else f"at most {moves.max_moves}"
    return (
        f"re-planned: {_count(moves.moved_tables, 'table')} moved ({_count(moves.moved_items, 'work item')}; "
        f"{bound}), {moves.kept_tables} kept, {moves.free_tables} free (new, or previous option no longer offered)"
    )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _status_note(s: SolverReport) -> str:
    if s.method != "cpsat":
        return " (no solver)"
    if s.interrupted:
        return " (interrupted with Ctrl-C; the best plan found by then is kept, never worse than greedy)"
    if s.status == "NOT_SOLVED":
        return " (too many tables x cores to build the CP-SAT model: the greedy plan stands)"
    if s.status == "OPTIMAL":
        return " (the plan meets the bound over every plan)"
    if s.menu_bound_s is not None and s.objective_s <= s.menu_bound_s * (1 + 1e-9):
        return " (optimal among the menu's plans; the bound over every plan leaves the gap)"
    return " (time limit reached; the best plan found is kept, never worse than greedy)"


def _ratio(value: float, bound: float) -> str:
    return f"{value / bound - 1:.1%}" if bound > 0 else "n/a"
