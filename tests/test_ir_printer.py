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


def test_a_measured_histogram_prints_as_its_size_not_its_buckets() -> None:
    from embmap.ir.spec import Empirical, TableSpec, WorkloadSpec

    counts = tuple(range(1, 41))  # 40 buckets over 820 rows, most popular first
    mass = [1.0 / (i + 1) for i in range(40)]
    scale = sum(c * m for c, m in zip(counts, mass, strict=True))
    dist = Empirical(counts=counts, probs=tuple(m / scale for m in mass), alpha=1.2)
    table = TableSpec(name="t", rows=sum(counts), dim=8, pooling=2.5, distribution=dist)
    target = ascend910()
    text = print_module(lower(WorkloadSpec(name="w", tables=(table,)), target, preset_profile(target)))
    (line,) = [x for x in text.splitlines() if x.startswith("  table @t ")]
    assert line.endswith("dist=empirical buckets=40 alpha=1.2") and "pooling=2.5" in line
