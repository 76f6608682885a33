"""The published plan format: docs/plan.schema.json matches the code, and docs/example-plan.json is a valid plan."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from embmap.ir.errors import SpecError
from embmap.ir.plan import PLAN_SCHEMA, ExecutionPlan
from embmap.ir.verify import plan_violations, verify_plan
from embmap.mapper.planio import load_plan
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "docs" / "plan.schema.json"
EXAMPLE = ROOT / "docs" / "example-plan.json"
FORMAT_DOC = ROOT / "docs" / "plan-format.md"


def _export_schema() -> ModuleType:
    return load_script("tools/export_schema.py", "export_schema")


def _example_data() -> dict[str, Any]:
    data = json.loads(EXAMPLE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def example() -> ExecutionPlan:
    return ExecutionPlan.model_validate(_example_data())


def test_committed_schema_matches_the_code() -> None:
    assert SCHEMA.read_text(encoding="utf-8") == _export_schema().schema_text(), (
        "docs/plan.schema.json is out of date with ir.plan.ExecutionPlan: run `make schema`"
    )


def test_schema_pins_the_version() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["properties"]["schema_version"]["const"] == PLAN_SCHEMA
    assert schema["additionalProperties"] is False
    assert PLAN_SCHEMA in FORMAT_DOC.read_text(encoding="utf-8")


def test_example_is_a_verified_plan(example: ExecutionPlan) -> None:
    assert example.schema_version == PLAN_SCHEMA
    verify_plan(example)
    assert plan_violations(example) == []
    assert load_plan(EXAMPLE) == example


def test_example_survives_a_json_round_trip(example: ExecutionPlan) -> None:
    again = ExecutionPlan.model_validate_json(example.model_dump_json())
    assert again == example
    assert json.loads(again.model_dump_json()) == _example_data()


def test_out_of_range_core_is_reported() -> None:
    data = _example_data()
    cores = data["target"]["cores"]
    data["items"][0]["core"] = cores
    violations = plan_violations(ExecutionPlan.model_validate(data))
    assert violations
    assert any(f"item 0: core {cores} does not exist" in v for v in violations), violations


def test_missing_item_is_reported_as_incomplete_coverage() -> None:
    data = _example_data()
    removed = data["items"].pop()
    for core in data["cores"]:
        core["items"] = [i for i in core["items"] if i != removed["id"]]
    violations = plan_violations(ExecutionPlan.model_validate(data))
    table = removed["table"]
    assert any(
        v.startswith(f"table {table}: items cover") or v == f"table {table}: no work item serves it" for v in violations
    ), violations


def test_other_schema_versions_are_refused(tmp_path: Path) -> None:
    data = _example_data()
    data["schema_version"] = "embmap.plan/2"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(SpecError, match="schema_version"):
        load_plan(path)


def test_annotated_excerpt_matches_the_example_plan() -> None:
    """The excerpt in docs/plan-format.md is copied from docs/example-plan.json; it must not drift."""
    doc = FORMAT_DOC.read_text()
    start = doc.index("```json", doc.index("Trimmed from `docs/example-plan.json`")) + len("```json")
    excerpt = json.loads(doc[start : doc.index("```", start)])
    example = json.loads(EXAMPLE.read_text())
    items = {it["id"]: it for it in example["items"]}
    assert all(items[it["id"]] == it for it in excerpt["items"])
    assert excerpt["makespan_s"] == example["makespan_s"] and excerpt["lower_bound_s"] == example["lower_bound_s"]
    assert excerpt["tables"][0] in example["tables"]
