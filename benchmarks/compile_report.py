"""Compile every built-in workload for a target with embmap and the baselines; print one Markdown table.

Usage: python benchmarks/compile_report.py [--target ascend910] [--time-limit 2] [--workers 1] [--repeats 3]
    [--out FILE]
Columns: plan time (wall, whole pipeline, in this process: the median of the repeats, then the slowest),
whether every repeat gave the same plan, solver status and gap (to the whole-space bound), predicted makespan,
the lower bound over every plan the format allows, the bound over the menu's plans and the part counts the menu
offered, and the predicted speedup of embmap's plan over each baseline under the same (uncalibrated) cost model.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embmap.ir.errors import EmbmapError  # noqa: E402
from embmap.ir.output import check_outputs, write_text_atomic  # noqa: E402
from embmap.ir.plan import ExecutionPlan  # noqa: E402
from embmap.ir.printer import fmt_s  # noqa: E402
from embmap.mapper import BASELINES, SolverSettings, compile  # noqa: E402
from embmap.mapper.workloads import builtin_names  # noqa: E402
from embmap.passes.solver.settings import DEFAULT_TIME_LIMIT_S  # noqa: E402
from embmap.passes.solver.space import clear_cache  # noqa: E402


def _comparable(plan: ExecutionPlan) -> dict[str, Any]:
    """The plan as JSON, less the solver's wall time (the one field that differs between identical compiles)."""
    data = plan.model_dump(mode="json")
    del data["solver"]["wall_s"]
    return data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="ascend910")
    parser.add_argument("--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="compiles per workload (the plan time is the median)")
    parser.add_argument("--out", type=Path, help="also write the report to this Markdown file")
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.out is not None:
        try:
            check_outputs([("--out", args.out)])  # before minutes of compiles, not after
        except EmbmapError as exc:
            parser.error(exc.one_line())
    solver = SolverSettings(time_limit_s=args.time_limit, workers=args.workers, seed=0)
    lines = [
        f"target {args.target}; CP-SAT time limit {args.time_limit:g} s, {args.workers} worker(s); "
        f"{args.repeats} compiles per workload; {platform.processor() or platform.machine()}, "
        f"Python {platform.python_version()}",
        "",
        "| workload | tables | plan time (median, max) | same plan | status | gap | makespan | lower bound | "
        "menu bound | part counts | " + " | ".join(f"vs {b}" for b in BASELINES) + " |",
        "|" + "---|" * (10 + len(BASELINES)),
    ]
    print("\n".join(lines), flush=True)
    for name in builtin_names():
        plans, seconds = [], []
        for _ in range(args.repeats):
            clear_cache()  # each compile pays for its whole-space bound
            start = time.perf_counter()
            plans.append(compile(name, args.target, solver=solver, baselines=False))
            seconds.append(time.perf_counter() - start)
        plan = plans[0]
        same = all(_comparable(p) == _comparable(plan) for p in plans[1:])
        speedups = []
        for b in BASELINES:
            theirs = compile(name, args.target, pipeline=b, baselines=False).makespan_s
            speedups.append(f"{theirs / plan.makespan_s:.2f}x")
        line = (
            f"| {name} | {len(plan.tables)} | {statistics.median(seconds):.1f} s, {max(seconds):.1f} s | "
            f"{'yes' if same else 'NO'} | {plan.solver.status} | {plan.solver.gap:.2%} | {fmt_s(plan.makespan_s)} | "
            f"{fmt_s(plan.lower_bound_s)} | {fmt_s(plan.solver.menu_bound_s or 0.0)} | {plan.solver.part_counts} | "
            + " | ".join(speedups)
            + " |"
        )
        lines.append(line)
        print(line, flush=True)
    if args.out is not None:
        write_text_atomic(args.out, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
