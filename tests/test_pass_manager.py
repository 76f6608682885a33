"""Pipeline text, the registry, the pass manager's contracts, the pass context it hands every pass, and its
instruments."""

from __future__ import annotations

import dataclasses
import io

import pytest

from embmap.ir.errors import PipelineError
from embmap.ir.module import Module
from embmap.ir.plan import Strategy
from embmap.passes import (
    REGISTRY,
    PassContext,
    PassManager,
    PrintIRAfter,
    SolverSettings,
    TimingInstrument,
    parse_pipeline,
    pipeline_text,
)
from embmap.passes.assign_cores import AssignCoresPass, AssignMethod
from embmap.passes.base import ModulePass
from embmap.passes.select_strategy import SelectStrategyPass


def test_parse_pipeline_with_typed_options() -> None:
    passes = parse_pipeline(
        "profile, select-strategy{strategies=GM:L1-UB}, partition, assign-cores{max-moves=2,method=greedy}"
    )
    assert [p.name for p in passes] == ["profile", "select-strategy", "partition", "assign-cores"]
    assert passes[1] == SelectStrategyPass(strategies=(Strategy.GM, Strategy.L1_UB))
    assert passes[3] == AssignCoresPass(method=AssignMethod.GREEDY, max_moves=2)
    text = pipeline_text(passes)
    assert text == "profile,select-strategy{strategies=GM:L1-UB},partition,assign-cores{method=greedy,max-moves=2}"
    assert parse_pipeline(text) == passes


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("profile,frobnicate", "unknown pass"),
        ("profile,assign-cores{speed=11}", "unknown option"),
        ("assign-cores{max-moves=soon}", "cannot read 'soon'"),
        ("assign-cores{max-moves=-1}", "max-moves must be >= 0"),
        ("assign-cores{time-limit=5}", "a solver setting of the compile, not an option of a pass"),
        ("assign-cores{seed=1}", "solver=SolverSettings(seed=1)"),
        ("select-strategy{strategies=GM:XL}", "cannot read 'XL'"),
        ("assign-cores{method=magic}", "cannot read 'magic'"),
        ("profile,,schedule", "empty pass name"),
        ("assign-cores{max-moves=3", "unmatched '{'"),
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
        lowered, PassContext(instruments=(timing, PrintIRAfter(frozenset({"profile"}), out)))
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
    @dataclasses.dataclass(frozen=True)
    class Boom(ModulePass):
        name = "boom-test"

        def apply(self, module: Module, ctx: PassContext) -> Module:
            raise ZeroDivisionError("nope")

    with pytest.raises(RuntimeError, match=r"pass boom-test failed after \[profile\]: nope"):
        PassManager((parse_pipeline("profile")[0], Boom())).run(lowered)


def test_every_pass_gets_the_context_of_the_run(lowered: Module) -> None:
    """The manager hands each pass the one context of the run: the settings and listener a caller gave."""

    @dataclasses.dataclass(frozen=True)
    class Peek(ModulePass):
        name = "peek-test"
        seen: list[PassContext] = dataclasses.field(default_factory=list, compare=False)

        def apply(self, module: Module, ctx: PassContext) -> Module:
            self.seen.append(ctx)
            return module

    first, second = Peek(), Peek()
    ctx = PassContext(SolverSettings(time_limit_s=7.0, workers=3, seed=5), progress=print)
    PassManager((first, parse_pipeline("profile")[0], second)).run(lowered, ctx)
    assert first.seen == second.seen == [ctx]
    PassManager((first,)).run(lowered)
    assert first.seen[-1] == PassContext() and first.seen[-1].solver == SolverSettings(2.0, 1, 0, 0.0)


def test_solver_settings_check_themselves() -> None:
    from embmap.ir.errors import SpecError

    for bad, words in (
        ({"time_limit_s": 0.0}, "solver.time_limit_s: must be > 0 and <= 86400 seconds, got 0.0"),
        ({"workers": 0}, "solver.workers: must be in [1, 1024], got 0"),
        ({"relative_gap": 1.0}, "solver.relative_gap: must be in [0, 1), got 1.0"),
    ):
        with pytest.raises(SpecError) as info:
            SolverSettings(**bad)  # type: ignore[arg-type]
        assert str(info.value).startswith(words)
