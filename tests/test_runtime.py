"""The reference runtime: every kernel against the reference lookup, faults in plans, measured reports."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from embmap.cost_models import preset_profile
from embmap.ir.errors import SpecError, VerificationError
from embmap.ir.plan import ExecutionPlan, PartitionMode, Strategy
from embmap.ir.spec import DType, TableSpec, Uniform, Zipf
from embmap.ir.targets import cpu
from embmap.mapper.calibration import GridPoint, point_plan
from embmap.mapper.cli import main
from embmap.mapper.planio import load_plan, save_plan
from embmap.mapper.workloads import builtin_names
from embmap.runtime import RunConfig, materialize_for, native, run_plan
from embmap.runtime import kernels as kernels_module
from embmap.runtime.data import make_indices, permutation_params, reference_lookup
from embmap.runtime.executor import usable_cpus

FEW = RunConfig(batches=3, warmup=1, index_batches=2)
BACKENDS = ["native", "numpy", *(["torch"] if kernels_module.HAVE_TORCH else [])]
TWO_CORES = len(usable_cpus()) >= 2


def plan_for(
    strategy: Strategy,
    mode: PartitionMode,
    parts: int,
    rows: int = 3000,
    dtype: DType = DType.FP32,
    pooling: int = 3,
    dim: int = 8,
) -> ExecutionPlan:
    target = cpu()
    table = TableSpec(name="t", rows=rows, dim=dim, dtype=dtype, pooling=pooling, distribution=Zipf(alpha=1.1))
    plan, _ = point_plan(GridPoint(table, 96, strategy, mode, parts), target, preset_profile(target))
    return plan


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("strategy", list(Strategy))
def test_every_strategy_matches_the_reference(strategy: Strategy, backend: str) -> None:
    plan = plan_for(strategy, PartitionMode.SAMPLES, 1)
    report = run_plan(plan, RunConfig(batches=3, warmup=1, index_batches=2, backend=backend))
    assert report.correct and report.max_abs_error <= report.tolerance
    assert report.backend == backend


@pytest.mark.skipif(not TWO_CORES, reason="needs two cores")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("strategy", list(Strategy))
def test_row_shards_accumulate_correctly(strategy: Strategy, backend: str) -> None:
    plan = plan_for(strategy, PartitionMode.ROWS, 2)
    assert {it.output for it in plan.items} == {"accumulate"}
    report = run_plan(plan, RunConfig(batches=3, warmup=1, index_batches=2, backend=backend))
    assert report.correct


@pytest.mark.skipif(not TWO_CORES, reason="needs two cores")
@pytest.mark.parametrize("dim", [8, 16, 32, 64, 128, 24])  # every width fixed at compile time, and one that is not
@pytest.mark.parametrize("pooling", [1, 8, 100])
@pytest.mark.parametrize("dtype", [DType.FP32, DType.FP16])
@pytest.mark.parametrize("strategy", list(Strategy))
def test_native_kernels_match_the_reference(strategy: Strategy, dtype: DType, pooling: int, dim: int) -> None:
    """Every native kernel, whole and as row shards, in fp32 and fp16 (accumulated in fp32) at poolings up to
    100, checked against the float64 reference lookup."""
    for mode, parts in ((PartitionMode.SAMPLES, 2), (PartitionMode.ROWS, 2)):
        plan = plan_for(strategy, mode, parts, rows=2000, dtype=dtype, pooling=pooling, dim=dim)
        report = run_plan(plan, RunConfig(batches=2, warmup=1, index_batches=2, backend="native"))
        assert report.backend == "native"
        assert report.correct, (mode, report.max_abs_error, report.tolerance)


def test_native_row_shards_sum_every_shard_once() -> None:
    """Row shards combine without a lock: each writes its partial sums and the last to finish adds them up.
    Batch after batch the sums must be whole: a shard counted twice or missed would show in every output."""
    if not TWO_CORES:
        pytest.skip("needs two cores")
    plan = plan_for(Strategy.GM, PartitionMode.ROWS, 2, rows=50, pooling=40)
    config = RunConfig(batches=20, warmup=0, index_batches=3, backend="native")
    data = materialize_for(plan, config)
    try:
        for _ in range(3):
            assert run_plan(plan, config, data).correct
            out = data.outputs["t"].array
            expected = reference_lookup(data.tables["t"].array, *data.bags("t").batch((20 - 1) % 3))
            assert np.abs(out - expected).max() < 1e-4
    finally:
        data.close()


def test_native_kernel_called_directly_matches_the_reference() -> None:
    plan = plan_for(Strategy.GM, PartitionMode.SAMPLES, 1)
    data = materialize_for(plan, RunConfig(batches=1, warmup=0, index_batches=2, backend="native"))
    try:
        t = plan.workload.tables[0]
        out = data.outputs["t"].array
        bags = data.bags("t")
        seconds = native.kernel_loop(
            data.tables["t"].array, t.dtype, bags.ids, bags.offsets, out, "GM", (0, t.rows), (0, 96), 4096, 0, 3
        )
        assert seconds.shape == (3,) and (seconds > 0).all()
        assert np.allclose(out, reference_lookup(data.tables["t"].array, *bags.batch(0)), atol=1e-5)
    finally:
        data.close()


@pytest.mark.skipif(not TWO_CORES, reason="needs two cores")
def test_sample_split_and_fp16() -> None:
    assert run_plan(plan_for(Strategy.GM, PartitionMode.SAMPLES, 2), FEW).correct
    assert run_plan(plan_for(Strategy.L1_UB, PartitionMode.SAMPLES, 1, dtype=DType.FP16), FEW).correct


def test_a_wrong_kernel_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernel that skips its work leaves zeros: the check must fail, not pass silently."""

    def lazy(item: object, data: object, backend: str) -> kernels_module.Kernel:
        return lambda b: None

    monkeypatch.setattr("embmap.runtime.workers.build_kernel", lazy)
    report = run_plan(plan_for(Strategy.GM, PartitionMode.SAMPLES, 1), dataclasses.replace(FEW, backend="numpy"))
    assert not report.correct and report.max_abs_error > report.tolerance


@pytest.mark.parametrize("backend", ["native", "numpy"])
def test_report_statistics_are_consistent(backend: str) -> None:
    plan = plan_for(Strategy.GM, PartitionMode.SAMPLES, 1)
    report = run_plan(plan, RunConfig(batches=6, warmup=1, index_batches=2, backend=backend))
    assert len(report.e2e_s) == 6 and len(report.core_s) == 1 and len(report.item_s) == 1
    for b in range(6):
        assert report.e2e_s[b] >= report.core_s[0][b] >= report.item_s[0][b] > 0
    assert report.p50_s <= report.p99_s
    assert report.lookups_per_batch == 96 * 3


def test_indices_follow_the_distribution_and_permutation() -> None:
    table = TableSpec(name="z", rows=1000, dim=4, pooling=2, distribution=Zipf(alpha=1.2))
    bags = make_indices(table, 50, 64, seed=0)
    idx = bags.ids
    assert idx.shape == (50 * 64 * 2,) and idx.min() >= 0 and idx.max() < 1000
    assert bags.offsets.shape == (50, 65) and (np.diff(bags.offsets, axis=1) == 2).all()
    assert (bags.offsets[1:, 0] == bags.offsets[:-1, -1]).all() and bags.offsets[0, 0] == 0
    a, c = permutation_params(1000)
    hottest = c % 1000  # rank 0 maps to row c
    counts = np.bincount(idx, minlength=1000)
    assert counts.argmax() == hottest
    uniform = make_indices(table.model_copy(update={"distribution": Uniform()}), 50, 64, seed=0)
    assert np.bincount(uniform.ids, minlength=1000).max() < counts.max() / 3
    assert np.array_equal(make_indices(table, 50, 64, seed=0).ids, idx)  # seeded


def test_reference_lookup_is_the_plain_definition() -> None:
    table = np.arange(12, dtype=np.float32).reshape(4, 3)
    ids, offsets = np.array([0, 1, 3, 3, 2]), np.array([0, 2, 4, 4, 5])
    expected = [[3.0, 5.0, 7.0], [18.0, 20.0, 22.0], [0.0, 0.0, 0.0], [6.0, 7.0, 8.0]]
    assert reference_lookup(table, ids, offsets).tolist() == expected  # the third sample reads nothing


def test_plan_for_more_cores_than_the_machine_is_refused() -> None:
    from embmap.mapper import compile

    plan = compile("tenrec-qb-article", "ascend910", baselines=False)
    with pytest.raises(SpecError, match="plan.target.cores"):
        run_plan(plan, FEW)


def test_bad_plan_files_are_refused(tmp_path: Path) -> None:
    plan = plan_for(Strategy.GM, PartitionMode.SAMPLES, 1)
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    data = json.loads(path.read_text())
    data["schema_version"] = "embmap.plan/0"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match="schema_version"):
        load_plan(path)
    data["schema_version"] = "embmap.plan/1"
    data["items"][0]["table"] = "ghost"
    path.write_text(json.dumps(data))
    with pytest.raises(VerificationError, match="unknown table 'ghost'"):
        load_plan(path)


def test_run_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = plan_for(Strategy.L1, PartitionMode.SAMPLES, 1)
    path = tmp_path / "plan.json"
    save_plan(plan, path)
    assert main(["run", str(path), "--batches", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["correct"] is True
    assert {"measured_p50_s", "predicted_s", "cores"} <= set(data)
    assert all({"measured_s", "predicted_s"} <= set(c) for c in data["cores"])
    assert main(["run", str(path), "--batches", "3"]) == 0
    text = capsys.readouterr().out
    assert "measured p50" in text and "predicted" in text and "correct" in text
    assert main(["run", str(tmp_path / "missing.json")]) == 2
    assert main(["run", str(path), "--batches", "0"]) == 2


@pytest.mark.parametrize("workload", builtin_names())
def test_every_builtin_workload_runs_correctly_scaled_down(workload: str) -> None:
    from embmap.mapper import SolverSettings, compile

    plan = compile(workload, "cpu", row_cap=20_000, solver=SolverSettings(time_limit_s=1.0), baselines=False)
    report = run_plan(plan, RunConfig(batches=2, warmup=0, index_batches=2))
    assert report.correct, (workload, report.max_abs_error, report.tolerance)


def test_by_default_no_batch_reads_the_indices_of_another() -> None:
    """A run cycling through a few batches of indices would let their rows settle in the caches; by default
    each batch run, warm-up included, draws its own."""
    plan = plan_for(Strategy.GM, PartitionMode.SAMPLES, 1)
    config = RunConfig(batches=4, warmup=2)
    assert config.index_batch_count == 6 and RunConfig(batches=4, index_batches=3).index_batch_count == 3
    data = materialize_for(plan, config)
    try:
        bags = data.bags("t")
        assert bags.offsets.shape[0] == 6
        assert len({bags.batch(b)[0].tobytes() for b in range(6)}) == 6
        assert run_plan(plan, config, data).correct
    finally:
        data.close()
