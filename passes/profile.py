"""`profile`: per-table facts the cost model needs (bytes, lookups, distinct rows, shared-cache share)."""

from __future__ import annotations

import dataclasses

from cost_models.analytic import shared_cache_state, table_histogram
from ir.module import Module, TableProfile
from passes.base import ModulePass, register


@register
@dataclasses.dataclass(frozen=True)
class ProfilePass(ModulePass):
    name = "profile"
    summary = "bytes, lookups and expected distinct rows per batch; what the shared cache holds of each table's rows and page tables"
    ensures = ("table_profiles",)

    def apply(self, module: Module) -> Module:
        tables = module.workload.tables
        batch = module.workload.batch_size
        lookups = [batch * t.pooling for t in tables]
        cache = module.target.shared_cache.capacity_bytes if module.target.shared_cache else 0
        fraction = module.cost_profile.cache_effective_fraction
        states = shared_cache_state(cache * fraction, tables, batch, module.target.tlb)
        profiles = tuple(
            TableProfile(
                table=t.name,
                bytes=t.bytes,
                lookups_per_batch=n,
                distinct_rows_per_batch=table_histogram(t).expected_distinct(n),
                cache_share_bytes=state.share_bytes,
                walk_hit_ratio=state.walk_hit_ratio,
            )
            for t, n, state in zip(tables, lookups, states, strict=True)
        )
        return module.model_copy(update={"table_profiles": profiles})
