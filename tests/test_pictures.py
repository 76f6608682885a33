"""Pictures of plans and runs: the Gantt chart of a plan (grouped cores, capped rows), the Chrome trace of a run,
RESULTS.md's plots redrawn from results.csv, and calibration's predicted-vs-measured scatter."""

from __future__ import annotations

import csv
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from embmap.cost_models import preset_profile
from embmap.ir.plan import ExecutionPlan
from embmap.ir.spec import TableSpec, WorkloadSpec, Zipf
from embmap.ir.targets import cpu
from embmap.mapper.bench.plots import (
    PLOTS,
    log_ticks,
    plots_section,
    read_rows,
    replace_section,
    replot,
    speedup_points,
)
from embmap.mapper.bench.report import rows_csv
from embmap.mapper.bench.statistics import paired_speedup
from embmap.mapper.cli import main
from embmap.mapper.compiler import compile
from embmap.mapper.gantt import core_ranges, core_signature, draw_gantt, group_cores, shown_rows
from embmap.mapper.planio import save_plan
from embmap.mapper.run_trace import trace_events
from embmap.runtime import RunConfig, run_plan

pytest.importorskip("matplotlib")

ROOT = Path(__file__).resolve().parents[1]
RESULTS_CSV = ROOT / "docs" / "results.csv"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_plan() -> ExecutionPlan:
    return compile("tenrec-qb-article", "ascend910", "greedy", baselines=False)


@pytest.fixture(scope="module")
def wide_plan() -> ExecutionPlan:
    """avazu's 22 tables on 512 cores: sample slices of one table on many cores, alike."""
    return compile("avazu", "ascend910", "greedy", cores=512, baselines=False)


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000


def svg_row_labels(path: Path) -> list[str]:
    """The row labels of a Gantt chart's SVG (which parses as XML, its text kept as text)."""
    root = ET.parse(path).getroot()
    texts = ["".join(t.itertext()).strip() for t in root.iter("{http://www.w3.org/2000/svg}text")]
    return [t for t in texts if re.fullmatch(r"core \d+|cores [\d, .-]+ \(x\d+\)", t)]


# Grouping ---------------------------------------------------------------------------------------------


def test_groups_partition_the_cores_by_what_they_run(small_plan: ExecutionPlan, wide_plan: ExecutionPlan) -> None:
    for plan in (small_plan, wide_plan):
        groups = group_cores(plan)
        cores = sorted(c for g in groups for c in g.cores)
        assert cores == list(range(plan.target.cores))
        signatures = [{core_signature(plan, c) for c in g.cores} for g in groups]
        assert all(len(s) == 1 for s in signatures)  # alike within a group
        assert len({next(iter(s)) for s in signatures}) == len(groups)  # distinct across groups
        assert all(g.finish_s == max(plan.cores[c].finish_s for c in g.cores) for g in groups)


def test_512_cores_collapse_to_few_rows_and_distinct_cores_stay(wide_plan: ExecutionPlan) -> None:
    groups = group_cores(wide_plan)
    assert len(groups) <= 40 < wide_plan.target.cores
    assert max(len(g.cores) for g in groups) >= 16
    # A core whose items differ from every other core's keeps a row of its own.
    alone = [g for g in groups if len(g.cores) == 1]
    for g in alone:
        sig = core_signature(wide_plan, g.cores[0])
        assert sum(core_signature(wide_plan, c.core) == sig for c in wide_plan.cores) == 1


def test_rows_are_capped_keeping_those_that_finish_last(wide_plan: ExecutionPlan) -> None:
    groups = group_cores(wide_plan)
    drawn, left_out = shown_rows(groups, 5)
    assert len(drawn) == 5 and len(drawn) + len(left_out) == len(groups)
    assert min(g.finish_s for g in drawn) >= max(g.finish_s for g in left_out)
    assert [g.cores[0] for g in drawn] == sorted(g.cores[0] for g in drawn)  # drawn in core order
    assert any(g.finish_s == wide_plan.makespan_s for g in drawn)


def test_core_ranges_label() -> None:
    assert core_ranges([11, 0, 1, 2, 3, 8, 10]) == "0-3, 8, 10-11"
    assert core_ranges([0, 2, 4, 6]) == "0, 2, 4, ..."


# Drawing -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["small", "wide"])
def test_gantt_png_and_svg_open_and_show_one_row_per_group(
    which: str, small_plan: ExecutionPlan, wide_plan: ExecutionPlan, tmp_path: Path
) -> None:
    plan = small_plan if which == "small" else wide_plan
    png, svg = draw_gantt(plan, tmp_path / "plan.png"), draw_gantt(plan, tmp_path / "plan.svg")
    assert is_png(png)
    labels = svg_row_labels(svg)
    assert labels == [g.label for g in group_cores(plan)]  # fewer than 40 groups: every one drawn, in order
    if which == "wide":
        assert len(labels) < 40 and any("(x" in label for label in labels)
    else:
        assert len(labels) == plan.target.cores - sum(len(g.cores) - 1 for g in group_cores(plan))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plan.png", "plan.svg"]  # no temporary left


def test_a_capped_gantt_says_what_it_left_out(wide_plan: ExecutionPlan, tmp_path: Path) -> None:
    svg = draw_gantt(wide_plan, tmp_path / "capped.svg", max_rows=6)
    assert len(svg_row_labels(svg)) == 6
    text = svg.read_text()
    left = len(group_cores(wide_plan)) - 6
    assert f"{left} more rows (" in text and "not shown" in text


def test_explain_gantt_writes_the_picture(
    small_plan: ExecutionPlan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_path = tmp_path / "p.plan.json"
    save_plan(small_plan, plan_path)
    assert main(["explain", str(plan_path), "--gantt", str(tmp_path / "g.png")]) == 0
    assert is_png(tmp_path / "g.png")
    assert f"wrote {tmp_path / 'g.png'}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "given, problem",
    [
        ("dir", "directory"),
        ("g.pdf", "'.pdf', not an image format"),
        ("g", "'(none)'"),
        ("missing/g.png", "missing"),
        ("-", "standard output"),
    ],
)
def test_bad_gantt_paths_are_one_line_and_exit_2(
    given: str, problem: str, small_plan: ExecutionPlan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_path = tmp_path / "p.plan.json"
    save_plan(small_plan, plan_path)
    (tmp_path / "dir").mkdir()
    before = sorted(tmp_path.iterdir())
    out = given if given == "-" else str(tmp_path / given)
    assert main(["explain", str(plan_path), "--gantt", out]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("embmap: error: --gantt") and "(fix:" in lines[0]
    assert problem in lines[0]
    assert captured.out == ""  # refused before the explanation
    assert sorted(tmp_path.iterdir()) == before  # nothing written, nothing half-written


# The run's trace ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_plan_cpu() -> ExecutionPlan:
    target = cpu()
    tables = tuple(
        TableSpec(name=f"t{i}", rows=2000 * (i + 1), dim=8, pooling=2, distribution=Zipf(alpha=1.05)) for i in range(5)
    )
    workload = WorkloadSpec(name="five", batch_size=128, tables=tables)
    return compile(workload, target, "greedy", cost_profile=preset_profile(target), baselines=False)


def test_trace_has_one_event_per_item_per_batch_on_its_core(run_plan_cpu: ExecutionPlan) -> None:
    plan = run_plan_cpu
    report = run_plan(plan, RunConfig(batches=4, warmup=1, index_batches=2))
    trace = json.loads(json.dumps(trace_events(plan, report)))  # valid JSON, as written
    events = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(events) == len(plan.items) * report.batches
    names = {e["tid"]: e["args"]["name"] for e in trace["traceEvents"] if e["name"] == "thread_name"}
    assert sorted(names) == [c.core for c in plan.cores]
    for e in events:
        it = plan.items[e["args"]["item"]]
        assert e["tid"] == it.core and e["pid"] == 1 and e["name"] == f"{it.table} {it.strategy.value}"
        assert e["dur"] * 1e-6 == pytest.approx(report.item_s[it.id][e["args"]["batch"]], rel=1e-12)
        assert e["args"]["rows"] == list(it.rows) and e["args"]["samples"] == list(it.samples)
        assert e["args"]["predicted_s"] == it.cost.total_s
    # A core's items of a batch follow the plan's order, back to back; batches do not overlap.
    for c in plan.cores:
        for b in range(report.batches):
            mine = [e for e in events if e["tid"] == c.core and e["args"]["batch"] == b]
            assert [e["args"]["item"] for e in mine] == list(c.items)
            for a, z in zip(mine, mine[1:], strict=False):
                assert z["ts"] == pytest.approx(a["ts"] + a["dur"])
            start = sum(report.e2e_s[:b]) * 1e6
            assert mine[0]["ts"] == pytest.approx(start) if mine else True
            assert not mine or mine[-1]["ts"] + mine[-1]["dur"] <= start + report.e2e_s[b] * 1e6 * (1 + 1e-9)
    assert "placed" in trace["otherData"]["times"]


def test_run_trace_from_the_command_line(
    run_plan_cpu: ExecutionPlan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_path = tmp_path / "p.plan.json"
    save_plan(run_plan_cpu, plan_path)
    out = tmp_path / "run.json"
    assert main(["run", str(plan_path), "--batches", "3", "--warmup", "1", "--trace", str(out)]) == 0
    events = json.loads(out.read_text())["traceEvents"]
    assert sum(e["ph"] == "X" for e in events) == 3 * len(run_plan_cpu.items)
    capsys.readouterr()
    # A bad path is refused before the run: one line, exit 2, nothing written.
    for bad in ("run.txt", "dir"):
        (tmp_path / "dir").mkdir(exist_ok=True)
        before = sorted(tmp_path.iterdir())
        assert main(["run", str(plan_path), "--batches", "3", "--trace", str(tmp_path / bad)]) == 2
        captured = capsys.readouterr()
        assert captured.out == "" and captured.err.count("\n") == 1 and "--trace" in captured.err
        assert sorted(tmp_path.iterdir()) == before


# RESULTS.md's plots ------------------------------------------------------------------------------------


def test_results_csv_reads_back_as_written() -> None:
    rows = read_rows(RESULTS_CSV)
    assert rows_csv(rows) == RESULTS_CSV.read_text(encoding="utf-8")


def test_speedup_points_are_the_reported_speedups() -> None:
    rows = read_rows(RESULTS_CSV)
    cases = {(r.workload, r.scenario, r.pipeline): r for r in rows}
    points = speedup_points(rows, "default")
    first = points[0]
    ours, theirs = cases["criteo-1tb-t3", "uniform", "embmap"], cases["criteo-1tb-t3", "uniform", "default"]
    paired = paired_speedup(ours, theirs)
    assert paired is not None and first.measured == paired.median and first.interval == paired.interval
    assert first.predicted == pytest.approx(theirs.ascend_makespan_s / ours.ascend_makespan_s)  # type: ignore[operator]
    greedy = speedup_points(rows, "greedy")
    same = [i for i, p in enumerate(greedy) if p.same]
    assert same and all(greedy[i].measured is None for i in same)  # the same plan: no measured ratio
    assert speedup_points(rows, "torch")[0].predicted is None  # a framework has no prediction


def test_log_axis_ticks_are_labelled_as_ratios() -> None:
    from embmap.mapper.gantt import pyplot

    plt = pyplot()
    fig, ax = plt.subplots()
    log_ticks(ax, 0.8, 12.0)
    fig.canvas.draw()
    assert list(ax.get_xticks()) == [1.0, 2.0, 5.0, 10.0]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["1x", "2x", "5x", "10x"]
    assert ax.xaxis.get_minorticklocs().size == 0
    plt.close(fig)


def test_replot_writes_every_plot_named_in_results_md(tmp_path: Path) -> None:
    # one quick case of the committed measurements, and the committed report
    with RESULTS_CSV.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        kept = [r for r in reader if r["workload"] == "tenrec-qb-article" and r["scenario"] == "uniform"]
        fields = reader.fieldnames
    assert fields is not None and kept
    with (tmp_path / "results.csv").open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows(kept)
    (tmp_path / "RESULTS.md").write_text((ROOT / "docs" / "RESULTS.md").read_text(encoding="utf-8"))
    written = replot(tmp_path, time_limit_s=0.5)
    report = (tmp_path / "RESULTS.md").read_text(encoding="utf-8")
    named = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert sorted(named) == sorted(PLOTS)
    assert all(is_png(tmp_path / n) for n in named) and {p.name for p in written} >= set(named)
    assert all(f"*{n}*: " in report for n in named)  # each with its caption
    assert "## On TorchRec's DistributedModelParallel" in report  # the sections after the plots kept


def test_committed_results_md_names_plots_that_exist() -> None:
    report = (ROOT / "docs" / "RESULTS.md").read_text(encoding="utf-8")
    for name in re.findall(r"!\[[^]]*\]\(([^)]+)\)", report):
        assert is_png(ROOT / "docs" / name)


def test_replace_section_keeps_the_rest() -> None:
    text = "# R\n\n## Plots\n\n![a](a)\n\n## Next\n\nbody\n"
    assert replace_section(text, "## Plots", plots_section(["b.png"])) == (
        "# R\n\n## Plots\n\n![b.png](b.png)\n\n*b.png*\n\n## Next\n\nbody\n"
    )


# Calibration's scatter ---------------------------------------------------------------------------------


def test_scatter_prices_measurements_as_the_fit_does(tmp_path: Path) -> None:
    from embmap.cost_models.calibrate import fit_profile
    from embmap.cost_models.measurements import read_csv
    from embmap.mapper.calibration_scatter import draw_scatter, predictions, priced
    from embmap.mapper.profiles import SHIPPED_MEASUREMENTS

    measured = read_csv(SHIPPED_MEASUREMENTS)[::13]  # every strategy among them
    target = cpu()
    fixed = {"cache_effective_fraction": 0.7, "main_window_rows": 1.5}
    result = fit_profile(measured, target, preset_profile(target), command="pytest", fixed=fixed)
    assert predictions(measured, target, result.profile) == pytest.approx(result.predicted_s, rel=1e-9)
    points = priced(measured, target, result.profile)
    assert [p.held_out for p in points] == list(result.held_out)
    assert {p.strategy for p in points} == {"GM", "L1", "GM-UB", "L1-UB"}
    assert is_png(draw_scatter(points, tmp_path / "scatter.png", "test"))
