"""`profile`: a module in, the pass, its table profiles out; computed by hand on a target without a shared cache,
and checked for what they must be on one with a cache."""

from __future__ import annotations

import pytest

from embmap.cost_models import preset_profile
from embmap.cost_models.analytic import INDEX_BYTES, OUTPUT_BYTES
from embmap.ir.lowering import lower
from embmap.ir.module import Module, TableProfile
from embmap.ir.printer import print_module
from embmap.ir.spec import TableSpec, WorkloadSpec
from tests.conftest import run, tiny_target


def _distinct(rows: int, lookups: int) -> float:
    """Expected distinct rows of `lookups` uniform draws from `rows` rows."""
    return rows * (1 - (1 - 1 / rows) ** lookups)


def test_profile_of_two_tables_without_a_shared_cache() -> None:
    """Two tables on two cores with no shared cache: every number follows from the table sizes, the batch and
    the uniform distribution. A core's neighbours are an even share of the other table's bytes: its distinct
    rows, its indices and its pooled outputs."""
    target = tiny_target(cores=2).model_copy(update={"shared_cache": None})
    a, b = TableSpec(name="a", rows=4, dim=8), TableSpec(name="b", rows=100, dim=4, pooling=3)
    before = lower(WorkloadSpec(name="w", batch_size=10, tables=(a, b)), target, preset_profile(target))
    after = run(before, "profile")
    read = {
        t.name: _distinct(t.rows, 10 * t.pooling) * t.row_bytes
        + 10 * t.pooling * INDEX_BYTES
        + 10 * t.dim * OUTPUT_BYTES
        for t in (a, b)
    }
    expected = tuple(
        TableProfile(
            table=t.name,
            bytes=t.rows * t.dim * 4,
            lookups_per_batch=10 * t.pooling,
            distinct_rows_per_batch=_distinct(t.rows, 10 * t.pooling),
            cache_share_bytes=0.0,
            walk_hit_ratio=1.0,
            neighbour_bytes=read[other] / 2,
            neighbour_pages=0.0,
            together_share_bytes=0.0,
        )
        for t, other in ((a, "b"), (b, "a"))
    )
    assert after.table_profiles is not None
    for got, want in zip(after.table_profiles, expected, strict=True):
        assert got.table == want.table
        numbers = {k: v for k, v in want.model_dump().items() if k != "table"}
        assert {k: v for k, v in got.model_dump().items() if k != "table"} == pytest.approx(numbers, rel=1e-12)
    assert after.model_copy(update={"table_profiles": None, "history": ()}) == before
    assert print_module(after).splitlines()[3:5] == [
        "  profile @a lookups=10 distinct=3.8 cache_share=0B",
        "  profile @b lookups=30 distinct=26.0 cache_share=0B",
    ]


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
