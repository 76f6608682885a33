"""`assign-cores`, `schedule` and `verify`: choose and place each table's parts, order each core's work."""

from __future__ import annotations

import dataclasses
import enum
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

from embmap.ir.errors import InfeasibleError, PipelineError
from embmap.ir.module import Module, reads_together, split_range
from embmap.ir.plan import CoreSchedule, PartitionMode, SolverReport, WorkItem
from embmap.ir.verify import verify_module
from embmap.passes.assignment import (
    TIME_UNIT_S,
    Assignment,
    AssignmentProblem,
    Choice,
    capacity_error,
    choice_lower_bound,
    greedy,
    lower_bound_units,
    round_robin,
)
from embmap.passes.base import NOT_AN_OPTION, ModulePass, register
from embmap.passes.bounds import dff_lower_bound
from embmap.passes.cpsat import DEFAULT_TIME_LIMIT_S, SolverParams, solve
from embmap.passes.patterns import PatternMenu, pattern_lower_bound
from embmap.passes.progress import ProgressEvent, ProgressListener
from embmap.passes.replan import move_report, moves, previous_choices, replan_seeds, undo_needless_moves

# CP-SAT's model has a boolean per (table, option, core). Measured on ascend910 with a 10 s limit and 1 worker,
# models above about 40,000 booleans end no better than their greedy hint, after 14 s (100 tables x 32 cores,
# 47,000 booleans), 21 s (200 x 32, 121,000) and 24-35 s (100 x 128, 186,000; 500 x 32, 347,000) of building
# and searching; the built-in workloads have 12,000-23,000 and CP-SAT improves or proves their plans. So the
# cpsat method builds its model only up to `cpsat_boolean_limit(time_limit)` booleans, which grows with the time
# given; above it the greedy plan (and local search) stands, reported NOT_SOLVED with its gap.
MIN_CPSAT_BOOLEANS = 40_000
CPSAT_BOOLEANS_PER_S = 4_000


# Where the plan's gap after CP-SAT is above this, the configuration LP (passes/patterns.py) is tried for a
# higher bound; below it, the LP's cost (up to a second) buys little. The `pack` pass does more where a plan
# is still over 1% from its bound (passes/packing.py).
PATTERN_GAP = 0.002


def cpsat_boolean_limit(time_limit: float) -> int:
    """The largest CP-SAT model (in booleans) the cpsat method builds for a time limit of `time_limit` s."""
    return max(MIN_CPSAT_BOOLEANS, int(CPSAT_BOOLEANS_PER_S * time_limit))


def cpsat_booleans(problem: AssignmentProblem) -> int:
    """The (table, option, core) booleans of the CP-SAT model, counting every option."""
    return problem.cores * sum(len(opts) for opts in problem.options)


class AssignMethod(enum.StrEnum):
    CPSAT = "cpsat"
    GREEDY = "greedy"
    ROUND_ROBIN = "round-robin"


@register
@dataclasses.dataclass(frozen=True)
class AssignCoresPass(ModulePass):
    """Pick one option per table and the cores of its parts. Objective, bounds and the lower bound include the
    profile's per-core start-up (a constant: every plan pays it once on its slowest core). `cpsat` minimizes the makespan exactly (greedy
    plan as hint and as fallback, so a time limit never returns worse than greedy); `greedy` is LPT;
    `round-robin` deals whole tables to cores in turn. With a previous placement on the module (re-planning),
    `cpsat` and `greedy` start from it and move at most `max-moves` tables (passes/replan.py). Above
    `cpsat_boolean_limit(time-limit)` (table, option, core) booleans, `cpsat` does not build its model: the
    greedy plan stands, with status NOT_SOLVED and the gap to the lower bound. Where CP-SAT's plan is more than
    `PATTERN_GAP` above that bound, the configuration LP (time alone) raises it."""

    name = "assign-cores"
    summary = "choose option and cores per table: CP-SAT makespan minimization (or greedy / round-robin)"
    requires = ("options",)
    ensures = ("items",)
    method: AssignMethod = AssignMethod.CPSAT
    time_limit: float = DEFAULT_TIME_LIMIT_S
    workers: int = 1
    seed: int = 0
    relative_gap: float = 0.0
    max_moves: int | None = None
    # Sees the search's progress, in seconds of makespan as in the plan's solver report (start-up included).
    progress: ProgressListener | None = dataclasses.field(
        default=None, compare=False, repr=False, metadata=NOT_AN_OPTION
    )

    def __post_init__(self) -> None:
        if self.time_limit <= 0:
            raise ValueError("time-limit must be > 0 seconds")
        if self.workers < 1:
            raise ValueError("workers must be >= 1")
        if not 0.0 <= self.relative_gap < 1.0:
            raise ValueError("relative-gap must be in [0, 1)")
        if self.max_moves is not None and self.max_moves < 0:
            raise ValueError("max-moves must be >= 0")

    def apply(self, module: Module) -> Module:
        problem = AssignmentProblem.from_module(module)
        lb_units = lower_bound_units(problem)
        bound_s = lower_bound_s(module)  # the same bound in seconds, from unrounded costs
        previous = self._previous(module)
        if self.method is AssignMethod.ROUND_ROBIN:
            assignment, report = round_robin(problem), None
        elif self.method is AssignMethod.GREEDY:
            assignment = greedy(problem) if previous is None else replan_seeds(problem, previous, self.max_moves)[0]
            report = None
        else:
            too_big = cpsat_booleans(problem) > cpsat_boolean_limit(self.time_limit)
            try:
                seeds = (
                    _seeds(problem, greedy(problem))
                    if previous is None
                    else replan_seeds(problem, previous, self.max_moves)
                )
            except InfeasibleError:
                if too_big:
                    raise  # and no solver to find a packing either
                seeds = []  # greedy found no packing; the solver may still find one, or prove none exists
            if too_big:  # the fastest seed stands, reported NOT_SOLVED
                assignment, report = _fastest(module, seeds, previous), None
            else:
                assignment, report = self._solve(module, problem, seeds, previous)
                # Where CP-SAT's bound leaves a gap, the configuration LP, searched up to the plan's makespan.
                if report.gap > PATTERN_GAP:
                    bound_s = configuration_bound_s(module, bound_s, _makespan_s(module, assignment))
                    report = _with_bound(report, bound_s)
        if report is None:
            span = assignment.makespan(problem)
            report = SolverReport(
                method=self.method.value,
                status="NOT_SOLVED",
                objective_s=span * TIME_UNIT_S,
                best_bound_s=lb_units * TIME_UNIT_S,
                gap=_gap(span, lb_units),
                wall_s=0.0,
                options_considered=sum(len(o) for o in problem.options),
            )
        if previous is not None:
            report = report.model_copy(update={"moves": move_report(problem, assignment, previous, self.max_moves)})
        items = build_items(module, assignment)
        start = module.cost_profile.core_start_s
        lb_s = bound_s + start
        report = _shifted(report, start)
        if self.progress is not None and report.method == "cpsat":
            self.progress(_done_event(report))
        return module.model_copy(update={"items": items, "solver": report, "lower_bound_s": lb_s})

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

    def _solve(
        self,
        module: Module,
        problem: AssignmentProblem,
        seeds: list[Assignment],
        previous: tuple[Choice | None, ...] | None = None,
    ) -> tuple[Assignment, SolverReport]:
        """CP-SAT from the first seed; the result is the fastest in seconds of its plan and the seeds."""
        params = SolverParams(self.time_limit, self.workers, self.seed, self.relative_gap)
        seed_plan = seeds[0] if seeds else None
        result = solve(
            problem,
            params,
            hint=seed_plan,
            previous=previous,
            max_moves=self.max_moves,
            listener=_with_start_up(self.progress, module.cost_profile.core_start_s),
        )
        hint_units = seed_plan.makespan(problem) if seed_plan else None
        chosen = result.assignment
        if chosen is not None and previous is not None:
            chosen = undo_needless_moves(problem, chosen, previous)
        if seed_plan is not None and (chosen is None or chosen.makespan(problem) > seed_plan.makespan(problem)):
            chosen = seed_plan  # no better solution in time: the greedy plan stands
        if chosen is None:
            raise _infeasible(problem, result.status, self.time_limit, self.max_moves if previous else None)
        # The integer model rounds and charges every part of an option its costliest part's time, so plans
        # of equal objective can differ in seconds: keep whichever of the solver's plan and the seeds is
        # fastest in seconds (so embmap is never predicted slower than greedy or round-robin). When re-planning,
        # of equally fast plans (to a picosecond) the one that moves fewer tables.
        chosen = _fastest(module, [chosen, *seeds], previous)
        objective = chosen.makespan(problem)
        bound = min(result.best_bound_units, objective)
        report = SolverReport(
            method="cpsat",
            status=result.status,  # type: ignore[arg-type]
            objective_s=objective * TIME_UNIT_S,
            best_bound_s=bound * TIME_UNIT_S,
            gap=_gap(objective, bound),
            wall_s=result.wall_s,
            workers=self.workers,
            seed=self.seed,
            time_limit_s=self.time_limit,
            hint_objective_s=None if hint_units is None else hint_units * TIME_UNIT_S,
            options_considered=sum(len(o) for o in problem.options),
            interrupted=result.interrupted,
        )
        return chosen, report


def _gap(objective: float, bound: float) -> float:
    """(objective - bound) / objective, at least 0 (and 0 for an empty plan)."""
    return max(0.0, (objective - bound) / objective) if objective else 0.0


def cpsat_ran(report: SolverReport | None) -> bool:
    """Whether assign-cores ran CP-SAT, so that a gap left is worth the configuration LP's time."""
    return report is not None and report.method == "cpsat" and report.status != "NOT_SOLVED"


def with_plan(module: Module, items: tuple[WorkItem, ...], bound_s: float, **solver: object) -> Module:
    """The module with `items` as its plan and `bound_s` (start-up excluded) as its bound; the solver report's
    objective, bound and gap follow, with the fields in `solver`. OPTIMAL becomes FEASIBLE where a gap is
    left: optimal among the plans CP-SAT saw, and beaten by others."""
    start = module.cost_profile.core_start_s
    objective, bound = items_makespan_s(items) + start, bound_s + start
    update: dict[str, object] = {"items": items, "lower_bound_s": bound}
    if module.solver is not None:
        gap = _gap(objective, bound)
        status = "FEASIBLE" if module.solver.status == "OPTIMAL" and gap > 0 else module.solver.status
        update["solver"] = module.solver.model_copy(
            update={"objective_s": objective, "best_bound_s": bound, "gap": gap, "status": status, **solver}
        )
    return module.model_copy(update=update)


def _with_bound(report: SolverReport, bound_s: float) -> SolverReport:
    """The report with its best bound raised to `bound_s` (seconds, start-up excluded) if that is higher."""
    if bound_s <= report.best_bound_s:
        return report
    gap = _gap(report.objective_s, bound_s)
    return report.model_copy(update={"best_bound_s": bound_s, "gap": gap})


def _fastest(module: Module, plans: list[Assignment], previous: tuple[Choice | None, ...] | None) -> Assignment:
    """The plan fastest in seconds; when re-planning, of equally fast plans (to a picosecond) the one that moves
    fewer tables."""
    if previous is None:
        return min(plans, key=lambda a: _makespan_s(module, a))
    return min(plans, key=lambda a: (round(_makespan_s(module, a), 12), moves(a, previous)))


def _with_start_up(listener: ProgressListener | None, start_s: float) -> ProgressListener | None:
    """The listener, fed objective and bound with the per-core start-up added, as the report will have them."""
    if listener is None:
        return None
    return lambda event: listener(event.shifted(start_s))


def _done_event(report: SolverReport) -> ProgressEvent:
    return ProgressEvent(
        "done", report.wall_s, report.objective_s, report.best_bound_s, report.status, report.interrupted
    )


def _shifted(report: SolverReport, start_s: float) -> SolverReport:
    """The report with the per-core start-up added to objective and bounds (the gap follows)."""
    objective, bound = report.objective_s + start_s, report.best_bound_s + start_s
    return report.model_copy(
        update={
            "objective_s": objective,
            "best_bound_s": bound,
            "gap": _gap(objective, bound),
            "hint_objective_s": None if report.hint_objective_s is None else report.hint_objective_s + start_s,
            "packed_objective_s": None if report.packed_objective_s is None else report.packed_objective_s + start_s,
        }
    )


def _infeasible(
    problem: AssignmentProblem, status: str, time_limit: float, max_moves: int | None = None
) -> InfeasibleError:
    if status == "INFEASIBLE" and max_moves is not None:
        return InfeasibleError(
            "assign-cores{max-moves}",
            f"no placement moves at most {max_moves} tables (CP-SAT proved it)",
            f"raise --max-moves above {max_moves}, or compile without --previous",
        )
    if status == "INFEASIBLE":
        return capacity_error(problem, "no placement exists (CP-SAT proved it)")
    return InfeasibleError(
        "assign-cores",
        f"no placement found within {time_limit:g} s (solver status {status}) and the greedy placement failed",
        f"raise assign-cores{{time-limit}} above {time_limit:g}, e.g. assign-cores{{time-limit={time_limit * 10:g}}}",
    )


def _makespan_s(module: Module, assignment: Assignment) -> float:
    return items_makespan_s(build_items(module, assignment))


def items_makespan_s(items: Iterable[WorkItem]) -> float:
    """The largest core's busy time: the sum of its items' times (start-up excluded)."""
    busy: dict[int, float] = {}
    for it in items:
        busy[it.core] = busy.get(it.core, 0.0) + it.cost.total_s
    return max(busy.values(), default=0.0)


def _seeds(problem: AssignmentProblem, greedy_plan: Assignment) -> list[Assignment]:
    """The greedy plan and, where it fits, the round-robin plan; the better (in the integer model) first."""
    try:
        rr = round_robin(problem)
    except InfeasibleError:
        return [greedy_plan]
    return [rr, greedy_plan] if rr.makespan(problem) < greedy_plan.makespan(problem) else [greedy_plan, rr]


class FlexibleOption(NamedTuple):
    """An option whose parts may be cut to any sizes, as a bound sees it (seconds): `parts` parts doing at
    least `work_s` in all, the largest at least `largest_s`, each at least `least_s`; `held_bytes` in all."""

    parts: int
    largest_s: float
    work_s: float
    least_s: float
    held_bytes: int


def lower_bound_s(
    module: Module, *, buffers: bool = True, flexible: Mapping[str, Sequence[FlexibleOption]] | None = None
) -> float:
    """The same bound as `lower_bound_units`, from exact (unrounded) costs in seconds; without `buffers`, the
    bound as if the local buffers were unlimited (to show what they add). `flexible` adds, per table, options
    whose parts may be cut to any sizes: the work bound sees them as they are, the bin-packing bound with their
    work under the identity and their parts at the least sizes they can have under every other function."""
    assert module.options is not None
    extra = flexible or {}
    menus, sizes, held, least = [], [], [], []
    for m in module.options:
        more = extra.get(m.table, ())
        menus.append([(o.part_s, o.work_s) for o in m.options] + [(f.largest_s, f.work_s) for f in more])
        # The bin-packing bound on part sizes rounded down to whole units (smaller parts only weaken it).
        sizes.append(
            [(o.parts, math.floor(o.least_part_s / TIME_UNIT_S)) for o in m.options]
            + [(f.parts, math.floor(max(0.0, f.work_s / f.parts) / TIME_UNIT_S)) for f in more]
        )
        held.append([sum(o.local_bytes_per_part) for o in m.options] + [f.held_bytes for f in more])
        least.append([None] * len(m.options) + [math.floor(max(0.0, f.least_s) / TIME_UNIT_S) for f in more])
    work = choice_lower_bound(menus, module.target.cores)
    packed, _ = dff_lower_bound(
        sizes,
        module.target.cores,
        math.floor(work / TIME_UNIT_S),
        held=held if buffers else None,
        capacity_bytes=module.target.local.capacity_bytes,
        flexible=least if extra else None,
    )
    return max(work, packed * TIME_UNIT_S)


def configuration_bound_s(
    module: Module,
    known_s: float,
    busy_s: float,
    lines: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    buffers: bool = False,
) -> float:
    """The configuration LP's bound in seconds (start-up excluded), searched from `known_s` (a bound already
    proven for the same plans) up to `busy_s` (a plan's makespan). `lines` and `buffers` as for
    `pattern_bound_units` (with the buffers a round costs about ten times more)."""
    upper = math.floor(busy_s / TIME_UNIT_S)
    return max(known_s, pattern_bound_units(module, known_s, upper, lines, buffers) * TIME_UNIT_S)


def pattern_bound_units(
    module: Module,
    known_s: float,
    upper_units: int,
    lines: Mapping[str, Sequence[tuple[float, float]]] | None = None,
    buffers: bool = False,
) -> int:
    """The configuration LP's bound (`passes.patterns`) in units, searched from `known_s` (a bound already
    proven for the same plans) up to `upper_units` (a plan's makespan): parts at their least sizes (and with
    `buffers`, least local bytes, which the patterns must fit in the local buffer), and per table in `lines`
    the lines (a, b) in seconds under the time of a part of n samples, for the tables that may be cut unevenly
    (the bound then covers such cuts)."""
    assert module.options is not None
    extra = lines or {}
    menus = [
        PatternMenu(
            options=tuple((o.parts, math.floor(o.least_part_s / TIME_UNIT_S)) for o in m.options),
            lines=tuple((a / TIME_UNIT_S, b / TIME_UNIT_S) for a, b in extra.get(m.table, ())),
            samples=module.workload.batch_size,
            part_bytes=tuple(min(o.local_bytes_per_part) for o in m.options),
        )
        for m in module.options
    ]
    known = math.floor(known_s / TIME_UNIT_S)
    capacity = module.target.local.capacity_bytes
    return pattern_lower_bound(
        menus, module.target.cores, known, upper_units, capacity_bytes=capacity if buffers else None
    )


def build_items(module: Module, assignment: Assignment) -> tuple[WorkItem, ...]:
    return place_items(module, dict(enumerate(assignment.choices)))


def place_items(module: Module, choices: Mapping[int, Choice]) -> tuple[WorkItem, ...]:
    """The work items of the tables in `choices` (by menu index), in menu order, numbered from 0: each part of
    the chosen option on its core, over equal cuts of its samples or rows."""
    assert module.options is not None
    batch = module.workload.batch_size
    items: list[WorkItem] = []
    for index in sorted(choices):
        choice = choices[index]
        o = module.options[index].options[choice.option]
        t = module.table(o.table)
        if o.mode is PartitionMode.SAMPLES:
            ranges = [((0, t.rows), s) for s in split_range(batch, o.parts)]
        else:
            ranges = [(r, (0, batch)) for r in split_range(t.rows, o.parts)]
        output = "accumulate" if o.mode is PartitionMode.ROWS and o.parts > 1 else "write"
        for (rows, samples), core, cost, local in zip(
            ranges, choice.cores, o.part_costs, o.local_bytes_per_part, strict=True
        ):
            items.append(
                WorkItem(
                    id=len(items),
                    table=t.name,
                    output=output,
                    strategy=o.strategy,
                    rows=rows,
                    samples=samples,
                    core=core,
                    local_bytes=local,
                    cost=cost,
                )
            )
    return tuple(items)


@register
@dataclasses.dataclass(frozen=True)
class SchedulePass(ModulePass):
    """Order each core's items and predict start and finish times; an item waits for the items it depends
    on, if any. First come the tables with a part on every core, heaviest first, in the same order on every
    core, so that the cores read each of them together (as their costs assume, `Module.part_profile`); then
    the other items, longest first (a stable order that front-loads the long streams)."""

    name = "schedule"
    summary = "per-core order (tables split over all cores first, read together; then longest first) and times"
    requires = ("items",)
    ensures = ("schedules",)

    def apply(self, module: Module) -> Module:
        assert module.items is not None
        cores: dict[str, set[int]] = {}
        work: dict[str, float] = {}
        for it in module.items:
            cores.setdefault(it.table, set()).add(it.core)
            work[it.table] = work.get(it.table, 0.0) + it.cost.total_s
        parts = Counter(it.table for it in module.items)
        together = {
            t for t, on in cores.items() if reads_together(parts[t], module.target.cores) and len(on) == parts[t]
        }
        first = {t: n for n, t in enumerate(sorted(together, key=lambda t: (-work[t], t)))}

        def rank(it: WorkItem) -> tuple[int, float, int]:
            if it.table in first:
                return (first[it.table], 0.0, it.id)
            return (len(first), -it.cost.total_s, it.id)

        queues: list[list[WorkItem]] = [[] for _ in range(module.target.cores)]
        for it in module.items:
            queues[it.core].append(it)
        queues = [sorted(queue, key=rank) for queue in queues]
        schedules = simulate(module.items, queues, module.cost_profile.core_start_s)
        return module.model_copy(update={"schedules": schedules})


def simulate(
    items: tuple[WorkItem, ...], queues: list[list[WorkItem]], start_s: float = 0.0
) -> tuple[CoreSchedule, ...]:
    """Run each core's queue in order from `start_s` (the batch's start-up on a busy core); an item starts when
    its core is free and its dependencies are done."""
    finish: dict[int, float] = {}
    times: list[list[tuple[float, float]]] = [[] for _ in queues]
    clock = [start_s if queue else 0.0 for queue in queues]
    pos = [0] * len(queues)
    remaining = len(items)
    while remaining:
        progressed = False
        for c, queue in enumerate(queues):
            while pos[c] < len(queue) and all(d in finish for d in queue[pos[c]].depends_on):
                it = queue[pos[c]]
                start = max([clock[c], *(finish[d] for d in it.depends_on)])
                clock[c] = start + it.cost.total_s
                finish[it.id] = clock[c]
                times[c].append((start, clock[c]))
                pos[c] += 1
                remaining -= 1
                progressed = True
        if not progressed:
            raise RuntimeError("schedule deadlock: dependencies form a cycle with the core order")
    return tuple(
        CoreSchedule(
            core=c,
            items=tuple(it.id for it in q),
            start_s=tuple(s for s, _ in times[c]),
            finish_s=tuple(f for _, f in times[c]),
        )
        for c, q in enumerate(queues)
    )


@register
@dataclasses.dataclass(frozen=True)
class VerifyPass(ModulePass):
    """Check every invariant now (the pass manager also does so between passes unless told not to)."""

    name = "verify"
    summary = "check every IR invariant (coverage, tiling, capacity, cores, schedule order)"

    def apply(self, module: Module) -> Module:
        verify_module(module)
        return module
