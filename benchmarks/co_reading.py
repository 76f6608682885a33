"""Two cores reading the same hot table at the same time, or two different ones: does the shared cache care?

criteo-1tb-dlrmv2 with 90% of the lookups on its two largest tables (the bench's hot-tables scenario), three
plans on the cpu target:

  embmap     embmap's plan
  default    each hot table's batch split over both cores, the cores in the same order: at any time both
             cores read the same table
  crossed    default's items, but core 1 reads the two hot tables in the other order: the same work as
             default, at any time two different tables

The cost model costs a table with a part on every core as read by the cores together, with the shared cache
to itself for its turn (`TableProfile.read_together`), and the schedule runs such tables side by side. So
embmap's plan now splits the hot tables as default does; before, it read each whole on its own core, at any
time two different tables, as crossed does. Crossed keeps default's predictions, which assume the order it
breaks. The plans take turns for `--rounds` rounds on the same data; the medians over rounds of each plan's
p50 batch latency are printed with the prediction.

Usage: python benchmarks/co_reading.py [--rounds 7] [--batches 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embmap.ir.plan import ExecutionPlan  # noqa: E402
from embmap.ir.printer import fmt_s  # noqa: E402
from embmap.ir.spec import HotTables, Zipf  # noqa: E402
from embmap.mapper import SolverSettings, compile  # noqa: E402
from embmap.mapper.compiler import resolve_target  # noqa: E402
from embmap.mapper.profiles import machine_key  # noqa: E402
from embmap.mapper.workloads import builtin_workload  # noqa: E402
from embmap.runtime import RunConfig, run_interleaved  # noqa: E402

HOT = HotTables(tables=2, mass=0.9)


def crossed(plan: ExecutionPlan, core: int) -> ExecutionPlan:
    """The plan with the first two items of `core` swapped (their predicted times moved along)."""
    ids = plan.cores[core].items
    a, b = plan.items[ids[0]], plan.items[ids[1]]
    start = a.start_s
    moved = {
        b.id: b.model_copy(update={"start_s": start, "finish_s": start + (b.finish_s - b.start_s)}),
        a.id: a.model_copy(
            update={
                "start_s": start + (b.finish_s - b.start_s),
                "finish_s": start + (b.finish_s - b.start_s) + (a.finish_s - a.start_s),
            }
        ),
    }
    items = tuple(moved.get(it.id, it) for it in plan.items)
    cores = tuple(
        c.model_copy(update={"items": (ids[1], ids[0], *ids[2:])}) if c.core == core else c for c in plan.cores
    )
    return plan.model_copy(update={"items": items, "cores": cores, "pipeline": plan.pipeline + " (crossed)"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args()
    target = resolve_target("cpu").model_copy(update={"cores": 2})
    solver = SolverSettings(time_limit_s=5.0, workers=1, seed=0)
    w = builtin_workload("criteo-1tb-dlrmv2")

    def plan(pipeline: str) -> ExecutionPlan:
        return compile(
            w, target, pipeline, distribution=Zipf(alpha=1.05), hot_tables=HOT, row_cap=1_000_000,
            solver=solver, baselines=False,
        )  # fmt: skip

    default = plan("default")
    first = [default.items[c.items[0]].table for c in default.cores]
    second = default.items[default.cores[1].items[1]].table
    assert first[0] == first[1] != second, "default no longer starts both cores on the same hot table"
    plans = {"embmap": plan("embmap"), "default": default, "crossed": crossed(default, 1)}
    reports = run_interleaved(list(plans.values()), RunConfig(batches=args.batches, warmup=3), args.rounds)
    print(f"machine: {machine_key()}; criteo-1tb-dlrmv2, hot tables {first[0]} and {second}; {args.rounds} rounds\n")
    print("| plan | first, the cores read | predicted | measured (median of rounds) | runs |")
    print("|---|---|---|---|---|")
    for (name, p), runs in zip(plans.items(), reports, strict=True):
        starts = {p.items[c.items[0]].table for c in p.cores if c.items}
        reading = "the same table" if len(starts) == 1 else "two different tables"
        p50 = [r.p50_s for r in runs]
        spread = f"{fmt_s(min(p50))}-{fmt_s(max(p50))}"
        print(f"| {name} | {reading} | {fmt_s(p.makespan_s)} | {fmt_s(statistics.median(p50))} | {spread} |")


if __name__ == "__main__":
    main()
