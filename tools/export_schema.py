"""Regenerate docs/plan.schema.json, docs/example-plan.json, docs/workload.schema.json and docs/target.schema.json.

Usage (from the repository root): python tools/export_schema.py
The schemas are the JSON Schemas of `ir.plan.ExecutionPlan` and of the input files, `ir.spec.WorkloadSpec`
(docs/workloads.md) and `ir.spec.TargetSpec` (docs/targets.md); the example is the plan of the built-in
workload `tenrec-qb-article` on `ascend910`, compiled with a fixed solver seed, one worker and a 5 s time limit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from pydantic import BaseModel  # noqa: E402

from embmap.ir.output import write_text_atomic  # noqa: E402
from embmap.ir.plan import ExecutionPlan  # noqa: E402
from embmap.ir.spec import TargetSpec, WorkloadSpec  # noqa: E402

DOCS = ROOT / "docs"
SCHEMA_PATH = DOCS / "plan.schema.json"
EXAMPLE_PATH = DOCS / "example-plan.json"
INPUT_SCHEMAS: dict[str, type[BaseModel]] = {"workload.schema.json": WorkloadSpec, "target.schema.json": TargetSpec}
EXAMPLE_WORKLOAD = "tenrec-qb-article"
EXAMPLE_TARGET = "ascend910"


def schema_text(model: type[BaseModel] = ExecutionPlan) -> str:
    """The JSON Schema of a model, as written to docs/: an execution plan's by default."""
    return json.dumps(model.model_json_schema(), indent=1) + "\n"


def example_text() -> str:
    """A compiled example plan, as written to docs/example-plan.json."""
    from embmap.mapper import SolverSettings, compile

    plan = compile(EXAMPLE_WORKLOAD, EXAMPLE_TARGET, solver=SolverSettings(time_limit_s=5.0, workers=1, seed=0))
    return plan.model_dump_json(indent=1) + "\n"


def main() -> int:
    DOCS.mkdir(exist_ok=True)
    write_text_atomic(SCHEMA_PATH, schema_text())
    print(f"wrote {SCHEMA_PATH.relative_to(ROOT)}")
    for name, model in INPUT_SCHEMAS.items():
        write_text_atomic(DOCS / name, schema_text(model))
        print(f"wrote docs/{name}")
    write_text_atomic(EXAMPLE_PATH, example_text())
    print(f"wrote {EXAMPLE_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
