"""Regenerate docs/plan.schema.json and docs/example-plan.json.

Usage (from the repository root): python tools/export_schema.py
The schema is the JSON Schema of `ir.plan.ExecutionPlan`; the example is the plan of the built-in workload
`tenrec-qb-article` on `ascend910`, compiled with a fixed solver seed, one worker and a 5 s time limit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from embmap.ir.plan import ExecutionPlan  # noqa: E402

DOCS = ROOT / "docs"
SCHEMA_PATH = DOCS / "plan.schema.json"
EXAMPLE_PATH = DOCS / "example-plan.json"
EXAMPLE_WORKLOAD = "tenrec-qb-article"
EXAMPLE_TARGET = "ascend910"


def schema_text() -> str:
    """The JSON Schema of an execution plan, as written to docs/plan.schema.json."""
    return json.dumps(ExecutionPlan.model_json_schema(), indent=1) + "\n"


def example_text() -> str:
    """A compiled example plan, as written to docs/example-plan.json."""
    from embmap.mapper import SolverOptions, compile

    plan = compile(EXAMPLE_WORKLOAD, EXAMPLE_TARGET, solver=SolverOptions(time_limit=5.0, workers=1, seed=0))
    return plan.model_dump_json(indent=1) + "\n"


def main() -> int:
    DOCS.mkdir(exist_ok=True)
    SCHEMA_PATH.write_text(schema_text(), encoding="utf-8")
    print(f"wrote {SCHEMA_PATH.relative_to(ROOT)}")
    EXAMPLE_PATH.write_text(example_text(), encoding="utf-8")
    print(f"wrote {EXAMPLE_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
