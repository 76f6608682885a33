"""`mapper/bench`: the quick variant of `embmap bench` end to end, the statistics and the loss report."""

from __future__ import annotations

import csv
import dataclasses
from pathlib import Path

import pytest

from embmap.mapper.bench.report import DMP_SECTION, report_markdown, write_outputs
from embmap.mapper.bench.run import SCENARIOS, BenchConfig, Row, default_frameworks, quick_config, run_bench
from embmap.mapper.bench.statistics import (
    FASTER,
    PairedSpeedup,
    false_alarm,
    framework_summary,
    gather_share,
    losses,
    median_interval,
    paired_speedup,
    speedup_summary,
    unconfirmed_losses,
)
from embmap.mapper.cli import main
from embmap.runtime.limits import Limits


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
    every = (*config.pipelines, *config.frameworks)
    assert {(r.scenario, r.pipeline) for r in rows} == {(s.name, p) for s in SCENARIOS for p in every}
    assert all(r.correct for r in rows)  # every plan and framework ran and pooled the right embeddings
    assert all(r.measured_best_s and r.measured_best_s > 0 for r in rows)
    assert all(len(r.measured_runs_s) == config.repeats for r in rows)


FRAMEWORKS_HERE = default_frameworks() == ("torch", "fbgemm-tbe")


@pytest.mark.skipif(not FRAMEWORKS_HERE, reason="needs torch and fbgemm_gpu")
def test_quick_bench_measures_the_frameworks_beside_the_plans(quick: tuple[list[Row], Path]) -> None:
    rows, _ = quick
    assert quick_config().frameworks == ("torch", "fbgemm-tbe")
    by = {(r.scenario, r.pipeline): r for r in rows}
    for sc in SCENARIOS:
        ours = by[(sc.name, "embmap")]
        assert ours.bytes_per_batch and ours.bytes_per_batch > 0 and not ours.is_framework
        for f in ("torch", "fbgemm-tbe"):
            r = by[(sc.name, f)]
            assert r.is_framework and r.correct is True
            assert (r.ascend_plan_s, r.ascend_status, r.ascend_gap, r.ascend_makespan_s) == (None,) * 4
            assert (r.cpu_plan_s, r.cpu_makespan_s, r.cpu_work_digest) == (None, None, "")
            assert r.measured_best_s == min(r.measured_runs_s) and r.measured_median_s is not None
            assert r.bytes_per_batch == ours.bytes_per_batch  # the same rows gathered, whoever gathers them
            paired = paired_speedup(ours, r)  # paired by round with embmap's plan
            assert paired is not None and paired.rounds == len(ours.measured_runs_s)
    assert {(s.pipeline, s.rival) for s in framework_summary(rows)} == {
        ("embmap", "torch"),
        ("embmap", "fbgemm-tbe"),
        ("embmap", FASTER),
        ("default", "torch"),
    }


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
    if FRAMEWORKS_HERE:
        torch_row = next(w for w in written if w["pipeline"] == "torch")
        assert torch_row["cpu_makespan_s"] == "" and torch_row["ascend_status"] == ""  # no plan: empty cells
        assert int(torch_row["bytes_per_batch"]) == rows[0].bytes_per_batch
        header = next(line for line in report.splitlines() if line.startswith("| workload | scenario | paper"))
        assert "measured vs torch | measured vs fbgemm-tbe |" in header and "ascend910 vs torch |" not in header
        assert "- embmap vs torch: " in report and "- embmap vs the faster of torch and fbgemm-tbe" in report
        assert "- default vs torch: " in report and "split_embedding_codegen_forward_cpu" in report
        assert "| tenrec-qb-article | uniform | torch | - |" in report  # no prediction for a framework
        planning = next(line for line in report.splitlines() if "embmap plan time (ascend910)" in line)
        assert "torch" not in planning.replace("torchrec", "")


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


def _measured_row(workload: str, pipeline: str, runs_s: tuple[float, ...]) -> Row:
    """A framework's row, as run_bench makes it: measured in rounds, no plan fields."""
    best = min(runs_s)
    return Row(
        *(workload, "uniform", pipeline, 2),
        *(None,) * 6,  # ascend_plan_s ... cpu_makespan_s
        measured_best_s=best,
        measured_median_s=sorted(runs_s)[len(runs_s) // 2],
        measured_spread=max(runs_s) / best - 1,
        correct=True,
        measured_runs_s=runs_s,
        bytes_per_batch=10**9,
        lookups_per_batch=10**9 // 64,
    )


def _plan_row(workload: str, pipeline: str, runs_s: tuple[float, ...], makespan_s: float = 1.0) -> Row:
    return dataclasses.replace(
        _measured_row(workload, pipeline, runs_s),
        ascend_plan_s=1.0,
        ascend_status="OPTIMAL",
        ascend_gap=0.0,
        ascend_makespan_s=makespan_s,
        cpu_plan_s=1.0,
        cpu_makespan_s=makespan_s,
    )


def _two_cases() -> list[Row]:
    """Case a: embmap 2x faster than torch, 4x than fbgemm-tbe (torch the faster framework); case b: 8x faster
    than torch, 2x slower than fbgemm-tbe in every round (fbgemm-tbe the faster framework)."""
    a = (1.0, 2.0, 1.0, 2.0, 1.0)
    return [
        _plan_row("a", "embmap", a),
        _plan_row("a", "default", tuple(1.6 * x for x in a), makespan_s=2.0),
        _measured_row("a", "torch", tuple(2 * x for x in a)),
        _measured_row("a", "fbgemm-tbe", tuple(4 * x for x in a)),
        _plan_row("b", "embmap", (1.0,) * 5),
        _plan_row("b", "default", (2.0,) * 5, makespan_s=2.0),
        _measured_row("b", "torch", (8.0,) * 5),
        _measured_row("b", "fbgemm-tbe", (0.5,) * 5),
    ]


def test_framework_summary_gives_geometric_means_of_paired_speedups() -> None:
    rows = _two_cases()
    found = {(s.pipeline, s.rival): s for s in framework_summary(rows)}
    assert list(found) == [("embmap", "torch"), ("embmap", "fbgemm-tbe"), ("embmap", FASTER), ("default", "torch")]
    torch, tbe, faster, default = found.values()
    assert torch.geomean == pytest.approx(4.0, rel=1e-12)  # sqrt(2 * 8)
    assert (torch.worst, torch.worst_case, torch.slower_beyond_noise, torch.cases) == (2.0, "a / uniform", 0, 2)
    assert tbe.geomean == pytest.approx(2**0.5, rel=1e-12)  # sqrt(4 * 0.5)
    assert (tbe.worst, tbe.worst_case, tbe.slower_beyond_noise) == (0.5, "b / uniform", 1)
    # The faster framework per case: torch in a (2x), fbgemm-tbe in b (0.5x).
    assert faster.geomean == pytest.approx(1.0, rel=1e-12)
    assert (faster.worst, faster.worst_case, faster.slower_beyond_noise) == (0.5, "b / uniform", 1)
    # default against torch: 2 / 1.6 = 1.25x in a, 8 / 2 = 4x in b.
    assert default.geomean == pytest.approx(5**0.5, rel=1e-12)
    assert (default.worst, default.worst_case) == (pytest.approx(1.25, rel=1e-12), "a / uniform")
    # A loss that did not hold when measured again does not count as one.
    rechecked = [
        dataclasses.replace(r, recheck_ours_s=(1.0,) * 9, recheck_theirs_s=(1.1,) * 5 + (0.9,) * 4)
        if (r.workload, r.pipeline) == ("b", "fbgemm-tbe")
        else r
        for r in rows
    ]
    again = speedup_summary(rechecked, "embmap", "fbgemm-tbe")
    assert again is not None and again.slower_beyond_noise == 0 and again.geomean == tbe.geomean
    assert speedup_summary(rows, "embmap", "nope") is None
    # With one framework there is no "faster of the two", and default is compared with torch only.
    only_tbe = [r for r in rows if r.pipeline != "torch"]
    assert [(s.pipeline, s.rival) for s in framework_summary(only_tbe)] == [("embmap", "fbgemm-tbe")]


def test_losses_against_frameworks_are_measured_ones_only() -> None:
    found = losses(_two_cases())
    assert len(found) == 1 and found[0].startswith("b / uniform: measured on this machine")
    assert "takes 2.00x the time of fbgemm-tbe's" in found[0]


def test_gather_share_reads_the_limit_at_the_row_size() -> None:
    limits = Limits(cores=2, copy_bytes_per_s=3e10, gather_bytes_per_s={64: 4e9, 256: 16e9}, table_bytes=1 << 30)
    assert limits.gather_limit(64) == pytest.approx(4e9) and limits.gather_limit(256) == pytest.approx(16e9)
    assert limits.gather_limit(128) == pytest.approx(8e9)  # log-log between the sizes measured
    assert limits.gather_limit(8) == pytest.approx(4e9) and limits.gather_limit(4096) == pytest.approx(16e9)
    row = dataclasses.replace(
        _measured_row("a", "torch", (0.5, 1.0)), bytes_per_batch=4 * 10**9, lookups_per_batch=10**9 // 32
    )
    assert row.row_bytes == pytest.approx(128)
    assert gather_share(row, limits) == pytest.approx(8e9 / 8e9)  # 4e9 bytes in 0.5 s against 8 GB/s
    assert gather_share(row, None) is None


def test_report_shows_frameworks_their_summary_and_the_gather_limit() -> None:
    rows = _two_cases()
    config = BenchConfig(workloads=("a", "b"), pipelines=("embmap", "default"), frameworks=("torch", "fbgemm-tbe"))
    limits = Limits(cores=2, copy_bytes_per_s=3e10, gather_bytes_per_s={64: 4e9, 512: 8e9}, table_bytes=1 << 30)
    report = report_markdown(rows, "pytest", config, [], limits=limits)
    lines = report.splitlines()
    assert (
        "| workload | scenario | paper vs default | ascend910 vs default | measured vs default | measured vs torch "
        "| measured vs fbgemm-tbe |" in lines
    )
    assert "| a | uniform | 1.5-6.5x | 2.00x | 1.60x (1.60-1.60) | 2.00x (2.00-2.00) | 4.00x (4.00-4.00) |" in lines
    assert (
        "- embmap vs torch: 4.00x geometric mean over 2 cases, worst 2.00x (a / uniform), slower beyond noise in 0"
        in lines
    )
    assert any(
        line.startswith("- embmap vs fbgemm-tbe: 1.41x geometric mean") and line.endswith("in 1") for line in lines
    )
    assert any(line.startswith("- default vs torch: 2.24x geometric mean over 2 cases, worst 1.25x") for line in lines)
    # 1e9 bytes in embmap's best run of 1 s in case a: 1 GB/s, a quarter of the limit at 64-byte rows.
    assert (
        "| a | uniform | embmap | 1000000.0 us | 1000000.0 us | 1000000.0 us | 100% | yes | 1.00 GB/s | 25% |" in lines
    )
    assert "| b | uniform | fbgemm-tbe | - | 500000.0 us | 500000.0 us | 0% | yes | 2.00 GB/s | 50% |" in lines
    assert "of gather limit" not in report_markdown(rows, "pytest", config, [])
    assert any(line.startswith("- b / uniform: measured on this machine") for line in lines)


@pytest.mark.skipif("torch" not in default_frameworks(), reason="needs torch")
def test_a_loss_against_a_framework_is_measured_again(monkeypatch: pytest.MonkeyPatch) -> None:
    import embmap.mapper.bench.run as bench_run

    real = paired_speedup

    def flag_torch(ours: Row, theirs: Row) -> PairedSpeedup | None:
        # Every comparison with torch reads as a loss beyond noise, so that run_bench measures it again.
        return PairedSpeedup(0.5, (0.4, 0.6), 5) if theirs.pipeline == "torch" else real(ours, theirs)

    monkeypatch.setattr(bench_run, "paired_speedup", flag_torch)
    config = dataclasses.replace(
        quick_config(), scenarios=SCENARIOS[:1], pipelines=("embmap",), frameworks=("torch",), recheck_rounds=3
    )
    rows, _ = run_bench(config)
    ours, theirs = rows
    assert theirs.pipeline == "torch" and ours.recheck_ours_s == ()
    assert len(theirs.recheck_ours_s) == len(theirs.recheck_theirs_s) == 3  # embmap's plan and torch, alone
    assert all(t > 0 for t in theirs.recheck_ours_s + theirs.recheck_theirs_s)


def test_work_digest_tells_plans_that_run_the_same_work(quick: tuple[list[Row], Path]) -> None:
    from embmap.mapper import compile

    plan = compile("tenrec-qb-article", "cpu", "greedy", row_cap=100_000, baselines=False)
    again = compile("tenrec-qb-article", "cpu", "greedy", row_cap=100_000, baselines=False)
    assert plan.work_digest() == again.work_digest()
    first, second = plan.cores[0], plan.cores[1]
    swapped = plan.model_copy(update={"cores": (first.model_copy(update={"items": first.items[::-1]}), second)})
    assert len(first.items) > 1 and swapped.work_digest() != plan.work_digest()  # the order on a core counts
    rows, _ = quick
    assert all(r.cpu_work_digest.startswith("sha256:") for r in rows if not r.is_framework)


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
    rows, out = quick
    report = out / "RESULTS.md"
    report.write_text(report.read_text() + f"\n{DMP_SECTION}\n\n| measured elsewhere |\n")
    write_outputs(rows, {}, out, "pytest again", quick_config())
    text = report.read_text()
    assert "pytest again" in text and text.count(DMP_SECTION) == 1 and text.endswith("| measured elsewhere |\n")
