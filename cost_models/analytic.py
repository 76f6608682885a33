"""The analytic cost model: predicted seconds of one work item on one core.

The model is linear in its parameters: `item_terms` turns an item into (parameter, amount) terms, a count for
`_s` parameters and bytes for `_bytes_per_s` ones, and `evaluate` multiplies them by a profile; calibration
fits the same terms, so prediction and fit cannot disagree about the model's form. Per strategy (GM from the
shared caches or main memory, with page walks on a TLB; L1 from the local buffer; GM-UB and L1-UB streamed
through the scratchpad) plus what every item pays (launch, bags, output or a shard's combine). Where the rows
come from follows Che's approximation of the shared and private caches (`shared_cache_state`,
`private_hit_ratio`). The model, term by term: docs/design.md, "The cost model"; the caches: docs/calibration.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal, NamedTuple

from embmap.ir.cost_profile import CostProfile
from embmap.ir.distributions import RankHistogram, crossing, histogram
from embmap.ir.module import TableProfile
from embmap.ir.plan import CostBreakdown, Strategy, stream_chunk_rows
from embmap.ir.spec import AnyDistribution, TableSpec, TargetSpec, TLBSpec

Category = Literal["fixed", "lookup", "stream", "combine"]
OUTPUT_BYTES = 4  # pooled outputs are accumulated and written in fp32
INDEX_BYTES = 8  # one int64 index per lookup
PTE_BYTES = 8  # one leaf page-table entry (x86-64 and Armv8 alike)
LINE_BYTES = 64  # a cache line: the unit in which page-table entries are cached


@dataclass(frozen=True)
class ItemShape:
    strategy: Strategy
    rows: tuple[int, int]
    samples: tuple[int, int]


class Term(NamedTuple):  # a tuple, not a dataclass: an item has about ten, and large workloads cost a million
    param: str
    amount: float
    category: Category


@dataclass(frozen=True)
class _Reads:
    """What an item reads, shared by every strategy's terms."""

    shape: ItemShape
    table: TableSpec
    stats: TableProfile
    target: TargetSpec
    cache: float  # bytes of the table's rows the shared cache holds
    row_frac: float  # the share of the table's rows the item owns
    samples: int
    indices: float  # indices the item reads (samples x the mean pooling factor)
    served: float  # lookups that fall in its rows (rows are a random subset of ranks)


def item_terms(
    shape: ItemShape, table: TableSpec, stats: TableProfile, target: TargetSpec, window: float = 1.0
) -> list[Term]:
    """The item's cost as (parameter, amount) terms, given the table's share of the shared cache (`stats`) and
    the row reads a core overlaps with a main-memory access (`window`, the profile's `main_window_rows`)."""
    assert table.distribution is not None, "tables must be effective (distribution explicit)"
    row_frac = (shape.rows[1] - shape.rows[0]) / table.rows
    samples = shape.samples[1] - shape.samples[0]
    indices = samples * table.pooling
    reads = _Reads(
        shape=shape,
        table=table,
        stats=stats,
        target=target,
        cache=stats.cache_share_bytes if target.shared_cache else 0.0,
        row_frac=row_frac,
        samples=samples,
        indices=indices,
        served=indices * row_frac,
    )
    terms = _common_terms(reads)
    if shape.strategy is Strategy.GM:
        return terms + _gm_terms(reads, window)
    if shape.strategy is Strategy.L1:
        return terms + _l1_terms(reads)
    return terms + _streamed_terms(reads)


def _common_terms(r: _Reads) -> list[Term]:
    """Launch, bags, output (or a shard's combine), and the indices a shard filters or a streamed item buckets."""
    out_bytes = r.samples * r.table.dim * OUTPUT_BYTES
    terms = [Term("item_fixed_s", 1.0, "fixed"), Term("bag_s", r.samples, "lookup")]
    if r.target.local_is_cache:
        evicted = min(1.0, r.stats.neighbour_bytes / r.target.local.capacity_bytes)
        terms.append(Term("item_evicted_s", evicted, "fixed"))
    if r.row_frac < 1.0:
        terms.append(Term("combine_bytes_per_s", 2 * out_bytes, "combine"))
    else:
        terms.append(Term("output_bytes_per_s", out_bytes, "lookup"))
    if r.shape.strategy.streamed or r.row_frac < 1.0:
        terms.append(Term("index_s", r.indices, "lookup"))
    if r.row_frac < 1.0:
        terms.append(Term("shard_setup_s", 1.0, "lookup"))
    return terms


def _gm_terms(r: _Reads, window: float) -> list[Term]:
    table, target, stats, served, rb = r.table, r.target, r.stats, r.served, r.table.row_bytes
    shared_hit = _lru_hit_ratio(table, r.cache / rb)
    private_hit = private_hit_ratio(table, r.indices, r.row_frac, target, stats.neighbour_bytes)
    to_main = 1.0 - max(shared_hit, private_hit)  # the share of its reads that go to main memory
    from_local = served * private_hit
    from_main = served * to_main
    from_cache = served - from_local - from_main
    # What the reads from main memory cost: a stretch of `window` reads with any miss in it waits about one
    # round trip, so the reads pay as if `exposed` of them missed (all of them where every read misses).
    exposed = main_exposure(to_main, window)
    stretch = exposed / to_main if to_main > 0 else 1.0  # how much longer a main-memory access waits
    # Bags with a lookup in the item's rows, weighted by the share of its reads that go to main memory.
    bags = r.samples * (1.0 - (1.0 - r.row_frac) ** table.pooling)
    terms = [
        Term("main_row_s", served * exposed, "lookup"),
        Term("main_bytes_per_s", served * exposed * rb, "lookup"),
        Term("main_bag_s", bags * exposed, "lookup"),
        Term("cache_row_s", from_cache, "lookup"),
        Term("cache_bytes_per_s", from_cache * rb, "lookup"),
        Term("scratch_bytes_per_s", served * rb, "lookup"),
    ]
    if from_local > 0:
        terms += [Term("local_row_s", from_local, "lookup"), Term("local_bytes_per_s", from_local * rb, "lookup")]
    if target.tlb is None:
        return terms
    rate = item_walks_per_lookup(table, r.indices, r.row_frac, target.tlb, stats.neighbour_pages)
    walks = served * rate
    # A walk whose line of page-table entries the core's own cache holds does not read the shared cache.
    local_walks = walks * private_walk_hit_ratio(table, r.indices, r.row_frac, target, stats.neighbour_bytes, rate)
    far_walks = walks - local_walks
    # A walk overlaps with the main-memory read of its row (pages and rows are hashed alike, so a walk's row
    # comes from main memory as often as any row); a walk for a cached row is paid in full.
    return terms + [
        Term("page_walk_s", walks * (1.0 - to_main), "lookup"),
        Term("page_walk_overlapped_s", walks * to_main, "lookup"),
        Term("page_walk_cache_s", far_walks, "lookup"),
        # A walk to main memory waits like a read from it: alone among hits, it is not overlapped.
        Term("page_walk_main_s", far_walks * (1.0 - stats.walk_hit_ratio) * stretch, "lookup"),
    ]


def _l1_terms(r: _Reads) -> list[Term]:
    rb, target = r.table.row_bytes, r.target
    hit = (
        private_hit_ratio(r.table, r.indices, r.row_frac, target, r.stats.neighbour_bytes)
        if target.local_is_cache
        else 1.0
    )
    from_local = r.served * hit
    from_cache = r.served - from_local  # a cache evicts the replica's rows to the shared cache
    terms = [Term("local_row_s", from_local, "lookup"), Term("local_bytes_per_s", from_local * rb, "lookup")]
    if from_cache > 0:
        terms += [Term("cache_row_s", from_cache, "lookup"), Term("cache_bytes_per_s", from_cache * rb, "lookup")]
    return terms


def _streamed_terms(r: _Reads) -> list[Term]:
    rb, served = r.table.row_bytes, r.served
    part_rows = r.shape.rows[1] - r.shape.rows[0]
    part_bytes = part_rows * rb
    chunks = math.ceil(part_rows / stream_chunk_rows(r.target.scratch.capacity_bytes, rb))
    # Chunks that hold at least one lookup (lookups spread over the chunks, rows being a random subset).
    touched = chunks * -math.expm1(-served / chunks)
    terms = [
        Term("stream_setup_s", 1.0, "stream"),
        Term("chunk_fixed_s", chunks, "stream"),
        Term("chunk_gather_s", touched, "lookup"),
    ]
    if r.shape.strategy is Strategy.L1_UB:
        terms.append(Term("stream_local_bytes_per_s", part_bytes, "stream"))
    else:
        resident = min(1.0, r.cache / r.table.bytes)
        terms += [
            Term("stream_main_bytes_per_s", part_bytes * (1.0 - resident), "stream"),
            Term("stream_cache_bytes_per_s", part_bytes * resident, "stream"),
        ]
    return terms + [Term("scratch_row_s", served, "lookup"), Term("scratch_bytes_per_s", served * rb, "lookup")]


def main_exposure(miss_ratio: float, window: float) -> float:
    """The share of a run of row reads that pays as a main-memory read, when `miss_ratio` of them miss the
    caches (independently) and a core overlaps the misses among `window` consecutive reads.

    The reads go in stretches of `window`; a stretch with at least one miss takes one main-memory round trip,
    which a stretch of misses only shares. So a stretch costs what `window` misses cost if any of its reads
    misses: the share is 1 - (1 - m)^window, which is m with window 1 (every miss overlaps with the others),
    1 where every read misses, and about window x m for rare misses. On this kind of machine, items of a
    512 MiB table whose reads hit a few hot rows with probability h take a main-memory time that falls as
    1 - h^W with W between 1.5 and 3.25, not as 1 - h (`benchmarks/hot_set_ladder.py`, docs/calibration.md)."""
    if miss_ratio <= 0.0:
        return 0.0
    return float(1.0 - (1.0 - min(1.0, miss_ratio)) ** window)


def evaluate(terms: list[Term], profile: CostProfile) -> CostBreakdown:
    sums = _sums(terms, profile)
    return CostBreakdown(
        fixed_s=sums["fixed"], lookup_s=sums["lookup"], stream_s=sums["stream"], combine_s=sums["combine"]
    )


def _sums(terms: list[Term], profile: CostProfile) -> dict[str, float]:
    sums: dict[str, float] = {"fixed": 0.0, "lookup": 0.0, "stream": 0.0, "combine": 0.0}
    per_unit = coefficients(profile)
    for term in terms:
        sums[term.category] += term.amount * per_unit[term.param]
    return sums


def coefficient(profile: CostProfile, param: str) -> float:
    """Seconds per unit of a term's amount: latencies as they are, bandwidths inverted."""
    value = float(getattr(profile, param))
    return 1.0 / value if param.endswith("_bytes_per_s") else value


_LAST_COEFFICIENTS: list[tuple[CostProfile, dict[str, float]]] = []  # the last profile asked about, held


def coefficients(profile: CostProfile) -> dict[str, float]:
    """`coefficient` of every parameter, computed once per profile: a large workload's options evaluate about
    a million items under one profile. Profiles are unhashable, so the last one is kept and matched by
    identity (holding it, so its id is not reused)."""
    if not _LAST_COEFFICIENTS or _LAST_COEFFICIENTS[0][0] is not profile:
        _LAST_COEFFICIENTS[:] = [(profile, {p: coefficient(profile, p) for p in CostProfile.parameter_names()})]
    return _LAST_COEFFICIENTS[0][1]


def item_cost(
    shape: ItemShape, table: TableSpec, stats: TableProfile, target: TargetSpec, profile: CostProfile
) -> CostBreakdown:
    return evaluate(item_terms(shape, table, stats, target, profile.main_window_rows), profile)


def item_seconds(
    shape: ItemShape, table: TableSpec, stats: TableProfile, target: TargetSpec, profile: CostProfile
) -> float:
    """`item_cost(...).total_s`, bit for bit, without building the breakdown (for callers that read millions)."""
    sums = _sums(item_terms(shape, table, stats, target, profile.main_window_rows), profile)
    return sums["fixed"] + sums["lookup"] + sums["stream"] + sums["combine"]


@lru_cache(maxsize=65536)
def _lru_hit_ratio(table: TableSpec, cache_rows: float) -> float:
    return table_histogram(table).lru_hit_ratio(cache_rows)


def private_hit_ratio(
    table: TableSpec, indices: float, row_frac: float, target: TargetSpec, neighbour_bytes: float
) -> float:
    """Fraction of an item's row reads that hit its core's local memory where that is a cache (0 elsewhere).

    The item reads `indices` draws (all of them filtered to its `row_frac` of the rows, a random subset) once
    per batch, while the core's other items read `neighbour_bytes` between two of its runs. Its rows stay in
    the cache from batch to batch only in the room the others leave: steady-state LRU hits (Che) in the
    capacity less their bytes. With no room left, it starts each run cold and hits only on rows it draws
    again within the run. It gets the better of the two."""
    if not target.local_is_cache:
        return 0.0
    capacity = target.local.capacity_bytes
    rows = capacity / table.row_bytes / row_frac  # the item's rows are a random subset: ranks of the whole table
    left = max(0.0, capacity - neighbour_bytes) / table.row_bytes / row_frac
    return _private_hit_ratio(table, float(indices), rows, left)


@lru_cache(maxsize=65536)
def _private_hit_ratio(table: TableSpec, draws: float, cache_rows: float, warm_rows: float) -> float:
    if draws <= 0:
        return 0.0
    hist = table_histogram(table)
    return max(hist.lru_hit_ratio(warm_rows), hist.cold_lru_hits(draws, cache_rows) / draws)


def private_walk_hit_ratio(
    table: TableSpec,
    indices: float,
    row_frac: float,
    target: TargetSpec,
    neighbour_bytes: float,
    rate: float | None = None,
) -> float:
    """Fraction of an item's page walks whose line of leaf page-table entries its core's local cache holds,
    where that is a cache and the target has a TLB (0 elsewhere).

    The lines compete with the item's rows for the cache (Che's approximation over both, as in
    `shared_cache_state`). Between two of its runs the core's other items read `neighbour_bytes`; the item
    gets the better of the steady state across batches in what they leave and a cold start within its own
    run. A table whose page tables fit in the core's cache beside its rows (tens of MiB with 4 KiB pages and
    a 1 MiB L2) thus walks without reading the shared cache; a table of GiBs walks to it or beyond.
    `rate` is the item's walks per lookup (default: the table's alone, `walks_per_lookup`)."""
    if not target.local_is_cache or target.tlb is None or indices <= 0:
        return 0.0
    if rate is None:
        rate = walks_per_lookup(table, target.tlb)
    if rate <= 0:
        return 0.0
    # In units of the whole table: the item's rows are a random subset (`row_frac`) of its ranks.
    capacity = target.local.capacity_bytes / row_frac
    return _private_walk_hit_ratio(
        table, float(indices), capacity, neighbour_bytes / row_frac, rate, rows_per_page_table_line(table, target.tlb)
    )


@lru_cache(maxsize=65536)
def _private_walk_hit_ratio(
    table: TableSpec, draws: float, capacity: float, neighbours: float, rate: float, per_line: int
) -> float:
    hist = table_histogram(table)

    def own(t: float) -> float:  # the item's rows and page-table lines touched in t draws
        return table.row_bytes * hist.expected_distinct(t) + LINE_BYTES * hist.touched_groups(t * rate, per_line)

    def fill_time(per_draw: float) -> float:  # draws after which the cache is full (inf: it never fills)
        if per_draw == 0 and table.bytes + LINE_BYTES * hist.rows / per_line <= capacity:
            return math.inf  # the whole table and its page tables fit
        return crossing(lambda t: own(t) + per_draw * t < capacity, max(1.0, draws), 40)[0]

    walks = draws * rate
    warm_t = fill_time(neighbours / draws)
    warm = 1.0 if math.isinf(warm_t) else 1.0 - hist.group_miss_ratio(warm_t * rate, per_line)
    cold_t = min(fill_time(0.0), draws)  # within one run, starting empty
    misses = hist.touched_groups(cold_t * rate, per_line) + (draws - cold_t) * rate * hist.group_miss_ratio(
        cold_t * rate, per_line
    )
    return max(warm, min(1.0, max(0.0, 1.0 - misses / walks)))


def footprint_bytes(table: TableSpec, rows: tuple[int, int], samples: tuple[int, int]) -> float:
    """Bytes one item reads per batch: its distinct rows (a random subset of ranks, thinned by its share of the
    rows), its indices and its pooled outputs."""
    indices = (samples[1] - samples[0]) * table.pooling
    row_frac = (rows[1] - rows[0]) / table.rows
    distinct = table_histogram(table).expected_distinct(indices) * row_frac
    return distinct * table.row_bytes + indices * INDEX_BYTES + (samples[1] - samples[0]) * table.dim * OUTPUT_BYTES


@lru_cache(maxsize=65536)
def _page_miss_ratio(table: TableSpec, rows_per_page: int, entries: int) -> float:
    return table_histogram(table).page_miss_ratio(rows_per_page, entries)


def walks_per_lookup(table: TableSpec, tlb: TLBSpec) -> float:
    """Page walks per row read of the table: the TLB's miss ratio times the pages one row spans."""
    rows_per_page, span = page_geometry(table, tlb)
    return span * _page_miss_ratio(table, rows_per_page, max(1, tlb.entries // span))


def page_geometry(table: TableSpec, tlb: TLBSpec) -> tuple[int, int]:
    """(rows per page, pages per row): rows share a page, or a row wider than a page spans several."""
    return max(1, tlb.page_bytes // table.row_bytes), math.ceil(table.row_bytes / tlb.page_bytes)


def footprint_pages(table: TableSpec, rows: tuple[int, int], samples: tuple[int, int], tlb: TLBSpec | None) -> float:
    """Pages one item touches per batch (translations it brings into its core's TLB); 0 without a TLB."""
    if tlb is None:
        return 0.0
    indices = (samples[1] - samples[0]) * table.pooling
    row_frac = (rows[1] - rows[0]) / table.rows
    rows_per_page, span = page_geometry(table, tlb)
    return table_histogram(table).touched_groups(indices, rows_per_page) * row_frac * span


def item_walks_per_lookup(
    table: TableSpec, indices: float, row_frac: float, tlb: TLBSpec, neighbour_pages: float
) -> float:
    """Page walks per row read of one item, whose core's other items touch `neighbour_pages` pages between
    two of its runs.

    Alone, the item keeps its translations from batch to batch: the table's steady-state miss ratio
    (`walks_per_lookup`). Beside neighbours, its translations stay only in the entries they leave; with none
    left it starts every run with a cold TLB, and walks once for every page it touches until its own pages
    fill the TLB, then at the steady-state ratio. It gets the better of the two, as rows do in the private
    cache (`private_hit_ratio`). The item's rows are a random subset (`row_frac`) of the table's ranks, so
    everything is counted in units of the whole table: the entries cover 1 / row_frac as many of its pages."""
    if indices <= 0:
        return 0.0
    rows_per_page, span = page_geometry(table, tlb)
    entries = tlb.entries / span / row_frac  # in rows of pages: a row that spans pages takes `span` entries
    left = max(0.0, tlb.entries - neighbour_pages) / span / row_frac
    return span * _item_page_miss_ratio(table, float(indices), rows_per_page, entries, left)


@lru_cache(maxsize=65536)
def _item_page_miss_ratio(table: TableSpec, draws: float, rows_per_page: int, entries: float, left: float) -> float:
    hist = table_histogram(table)
    warm = 1.0 if left < 1.0 else _page_miss_ratio(table, rows_per_page, int(left))
    if warm == 0.0 or left >= entries:
        return warm  # alone, a cold start misses at least as often: new pages only get rarer as a run goes on
    if hist.rows / rows_per_page <= entries:
        cold_t = draws  # its pages all fit: it never fills the TLB
    else:
        filled = crossing(lambda t: hist.touched_groups(t, rows_per_page) < entries, max(1.0, draws), 40)[1]
        cold_t = min(filled, draws)  # within one run, starting empty
    misses = hist.touched_groups(cold_t, rows_per_page)
    if draws > cold_t:
        misses += (draws - cold_t) * hist.group_miss_ratio(cold_t, rows_per_page)
    return min(warm, misses / draws)


def rows_per_page_table_line(table: TableSpec, tlb: TLBSpec) -> int:
    """Rows mapped by one cache line of leaf page-table entries."""
    return page_geometry(table, tlb)[0] * (LINE_BYTES // PTE_BYTES)


def table_histogram(table: TableSpec) -> RankHistogram:
    assert table.distribution is not None, "tables must be effective (distribution explicit)"
    return _histogram(table.distribution, table.rows)


@lru_cache(maxsize=4096)
def _histogram(distribution: AnyDistribution, rows: int) -> RankHistogram:
    return histogram(distribution, rows)


@dataclass(frozen=True)
class CacheState:
    """What the shared cache holds of one table in steady state."""

    share_bytes: float  # bytes of the table's rows
    walk_hit_ratio: float = 1.0  # fraction of its page walks that find their page-table line cached


def cache_shares(capacity: float, tables: tuple[TableSpec, ...] | list[TableSpec], batch_size: int) -> list[float]:
    """Bytes of each table's rows that a shared LRU cache of `capacity` bytes holds (no page tables)."""
    return [s.share_bytes for s in shared_cache_state(capacity, tables, batch_size)]


def shared_cache_state(
    capacity: float, tables: tuple[TableSpec, ...] | list[TableSpec], batch_size: int, tlb: TLBSpec | None = None
) -> list[CacheState]:
    """What a shared LRU cache of `capacity` bytes holds of each table in steady state.

    Che's approximation over all tables at once: a line stays cached for a characteristic time of T
    lookups (of all tables together) after its last use, so table t holds the distinct rows drawn in its
    share T * traffic_t / traffic of those lookups, and data used once per batch (the index batches and the
    pooled outputs) stays for exactly T lookups. With a `tlb`, every TLB miss also reads one line of the
    table's leaf page-table entries, cached like any other line; each line maps a group of hashed rows, and
    the walks are the table's lookups thinned by its TLB miss ratio. T is where the occupancies fill the
    cache:

        sum_t row_bytes_t * distinct_t(T * traffic_t / traffic)
          + sum_t LINE_BYTES * lines_touched_t(T * walks_t / traffic)
          + stream_bytes_per_lookup * T = capacity.

    A table with hot rows thus gets the part of the cache its hot rows earn, not a share in proportion to
    its traffic, and tables, page tables, indices and outputs evict each other as they do in the hardware.
    A walk misses at the rate new lines are touched at that time. `capacity` is the part of the
    cache this work can use: the profile's `cache_effective_fraction` of it (the rest serves other tenants
    of the cache)."""
    lookups = [float(batch_size * t.pooling) for t in tables]
    traffic = sum(lookups)
    if capacity <= 0 or traffic <= 0:
        return [CacheState(0.0, 0.0 if tlb else 1.0) for _ in tables]
    weights = [n / traffic for n in lookups]
    streamed = sum(n * INDEX_BYTES for n in lookups) + sum(batch_size * t.dim * OUTPUT_BYTES for t in tables)
    per_lookup = streamed / traffic
    hists = [table_histogram(t) for t in tables]
    # Per table: its page walks per lookup of all tables together, and the rows one page-table line maps.
    walkers = [
        (w * walks_per_lookup(t, tlb), rows_per_page_table_line(t, tlb)) if tlb else (0.0, 1)
        for t, w in zip(tables, weights, strict=True)
    ]

    def walk_hits(draws: float) -> list[float]:
        return [1.0 - h.group_miss_ratio(draws * r, k) if r else 1.0 for h, (r, k) in zip(hists, walkers, strict=True)]

    def occupancy(draws: float) -> list[float]:
        return [t.row_bytes * h.expected_distinct(draws * w) for t, h, w in zip(tables, hists, weights, strict=True)]

    def filled(draws: float) -> float:
        page_tables = sum(
            LINE_BYTES * h.touched_groups(draws * r, k) for h, (r, k) in zip(hists, walkers, strict=True) if r
        )
        return sum(occupancy(draws)) + page_tables + per_lookup * draws

    page_table_bytes = sum(LINE_BYTES * math.ceil(t.rows / k) for t, (r, k) in zip(tables, walkers, strict=True) if r)
    if sum(t.bytes for t in tables) + page_table_bytes + per_lookup * traffic <= capacity:
        return [CacheState(float(t.bytes)) for t in tables]  # everything of a batch stays
    lo, _ = crossing(lambda draws: filled(draws) < capacity, traffic, 50)
    return [CacheState(share, hit) for share, hit in zip(occupancy(lo), walk_hits(lo), strict=True)]


def together_cache_share(
    capacity: float, table: TableSpec, batch_size: int, tlb: TLBSpec | None, share: float
) -> float:
    """The bytes of `table`'s rows that the shared cache, in effect, holds while every core reads the table and
    no other (its parts on all cores, read together), given its batch-wide `share`.

    The table then has the cache to itself (`capacity` less its page tables and streams: its share when
    alone), but only for its own turn: the other tables' rows fill the cache when it starts. Counted as if
    the turn started cold (`RankHistogram.cold_lru_hits` over the batch's lookups of the table), or with what
    stayed from the last batch (`share`), whichever hits more; the result is the steady-state share with that
    hit ratio."""
    if share >= table.bytes:
        return share
    alone = shared_cache_state(capacity, [table], batch_size, tlb)[0].share_bytes
    hist = table_histogram(table)
    draws = float(batch_size * table.pooling)
    cold = hist.cold_lru_hits(draws, alone / table.row_bytes) / draws
    if cold <= hist.lru_hit_ratio(share / table.row_bytes):
        return share
    return max(share, hist.cache_rows_for(cold) * table.row_bytes)
