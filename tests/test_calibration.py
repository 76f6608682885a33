"""The calibration driver (`mapper/calibration.py`) and `embmap calibrate`: the drift check measures grid
points again and pairs them with the measurements behind a profile, and the command refuses what it cannot do."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from embmap.cost_models import preset_profile
from embmap.cost_models.measurements import Measurement, write_csv
from embmap.ir.errors import ResourceError, SpecError
from embmap.ir.targets import cpu
from embmap.mapper.calibration import Drift, check_drift, fit_measured_here, grid, point_plan
from embmap.mapper.cli import main
from embmap.runtime import RunConfig

FEW = RunConfig(batches=3, warmup=1, index_batches=2)


def grid_reference(numbers: range, measured_s: float) -> list[Measurement]:
    """Measurements of the first grid points as `calibrate --save-csv` records them, with a made-up time."""
    target = cpu()
    out = []
    for n in numbers:
        plan, _ = point_plan(grid(target)[n], target, preset_profile(target))
        table = plan.workload.tables[0]
        out += [
            Measurement(it.strategy, table, plan.workload.batch_size, it.rows, it.samples, measured_s, plan=f"grid-{n}")
            for it in plan.items
        ]
    return out


def test_drift_check_measures_grid_points_again_and_pairs_them_with_the_reference() -> None:
    reference = grid_reference(range(3), measured_s=1.0)  # one second an item: far slower than any run
    drift = check_drift(cpu(), reference, points=2, config=FEW)
    assert drift.points == 2
    items_of_two_points = sum(m.plan in ("grid-0", "grid-1") for m in reference)
    assert len(drift.now_s) == len(drift.then_s) == items_of_two_points
    assert drift.then_s == (1.0,) * items_of_two_points and all(0 < s < 1.0 for s in drift.now_s)
    assert drift.quantile(0.5) < 1.0 and "faster than when it was calibrated" in drift.text()


def test_drift_verdicts() -> None:
    def verdict(ratio: float) -> str:
        return Drift(points=1, then_s=(1.0, 1.0, 1.0), now_s=(ratio, ratio, 9.0)).text()

    assert "median 2.00x" in verdict(2.0) and "100% slower" in verdict(2.0)
    assert "as when it was calibrated" in verdict(1.05)
    assert "50% faster" in verdict(0.5)


def test_drift_check_refuses_measurements_of_another_grid() -> None:
    stale = [dataclasses.replace(m, rows=(0, 1)) for m in grid_reference(range(1), measured_s=1.0)]
    with pytest.raises(SpecError, match="--check: grid point 0 .* has an item the measurements lack"):
        check_drift(cpu(), stale, points=1, config=FEW)
    no_grid = [dataclasses.replace(m, plan="cal-small-uniform-embmap") for m in grid_reference(range(1), 1.0)]
    with pytest.raises(SpecError, match="no calibration grid points"):
        check_drift(cpu(), no_grid, points=1, config=FEW)


def test_calibrate_check_and_output_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["calibrate", "--target", "ascend910", "--check"]) == 2
    assert "target cpu" in capsys.readouterr().err
    assert main(["calibrate", "--target", "cpu", "--check", "-o", "p.json"]) == 2
    assert "--check: measures and compares only" in capsys.readouterr().err
    assert main(["calibrate", "--target", "cpu"]) == 2
    assert "--output: is required" in capsys.readouterr().err


def degenerate_csv(path: Path) -> Path:
    """Twenty measurements of grid points (two items each), every one the same time."""
    write_csv(grid_reference(range(10), measured_s=1e-6), path)
    return path


def test_calibrate_from_a_degenerate_csv_is_one_line_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """It used to write a profile fitted to equal times; times in the wrong unit gave an internal error."""
    out = tmp_path / "profile.json"
    csv = degenerate_csv(tmp_path / "same.csv")
    assert main(["calibrate", "--target", "cpu", "--from-csv", str(csv), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("embmap: error: calibration: all 20 measurements took exactly 1e-06 s")
    assert err.count("\n") == 1 and "Traceback" not in err and not out.exists()


def test_degenerate_measurements_taken_here_are_a_resource_error() -> None:
    """Good input, measurements that came out degenerate on this machine (a timer that read the same for
    every item): not a bad input (exit 2), but the machine's (exit 4), saying to measure again."""
    same = grid_reference(range(10), measured_s=1e-6)
    with pytest.raises(ResourceError, match="calibrate: the 20 measurements taken on this machine cannot be fitted"):
        fit_measured_here(same, cpu(), "embmap calibrate --target cpu")
