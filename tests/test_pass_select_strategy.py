"""`select-strategy`: a profiled module in, the pass, each table's candidates out: every allowed strategy costed
for the whole table on one core by the cost model, and whether the table fits the local buffer."""

from __future__ import annotations

from embmap.cost_models import preset_profile
from embmap.cost_models.analytic import ItemShape, item_cost
from embmap.ir.lowering import lower
from embmap.ir.module import Module, StrategyCandidate, TableCandidates, TableProfile
from embmap.ir.plan import Strategy
from embmap.ir.spec import TableSpec, WorkloadSpec
from tests.conftest import KiB, run, tiny_target


def test_candidates_of_a_table_that_fits_and_one_that_does_not() -> None:
    target = tiny_target(cores=2, local_bytes=4 * KiB)
    small, big = TableSpec(name="small", rows=16, dim=8), TableSpec(name="big", rows=1000, dim=8)  # 512 B, 32 KB
    lowered = lower(WorkloadSpec(name="w", batch_size=8, tables=(small, big)), target, preset_profile(target))
    profiles = tuple(
        TableProfile(
            table=t.name,
            bytes=t.bytes,
            lookups_per_batch=8,
            distinct_rows_per_batch=6.0,
            cache_share_bytes=float(t.bytes),
        )
        for t in (small, big)
    )
    before = lowered.model_copy(update={"table_profiles": profiles})
    after = run(before, "select-strategy{strategies=GM:L1}")

    def cost(spec: TableSpec, s: Strategy, stats: TableProfile) -> StrategyCandidate:
        t = before.table(spec.name)  # the effective table: its distribution explicit
        shape = ItemShape(s, (0, t.rows), (0, 8))
        return StrategyCandidate(
            strategy=s, fits_local=t.bytes <= 4 * KiB, cost=item_cost(shape, t, stats, target, before.cost_profile)
        )

    expected = tuple(
        TableCandidates(table=t.name, candidates=(cost(t, Strategy.GM, p), cost(t, Strategy.L1, p)))
        for t, p in zip((small, big), profiles, strict=True)
    )
    assert after.candidates == expected
    assert [c.fits_local for c in expected[0].candidates] == [True, True]
    assert [c.fits_local for c in expected[1].candidates] == [False, False]
    assert after.model_copy(update={"candidates": None, "history": ()}) == before


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
