"""`pack`: a plan more than 1% above its bound in, the pass, a faster plan from the pattern dive and a bound
from the configuration LP with the local buffers out; a plan within 1% left alone."""

from __future__ import annotations

import pytest

from embmap.cost_models import preset_profile
from embmap.ir.lowering import lower
from embmap.ir.module import Module, PartitionOption, TableOptions
from embmap.ir.plan import CostBreakdown, PartitionMode, SolverReport, Strategy, WorkItem
from embmap.ir.printer import print_module
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.ir.verify import verify_module
from embmap.passes import SolverSettings
from embmap.passes import pack as pack_pass
from embmap.passes.solver.items import cut_unevenly, items_makespan_s
from embmap.passes.solver.report import plan_gap
from tests.conftest import ONE_LONG, lowered_module, run, same_plan, tiny_target

ASSIGN = "profile,select-strategy,partition,assign-cores"
SIZES_US = {"a": 3.0, "b": 3.0, "c": 2.0, "d": 2.0, "e": 2.0}


def _greedy_packing() -> Module:
    """Parts of 3, 3, 2, 2 and 2 us on two cores, placed as longest-first greedy does: a 3 on each core and the
    2s where there is least, 7 us; CP-SAT reported it FEASIBLE against a bound of 6 us (busy time)."""
    target = tiny_target(cores=2)
    tables = tuple(TableSpec(name=n, rows=10, dim=8) for n in SIZES_US)
    lowered = lower(WorkloadSpec(name="w", batch_size=4, tables=tables), target, preset_profile(target))
    cost = {n: CostBreakdown(lookup_s=us * 1e-6) for n, us in SIZES_US.items()}
    menus = tuple(
        TableOptions(
            table=n,
            options=(
                PartitionOption(
                    table=n,
                    strategy=Strategy.GM,
                    mode=PartitionMode.SAMPLES,
                    parts=1,
                    part_costs=(cost[n],),
                    local_bytes_per_part=(0,),
                ),
            ),
        )
        for n in SIZES_US
    )
    items = tuple(
        WorkItem(id=i, table=n, strategy=Strategy.GM, rows=(0, 10), samples=(0, 4), core=core, cost=cost[n])
        for i, (n, core) in enumerate(zip(SIZES_US, (0, 1, 0, 1, 0), strict=True))
    )
    report = SolverReport.of("cpsat", "FEASIBLE", items_makespan_s(items), 6e-6, 0.5)
    return lowered.model_copy(update={"options": menus, "items": items, "solver": report, "lower_bound_s": 6e-6})


def test_the_dive_puts_the_3s_together() -> None:
    before = _greedy_packing()
    assert items_makespan_s(before.items or ()) == pytest.approx(7e-6) and plan_gap(before) > pack_pass.PACK_GAP
    after = run(before, "pack")
    assert [line for line in print_module(after).splitlines() if line.startswith("  %")] == [
        "  %0 = write @a GM rows=[0,10) samples=[0,4) core=0 local=0B cost=3us",
        "  %1 = write @b GM rows=[0,10) samples=[0,4) core=0 local=0B cost=3us",
        "  %2 = write @c GM rows=[0,10) samples=[0,4) core=1 local=0B cost=2us",
        "  %3 = write @d GM rows=[0,10) samples=[0,4) core=1 local=0B cost=2us",
        "  %4 = write @e GM rows=[0,10) samples=[0,4) core=1 local=0B cost=2us",
    ]
    report = after.solver
    assert report is not None and after.lower_bound_s is not None
    assert report.status == "FEASIBLE" and report.packed_objective_s == 6000e-9
    assert report.objective_s == pytest.approx(6e-6) and report.gap == pytest.approx(0.0, abs=1e-9)
    assert after.lower_bound_s == pytest.approx(6e-6)
    assert after.model_copy(update={"items": None, "solver": None, "history": ()}) == before.model_copy(
        update={"items": None, "solver": None}
    )


def test_the_pack_pass_leaves_a_plan_within_one_percent_alone() -> None:
    module = run(lowered_module(256, 4, ONE_LONG), ASSIGN + ",balance", SolverSettings(time_limit_s=5.0))
    assert module.solver is not None and plan_gap(module) <= pack_pass.PACK_GAP
    assert same_plan(run(module, "pack"), module)


def test_the_pack_pass_bounds_a_plan_cut_unevenly_with_its_cuts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Made to run on a plan `balance` cut unevenly: its bound (with the buffers) must still cover uneven cuts,
    as the verifier checks after the pass; a dive plan replaces the plan only where it is faster."""
    monkeypatch.setattr(pack_pass, "PACK_GAP", -1.0)
    balanced = run(lowered_module(256, 4, ONE_LONG), ASSIGN + ",balance", SolverSettings(time_limit_s=5.0))
    assert balanced.items is not None and cut_unevenly(balanced, balanced.items) and balanced.uneven_lines
    packed = run(balanced, "pack")
    verify_module(packed)
    assert packed.solver is not None and packed.lower_bound_s is not None and packed.items is not None
    assert balanced.lower_bound_s is not None and packed.lower_bound_s >= balanced.lower_bound_s
    assert items_makespan_s(packed.items) <= items_makespan_s(balanced.items)
    if packed.items == balanced.items:
        assert packed.uneven_lines == balanced.uneven_lines
    else:  # the dive's plan, with equal cuts
        assert not cut_unevenly(packed, packed.items) and packed.uneven_lines is None
