"""`assign-cores`: pick one option of each table's menu and the cores of its parts.

`cpsat` minimizes the makespan exactly (`solver.cpsat`), seeded with the greedy plan (or round-robin's, where
faster), and keeps whichever of its plan and the seeds is fastest in seconds, so a time limit never returns
worse than greedy; `greedy` is the greedy portfolio alone; `round-robin` deals whole tables to cores in turn.
With a previous placement on the module (re-planning), `cpsat` and `greedy` start from it and move at most
`max-moves` tables (`solver.replan`). The solver settings come from the pass context.
"""

from __future__ import annotations

import dataclasses
import enum

from embmap.ir.errors import InfeasibleError, PipelineError
from embmap.ir.module import Module
from embmap.ir.plan import SolverReport
from embmap.passes.base import ModulePass, PassContext, register
from embmap.passes.solver.bounds import PATTERN_GAP, configuration_bound_s, lower_bound_s
from embmap.passes.solver.cpsat import cpsat_boolean_limit, cpsat_booleans, solve
from embmap.passes.solver.errors import solver_failed
from embmap.passes.solver.greedy import greedy, round_robin
from embmap.passes.solver.items import build_items, fastest, makespan_s
from embmap.passes.solver.problem import TIME_UNIT_S, Assignment, AssignmentProblem, Choice
from embmap.passes.solver.progress import ProgressEvent, ProgressListener
from embmap.passes.solver.replan import Previous, move_report, previous_choices, replan_seeds, undo_needless_moves
from embmap.passes.solver.report import with_bound


class AssignMethod(enum.StrEnum):
    CPSAT = "cpsat"
    GREEDY = "greedy"
    ROUND_ROBIN = "round-robin"


@register
@dataclasses.dataclass(frozen=True)
class AssignCoresPass(ModulePass):
    """Pick one option per table and the cores of its parts; report the plan, its bound and its gap in busy
    time (start-up excluded). Above `cpsat_boolean_limit(time limit)` (table, option, core) booleans, `cpsat`
    does not build its model: the greedy plan stands, with status NOT_SOLVED and the gap to the lower bound.
    Where CP-SAT's plan is more than `PATTERN_GAP` above its bound, the configuration LP raises the bound."""

    name = "assign-cores"
    summary = "choose option and cores per table: CP-SAT makespan minimization (or greedy / round-robin)"
    requires = ("options",)
    ensures = ("items",)
    method: AssignMethod = AssignMethod.CPSAT
    max_moves: int | None = None

    def __post_init__(self) -> None:
        if self.max_moves is not None and self.max_moves < 0:
            raise ValueError("max-moves must be >= 0")

    def apply(self, module: Module, ctx: PassContext) -> Module:
        problem = AssignmentProblem.from_module(module)
        previous = self._previous(module)
        bound_s = lower_bound_s(module)  # the bound of `problem.lower_bound`, from unrounded costs
        assignment, report = self._place(module, problem, previous, ctx)
        if report is not None and report.gap > PATTERN_GAP:
            # Where CP-SAT's bound leaves a gap, the configuration LP, searched up to the plan's makespan.
            bound_s = configuration_bound_s(module, bound_s, makespan_s(module, assignment))
            report = with_bound(report, bound_s)
        if report is None:  # no solver ran: the plan against the bound
            report = SolverReport.of(
                self.method.value,
                "NOT_SOLVED",
                assignment.makespan(problem) * TIME_UNIT_S,
                problem.lower_bound * TIME_UNIT_S,
                0.0,
                options_considered=sum(len(o) for o in problem.options),
            )
        if previous is not None:
            report = report.model_copy(update={"moves": move_report(problem, assignment, previous, self.max_moves)})
        if ctx.progress is not None and report.method == "cpsat":
            ctx.progress(_done_event(report.with_start_up(module.cost_profile.core_start_s)))
        return module.model_copy(
            update={"items": build_items(module, assignment), "solver": report, "lower_bound_s": bound_s}
        )

    def _previous(self, module: Module) -> tuple[Choice | None, ...] | None:
        """The module's previous placement as choices of its menu, or None when not re-planning."""
        if module.previous is None:
            if self.max_moves is not None:
                raise PipelineError(
                    "assign-cores{max-moves}",
                    "bounds the moves from a previous plan, and none was given",
                    "compile with --previous OLD.plan.json, or drop max-moves",
                )
            return None
        if self.method is AssignMethod.ROUND_ROBIN:
            raise PipelineError(
                "assign-cores{method=round-robin}",
                "deals tables to cores in turn and cannot keep a previous plan's placement",
                "re-plan with the embmap or greedy pipeline",
            )
        return previous_choices(module)

    def _place(
        self, module: Module, problem: AssignmentProblem, previous: Previous | None, ctx: PassContext
    ) -> tuple[Assignment, SolverReport | None]:
        """The plan of the pass's method, and the solver's report where CP-SAT ran."""
        if self.method is AssignMethod.ROUND_ROBIN:
            return round_robin(problem), None
        if self.method is AssignMethod.GREEDY:
            return greedy(problem) if previous is None else replan_seeds(problem, previous, self.max_moves)[0], None
        too_big = cpsat_booleans(problem) > cpsat_boolean_limit(ctx.solver.time_limit_s)
        try:
            seeds = _seeds(problem) if previous is None else replan_seeds(problem, previous, self.max_moves)
        except InfeasibleError:
            if too_big:
                raise  # and no solver to find a packing either
            seeds = []  # greedy found no packing; the solver may still find one, or prove none exists
        if too_big:  # the fastest seed stands, reported NOT_SOLVED
            return fastest(module, seeds, previous), None
        return self._solve(module, problem, seeds, previous, ctx)

    def _solve(
        self,
        module: Module,
        problem: AssignmentProblem,
        seeds: list[Assignment],
        previous: Previous | None,
        ctx: PassContext,
    ) -> tuple[Assignment, SolverReport]:
        """CP-SAT from the first seed; the result is the fastest in seconds of its plan and the seeds (so embmap
        is never predicted slower than greedy or round-robin); when re-planning, of equally fast plans the one
        that moves fewer tables."""
        seed_plan = seeds[0] if seeds else None
        listener = _with_start_up(ctx.progress, module.cost_profile.core_start_s)
        result = solve(
            problem, ctx.solver, hint=seed_plan, previous=previous, max_moves=self.max_moves, listener=listener
        )
        chosen = result.assignment
        if chosen is not None and previous is not None:
            chosen = undo_needless_moves(problem, chosen, previous)
        if seed_plan is not None and (chosen is None or chosen.makespan(problem) > seed_plan.makespan(problem)):
            chosen = seed_plan  # no better solution in time: the greedy plan stands
        if chosen is None:
            max_moves = self.max_moves if previous else None
            raise solver_failed(problem, result.status, ctx.solver.time_limit_s, max_moves)
        chosen = fastest(module, [chosen, *seeds], previous)
        objective = chosen.makespan(problem)
        report = SolverReport.of(
            "cpsat",
            result.status,  # type: ignore[arg-type]
            objective * TIME_UNIT_S,
            min(result.best_bound_units, objective) * TIME_UNIT_S,
            result.wall_s,
            workers=ctx.solver.workers,
            seed=ctx.solver.seed,
            time_limit_s=ctx.solver.time_limit_s,
            hint_objective_s=None if seed_plan is None else seed_plan.makespan(problem) * TIME_UNIT_S,
            options_considered=sum(len(o) for o in problem.options),
            interrupted=result.interrupted,
        )
        return chosen, report


def _seeds(problem: AssignmentProblem) -> list[Assignment]:
    """The greedy plan and, where it fits, the round-robin plan; the better (in the integer model) first."""
    greedy_plan = greedy(problem)
    try:
        rr = round_robin(problem)
    except InfeasibleError:
        return [greedy_plan]
    return [rr, greedy_plan] if rr.makespan(problem) < greedy_plan.makespan(problem) else [greedy_plan, rr]


def _with_start_up(listener: ProgressListener | None, start_s: float) -> ProgressListener | None:
    """The listener, fed objective and bound with the per-core start-up added, as the plan will have them."""
    if listener is None:
        return None
    return lambda event: listener(event.shifted(start_s))


def _done_event(report: SolverReport) -> ProgressEvent:
    return ProgressEvent(
        "done", report.wall_s, report.objective_s, report.best_bound_s, report.status, report.interrupted
    )
