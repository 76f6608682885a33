"""`embmap bench`: the quick variant end to end, and the loss report."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

from mapper.bench import SCENARIOS, Row, losses, quick_config, run_bench, write_outputs
from mapper.cli import main


@pytest.fixture(scope="module")
def quick(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Row], Path]:
    config = quick_config()
    rows, plans = run_bench(config)
    out = tmp_path_factory.mktemp("bench")
    write_outputs(rows, plans, out, "pytest", config)
    return rows, out


def test_quick_bench_covers_every_pipeline_and_scenario(quick: tuple[list[Row], Path]) -> None:
    rows, _ = quick
    config = quick_config()
    assert {(r.scenario, r.pipeline) for r in rows} == {(s.name, p) for s in SCENARIOS for p in config.pipelines}
    assert all(r.correct for r in rows)  # every plan ran and pooled the right embeddings
    assert all(r.measured_best_s and r.measured_best_s > 0 for r in rows)


def test_embmap_is_never_predicted_slower_than_a_baseline(quick: tuple[list[Row], Path]) -> None:
    rows, _ = quick
    predicted = [line for line in losses(rows) if "predicted" in line]
    assert predicted == []


def test_hot_tables_scenario_changes_the_workload(quick: tuple[list[Row], Path]) -> None:
    rows, _ = quick
    by = {(r.scenario, r.pipeline): r for r in rows}
    # Skewing the lookups onto two tables makes the default compiler's plan (one core per table) worse.
    assert by[("hot-tables", "default")].ascend_makespan_s != by[("zipf", "default")].ascend_makespan_s


def test_outputs_are_written(quick: tuple[list[Row], Path]) -> None:
    rows, out = quick
    with (out / "results.csv").open() as f:
        assert len(list(csv.DictReader(f))) == len(rows)
    report = (out / "RESULTS.md").read_text()
    assert "## Speedup of embmap's plan over each baseline" in report and "tenrec-qb-article" in report
    assert (out / "speedup.png").stat().st_size > 0 and (out / "core-load.png").stat().st_size > 0


def test_a_loss_is_reported() -> None:
    base = Row("w", "zipf", "embmap", 2, 1.0, "OPTIMAL", 0.0, 2e-6, 1.0, 2e-6, 3e-6, 3e-6, 0.1, True)
    rival = dataclasses.replace(base, pipeline="default", ascend_makespan_s=1e-6, measured_best_s=2e-6)
    found = losses([base, rival])
    assert any("predicted on ascend910" in f for f in found)
    assert any("measured on this machine" in f for f in found)  # 3 us vs 2 us: beyond a 10% spread
    within_noise = dataclasses.replace(rival, ascend_makespan_s=5e-6, measured_best_s=2.8e-6)  # 7% slower
    assert losses([base, within_noise]) == []


def test_bench_command_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--quick", "--workloads", "nope", "--out", str(tmp_path)]) == 2
    assert "--workloads" in capsys.readouterr().err
    assert main(["bench", "--quick", "--out", str(tmp_path / "missing")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_rewriting_results_keeps_the_dmp_comparison(quick: tuple[list[Row], Path]) -> None:
    from mapper.bench import DMP_SECTION

    rows, out = quick
    report = out / "RESULTS.md"
    report.write_text(report.read_text() + f"\n{DMP_SECTION}\n\n| measured elsewhere |\n")
    write_outputs(rows, {}, out, "pytest again", quick_config())
    text = report.read_text()
    assert "pytest again" in text and text.count(DMP_SECTION) == 1 and text.endswith("| measured elsewhere |\n")
