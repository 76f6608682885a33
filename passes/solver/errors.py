"""The errors a placement reports when no plan fits: the numbers behind them, and the fixes that would work."""

from __future__ import annotations

from embmap.ir.errors import InfeasibleError
from embmap.ir.printer import fmt_bytes
from embmap.passes.solver.problem import AssignmentProblem, last_true


def no_room(problem: AssignmentProblem, t: int, used: list[int]) -> InfeasibleError:
    """Round-robin dealt table t to a core whose local buffer has no room left for it."""
    need = min((o.part_bytes for o in problem.options[t] if o.parts == 1), default=0)
    core = t % problem.cores
    return InfeasibleError(
        f"table {problem.tables[t]}",
        f"round-robin deals it to core {core}, whose local buffer has {fmt_bytes(problem.capacity_bytes - used[core])} "
        f"left of {fmt_bytes(problem.capacity_bytes)}; its smallest whole-table option needs {fmt_bytes(need)}",
        "use the embmap or greedy pipeline, which place tables where they fit, or allow a shared-memory "
        "strategy (GM or GM-UB) for it",
    )


def capacity_error(problem: AssignmentProblem, headline: str) -> InfeasibleError:
    """No placement fits the local buffers: the tables that must be preloaded (every option of theirs holds
    local bytes), the bytes they need at the least and what the cores hold, and the fixes with numbers."""
    cap, cores = problem.capacity_bytes, problem.cores
    needs = []  # (local bytes in all, parts, table index) of each table's least-bytes option
    for t, opts in enumerate(problem.options):
        least = min(opts, key=lambda o: (o.part_bytes * o.parts, o.parts))
        if least.part_bytes > 0:
            needs.append((least.part_bytes * least.parts, least.parts, t))
    needs.sort(key=lambda n: (-n[0], n[2]))
    total, have = sum(n[0] for n in needs), cap * cores
    names = [problem.tables[t] for _, _, t in needs]
    shown = ", ".join(
        f"{problem.tables[t]} {fmt_bytes(b)}" + (f" in {k} parts" if k > 1 else "") for b, k, t in needs[:3]
    )
    more = f" and {len(needs) - 3} more" if len(needs) > 3 else ""
    if total > have:
        why = f"the {cores} cores hold {cores} x {fmt_bytes(cap)} = {fmt_bytes(have)}"
    else:
        why = (
            f"the {cores} cores hold {fmt_bytes(have)} in all but {fmt_bytes(cap)} each, and the parts of one "
            "table need distinct cores: they do not pack"
        )
    fixes = [
        f"allow a shared-memory strategy for {', '.join(names[:3])}{more} "
        "(select-strategy{strategies=GM:GM-UB:L1:L1-UB})",
        f"a target with at least {max(cores + 1, -(-total // cap))} cores",
    ]
    row_cap = _fitting_row_cap(problem, needs, have)
    if row_cap:
        fixes.insert(1, f"--row-cap {row_cap} or less")
    return InfeasibleError(
        "assign-cores",
        f"{headline}: tables that must be preloaded need {fmt_bytes(total)} of local buffer "
        f"at the least ({shown}{more}); {why}",
        ", ".join(fixes[:-1]) + ", or " + fixes[-1],
    )


def _fitting_row_cap(problem: AssignmentProblem, needs: list[tuple[int, int, int]], have: int) -> int:
    """About the largest row cap under which the preloaded tables' bytes (scaled with their rows) fit in
    `have`; 0 where rows are unknown or no cap helps."""
    if not problem.rows or not needs:
        return 0
    rows = problem.rows

    def need(cap: int) -> float:
        return sum(b * min(1.0, cap / rows[t]) for b, _, t in needs)

    largest = max(rows[t] for _, _, t in needs)
    cap = last_true(0, largest, lambda cap: need(cap) <= have)
    return cap if cap < largest else 0


def solver_failed(
    problem: AssignmentProblem, status: str, time_limit_s: float, max_moves: int | None
) -> InfeasibleError:
    """CP-SAT found no plan and no seed stands: proven infeasible (by the buffers, or by the move budget of a
    re-plan), or not found in time."""
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
        f"no placement found within {time_limit_s:g} s (solver status {status}) and the greedy placement failed",
        f"raise the time limit above {time_limit_s:g} s, e.g. --time-limit {time_limit_s * 10:g}",
    )
