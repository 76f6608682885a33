"""Reading and writing plan files: atomic writes, and loads that refuse what they cannot trust."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from embmap.ir.cluster import CLUSTER_PLAN_SCHEMA, ClusterPlan, verify_cluster_plan
from embmap.ir.errors import SpecError, VerificationError
from embmap.ir.loader import MAX_SPEC_BYTES, load_json, validate
from embmap.ir.output import write_text_atomic
from embmap.ir.plan import PLAN_SCHEMA, ExecutionPlan
from embmap.ir.printer import printable
from embmap.ir.spec import TargetSpec, WorkloadSpec, target_difference, workload_difference
from embmap.ir.verify import verify_plan

MAX_PLAN_BYTES = 16 * MAX_SPEC_BYTES
EDITED_PLAN_FIX = "recompile it with `embmap compile -o`; plans are not meant to be edited by hand"
Plan = TypeVar("Plan", ExecutionPlan, ClusterPlan)


def save_plan(plan: ExecutionPlan | ClusterPlan, path: Path) -> None:
    write_text_atomic(path, plan.model_dump_json(indent=1) + "\n")


def load_plan(
    path: Path, workload: WorkloadSpec | str | None = None, target: TargetSpec | str | None = None
) -> ExecutionPlan:
    """A single-device execution plan, validated and verified. Given a `workload` (a spec, a built-in name,
    a synthetic recipe or a file) or a `target`, the plan must have been compiled for them: the same batch
    size and tables (names, rows after the row cap, dims, dtypes, pooling, distributions), the same cores
    and memories. Otherwise it is refused, naming the first difference."""
    plan = load_any_plan(path)
    if isinstance(plan, ClusterPlan):
        raise SpecError(
            "plan.schema_version",
            f"is {CLUSTER_PLAN_SCHEMA!r}, a plan across devices; this command takes one device's plan",
            "compile without --devices, or use `embmap explain` / `embmap export` on it",
        )
    if workload is not None:
        check_plan_workload(plan, workload)
    if target is not None:
        check_plan_target(plan, target)
    return plan


def check_plan_workload(plan: ExecutionPlan, workload: WorkloadSpec | str) -> None:
    """Refuse `plan` for a workload other than the one it was compiled for."""
    from embmap.mapper.compiler import prepare_workload

    given = prepare_workload(workload)
    difference = workload_difference(plan.workload, given)
    if difference:
        cap = f" (compiled with row cap {plan.workload.row_cap:,})" if plan.workload.row_cap else ""
        raise SpecError(
            "plan.workload",
            f"was compiled for {printable(plan.workload.name)}{cap}; workload {printable(given.name)} {difference}",
            f"recompile the plan for {printable(given.name)}, or give the workload it was compiled for",
        )


def check_plan_target(plan: ExecutionPlan, target: TargetSpec | str) -> None:
    """Refuse `plan` for a target other than the one it was compiled for."""
    from embmap.mapper.compiler import resolve_target

    given = resolve_target(target)
    difference = target_difference(plan.target, given)
    if difference:
        raise SpecError(
            "plan.target",
            f"was compiled for {printable(plan.target.name)}; target {printable(given.name)} {difference}",
            f"recompile the plan with --target {printable(given.name)}",
        )


def load_any_plan(path: Path) -> ExecutionPlan | ClusterPlan:
    """A plan for one device or across devices (by its schema version), validated and verified."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("plan", f"no such file {str(path)!r}", "give the path written by `embmap compile -o`")
    if path.stat().st_size > MAX_PLAN_BYTES:
        raise SpecError("plan", f"{path} is larger than {MAX_PLAN_BYTES} bytes", "give a plan written by embmap")
    try:
        data = load_json(path.read_text(encoding="utf-8"), "plan")
    except RecursionError:
        raise SpecError("plan", f"{path} is nested too deeply", "give a plan written by `embmap compile -o`") from None
    except (ValueError, OSError) as exc:  # bad JSON or UTF-8, integers of too many digits, unreadable file
        raise SpecError(
            "plan", f"{path} is not valid JSON ({str(exc)[:120]})", "give a plan written by `embmap compile -o`"
        ) from None
    if not isinstance(data, dict):
        raise SpecError("plan", "must be a JSON object", "give a plan written by `embmap compile -o`")
    version = data.get("schema_version")
    if version == CLUSTER_PLAN_SCHEMA:
        cluster = validate(ClusterPlan, data, "plan")
        check_cluster_digests(cluster)
        _verified(verify_cluster_plan, cluster)
        return cluster
    if version != PLAN_SCHEMA:
        raise SpecError(
            "plan.schema_version",
            f"is {version!r}, this embmap reads {PLAN_SCHEMA!r} and {CLUSTER_PLAN_SCHEMA!r}",
            "recompile the plan with this version of embmap",
        )
    plan = validate(ExecutionPlan, data, "plan")
    check_digests(plan)
    _verified(verify_plan, plan)
    return plan


def check_digests(plan: ExecutionPlan, where: str = "plan") -> None:
    """The embedded workload and target are the ones the plan was compiled for: edited by hand, the plan's
    items and costs no longer describe them. An integrity check against edits and damage, not a signature:
    whoever edits a plan can recompute the digests (docs/plan-format.md, "Digests")."""
    _check_digest(f"{where}.workload", plan.workload.digest(), plan.workload_digest)
    _check_digest(f"{where}.target", plan.target.digest(), plan.target_digest)


def check_cluster_digests(plan: ClusterPlan) -> None:
    """As `check_digests`, for a plan across devices: its workload and cluster, and every device's plans."""
    _check_digest("plan.workload", plan.workload.digest(), plan.workload_digest)
    _check_digest("plan.cluster", plan.cluster.digest(), plan.cluster_digest)
    for d in plan.devices:
        for i, p in enumerate(d.plans):
            check_digests(p, f"plan.devices[{d.device}].plans[{i}]")


def _check_digest(field: str, actual: str, recorded: str) -> None:
    if actual != recorded:
        raise SpecError(
            field,
            f"was edited after compiling: its digest is {actual}, the plan was compiled for {printable(recorded)}",
            "recompile the plan rather than edit it (embmap compile ... -o PLAN)",
        )


def _verified(verify: Callable[[Plan], None], plan: Plan) -> None:
    """Verify a loaded plan; a violation means the file was edited or damaged, so say how to get a good one."""
    try:
        verify(plan)
    except VerificationError as exc:
        raise VerificationError(exc.violations, exc.field, fix=EDITED_PLAN_FIX) from None
