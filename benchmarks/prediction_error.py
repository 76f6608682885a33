"""Whole-plan prediction error of the cost model on this machine.

For every built-in workload (rows capped so that the tables fit in memory) x {uniform, zipf} x {embmap,
default, round-robin}: compile for `cpu`, run the plan on the reference runtime, and print predicted beside
measured batch latency (p50). Ends with the median and worst absolute relative error.

Usage: python benchmarks/prediction_error.py [--profile PROFILE.json] [--row-cap N] [--batches N]
(default profile: the one `--target cpu` uses, i.e. the shipped calibrated profile on this kind of machine)
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ir.printer import fmt_s  # noqa: E402
from ir.spec import Uniform, Zipf  # noqa: E402
from mapper import SolverOptions, compile  # noqa: E402
from mapper.profiles import load_profile, machine_key  # noqa: E402
from runtime import RunConfig, run_plan  # noqa: E402
from workloads import builtin_names  # noqa: E402

PIPELINES = ("embmap", "default", "round-robin")
DISTRIBUTIONS = {"uniform": Uniform(), "zipf": Zipf(alpha=1.05)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path)
    parser.add_argument("--row-cap", type=int, default=1_000_000)
    parser.add_argument("--batches", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="runs per plan, interleaved; the median p50 counts")
    parser.add_argument("--workloads", nargs="*", default=list(builtin_names()))
    args = parser.parse_args()
    profile = load_profile(args.profile) if args.profile else None
    solver = SolverOptions(time_limit=2.0, workers=1, seed=0)
    config = RunConfig(batches=args.batches, warmup=5)
    cases = list(itertools.product(args.workloads, DISTRIBUTIONS.items(), PIPELINES))
    plans = [
        compile(
            name,
            "cpu",
            pipeline,
            cost_profile=profile,
            row_cap=args.row_cap,
            distribution=dist,
            solver=solver,
            baselines=False,
        )
        for name, (_, dist), pipeline in cases
    ]
    measured: list[list[float]] = [[] for _ in plans]
    for _ in range(args.repeats):  # interleaved, so that a noisy moment hits one run of many plans
        for i, plan in enumerate(plans):
            report = run_plan(plan, config)
            if not report.correct:
                raise SystemExit(f"{cases[i]}: wrong output (error {report.max_abs_error:.3g})")
            measured[i].append(report.p50_s)
    print(
        f"machine: {machine_key()}; row cap {args.row_cap:,}; {args.batches} batches x {args.repeats} runs; CP-SAT 2 s\n"
    )
    print("| workload | distribution | pipeline | predicted | measured p50 (median of runs) | run spread | error |")
    print("|---|---|---|---|---|---|---|")
    errors = []
    for (name, (dist_name, _), pipeline), plan, runs in zip(cases, plans, measured, strict=True):
        p50 = float(np.median(runs))
        err = (plan.makespan_s - p50) / p50
        errors.append(abs(err))
        spread = max(runs) / min(runs) - 1
        print(
            f"| {name} | {dist_name} | {pipeline} | {fmt_s(plan.makespan_s)} | {fmt_s(p50)} | {spread:.0%} | {err:+.1%} |"
        )
    print(
        f"\nabsolute relative error over {len(errors)} plans: median {np.median(errors):.1%}, worst {max(errors):.1%}"
    )
    print("profile: " + ("calibrated" if plans[0].cost_profile.calibrated else "UNCALIBRATED preset"))


if __name__ == "__main__":
    main()
