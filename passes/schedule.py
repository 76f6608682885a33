"""`schedule`: each core's order of work, and the predicted start and finish of every item."""

from __future__ import annotations

import dataclasses
from collections import Counter

from embmap.ir.module import Module, reads_together
from embmap.ir.plan import CoreSchedule, WorkItem
from embmap.passes.base import ModulePass, PassContext, register


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

    def apply(self, module: Module, ctx: PassContext) -> Module:
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
