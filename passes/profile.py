"""`profile`: per-table facts the cost model needs (bytes, lookups, distinct rows, shared-cache share)."""

from __future__ import annotations

import dataclasses

from cost_models.analytic import table_histogram
from ir.module import Module, TableProfile
from passes.base import ModulePass, register


@register
@dataclasses.dataclass(frozen=True)
class ProfilePass(ModulePass):
    name = "profile"
    summary = "bytes, lookups and expected distinct rows per batch; each table's share of the shared cache"
    ensures = ("table_profiles",)

    def apply(self, module: Module) -> Module:
        tables = module.workload.tables
        batch = module.workload.batch_size
        lookups = [batch * t.pooling for t in tables]
        cache = module.target.shared_cache.capacity_bytes if module.target.shared_cache else 0
        shares = cache_shares(cache, [float(n) for n in lookups], [float(t.bytes) for t in tables])
        profiles = tuple(
            TableProfile(
                table=t.name,
                bytes=t.bytes,
                lookups_per_batch=n,
                distinct_rows_per_batch=table_histogram(t).expected_distinct(n),
                cache_share_bytes=share,
            )
            for t, n, share in zip(tables, lookups, shares, strict=True)
        )
        return module.model_copy(update={"table_profiles": profiles})


def cache_shares(capacity: float, traffic: list[float], sizes: list[float]) -> list[float]:
    """Split a shared cache among tables in proportion to their traffic (an LRU-like steady state), never
    giving a table more than its own size: water-filling, so what a small table cannot use goes to the rest."""
    shares = [0.0] * len(sizes)
    open_tables = set(range(len(sizes)))
    left = capacity
    while open_tables and left > 1e-9:
        weight = sum(traffic[i] for i in open_tables)
        if weight <= 0:
            break
        full = [i for i in open_tables if sizes[i] - shares[i] <= left * traffic[i] / weight]
        if not full:
            for i in open_tables:
                shares[i] += left * traffic[i] / weight
            break
        for i in full:
            left -= sizes[i] - shares[i]
            shares[i] = sizes[i]
            open_tables.discard(i)
    return shares
