"""`assign-cores`: a module with its menus in, the pass, the plan (work items on cores), its solver report and
its bound out. The report and bound are in busy time; the plan adds the per-core start-up once."""

from __future__ import annotations

import pytest

from embmap.cost_models import preset_profile
from embmap.ir.lowering import lower
from embmap.ir.module import Module, PartitionOption, TableOptions
from embmap.ir.plan import CostBreakdown, PartitionMode, Strategy
from embmap.ir.printer import print_module
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.ir.verify import module_violations
from embmap.passes import SolverSettings
from embmap.passes.solver.cpsat import MIN_CPSAT_BOOLEANS, cpsat_boolean_limit
from embmap.passes.solver.problem import TIME_UNIT_S, AssignmentProblem
from tests.conftest import run, tiny_target
from tests.problems import exhaustive

UP_TO_OPTIONS = "profile,select-strategy,partition"
FAST = SolverSettings(time_limit_s=5.0)


def _option(table: str, parts: int, part_us: float) -> PartitionOption:
    return PartitionOption(
        table=table,
        strategy=Strategy.GM,
        mode=PartitionMode.SAMPLES,
        parts=parts,
        part_costs=(CostBreakdown(lookup_s=part_us * 1e-6),) * parts,
        local_bytes_per_part=(0,) * parts,
    )


def _menus_module() -> Module:
    """Three tables on two cores, their menus written by hand: a whole in 6 us or in two parts of 3.5 us, b in
    3 us, c in 2 us. The best plan puts a alone on a core (6 us) and b and c on the other (5 us)."""
    target = tiny_target(cores=2)
    tables = tuple(TableSpec(name=n, rows=10, dim=8) for n in "abc")
    lowered = lower(WorkloadSpec(name="w", batch_size=4, tables=tables), target, preset_profile(target))
    menus = (
        TableOptions(table="a", options=(_option("a", 1, 6.0), _option("a", 2, 3.5))),
        TableOptions(table="b", options=(_option("b", 1, 3.0),)),
        TableOptions(table="c", options=(_option("c", 1, 2.0),)),
    )
    return lowered.model_copy(update={"options": menus})


def _item_lines(m: Module) -> list[str]:
    return [line for line in print_module(m).splitlines() if line.startswith("  %")]


def test_cpsat_places_the_menus_optimally() -> None:
    before = _menus_module()
    after = run(before, "assign-cores", FAST)
    assert _item_lines(after) == [
        "  %0 = write @a GM rows=[0,10) samples=[0,4) core=0 local=0B cost=6us",
        "  %1 = write @b GM rows=[0,10) samples=[0,4) core=1 local=0B cost=3us",
        "  %2 = write @c GM rows=[0,10) samples=[0,4) core=1 local=0B cost=2us",
    ]
    report = after.solver
    assert report is not None
    assert (report.method, report.status, report.gap) == ("cpsat", "OPTIMAL", 0.0)
    assert (report.objective_s, report.best_bound_s) == (6000 * TIME_UNIT_S, 6000 * TIME_UNIT_S)  # busy time
    assert (report.workers, report.seed, report.time_limit_s, report.options_considered) == (1, 0, 5.0, 4)
    assert after.lower_bound_s == pytest.approx(6e-6)  # a's least work (6 us) over the two cores: 12 / 2
    assert after.model_copy(update={"items": None, "solver": None, "lower_bound_s": None, "history": ()}) == before


def test_round_robin_deals_whole_tables_in_turn() -> None:
    """a on core 0, b on core 1, c on core 0 again: 8 us against the bound of 6 us, reported NOT_SOLVED."""
    after = run(_menus_module(), "assign-cores{method=round-robin}")
    assert [line.split(" core=")[1][0] for line in _item_lines(after)] == ["0", "1", "0"]
    report = after.solver
    assert report is not None
    assert (report.method, report.status, report.wall_s) == ("round-robin", "NOT_SOLVED", 0.0)
    assert (report.objective_s, report.best_bound_s) == (8000 * TIME_UNIT_S, 6000 * TIME_UNIT_S)
    assert report.gap == pytest.approx(0.25)


def test_the_plan_adds_the_start_up_once() -> None:
    """The module's report and bound are busy time; the plan's are what a batch takes: start-up included."""
    from embmap.mapper import compile

    plan = compile("tenrec-qb-article", "ascend910", baselines=False)
    start = plan.cost_profile.core_start_s
    busy = max(c.busy_s for c in plan.cores)
    assert start > 0 and plan.makespan_s == pytest.approx(busy + start)
    # The solver counts each part in whole nanoseconds, rounded up: its objective is the makespan to that.
    assert 0 <= plan.solver.objective_s - plan.makespan_s <= len(plan.items) * TIME_UNIT_S
    assert plan.solver.gap == pytest.approx(1 - plan.solver.best_bound_s / plan.solver.objective_s)
    assert plan.lower_bound_s <= plan.makespan_s


def test_assign_cores_methods_give_verified_items(lowered: Module) -> None:
    for method in ("cpsat", "greedy"):
        m = run(lowered, f"{UP_TO_OPTIONS},assign-cores{{method={method}}}", FAST)
        assert m.items is not None and m.solver is not None and m.lower_bound_s is not None
        assert not module_violations(m)
        assert m.solver.objective_s >= m.solver.best_bound_s
    rr = run(lowered, "profile,select-strategy,partition{policy=whole},assign-cores{method=round-robin}")
    assert rr.items is not None
    assert [it.core for it in rr.items] == [0, 1, 2]  # table i on core i mod 3


def test_the_cpsat_size_rule_grows_with_the_time_limit() -> None:
    assert cpsat_boolean_limit(1.0) == cpsat_boolean_limit(10.0) == MIN_CPSAT_BOOLEANS
    assert cpsat_boolean_limit(60.0) == 240_000 > MIN_CPSAT_BOOLEANS


def test_cpsat_above_the_size_rule_keeps_the_greedy_plan_and_says_so(
    lowered: Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embmap.passes.solver import cpsat

    solved = run(lowered, f"{UP_TO_OPTIONS},assign-cores", FAST)
    greedy = run(lowered, f"{UP_TO_OPTIONS},assign-cores{{method=greedy}}")
    monkeypatch.setattr(cpsat, "MIN_CPSAT_BOOLEANS", 0)
    monkeypatch.setattr(cpsat, "CPSAT_BOOLEANS_PER_S", 0)
    skipped = run(lowered, f"{UP_TO_OPTIONS},assign-cores", FAST)
    assert solved.solver is not None and greedy.solver is not None and skipped.solver is not None
    assert solved.solver.status == "OPTIMAL"
    assert (skipped.solver.method, skipped.solver.status, skipped.solver.wall_s) == ("cpsat", "NOT_SOLVED", 0.0)
    # The greedy plan (or round-robin's, where faster) stands, against the same bound as the greedy method's.
    assert skipped.solver.objective_s <= greedy.solver.objective_s
    assert skipped.solver.best_bound_s == greedy.solver.best_bound_s
    assert skipped.solver.gap == pytest.approx(1 - skipped.solver.best_bound_s / skipped.solver.objective_s)
    assert skipped.lower_bound_s == solved.lower_bound_s and not module_violations(skipped)


def six_table_module(prune: bool) -> Module:
    target = tiny_target(cores=3)
    w = WorkloadSpec(
        name="six",
        batch_size=48,
        tables=(
            TableSpec(name="a", rows=30, dim=16),
            TableSpec(name="b", rows=900, dim=16, pooling=2),
            TableSpec(name="c", rows=5000, dim=16),
            TableSpec(name="d", rows=60_000, dim=32, pooling=4),
            TableSpec(name="e", rows=12, dim=64, pooling=3),
            TableSpec(name="f", rows=2500, dim=8, pooling=6),
        ),
    )
    return run(
        lower(w, target, preset_profile(target)), f"profile,select-strategy,partition{{prune={str(prune).lower()}}}"
    )


SLOW = SolverSettings(time_limit_s=30.0)


def test_pipeline_optimum_equals_exhaustive_search_over_the_unpruned_menu() -> None:
    """Six real tables on three cores: the pruned menu plus CP-SAT reach the optimum of the full menu."""
    full = AssignmentProblem.from_module(six_table_module(prune=False))
    solved = run(six_table_module(prune=True), "assign-cores", SLOW)
    assert solved.solver is not None and solved.solver.status == "OPTIMAL"
    assert round(solved.solver.objective_s / TIME_UNIT_S) == exhaustive(full)  # busy time


def test_lower_bound_holds_and_hint_is_never_beaten_by_the_result() -> None:
    m = run(six_table_module(prune=True), "assign-cores,schedule", SLOW)
    assert m.solver is not None and m.lower_bound_s is not None and m.makespan_s is not None
    assert m.lower_bound_s <= m.makespan_s
    assert m.solver.hint_objective_s is not None and m.solver.objective_s <= m.solver.hint_objective_s


def test_time_limit_returns_at_least_the_greedy_plan(lowered: Module) -> None:
    m = run(lowered, "profile,select-strategy,partition,assign-cores", SolverSettings(time_limit_s=0.001))
    g = run(lowered, "profile,select-strategy,partition,assign-cores{method=greedy}")
    assert m.solver is not None and g.solver is not None
    assert m.solver.objective_s <= g.solver.objective_s


def test_same_seed_and_workers_give_the_same_plan() -> None:
    a = run(six_table_module(prune=True), "assign-cores", SolverSettings(time_limit_s=30.0, seed=7))
    b = run(six_table_module(prune=True), "assign-cores", SolverSettings(time_limit_s=30.0, seed=7))
    assert a.items == b.items


def test_time_limited_solves_repeat_exactly() -> None:
    """The limit is deterministic time, so even a solve stopped by it gives the same plan every run."""
    from embmap.mapper import compile

    settings = SolverSettings(time_limit_s=1.0, workers=2, seed=3)
    a = compile("huawei-25mb-like", "ascend910", solver=settings, baselines=False)
    b = compile("huawei-25mb-like", "ascend910", solver=settings, baselines=False)
    assert a.items == b.items and a.solver.best_bound_s == b.solver.best_bound_s
