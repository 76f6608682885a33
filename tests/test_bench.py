"""`embmap bench`: the quick variant end to end, and the loss report."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

from mapper.bench import (
    SCENARIOS,
    Row,
    false_alarm,
    losses,
    median_interval,
    paired_speedup,
    quick_config,
    run_bench,
    unconfirmed_losses,
    write_outputs,
)
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
    assert all(len(r.measured_runs_s) == config.repeats for r in rows)


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
        written = list(csv.DictReader(f))
    assert len(written) == len(rows)
    assert [float(x) for x in written[0]["measured_runs_s"].split()] == list(rows[0].measured_runs_s)
    report = (out / "RESULTS.md").read_text()
    assert "## Speedup of embmap's plan over each baseline" in report and "tenrec-qb-article" in report
    assert (out / "speedup.png").stat().st_size > 0 and (out / "core-load.png").stat().st_size > 0


def test_a_loss_is_reported() -> None:
    base = Row("w", "zipf", "embmap", 2, 1.0, "OPTIMAL", 0.0, 2e-6, 1.0, 2e-6, 3e-6, 3e-6, 0.1, True)
    base = dataclasses.replace(base, measured_runs_s=(3.0e-6, 3.3e-6, 3.1e-6, 3.0e-6, 3.2e-6))
    # Faster in every one of five rounds, though the two plans' ranges of runs overlap (a noisy machine).
    rival = dataclasses.replace(
        base, pipeline="default", ascend_makespan_s=1e-6, measured_runs_s=(2.9e-6, 3.2e-6, 3.0e-6, 2.9e-6, 3.1e-6)
    )
    found = losses([base, rival])
    assert any("predicted on ascend910" in f for f in found)
    assert any("measured on this machine" in f for f in found)
    # Slower in one round of five: within noise. Faster in every round of four: too few rounds to tell.
    mixed = dataclasses.replace(rival, ascend_makespan_s=5e-6, measured_runs_s=(2.9e-6, 3.4e-6, 3.0e-6, 2.9e-6, 3.1e-6))
    four = dataclasses.replace(mixed, measured_runs_s=(1e-6,) * 4)
    assert losses([base, mixed]) == []
    # A flagged loss measured again: it counts only if it holds again.
    held = dataclasses.replace(rival, recheck_ours_s=(2.0,) * 9, recheck_theirs_s=(1.9,) * 9)
    gone = dataclasses.replace(rival, recheck_ours_s=(2.0,) * 9, recheck_theirs_s=(1.9,) * 4 + (2.1,) * 5)
    assert any("measured again: speedup 0.95x" in f for f in losses([base, held]))
    assert not any("measured on this machine" in f for f in losses([base, gone]))
    assert len(unconfirmed_losses([base, gone])) == 1 and unconfirmed_losses([base, held]) == []
    same = dataclasses.replace(rival, ascend_makespan_s=5e-6, cpu_work_digest="sha256:x")
    assert losses([dataclasses.replace(base, cpu_work_digest="sha256:x"), same]) == []  # noise by construction
    assert losses([dataclasses.replace(base, measured_runs_s=(3e-6,) * 4), four]) == []


def test_work_digest_tells_plans_that_run_the_same_work(quick: tuple[list[Row], Path]) -> None:
    from mapper import compile

    plan = compile("tenrec-qb-article", "cpu", "greedy", row_cap=100_000, baselines=False)
    again = compile("tenrec-qb-article", "cpu", "greedy", row_cap=100_000, baselines=False)
    assert plan.work_digest() == again.work_digest()
    first, second = plan.cores[0], plan.cores[1]
    swapped = plan.model_copy(update={"cores": (first.model_copy(update={"items": first.items[::-1]}), second)})
    assert len(first.items) > 1 and swapped.work_digest() != plan.work_digest()  # the order on a core counts
    rows, _ = quick
    assert all(r.cpu_work_digest.startswith("sha256:") for r in rows)


def test_median_interval_is_the_sign_test_interval() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0, 9.0, 8.0, 7.0, 6.0]
    # n = 9 at 90%: (x(2), x(8)) holds the median with 1 - 2 * 10 / 512 = 96%; (x(3), x(7)) only with 82%.
    assert median_interval(values, 0.9) == (2.0, 8.0)
    assert median_interval(values, 0.8) == (3.0, 7.0)
    assert median_interval(values[:5], 0.9) == (1.0, 5.0)  # 1 - 2 / 32 = 94%
    assert median_interval(values[:4], 0.9) is None  # 1 - 2 / 16 = 87.5% at best
    # Two equally fast plans are flagged when every round (5), or all but one (9), falls below 1.
    assert false_alarm(5) == 1 / 32 and false_alarm(9) == 10 / 512 and false_alarm(4) == 0.0
    # Ratios are paired by round, so a baseline that is slow in the same rounds as embmap still compares.
    ours = Row("w", "zipf", "embmap", 2, 1.0, "OPTIMAL", 0.0, 2e-6, 1.0, 2e-6, None, None, None, True, (1.0, 2.0))
    theirs = dataclasses.replace(ours, pipeline="default", measured_runs_s=(1.5, 3.0))
    paired = paired_speedup(ours, theirs)
    assert paired is not None and paired.median == 1.5 and paired.interval is None and not paired.slower_beyond_noise


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
