"""Reading and writing plan files: atomic writes, and loads that refuse what they cannot trust."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ir.cluster import CLUSTER_PLAN_SCHEMA, ClusterPlan, verify_cluster_plan
from ir.errors import SpecError, VerificationError
from ir.loader import MAX_SPEC_BYTES, validate, write_text_atomic
from ir.plan import PLAN_SCHEMA, ExecutionPlan
from ir.verify import verify_plan

MAX_PLAN_BYTES = 16 * MAX_SPEC_BYTES
EDITED_PLAN_FIX = "recompile it with `embmap compile -o`; plans are not meant to be edited by hand"
Plan = TypeVar("Plan", ExecutionPlan, ClusterPlan)


def save_plan(plan: ExecutionPlan | ClusterPlan, path: Path) -> None:
    write_text_atomic(path, plan.model_dump_json(indent=1) + "\n")


def load_plan(path: Path) -> ExecutionPlan:
    """A single-device execution plan, validated and verified."""
    plan = load_any_plan(path)
    if isinstance(plan, ClusterPlan):
        raise SpecError(
            "plan.schema_version",
            f"is {CLUSTER_PLAN_SCHEMA!r}, a plan across devices; this command takes one device's plan",
            "compile without --devices, or use `embmap explain` / `embmap export` on it",
        )
    return plan


def load_any_plan(path: Path) -> ExecutionPlan | ClusterPlan:
    """A plan for one device or across devices (by its schema version), validated and verified."""
    path = Path(path)
    if not path.is_file():
        raise SpecError("plan", f"no such file {str(path)!r}", "give the path written by `embmap compile -o`")
    if path.stat().st_size > MAX_PLAN_BYTES:
        raise SpecError("plan", f"{path} is larger than {MAX_PLAN_BYTES} bytes", "give a plan written by embmap")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
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
        _verified(verify_cluster_plan, cluster)
        return cluster
    if version != PLAN_SCHEMA:
        raise SpecError(
            "plan.schema_version",
            f"is {version!r}, this embmap reads {PLAN_SCHEMA!r} and {CLUSTER_PLAN_SCHEMA!r}",
            "recompile the plan with this version of embmap",
        )
    plan = validate(ExecutionPlan, data, "plan")
    _verified(verify_plan, plan)
    return plan


def _verified(verify: Callable[[Plan], None], plan: Plan) -> None:
    """Verify a loaded plan; a violation means the file was edited or damaged, so say how to get a good one."""
    try:
        verify(plan)
    except VerificationError as exc:
        raise VerificationError(exc.violations, exc.field, fix=EDITED_PLAN_FIX) from None
