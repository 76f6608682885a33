"""The verifier: every invariant of modules and plans, stated once.

- every (table, sample) lookup is served exactly once: the lookup items of a table tile rows x samples;
- row shards tile their table and accumulate into the output; items that own all rows write it;
- local-buffer capacity holds on every core, and preloaded items account for the bytes they hold;
- every item has a core that exists, and the parts of one table sit on distinct cores;
- schedules hold each core's items exactly once, do not overlap, and respect dependencies (an acyclic graph).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import networkx as nx
import numpy as np

from embmap.ir.errors import VerificationError
from embmap.ir.module import Module
from embmap.ir.plan import PLAN_SCHEMA, CoreSchedule, ExecutionPlan, PlanItem, WorkItem
from embmap.ir.spec import TableSpec, TargetSpec

TIME_TOLERANCE_S = 1e-12


def verify_module(module: Module, where: str = "verify") -> None:
    violations = module_violations(module)
    if violations:
        raise VerificationError(violations, where)


def module_violations(module: Module) -> list[str]:
    tables = module.workload.tables
    names = [t.name for t in tables]
    out = _lookup_violations(module)
    for field in ("table_profiles", "candidates", "options"):
        value = getattr(module, field)
        if value is not None and [v.table for v in value] != names:
            out.append(f"{field} must hold one entry per table, in table order")
    if module.options is not None:
        out += _option_violations(module)
    if module.items is not None:
        out += item_violations(tables, module.target, module.workload.batch_size, module.items)
    out += _previous_violations(module)
    if module.schedules is not None:
        if module.items is None:
            out.append("schedules exist without items")
        else:
            out += schedule_violations(module.target, module.items, module.schedules)
    return out


def _lookup_violations(module: Module) -> list[str]:
    tables = module.workload.tables
    out: list[str] = []
    if [op.table for op in module.lookups] != [t.name for t in tables]:
        out.append("lookups must hold one op per table, in table order")
    for op, t in zip(module.lookups, tables, strict=False):
        if (op.batch_size, op.pooling) != (module.workload.batch_size, t.pooling):
            out.append(f"lookup {op.table}: batch/pooling disagree with the workload")
    return out


def _previous_violations(module: Module) -> list[str]:
    out: list[str] = []
    for p in module.previous or ():
        if len(set(p.cores)) != p.parts or list(p.cores) != sorted(p.cores):
            out.append(f"previous placement of {p.table}: needs {p.parts} distinct cores in ascending order")
        elif p.cores[0] < 0 or p.cores[-1] >= module.target.cores:
            out.append(f"previous placement of {p.table}: cores {p.cores} do not all exist")
    return out


def _option_violations(module: Module) -> list[str]:
    out = []
    cap = module.target.local.capacity_bytes
    assert module.options is not None
    for entry in module.options:
        for o in entry.options:
            if not (len(o.part_costs) == len(o.local_bytes_per_part) == o.parts):
                out.append(f"option {o.table} {o.label}: needs one cost and one byte count per part")
            if o.parts > module.target.cores:
                out.append(f"option {o.table} {o.label}: {o.parts} parts on {module.target.cores} cores")
            if o.strategy.preloaded and max(o.local_bytes_per_part) > cap:
                out.append(
                    f"option {o.table} {o.label}: a part needs {max(o.local_bytes_per_part)} B of local buffer, "
                    f"cores have {cap}"
                )
    return out


def item_violations(
    tables: Sequence[TableSpec], target: TargetSpec, batch: int, items: Sequence[WorkItem]
) -> list[str]:
    out: list[str] = []
    if [it.id for it in items] != list(range(len(items))):
        out.append("item ids must be 0..n-1 in order")
    by_table: dict[str, list[WorkItem]] = defaultdict(list)
    known = {t.name: t for t in tables}
    for it in items:
        if it.table not in known:
            out.append(f"item {it.id}: unknown table {it.table!r}")
            continue
        if not 0 <= it.core < target.cores:
            out.append(f"item {it.id}: core {it.core} does not exist (target has {target.cores})")
        by_table[it.table].append(it)
    for t in tables:
        out += _table_item_violations(t, batch, by_table.get(t.name, []))
    used: dict[int, int] = defaultdict(int)
    for it in items:
        used[it.core] += it.local_bytes
    for core, used_bytes in sorted(used.items()):
        if used_bytes > target.local.capacity_bytes:
            out.append(
                f"core {core}: preloaded tables need {used_bytes} B, its {target.local.name} holds {target.local.capacity_bytes} B"
            )
    return out


def _table_item_violations(t: TableSpec, batch: int, items: list[WorkItem]) -> list[str]:
    lookups = items
    if not lookups:
        return [f"table {t.name}: no work item serves it"]
    out: list[str] = []
    if len({it.strategy for it in lookups}) > 1:
        out.append(f"table {t.name}: parts use different strategies")
    if len({it.core for it in lookups}) != len(lookups):
        out.append(f"table {t.name}: two parts on one core")
    whole_rows = all(it.rows == (0, t.rows) for it in lookups)
    whole_batch = all(it.samples == (0, batch) for it in lookups)
    if not (whole_rows or whole_batch):
        out.append(
            f"table {t.name}: cut both ways; every part must read all rows (a cut by samples) or the whole batch "
            "(a cut by rows)"
        )
    rects = np.array([(*it.rows, *it.samples) for it in lookups], dtype=np.int64)
    r0, r1, s0, s1 = rects.T
    if (
        (r0 < 0).any()
        or (r1 > t.rows).any()
        or (r0 >= r1).any()
        or (s0 < 0).any()
        or (s1 > batch).any()
        or (s0 >= s1).any()
    ):
        out.append(
            f"table {t.name}: an item's rows or samples fall outside {t.rows} rows x {batch} samples or are empty"
        )
    area = int(((r1 - r0) * (s1 - s0)).sum())
    if _overlap(rects, whole_rows, whole_batch, area, t.rows * batch):
        out.append(f"table {t.name}: two items serve the same (row, sample) lookups")
    elif area != t.rows * batch:
        out.append(f"table {t.name}: items cover {area} of {t.rows * batch} (row, sample) cells")
    for it in lookups:
        expected = (it.rows[1] - it.rows[0]) * t.row_bytes if it.strategy.preloaded else 0
        if it.local_bytes != expected:
            out.append(f"item {it.id}: holds {it.local_bytes} B locally, its strategy and rows need {expected} B")
    expected_output = "accumulate" if len({it.rows for it in lookups}) > 1 else "write"
    for it in lookups:
        if it.output != expected_output:
            out.append(f"item {it.id}: output mode {it.output!r}, but {t.name} needs {expected_output!r}")
    return out


def _overlap(rects: np.ndarray, whole_rows: bool, whole_batch: bool, area: int, cells: int) -> bool:
    """Whether two of a table's items (rows: r0, r1, s0, s1, half-open) serve a common (row, sample) cell.

    In O(n log n) time and O(n) memory, not by comparing every pair: a table cut one way is a set of
    intervals, which overlap when one starts before an earlier-starting one ends. A table cut both ways
    (itself a violation) overlaps when its areas sum to more than the cells, or to exactly the cells
    without tiling them (`_tiles`); where they sum to fewer, the caller reports the cells they miss."""
    if whole_rows or whole_batch:
        lo, hi = (rects[:, 2], rects[:, 3]) if whole_rows else (rects[:, 0], rects[:, 1])
        order = np.lexsort((hi, lo))
        ends = np.maximum.accumulate(hi[order])
        return bool((lo[order][1:] < ends[:-1]).any())
    return area > cells or (area == cells and not _tiles(rects))


def _tiles(rects: np.ndarray) -> bool:
    """Whether rectangles tile their bounding box exactly (no overlap, no gap): exactly when their areas sum
    to the box's and every corner point is the corner of an even number of them but the box's own four,
    each the corner of an odd number."""
    r0, r1, s0, s1 = rects.T
    if int(((r1 - r0) * (s1 - s0)).sum()) != (r1.max() - r0.min()) * (s1.max() - s0.min()):
        return False
    corners = np.concatenate([np.stack([r, s], axis=1) for r in (r0, r1) for s in (s0, s1)])
    points, counts = np.unique(corners, axis=0, return_counts=True)
    odd = {(int(r), int(s)) for r, s in points[counts % 2 == 1]}
    box = {(int(r), int(s)) for r in (r0.min(), r1.max()) for s in (s0.min(), s1.max())}
    return odd == box


def schedule_violations(target: TargetSpec, items: Sequence[WorkItem], schedules: Sequence[CoreSchedule]) -> list[str]:
    if [s.core for s in schedules] != list(range(target.cores)):
        return [f"schedules must hold one entry per core 0..{target.cores - 1}"]
    by_id = {it.id: it for it in items}
    out: list[str] = []
    finish: dict[int, float] = {}
    edges: tuple[list[int], list[int]] = ([], [])  # (before, after): each core's order, then the dependencies
    for sched in schedules:
        out += _core_schedule_violations(sched, by_id, edges, finish)
    if sorted(finish) != sorted(by_id) or sum(len(s.items) for s in schedules) != len(by_id):
        out.append("every item must appear in exactly one core's schedule")
    start_of = {i: s for sched in schedules for i, s in zip(sched.items, sched.start_s, strict=False)}
    for it in items:
        for d in it.depends_on:
            if d in by_id:  # an unknown item has no edge into it: it closes no cycle
                edges[0].append(d)
                edges[1].append(it.id)
            if d in finish and it.id in start_of and start_of[it.id] < finish[d] - TIME_TOLERANCE_S:
                out.append(f"item {it.id} starts before item {d}, which it depends on, finishes")
    if _has_cycle(list(by_id), edges):
        out.append("schedules and dependencies form a cycle")
    return out


def _has_cycle(nodes: list[int], edges: tuple[list[int], list[int]]) -> bool:
    """Whether the edges (before, after) between the nodes close a cycle: Kahn's algorithm, which takes the
    nodes nothing waits for, one at a time, and finds every node when there is none; O(nodes + edges), in
    flat arrays (a graph library's objects took about a kilobyte an item)."""
    index = {n: k for k, n in enumerate(nodes)}
    src = np.fromiter((index[a] for a in edges[0]), dtype=np.int64, count=len(edges[0]))
    dst = np.fromiter((index[b] for b in edges[1]), dtype=np.int64, count=len(edges[1]))
    order = np.argsort(src, kind="stable")
    after = dst[order].tolist()
    starts = np.searchsorted(src[order], np.arange(len(nodes) + 1)).tolist()
    waiting = np.bincount(dst, minlength=len(nodes)).tolist()
    ready = [k for k, w in enumerate(waiting) if w == 0]
    done = 0
    while ready:
        k = ready.pop()
        done += 1
        for m in after[starts[k] : starts[k + 1]]:
            waiting[m] -= 1
            if waiting[m] == 0:
                ready.append(m)
    return done < len(nodes)


def _core_schedule_violations(
    sched: CoreSchedule, by_id: dict[int, WorkItem], edges: tuple[list[int], list[int]], finish: dict[int, float]
) -> list[str]:
    """One core's schedule: its items, in order, each lasting its cost; chains them in `edges` (before,
    after) and records their finish times in `finish`."""
    if not len(sched.items) == len(sched.start_s) == len(sched.finish_s):
        return [f"core {sched.core}: schedule needs a start and finish per item"]
    out: list[str] = []
    prev_end, prev_id = 0.0, None
    for i, s, f in zip(sched.items, sched.start_s, sched.finish_s, strict=True):
        it = by_id.get(i)
        if it is None or it.core != sched.core:
            out.append(f"core {sched.core}: schedules item {i}, which is not on this core")
            continue
        if s < prev_end - TIME_TOLERANCE_S:
            out.append(f"core {sched.core}: item {i} starts before the previous one ends")
        if abs((f - s) - it.cost.total_s) > max(TIME_TOLERANCE_S, 1e-9 * it.cost.total_s):
            out.append(f"core {sched.core}: item {i} lasts {f - s:.3g} s, its cost is {it.cost.total_s:.3g} s")
        if prev_id is not None:
            edges[0].append(prev_id)
            edges[1].append(i)
        prev_end, prev_id = f, i
        finish[i] = f
    return out


def dataflow_graph(tables: Sequence[TableSpec], items: Sequence[WorkItem]) -> nx.DiGraph:
    """lookup(table) -> item -> output(table): the data flow of one batch, for checks and DOT export."""
    graph = nx.DiGraph()
    for t in tables:
        graph.add_node(f"lookup:{t.name}", kind="lookup")
        graph.add_node(f"output:{t.name}", kind="output")
    for it in items:
        node = f"item:{it.id}"
        graph.add_node(node, kind="item", core=it.core, strategy=it.strategy.value, output=it.output)
        graph.add_edge(f"lookup:{it.table}", node)
        for d in it.depends_on:
            graph.add_edge(f"item:{d}", node)
        graph.add_edge(node, f"output:{it.table}")
    return graph


def plan_violations(plan: ExecutionPlan) -> list[str]:
    out: list[str] = []
    if plan.schema_version != PLAN_SCHEMA:
        out.append(f"schema_version {plan.schema_version!r} is not {PLAN_SCHEMA!r}")
    if plan.workload_digest != plan.workload.digest():
        out.append("workload_digest does not match the embedded workload")
    if plan.target_digest != plan.target.digest():
        out.append("target_digest does not match the embedded target")
    if [t.name for t in plan.tables] != [t.name for t in plan.workload.tables]:
        out.append("tables must list the workload's tables in order")
    else:
        out += _plan_table_violations(plan)
    items = plan.work_items()
    out += item_violations(plan.workload.tables, plan.target, plan.workload.batch_size, items)
    out += schedule_violations(plan.target, items, plan.schedules())
    finish = max((c.finish_s for c in plan.cores), default=0.0)
    if abs(finish - plan.makespan_s) > max(1e-12, 1e-9 * finish):
        out.append(f"makespan_s {plan.makespan_s} differs from the last core's finish {finish}")
    if plan.lower_bound_s < 0:
        out.append(f"lower_bound_s {plan.lower_bound_s} is negative")
    if plan.lower_bound_s > plan.makespan_s * (1 + 1e-9):
        out.append(f"lower_bound_s {plan.lower_bound_s} exceeds makespan_s {plan.makespan_s}")
    moves = plan.solver.moves
    if moves is not None:
        if moves.kept_tables + moves.moved_tables + moves.free_tables != len(plan.tables):
            out.append(f"solver.moves: kept, moved and free tables do not add up to the {len(plan.tables)} tables")
        if moves.max_moves is not None and moves.moved_tables > moves.max_moves:
            out.append(f"solver.moves: {moves.moved_tables} tables moved, at most {moves.max_moves} may")
        if not moves.moved_tables <= moves.moved_items <= len(plan.items):
            out.append(f"solver.moves: {moves.moved_items} moved items for {moves.moved_tables} moved tables")
    return out


def _plan_table_violations(plan: ExecutionPlan) -> list[str]:
    """The plan's table summaries restate the embedded workload and the items: runtimes may read either."""
    out = []
    by_table: dict[str, list[PlanItem]] = defaultdict(list)
    for it in plan.items:
        by_table[it.table].append(it)
    for pt, t in zip(plan.tables, plan.workload.tables, strict=True):
        facts = (t.rows, t.dim, t.dtype, t.pooling, t.distribution, t.bytes)
        if (pt.rows, pt.dim, pt.dtype, pt.pooling, pt.distribution, pt.bytes) != facts:
            out.append(f"tables entry {pt.name} disagrees with the workload's table {t.name}")
        parts = by_table[t.name]
        if parts and (pt.parts != len(parts) or pt.strategy != parts[0].strategy):
            out.append(f"tables entry {pt.name}: parts or strategy disagree with its {len(parts)} items")
    return out


def verify_plan(plan: ExecutionPlan) -> None:
    violations = plan_violations(plan)
    if violations:
        raise VerificationError(violations, "plan")
