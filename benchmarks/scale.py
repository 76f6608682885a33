"""Planning at scale: plan time, gap and peak memory of the embmap pipeline on synthetic workloads of up to
thousands of tables on up to hundreds of cores; print one Markdown table (and per-pass times).

Usage: python benchmarks/scale.py [--tables 100,500,1000,5000] [--cores 32,128,512] [--time-limit 10]
                                  [--cell-timeout 900] [--torchrec] [--torchrec-timeout 300] [--out FILE] [--quick]
Each cell compiles `synthetic:tables=N,seed=0` for ascend910 with its core count set to C (`--cores C`): the
embmap pipeline, CP-SAT with 1 worker and seed 0, no baselines. Every cell runs in a fresh Python process, so
that its peak memory (the process's peak resident set, interpreter and libraries included) is its own.
Plan time is the whole compile: workload generation, passes, plan emission and verification. With
`--torchrec`, TorchRec's EmbeddingShardingPlanner plans the same 500-table workload on 32 ranks with each of its
proposers, against EmbmapShardingPlanner (benchmarks/torchrec_planners.py's cell), each planner in a process of
its own stopped after `--torchrec-timeout` seconds. With `--out`, the report also goes to a Markdown file
with the machine, command and date (`make bench-scale` writes docs/SCALE.md). `--quick` runs two small cells,
one solved by CP-SAT and one above its size rule, in seconds.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.torchrec_planners import ints_arg, run_script  # noqa: E402
from embmap.ir.errors import EmbmapError  # noqa: E402
from embmap.ir.output import check_outputs, write_text_atomic  # noqa: E402
from embmap.mapper.pipelines import pipeline_for  # noqa: E402
from embmap.mapper.profiles import machine_key  # noqa: E402
from embmap.passes import parse_pipeline  # noqa: E402
from embmap.passes.solver.settings import DEFAULT_TIME_LIMIT_S  # noqa: E402

TARGET = "ascend910"
# The columns of the per-pass table: every pass of the pipeline the cells compile with.
PASSES = tuple(p.name for p in parse_pipeline(pipeline_for("embmap")))
QUICK_CELLS = ((50, 8), (300, 128))  # CP-SAT solves the first; the second is above its size rule
TORCHREC_CELL = (500, 32)


def workload(tables: int) -> str:
    return f"synthetic:tables={tables},seed=0"


@dataclass(frozen=True)
class Cell:
    """One compile's results, or why there are none (`error`)."""

    tables: int
    cores: int
    plan_s: float | None = None
    status: str = ""
    gap: float | None = None
    makespan_s: float | None = None
    lower_bound_s: float | None = None
    menu_bound_s: float | None = None
    items: int = 0
    peak_bytes: int | None = None
    start_bytes: int | None = None  # peak resident set before compiling: interpreter and libraries
    passes_s: dict[str, float] = field(default_factory=dict)
    error: str = ""


def peak_rss_bytes() -> int:
    """This process's peak resident set so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def compile_cell(tables: int, cores: int, time_limit: float) -> Cell:
    """Compile one cell in this process (what the child process runs)."""
    from embmap.mapper import SolverSettings, compile
    from embmap.passes import TimingInstrument

    start_bytes = peak_rss_bytes()
    timing = TimingInstrument()
    start = time.perf_counter()
    plan = compile(
        workload(tables),
        TARGET,
        cores=cores,
        solver=SolverSettings(time_limit_s=time_limit, workers=1, seed=0),
        baselines=False,
        instruments=[timing],
    )
    seconds = time.perf_counter() - start
    peak_bytes = peak_rss_bytes()
    return Cell(
        tables=tables,
        cores=cores,
        plan_s=seconds,
        status=plan.solver.status,
        gap=plan.solver.gap,
        makespan_s=plan.makespan_s,
        lower_bound_s=plan.lower_bound_s,
        menu_bound_s=plan.solver.menu_bound_s,
        items=len(plan.items),
        peak_bytes=peak_bytes,
        start_bytes=start_bytes,
        passes_s=dict(timing.records),
    )


def run_child(args: list[str], timeout_s: float) -> tuple[dict[str, Any] | None, str]:
    """Run this script with `args` in a fresh process: its JSON result, or why there is none."""
    return run_script(__file__, args, timeout_s, f"did not finish in {timeout_s:g} s")


def measure(tables: int, cores: int, time_limit: float, timeout_s: float) -> Cell:
    data, error = run_child(["--cell", str(tables), str(cores), "--time-limit", str(time_limit)], timeout_s)
    return Cell(**data) if data is not None else Cell(tables=tables, cores=cores, error=error)


def measure_torchrec(timeout_s: float) -> str:
    """TorchRec's planner on `TORCHREC_CELL`, proposer by proposer, against EmbmapShardingPlanner
    (benchmarks/torchrec_planners.py's cell: each planner in a process of its own, stopped after `timeout_s`)."""
    from embmap.mapper.torchrec.planner import available

    tables, ranks = TORCHREC_CELL
    what = f"TorchRec's EmbeddingShardingPlanner on `{workload(tables)}` with {ranks} ranks"
    if not available():
        return f"{what}: not measured (TorchRec is not installed)."
    from benchmarks import torchrec_planners as planners

    rows = planners.run_cell(tables, ranks, list(planners.LABELS), timeout_s)
    lines = [
        f"{what}, proposer by proposer, against EmbmapShardingPlanner (`benchmarks/torchrec_planners.py`, whose "
        "section of RESULTS.md says how the cell is set up; plan time: `planner.plan` alone, no plan emitted "
        "or verified):",
        "",
        *planners.cell_table(rows),
    ]
    return "\n".join(lines)


def _mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"


def cell_table(cells: Sequence[Cell]) -> list[str]:
    out = [
        HEADER,
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        if c.error:
            out.append(f"| {c.tables} | {c.cores} | {c.error} |" + " |" * 7)
            continue
        assert c.plan_s is not None and c.gap is not None and c.makespan_s is not None and c.lower_bound_s is not None
        out.append(
            f"| {c.tables} | {c.cores} | {c.plan_s:.1f} s | {c.status} | {c.gap:.1%} | {c.makespan_s * 1e6:.1f} | "
            f"{c.lower_bound_s * 1e6:.1f} | {(c.menu_bound_s or 0.0) * 1e6:.1f} | {c.items} | {_mib(c.peak_bytes)} |"
        )
    return out


HEADER = (
    "| tables | cores | plan time | status | gap | makespan (us) | lower bound (us) | menu bound (us) | items "
    "| peak memory |"
)


def pass_table(cells: Sequence[Cell]) -> list[str]:
    """Seconds per pass; `rest` is the workload, lowering, and the plan's emission and verification."""
    out = [
        "| tables | cores | " + " | ".join(PASSES) + " | rest |",
        "|---|---|" + "---|" * (len(PASSES) + 1),
    ]
    for c in cells:
        if c.error or c.plan_s is None:
            continue
        rest = c.plan_s - sum(c.passes_s.values())
        out.append(
            f"| {c.tables} | {c.cores} | "
            + " | ".join(f"{c.passes_s.get(p, 0.0):.2f}" for p in PASSES)
            + f" | {rest:.2f} |"
        )
    return out


def report(cells: Sequence[Cell], time_limit: float, torchrec: str | None, header: Sequence[str] = ()) -> str:
    starts = [c.start_bytes for c in cells if c.start_bytes is not None]
    lines = [
        *header,
        f"Target {TARGET} with its core count set per cell; CP-SAT time limit {time_limit:g} s, 1 worker, seed 0; "
        f"one fresh process per cell (before compiling, a process's peak is {_mib(max(starts, default=None))}).",
        "",
        "Status, gap and lower bound are the plan's own (NOT_SOLVED: above `cpsat_boolean_limit` (table, option, core) "
        "placements assign-cores does not build the CP-SAT model, and the greedy plan stands). The lower bound and "
        "gap cover every plan the format allows; at this scale that bound reads each table's part costs on a "
        "coarse grid and is the work bound alone (passes/solver/space.py), so it is loose. The menu bound covers "
        "the plans of the menu the passes search (`solver.menu_bound_s`).",
        "",
        *cell_table(cells),
        "",
        "Seconds per pass (`rest`: workload generation, lowering, plan emission and verification):",
        "",
        *pass_table(cells),
    ]
    if torchrec:
        lines += ["", torchrec]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=ints_arg, default=(100, 500, 1000, 5000), help="e.g. 100,500,1000,5000")
    parser.add_argument("--cores", type=ints_arg, default=(32, 128, 512), help="e.g. 32,128,512")
    parser.add_argument(
        "--time-limit", type=float, default=DEFAULT_TIME_LIMIT_S, help="CP-SAT time limit per cell (seconds)"
    )
    parser.add_argument("--cell-timeout", type=float, default=900.0, help="stop a cell after this many seconds")
    parser.add_argument(
        "--torchrec", action="store_true", help="also time TorchRec's planner, each proposer, on 500 tables x 32"
    )
    parser.add_argument("--torchrec-timeout", type=float, default=300.0, help="stop each planner after this")
    parser.add_argument("--out", type=Path, help="also write the report to this Markdown file")
    parser.add_argument("--quick", action="store_true", help="two small cells, in seconds")
    parser.add_argument("--cell", type=int, nargs=2, metavar=("TABLES", "CORES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.cell:  # child: one cell, one JSON line
        tables, cores = args.cell
        print(json.dumps(asdict(compile_cell(tables, cores, args.time_limit))))
        return 0

    if args.out:
        try:
            check_outputs([("--out", args.out)])  # before hours of cells, not after
        except EmbmapError as exc:
            parser.error(exc.one_line())
    time_limit = 1.0 if args.quick else args.time_limit
    grid = QUICK_CELLS if args.quick else tuple((t, c) for t in args.tables for c in args.cores)
    cells = []
    for tables, cores in grid:
        cells.append(measure(tables, cores, time_limit, args.cell_timeout))
        print(cell_table(cells[-1:])[-1], file=sys.stderr, flush=True)  # progress
    torchrec = measure_torchrec(args.torchrec_timeout) if args.torchrec else None
    command = "python benchmarks/scale.py " + " ".join(sys.argv[1:] if argv is None else argv)
    header = [
        "# Planning at scale",
        "",
        f"- command: `{command.strip()}`",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {machine_key()} ({platform.machine()}, Python {platform.python_version()})",
        "",
    ]
    text = report(cells, time_limit, torchrec)
    print(text, end="")
    if args.out:
        write_text_atomic(args.out, report(cells, time_limit, torchrec, header))
    return 0


if __name__ == "__main__":
    sys.exit(main())
