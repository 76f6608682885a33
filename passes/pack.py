"""`pack`: where a plan is still more than `PACK_GAP` above its bound after `assign-cores` and `balance`, the
configuration LP with the local buffers in its patterns for a higher bound (`solver.bounds`), then the pattern
dive for a faster plan (`solver.dive`). It comes last because it costs seconds, and uneven cuts often close the
gap for less."""

from __future__ import annotations

import dataclasses
import math

from embmap.ir.module import Module
from embmap.passes.base import ModulePass, PassContext, register
from embmap.passes.solver.bounds import configuration_bound_s
from embmap.passes.solver.dive import pack
from embmap.passes.solver.items import build_items, items_makespan_s
from embmap.passes.solver.problem import TIME_UNIT_S, AssignmentProblem
from embmap.passes.solver.report import cpsat_ran, plan_gap, with_plan

# Where a plan is more than this above its bound (the gap it reports, start-up included: the bar a plan is held
# to), `pack` runs: up to tens of seconds on a tight packing, so not for plans already this close.
PACK_GAP = 0.01


@register
@dataclasses.dataclass(frozen=True)
class PackPass(ModulePass):
    """Where the plan is still more than `PACK_GAP` above its bound after CP-SAT and `balance`: the configuration
    LP with the local buffers in its patterns for a higher bound, then the pattern dive for a faster plan (equal
    cuts), which replaces the plan where it is faster in seconds. The bound covers uneven cuts where the plan
    has them (`Module.uneven_lines`). Not when re-planning (the dive would move every table), nor where CP-SAT
    did not run."""

    name = "pack"
    summary = "where a plan is over 1% from its bound: configuration LP with the local buffers, pattern dive"
    requires = ("items", "options")
    ensures = ("items",)

    def apply(self, module: Module, ctx: PassContext) -> Module:
        assert module.items is not None and module.lower_bound_s is not None
        if not cpsat_ran(module.solver) or plan_gap(module) <= PACK_GAP or module.previous is not None:
            return module
        busy = items_makespan_s(module.items)
        lines = module.uneven_lines or ()
        bound = configuration_bound_s(module, module.lower_bound_s, busy, lines, buffers=True)
        problem = AssignmentProblem.from_module(module)
        # A plan of at most `goal` units (busy time) reports a gap within PACK_GAP of the bound.
        start = module.cost_profile.core_start_s
        goal = math.floor(((bound + start) / (1 - PACK_GAP) - start) / TIME_UNIT_S)
        packed = pack(problem, math.floor(bound / TIME_UNIT_S), math.ceil(busy / TIME_UNIT_S) + 1, goal=goal)
        if packed is None:
            return with_plan(module, module.items, bound)
        packed_s = packed.makespan(problem) * TIME_UNIT_S
        candidate = build_items(module, packed)
        if items_makespan_s(candidate) >= busy:
            return with_plan(module, module.items, bound, packed_objective_s=packed_s)
        return with_plan(module, candidate, bound, packed_objective_s=packed_s).model_copy(
            update={"uneven_lines": None}  # the dive's cuts are equal
        )
