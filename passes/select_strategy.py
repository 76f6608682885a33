"""`select-strategy`: what each whole table costs on one core with each lookup strategy, and whether it fits
the local buffer (the candidates `partition` builds its menus from)."""

from __future__ import annotations

import dataclasses

from embmap.cost_models.analytic import ItemShape, item_cost
from embmap.ir.module import Module, StrategyCandidate, TableCandidates
from embmap.ir.plan import Strategy
from embmap.passes.base import ModulePass, PassContext, register

ALL_STRATEGIES = tuple(Strategy)


@register
@dataclasses.dataclass(frozen=True)
class SelectStrategyPass(ModulePass):
    """Cost every allowed strategy for each whole table on one core, and whether it fits the local buffer."""

    name = "select-strategy"
    summary = "cost of each lookup strategy (GM, L1, GM-UB, L1-UB) per table on one core, and local-buffer fit"
    requires = ("table_profiles",)
    ensures = ("candidates",)
    strategies: tuple[Strategy, ...] = ALL_STRATEGIES

    def __post_init__(self) -> None:
        if not self.strategies:
            raise ValueError("strategies: name at least one of GM, L1, GM-UB, L1-UB")

    def apply(self, module: Module, ctx: PassContext) -> Module:
        batch = module.workload.batch_size
        cands = []
        for t in module.workload.tables:
            stats = module.table_profile(t.name)
            candidates = tuple(
                StrategyCandidate(
                    strategy=s,
                    fits_local=t.bytes <= module.target.local.capacity_bytes,
                    cost=item_cost(ItemShape(s, (0, t.rows), (0, batch)), t, stats, module.target, module.cost_profile),
                )
                for s in self.strategies
            )
            cands.append(TableCandidates(table=t.name, candidates=candidates))
        return module.model_copy(update={"candidates": tuple(cands)})
