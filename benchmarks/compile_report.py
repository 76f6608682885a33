"""Compile every built-in workload for a target with embmap and the baselines; print one Markdown table.

Usage: python benchmarks/compile_report.py [--target ascend910] [--time-limit 10] [--workers 1]
Columns: plan time (wall, whole pipeline), solver status and gap, predicted makespan and lower bound, and the
predicted speedup of embmap's plan over each baseline under the same (uncalibrated) cost model.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ir.printer import fmt_s  # noqa: E402
from mapper import BASELINES, SolverOptions, compile  # noqa: E402
from workloads import builtin_names  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", default="ascend910")
    parser.add_argument("--time-limit", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    solver = SolverOptions(time_limit=args.time_limit, workers=args.workers, seed=0)
    print(
        f"target {args.target}; CP-SAT time limit {args.time_limit:g} s, {args.workers} worker(s); "
        f"{platform.processor() or platform.machine()}, Python {platform.python_version()}\n"
    )
    head = (
        "| workload | tables | plan time | status | gap | makespan | lower bound | "
        + " | ".join(f"vs {b}" for b in BASELINES)
        + " |"
    )
    print(head)
    print("|" + "---|" * (7 + len(BASELINES)))
    for name in builtin_names():
        start = time.perf_counter()
        plan = compile(name, args.target, solver=solver, baselines=False)
        seconds = time.perf_counter() - start
        speedups = []
        for b in BASELINES:
            theirs = compile(name, args.target, pipeline=b, baselines=False).makespan_s
            speedups.append(f"{theirs / plan.makespan_s:.2f}x")
        print(
            f"| {name} | {len(plan.tables)} | {seconds:.1f} s | {plan.solver.status} | {plan.solver.gap:.1%} | "
            f"{fmt_s(plan.makespan_s)} | {fmt_s(plan.lower_bound_s)} | " + " | ".join(speedups) + " |",
            flush=True,
        )


if __name__ == "__main__":
    main()
