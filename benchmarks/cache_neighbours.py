"""One table measured beside different neighbours: which sharing of the caches does the cost model see?

Table T (GM, one item on core 0) runs in four two-core plans that differ only in what shares the caches
with it, each with an identical twin or stranger on core 1:

  T | T2            T's twin on the other core: the two share the L3 and nothing else
  T | U             a 256 MiB uniform table on the other core pushes T out of the L3
  S,T | S2,T2       a 2 MiB uniform table runs before T on the same core: it fits in the L3 beside T, but
                    flushes the core's private L2 and TLB between T's batches
  U,T | U2          both: a 256 MiB table before T, another on the other core

The plans take turns (`--rounds` rounds, each running every plan once on data materialized once per plan)
and T's item time is its median over rounds of the per-run p50, printed beside its prediction.

Usage: python benchmarks/cache_neighbours.py [--profile PROFILE.json] [--mib 1 4 16]
       [--distribution zipf uniform] [--rounds 7]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embmap.ir.cost_profile import CostProfile  # noqa: E402
from embmap.ir.module import Strategy  # noqa: E402
from embmap.ir.plan import (
    ExecutionPlan,  # noqa: E402
    PartitionMode,
)
from embmap.ir.printer import fmt_s  # noqa: E402
from embmap.ir.spec import TableSpec, TargetSpec, Uniform, WorkloadSpec, Zipf  # noqa: E402
from embmap.mapper.calibration import forced_plan  # noqa: E402
from embmap.mapper.compiler import resolve_target  # noqa: E402
from embmap.mapper.profiles import default_profile, load_profile, machine_key  # noqa: E402
from embmap.runtime import RunConfig, run_plan  # noqa: E402
from embmap.runtime.executor import materialize_for  # noqa: E402

MiB = 1 << 20
DIM, POOLING, BATCH = 64, 8, 1024


def table(name: str, mib: int, pooling: int, distribution: Zipf | Uniform) -> TableSpec:
    return TableSpec(name=name, rows=mib * MiB // (DIM * 4), dim=DIM, pooling=pooling, distribution=distribution)


def gm_plan(tables: list[TableSpec], target: TargetSpec, profile: CostProfile) -> ExecutionPlan:
    """Every table whole, GM, dealt to cores 0, 1, 0, 1, ... in the order given."""
    w = WorkloadSpec(name="neighbours", batch_size=BATCH, tables=tuple(tables))
    return forced_plan(w, target, profile, Strategy.GM, PartitionMode.SAMPLES, 1, "neighbours", "round-robin")[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", type=Path, help="default: the one `--target cpu` uses")
    parser.add_argument("--mib", type=int, nargs="+", default=[1, 4, 16], help="sizes of T")
    parser.add_argument("--distribution", nargs="+", default=["zipf", "uniform"], choices=["zipf", "uniform"])
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    target = resolve_target("cpu").model_copy(update={"cores": 2})
    profile = load_profile(args.profile) if args.profile else default_profile(target)
    config = RunConfig(batches=30, warmup=5)
    print(f"machine: {machine_key()}; T: GM, dim {DIM}, pooling {POOLING}, batch {BATCH}; {args.rounds} rounds\n")
    print("| T | indices | neighbours | predicted | measured (median of rounds) | error |")
    print("|---|---|---|---|---|---|")
    for mib, kind in itertools.product(args.mib, args.distribution):
        dist = Zipf(alpha=1.05) if kind == "zipf" else Uniform()
        t, twin = table("T", mib, POOLING, dist), table("T2", mib, POOLING, dist)
        s, s2 = table("S", 2, 32, Uniform()), table("S2", 2, 32, Uniform())
        u, u2 = table("U", 256, POOLING, Uniform()), table("U2", 256, POOLING, Uniform())
        layouts = {
            "T \\| T2": [t, twin],
            "T \\| U": [t, u],
            "S,T \\| S2,T2": [s, s2, t, twin],
            "U,T \\| U2": [u, u2, t],
        }
        plans = {name: gm_plan(tables, target, profile) for name, tables in layouts.items()}
        items = {name: next(it for it in plan.items if it.table == "T") for name, plan in plans.items()}
        data = {name: materialize_for(plan, config) for name, plan in plans.items()}
        times: dict[str, list[float]] = {name: [] for name in plans}
        try:
            for _ in range(args.rounds):
                for name, plan in plans.items():
                    times[name].append(run_plan(plan, config, data[name]).item_p50_s(items[name].id))
        finally:
            for d in data.values():
                d.close()
        for name in plans:
            predicted, measured = items[name].cost.total_s, statistics.median(times[name])
            print(
                f"| {mib} MiB | {kind} | {name} | {fmt_s(predicted)} | {fmt_s(measured)} | "
                f"{(predicted - measured) / measured:+.0%} |"
            )


if __name__ == "__main__":
    main()
