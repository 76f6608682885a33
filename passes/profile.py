"""`profile`: per-table facts the cost model needs (bytes, lookups, distinct rows, shared-cache share)."""

from __future__ import annotations

import dataclasses

from cost_models.analytic import cache_shares, table_histogram
from ir.module import Module, TableProfile
from passes.base import ModulePass, register


@register
@dataclasses.dataclass(frozen=True)
class ProfilePass(ModulePass):
    name = "profile"
    summary = "bytes, lookups and expected distinct rows per batch; each table's steady-state share of the shared cache"
    ensures = ("table_profiles",)

    def apply(self, module: Module) -> Module:
        tables = module.workload.tables
        batch = module.workload.batch_size
        lookups = [batch * t.pooling for t in tables]
        cache = module.target.shared_cache.capacity_bytes if module.target.shared_cache else 0
        shares = cache_shares(cache * module.cost_profile.cache_effective_fraction, tables, batch)
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
