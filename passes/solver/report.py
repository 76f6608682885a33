"""The solver report a plan carries: objective, bound and gap in busy time (start-up excluded, added once when
the plan is emitted), kept in step with the plan and its bound as the passes improve them."""

from __future__ import annotations

from embmap.ir.module import Module
from embmap.ir.plan import SolverReport, WorkItem, relative_gap
from embmap.passes.solver.items import items_makespan_s


def cpsat_ran(report: SolverReport | None) -> bool:
    """Whether assign-cores ran CP-SAT, so that a gap left is worth the configuration LP's time."""
    return report is not None and report.method == "cpsat" and report.status != "NOT_SOLVED"


def reported_gap(objective_s: float, bound_s: float, start_s: float) -> float:
    """The gap a plan will report for a busy makespan and a bound in busy time: with the per-core start-up, which
    every plan pays once (the bar the passes hold a plan to is that gap)."""
    return relative_gap(objective_s + start_s, bound_s + start_s)


def plan_gap(module: Module) -> float:
    """The gap the module's plan will report (`reported_gap` of its solver report)."""
    assert module.solver is not None
    return module.solver.with_start_up(module.cost_profile.core_start_s).gap


def with_plan(module: Module, items: tuple[WorkItem, ...], bound_s: float, **solver: object) -> Module:
    """The module with `items` as its plan and `bound_s` as its bound (busy time); the solver report's objective,
    bound and gap follow, with the fields in `solver`. OPTIMAL becomes FEASIBLE where a gap is left: optimal
    among the plans CP-SAT saw, and beaten by others."""
    objective = items_makespan_s(items)
    update: dict[str, object] = {"items": items, "lower_bound_s": bound_s}
    if module.solver is not None:
        report = module.solver.updated(objective, bound_s, **solver)
        if report.status == "OPTIMAL" and report.gap > 0:
            report = report.model_copy(update={"status": "FEASIBLE"})
        update["solver"] = report
    return module.model_copy(update=update)


def with_bound(report: SolverReport, bound_s: float) -> SolverReport:
    """The report with its best bound raised to `bound_s` (busy time) if that is higher."""
    return report if bound_s <= report.best_bound_s else report.updated(report.objective_s, bound_s)
