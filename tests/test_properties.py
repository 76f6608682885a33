"""Properties of every pipeline over random valid workloads and targets.

For any workload the spec accepts (a handful of tables, 1 to a million rows, every dtype and index
distribution, hot tables, row caps) on any target (ascend910, this machine's cpu, small random chips with
1 to 8 cores and tiny to roomy local buffers), each named pipeline either returns a plan that the verifier
accepts, whose predicted makespan is no less than its proven lower bound, and whose work items add up to
exactly the lookups of the batch, or raises a one-line `InfeasibleError` because the tables do not fit the
target's memory: never anything else.

The examples are derandomized (the `ci` profile of tests/conftest.py) so CI always tries the same ones;
`HYPOTHESIS_PROFILE=long pytest tests/test_properties.py` draws ten times as many fresh ones.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from embmap.ir.errors import InfeasibleError
from embmap.ir.plan import ExecutionPlan, Strategy
from embmap.ir.spec import (
    DType,
    HotSet,
    HotTables,
    MemorySpec,
    TableSpec,
    TargetSpec,
    TLBSpec,
    Uniform,
    WorkloadSpec,
    Zipf,
)
from embmap.ir.targets import ascend910, cpu
from embmap.ir.verify import plan_violations
from embmap.mapper import SolverSettings
from embmap.mapper.compiler import compile
from embmap.mapper.pipelines import PIPELINES
from tests.conftest import KiB, examples

SOLVER = SolverSettings(time_limit_s=2.0, workers=1, seed=0)
REL = 1e-9  # float rounding allowed between sums of the same costs taken in different orders
MiB = 1024 * KiB

# Workloads -------------------------------------------------------------------------------------------------

distributions = st.one_of(
    st.just(Uniform()),
    st.builds(Zipf, alpha=st.floats(0.05, 5.0)),
    st.builds(HotSet, hot_rows=st.integers(1, 5000), hot_mass=st.floats(0.01, 0.99)),
)
row_counts = st.one_of(st.integers(1, 64), st.integers(1, 10_000), st.integers(1, 1_000_000))


@st.composite
def workloads(draw: st.DrawFn) -> WorkloadSpec:
    n = draw(st.integers(1, 5))
    tables = tuple(
        TableSpec(
            name=f"t{i}",
            rows=draw(row_counts),
            dim=draw(st.sampled_from((1, 3, 4, 16, 32, 64, 128, 512))),
            dtype=draw(st.sampled_from(list(DType))),
            pooling=draw(st.integers(1, 80)),
            distribution=draw(st.none() | distributions),
        )
        for i in range(n)
    )
    return WorkloadSpec(
        name="prop",
        batch_size=draw(st.sampled_from((1, 2, 3, 7, 64, 512, 4096))),
        distribution=draw(distributions),
        hot_tables=draw(st.none() | st.builds(HotTables, tables=st.integers(1, 6), mass=st.floats(0.05, 0.95))),
        row_cap=draw(st.none() | st.integers(1, 200_000)),
        tables=tables,
    )


# Targets ---------------------------------------------------------------------------------------------------


def memory(name: str, capacity: st.SearchStrategy[int]) -> st.SearchStrategy[MemorySpec]:
    return st.builds(
        MemorySpec,
        name=st.just(name),
        capacity_bytes=capacity,
        bandwidth_bytes_per_s=st.floats(1e8, 4e12),
        latency_s=st.floats(0.0, 1e-6),
    )


custom_targets = st.builds(
    TargetSpec,
    name=st.just("chip"),
    cores=st.integers(1, 8),
    local=memory("L1", st.integers(64, 4 * MiB)),
    scratch=memory("UB", st.integers(64, 512 * KiB)),
    shared_cache=st.none() | memory("L2", st.integers(KiB, 64 * MiB)),
    # Main memory from a few MiB (many workloads do not fit: the infeasible path) to plenty.
    main=memory("HBM", st.integers(MiB, 64 * 1024 * MiB)),
    tlb=st.none() | st.builds(TLBSpec, entries=st.integers(1, 4096), page_bytes=st.sampled_from((4 * KiB, 2 * MiB))),
)
targets = st.one_of(st.just(ascend910()), st.just(cpu()), custom_targets)


# Properties ------------------------------------------------------------------------------------------------


def compile_or_infeasible(w: WorkloadSpec, t: TargetSpec, pipeline: str) -> ExecutionPlan | None:
    """The plan, or None where the compile says, in one line, that no plan exists. Any other exception fails."""
    fits = w.effective().total_bytes <= t.main.capacity_bytes
    try:
        plan = compile(w, t, pipeline, solver=SOLVER, baselines=False)
    except InfeasibleError as exc:
        line = exc.one_line()
        assert "\n" not in line and exc.field and exc.fix, line
        # Every pipeline may fall back to reading rows from main memory, so the only reason for no plan is
        # that the tables do not fit there.
        assert not fits, f"{pipeline}: infeasible although the tables fit main memory: {line}"
        return None
    assert fits, f"{pipeline}: planned {w.effective().total_bytes} B of tables into {t.main.capacity_bytes} B"
    return plan


def check_plan(plan: ExecutionPlan) -> None:
    """Every invariant, the verifier's and this file's own restatement of the essential ones."""
    assert plan_violations(plan) == []
    assert plan.makespan_s >= plan.lower_bound_s * (1 - REL) > 0
    target, batch = plan.target, plan.workload.batch_size
    by_table = defaultdict(list)
    for it in plan.items:
        assert 0 <= it.core < target.cores
        by_table[it.table].append(it)
    for t in plan.workload.tables:
        items = by_table[t.name]
        # The parts split either the batch (each over all rows) or the rows (each over the whole batch),
        # into contiguous ranges that tile it, on distinct cores, with one strategy.
        if all(it.rows == (0, t.rows) for it in items):
            spans = sorted(it.samples for it in items)
            end = batch
        else:
            assert all(it.samples == (0, batch) for it in items), t.name
            spans = sorted(it.rows for it in items)
            end = t.rows
        assert spans[0][0] == 0 and spans[-1][1] == end and all(a[1] == b[0] for a, b in itertools.pairwise(spans))
        assert all(lo < hi for lo, hi in spans)
        assert len({it.core for it in items}) == len(items) and len({it.strategy for it in items}) == 1
        # Lookups served: a part of rows [r0, r1) x samples [s0, s1) serves (s1 - s0) x pooling x its share
        # of the rows; together the parts serve every lookup of the batch exactly once.
        served = sum((it.samples[1] - it.samples[0]) * t.pooling * (it.rows[1] - it.rows[0]) / t.rows for it in items)
        assert math.isclose(served, batch * t.pooling, rel_tol=REL)
        # A preloaded part holds its rows in local memory; shards accumulate, whole-table parts write.
        for it in items:
            assert it.local_bytes == ((it.rows[1] - it.rows[0]) * t.row_bytes if it.strategy.preloaded else 0)
            assert it.output == ("write" if it.rows == (0, t.rows) else "accumulate")
    # Per core: it runs exactly its own items, busy for the sum of their costs, within its local buffer.
    assert [c.core for c in plan.cores] == list(range(target.cores))
    for c in plan.cores:
        mine = [it for it in plan.items if it.core == c.core]
        assert sorted(c.items) == sorted(it.id for it in mine)
        assert math.isclose(c.busy_s, sum(it.cost.total_s for it in mine), rel_tol=REL, abs_tol=1e-15)
        assert c.local_bytes == sum(it.local_bytes for it in mine) <= target.local.capacity_bytes
        assert c.finish_s >= c.busy_s * (1 - REL)
    assert math.isclose(plan.makespan_s, max(c.finish_s for c in plan.cores), rel_tol=REL)
    assert math.isclose(plan.total_work_s, sum(it.cost.total_s for it in plan.items), rel_tol=REL)


@examples(40)
@given(w=workloads(), t=targets)
def test_every_pipeline_verifies_or_is_infeasible(w: WorkloadSpec, t: TargetSpec) -> None:
    plans = {name: compile_or_infeasible(w, t, name) for name in PIPELINES}
    event(f"{t.name}: {'planned' if plans['embmap'] else 'no plan (tables exceed main memory)'}")
    if plans["embmap"] is None:
        assert all(p is None for p in plans.values())
        return
    for plan in plans.values():
        assert plan is not None
        check_plan(plan)
        assert ExecutionPlan.model_validate_json(plan.model_dump_json()) == plan  # the file says what we planned
        assert all(tb.rows <= (w.row_cap or tb.rows) for tb in plan.workload.tables)
    # The solver starts from the greedy plan over the same options and keeps the faster: never worse than it.
    embmap, greedy = plans["embmap"], plans["greedy"]
    assert greedy is not None
    assert embmap.makespan_s <= greedy.makespan_s * (1 + REL)
    # The default compiler reads every table from main memory, with the batch split evenly over every core.
    default = plans["default"]
    assert default is not None
    for t_spec in default.workload.tables:
        items = [it for it in default.items if it.table == t_spec.name]
        widths = [it.samples[1] - it.samples[0] for it in items]
        assert {it.strategy for it in items} == {Strategy.GM}
        assert len(items) == min(default.target.cores, default.workload.batch_size)
        assert max(widths) - min(widths) <= 1
    # Round-robin places whole tables: one part each.
    rr = plans["round-robin"]
    assert rr is not None and len(rr.items) == len(rr.workload.tables)


@examples(15)
@given(w=workloads(), t=custom_targets)
def test_embmap_is_deterministic(w: WorkloadSpec, t: TargetSpec) -> None:
    """One worker and a fixed seed: the same plan twice (the solver's wall time aside)."""
    first = compile_or_infeasible(w, t, "embmap")
    if first is None:
        return
    second = compile(w, t, "embmap", solver=SOLVER, baselines=False)
    assert first.items == second.items and first.makespan_s == second.makespan_s


@pytest.mark.parametrize("pipeline", sorted(PIPELINES))
def test_tables_larger_than_main_memory_are_infeasible(pipeline: str) -> None:
    """The infeasible branch above is reachable: a table that needs more than main memory has no plan."""
    t = ascend910().model_copy(
        update={"main": MemorySpec(name="HBM", capacity_bytes=MiB, bandwidth_bytes_per_s=1e12, latency_s=0)}
    )
    w = WorkloadSpec(name="big", tables=(TableSpec(name="big", rows=1_000_000, dim=16),))
    assert compile_or_infeasible(w, t, pipeline) is None
