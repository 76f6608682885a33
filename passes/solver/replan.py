"""Re-planning: start from a previous plan and move only the tables that pay for their move.

A table *moves* when its new option or any of its cores differs from its previous placement while the new menu
still offers it; tables with nothing to keep are *free* (docs/plan-format.md, `MoveReport`). `previous_choices`
maps a previous placement onto the new menu; `replan_seeds` are the heuristic re-plans (keep, place the free
tables around the kept ones, release tables from the most-loaded cores, local search within the move budget)
that also seed CP-SAT, whose model bounds the moves itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

from embmap.ir.errors import InfeasibleError
from embmap.ir.module import Module, PlacedTable
from embmap.ir.plan import ExecutionPlan, MoveReport
from embmap.passes.solver.errors import capacity_error
from embmap.passes.solver.greedy import greedy, improve, place_around, round_robin
from embmap.passes.solver.problem import Assignment, AssignmentProblem, Choice

Previous = Sequence[Choice | None]  # per table of the new problem: the choice to keep, or None (free)


def previous_placement(plan: ExecutionPlan) -> tuple[PlacedTable, ...]:
    """Each table's placement in `plan`: its option's shape and the ascending cores of its items."""
    cores: dict[str, list[int]] = {t.name: [] for t in plan.tables}
    for it in plan.items:
        cores[it.table].append(it.core)
    return tuple(
        PlacedTable(table=t.name, strategy=t.strategy, mode=t.mode, parts=t.parts, cores=tuple(sorted(cores[t.name])))
        for t in plan.tables
    )


def previous_choices(module: Module) -> tuple[Choice | None, ...]:
    """Per table of the module's menu, its previous placement as a choice of that menu, or None (free)."""
    assert module.options is not None and module.previous is not None
    placed = {p.table: p for p in module.previous}
    choices: list[Choice | None] = []
    for entry in module.options:
        p = placed.get(entry.table)
        shape = None if p is None else (p.strategy, p.mode, p.parts)
        i = next((i for i, o in enumerate(entry.options) if (o.strategy, o.mode, o.parts) == shape), None)
        choices.append(None if p is None or i is None else Choice(i, p.cores))
    return tuple(choices)


def move_report(problem: AssignmentProblem, plan: Assignment, previous: Previous, max_moves: int | None) -> MoveReport:
    moved = [t for t, (ch, p) in enumerate(zip(plan.choices, previous, strict=True)) if p is not None and ch != p]
    free = sum(p is None for p in previous)
    return MoveReport(
        max_moves=max_moves,
        moved_tables=len(moved),
        moved_items=sum(problem.options[t][plan.choices[t].option].parts for t in moved),
        kept_tables=len(previous) - len(moved) - free,
        free_tables=free,
    )


def moves(plan: Assignment, previous: Previous) -> int:
    return sum(p is not None and ch != p for ch, p in zip(plan.choices, previous, strict=True))


def replan_seeds(problem: AssignmentProblem, previous: Previous, max_moves: int | None) -> list[Assignment]:
    """Heuristic re-plans within the move budget, best first (makespan, then moves): the warm start and,
    when moves are unbounded, the fresh greedy and round-robin plans with their needless moves undone."""
    seeds: list[Assignment] = []
    error: InfeasibleError | None = None
    try:
        seeds.append(warm_start(problem, previous, max_moves))
    except InfeasibleError as exc:
        error = exc
    if max_moves is None:
        for fresh in (greedy, round_robin):
            with contextlib.suppress(InfeasibleError):  # a fresh plan is only an extra seed
                seeds.append(undo_needless_moves(problem, fresh(problem), previous))
    if not seeds:
        assert error is not None
        raise error
    return sorted(seeds, key=lambda a: (a.makespan(problem), moves(a, previous)))


def warm_start(problem: AssignmentProblem, previous: Previous, max_moves: int | None) -> Assignment:
    """Keep every table that can stay, place the free tables around them (greedy's gap filling), then local
    search that moves tables only while the budget lasts, and undo the moves that did not pay."""
    fixed = {t: p for t, p in enumerate(previous) if p is not None}
    evicted = _overflowing(problem, fixed)
    if max_moves is not None and len(evicted) > max_moves:
        names = ", ".join(problem.tables[t] for t in evicted[:3]) + (" and more" if len(evicted) > 3 else "")
        raise InfeasibleError(
            "assign-cores{max-moves}",
            f"the kept tables no longer fit the local buffers: {len(evicted)} must move ({names}), {max_moves} may",
            f"raise --max-moves to {len(evicted)} or more, or compile without --previous",
        )
    for t in evicted:
        del fixed[t]
    placed = place_around(problem, fixed)
    if placed is None:
        free = ", ".join(problem.tables[t] for t in range(len(previous)) if t not in fixed)
        headline = f"around the {len(fixed)} tables kept in place, the greedy placement finds no room for {free}"
        if max_moves is None:
            raise capacity_error(problem, headline)
        raise InfeasibleError("assign-cores{max-moves}", headline, "raise --max-moves, or compile without --previous")
    if max_moves is not None:
        placed = _release_from_peak(problem, placed, fixed, previous, max_moves)
    searched = improve(problem, placed, previous=previous, max_moves=max_moves)
    return undo_needless_moves(problem, searched, previous)


def _release_from_peak(
    problem: AssignmentProblem, plan: Assignment, fixed: dict[int, Choice], previous: Previous, max_moves: int
) -> Assignment:
    """Ruin and recreate within the budget: release the kept table with the largest part on a most-loaded
    core and place the released and free tables again around the rest (greedy's gap filling); one more
    release per round, while it lowers (makespan, cores at the makespan) and stays within the budget."""
    fixed = dict(fixed)
    best = plan
    while fixed and moves(best, previous) < max_moves:
        loads = best.loads(problem)
        peak = max(loads)
        on_peak = [t for t, ch in fixed.items() if any(loads[c] == peak for c in ch.cores)]
        if not on_peak:
            break
        del fixed[max(on_peak, key=lambda t: (problem.options[t][fixed[t].option].part_units, -t))]
        trial = place_around(problem, fixed)
        if trial is None or moves(trial, previous) > max_moves or _score(problem, trial) >= _score(problem, best):
            break
        best = trial
    return best


def _score(problem: AssignmentProblem, plan: Assignment) -> tuple[int, int]:
    loads = plan.loads(problem)
    return max(loads), loads.count(max(loads))


def undo_needless_moves(problem: AssignmentProblem, plan: Assignment, previous: Previous) -> Assignment:
    """Put each moved table back on its previous choice wherever that raises no core above the plan's
    makespan and fits the local buffers (in table order): a move that does not pay is no move."""
    choices = list(plan.choices)
    loads = plan.loads(problem)
    used = _used_bytes(problem, choices)
    span = max(loads)
    for t, (ch, p) in enumerate(zip(choices, previous, strict=True)):
        if p is None or ch == p:
            continue
        now, then = problem.options[t][ch.option], problem.options[t][p.option]
        for c in ch.cores:
            loads[c] -= now.part_units
            used[c] -= now.part_bytes
        fits = all(
            loads[c] + then.part_units <= span and used[c] + then.part_bytes <= problem.capacity_bytes for c in p.cores
        )
        back, kept = (p, then) if fits else (ch, now)
        for c in back.cores:
            loads[c] += kept.part_units
            used[c] += kept.part_bytes
        choices[t] = back
    return Assignment(tuple(choices))


def _used_bytes(problem: AssignmentProblem, choices: Sequence[Choice]) -> list[int]:
    used = [0] * problem.cores
    for t, ch in enumerate(choices):
        for c in ch.cores:
            used[c] += problem.options[t][ch.option].part_bytes
    return used


def _overflowing(problem: AssignmentProblem, fixed: dict[int, Choice]) -> list[int]:
    """Tables whose previous choices together overflow a core's local buffer (a table grew): on each such
    core, the kept tables holding the most bytes leave until the rest fit. Empty when all fit."""
    used = [0] * problem.cores
    for t, ch in fixed.items():
        for c in ch.cores:
            used[c] += problem.options[t][ch.option].part_bytes
    evicted: list[int] = []
    for c in range(problem.cores):
        while used[c] > problem.capacity_bytes:
            t = max(
                (t for t, ch in fixed.items() if c in ch.cores and t not in evicted),
                key=lambda t: (problem.options[t][fixed[t].option].part_bytes, -t),
            )
            evicted.append(t)
            for d in fixed[t].cores:
                used[d] -= problem.options[t][fixed[t].option].part_bytes
    return evicted
