"""The run's environment: what the machine refuses (an optional package) is one line and exit 4."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from embmap.cost_models import preset_profile
from embmap.ir.errors import ResourceError
from embmap.ir.plan import ExecutionPlan, PartitionMode, Strategy
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.ir.targets import cpu
from embmap.mapper.calibration import forced_plan
from embmap.mapper.cli import EXIT, main
from embmap.mapper.planio import save_plan
from embmap.runtime import RunConfig, kernels, native, run_plan
from embmap.runtime.executor import usable_cpus

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "embmap.mapper.cli"]
TWO_CORES = len(usable_cpus()) >= 2
needs_two_cores = pytest.mark.skipif(not TWO_CORES, reason="needs two cores")
BACKENDS = ["numpy", "native"]


def plan_of(tables: int, rows: int = 64, dim: int = 4, pooling: int = 1, batch: int = 8) -> ExecutionPlan:
    """`tables` alike tables, each cut into two row shards (accumulating, so the reference executor locks),
    placed greedily: made in about a second, whatever the count."""
    target = cpu()
    specs = tuple(TableSpec(name=f"t{i}", rows=rows, dim=dim, pooling=pooling) for i in range(tables))
    workload = WorkloadSpec(name="env", batch_size=batch, tables=specs)
    parts = 2 if TWO_CORES else 1
    mode = PartitionMode.ROWS if TWO_CORES else PartitionMode.SAMPLES
    plan, _ = forced_plan(workload, target, preset_profile(target), Strategy.GM, mode, parts, "env")
    return plan


@pytest.fixture(scope="module")
def small_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("plans") / "small.json"
    save_plan(plan_of(2), path)
    return path


@pytest.fixture(scope="module")
def long_plan(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rows of 8 KiB: a batch takes a while, its indices are few (a run's index batches stay small)."""
    path = tmp_path_factory.mktemp("plans") / "long.json"
    save_plan(plan_of(1, rows=4096, dim=2048, pooling=4, batch=64), path)
    return path


def one_line(err: str, *words: str) -> None:
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err and "resource_tracker" not in err, err
    for w in words:
        assert w in err, (w, err)


# What the machine refuses: one line, exit 4 ----------------------------------------------------------------


def test_backend_torch_without_torch_is_one_line_naming_the_package(
    small_plan: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(kernels, "HAVE_TORCH", False)
    assert main(["run", str(small_plan), "--backend", "torch", "--batches", "1"]) == EXIT["resource"]
    one_line(capsys.readouterr().err, "embmap: error: torch:", "not installed", "pip install")
    with pytest.raises(ResourceError, match="torch"):
        run_plan(plan_of(1), RunConfig(batches=1, warmup=0, backend="torch"))


def test_backend_native_without_the_extension_is_one_line(
    small_plan: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(native, "NATIVE", None)
    assert main(["run", str(small_plan), "--backend", "native", "--batches", "1"]) == EXIT["resource"]
    one_line(capsys.readouterr().err, "embmap: error: native executor:", "pip install")
