"""fp16 tables: every executor sums their rows in fp32 and writes fp32, and the output check holds an fp16
table's outputs to the rounding bound of that sum, as tightly as an fp32 table's."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from embmap.cost_models import preset_profile
from embmap.ir.plan import ExecutionPlan, PartitionMode, Strategy, WorkItem
from embmap.ir.spec import DType, TableSpec, Zipf
from embmap.ir.targets import cpu
from embmap.mapper.calibration import GridPoint, point_plan
from embmap.mapper.cli import main
from embmap.runtime import RunConfig, baselines, materialize_for, run_plan
from embmap.runtime import kernels as kernels_module
from embmap.runtime.data import check_outputs, materialize, reference_lookup
from embmap.runtime.executor import usable_cpus

BACKENDS = ["native", "numpy", *(["torch"] if kernels_module.HAVE_TORCH else [])]
CUTS = (
    ((PartitionMode.SAMPLES, 2), (PartitionMode.ROWS, 2)) if len(usable_cpus()) >= 2 else ((PartitionMode.SAMPLES, 1),)
)
CONFIG = RunConfig(batches=2, warmup=1, index_batches=1)  # every batch reads index batch 0
U32 = 2.0**-24


def fp16_table(pooling: int) -> TableSpec:
    return TableSpec(name="t", rows=1000, dim=16, dtype=DType.FP16, pooling=pooling, distribution=Zipf(alpha=1.1))


def fp16_plan(strategy: Strategy, mode: PartitionMode, parts: int, pooling: int) -> ExecutionPlan:
    target = cpu()
    plan, _ = point_plan(GridPoint(fp16_table(pooling), 64, strategy, mode, parts), target, preset_profile(target))
    return plan


def fp32_sum_bound(reference: np.ndarray, pooling: int) -> np.ndarray:
    """What an fp32 sum of `pooling` non-negative values may err by, in any order: (pooling - 1) additions,
    each erring by at most 2^-24 of a partial sum no larger than the whole (with a margin for the partial
    sums' own errors)."""
    return (pooling - 1) * U32 * reference * 1.001


@pytest.mark.parametrize("pooling", [1, 8, 100])
@pytest.mark.parametrize("strategy", list(Strategy))
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_strategy_and_cut_sums_fp16_rows_in_fp32(backend: str, strategy: Strategy, pooling: int) -> None:
    """The pooled output of an fp16 table, as sample cuts and as row shards (which accumulate), against the
    float64 reference lookup: within the rounding of an fp32 sum (exact at pooling 1), and passed by the
    executor's own check."""
    for mode, parts in CUTS:
        plan = fp16_plan(strategy, mode, parts, pooling)
        config = dataclasses.replace(CONFIG, backend=backend)
        data = materialize_for(plan, config)
        try:
            report = run_plan(plan, config, data)
            out = data.outputs["t"].array.astype(np.float64)
            ref = reference_lookup(data.tables["t"].array, *data.bags("t").batch(0))
        finally:
            data.close()
        assert report.backend == backend
        assert report.correct, (mode, report.max_abs_error, report.tolerance)
        assert (np.abs(out - ref) <= fp32_sum_bound(ref, pooling)).all(), (mode, np.abs(out - ref).max())


@pytest.fixture(scope="module")
def fp16_data() -> dict[int, tuple[TableSpec, np.ndarray, np.ndarray]]:
    """Per pooling: an fp16 table spec, its rows gathered for index batch 0 [batch, pooling, dim] (fp16), and
    the fp32 sum every kernel computes."""
    out = {}
    for pooling in (1, 8, 100):
        spec = fp16_table(pooling)
        data = materialize((spec,), 64, 1, seed=3, shared=False)
        rows = data.tables["t"].array[data.bags("t").batch(0)[0]].reshape(64, pooling, -1)
        out[pooling] = (spec, rows, rows.sum(axis=1, dtype=np.float32))
        data.close()
    return out


def _check(spec: TableSpec, output: np.ndarray, seed: int = 3, rounded_to: DType | None = None) -> bool:
    data = materialize((spec,), 64, 1, seed=seed, shared=False)
    try:
        if rounded_to is None:
            return check_outputs((spec,), {spec.name: output}, data, 0)[0]
        return check_outputs((spec,), {spec.name: output}, data, 0, {spec.name: rounded_to})[0]
    finally:
        data.close()


@pytest.mark.parametrize("pooling", [1, 8, 100])
def test_the_fp32_sum_of_fp16_rows_passes(fp16_data: dict, pooling: int) -> None:  # type: ignore[type-arg]
    spec, _, right = fp16_data[pooling]
    assert _check(spec, right)


@pytest.mark.parametrize("pooling", [8, 100])
def test_fp16_rounded_or_accumulated_sums_are_caught(fp16_data: dict, pooling: int) -> None:  # type: ignore[type-arg]
    """The fp32 sum rounded to fp16 (what embedding_bag returns for an fp16 table), and a sum accumulated in
    fp16, are wrong outputs of a kernel that promises fp32 sums."""
    spec, rows, right = fp16_data[pooling]
    assert not _check(spec, right.astype(np.float16).astype(np.float32))
    acc = np.zeros(right.shape, dtype=np.float16)
    for k in range(pooling):
        acc = (acc + rows[:, k]).astype(np.float16)
    assert not _check(spec, acc.astype(np.float32))


@pytest.mark.parametrize("pooling", [1, 8, 100])
def test_one_row_off_by_one_fp16_step_is_caught(fp16_data: dict, pooling: int) -> None:  # type: ignore[type-arg]
    """A single value of a single looked-up row read one fp16 step away (2^-11 for values in [0.5, 1)) is
    caught at every pooling: a loose fp16 allowance (1e-3 before) would hide it."""
    spec, rows, right = fp16_data[pooling]
    s, d = np.argwhere(rows[:, 0] >= 0.5)[0]
    value = rows[s, 0, d]
    wrong = right.copy()
    wrong[s, d] += np.float32(np.nextafter(value, np.float16(2.0)) - value)
    assert _check(spec, right) and not _check(spec, wrong)


@pytest.mark.parametrize("pooling", [8, 100])
def test_a_rounding_kernel_is_caught_by_the_executor(pooling: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the reference executor: a kernel whose fp16 table's sums come out rounded to fp16, as
    embedding_bag's do, makes the run wrong (exit 1 in `embmap run`)."""
    real = kernels_module.build_kernel

    def rounding(item: WorkItem, data: kernels_module.ItemData, backend: str) -> kernels_module.Kernel:
        kernel = real(item, data, backend)
        s0, s1 = item.samples

        def run(b: int) -> None:
            kernel(b)
            data.output[s0:s1] = data.output[s0:s1].astype(np.float16)

        return run

    monkeypatch.setattr("embmap.runtime.workers.build_kernel", rounding)
    plan = fp16_plan(Strategy.GM, PartitionMode.SAMPLES, 1, pooling)
    report = run_plan(plan, dataclasses.replace(CONFIG, backend="numpy"))
    assert not report.correct and report.max_abs_error > report.tolerance


def test_the_tolerance_allows_fp16_output_rounding_only_where_asked(fp16_data: dict) -> None:  # type: ignore[type-arg]
    """A framework that returns an fp16 table's sums in fp16 (PyTorch's embedding_bag) is judged by that
    rounding's bound when the check is told; a result two fp16 steps off is still caught."""
    spec, _, right = fp16_data[8]
    rounded = right.astype(np.float16)
    assert _check(spec, rounded.astype(np.float32), rounded_to=DType.FP16)
    two_off = np.nextafter(np.nextafter(rounded, np.float16(np.inf)), np.float16(np.inf)).astype(np.float32)
    assert not _check(spec, two_off, rounded_to=DType.FP16)


@pytest.mark.skipif(not baselines.available("torch"), reason="needs torch")
@pytest.mark.parametrize("pooling", [1, 8, 100])
def test_the_torch_baseline_is_right_on_fp16_tables(pooling: int) -> None:
    spec = fp16_table(pooling)
    data = materialize((spec,), 64, 2, seed=0, shared=False)
    try:
        report = baselines.run_baseline("torch", (spec,), data, warmup=0, batches=2, threads=1)
    finally:
        data.close()
    assert report.correct, (report.max_abs_error, report.tolerance)


@pytest.mark.skipif(not baselines.available("fbgemm-tbe"), reason="needs fbgemm_gpu")
@pytest.mark.parametrize("pooling", [1, 8, 100])
def test_the_fbgemm_baseline_sums_fp16_tables_in_fp32(pooling: int) -> None:
    spec = fp16_table(pooling)
    data = materialize((spec,), 64, 2, seed=0, shared=False)
    try:
        report = baselines.run_baseline("fbgemm-tbe", (spec,), data, warmup=0, batches=2, threads=1)
    finally:
        data.close()
    assert report.correct, (report.max_abs_error, report.tolerance)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_fp16_workload_compiles_and_runs_correct(backend: str, tmp_path: Path) -> None:
    """The reported case: an fp16 table at pooling 8, compiled for the cpu target and run, exits 0."""
    workload = tmp_path / "fp16.yaml"
    workload.write_text(
        "name: fp16\nbatch_size: 64\ntables:\n  - {name: t, rows: 1000, dim: 16, dtype: fp16, pooling: 8}\n"
    )
    plan = tmp_path / "plan.json"
    assert main(["compile", str(workload), "--target", "cpu", "-q", "-o", str(plan)]) == 0
    assert main(["run", str(plan), "--backend", backend, "--batches", "3", "--warmup", "1"]) == 0
