"""An item's translations: alone on its core it keeps its pages in the TLB from batch to batch; the pages its
core's other items touch evict them, and it starts its run cold. And the cost of a bag whose rows come from
main memory (`main_bag_s`)."""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import pytest

from embmap.cost_models.analytic import (
    ItemShape,
    footprint_pages,
    item_walks_per_lookup,
    table_histogram,
    walks_per_lookup,
)
from embmap.cost_models.calibrate import neighbour_pages_of
from embmap.cost_models.measurements import Measurement
from embmap.cost_models.presets import preset_profile
from embmap.ir.lowering import lower
from embmap.ir.module import TableProfile
from embmap.ir.plan import Strategy
from embmap.ir.spec import TableSpec, TargetSpec, TLBSpec, Uniform, WorkloadSpec, Zipf
from embmap.ir.targets import ascend910
from embmap.passes import PassManager, parse_pipeline
from tests.conftest import amounts

TLB = TLBSpec(entries=256, page_bytes=4096)  # 64 rows of 64 bytes per page


def simulated_walks(table: TableSpec, draws: int, neighbours: int, batches: int = 12, seed: int = 0) -> float:
    """Walks per lookup of an item drawing `draws` rows of `table` per batch through an LRU TLB (`TLB`), when
    `neighbours` pages it does not share are touched between two of its runs; past two batches of warm-up."""
    rng = np.random.default_rng(seed)
    hist = table_histogram(table)
    probs = np.repeat(hist.probs, hist.counts.astype(int))
    rows = rng.permutation(table.rows)  # ids are hashed: popularity ranks land on random rows
    tlb: OrderedDict[tuple[str, int], None] = OrderedDict()
    walks = lookups = fresh = 0

    def touch(page: tuple[str, int]) -> bool:
        if page in tlb:
            tlb.move_to_end(page)
            return False
        tlb[page] = None
        if len(tlb) > TLB.entries:
            tlb.popitem(last=False)
        return True

    for batch in range(batches):
        for rank in rng.choice(table.rows, size=draws, p=probs):
            walked = touch(("own", int(rows[rank]) // 64))
            if batch >= 2:
                walks, lookups = walks + walked, lookups + 1
        for _ in range(neighbours):
            fresh += 1
            touch(("other", fresh))
    return walks / lookups


def table(pages: int, distribution: Uniform | Zipf | None = None) -> TableSpec:
    return TableSpec(name="t", rows=pages * 64, dim=16, pooling=1, distribution=distribution or Uniform())


@pytest.mark.parametrize(
    ("pages", "draws", "neighbours", "distribution"),
    [
        (128, 2000, 0, Uniform()),  # alone, its pages fit: no walks after the first batch
        (128, 2000, 300, Uniform()),  # the neighbours flush the TLB: one walk per page it touches
        (1024, 2000, 0, Uniform()),  # alone, four times the TLB's reach: the steady state
        (1024, 2000, 300, Uniform()),
        (512, 4000, 128, Uniform()),
        (2048, 3000, 400, Zipf(alpha=1.05)),
    ],
)
def test_item_walks_match_a_simulated_tlb(
    pages: int, draws: int, neighbours: int, distribution: Uniform | Zipf
) -> None:
    t = table(pages, distribution)
    assert item_walks_per_lookup(t, draws, 1.0, TLB, neighbours) == pytest.approx(
        simulated_walks(t, draws, neighbours), abs=0.01
    )


def test_alone_an_item_walks_at_the_tables_steady_state() -> None:
    for pages in (128, 300, 1024, 8192):
        t = table(pages, Zipf(alpha=1.05))
        assert item_walks_per_lookup(t, 5000, 1.0, TLB, 0.0) == walks_per_lookup(t, TLB)


def test_walks_rise_with_the_neighbours_up_to_a_cold_start() -> None:
    t = table(200)
    rates = [item_walks_per_lookup(t, 1000, 1.0, TLB, n) for n in (0, 50, 100, 200, 256, 1000)]
    assert rates[0] == 0.0 and all(a <= b for a, b in zip(rates, rates[1:], strict=False))
    cold = table_histogram(t).touched_groups(1000, 64) / 1000  # every page it touches, once
    assert rates[-2] == rates[-1] == pytest.approx(cold)
    # A row shard with a quarter of the rows: the TLB covers four times as many of the table's pages.
    assert item_walks_per_lookup(table(800), 1000, 0.25, TLB, 0.0) == 0.0 < walks_per_lookup(table(800), TLB)


def test_a_row_that_spans_pages_walks_once_per_page() -> None:
    def wide(rows: int) -> TableSpec:  # 8 KiB rows: each takes two of the TLB's entries
        return TableSpec(name="w", rows=rows, dim=2048, pooling=1, distribution=Uniform())

    fits = wide(100)  # 200 pages
    assert item_walks_per_lookup(fits, 1000, 1.0, TLB, 0.0) == walks_per_lookup(fits, TLB) == 0.0
    cold = 2 * table_histogram(fits).touched_groups(1000, 1) / 1000
    assert item_walks_per_lookup(fits, 1000, 1.0, TLB, 1e6) == pytest.approx(cold)
    # 400 pages alone: the TLB holds 128 of the 200 rows, an LRU of 128 rows under uniform draws.
    assert walks_per_lookup(wide(200), TLB) == pytest.approx(2 * (1 - 128 / 200), abs=0.01)


def test_footprint_pages_and_neighbour_pages_of_a_plan() -> None:
    t, u = table(100), table(5000)
    assert footprint_pages(t, (0, t.rows), (0, 64), TLB) == pytest.approx(table_histogram(t).touched_groups(64, 64))
    assert footprint_pages(t, (0, t.rows // 2), (0, 64), TLB) == pytest.approx(
        footprint_pages(t, (0, t.rows), (0, 64), TLB) / 2
    )
    assert footprint_pages(t, (0, t.rows), (0, 64), None) == 0.0

    def m(tab: TableSpec, plan: str, core: int | None) -> Measurement:
        return Measurement(Strategy.GM, tab, 64, (0, tab.rows), (0, 64), 1e-5, plan=plan, core=core)

    ms = [m(t, "p", 0), m(u, "p", 0), m(u, "p", 1), m(u, "", None)]
    pages = [footprint_pages(x.table, x.rows, x.samples, TLB) for x in ms]
    assert neighbour_pages_of(ms, TLB) == pytest.approx([pages[1], pages[0], 0.0, 0.0])
    assert neighbour_pages_of(ms, None) == [0.0] * 4


def walking_target() -> TargetSpec:
    t = ascend910()
    return t.model_copy(update={"tlb": TLB, "shared_cache": None})


def stats(tab: TableSpec, batch: int, neighbour_pages: float) -> TableProfile:
    return TableProfile(
        table=tab.name,
        bytes=tab.bytes,
        lookups_per_batch=batch * tab.pooling,
        distinct_rows_per_batch=1.0,
        cache_share_bytes=0.0,
        neighbour_pages=neighbour_pages,
    )


def test_an_item_beside_neighbours_pays_a_walk_per_page_it_touches() -> None:
    target = walking_target()
    t = table(200)  # fits the TLB alone
    shape = ItemShape(Strategy.GM, (0, t.rows), (0, 500))
    alone = amounts(shape, t, stats(t, 500, 0.0), target)
    crowded = amounts(shape, t, stats(t, 500, 1000.0), target)
    assert alone.get("page_walk_cache_s", 0.0) == 0.0
    assert crowded["page_walk_cache_s"] == pytest.approx(table_histogram(t).touched_groups(500, 64))


def test_a_walk_overlaps_with_a_main_memory_read_and_not_with_a_cached_one() -> None:
    target = ascend910().model_copy(update={"tlb": TLB})
    t = TableSpec(name="t", rows=1 << 22, dim=16, pooling=4, distribution=Uniform())  # 256 MiB, 16 TLB reaches
    shape = ItemShape(Strategy.GM, (0, t.rows), (0, 512))
    walks = 512 * 4 * walks_per_lookup(t, TLB)
    assert walks > 0.9 * 512 * 4
    uncached = amounts(shape, t, stats(t, 512, 0.0), target)  # every row from main memory
    assert uncached["page_walk_overlapped_s"] == pytest.approx(walks) and uncached["page_walk_s"] == 0.0
    cached = amounts(shape, t, stats(t, 512, 0.0).model_copy(update={"cache_share_bytes": float(t.bytes)}), target)
    assert cached["page_walk_s"] == pytest.approx(walks) and cached["page_walk_overlapped_s"] == 0.0
    half = amounts(shape, t, stats(t, 512, 0.0).model_copy(update={"cache_share_bytes": t.bytes / 2}), target)
    to_main = half["main_row_s"] / (512 * 4)
    assert 0.4 < to_main < 0.6 and half["page_walk_overlapped_s"] == pytest.approx(walks * to_main)
    assert half["page_walk_s"] + half["page_walk_overlapped_s"] == pytest.approx(walks)


def test_the_profile_pass_spreads_the_other_tables_pages_over_the_cores() -> None:
    target = ascend910().model_copy(update={"tlb": TLB})
    tables = tuple(table(pages) for pages in (10, 300, 4000))
    tables = tuple(t.model_copy(update={"name": f"t{i}"}) for i, t in enumerate(tables))
    w = WorkloadSpec(name="w", batch_size=512, tables=tables)
    m = PassManager(parse_pipeline("profile")).run(lower(w, target, preset_profile(target)))
    assert m.table_profiles is not None
    own = [table_histogram(t).touched_groups(512, 64) for t in tables]
    for p, mine in zip(m.table_profiles, own, strict=True):
        assert p.neighbour_pages == pytest.approx((sum(own) - mine) / target.cores)


# A bag whose rows come from main memory -------------------------------------------------------------------


def test_bags_pay_in_proportion_to_their_reads_from_main_memory() -> None:
    target = ascend910()  # no TLB, a buffer: every GM read of a table the shared cache cannot hold is a main one
    huge = TableSpec(name="h", rows=1 << 26, dim=16, pooling=8, distribution=Uniform())  # 4 GiB
    cap = target.shared_cache.capacity_bytes if target.shared_cache else 0.0
    whole = ItemShape(Strategy.GM, (0, huge.rows), (0, 256))
    half_cached = amounts(whole, huge, stats(huge, 256, 0.0).model_copy(update={"cache_share_bytes": cap}), target)
    uncached = amounts(whole, huge, stats(huge, 256, 0.0), target)
    assert uncached["main_bag_s"] == pytest.approx(256)  # every bag, all of its rows from main memory
    main_share = half_cached["main_row_s"] / (256 * 8)
    assert 0 < main_share < 1 and half_cached["main_bag_s"] == pytest.approx(256 * main_share)
    # A row shard of an eighth of the rows: a bag of 8 lookups has one of them in it with 1 - (7/8)^8.
    shard = ItemShape(Strategy.GM, (0, huge.rows // 8), (0, 256))
    assert amounts(shard, huge, stats(huge, 256, 0.0), target)["main_bag_s"] == pytest.approx(256 * (1 - (7 / 8) ** 8))
    small = TableSpec(name="s", rows=1000, dim=16, pooling=8, distribution=Uniform())  # the cache holds it
    resident = stats(small, 256, 0.0).model_copy(update={"cache_share_bytes": float(small.bytes)})
    assert amounts(ItemShape(Strategy.GM, (0, 1000), (0, 256)), small, resident, target).get("main_bag_s") == 0.0
    for strategy in (Strategy.L1, Strategy.GM_UB, Strategy.L1_UB):  # only a GM read goes to main memory
        assert "main_bag_s" not in amounts(ItemShape(strategy, (0, 1000), (0, 256)), small, resident, target)
    assert math.isfinite(uncached["main_row_s"])
