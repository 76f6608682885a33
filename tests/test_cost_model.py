"""The analytic cost model: linear in its parameters, and each strategy reacting to what it should."""

from __future__ import annotations

import pytest

from cost_models import ItemShape, item_cost, item_terms, preset_profile
from cost_models.analytic import coefficient, evaluate
from ir.cost_profile import CostProfile
from ir.module import Module, Strategy
from ir.spec import TableSpec, Zipf
from ir.targets import ascend910
from tests.conftest import run


def profiled(lowered: Module) -> Module:
    return run(lowered, "profile")


def cost(
    m: Module,
    table: str,
    strategy: Strategy,
    rows: tuple[int, int] | None = None,
    samples: tuple[int, int] | None = None,
) -> float:
    t = m.table(table)
    shape = ItemShape(strategy, rows or (0, t.rows), samples or (0, m.workload.batch_size))
    return item_cost(shape, t, m.table_profile(table), m.target, m.cost_profile).total_s


def test_cost_is_the_sum_of_terms_times_coefficients(lowered: Module) -> None:
    m = profiled(lowered)
    t = m.table("medium")
    for s in Strategy:
        shape = ItemShape(s, (0, t.rows), (0, 64))
        terms = item_terms(shape, t, m.table_profile("medium"), m.target)
        expected = sum(term.amount * coefficient(m.cost_profile, term.param) for term in terms)
        assert evaluate(terms, m.cost_profile).total_s == pytest.approx(expected)
        assert {term.param for term in terms} <= set(CostProfile.parameter_names())


def test_doubling_a_parameter_doubles_its_share(lowered: Module) -> None:
    m = profiled(lowered)
    base = cost(m, "medium", Strategy.L1)
    slower = m.model_copy(
        update={"cost_profile": m.cost_profile.model_copy(update={"local_row_s": 2 * m.cost_profile.local_row_s})}
    )
    lookups = 64 * 2  # batch x pooling, all served from the local buffer
    assert cost(slower, "medium", Strategy.L1) - base == pytest.approx(lookups * m.cost_profile.local_row_s)


def test_streaming_pays_for_the_whole_part_and_gather_for_lookups(lowered: Module) -> None:
    m = profiled(lowered)
    t = m.table("large")
    full = item_cost(
        ItemShape(Strategy.GM_UB, (0, t.rows), (0, 64)), t, m.table_profile("large"), m.target, m.cost_profile
    )
    half_samples = item_cost(
        ItemShape(Strategy.GM_UB, (0, t.rows), (0, 32)), t, m.table_profile("large"), m.target, m.cost_profile
    )
    half_rows = item_cost(
        ItemShape(Strategy.GM_UB, (0, t.rows // 2), (0, 64)), t, m.table_profile("large"), m.target, m.cost_profile
    )
    assert half_samples.stream_s == pytest.approx(full.stream_s)  # each sample slice still streams the table
    assert half_rows.stream_s == pytest.approx(full.stream_s / 2, rel=0.01)
    assert half_samples.lookup_s < full.lookup_s
    assert half_rows.combine_s > 0 and full.combine_s == 0  # a row shard accumulates into the output


def test_skew_makes_gm_cheaper_through_the_shared_cache() -> None:
    target = ascend910()
    from ir.lowering import lower
    from ir.spec import WorkloadSpec

    def gm_cost(alpha: float | None) -> float:
        table = TableSpec(name="t", rows=50_000_000, dim=64, distribution=Zipf(alpha=alpha) if alpha else None)
        w = WorkloadSpec(name="w", batch_size=4096, tables=(table,))
        m = run(lower(w, target, preset_profile(target)), "profile")
        return cost(m, "t", Strategy.GM)

    assert gm_cost(1.2) < 0.7 * gm_cost(None)


def test_preset_records_a_source_for_every_parameter() -> None:
    p = preset_profile(ascend910())
    assert set(p.sources) == {*CostProfile.parameter_names(), "cache_effective_fraction"}
    assert not p.calibrated
    assert p.main_bytes_per_s == pytest.approx(1.2e12 / 32)
