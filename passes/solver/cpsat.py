"""Core assignment as a CP-SAT load-balancing problem: choose each table's option and its cores jointly,
under per-core local-buffer capacity, minimizing the makespan (the largest core load).

Order, as in the OR-Tools samples: data -> variables -> constraints -> objective -> hint -> solve -> status.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from embmap.passes.solver.problem import (
    TIME_UNIT_S,
    Assignment,
    AssignmentProblem,
    Choice,
    check_model_size,
    held_bytes,
)
from embmap.passes.solver.progress import ProgressListener, SolveReporter, run_solver
from embmap.passes.solver.settings import SolverSettings

STATUS_NAMES = {
    cp_model.OPTIMAL: "OPTIMAL",
    cp_model.FEASIBLE: "FEASIBLE",
    cp_model.INFEASIBLE: "INFEASIBLE",
    cp_model.MODEL_INVALID: "MODEL_INVALID",
    cp_model.UNKNOWN: "UNKNOWN",
}

# The time limit counts CP-SAT's deterministic time (about seconds on a current core), so that a solve stopped
# by it returns the same plan on every run; the wall clock is capped at this many times it (plus a second),
# which only a very slow machine reaches.
WALL_CAP_FACTOR = 3.0

# CP-SAT's model has a boolean per (table, option, core). Measured on ascend910 with a 10 s limit and 1 worker,
# models above about 40,000 booleans end no better than their greedy hint, after 14 s (100 tables x 32 cores,
# 47,000 booleans), 21 s (200 x 32, 121,000) and 24-35 s (100 x 128, 186,000; 500 x 32, 347,000) of building
# and searching; the built-in workloads have 12,000-23,000 and CP-SAT improves or proves their plans. So the
# model is built only up to `cpsat_boolean_limit(time limit)` booleans, which grows with the time given; above
# it the greedy plan (and local search) stands, reported NOT_SOLVED with its gap.
MIN_CPSAT_BOOLEANS = 40_000
CPSAT_BOOLEANS_PER_S = 4_000

Y = dict[tuple[int, int], cp_model.IntVar]  # y[t, o]: table t takes option o
X = dict[tuple[int, int, int], cp_model.IntVar]  # x[t, o, c]: a part of option o of table t on core c


@dataclass(frozen=True)
class SolveResult:
    status: str
    assignment: Assignment | None
    objective_units: int | None
    best_bound_units: int
    wall_s: float
    interrupted: bool = False  # Ctrl-C stopped the search; the assignment is the best found by then


def cpsat_boolean_limit(time_limit_s: float) -> int:
    """The largest CP-SAT model (in booleans) built for a time limit of `time_limit_s` seconds."""
    return max(MIN_CPSAT_BOOLEANS, int(CPSAT_BOOLEANS_PER_S * time_limit_s))


def cpsat_booleans(problem: AssignmentProblem) -> int:
    """The (table, option, core) booleans of the CP-SAT model, counting every option."""
    return problem.cores * sum(len(opts) for opts in problem.options)


def solve(
    problem: AssignmentProblem,
    settings: SolverSettings,
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
    lb = problem.lower_bound
    ub = hint.makespan(problem) if hint else sum(max(o.work_units for o in opts) for opts in problem.options)

    # Variables. Options that cannot appear in a plan at least as good as the hint are fixed to 0.
    usable = _usable_options(problem, ub) if hint else [list(range(len(opts))) for opts in problem.options]
    y, x = _variables(model, problem, usable)
    makespan = model.new_int_var(lb, max(lb, ub), "makespan")
    # Constraints.
    loads = _assignment_constraints(model, problem, usable, y, x, makespan)
    _redundant_constraints(model, problem, y, makespan)
    # Symmetry breaking (cores are identical): loads do not increase with the core index. Not when
    # re-planning: the previous plan names its cores.
    if previous is None:
        for c in range(problem.cores - 1):
            model.add(loads[c] >= loads[c + 1])
    # Re-planning: at most `max_moves` tables leave their previous choice (hinted from `hint`).
    if previous is not None and max_moves is not None:
        _bound_moves(model, y, x, previous, max_moves, hint)
    # Objective.
    model.minimize(makespan)
    # Hint: the greedy plan (relabelled to respect the symmetry breaking).
    if hint is not None:
        _add_hint(model, problem, y, x, makespan, hint if previous is not None else hint.relabel_by_load(problem))

    solver, status, interrupted, wall = run_model(model, settings, listener, lb, ub if hint else None)
    return _read_result(solver, status, problem, y, x, lb, wall, interrupted)


def run_model(
    model: cp_model.CpModel, settings: SolverSettings, listener: ProgressListener | None, lb: int, ub: int | None
) -> tuple[cp_model.CpSolver, cp_model.CpSolverStatus, bool, float]:
    """Solve `model` with `settings`, reporting progress (bounds in units from `lb`, the hint's `ub`) to
    `listener`; Ctrl-C stops the search, keeping its best. The solver, status, whether interrupted, wall time."""
    solver = cp_model.CpSolver()
    copy_settings(solver, settings)
    reporter = SolveReporter(listener, TIME_UNIT_S, lb, ub) if listener else None
    start = time.perf_counter()
    status, interrupted = run_solver(solver, model, reporter)
    return solver, status, interrupted, time.perf_counter() - start


def _usable_options(problem: AssignmentProblem, ub: int) -> list[list[int]]:
    """Options that fit in a plan with makespan <= ub: no part above ub, and total work within cores x ub."""
    min_work = [min(o.work_units for o in opts) for opts in problem.options]
    spare = problem.cores * ub - sum(min_work)
    return [
        [o for o, data in enumerate(opts) if data.part_units <= ub and data.work_units - min_work[t] <= spare]
        for t, opts in enumerate(problem.options)
    ]


def _variables(model: cp_model.CpModel, problem: AssignmentProblem, usable: list[list[int]]) -> tuple[Y, X]:
    """y[t, o] picks option o of table t; x[t, o, c] puts one of its parts on core c (only for usable options)."""
    y: Y = {}
    x: X = {}
    for t, opts in enumerate(problem.options):
        for o in range(len(opts)):
            y[t, o] = model.new_bool_var(f"y_t{t}_o{o}")
            if o not in usable[t]:
                model.add(y[t, o] == 0)
                continue
            for c in range(problem.cores):
                x[t, o, c] = model.new_bool_var(f"x_t{t}_o{o}_c{c}")
    return y, x


def _assignment_constraints(
    model: cp_model.CpModel, problem: AssignmentProblem, usable: list[list[int]], y: Y, x: X, makespan: cp_model.IntVar
) -> list[cp_model.LinearExprT]:
    """The rules of a plan; returns each core's load."""
    cores = range(problem.cores)
    # Each table takes exactly one option.
    for t, opts in enumerate(problem.options):
        model.add_exactly_one(y[t, o] for o in range(len(opts)))
    # The chosen option's parts sit on exactly `parts` distinct cores; other options place nothing.
    for t, opts in enumerate(problem.options):
        for o, data in enumerate(opts):
            if o in usable[t]:
                model.add(sum(x[t, o, c] for c in cores) == data.parts * y[t, o])
    # A core's load is the work it holds; the makespan bounds every load.
    loads: list[cp_model.LinearExprT] = []
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
    return loads


def _redundant_constraints(
    model: cp_model.CpModel, problem: AssignmentProblem, y: Y, makespan: cp_model.IntVar
) -> None:
    """Redundant: the makespan is at least the average load and at least every chosen item (tightens the bound)."""
    model.add(
        problem.cores * makespan
        >= sum(data.work_units * y[t, o] for t, opts in enumerate(problem.options) for o, data in enumerate(opts))
    )
    for t, opts in enumerate(problem.options):
        for o, data in enumerate(opts):
            model.add(makespan >= data.part_units * y[t, o])


def _add_hint(
    model: cp_model.CpModel, problem: AssignmentProblem, y: Y, x: X, makespan: cp_model.IntVar, hint: Assignment
) -> None:
    for t, ch in enumerate(hint.choices):
        for o in range(len(problem.options[t])):
            model.add_hint(y[t, o], o == ch.option)
            for c in range(problem.cores):
                if (t, o, c) in x:
                    model.add_hint(x[t, o, c], o == ch.option and c in ch.cores)
    model.add_hint(makespan, hint.makespan(problem))


def copy_settings(solver: cp_model.CpSolver, settings: SolverSettings) -> None:
    """The settings, one by one. The limit is deterministic time, so that a solve stopped by it returns the same
    plan on every run; the wall-clock cap only guards against slow machines."""
    solver.parameters.max_deterministic_time = settings.time_limit_s
    solver.parameters.max_time_in_seconds = WALL_CAP_FACTOR * settings.time_limit_s + 1.0
    solver.parameters.num_workers = settings.workers
    solver.parameters.interleave_search = settings.workers > 1  # deterministic parallel search
    solver.parameters.random_seed = settings.seed
    solver.parameters.relative_gap_limit = settings.relative_gap


def _read_result(
    solver: cp_model.CpSolver,
    status: cp_model.CpSolverStatus,
    problem: AssignmentProblem,
    y: Y,
    x: X,
    lb: int,
    wall: float,
    interrupted: bool,
) -> SolveResult:
    """The status first, then the values (only where a solution exists)."""
    name = STATUS_NAMES.get(status, "UNKNOWN")
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return SolveResult(name, None, None, max(lb, int(solver.best_objective_bound)), wall, interrupted)
    choices = []
    for t, opts in enumerate(problem.options):
        o = next(o for o in range(len(opts)) if solver.boolean_value(y[t, o]))
        choices.append(Choice(o, tuple(c for c in range(problem.cores) if solver.boolean_value(x[t, o, c]))))
    assignment = Assignment(tuple(choices))
    # The makespan variable may sit above the largest load in a non-optimal solution; report the true one.
    bound = max(lb, int(solver.best_objective_bound))
    return SolveResult(name, assignment, assignment.makespan(problem), bound, wall, interrupted)


def _bound_moves(
    model: cp_model.CpModel,
    y: Y,
    x: X,
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
