"""Small core-assignment problems and the exhaustive searches that solve them exactly: the reference the
solver library's tests compare against."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Sequence

from embmap.passes.solver.problem import Assignment, AssignmentProblem, Choice, OptionData


def exhaustive(
    problem: AssignmentProblem, previous: Sequence[Choice | None] | None = None, max_moves: int | None = None
) -> float:
    """Optimal makespan by trying every option and every set of distinct cores for every table
    (branch and bound on the makespan, which keeps it exact). With `previous` and `max_moves`, only over
    plans that leave at most `max_moves` tables off their previous choice."""
    best = math.inf
    loads = [0] * problem.cores
    used = [0] * problem.cores
    budget = math.inf if max_moves is None else max_moves

    def visit(t: int, moved: int) -> None:
        nonlocal best
        if max(loads) >= best or moved > budget:
            return
        if t == len(problem.options):
            best = max(loads)
            return
        for i, o in enumerate(problem.options[t]):
            for cores in itertools.combinations(range(problem.cores), o.parts):
                if any(used[c] + o.part_bytes > problem.capacity_bytes for c in cores):
                    continue
                for c in cores:
                    loads[c] += o.part_units
                    used[c] += o.part_bytes
                move = previous is not None and previous[t] is not None and Choice(i, cores) != previous[t]
                visit(t + 1, moved + move)
                for c in cores:
                    loads[c] -= o.part_units
                    used[c] -= o.part_bytes

    visit(0, 0)
    return best


def random_problem(rng: random.Random) -> AssignmentProblem:
    cores = rng.randint(1, 3)
    tables = rng.randint(1, 6)
    capacity = 100
    options = []
    for _ in range(tables):
        menu = []
        for _ in range(rng.randint(1, 4)):
            parts = rng.randint(1, cores)
            menu.append(
                OptionData(
                    parts=parts, part_units=rng.randint(1, 60), part_bytes=rng.choice([0, 0, rng.randint(10, 70)])
                )
            )
        options.append(tuple(menu))
    return AssignmentProblem(
        tables=tuple(f"t{i}" for i in range(tables)), options=tuple(options), cores=cores, capacity_bytes=capacity
    )


def assert_valid(problem: AssignmentProblem, a: Assignment) -> None:
    """Each table's parts on as many distinct cores of the target, and every core's local bytes within its
    buffer."""
    used = [0] * problem.cores
    for opts, ch in zip(problem.options, a.choices, strict=True):
        o = opts[ch.option]
        assert len(set(ch.cores)) == len(ch.cores) == o.parts
        assert all(0 <= c < problem.cores for c in ch.cores)
        for c in ch.cores:
            used[c] += o.part_bytes
    assert max(used) <= problem.capacity_bytes


def exhaustive_with_cuts(fixed: list[int], cut: tuple[int, int, int], cores: int) -> int:
    """The least makespan of whole parts `fixed` (one core each) and one table cut into k parts of any integer
    sizes, each at least `least`, doing `a * k + b` in all (cut = (a, b, least)), on `cores` cores."""
    a, b, least = cut
    best = sum(fixed) + a + b
    for k in range(1, cores + 1):
        work = a * k + b
        for sizes in itertools.product(range(least, work + 1), repeat=k):
            if sum(sizes) != work:
                continue
            for place in itertools.product(range(cores), repeat=len(fixed)):
                for spread in itertools.permutations(range(cores), k):
                    load = [0] * cores
                    for core, size in zip(place, fixed, strict=True):
                        load[core] += size
                    for core, size in zip(spread, sizes, strict=True):
                        load[core] += size
                    best = min(best, max(load))
    return best


def cut_menus(fixed: list[int], cut: tuple[int, int, int], cores: int) -> tuple[list, list]:
    """The menus `dff_lower_bound` sees: the fixed parts as they are; the cut table's k parts as their mean
    (rounded down) with the least size a part can have."""
    a, b, least = cut
    menus = [[(1, s)] for s in fixed] + [[(k, (a * k + b) // k) for k in range(1, cores + 1)]]
    flexible = [[None] for _ in fixed] + [[None] + [least] * (cores - 1)]
    return menus, flexible
