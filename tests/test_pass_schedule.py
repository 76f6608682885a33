"""`schedule`: a module with its work items on cores in, the pass, each core's ordered schedule out: the tables
with a part on every core first (heaviest first, the same order on every core, read together), then the other
items longest first, each core starting after its start-up."""

from __future__ import annotations

import pytest

from embmap.cost_models import preset_profile
from embmap.ir.lowering import lower
from embmap.ir.module import Module
from embmap.ir.plan import CoreSchedule, CostBreakdown, Strategy, WorkItem
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.passes import PassContext
from embmap.passes.schedule import SchedulePass
from tests.conftest import run, tiny_target

UP_TO_OPTIONS = "profile,select-strategy,partition"


def test_tables_on_every_core_go_first_heaviest_first_then_longest_first() -> None:
    """Two cores. t (two parts of 2 us) and u (two of 1.5 us) have a part on each core: they go first, t before
    u, on both cores. Then core 0 runs v (3 us) before w (1 us); core 1 runs x (2 us)."""
    target = tiny_target(cores=2)
    names = "tuvwx"
    tables = tuple(TableSpec(name=n, rows=10, dim=8) for n in names)
    module = lower(WorkloadSpec(name="w", batch_size=4, tables=tables), target, preset_profile(target))
    parts = [("w", 0, 1.0), ("t", 0, 2.0), ("x", 1, 2.0), ("u", 1, 1.5), ("v", 0, 3.0), ("t", 1, 2.0), ("u", 0, 1.5)]
    samples = {"t": iter([(0, 2), (2, 4)]), "u": iter([(0, 2), (2, 4)])}
    items = tuple(
        WorkItem(
            id=i,
            table=name,
            strategy=Strategy.GM,
            rows=(0, 10),
            samples=next(samples[name]) if name in samples else (0, 4),
            core=core,
            cost=CostBreakdown(lookup_s=us * 1e-6),
        )
        for i, (name, core, us) in enumerate(parts)
    )
    before = module.model_copy(update={"items": items})
    after = run(before, "schedule")
    start = module.cost_profile.core_start_s

    def timed(core: int, order: list[int]) -> CoreSchedule:
        starts, finishes, clock = [], [], start
        for i in order:
            starts.append(clock)
            clock = clock + items[i].cost.total_s
            finishes.append(clock)
        return CoreSchedule(core=core, items=tuple(order), start_s=tuple(starts), finish_s=tuple(finishes))

    assert after.schedules == (timed(0, [1, 6, 4, 0]), timed(1, [5, 3, 2]))
    assert after.makespan_s == pytest.approx(start + 7.5e-6)
    assert after.model_copy(update={"schedules": None, "history": ()}) == before


def test_schedule_pass_orders_longest_first_and_times_add_up(lowered: Module) -> None:
    m = run(lowered, f"{UP_TO_OPTIONS},assign-cores{{method=greedy}},schedule")
    assert m.schedules is not None and m.items is not None
    for sched in m.schedules:
        costs = [m.items[i].cost.total_s for i in sched.items]
        assert costs == sorted(costs, reverse=True)
        assert sched.busy_s == pytest.approx(sum(costs))
        assert all(b == pytest.approx(a) for a, b in zip(sched.finish_s, sched.start_s[1:], strict=False))
    start = m.cost_profile.core_start_s
    assert start > 0 and all(s.start_s[0] == start for s in m.schedules if s.items)
    assert m.makespan_s == pytest.approx(start + max(s.busy_s for s in m.schedules))
    assert SchedulePass().apply(m.model_copy(update={"schedules": None}), PassContext()) == m
