"""The same model on the same engine: embmap's plan vs TorchRec's planner, proposer by proposer, run by
DistributedModelParallel.

For each model (a built-in workload with rows capped, so that every rank can hold the full tables it copies
its shards from) and each memory budget per rank: plan with `compile_cluster` on 2 CPU ranks, and with TorchRec's
EmbeddingShardingPlanner once per proposer that plans on a CPU topology (`torchrec_planners.CPU_PROPOSERS`:
greedy, greedy without depth, grid search, uniform and the default list; `Topology(world_size=2,
compute_device="cpu", ddr_cap=...)`, the same pooling factors, the per-rank batch); all planners may choose
table_wise, row_wise or data_parallel, as in benchmarks/torchrec_planners.py. The distinct plans run on DMP with
2 gloo processes; for every planner it prints the predicted time (embmap's device-level model,
`compare.predicted_s`, the same for all) and the median forward latency (per iteration the slower rank; pooled
outputs checked against the unsharded collection first), and names TorchRec's best proposer by each. The plans
take turns, `--repeats` times each, and each plan's best run is kept: other tenants of a shared machine only
ever add time.

Usage: python benchmarks/torchrec_dmp.py [--iterations 30] [--repeats 3] [--row-cap 100000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import torchrec_planners  # noqa: E402
from embmap.ir.cluster import ClusterPlan, ClusterSpec  # noqa: E402
from embmap.ir.printer import fmt_bytes, fmt_s  # noqa: E402
from embmap.ir.spec import WorkloadSpec  # noqa: E402
from embmap.mapper.compiler import prepare_workload  # noqa: E402
from embmap.mapper.profiles import machine_key  # noqa: E402
from embmap.mapper.torchrec.cluster import cluster, compile_cluster  # noqa: E402
from embmap.mapper.torchrec.compare import predicted_s, shardings_of  # noqa: E402
from embmap.mapper.torchrec.dmp import run_dmp  # noqa: E402
from embmap.mapper.torchrec.io import sharding_plan  # noqa: E402
from embmap.passes.solver.settings import SolverSettings  # noqa: E402

WORLD = 2
MODELS = ("avazu", "criteo-1tb-t3", "criteo-1tb-dlrmv2")


PLANNERS = torchrec_planners  # the planners' runner and their set-up, shared with that benchmark


@dataclass
class Planned:
    """One planner's plan of one model and budget (or why there is none), and the distinct plan it runs."""

    planner: str
    plan: Any = None
    key: str = ""  # equal for planners whose plans are the same
    predicted_s: float | None = None
    error: str = ""


def torchrec_plans(w: WorkloadSpec, spec: ClusterSpec) -> list[Planned]:
    """TorchRec's plan with each proposer of `PLANNERS.CPU_PROPOSERS`, priced by the device level's model."""
    from torchrec.distributed.types import ShardingPlan

    out = []
    for name in PLANNERS.CPU_PROPOSERS:
        try:
            done = PLANNERS.plan_with(name, w, WORLD, spec.device.main.capacity_bytes, w.batch_size // WORLD)
        except Exception as exc:  # a proposer that plans nothing is reported, not dropped
            out.append(Planned(name, error=(str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]))
            continue
        plan = ShardingPlan({"": done["plan"].plan[""]})
        out.append(Planned(name, plan, key(plan), predicted_s(w, spec, shardings_of(plan))))
    return out


def key(plan: Any) -> str:
    """What DMP runs of a plan: every table's sharding type, ranks and compute kernel."""
    return repr(sorted((t, str(p.sharding_type), p.ranks, str(p.compute_kernel)) for t, p in plan.plan[""].items()))


def kinds(plan: object) -> str:
    counts: dict[str, int] = {}
    for p in plan.plan[""].values():  # type: ignore[attr-defined]
        key = f"{p.sharding_type}/{p.compute_kernel}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def latency(results: list[Any]) -> float:
    per_iteration = [max(ts) for ts in zip(*(r.forward_s for r in results), strict=True)]
    return statistics.median(per_iteration)


def measure(w: WorkloadSpec, planned: list[Planned], iterations: int, repeats: int) -> dict[str, float]:
    """Each distinct plan's best median latency over `repeats` runs, taking turns; outputs checked first."""
    distinct = {p.key: p.plan for p in planned if p.plan is not None}
    best: dict[str, float] = {}
    for _ in range(repeats):
        for k, plan in distinct.items():
            results = run_dmp(w, plan, WORLD, iterations=iterations)
            error = max(r.max_abs_error for r in results)
            assert error < 1e-4, f"{w.name} {kinds(plan)}: outputs differ by {error}"
            best[k] = min(best.get(k, float("inf")), latency(results))
    return best


def rows_of(name: str, label: str, memory: int, planned: list[Planned], best: dict[str, float]) -> list[str]:
    """One table row per planner; a plan the same as an earlier planner's says so."""
    first: dict[str, str] = {}
    ours = best[planned[0].key]
    rows = []
    for p in planned:
        who = PLANNERS.LABELS[p.planner] if p.planner != "embmap" else "embmap (compile_cluster)"
        if p.plan is None:
            rows.append(f"| {name} | {fmt_bytes(memory)} ({label}) | {who} | - | - | - | - | {p.error} |")
            continue
        same = first.setdefault(p.key, who)
        note = "" if same == who else f"the same plan as {same}"
        rows.append(
            f"| {name} | {fmt_bytes(memory)} ({label}) | {who} | {kinds(p.plan)} | {fmt_s(p.predicted_s or 0.0)} "
            f"| {fmt_s(best[p.key])} | {best[p.key] / ours:.2f}x | {note} |"
        )
    return rows


def best_line(name: str, label: str, planned: list[Planned], best: dict[str, float]) -> str:
    theirs = [p for p in planned[1:] if p.plan is not None]
    if not theirs:
        return f"- {name} ({label}): no TorchRec proposer planned"
    by_measured = min(theirs, key=lambda p: best[p.key])
    by_predicted = min(theirs, key=lambda p: p.predicted_s or 0.0)
    return (
        f"- {name} ({label}): TorchRec's best by measured latency {PLANNERS.LABELS[by_measured.planner]} "
        f"({fmt_s(best[by_measured.key])}; embmap's plan measured {best[planned[0].key] / best[by_measured.key]:.2f}x "
        "of that); "
        f"by predicted time {PLANNERS.LABELS[by_predicted.planner]} ({fmt_s(by_predicted.predicted_s or 0.0)})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--row-cap", type=int, default=100_000)
    parser.add_argument("--batch", type=int, default=1024, help="global batch (512 per rank)")
    parser.add_argument("--models", nargs="*", default=list(MODELS))
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    table, lines = [], []
    for name in args.models:
        w = prepare_workload(name, args.batch, args.row_cap, None, None).effective()
        total = w.total_bytes
        # Room for every table on every rank, and for 90% of them: replicas no longer all fit (TorchRec keeps
        # 15% of a rank's memory in reserve, so the tight budget leaves it room for every table once).
        for label, memory in (("roomy", 4 * total), ("tight", int(0.9 * total))):
            spec = cluster("cpu", WORLD, memory_bytes=memory)
            ours: ClusterPlan = compile_cluster(
                w,
                spec,
                solver=SolverSettings(time_limit_s=5.0, workers=1, seed=0),
                shardings={t.name: PLANNERS.KINDS for t in w.tables},  # what TorchRec's planners may choose
            )
            plan = sharding_plan(ours)
            planned = [Planned("embmap", plan, key(plan), predicted_s(w, spec, shardings_of(plan)))]
            planned += torchrec_plans(w, spec)
            best = measure(w, planned, args.iterations, args.repeats)
            table += rows_of(name, label, memory, planned, best)
            lines.append(best_line(name, label, planned, best))
    print(
        f"machine: {machine_key()}; {WORLD} ranks (gloo, one core each); global batch {args.batch}; "
        f"rows capped at {args.row_cap:,}; {args.iterations} forwards x {args.repeats} runs, best run's median\n"
    )
    print(
        "| model | memory per rank | planner | shardings / kernels | predicted (embmap's model) | measured "
        "| vs embmap | note |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(table))
    print("\nvs embmap: this plan's measured latency / embmap's (above 1: embmap's plan is faster)\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
