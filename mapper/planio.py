"""Reading and writing plan files: atomic writes, and loads that refuse what they cannot trust."""

from __future__ import annotations

import json
from pathlib import Path

from ir.errors import SpecError
from ir.loader import MAX_SPEC_BYTES, validate, write_text_atomic
from ir.plan import PLAN_SCHEMA, ExecutionPlan
from ir.verify import verify_plan

MAX_PLAN_BYTES = 16 * MAX_SPEC_BYTES


def save_plan(plan: ExecutionPlan, path: Path) -> None:
    write_text_atomic(path, plan.model_dump_json(indent=1) + "\n")


def load_plan(path: Path) -> ExecutionPlan:
    path = Path(path)
    if not path.is_file():
        raise SpecError("plan", f"no such file {str(path)!r}", "give the path written by `embmap compile -o`")
    if path.stat().st_size > MAX_PLAN_BYTES:
        raise SpecError("plan", f"{path} is larger than {MAX_PLAN_BYTES} bytes", "give a plan written by embmap")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(
            "plan", f"{path} is not valid JSON ({exc})", "give a plan written by `embmap compile -o`"
        ) from None
    if not isinstance(data, dict):
        raise SpecError("plan", "must be a JSON object", "give a plan written by `embmap compile -o`")
    version = data.get("schema_version")
    if version != PLAN_SCHEMA:
        raise SpecError(
            "plan.schema_version",
            f"is {version!r}, this embmap reads {PLAN_SCHEMA!r}",
            "recompile the plan with this version of embmap",
        )
    plan = validate(ExecutionPlan, data, "plan")
    verify_plan(plan)
    return plan
