"""Predicted against measured on a trace's own ids: generate a seeded index trace, profile it into a workload
(`embmap profile-trace`), compile that for this machine (`--target cpu`), and run the plan on the trace's own
ids (`embmap run --replay`): the prediction error of a workload measured from data.

Each trace has features of realistic kinds (a Zipf popularity per feature with its own alpha, multi-hot
lengths around a fractional mean, a few hot ids, recently used ids reused). Each plan runs `--rounds` times,
taking turns with the other traces' plans; the table gives its best and median run's p50 batch latency
against the prediction, and the last lines the median and worst errors against both.

Usage: python benchmarks/trace_prediction.py [--rounds 3] [--batches 100] [--samples 131072]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embmap.ir.plan import ExecutionPlan  # noqa: E402
from embmap.ir.printer import fmt_s  # noqa: E402
from embmap.mapper import SolverSettings, compile  # noqa: E402
from embmap.mapper.profiles import machine_key  # noqa: E402
from embmap.mapper.traces import FeatureSpec, generate, workload_from_trace, write_trace  # noqa: E402
from embmap.mapper.traces.replay import replay_bags  # noqa: E402
from embmap.runtime import materialize_for, run_plan  # noqa: E402
from embmap.runtime.executor import RunConfig  # noqa: E402

DIM = 64
# Per trace: (name, features). Rows span L2-sized to L3-beyond tables; pooling factors are means.
TRACES: dict[str, tuple[FeatureSpec, ...]] = {
    "skewed": (
        FeatureSpec("user", rows=2_000_000, alpha=1.1, pooling=1.0, lengths="fixed"),
        FeatureSpec("item", rows=500_000, alpha=0.9, pooling=3.5, hot_ids=20, hot_mass=0.1),
        FeatureSpec("tag", rows=20_000, alpha=1.3, pooling=6.2),
    ),
    "local": (
        FeatureSpec("query", rows=1_000_000, alpha=0.8, pooling=2.4, locality=0.5, window=2000),
        FeatureSpec("shop", rows=100_000, alpha=1.05, pooling=1.0, lengths="fixed", locality=0.3),
        FeatureSpec("cat", rows=5_000, alpha=1.2, pooling=4.7),
    ),
    "flat": (
        FeatureSpec("device", rows=4_000_000, alpha=0.6, pooling=1.0, lengths="fixed"),
        FeatureSpec("app", rows=300_000, alpha=0.7, pooling=2.0),
        FeatureSpec("slot", rows=50_000, alpha=0.5, pooling=8.3),
    ),
}


@dataclasses.dataclass
class Case:
    name: str
    trace: Path
    plan: ExecutionPlan
    measured: list[float] = dataclasses.field(default_factory=list)


def prepare(name: str, features: Sequence[FeatureSpec], folder: Path, samples: int, batch: int) -> Case:
    path = folder / f"{name}.npz"
    write_trace(generate(features, samples=samples, batch_size=batch, seed=1), path)
    tables = {f.name: {"rows": f.rows, "dim": DIM, "features": [f.name]} for f in features}
    workload = workload_from_trace(path, tables=tables, name=name)
    plan = compile(workload, "cpu", "embmap", solver=SolverSettings(time_limit_s=2.0, workers=1, seed=0))
    return Case(name, path, plan)


def measure(case: Case, batches: int) -> float:
    config = RunConfig(batches=batches).for_plan(case.plan)
    replay = replay_bags(case.trace, case.plan.workload, config.warmup_batches + config.batches)
    config = dataclasses.replace(config, index_batches=replay.index_batches)
    data = materialize_for(case.plan, config, replay.bags, replay.ids_from)
    try:
        report = run_plan(case.plan, config, data)
    finally:
        data.close()
    if not report.correct:
        raise SystemExit(f"{case.name}: output WRONG (max error {report.max_abs_error})")
    return report.p50_s


def error(predicted: float, measured: float) -> float:
    return (predicted - measured) / measured


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--batches",
        type=int,
        default=100,
        help="measured batches per run (after a warm-up to the caches' steady state)",
    )
    parser.add_argument("--samples", type=int, default=131_072, help="samples per trace")
    parser.add_argument("--batch", type=int, default=1024, help="samples per batch")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        cases = [prepare(n, f, Path(tmp), args.samples, args.batch) for n, f in TRACES.items()]
        for _ in range(args.rounds):
            for case in cases:
                case.measured.append(measure(case, args.batches))
    print(f"machine: {machine_key()}; {args.rounds} runs per plan, taking turns; {args.batches} batches per run\n")
    print("| trace | tables (pooling) | predicted | measured (best run) | error | median run | error |")
    print("|---|---|---|---|---|---|---|")
    best_errors, median_errors = [], []
    for c in cases:
        best, median = min(c.measured), statistics.median(c.measured)
        best_errors.append(error(c.plan.makespan_s, best))
        median_errors.append(error(c.plan.makespan_s, median))
        pooling = ", ".join(f"{t.name} {t.pooling:.3g}" for t in c.plan.workload.tables)
        print(
            f"| {c.name} | {pooling} | {fmt_s(c.plan.makespan_s)} | {fmt_s(best)} | {best_errors[-1]:+.1%} "
            f"| {fmt_s(median)} | {median_errors[-1]:+.1%} |"
        )
    for label, errors in (("best run", best_errors), ("median run", median_errors)):
        absolute = [abs(e) for e in errors]
        print(f"\nagainst the {label}: median |error| {statistics.median(absolute):.1%}, worst {max(absolute):.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
