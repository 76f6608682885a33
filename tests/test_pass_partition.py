"""`partition`: a module with its candidates in, the pass, each table's menu out: one option per strategy, mode
and part count, each part costed by the cost model over its cut of the samples or rows; options no plan needs
are pruned."""

from __future__ import annotations

import pytest

from embmap.cost_models import preset_profile
from embmap.cost_models.analytic import ItemShape, item_cost
from embmap.ir.lowering import lower
from embmap.ir.module import (
    Module,
    PartitionOption,
    StrategyCandidate,
    TableCandidates,
    TableOptions,
    TableProfile,
    split_range,
)
from embmap.ir.plan import CostBreakdown, PartitionMode, Strategy
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.ir.verify import module_violations
from embmap.passes.partition import PartitionPass, PartitionPolicy, part_counts
from embmap.passes.solver.options import prune_dominated
from tests.conftest import KiB, run, tiny_target


def _candidates_module(policy_cores: int) -> Module:
    """Two tables on `policy_cores` cores with hand-written profiles and candidates (GM and L1; the big table
    does not fit the 4 KiB local buffer)."""
    target = tiny_target(cores=policy_cores, local_bytes=4 * KiB)
    tables = (TableSpec(name="small", rows=16, dim=8), TableSpec(name="big", rows=1000, dim=8))
    lowered = lower(WorkloadSpec(name="w", batch_size=7, tables=tables), target, preset_profile(target))
    profiles = tuple(
        TableProfile(
            table=t.name, bytes=t.bytes, lookups_per_batch=7, distinct_rows_per_batch=5.0, cache_share_bytes=0.0
        )
        for t in tables
    )
    whole = CostBreakdown(lookup_s=1e-6)  # partition reads only the strategies of the candidates
    candidates = tuple(
        TableCandidates(
            table=t.name,
            candidates=tuple(
                StrategyCandidate(strategy=s, fits_local=t.bytes <= 4 * KiB, cost=whole)
                for s in (Strategy.GM, Strategy.L1)
            ),
        )
        for t in tables
    )
    return lowered.model_copy(update={"table_profiles": profiles, "candidates": candidates})


def test_split_all_cuts_every_table_over_every_core_with_each_strategy_that_fits() -> None:
    """split-all: per table and strategy, the batch (7 samples) over the 3 cores: parts of 3, 2 and 2 samples,
    each costed by the cost model; an L1 part holds the whole table, so the big table has no L1 option. The menu
    lists the faster option first (neither option of the small table dominates the other: L1 is faster, GM
    holds no local bytes)."""
    before = _candidates_module(3)
    after = run(before, "partition{policy=split-all}")

    def option(name: str, strategy: Strategy) -> PartitionOption:
        t = before.table(name)
        costs = tuple(
            item_cost(
                ItemShape(strategy, (0, t.rows), s), t, before.table_profile(name), before.target, before.cost_profile
            )
            for s in split_range(7, 3)
        )
        local = t.bytes if strategy.preloaded else 0
        return PartitionOption(
            table=name,
            strategy=strategy,
            mode=PartitionMode.SAMPLES,
            parts=3,
            part_costs=costs,
            local_bytes_per_part=(local,) * 3,
        )

    assert after.options == (
        TableOptions(table="small", options=(option("small", Strategy.L1), option("small", Strategy.GM))),
        TableOptions(table="big", options=(option("big", Strategy.GM),)),
    )
    assert [s for s in split_range(7, 3)] == [(0, 3), (3, 5), (5, 7)]
    assert after.part_counts == "split-all"
    assert after.model_copy(update={"options": None, "part_counts": None, "history": ()}) == before


def test_partition_split_all_and_whole(lowered: Module) -> None:
    split = run(lowered, "profile,select-strategy{strategies=GM},partition{policy=split-all}")
    assert split.options is not None
    for menu in split.options:
        (o,) = menu.options
        assert (o.strategy, o.mode, o.parts) == (Strategy.GM, PartitionMode.SAMPLES, 3)
        assert len(o.part_costs) == 3
    whole = run(lowered, "profile,select-strategy,partition{policy=whole,prune=false}")
    assert whole.options is not None
    large = next(m for m in whole.options if m.table == "large")
    assert {o.strategy for o in large.options} == {Strategy.GM, Strategy.GM_UB}  # the preloaded ones do not fit
    assert all(o.parts == 1 for m in whole.options for o in m.options)


def test_partition_enumerate_shards_rows_to_fit_the_local_buffer(lowered: Module) -> None:
    m = run(lowered, "profile,select-strategy,partition{prune=false}")
    assert m.options is not None
    medium = next(x for x in m.options if x.table == "medium")  # 3000 x 64 B = 192 KB, local 64 KiB
    preloaded = [o for o in medium.options if o.strategy.preloaded]
    assert preloaded and all(o.mode is PartitionMode.ROWS for o in preloaded)
    assert all(max(o.local_bytes_per_part) <= 64 * 1024 for o in preloaded)
    assert {o.parts for o in preloaded} == {3}  # ceil(192000 / 65536) = 3 on 3 cores
    assert not module_violations(m)


def test_partition_rejects_bad_options() -> None:
    with pytest.raises(ValueError):
        PartitionPass(max_parts=-1)
    assert PartitionPass(policy=PartitionPolicy.WHOLE).spec() == "partition{policy=whole}"


def test_part_counts() -> None:
    assert part_counts(3) == [1, 2, 3]
    assert part_counts(32) == [1, 2, 3, 4, 5, 6, 7, 8, 16, 32]
    assert part_counts(40) == [1, 2, 3, 4, 5, 6, 7, 8, 16, 32, 40]


def _option(parts: int, part_s: float, local: int) -> PartitionOption:
    return PartitionOption(
        table="t",
        strategy=Strategy.L1 if local else Strategy.GM,
        mode=PartitionMode.SAMPLES,
        parts=parts,
        part_costs=tuple(CostBreakdown(lookup_s=part_s) for _ in range(parts)),
        local_bytes_per_part=(local,) * parts,
    )


def test_prune_dominated_keeps_exactly_the_pareto_front() -> None:
    a = _option(1, 10.0, 0)
    b = _option(2, 6.0, 0)
    c = _option(2, 7.0, 0)  # dominated by b
    d = _option(3, 6.5, 0)  # dominated by b (fewer parts, cheaper)
    e = _option(2, 5.0, 100)  # cheaper but uses local bytes: kept
    f = _option(4, 5.0, 200)  # dominated by e
    assert prune_dominated([f, e, d, c, b, a]) == [a, e, b]


def test_an_option_the_solver_cannot_tell_apart_in_time_but_holding_bytes_is_dropped() -> None:
    # A replica predicted 0.1 ps faster than the shared table: both take the same whole nanoseconds in the
    # solver, which would pick either; the one that holds no local bytes stands.
    shared, replica = _option(1, 21.3314e-6, 0), _option(1, 21.3314e-6 - 1e-16, 4096)
    assert prune_dominated([replica, shared]) == [shared]
    # A whole nanosecond faster, the replica is a choice of its own.
    faster = _option(1, 21.3314e-6 - 1e-9, 4096)
    assert prune_dominated([faster, shared]) == [faster, shared]
