"""The input formats as documented: docs/workloads.md and docs/targets.md list every field of the specs with
its default, their YAML examples load through the loaders the command line uses and compile, the committed
JSON Schemas match the code, and the loader rules their Notes call surprising still hold."""

from __future__ import annotations

import enum
import inspect
import io
import json
import re
from contextlib import redirect_stdout
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from embmap.ir.errors import SpecError
from embmap.ir.spec import (
    Empirical,
    HotSet,
    HotTables,
    MemorySpec,
    TableSpec,
    TargetSpec,
    TLBSpec,
    Uniform,
    WorkloadSpec,
    Zipf,
)
from embmap.ir.targets import BUILTIN_TARGETS, ascend910
from embmap.mapper import compile
from embmap.mapper.cli import main
from embmap.mapper.compiler import resolve_target
from embmap.mapper.workloads import builtin_workload, resolve_workload
from embmap.mapper.workloads.synthetic import parse_recipe, synthetic
from tests.conftest import load_script

ROOT = Path(__file__).resolve().parents[1]
WORKLOADS_DOC = ROOT / "docs" / "workloads.md"
TARGETS_DOC = ROOT / "docs" / "targets.md"
YAML_BLOCK = re.compile(r"(?:<!-- file: (?P<name>[\w.\-]+) -->\n)?```yaml\n(?P<body>.*?)```", re.DOTALL)

# Each field table of the pages: (page, heading) -> the models whose fields it lists.
FIELD_TABLES: dict[tuple[Path, str], tuple[type[BaseModel], ...]] = {
    (WORKLOADS_DOC, "### The workload"): (WorkloadSpec,),
    (WORKLOADS_DOC, "### Tables"): (TableSpec,),
    (WORKLOADS_DOC, "### Index distributions"): (Uniform, Zipf, HotSet),
    (WORKLOADS_DOC, "### Empirical distributions"): (Empirical,),
    (WORKLOADS_DOC, "### Hot tables"): (HotTables,),
    (TARGETS_DOC, "### The target"): (TargetSpec,),
    (TARGETS_DOC, "### Memories"): (MemorySpec,),
    (TARGETS_DOC, "### TLB"): (TLBSpec,),
}


def _example_files(page: Path, tmp_path: Path) -> list[str]:
    """Every YAML example of the page written as the file it names (or example-N.yaml), as paths."""
    paths = []
    for i, m in enumerate(YAML_BLOCK.finditer(page.read_text(encoding="utf-8"))):
        path = tmp_path / (m["name"] or f"example-{i}.yaml")
        path.write_text(m["body"], encoding="utf-8")
        paths.append(str(path))
    return paths


def _documented_defaults(page: Path, heading: str) -> dict[str, str]:
    """field -> the default column of the field tables under `heading` (up to the next heading)."""
    text = page.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n")
    end = text.find("\n#", start + len(heading) + 2)
    rows = {}
    for line in text[start : end if end > 0 else None].splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"`\w+`", cells[0]):
            rows[cells[0].strip("`")] = cells[3].strip("`")
    return rows


def _shown_default(field: FieldInfo) -> str:
    """A field's default as the pages write it: YAML, or `required`."""
    if field.is_required():
        return "required"
    value: Any = field.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, enum.Enum):
        value = value.value
    elif isinstance(value, tuple):
        value = list(value)
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("...\n").strip()


@pytest.mark.parametrize(("page", "heading"), FIELD_TABLES, ids=lambda v: getattr(v, "name", v))
def test_every_field_is_documented_with_its_default(page: Path, heading: str) -> None:
    expected: dict[str, str] = {}
    for model in FIELD_TABLES[(page, heading)]:
        for name, field in model.model_fields.items():
            # A file must name its distribution's kind (it picks the model), whatever default Python gives it.
            expected[name] = "required" if name == "kind" else _shown_default(field)
    assert _documented_defaults(page, heading) == expected, f"{page.name}, {heading}: update the field table"


def test_every_synthetic_key_is_documented_with_its_default() -> None:
    text = WORKLOADS_DOC.read_text(encoding="utf-8")
    section = text[text.index("\n## Synthetic workloads\n") : text.index("\n## Built-in workloads\n")]
    documented = {}
    for line in section.splitlines():
        cells = [c.strip().strip("`") for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and re.fullmatch(r"`\w+`", line.split("|")[1].strip()):
            documented[cells[0]] = cells[2]
    defaults = {k: v.default for k, v in inspect.signature(synthetic).parameters.items()}
    assert set(documented) == set(defaults)
    assert set(parse_recipe(",".join(f"{k}={v}" for k, v in documented.items()))) == set(defaults)
    assert documented.pop("name") == "synthetic-<tables>t-s<seed>" and defaults.pop("name") is None
    assert tuple(int(d) for d in documented.pop("dims").split(":")) == defaults.pop("dims")
    assert {k: float(v) for k, v in documented.items()} == defaults


def test_the_huawei_like_workload_is_the_recipe_the_page_gives() -> None:
    recipe = re.search(r"`(synthetic:[^`]*)`\s+named `huawei-25mb-like`", WORKLOADS_DOC.read_text(encoding="utf-8"))
    assert recipe is not None
    assert resolve_workload(recipe.group(1) + ",name=huawei-25mb-like") == builtin_workload("huawei-25mb-like")


def test_workload_examples_load_and_compile_for_the_target_examples(tmp_path: Path) -> None:
    workloads = [resolve_workload(p) for p in _example_files(WORKLOADS_DOC, tmp_path)]
    targets = [resolve_target(p) for p in _example_files(TARGETS_DOC, tmp_path)]
    assert len(workloads) >= 2 and len(targets) >= 2
    complete = workloads[0]
    for model in (WorkloadSpec, TableSpec):  # the first example gives every field of the workload and a table
        given = (
            complete.model_fields_set
            if model is WorkloadSpec
            else set().union(*(t.model_fields_set for t in complete.tables))
        )
        assert given == set(model.model_fields), f"the complete example leaves out {set(model.model_fields) - given}"
    assert targets[0].model_fields_set == set(TargetSpec.model_fields), "the complete target example leaves out fields"
    for workload in workloads:
        for target in targets:
            plan = compile(workload, target, baselines=False)
            assert plan.workload.name == workload.name and plan.target == target
            assert 0 < plan.lower_bound_s <= plan.makespan_s * (1 + 1e-9)


def test_the_ascend910_example_is_the_builtin_target(tmp_path: Path) -> None:
    files = {Path(p).name: p for p in _example_files(TARGETS_DOC, tmp_path)}
    assert resolve_target(files["ascend910.yaml"]) == ascend910()


def test_targets_json_saved_one_by_one_gives_each_builtin_target(tmp_path: Path) -> None:
    """docs/targets.md: `embmap targets --json` prints complete target files, to be saved as .json."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["targets", "--json"]) == 0
    listed = json.loads(out.getvalue())
    assert [t["name"] for t in listed] == list(BUILTIN_TARGETS)
    for data in listed:
        path = tmp_path / f"{data['name']}.json"
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        assert resolve_target(str(path)) == BUILTIN_TARGETS[data["name"]]()


def _export_schema() -> ModuleType:
    return load_script("tools/export_schema.py", "export_schema")


@pytest.mark.parametrize(
    ("name", "page"), [("workload.schema.json", WORKLOADS_DOC), ("target.schema.json", TARGETS_DOC)]
)
def test_committed_input_schemas_match_the_code(name: str, page: Path) -> None:
    export = _export_schema()
    committed = (ROOT / "docs" / name).read_text(encoding="utf-8")
    assert committed == export.schema_text(export.INPUT_SCHEMAS[name]), f"docs/{name} is out of date: run `make schema`"
    assert f"docs/{name}" in page.read_text(encoding="utf-8"), f"{page.name} does not link docs/{name}"


# The Notes of the two pages: if one of these starts failing, the loader changed; update the Notes.

WORKLOAD = "name: w\ntables:\n  - name: t\n    rows: {rows}\n    dim: 16\n"
MEMORY = "{{name: M, capacity_bytes: 4096, bandwidth_bytes_per_s: {bandwidth}, latency_s: 0}}"


def _workload(tmp_path: Path, text: str, name: str = "w.yaml") -> WorkloadSpec:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return resolve_workload(str(path))


@pytest.mark.parametrize(
    ("written", "rows"),
    [
        ("1e6", 1_000_000),
        ("1.0e+3", 1000),
        ("1e3", 1000),
        ("1.5e3", 1500),
        ("1E+3", 1000),
        ("1000.0", 1000),
        ("+16", 16),
    ],
)
def test_yaml_numbers_are_read_as_json_reads_them(tmp_path: Path, written: str, rows: int) -> None:
    assert _workload(tmp_path, WORKLOAD.format(rows=written)).tables[0].rows == rows


@pytest.mark.parametrize(
    ("written", "yaml_1_1"), [("010", "8"), ("1:30", "90"), ("1_000", "1000"), ("0x10", "16"), ("0b11", "3")]
)
def test_numbers_only_yaml_1_1_reads_are_refused_where_they_are(tmp_path: Path, written: str, yaml_1_1: str) -> None:
    with pytest.raises(SpecError) as info:
        _workload(tmp_path, WORKLOAD.format(rows=written))
    assert str(info.value).startswith(
        f"workload w.yaml: tables[0].rows is {written} (line 4), which YAML 1.1 reads as {yaml_1_1} and JSON"
    )
    assert f'quote it ("{written}") for text' in str(info.value)
    quoted = _workload(tmp_path, WORKLOAD.format(rows=4).replace("name: w", f'name: "{written}"'))
    assert quoted.name == written  # quoted, the same characters are text


@pytest.mark.parametrize("written", ['"1000"', "true", ".inf", "0o10", "09", "1e"])
def test_numbers_written_otherwise_are_refused(tmp_path: Path, written: str) -> None:
    with pytest.raises(SpecError, match=r"tables\[0\]\.rows"):
        _workload(tmp_path, WORKLOAD.format(rows=written))


@pytest.mark.parametrize("written", ["yes", "No", "on", "OFF"])
def test_yaml_1_1_booleans_are_refused_as_text_and_as_flags(tmp_path: Path, written: str) -> None:
    with pytest.raises(SpecError, match=f"name is {written} \\(line 1\\), which YAML 1.1 reads as (true|false)"):
        _workload(tmp_path, WORKLOAD.format(rows=4).replace("name: w", f"name: {written}"))
    assert _workload(tmp_path, WORKLOAD.format(rows=4).replace("name: w", f"name: '{written}'")).name == written


def _with_key_twice(text: str) -> str:
    """A JSON object's text with its first key given again, first (a value the loader must not keep silently)."""
    data = json.loads(text)
    first = next(iter(data))
    return "{" + json.dumps(first) + ": " + json.dumps(data[first]) + ",\n" + text.lstrip()[1:]


def _spec_texts() -> dict[str, tuple[str, Any]]:
    from embmap.mapper.profiles import load_profile

    workload = WorkloadSpec(name="w", tables=(TableSpec(name="t", rows=4, dim=16),))
    return {
        "workload": (workload.model_dump_json(indent=1), resolve_workload),
        "target": (ascend910().model_dump_json(indent=1), resolve_target),
        "profile": (resolve_profile_text(), lambda p: load_profile(Path(p))),
    }


def resolve_profile_text() -> str:
    from embmap.mapper.profiles import default_profile

    return default_profile(ascend910()).model_dump_json(indent=1)


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
@pytest.mark.parametrize("kind", ["workload", "target", "profile"])
def test_a_key_given_twice_is_refused_naming_it(tmp_path: Path, kind: str, suffix: str) -> None:
    text, load = _spec_texts()[kind]
    first = next(iter(json.loads(text)))
    path = tmp_path / f"spec{suffix}"
    path.write_text(text, encoding="utf-8")
    load(str(path))  # once, it loads
    path.write_text(_with_key_twice(text), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        load(str(path))
    message = str(info.value)
    assert f"spec{suffix}: the top level has the key '{first}' twice" in message
    assert ("(on lines 1 and 3)" in message) == (suffix == ".yaml")  # JSON's reader gives no lines


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_a_key_given_twice_deep_inside_is_refused_with_its_path(tmp_path: Path, suffix: str) -> None:
    text = (
        '{"name": "w", "tables": [{"name": "t", "rows": 4, "dim": 16}, {"name": "u", "rows": 4, "dim": 8, "dim": 16}]}'
    )
    with pytest.raises(SpecError, match=r"^workload w\S*: tables\[1\] has the key 'dim' twice"):
        _workload(tmp_path, text, f"w{suffix}")


def test_targets_json_saved_as_yaml_loads_as_each_builtin_target(tmp_path: Path) -> None:
    """YAML reads JSON's numbers as JSON does (`6e-08`, `1.2e+12`), so the listing's output loads from a .yaml."""
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["targets", "--json"]) == 0
    for data in json.loads(out.getvalue()):
        path = tmp_path / f"{data['name']}.yaml"
        path.write_text(json.dumps(data, indent=1), encoding="utf-8")
        assert resolve_target(str(path)) == BUILTIN_TARGETS[data["name"]]()


def test_a_builtin_name_wins_over_a_file_of_that_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "avazu").write_text(WORKLOAD.format(rows=4), encoding="utf-8")
    assert resolve_workload("avazu").name == "avazu"
    assert resolve_workload("./avazu").name == "w"


def test_a_target_is_a_file_only_by_its_suffix_or_a_slash(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    memory = MEMORY.format(bandwidth="1.0e+9")
    text = f"name: t\ncores: 2\nlocal: {memory}\nscratch: {memory}\nmain: {memory}\n"
    for name in ("t.txt", "t", "t.yaml"):
        (tmp_path / name).write_text(text, encoding="utf-8")
    for ref in ("t.txt", "t"):
        with pytest.raises(SpecError, match="unknown target"):
            resolve_target(ref)
    assert resolve_target("t.yaml").name == resolve_target("./t").name == "t"


@pytest.mark.parametrize("bandwidth", ["6.4e+10", "6.4e10", "64e9", "6.4E10"])
def test_target_exponents_are_json_numbers(tmp_path: Path, bandwidth: str) -> None:
    memory = MEMORY.format(bandwidth=bandwidth)
    path = tmp_path / "t.yaml"
    path.write_text(f"name: t\ncores: 2\nlocal: {memory}\nscratch: {memory}\nmain: {memory}\n", encoding="utf-8")
    assert resolve_target(str(path)).local.bandwidth_bytes_per_s == 6.4e10


@pytest.mark.parametrize(
    ("written", "ok"), [("true", True), ("1", True), ('"true"', True), ("yes", False), ("on", False)]
)
def test_target_booleans_take_what_pydantic_converts_but_not_yaml_1_1_words(
    tmp_path: Path, written: str, ok: bool
) -> None:
    memory = MEMORY.format(bandwidth="1.0e+9")
    path = tmp_path / "t.yaml"
    path.write_text(
        f"name: t\ncores: 2\nlocal: {memory}\nscratch: {memory}\nmain: {memory}\nlocal_is_cache: {written}\n",
        encoding="utf-8",
    )
    if ok:
        assert resolve_target(str(path)).local_is_cache is True
    else:
        with pytest.raises(SpecError, match=f"local_is_cache is {written} \\(line 6\\), which YAML 1.1 reads as true"):
            resolve_target(str(path))
