"""`compile`: workload + target -> verified ExecutionPlan, through a named or textual pass pipeline."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from embmap.ir.cost_profile import CostProfile
from embmap.ir.errors import SpecError
from embmap.ir.loader import validate
from embmap.ir.lowering import lower
from embmap.ir.module import Module
from embmap.ir.plan import ExecutionPlan
from embmap.ir.spec import Distribution, HotTables, TargetSpec, WorkloadSpec, target_difference
from embmap.ir.targets import builtin_target
from embmap.ir.verify import verify_plan
from embmap.mapper.backend import emit_plan
from embmap.mapper.pipelines import BASELINES, PIPELINES, pipeline_for
from embmap.mapper.profiles import default_profile
from embmap.passes import PassManager, parse_pipeline, pipeline_text
from embmap.passes.assign_cores import AssignCoresPass
from embmap.passes.base import Instrument, ModulePass, PassContext
from embmap.passes.solver.progress import ProgressListener
from embmap.passes.solver.replan import previous_placement
from embmap.passes.solver.settings import SolverSettings


def resolve_target(target: TargetSpec | str, cores: int | None = None) -> TargetSpec:
    """A TargetSpec, a built-in name or a file path as a TargetSpec; `cores` overrides its number of cores
    (the same chip with more or fewer cores, e.g. for scaling studies)."""
    if isinstance(target, TargetSpec):
        spec = target
    else:
        from pathlib import Path

        from embmap.ir.loader import read_document

        if Path(target).suffix.lower() in (".yaml", ".yml", ".json") or "/" in target:
            spec = validate(TargetSpec, read_document(Path(target), "target"), "target")
        else:
            spec = builtin_target(target)
    if cores is None:
        return spec
    return validate(TargetSpec, {**spec.model_dump(), "cores": cores}, "target")


def prepare_workload(
    workload: WorkloadSpec | str,
    batch: int | None = None,
    row_cap: int | None = None,
    distribution: Distribution | None = None,
    hot_tables: HotTables | None = None,
) -> WorkloadSpec:
    from embmap.mapper.workloads import resolve_workload

    spec = resolve_workload(workload) if isinstance(workload, str) else workload
    update: dict[str, object] = {}
    if batch is not None:
        if batch <= 0:
            raise SpecError("batch", f"must be > 0, got {batch}", "give a positive batch size")
        update["batch_size"] = batch
    if row_cap is not None:
        if row_cap < 0:
            raise SpecError("row_cap", f"must be >= 0, got {row_cap}", "give a positive cap, or 0 for none")
        update["row_cap"] = row_cap or None
    if distribution is not None:
        update["distribution"] = distribution
        update["tables"] = tuple(t.model_copy(update={"distribution": None}) for t in spec.tables)
    if hot_tables is not None:
        update["hot_tables"] = hot_tables
    if not update:
        return spec
    # model_copy does not validate: check the overridden workload as if it had been written so (bounds
    # on the batch size, the pooling factors hot_tables produces, ...).
    return validate(WorkloadSpec, spec.model_copy(update=update).model_dump(), "workload")


def with_max_moves(passes: tuple[ModulePass, ...], max_moves: int | None) -> tuple[ModulePass, ...]:
    """The passes with `max_moves` set on assign-cores (None keeps the pipeline's value)."""
    if max_moves is not None and max_moves < 0:
        raise SpecError("max_moves", f"must be >= 0, got {max_moves}", "give 0 to keep every table that can stay")
    if not any(isinstance(p, AssignCoresPass) for p in passes):
        raise SpecError("previous", "needs a pipeline with assign-cores", "add assign-cores to the pipeline")
    if max_moves is None:
        return passes
    return tuple(dataclasses.replace(p, max_moves=max_moves) if isinstance(p, AssignCoresPass) else p for p in passes)


def check_previous_target(previous: ExecutionPlan, target: TargetSpec) -> None:
    """A previous plan names cores: it must be for the same cores and memories (its workload may differ)."""
    difference = target_difference(previous.target, target)
    if difference:
        raise SpecError(
            "previous.target",
            f"the previous plan was compiled for {previous.target.name}; target {target.name} {difference}",
            f"give a previous plan compiled with --target {target.name}, or compile without --previous",
        )


def run_pipeline(
    module: Module, passes: tuple[ModulePass, ...], ctx: PassContext | None = None, verify_each: bool = True
) -> Module:
    return PassManager(passes, verify_each=verify_each).run(module, ctx)


def compile(  # noqa: A001 - the verb users expect
    workload: WorkloadSpec | str,
    target: TargetSpec | str,
    pipeline: str = "embmap",
    *,
    cost_profile: CostProfile | None = None,
    batch: int | None = None,
    row_cap: int | None = None,
    distribution: Distribution | None = None,
    hot_tables: HotTables | None = None,
    cores: int | None = None,
    solver: SolverSettings | None = None,
    progress: ProgressListener | None = None,
    instruments: Iterable[Instrument] = (),
    baselines: bool = True,
    verify_each: bool = True,
    previous: ExecutionPlan | None = None,
    max_moves: int | None = None,
) -> ExecutionPlan:
    """Compile a workload for a target into a verified execution plan.

    `workload` is a WorkloadSpec, a built-in name, a `synthetic:...` recipe or a file path; `target` a
    TargetSpec, a built-in name or a file path, with `cores` cores if given; `pipeline` a named pipeline or a
    pass list. With `baselines`, the plan also records the predicted makespan of each baseline pipeline under
    the same cost model.
    With `previous`, a plan for the same target and any workload, the plan is re-planned from it: each table
    keeps its previous placement unless moving it pays, at most `max_moves` tables move (None: no bound, or
    the pipeline's assign-cores{max-moves}), and the solver report counts the moves.

    `solver` says how CP-SAT searches (default `SolverSettings()`: 2 s of deterministic time, one worker, seed
    0); it, `progress` and the `instruments` reach every pass in one `PassContext`. `progress` is called with
    each improvement of the CP-SAT search (see `passes.solver.progress`); without it the compile prints
    nothing. A Ctrl-C while the search runs (main thread) stops it: the compile goes on with the best plan
    found so far, and the plan's `solver.interrupted` says so.
    """
    spec = prepare_workload(workload, batch, row_cap, distribution, hot_tables)
    tgt = resolve_target(target, cores)
    profile = cost_profile or default_profile(tgt)
    passes = parse_pipeline(pipeline_for(pipeline))
    settings = solver or SolverSettings()
    ctx = PassContext(settings, progress, tuple(instruments))
    base = lower(spec, tgt, profile)
    module = base
    if previous is None and max_moves is not None:
        raise SpecError("max_moves", "bounds the moves from a previous plan, and none was given", "give --previous")
    if previous is not None:
        check_previous_target(previous, tgt)
        passes = with_max_moves(passes, max_moves)
        module = base.model_copy(update={"previous": previous_placement(previous)})
    module = run_pipeline(module, passes, ctx, verify_each)
    reference = {}
    if baselines:
        for name in BASELINES:
            if pipeline_for(name) != pipeline_for(pipeline):
                baseline = run_pipeline(base, parse_pipeline(PIPELINES[name][0]), PassContext(settings))
                reference[name] = baseline.makespan_s or 0.0
    plan = emit_plan(module, pipeline_text(passes), reference)
    verify_plan(plan)
    return plan
