"""`balance`: cut the samples of tables too long for one core unevenly over their parts, so that the cores'
loads level out (`solver.uneven`: the plan re-cut in place, and wrap-arounds). The fastest plan stands only if
it beats the equal-cut plan, so the pass never returns a slower plan; its bound then covers uneven cuts, and
the lines that bound them are recorded in the module (`Module.uneven_lines`) for `pack`."""

from __future__ import annotations

import dataclasses

from embmap.ir.module import Module
from embmap.passes.base import ModulePass, PassContext, register
from embmap.passes.solver.bounds import PATTERN_GAP, configuration_bound_s, uneven_lower_bound_s
from embmap.passes.solver.items import cut_unevenly, items_makespan_s
from embmap.passes.solver.report import cpsat_ran, reported_gap, with_plan
from embmap.passes.solver.uneven import splittable_tables, uneven_lines, uneven_plans


@register
@dataclasses.dataclass(frozen=True)
class BalancePass(ModulePass):
    """Re-cut the sample splits of tables too long for one core so that the loads level out; the plan's
    objective, bound and gap follow, and the bound covers the uneven cuts."""

    name = "balance"
    summary = "uneven sample cuts for tables too long for one core: level the cores' loads (linear programs)"
    requires = ("items", "options", "candidates")
    ensures = ("items",)

    def apply(self, module: Module, ctx: PassContext) -> Module:
        assert module.items is not None
        splittable = splittable_tables(module)
        if not splittable:
            return module
        lines = uneven_lines(module, splittable)
        bound = uneven_lower_bound_s(module, lines)
        items = min(uneven_plans(module, splittable, bound), key=items_makespan_s)  # the re-cut plan wins ties
        busy = items_makespan_s(items)
        if busy >= items_makespan_s(module.items) * (1 - 1e-9):
            return module  # equal cuts stand, with the bound and gap of plans with equal cuts
        # The plan now has uneven cuts: its bound must cover such plans too (verify checks it against the plan).
        # Where assign-cores ran CP-SAT and a gap is left, the configuration LP with the tables' pieces.
        if cpsat_ran(module.solver) and reported_gap(busy, bound, module.cost_profile.core_start_s) > PATTERN_GAP:
            bound = configuration_bound_s(module, bound, busy, lines)
        uneven = lines if cut_unevenly(module, items) else None
        return with_plan(module, items, bound).model_copy(update={"uneven_lines": uneven})
