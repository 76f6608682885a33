"""Core assignment as a CP-SAT load-balancing problem: choose each table's option and its cores jointly,
under per-core local-buffer capacity, minimizing the makespan (the largest core load).

Order, as in the OR-Tools samples: data -> variables -> constraints -> objective -> hint -> solve -> status.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from embmap.passes.assignment import (
    TIME_UNIT_S,
    Assignment,
    AssignmentProblem,
    Choice,
    check_model_size,
    held_bytes,
    lower_bound_units,
)
from embmap.passes.progress import ProgressListener, SolveReporter, run_solver

STATUS_NAMES = {
    cp_model.OPTIMAL: "OPTIMAL",
    cp_model.FEASIBLE: "FEASIBLE",
    cp_model.INFEASIBLE: "INFEASIBLE",
    cp_model.MODEL_INVALID: "MODEL_INVALID",
    cp_model.UNKNOWN: "UNKNOWN",
}


WALL_CAP_FACTOR = 3.0
# CP-SAT's default limit, in deterministic seconds. It proves the small built-in models optimal in a tenth of a
# second; the larger ones (12,000-23,000 booleans) it spends about 5 s presolving, and 10 s improved no plan of
# any built-in workload over its hint, so a longer default would only slow every compile.
DEFAULT_TIME_LIMIT_S = 2.0


@dataclass(frozen=True)
class SolverParams:
    """Solver parameters, copied one by one into CP-SAT."""

    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    workers: int = 1
    seed: int = 0
    relative_gap: float = 0.0


@dataclass(frozen=True)
class SolveResult:
    status: str
    assignment: Assignment | None
    objective_units: int | None
    best_bound_units: int
    wall_s: float
    interrupted: bool = False  # Ctrl-C stopped the search; the assignment is the best found by then


def _usable_options(problem: AssignmentProblem, ub: int) -> list[list[int]]:
    """Options that fit in a plan with makespan <= ub: no part above ub, and total work within cores x ub."""
    min_work = [min(o.work_units for o in opts) for opts in problem.options]
    spare = problem.cores * ub - sum(min_work)
    return [
        [o for o, data in enumerate(opts) if data.part_units <= ub and data.work_units - min_work[t] <= spare]
        for t, opts in enumerate(problem.options)
    ]


def solve(
    problem: AssignmentProblem,
    params: SolverParams,
    hint: Assignment | None = None,
    *,
    previous: Sequence[Choice | None] | None = None,
    max_moves: int | None = None,
    listener: ProgressListener | None = None,
) -> SolveResult:
    """With `previous` (re-planning: per table, the choice to keep or None), cores are no longer
    interchangeable, and with `max_moves` at most that many tables leave their previous choice; the hint
    must then respect the bound."""
    check_model_size(problem)
    model = cp_model.CpModel()
    cores = range(problem.cores)
    lb = lower_bound_units(problem)
    ub = hint.makespan(problem) if hint else sum(max(o.work_units for o in opts) for opts in problem.options)

    # Variables: y[t, o] picks option o of table t; x[t, o, c] puts one of its parts on core c. Options that
    # cannot appear in a plan at least as good as the hint (a part above it, or too much work) are fixed to 0.
    usable = _usable_options(problem, ub) if hint else [list(range(len(opts))) for opts in problem.options]
    y: dict[tuple[int, int], cp_model.IntVar] = {}
    x: dict[tuple[int, int, int], cp_model.IntVar] = {}
    for t, opts in enumerate(problem.options):
        for o in range(len(opts)):
            y[t, o] = model.new_bool_var(f"y_t{t}_o{o}")
            if o not in usable[t]:
                model.add(y[t, o] == 0)
                continue
            for c in cores:
                x[t, o, c] = model.new_bool_var(f"x_t{t}_o{o}_c{c}")
    makespan = model.new_int_var(lb, max(lb, ub), "makespan")

    # Each table takes exactly one option.
    for t, opts in enumerate(problem.options):
        model.add_exactly_one(y[t, o] for o in range(len(opts)))
    # The chosen option's parts sit on exactly `parts` distinct cores; other options place nothing.
    for t, opts in enumerate(problem.options):
        for o, data in enumerate(opts):
            if o in usable[t]:
                model.add(sum(x[t, o, c] for c in cores) == data.parts * y[t, o])
    # A core's load is the work it holds; the makespan bounds every load.
    loads = []
    for c in cores:
        load = sum(
            data.part_units * x[t, o, c]
            for t, opts in enumerate(problem.options)
            for o, data in enumerate(opts)
            if (t, o, c) in x
        )
        loads.append(load)
        model.add(load <= makespan)
    # Preloaded parts fit each core's local buffer.
    for c in cores:
        held = [
            data.part_bytes * x[t, o, c]
            for t, opts in enumerate(problem.options)
            for o, data in enumerate(opts)
            if data.part_bytes and (t, o, c) in x
        ]
        if held and held_bytes(problem) > problem.capacity_bytes:  # else it cannot bind (and may not fit int64)
            model.add(sum(held) <= problem.capacity_bytes)
    # Redundant: the makespan is at least the average load and at least every chosen item (tightens the bound).
    model.add(
        problem.cores * makespan
        >= sum(data.work_units * y[t, o] for t, opts in enumerate(problem.options) for o, data in enumerate(opts))
    )
    for t, opts in enumerate(problem.options):
        for o, data in enumerate(opts):
            model.add(makespan >= data.part_units * y[t, o])
    # Symmetry breaking (cores are identical): loads do not increase with the core index. Not when
    # re-planning: the previous plan names its cores.
    if previous is None:
        for c in range(problem.cores - 1):
            model.add(loads[c] >= loads[c + 1])
    # Re-planning: at most `max_moves` tables leave their previous choice (hinted from `hint`).
    if previous is not None and max_moves is not None:
        _bound_moves(model, y, x, previous, max_moves, hint)

    model.minimize(makespan)

    if hint is not None:
        if previous is None:
            hint = hint.relabel_by_load(problem)
        for t, ch in enumerate(hint.choices):
            for o in range(len(problem.options[t])):
                model.add_hint(y[t, o], o == ch.option)
                for c in cores:
                    if (t, o, c) in x:
                        model.add_hint(x[t, o, c], o == ch.option and c in ch.cores)
        model.add_hint(makespan, hint.makespan(problem))

    solver = cp_model.CpSolver()
    # The limit is counted in CP-SAT's deterministic time (about seconds on a current core), so that a solve
    # stopped by it returns the same plan on every run; the wall-clock cap only guards against slow machines.
    solver.parameters.max_deterministic_time = params.time_limit_s
    solver.parameters.max_time_in_seconds = WALL_CAP_FACTOR * params.time_limit_s + 1.0
    solver.parameters.num_workers = params.workers
    solver.parameters.interleave_search = params.workers > 1  # deterministic parallel search
    solver.parameters.random_seed = params.seed
    solver.parameters.relative_gap_limit = params.relative_gap
    reporter = SolveReporter(listener, TIME_UNIT_S, lb, ub if hint else None) if listener else None
    start = time.perf_counter()
    status, interrupted = run_solver(solver, model, reporter)  # Ctrl-C stops the search, keeping its best
    wall = time.perf_counter() - start

    name = STATUS_NAMES.get(status, "UNKNOWN")
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return SolveResult(name, None, None, max(lb, int(solver.best_objective_bound)), wall, interrupted)
    choices = []
    for t, opts in enumerate(problem.options):
        o = next(o for o in range(len(opts)) if solver.boolean_value(y[t, o]))
        choices.append(Choice(o, tuple(c for c in cores if solver.boolean_value(x[t, o, c]))))
    assignment = Assignment(tuple(choices))
    # The makespan variable may sit above the largest load in a non-optimal solution; report the true one.
    bound = max(lb, int(solver.best_objective_bound))
    return SolveResult(name, assignment, assignment.makespan(problem), bound, wall, interrupted)


def _bound_moves(
    model: cp_model.CpModel,
    y: dict[tuple[int, int], cp_model.IntVar],
    x: dict[tuple[int, int, int], cp_model.IntVar],
    previous: Sequence[Choice | None],
    max_moves: int,
    hint: Assignment | None,
) -> None:
    """keep[t] implies table t takes its previous option on its previous cores (the option's part count then
    rules out any other core); tables not kept are moves, at most `max_moves` of them. Free tables (None)
    are not counted. An option the model fixed out cannot be kept."""
    moves = []
    for t, prev in enumerate(previous):
        if prev is None:
            continue
        keep = model.new_bool_var(f"keep_t{t}")
        if all((t, prev.option, c) in x for c in prev.cores):
            model.add_implication(keep, y[t, prev.option])
            for c in prev.cores:
                model.add_implication(keep, x[t, prev.option, c])
        else:
            model.add(keep == 0)
        if hint is not None:
            model.add_hint(keep, hint.choices[t] == prev)
        moves.append(1 - keep)
    if moves:
        model.add(sum(moves) <= max_moves)
