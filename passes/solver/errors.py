"""The errors a placement reports when no plan fits: the numbers behind them, and the fixes that would work."""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence

from embmap.ir.errors import InfeasibleError
from embmap.ir.printer import fmt_bytes
from embmap.passes.solver.problem import AssignmentProblem, last_true

Menu = Sequence[tuple[int, int]]  # a table's options as (parts, local bytes of each part)


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
    row_cap = _fitting_row_cap(problem)
    if row_cap:
        fixes.insert(1, f"--row-cap {row_cap} or less")
    return InfeasibleError(
        "assign-cores",
        f"{headline}: tables that must be preloaded need {fmt_bytes(total)} of local buffer "
        f"at the least ({shown}{more}); {why}",
        ", ".join(fixes[:-1]) + ", or " + fixes[-1],
    )


def _fitting_row_cap(problem: AssignmentProblem) -> int:
    """The largest row cap under which the greedy placement (which CP-SAT starts from) cannot fail, whatever
    costs the cap brings: every table that must be preloaded has an option that finds room however the others
    were placed (`_always_room`). The problem has no costs for fewer rows, so the cap must not depend on them
    (the partition pass, which has the workload, reruns the passes instead). 0 where rows are unknown or no cap
    does."""
    if not problem.rows:
        return 0
    held = [
        (rows, [(o.parts, o.part_bytes) for o in opts])
        for rows, opts in zip(problem.rows, problem.options, strict=True)
        if all(o.part_bytes > 0 for o in opts)  # a table with a shared-memory option needs no local bytes
    ]
    if not held:
        return 0

    def room(cap: int) -> bool:
        tables = [_held_under_cap(rows, opts, cap, problem) for rows, opts in held]
        return all(t is not None for t in tables) and _always_room([t for t in tables if t], problem)

    return last_true(0, max(rows for rows, _ in held) - 1, room)


def _held_under_cap(rows: int, opts: Menu, cap: int, problem: AssignmentProblem) -> tuple[Menu, int, int] | None:
    """A preloaded table under `--row-cap cap`: the options it is sure to have (`_option_under_cap`), the most
    local bytes one part of any option can hold, and the most all parts of any option can hold (the whole
    table on every core where it fits one, else row shards: at most a row per shard over its bytes). Each row
    size the options allow is assumed in turn (`_row_sizes`); None where they allow none."""
    capacity, cores = problem.capacity_bytes, problem.cores
    sizes = _row_sizes(rows, opts)
    if not sizes:
        return None
    left = min(rows, cap)
    largest = most = 0
    for row_bytes in sizes:
        whole = left * row_bytes
        if whole <= capacity:
            largest, most = max(largest, whole), max(most, cores * whole)
        else:
            largest, most = capacity, max(most, min(cores * capacity, whole + cores * row_bytes))
    menu = tuple(o for o in (_option_under_cap(rows, k, b, cap, opts, capacity) for k, b in opts) if o)
    return menu, largest, most


def _row_sizes(rows: int, opts: Menu) -> set[int]:
    """The bytes of a row that every option allows: a part holds the whole table (`rows` rows) or a row shard
    (ceil(rows / parts) rows), and the problem does not say which."""
    sizes: set[int] | None = None
    for parts, part_bytes in opts:
        here = {part_bytes // n for n in (rows, -(-rows // parts)) if part_bytes % n == 0}
        sizes = here if sizes is None else sizes & here
    return sizes or set()


def _always_room(tables: Sequence[tuple[Menu, int, int]], problem: AssignmentProblem) -> bool:
    """Whether every table has an option that finds room on enough cores however the others are placed: each
    core holds at most one part of each other table, so at most the sum of their largest parts; and of the
    bytes they hold in all, at most `bytes // (capacity - part + 1)` cores can be too full for a part."""
    capacity, cores = problem.capacity_bytes, problem.cores
    parts_all, bytes_all = sum(t[1] for t in tables), sum(t[2] for t in tables)
    for menu, largest, most in tables:
        others_part, others_all = parts_all - largest, bytes_all - most
        if not any(
            others_part + part <= capacity or cores - others_all // (capacity - part + 1) >= parts
            for parts, part in menu
        ):
            return False
    return True


def greedy_places(problem: AssignmentProblem) -> bool:
    """Whether the greedy placement finds a plan: then assign-cores succeeds, by greedy or by CP-SAT (which
    starts from that plan)."""
    from embmap.passes.solver.greedy import place_around  # greedy reports its failures through this module

    return all(problem.options) and place_around(problem, {}) is not None


def _option_under_cap(
    rows: int, parts: int, part_bytes: int, cap: int, opts: Menu, capacity_bytes: int
) -> tuple[int, int] | None:
    """What an option of a table of `rows` rows (whose options are `opts`) becomes when `--row-cap cap` keeps
    min(rows, cap) of them: (parts, bytes per part) that some option of the partition menu then needs no more
    of; None where it may not be offered or does not fit. Each reading the bytes allow (the whole table in
    each part, or a row shard) is followed, and the answer holds under all. Sample counts do not depend on the
    rows. Shard counts that every menu of `partition` offers for some rows it offers for fewer, down to the
    rows themselves: 1 to 8, powers of two, the part limit (the most parts the table has); the fewest shards
    that fit become the fewest for the fewer rows."""
    left = min(rows, cap)
    readings: list[tuple[int, int] | None] = []
    if part_bytes % rows == 0:  # the whole table in each part
        readings.append((parts, left * (part_bytes // rows)))
    per_part = -(-rows // parts)
    if part_bytes % per_part == 0:  # a row shard
        row_bytes = part_bytes // per_part
        shards = parts
        if parts == -(-rows * row_bytes // capacity_bytes):
            shards = -(-left * row_bytes // capacity_bytes)
        elif parts > 8 and parts & (parts - 1) and parts < max(k for k, _ in opts):
            shards = left + 1  # a count only a menu of every count offers: not sure to be offered
        readings.append((shards, -(-left // shards) * row_bytes) if shards <= left else None)
    if not readings or None in readings:
        return None
    found = [r for r in readings if r is not None]
    option = max(p for p, _ in found), max(b for _, b in found)
    return option if option[1] <= capacity_bytes else None


def largest_packing_cap(
    menus_under: Callable[[int], Sequence[Menu]],
    most_rows: int,
    cores: int,
    capacity_bytes: int,
    places: Callable[[int], bool],
) -> int:
    """About the largest row cap below `most_rows` under which the tables' options, `menus_under(cap)`, pack
    onto the cores (each table one option, its parts on distinct cores, no local buffer over capacity: `packs`
    builds such a placement) and which `places(cap)` accepts (the compiler's own placement finds one); 0 where
    none does. `places` may rerun passes: it is asked from the largest cap that packs down, by steps that
    double, then between the last two answers to within 1/256 of the cap. Both hold at the cap returned,
    whatever they say of others."""

    def fits(cap: int) -> bool:
        return packs(menus_under(cap), cores, capacity_bytes)

    def accepted(cap: int) -> bool:
        return fits(cap) and places(cap)

    top = last_true(0, most_rows - 1, fits)
    good, failed, step = top, top + 1, max(1, top // 64)
    while good > 0 and not accepted(good):
        failed, good = good, max(0, top - step)
        step *= 2
    while failed - good > max(1, good // 256):
        mid = (good + failed) // 2
        good, failed = (mid, failed) if accepted(mid) else (good, mid)
    return good


def packs(menus: Sequence[Menu], cores: int, capacity_bytes: int) -> bool:
    """Whether first fit places every table: largest parts first, each table with its fewest parts for which
    enough cores have room, onto the fullest cores with room (best fit) or, that failing, the emptiest (worst
    fit). True means a placement exists; False only that first fit found none."""
    if not all(menus):
        return False
    ordered = sorted((sorted(m) for m in menus), key=lambda m: -m[0][1])
    return any(_first_fit(ordered, cores, capacity_bytes, fullest) for fullest in (True, False))


def _first_fit(menus: Sequence[Menu], cores: int, capacity_bytes: int, fullest: bool) -> bool:
    free = [capacity_bytes] * cores  # every core's free local bytes, sorted (the cores are alike)
    for menu in menus:
        for parts, part_bytes in menu:
            room = bisect.bisect_left(free, part_bytes)  # free[room:] have room for a part
            if cores - room >= parts:
                start = room if fullest else cores - parts
                taken = free[start : start + parts]
                del free[start : start + parts]
                for f in taken:
                    bisect.insort(free, f - part_bytes)
                break
        else:
            return False
    return True


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
