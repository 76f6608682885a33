"""Uneven cuts (`passes/solver/uneven.py`): the line under a part's cost holds at every sample count, the re-cut
keeps the tiling and moves samples where they level the cores, and only tables longer than the equal-cut bound
may be cut so."""

from __future__ import annotations

import numpy as np
import pytest

from embmap.ir.plan import PartitionMode, Strategy
from embmap.ir.verify import verify_module
from embmap.passes import SolverSettings
from embmap.passes.solver.bounds import lower_bound_s
from embmap.passes.solver.items import items_makespan_s
from embmap.passes.solver.uneven import part_cost, rebalance, sample_line, splittable_tables, uneven_strategies
from tests.conftest import ONE_LONG, lowered_module, run

ASSIGN = "profile,select-strategy,partition,assign-cores"


@pytest.mark.parametrize("batch", [64, 1500])  # 1500 samples: the line is read on a grid, not at every count
def test_the_sample_line_lies_under_the_part_cost_at_every_count(batch: int) -> None:
    m = run(lowered_module(batch, 3, ONE_LONG), "profile,select-strategy,partition")
    for t in m.workload.tables:
        for strategy in uneven_strategies(m, t.name):
            line, cost = sample_line(m, t, strategy), part_cost(m, t, strategy)
            c = np.array([cost(n) for n in range(1, batch + 1)])
            n = np.arange(1, batch + 1)
            assert np.all(np.diff(c) >= 0), f"{t.name} {strategy.value}: a part's cost must grow with its samples"
            assert np.all(line.fixed_s + line.per_sample_s * n <= c * (1 + 1e-12)), f"{t.name} {strategy.value}"
            # Tight where it matters: at the ends, within one sample's cost.
            assert c[-1] - line.at(batch) <= line.per_sample_s + 1e-15


def test_rebalance_moves_samples_towards_the_idle_core_and_keeps_the_tiling() -> None:
    m = run(lowered_module(256, 2, ONE_LONG), ASSIGN, SolverSettings(time_limit_s=5.0))
    assert m.items is not None
    long_items = [it for it in m.items if it.table == "long"]
    if len(long_items) < 2 or any(it.rows != (0, m.table("long").rows) for it in long_items):
        pytest.skip("the solver did not cut the long table by samples")
    moved = rebalance(m, m.items, frozenset({"long"}))
    verify_module(m.model_copy(update={"items": moved, "schedules": None}))
    assert items_makespan_s(moved) <= items_makespan_s(m.items)
    assert [it.core for it in moved] == [it.core for it in m.items]
    assert [it.strategy for it in moved] == [it.strategy for it in m.items]


def test_splittable_tables_are_those_longer_than_the_equal_cut_bound() -> None:
    m = run(lowered_module(64, 3, ONE_LONG), "profile,select-strategy,partition")
    assert m.options is not None
    bound = lower_bound_s(m)
    for menu in m.options:
        whole = min(o.part_s for o in menu.options if o.parts == 1 and o.mode is PartitionMode.SAMPLES)
        assert (menu.table in splittable_tables(m)) == (whole > bound)
    assert Strategy.GM in uneven_strategies(m, "long")
