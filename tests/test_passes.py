"""Each pass: a module in, the pass, asserted invariants or an expected module out."""

from __future__ import annotations

import pytest

from embmap.ir.errors import VerificationError
from embmap.ir.module import Module, PartitionOption
from embmap.ir.plan import CostBreakdown, PartitionMode, Strategy
from embmap.ir.verify import module_violations
from embmap.passes.placement import SchedulePass, VerifyPass
from embmap.passes.strategy import PartitionPass, PartitionPolicy, part_counts, prune_dominated
from tests.conftest import run

UP_TO_OPTIONS = "profile,select-strategy,partition"


def test_profile_pass(lowered: Module) -> None:
    m = run(lowered, "profile")
    assert m.table_profiles is not None
    small, medium, large = m.table_profiles
    assert small.lookups_per_batch == 64 and medium.lookups_per_batch == 128 and large.lookups_per_batch == 192
    assert small.distinct_rows_per_batch <= 40  # cannot touch more rows than the table has
    assert large.distinct_rows_per_batch == pytest.approx(192, rel=0.01)  # 200k rows: almost no repeats
    cache = m.target.shared_cache.capacity_bytes  # type: ignore[union-attr]
    assert 0.5 * cache < sum(p.cache_share_bytes for p in m.table_profiles) < cache  # indices take the rest
    assert small.cache_share_bytes == pytest.approx(m.table("small").bytes, rel=0.01)  # a small table stays


def test_select_strategy_pass(lowered: Module) -> None:
    m = run(lowered, "profile,select-strategy")
    assert m.candidates is not None
    by_table = {c.table: c for c in m.candidates}
    assert [c.strategy for c in by_table["small"].candidates] == list(Strategy)
    assert all(c.fits_local for c in by_table["small"].candidates)
    assert not any(c.fits_local for c in by_table["large"].candidates)  # 6.4 MB > 64 KiB
    assert by_table["large"].best.strategy in (Strategy.GM, Strategy.GM_UB)  # preloaded ones do not fit
    only_gm = run(lowered, "profile,select-strategy{strategies=GM}")
    assert only_gm.candidates is not None
    assert all([c.strategy for c in t.candidates] == [Strategy.GM] for t in only_gm.candidates)


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


def test_assign_cores_methods_give_verified_items(lowered: Module) -> None:
    for method in ("cpsat", "greedy"):
        m = run(lowered, f"{UP_TO_OPTIONS},assign-cores{{method={method},time-limit=5}}")
        assert m.items is not None and m.solver is not None and m.lower_bound_s is not None
        assert not module_violations(m)
        assert m.solver.objective_s >= m.solver.best_bound_s
    rr = run(lowered, "profile,select-strategy,partition{policy=whole},assign-cores{method=round-robin}")
    assert rr.items is not None
    assert [it.core for it in rr.items] == [0, 1, 2]  # table i on core i mod 3


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
    assert SchedulePass().apply(m.model_copy(update={"schedules": None})) == m


def test_verify_pass_catches_a_broken_module(lowered: Module) -> None:
    m = run(lowered, f"{UP_TO_OPTIONS},assign-cores{{method=greedy}},schedule")
    assert m.items is not None
    VerifyPass().apply(m)
    first = m.items[0]
    broken = m.model_copy(
        update={"items": (first.model_copy(update={"samples": (0, first.samples[1] - 1)}), *m.items[1:])}
    )
    with pytest.raises(VerificationError, match="cover"):
        VerifyPass().apply(broken)


def test_the_cpsat_size_rule_grows_with_the_time_limit() -> None:
    from embmap.passes.placement import MIN_CPSAT_BOOLEANS, cpsat_boolean_limit

    assert cpsat_boolean_limit(1.0) == cpsat_boolean_limit(10.0) == MIN_CPSAT_BOOLEANS
    assert cpsat_boolean_limit(60.0) == 240_000 > MIN_CPSAT_BOOLEANS


def test_cpsat_above_the_size_rule_keeps_the_greedy_plan_and_says_so(
    lowered: Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    from embmap.passes import placement

    solved = run(lowered, f"{UP_TO_OPTIONS},assign-cores{{time-limit=5}}")
    greedy = run(lowered, f"{UP_TO_OPTIONS},assign-cores{{method=greedy}}")
    monkeypatch.setattr(placement, "MIN_CPSAT_BOOLEANS", 0)
    monkeypatch.setattr(placement, "CPSAT_BOOLEANS_PER_S", 0)
    skipped = run(lowered, f"{UP_TO_OPTIONS},assign-cores{{time-limit=5}}")
    assert solved.solver is not None and greedy.solver is not None and skipped.solver is not None
    assert solved.solver.status == "OPTIMAL"
    assert (skipped.solver.method, skipped.solver.status, skipped.solver.wall_s) == ("cpsat", "NOT_SOLVED", 0.0)
    # The greedy plan (or round-robin's, where faster) stands, against the same bound as the greedy method's.
    assert skipped.solver.objective_s <= greedy.solver.objective_s
    assert skipped.solver.best_bound_s == greedy.solver.best_bound_s
    assert skipped.solver.gap == pytest.approx(1 - skipped.solver.best_bound_s / skipped.solver.objective_s)
    assert skipped.lower_bound_s == solved.lower_bound_s and not module_violations(skipped)
