"""The analytic cost model: linear in its parameters, and each strategy reacting to what it should."""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest

from embmap.cost_models import ItemShape, item_cost, item_terms, preset_profile
from embmap.cost_models.analytic import (
    LINE_BYTES,
    PTE_BYTES,
    cache_shares,
    coefficient,
    evaluate,
    main_exposure,
    shared_cache_state,
    table_histogram,
)
from embmap.ir.cost_profile import CostProfile
from embmap.ir.distributions import histogram
from embmap.ir.module import Module
from embmap.ir.plan import Strategy
from embmap.ir.spec import HotSet, TableSpec, TLBSpec, Uniform, Zipf
from embmap.ir.targets import ascend910
from embmap.mapper.compiler import resolve_target
from embmap.runtime.data import sample_ranks
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
    from embmap.ir.lowering import lower
    from embmap.ir.spec import WorkloadSpec

    def gm_cost(alpha: float | None) -> float:
        table = TableSpec(name="t", rows=50_000_000, dim=64, distribution=Zipf(alpha=alpha) if alpha else None)
        w = WorkloadSpec(name="w", batch_size=4096, tables=(table,))
        m = run(lower(w, target, preset_profile(target)), "profile")
        return cost(m, "t", Strategy.GM)

    assert gm_cost(1.2) < 0.7 * gm_cost(None)


@pytest.mark.parametrize("window", [1.0, 2.0, 3.0])
def test_main_exposure_counts_stretches_with_a_miss(window: float) -> None:
    """Reads in stretches of `window`, each missing with probability m: the share of reads in stretches
    with a miss, counted on 200,000 simulated stretches, is the exposure."""
    rng = np.random.default_rng(int(window))
    for m in (0.02, 0.1, 0.5, 0.9):
        misses = rng.random((200_000, int(window))) < m
        assert main_exposure(m, window) == pytest.approx(misses.any(axis=1).mean(), abs=0.005)
    assert main_exposure(0.0, window) == 0.0 and main_exposure(1.0, window) == 1.0
    assert main_exposure(0.3, 1.0) == pytest.approx(0.3)
    assert main_exposure(1e-4, window) == pytest.approx(window * 1e-4, rel=1e-3)


def test_a_miss_among_hits_pays_for_its_stretch() -> None:
    """A 512 MiB table whose reads hit 64 hot rows with probability 0.9: with a window of 2.5 reads, its
    reads from main memory cost 1 - 0.9^2.5 = 23% of the uniform table's, not 10% as in the linear model."""
    target = resolve_target("cpu")
    from embmap.ir.lowering import lower
    from embmap.ir.spec import WorkloadSpec

    def main_amount(distribution: Uniform | HotSet, window: float) -> float:
        table = TableSpec(name="t", rows=1 << 20, dim=128, distribution=distribution)
        profile = preset_profile(target).model_copy(update={"main_window_rows": window})
        m = run(lower(WorkloadSpec(name="w", batch_size=1024, tables=(table,)), target, profile), "profile")
        shape = ItemShape(Strategy.GM, (0, table.rows), (0, 1024))
        terms = item_terms(shape, table, m.table_profile("t"), target, window)
        return sum(t.amount for t in terms if t.param == "main_row_s")

    for window, share in ((1.0, 0.1), (2.5, 1 - 0.9**2.5)):
        ratio = main_amount(HotSet(hot_rows=64, hot_mass=0.9), window) / main_amount(Uniform(), window)
        assert ratio == pytest.approx(share, rel=0.05), window


def test_preset_records_a_source_for_every_parameter() -> None:
    p = preset_profile(ascend910())
    assert set(p.sources) == {*CostProfile.parameter_names(), "cache_effective_fraction", "main_window_rows"}
    assert not p.calibrated
    assert p.main_bytes_per_s == pytest.approx(1.2e12 / 32)


def simulated_lru_hits(tables: list[TableSpec], capacity: float, stream_bytes: float, draws: int) -> list[float]:
    """Hit ratio per table of a byte-sized LRU cache fed with independent lookups in proportion to pooling,
    each followed by `stream_bytes` of data used once (an index)."""
    rng = np.random.default_rng(0)
    cache: OrderedDict[tuple[int, int], int] = OrderedDict()
    used = 0
    weights = np.array([t.pooling for t in tables], dtype=float)
    which = rng.choice(len(tables), size=draws, p=weights / weights.sum())
    rows = {i: iter(sample_ranks(t, draws, rng)) for i, t in enumerate(tables)}
    hits, counts = [0] * len(tables), [0] * len(tables)
    for n, i in enumerate(which):
        key = (int(i), int(next(rows[i])))
        if key in cache:
            cache.move_to_end(key)
            if n > draws // 5:  # after warm-up
                hits[i] += 1
        else:
            cache[key] = tables[i].row_bytes
            used += tables[i].row_bytes
        counts[i] += n > draws // 5
        cache[(-1, n)] = int(stream_bytes)
        used += int(stream_bytes)
        while used > capacity:
            _, size = cache.popitem(last=False)
            used -= size
    return [h / c for h, c in zip(hits, counts, strict=True)]


def test_shared_cache_model_matches_a_simulated_lru() -> None:
    """Che's approximation over all tables and the streamed indices, against an LRU simulation."""
    tables = [
        TableSpec(name="hot", rows=20_000, dim=16, pooling=4, distribution=Zipf(alpha=1.05)),
        TableSpec(name="flat", rows=3_000, dim=16, pooling=2, distribution=Uniform()),
        TableSpec(name="big", rows=50_000, dim=32, pooling=1, distribution=Zipf(alpha=0.8)),
    ]
    capacity, batch = 256 * 1024, 64
    shares = cache_shares(capacity, tables, batch)
    stream = 8 + sum(batch * t.dim * 4 for t in tables) / sum(batch * t.pooling for t in tables)
    simulated = simulated_lru_hits(tables, capacity, stream, draws=300_000)
    model = [table_histogram(t).lru_hit_ratio(s / t.row_bytes) for t, s in zip(tables, shares, strict=True)]
    assert model == pytest.approx(simulated, abs=0.03)
    # Not the proportional split: the flat table's traffic alone would earn it more than its hit ratio shows.
    assert shares[1] < capacity * 2 / 7


def test_page_walks_only_for_tables_beyond_the_tlb_reach() -> None:
    flat = histogram(Uniform(), 1_000_000)
    assert histogram(Uniform(), 20_000).page_miss_ratio(8, 2560) == 0.0  # 2,500 pages: all held
    assert histogram(Uniform(), 32_768).page_miss_ratio(8, 2560) == pytest.approx(1 - 2560 / 4096, abs=0.01)
    assert flat.page_miss_ratio(8, 2560) == pytest.approx(1 - 2560 / 125_000, abs=0.01)
    skewed = histogram(Zipf(alpha=1.05), 1_000_000).page_miss_ratio(8, 2560)
    assert 0.2 < skewed < 0.7  # hot rows share few pages, but hashing spreads them over the table


def simulated_walk_hits(
    tables: list[TableSpec], capacity: float, stream_bytes: float, tlb: TLBSpec, draws: int
) -> list[float]:
    """Per table, the fraction of its page walks whose page-table line a byte-sized LRU cache holds, on a
    simulated core: one LRU TLB of `tlb.entries` pages shared by all tables, ids hashed to rows, and one LRU
    cache holding rows, page-table lines (of LINE_BYTES) and the streamed bytes of every lookup."""
    rng = np.random.default_rng(1)
    cache: OrderedDict[tuple[int, str, int], int] = OrderedDict()
    translations: OrderedDict[tuple[int, int], None] = OrderedDict()
    used = 0

    def touch(key: tuple[int, str, int], size: int) -> bool:
        nonlocal used
        if key in cache:
            cache.move_to_end(key)
            return True
        cache[key] = size
        used += size
        return False

    weights = np.array([t.pooling for t in tables], dtype=float)
    which = rng.choice(len(tables), size=draws, p=weights / weights.sum())
    hashed = [rng.permutation(t.rows) for t in tables]
    ranks = {i: iter(sample_ranks(t, draws, rng)) for i, t in enumerate(tables)}
    hits, walks = [0] * len(tables), [0] * len(tables)
    for n, i in enumerate(which):
        t = tables[i]
        row = int(hashed[i][next(ranks[i])])
        page = row * t.row_bytes // tlb.page_bytes
        if (i, page) in translations:
            translations.move_to_end((i, page))
        else:
            translations[(i, page)] = None
            if len(translations) > tlb.entries:
                translations.popitem(last=False)
            hit = touch((i, "pte", page // (LINE_BYTES // PTE_BYTES)), LINE_BYTES)
            if n > draws // 5:  # after warm-up
                walks[i] += 1
                hits[i] += hit
        touch((i, "row", row), t.row_bytes)
        touch((-1, "stream", n), int(stream_bytes))
        while used > capacity:
            _, size = cache.popitem(last=False)
            used -= size
    return [h / w for h, w in zip(hits, walks, strict=True)]


def test_page_table_lines_share_the_cache_as_a_simulated_core_shows() -> None:
    """Walks of tables whose page tables fit beside the rows hit; of a table whose page tables alone exceed
    the cache, most miss, and the model says by how much."""
    tlb = TLBSpec(entries=64, page_bytes=4096)
    tables = [
        TableSpec(
            name="huge", rows=2_000_000, dim=16, pooling=2, distribution=Uniform()
        ),  # 31,250 pages: 3,907 page-table lines
        TableSpec(name="mid", rows=200_000, dim=32, pooling=2, distribution=Zipf(alpha=1.05)),  # 782 lines
        TableSpec(name="small", rows=40_000, dim=16, pooling=1, distribution=Uniform()),  # 79 lines
    ]
    capacity, batch = 192 * 1024, 64
    states = shared_cache_state(capacity, tables, batch, tlb)
    stream = 8 + sum(batch * t.dim * 4 for t in tables) / sum(batch * t.pooling for t in tables)
    simulated = simulated_walk_hits(tables, capacity, stream, tlb, draws=400_000)
    model = [s.walk_hit_ratio for s in states]
    assert model == pytest.approx(simulated, abs=0.05)
    assert model[0] < 0.5 < model[2]  # the huge table's page tables do not fit; the small one's do
    # Without page tables in the model, rows would get more of the cache than they do.
    assert sum(s.share_bytes for s in states) < sum(cache_shares(capacity, tables, batch))
    # Everything fits: every walk hits.
    assert all(s.walk_hit_ratio == 1.0 for s in shared_cache_state(1 << 30, tables, batch, tlb))
