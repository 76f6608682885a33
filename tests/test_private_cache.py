"""A core's private cache (the local memory of a target where it is a cache, a CPU core's L2): an item alone on
its core keeps its rows in it from batch to batch; items that share a core evict each other's rows."""

from __future__ import annotations

import dataclasses
import itertools
from collections import OrderedDict

import numpy as np
import pytest

from embmap.cost_models.analytic import (
    ItemShape,
    coefficient,
    item_terms,
    private_hit_ratio,
    private_walk_hit_ratio,
    table_histogram,
    walks_per_lookup,
)
from embmap.cost_models.calibrate import fit_profile, neighbour_bytes_of
from embmap.cost_models.measurements import Measurement, read_csv, write_csv
from embmap.cost_models.presets import preset_profile
from embmap.ir.cost_profile import CostProfile
from embmap.ir.lowering import lower
from embmap.ir.module import TableProfile
from embmap.ir.plan import Strategy
from embmap.ir.spec import TableSpec, TargetSpec, TLBSpec, Uniform, WorkloadSpec, Zipf
from embmap.ir.targets import ascend910
from embmap.passes import PassManager, parse_pipeline
from tests.conftest import amounts


@pytest.fixture(scope="module")
def cached() -> TargetSpec:
    """ascend910 whose local memory (1 MiB here) is a cache, as a CPU core's L2 is."""
    t = ascend910()
    return t.model_copy(
        update={"local_is_cache": True, "local": t.local.model_copy(update={"capacity_bytes": 1 << 20})}
    )


def simulated_cold_hits(probs: np.ndarray, draws: int, capacity: int, seeds: int = 20) -> float:
    """Hits of an LRU cache of `capacity` rows that starts empty, over `draws` independent draws (mean)."""
    hits = 0
    for seed in range(seeds):
        cache: OrderedDict[int, None] = OrderedDict()
        for row in np.random.default_rng(seed).choice(len(probs), size=draws, p=probs):
            if row in cache:
                hits += 1
                cache.move_to_end(row)
            else:
                cache[row] = None
                if len(cache) > capacity:
                    cache.popitem(last=False)
    return hits / seeds


@pytest.mark.parametrize("draws", [400, 3000, 12000])
def test_cold_lru_hits_match_a_simulated_lru(draws: int) -> None:
    rows, capacity = 5000, 600
    table = TableSpec(name="t", rows=rows, dim=16, pooling=1, distribution=Zipf(alpha=1.05))
    ranks = np.arange(1, rows + 1, dtype=float) ** -1.05
    expected = table_histogram(table).cold_lru_hits(draws, capacity)
    assert expected == pytest.approx(simulated_cold_hits(ranks / ranks.sum(), draws, capacity), rel=0.06)


def test_a_cold_cache_that_never_fills_misses_each_distinct_row_once() -> None:
    hist = table_histogram(TableSpec(name="t", rows=10_000, dim=16, pooling=1, distribution=Uniform()))
    assert hist.cold_lru_hits(500, 1e6) == pytest.approx(500 - hist.expected_distinct(500))
    assert hist.cold_lru_hits(0, 100) == 0.0 and hist.cold_lru_hits(100, 0) == 0.0


def stats(table: TableSpec, batch: int, neighbour_bytes: float, cache_share: float) -> TableProfile:
    lookups = batch * table.pooling
    return TableProfile(
        table=table.name,
        bytes=table.bytes,
        lookups_per_batch=lookups,
        distinct_rows_per_batch=table_histogram(table).expected_distinct(lookups),
        cache_share_bytes=cache_share,
        neighbour_bytes=neighbour_bytes,
    )


@pytest.mark.parametrize("strategy", [Strategy.GM, Strategy.L1])
def test_alone_a_small_table_is_read_from_the_private_cache_and_neighbours_send_its_rows_to_the_shared_one(
    cached: TargetSpec, strategy: Strategy
) -> None:
    table = TableSpec(name="t", rows=4000, dim=32, pooling=4, distribution=Zipf(alpha=1.05))  # 500 KiB
    batch = 256
    shape = ItemShape(strategy, (0, table.rows), (0, batch))
    served = batch * table.pooling
    alone = amounts(shape, table, stats(table, batch, 0.0, table.bytes), cached)
    assert alone["local_row_s"] == pytest.approx(served) and alone.get("cache_row_s", 0.0) == 0.0
    crowded = amounts(shape, table, stats(table, batch, 4 << 20, table.bytes), cached)
    distinct = table_histogram(table).expected_distinct(served)
    assert crowded["cache_row_s"] == pytest.approx(distinct)  # each distinct row once from the shared cache
    assert crowded["local_row_s"] == pytest.approx(served - distinct)  # then again from the private one
    assert crowded.get("main_row_s", 0.0) == 0.0  # the shared cache holds all of it


def test_a_target_whose_local_memory_is_a_buffer_has_no_private_hits(cached: TargetSpec) -> None:
    table = TableSpec(name="t", rows=4000, dim=32, pooling=4, distribution=Zipf(alpha=1.05))
    assert private_hit_ratio(table, 1024, 1.0, ascend910(), 0.0) == 0.0
    buffer = amounts(ItemShape(Strategy.GM, (0, 4000), (0, 256)), table, stats(table, 256, 0.0, 0.0), ascend910())
    assert "local_row_s" not in buffer  # reads through the shared cache only, as before
    assert private_hit_ratio(table, 1024, 1.0, cached, 0.0) == 1.0


def test_private_hits_fall_as_neighbours_read_more_down_to_the_cold_run(cached: TargetSpec) -> None:
    table = TableSpec(name="t", rows=200_000, dim=16, pooling=8, distribution=Zipf(alpha=1.05))  # 12.8 MB
    ratios = [private_hit_ratio(table, 8192, 1.0, cached, n * (128 << 10)) for n in range(12)]
    assert all(a >= b for a, b in itertools.pairwise(ratios)) and ratios[0] > ratios[-1]
    cold = table_histogram(table).cold_lru_hits(8192, (1 << 20) / table.row_bytes) / 8192
    assert ratios[-1] == pytest.approx(cold)  # nothing of the table survives 1.4 MiB of neighbours
    # A row shard holds a quarter of the rows: its quarter of the cache covers four times as many ranks.
    assert private_hit_ratio(table, 8192, 0.25, cached, 0.0) > ratios[0]


def test_neighbours_are_the_other_items_of_the_same_plan_and_core() -> None:
    t = TableSpec(name="t", rows=1000, dim=16, pooling=2, distribution=Uniform())
    u = TableSpec(name="u", rows=50_000, dim=64, pooling=8, distribution=Zipf(alpha=1.05))

    def m(table: TableSpec, plan: str, core: int | None) -> Measurement:
        return Measurement(Strategy.GM, table, 128, (0, table.rows), (0, 128), 1e-5, plan=plan, core=core)

    ms = [m(t, "p", 0), m(u, "p", 0), m(u, "p", 1), m(t, "q", 0), m(u, "", None)]

    def footprint(table: TableSpec) -> float:  # distinct rows, indices and outputs of one batch of 128
        lookups = 128 * table.pooling
        return table_histogram(table).expected_distinct(lookups) * table.row_bytes + lookups * 8 + 128 * table.dim * 4

    assert neighbour_bytes_of(ms) == pytest.approx([footprint(u), footprint(t), 0.0, 0.0, 0.0])


def test_the_core_column_round_trips(tmp_path) -> None:  # type: ignore[no-untyped-def]
    t = TableSpec(name="t", rows=1000, dim=16, pooling=2, distribution=Uniform())
    ms = [
        Measurement(Strategy.GM, t, 128, (0, 1000), (0, 64), 1e-5, plan="p", core=3),
        Measurement(Strategy.L1, t, 128, (0, 1000), (64, 128), 2e-5),
    ]
    write_csv(ms, tmp_path / "m.csv")
    back = read_csv(tmp_path / "m.csv")
    assert [b.core for b in back] == [3, None] and [b.plan for b in back] == ["p", ""]


def test_the_profile_pass_spreads_the_other_tables_over_the_cores(cached: TargetSpec) -> None:
    tables = tuple(
        TableSpec(name=f"t{i}", rows=rows, dim=32, pooling=4, distribution=Zipf(alpha=1.05))
        for i, rows in enumerate((1000, 20_000, 300_000))
    )
    w = WorkloadSpec(name="w", batch_size=512, tables=tables)
    m = PassManager(parse_pipeline("profile")).run(lower(w, cached, preset_profile(cached)))
    assert m.table_profiles is not None
    own = [p.distinct_rows_per_batch * 128 + 512 * 4 * 8 + 512 * 32 * 4 for p in m.table_profiles]
    for p, mine in zip(m.table_profiles, own, strict=True):
        assert p.neighbour_bytes == pytest.approx((sum(own) - mine) / cached.cores)


def test_the_fit_recovers_known_parameters_from_items_that_share_cores(cached: TargetSpec) -> None:
    """Plans of one to four items per core, priced by the model with each item's true neighbours: the fit,
    which finds the neighbours from the plan and core columns alone, recovers the parameters."""
    base = preset_profile(cached)
    changed = {"local_row_s": 1.7, "cache_row_s": 0.6, "item_fixed_s": 2.0}
    truth = base.model_copy(update={p: getattr(base, p) * f for p, f in changed.items()} | {"item_evicted_s": 4e-6})
    changed["item_evicted_s"] = 1.0
    rows = (2_000, 6_000, 30_000, 120_000, 900_000, 4_000, 50_000, 8_000)
    out = []
    for n, (dist, batch, per_core) in enumerate(itertools.product((Uniform(), Zipf(alpha=1.05)), (64, 512), (1, 2, 4))):
        tables = [
            TableSpec(name=f"t{i}", rows=r, dim=32, pooling=1 + i % 3, distribution=dist) for i, r in enumerate(rows)
        ]
        for strategy in (Strategy.GM, Strategy.L1):
            chosen = [t for t in tables if strategy is Strategy.GM or t.bytes <= cached.local.capacity_bytes]
            plan = [
                Measurement(
                    strategy, t, batch, (0, t.rows), (0, batch), 1.0, t.bytes, plan=f"p{n}{strategy}", core=i % 2
                )
                for i, t in enumerate(chosen[: 2 * per_core])
            ]
            for m, others in zip(plan, neighbour_bytes_of(plan), strict=True):
                terms = item_terms(
                    ItemShape(strategy, m.rows, m.samples),
                    m.table,
                    stats(m.table, batch, others, m.table.bytes),
                    cached,
                )
                seconds = sum(t.amount * coefficient(truth, t.param) for t in terms) + truth.core_start_s
                out.append(dataclasses.replace(m, measured_s=seconds))
    free = set(changed)
    fixed = {p: getattr(truth, p) for p in CostProfile.parameter_names() if p not in free}
    result = fit_profile(
        out, cached, base, command="pytest", holdout_every=0, fixed=fixed | {"cache_effective_fraction": 1.0}
    )
    assert any(m.core > 0 for m in out)
    for p in free:
        assert getattr(result.profile, p) == pytest.approx(getattr(truth, p), rel=1e-6), p


# Page walks: a line of page-table entries the core's own cache holds ------------------------------------


@pytest.fixture(scope="module")
def walking(cached: TargetSpec) -> TargetSpec:
    """The cached target with a small TLB: 64 pages of 4 KiB (64 rows of 64 bytes each)."""
    return cached.model_copy(update={"tlb": TLBSpec(entries=64, page_bytes=4096)})


def simulated_private_walk_hits(rows: int, capacity_lines: int, entries: int, draws: int, seed: int = 0) -> float:
    """Steady-state fraction of TLB misses whose line of page-table entries (8 pages per line) an LRU cache
    of `capacity_lines` lines holds, when uniform draws of 64-byte rows (64 per page) also pass through it."""
    cache: OrderedDict[tuple[str, int], None] = OrderedDict()
    tlb: OrderedDict[int, None] = OrderedDict()
    walks = hits = 0

    def touch(key: tuple[str, int]) -> bool:
        hit = key in cache
        if hit:
            cache.move_to_end(key)
        else:
            cache[key] = None
            if len(cache) > capacity_lines:
                cache.popitem(last=False)
        return hit

    for n, row in enumerate(np.random.default_rng(seed).integers(0, rows, size=draws)):
        page = int(row) // 64
        if page in tlb:
            tlb.move_to_end(page)
        else:
            tlb[page] = None
            if len(tlb) > entries:
                tlb.popitem(last=False)
            hit = touch(("pte", page // 8))
            if n > draws // 3:  # past the warm-up
                walks, hits = walks + 1, hits + hit
        touch(("row", int(row)))
    return hits / walks


@pytest.mark.parametrize("pte_lines", [256, 1024, 4096])
def test_private_walk_hits_match_a_simulated_lru(walking: TargetSpec, pte_lines: int) -> None:
    capacity_lines = 1024
    target = walking.model_copy(
        update={"local": walking.local.model_copy(update={"capacity_bytes": capacity_lines * 64})}
    )
    rows = pte_lines * 8 * 64
    table = TableSpec(name="t", rows=rows, dim=16, pooling=1, distribution=Uniform())
    predicted = private_walk_hit_ratio(table, 4096, 1.0, target, 0.0)
    simulated = simulated_private_walk_hits(rows, capacity_lines, 64, 60_000)
    assert predicted == pytest.approx(simulated, abs=0.06)


def test_private_walk_hits_fall_with_the_table_and_the_neighbours(walking: TargetSpec) -> None:
    def ratio(rows: int, neighbours: float) -> float:
        table = TableSpec(name="t", rows=rows, dim=16, pooling=8, distribution=Uniform())
        return private_walk_hit_ratio(table, 8192, 1.0, walking, neighbours)

    by_size = [ratio(rows, 0.0) for rows in (1 << 18, 1 << 20, 1 << 22, 1 << 24)]
    assert all(a >= b for a, b in itertools.pairwise(by_size)) and by_size[0] > 0.9 > 0.3 > by_size[-1]
    by_neighbours = [ratio(1 << 20, n * (256 << 10)) for n in range(8)]
    assert all(a >= b for a, b in itertools.pairwise(by_neighbours)) and by_neighbours[0] > by_neighbours[-1]


def test_walks_the_private_cache_holds_do_not_read_the_shared_cache(walking: TargetSpec) -> None:
    table = TableSpec(name="t", rows=1 << 20, dim=16, pooling=8, distribution=Uniform())  # 64 MiB
    shape = ItemShape(Strategy.GM, (0, table.rows), (0, 1024))
    got = amounts(shape, table, stats(table, 1024, 0.0, 0.0), walking)
    walks = 1024 * 8 * walks_per_lookup(table, walking.tlb)  # type: ignore[arg-type]
    local = walks * private_walk_hit_ratio(table, 1024 * 8, 1.0, walking, 0.0)
    assert 0 < local < walks
    row_hits = 1024 * 8 * private_hit_ratio(table, 1024 * 8, 1.0, walking, 0.0)
    assert got["local_row_s"] == pytest.approx(row_hits)  # the few rows drawn again; a walk is no row read
    assert got["page_walk_cache_s"] == pytest.approx(walks - local)
    assert got["page_walk_s"] + got["page_walk_overlapped_s"] == pytest.approx(walks)  # every walk, once
    assert private_walk_hit_ratio(table, 1024, 1.0, ascend910(), 0.0) == 0.0  # no TLB, a buffer: no such hits


def test_the_fit_separates_the_three_prices_of_a_walk(walking: TargetSpec) -> None:
    """A walk for a cached row, a walk beside a main-memory read, and the shared-cache read of a page-table line
    the private cache misses: items of tables from 1 to 256 MiB, in the whole cache or none of it."""
    base = preset_profile(walking)
    walk_prices = {"page_walk_s": 8e-9, "page_walk_overlapped_s": 1e-9, "page_walk_cache_s": 5e-9}
    truth = base.model_copy(update=walk_prices)
    out = []
    for rows, dist, share in itertools.product(
        (1 << 14, 1 << 16, 1 << 18, 1 << 20, 1 << 22), (Uniform(), Zipf(alpha=1.05)), (0.0, 1.0)
    ):
        table = TableSpec(name="t", rows=rows, dim=16, pooling=4, distribution=dist)
        m = Measurement(Strategy.GM, table, 512, (0, rows), (0, 512), 1.0, share * table.bytes)
        terms = item_terms(
            ItemShape(Strategy.GM, m.rows, m.samples), table, stats(table, 512, 0.0, share * table.bytes), walking
        )
        seconds = sum(t.amount * coefficient(truth, t.param) for t in terms) + truth.core_start_s
        out.append(dataclasses.replace(m, measured_s=seconds))
    fixed = {p: getattr(truth, p) for p in CostProfile.parameter_names() if p not in walk_prices}
    result = fit_profile(
        out, walking, base, command="pytest", holdout_every=0, fixed=fixed | {"cache_effective_fraction": 1.0}
    )
    for p, value in walk_prices.items():
        assert getattr(result.profile, p) == pytest.approx(value, rel=1e-6), p
