"""The textual IR: what `print(module)` shows."""

from __future__ import annotations

from embmap.cost_models import preset_profile
from embmap.ir.lowering import lower
from embmap.ir.printer import print_module
from embmap.ir.targets import ascend910
from embmap.mapper.workloads import builtin_workload
from embmap.passes import PassManager, parse_pipeline


def test_str_of_a_module_is_its_textual_ir() -> None:
    target = ascend910()
    module = lower(builtin_workload("kuairec-big"), target, preset_profile(target))
    module = PassManager(parse_pipeline("profile,select-strategy,partition")).run(module)
    text = str(module)
    assert text == print_module(module)
    assert text.startswith("module @kuairec-big target=@ascend910 cores=32 batch=1024 {")
    assert len(text) < len(repr(module)) / 10  # not pydantic's dump of every field
