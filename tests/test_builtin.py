"""Acceptance: every built-in workload compiles for ascend910 into a verified plan that is no slower, under the
same cost model, than the default compiler, round-robin and greedy."""

from __future__ import annotations

from functools import cache

import pytest

from embmap.ir.plan import ExecutionPlan
from embmap.ir.verify import plan_violations
from embmap.mapper import BASELINES, SolverSettings, compile
from embmap.mapper.workloads import builtin_names

SOLVER = SolverSettings(time_limit_s=2.0, workers=1, seed=0)


@cache
def ours(workload: str) -> ExecutionPlan:
    return compile(workload, "ascend910", solver=SOLVER, baselines=False)


@pytest.mark.parametrize("workload", builtin_names())
def test_plan_is_verified_and_reports_its_quality(workload: str) -> None:
    plan = ours(workload)
    assert plan_violations(plan) == []
    s = plan.solver
    assert s.method == "cpsat" and s.status in ("OPTIMAL", "FEASIBLE", "UNKNOWN")
    assert 0 < s.best_bound_s <= s.objective_s
    assert s.gap == pytest.approx((s.objective_s - s.best_bound_s) / s.objective_s)
    assert 0 < plan.lower_bound_s <= plan.makespan_s
    assert s.hint_objective_s is not None and s.objective_s <= s.hint_objective_s


@pytest.mark.parametrize("workload", builtin_names())
@pytest.mark.parametrize("baseline", BASELINES)
def test_plan_is_no_slower_than_each_baseline(workload: str, baseline: str) -> None:
    theirs = compile(workload, "ascend910", pipeline=baseline, baselines=False)
    assert plan_violations(theirs) == []
    assert ours(workload).makespan_s <= theirs.makespan_s


def test_default_baseline_splits_every_table_over_every_core() -> None:
    plan = compile("kuairec-big", "ascend910", pipeline="default", baselines=False)
    assert all(t.strategy.value == "GM" and t.parts == 32 for t in plan.tables)
    assert all(len(c.items) == len(plan.tables) for c in plan.cores)


def test_round_robin_deals_whole_tables_in_turn() -> None:
    plan = compile("avazu", "ascend910", pipeline="round-robin", baselines=False)
    assert [it.core for it in plan.items] == [i % 32 for i in range(len(plan.tables))]
    assert all(t.parts == 1 for t in plan.tables)
