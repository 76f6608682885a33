"""Pipeline text, the registry, the pass manager's contracts and its instruments."""

from __future__ import annotations

import io

import pytest

from embmap.ir.errors import PipelineError
from embmap.ir.module import Module
from embmap.ir.plan import Strategy
from embmap.passes import REGISTRY, PassManager, PrintIRAfter, TimingInstrument, parse_pipeline, pipeline_text
from embmap.passes.placement import AssignCoresPass, AssignMethod
from embmap.passes.strategy import SelectStrategyPass


def test_parse_pipeline_with_typed_options() -> None:
    passes = parse_pipeline(
        "profile, select-strategy{strategies=GM:L1-UB}, partition, assign-cores{time-limit=2.5,workers=2,method=greedy}"
    )
    assert [p.name for p in passes] == ["profile", "select-strategy", "partition", "assign-cores"]
    assert passes[1] == SelectStrategyPass(strategies=(Strategy.GM, Strategy.L1_UB))
    assert passes[3] == AssignCoresPass(method=AssignMethod.GREEDY, time_limit=2.5, workers=2)
    text = pipeline_text(passes)
    assert (
        text
        == "profile,select-strategy{strategies=GM:L1-UB},partition,assign-cores{method=greedy,time-limit=2.5,workers=2}"
    )
    assert parse_pipeline(text) == passes


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("profile,frobnicate", "unknown pass"),
        ("profile,assign-cores{speed=11}", "unknown option"),
        ("assign-cores{time-limit=soon}", "cannot read 'soon'"),
        ("assign-cores{time-limit=0}", "time-limit must be > 0"),
        ("select-strategy{strategies=GM:XL}", "cannot read 'XL'"),
        ("assign-cores{method=magic}", "cannot read 'magic'"),
        ("profile,,schedule", "empty pass name"),
        ("assign-cores{time-limit=3", "unmatched '{'"),
        ("", "empty"),
    ],
)
def test_bad_pipelines_fail_before_running(text: str, words: str) -> None:
    with pytest.raises(PipelineError) as info:
        parse_pipeline(text)
    assert words in str(info.value)
    assert "\n" not in str(info.value)


def test_registry_names_are_kebab_case_and_complete() -> None:
    assert set(REGISTRY) == {
        "profile",
        "select-strategy",
        "partition",
        "assign-cores",
        "balance",
        "pack",
        "schedule",
        "verify",
    }
    assert all(name == name.lower() and " " not in name and "_" not in name for name in REGISTRY)


def test_requires_is_checked_with_a_hint(lowered: Module) -> None:
    with pytest.raises(PipelineError, match=r"requires options.*run partition before it"):
        PassManager(parse_pipeline("profile,assign-cores")).run(lowered)


def test_instruments_time_and_print(lowered: Module) -> None:
    timing = TimingInstrument()
    out = io.StringIO()
    m = PassManager(parse_pipeline("profile,select-strategy")).run(
        lowered, [timing, PrintIRAfter(frozenset({"profile"}), out)]
    )
    assert [name for name, _ in timing.records] == ["profile", "select-strategy"]
    assert all(seconds >= 0 for _, seconds in timing.records)
    printed = out.getvalue()
    assert "IR after profile" in printed and "profile @small" in printed and "candidates @" not in printed
    assert m.history == ("profile", "select-strategy")


def test_module_json_round_trip_resumes_a_pipeline(lowered: Module) -> None:
    """Stop after partition, write JSON, read it back, finish: same result as running straight through."""
    first = PassManager(parse_pipeline("profile,select-strategy,partition")).run(lowered)
    resumed = Module.model_validate_json(first.model_dump_json())
    assert resumed == first
    rest = parse_pipeline("assign-cores{method=greedy},schedule")
    straight = PassManager(
        parse_pipeline("profile,select-strategy,partition,assign-cores{method=greedy},schedule")
    ).run(lowered)
    assert PassManager(rest).run(resumed) == straight


def test_unexpected_failures_name_the_pass_and_its_predecessors(lowered: Module) -> None:
    import dataclasses

    from embmap.passes.base import ModulePass

    @dataclasses.dataclass(frozen=True)
    class Boom(ModulePass):
        name = "boom-test"

        def apply(self, module: Module) -> Module:
            raise ZeroDivisionError("nope")

    with pytest.raises(RuntimeError, match=r"pass boom-test failed after \[profile\]: nope"):
        PassManager((parse_pipeline("profile")[0], Boom())).run(lowered)
