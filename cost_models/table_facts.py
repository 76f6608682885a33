"""The per-table facts the cost model reads before any placement: bytes, lookups and expected distinct rows per
batch, what the shared cache holds of each table's rows and page tables over the batch and while all cores read
the table together, and what a core's other work reads. The `profile` pass records them; a pass that must
price a changed workload (partition's row-cap check) computes them again here."""

from __future__ import annotations

from embmap.cost_models.analytic import (
    footprint_bytes,
    footprint_pages,
    shared_cache_state,
    table_histogram,
    together_cache_share,
)
from embmap.ir.module import Module, TableProfile


def table_profiles(module: Module) -> tuple[TableProfile, ...]:
    tables = module.workload.tables
    batch = module.workload.batch_size
    lookups = [batch * t.pooling for t in tables]
    cache = module.target.shared_cache.capacity_bytes if module.target.shared_cache else 0
    fraction = module.cost_profile.cache_effective_fraction
    states = shared_cache_state(cache * fraction, tables, batch, module.target.tlb)
    # While all cores read one table's parts together (the `schedule` pass), it has the cache to
    # itself for that turn.
    together_shares = [
        together_cache_share(cache * fraction, t, batch, module.target.tlb, state.share_bytes)
        if module.target.cores > 1
        else state.share_bytes
        for t, state in zip(tables, states, strict=True)
    ]
    # Before placement, which tables share a core is not known: each core is taken to read an even share
    # of the other tables' bytes (every table's whole batch, all of its rows).
    footprints = [footprint_bytes(t, (0, t.rows), (0, batch)) for t in tables]
    pages = [footprint_pages(t, (0, t.rows), (0, batch), module.target.tlb) for t in tables]
    total, total_pages, cores = sum(footprints), sum(pages), module.target.cores
    profiles = tuple(
        TableProfile(
            table=t.name,
            bytes=t.bytes,
            lookups_per_batch=n,
            distinct_rows_per_batch=table_histogram(t).expected_distinct(n),
            cache_share_bytes=state.share_bytes,
            walk_hit_ratio=state.walk_hit_ratio,
            neighbour_bytes=(total - own) / cores,
            neighbour_pages=(total_pages - own_pages) / cores,
            together_share_bytes=together,
        )
        for t, n, state, together, own, own_pages in zip(
            tables, lookups, states, together_shares, footprints, pages, strict=True
        )
    )
    return profiles
