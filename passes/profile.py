"""`profile`: per-table facts the cost model needs (bytes, lookups, distinct rows, shared-cache share)."""

from __future__ import annotations

import dataclasses

from embmap.cost_models.table_facts import table_profiles
from embmap.ir.module import Module
from embmap.passes.base import ModulePass, PassContext, register


@register
@dataclasses.dataclass(frozen=True)
class ProfilePass(ModulePass):
    name = "profile"
    summary = (
        "bytes, lookups and expected distinct rows per batch; what the shared cache holds of each table's rows "
        "and page tables, over the batch and while all cores read the table together; what a core's other work "
        "reads"
    )
    ensures = ("table_profiles",)

    def apply(self, module: Module, ctx: PassContext) -> Module:
        return module.model_copy(update={"table_profiles": table_profiles(module)})
