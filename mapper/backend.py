"""The backend: an annotated module becomes an ExecutionPlan."""

from __future__ import annotations

from collections import defaultdict
from importlib.metadata import PackageNotFoundError, version

from embmap.cost_models.table_facts import table_profiles
from embmap.ir.errors import PipelineError
from embmap.ir.module import Module
from embmap.ir.plan import ExecutionPlan, PartitionMode, PlanCore, PlanItem, PlanTable, WorkItem
from embmap.passes.solver.space import space_bound_s


def tool_version() -> str:
    try:
        return f"embmap {version('embmap')}"
    except PackageNotFoundError:
        return "embmap (source tree)"


def emit_plan(
    module: Module, pipeline: str, baselines_s: dict[str, float] | None = None, *, whole_space: bool = True
) -> ExecutionPlan:
    """The plan of an assigned and scheduled module. The module keeps its bound and solver report in busy time;
    here, and only here, the per-core start-up every plan pays once is added to them. The passes' bounds cover
    their menus; the plan's bound covers every plan the format allows (`solver.space`), the menu's moving to
    `solver.menu_bound_s`. Without `whole_space` (calibration's forced plans, which measure one option and
    are never compiled for a user), the plan keeps the menu's bound and says so (`solver.part_counts` "forced")."""
    if module.items is None or module.schedules is None or module.solver is None or module.lower_bound_s is None:
        raise PipelineError(
            "pipeline", "did not assign and schedule the work", "end the pipeline with assign-cores,schedule"
        )
    start = {i: s for sched in module.schedules for i, s in zip(sched.items, sched.start_s, strict=True)}
    finish = {i: f for sched in module.schedules for i, f in zip(sched.items, sched.finish_s, strict=True)}
    items = tuple(PlanItem(**dict(it), start_s=start[it.id], finish_s=finish[it.id]) for it in module.items)
    by_table: dict[str, list[WorkItem]] = defaultdict(list)
    local_bytes = [0] * module.target.cores
    for it in module.items:
        by_table[it.table].append(it)
        local_bytes[it.core] += it.local_bytes
    tables = []
    for t in module.workload.tables:
        parts = by_table[t.name]
        mode = PartitionMode.ROWS if len({p.rows for p in parts}) > 1 else PartitionMode.SAMPLES
        assert t.distribution is not None
        tables.append(
            PlanTable(
                name=t.name,
                rows=t.rows,
                dim=t.dim,
                dtype=t.dtype,
                pooling=t.pooling,
                distribution=t.distribution,
                strategy=parts[0].strategy,
                mode=mode,
                parts=len(parts),
                bytes=t.bytes,
            )
        )
    cores = tuple(
        PlanCore(
            core=s.core,
            items=s.items,
            busy_s=s.busy_s,
            finish_s=s.finish_s[-1] if s.finish_s else 0.0,
            local_bytes=local_bytes[s.core],
        )
        for s in module.schedules
    )
    makespan = module.makespan_s or 0.0
    start_up = module.cost_profile.core_start_s
    if whole_space:
        profiled = module if module.table_profiles else module.model_copy(update={"table_profiles": table_profiles(module)})
        space, counts = space_bound_s(profiled), module.part_counts
    else:
        space, counts = module.lower_bound_s, "forced"
    return ExecutionPlan(
        generator=tool_version(),
        pipeline=pipeline,
        workload_digest=module.workload.digest(),
        target_digest=module.target.digest(),
        workload=module.workload,
        target=module.target,
        cost_profile=module.cost_profile,
        tables=tuple(tables),
        items=items,
        cores=cores,
        makespan_s=makespan,
        lower_bound_s=space + start_up,
        total_work_s=sum(it.cost.total_s for it in module.items),
        solver=module.solver.with_start_up(start_up)
        .over_whole_space(makespan, space + start_up)
        .model_copy(update={"part_counts": counts}),
        baselines_s=baselines_s or {},
    )
