"""The same model on the same engine: embmap's plan vs TorchRec's planner, run by DistributedModelParallel.

For each model (a built-in workload with rows capped, so that every rank can hold the full tables it
copies its shards from) and each memory budget per rank: plan with `compile_cluster` on 2 CPU ranks and
with TorchRec's EmbeddingShardingPlanner (`Topology(world_size=2, compute_device="cpu", ddr_cap=...)`, the
same pooling factors, the per-rank batch), run both on DMP with 2 gloo processes, and print the median
forward latency (per iteration the slower rank; pooled outputs checked against the unsharded collection
first). The two plans take turns, `--repeats` times each, and each plan's best run is kept: other tenants
of a shared machine only ever add time.

Usage: python benchmarks/torchrec_dmp.py [--iterations 30] [--repeats 3] [--row-cap 100000]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embmap.ir.cluster import ClusterPlan  # noqa: E402
from embmap.ir.printer import fmt_bytes, fmt_s  # noqa: E402
from embmap.ir.spec import WorkloadSpec  # noqa: E402
from embmap.mapper.compiler import prepare_workload  # noqa: E402
from embmap.mapper.profiles import machine_key  # noqa: E402
from embmap.mapper.torchrec.cluster import cluster, compile_cluster  # noqa: E402
from embmap.mapper.torchrec.dmp import run_dmp  # noqa: E402
from embmap.mapper.torchrec.io import sharding_plan  # noqa: E402
from embmap.passes.solver.settings import SolverSettings  # noqa: E402

WORLD = 2
MODELS = ("avazu", "criteo-1tb-t3", "criteo-1tb-dlrmv2")


def torchrec_planner_plan(w: WorkloadSpec, memory_bytes: int) -> object:
    import torch
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
    from torchrec.distributed.planner.types import ParameterConstraints
    from torchrec.distributed.types import ShardingPlan

    from embmap.mapper.torchrec.io import collection

    constraints = {t.name: ParameterConstraints(pooling_factors=[float(t.pooling)]) for t in w.tables}
    planner = EmbeddingShardingPlanner(
        topology=Topology(world_size=WORLD, compute_device="cpu", ddr_cap=memory_bytes),
        batch_size=w.batch_size // WORLD,
        constraints=constraints,
    )
    with torch.no_grad():
        plan = planner.plan(collection(w, "meta"), [EmbeddingBagCollectionSharder()])
    return ShardingPlan({"": plan.plan[""]})


def kinds(plan: object) -> str:
    counts: dict[str, int] = {}
    for p in plan.plan[""].values():  # type: ignore[attr-defined]
        key = f"{p.sharding_type}/{p.compute_kernel}"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def latency(results: list) -> float:
    per_iteration = [max(ts) for ts in zip(*(r.forward_s for r in results), strict=True)]
    return statistics.median(per_iteration)


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
    rows = []
    for name in args.models:
        w = prepare_workload(name, args.batch, args.row_cap, None, None).effective()
        total = w.total_bytes
        # Room for every table on every rank, and for 90% of them: replicas no longer all fit (TorchRec keeps
        # 15% of a rank's memory in reserve, so the tight budget leaves it room for every table once).
        for label, memory in (("roomy", 4 * total), ("tight", int(0.9 * total))):
            spec = cluster("cpu", WORLD, memory_bytes=memory)
            ours: ClusterPlan = compile_cluster(w, spec, solver=SolverSettings(time_limit_s=5.0, workers=1, seed=0))
            plans = {"embmap": sharding_plan(ours), "torchrec": torchrec_planner_plan(w, memory)}
            best: dict[str, float] = {}
            errors: dict[str, float] = {}
            for _ in range(args.repeats):
                for who, plan in plans.items():
                    results = run_dmp(w, plan, WORLD, iterations=args.iterations)
                    errors[who] = max(r.max_abs_error for r in results)
                    best[who] = min(best.get(who, float("inf")), latency(results))
            rows.append((name, label, memory, ours, plans, best, errors))
    print(
        f"machine: {machine_key()}; {WORLD} ranks (gloo, one core each); global batch {args.batch}; "
        f"rows capped at {args.row_cap:,}; {args.iterations} forwards x {args.repeats} runs, best run's median\n"
    )
    print("| model | memory per rank | planner | shardings / kernels | predicted (embmap) | measured | vs TorchRec |")
    print("|---|---|---|---|---|---|---|")
    for name, label, memory, ours, plans, best, errors in rows:
        for who in ("embmap", "torchrec"):
            predicted = fmt_s(ours.makespan_s) if who == "embmap" else "-"
            ratio = f"{best['torchrec'] / best[who]:.2f}x" if who == "embmap" else "1.00x"
            assert errors[who] < 1e-4, f"{name} {who}: outputs differ by {errors[who]}"
            print(
                f"| {name} | {fmt_bytes(memory)} ({label}) | {who} | {kinds(plans[who])} | {predicted} "
                f"| {fmt_s(best[who])} | {ratio} |"
            )
    print("\nvs TorchRec: TorchRec's measured latency / this plan's (above 1: embmap's plan is faster)")


if __name__ == "__main__":
    main()
