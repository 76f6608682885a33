"""Work items from an assignment: each part of a table's chosen option on its core, over equal cuts of its
samples or rows; and what the passes read from a plan's items (busy makespan, uneven cuts)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from embmap.ir.module import Module, split_range
from embmap.ir.plan import PartitionMode, WorkItem
from embmap.passes.solver.problem import Assignment, Choice
from embmap.passes.solver.replan import Previous, moves


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


def items_makespan_s(items: Iterable[WorkItem]) -> float:
    """The largest core's busy time: the sum of its items' times (start-up excluded)."""
    busy: dict[int, float] = {}
    for it in items:
        busy[it.core] = busy.get(it.core, 0.0) + it.cost.total_s
    return max(busy.values(), default=0.0)


def makespan_s(module: Module, assignment: Assignment) -> float:
    """An assignment's busy makespan in seconds, from the exact costs of its items (the integer model rounds)."""
    return items_makespan_s(build_items(module, assignment))


def fastest(module: Module, plans: list[Assignment], previous: Previous | None = None) -> Assignment:
    """The plan fastest in seconds (of equally fast plans, the first); when re-planning, of equally fast plans
    (to a picosecond) the one that moves fewer tables. The integer model rounds and charges every part of an
    option its costliest part's time, so plans of equal objective can differ in seconds."""
    if previous is None:
        return min(plans, key=lambda a: makespan_s(module, a))
    return min(plans, key=lambda a: (round(makespan_s(module, a), 12), moves(a, previous)))


def cut_unevenly(module: Module, items: Iterable[WorkItem]) -> bool:
    """Whether some table's sample cuts in `items` differ by more than one sample (`balance` re-cut them)."""
    sizes: dict[str, list[int]] = {}
    for it in items:
        if it.samples != (0, module.workload.batch_size):
            sizes.setdefault(it.table, []).append(it.samples[1] - it.samples[0])
    return any(max(n) - min(n) > 1 for n in sizes.values())
