"""TorchRec's planner, proposer by proposer, against EmbmapShardingPlanner: planning time and plan quality.

Usage: python benchmarks/torchrec_planners.py [--tables 500,5000] [--ranks 32,128] [--timeout 300]
                                              [--out docs/RESULTS.md] [--quick]
Per cell (tables x ranks): one TorchRec model, the EmbeddingBagConfigs of `synthetic:tables=N,seed=0`, per-rank
batch 512 (TorchRec's default), one `Topology(world_size=R, compute_device="cpu", ddr_cap=M)` and the same
constraints for every planner: `ParameterConstraints(sharding_types=[table_wise, row_wise, data_parallel],
pooling_factors=[p])` per table. Column-wise is left out: TorchRec's column shards are not the equal all-device
blocks the device level prices. M (`memory_per_rank_bytes`) is what TorchRec reserves for inputs plus a usable
part (`usable_bytes`): 2 x the tables' bytes / R plus 1.25 x the pooled outputs TorchRec counts with the tables
(each table's outputs of the global batch, 4 bytes a value), and at least 1.25 x the largest table with its
outputs. So every planner finds room (TorchRec's storage estimates count those outputs; embmap's do not), and
replicating every table does not fit. EmbmapShardingPlanner is given TorchRec's usable part too
(`FixedPercentageStorageReservation` of the rest), so all planners plan for the same memory.

Planners, each in a fresh process stopped after `--timeout` seconds (wall clock, imports included; the time
reported is `planner.plan(module, sharders)` alone): EmbmapShardingPlanner (1 worker, seed 0, the default time
limit), its device level alone (the same shardings, without mapping each rank's share onto its cores: the
decision TorchRec's planner makes), and TorchRec's EmbeddingShardingPlanner with each proposer alone, with its
default list, and with DynamicProgrammingProposer on a CUDA topology of the same usable memory (HBM, TorchRec's
15% of it reserved, no DDR to spill to; the module on meta tensors, planned without a GPU). A planner that
plans nothing or raises is reported with its reason; one stopped by the timeout is not rerun on a cell with
more tables or ranks, nor the default list where one of its proposers was stopped alone.
Every plan is priced by embmap's device-level model (`mapper.torchrec.compare.predicted_s`) on the cluster
EmbmapShardingPlanner plans for (`cluster("cpu", R, memory_bytes=...)`): compute of each device's tables spread
over its cores, then its outputs over the assumed gloo link; the slowest device's finish.
With `--out`, the section `SECTION` of that Markdown file is replaced (or appended), the rest kept.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from embmap.ir.cluster import ClusterSpec, Sharding  # noqa: E402
from embmap.ir.output import write_text_atomic  # noqa: E402
from embmap.ir.printer import fmt_bytes, fmt_s  # noqa: E402
from embmap.ir.spec import WorkloadSpec  # noqa: E402
from embmap.mapper.bench.report import PLANNERS_SECTION  # noqa: E402
from embmap.mapper.compiler import prepare_workload  # noqa: E402
from embmap.mapper.profiles import machine_key  # noqa: E402

SECTION = PLANNERS_SECTION
BATCH_PER_RANK = 512  # TorchRec's default BATCH_SIZE
RESERVATION = 0.15  # TorchRec's default HeuristicalStorageReservation, and EmbmapShardingPlanner's
KINDS = ("table_wise", "row_wise", "data_parallel")
OUTPUT_BYTES = 4  # pooled outputs are fp32
OURS = ("embmap", "embmap-device-level")
QUICK_CELL = (20, 4)
# Planner names: how each is labelled, in the order they run (the default list after its members).
LABELS = {
    "embmap-device-level": "EmbmapShardingPlanner's device level alone (no core mapping)",
    "embmap": "EmbmapShardingPlanner",
    "greedy": "GreedyProposer()",
    "greedy-no-depth": "GreedyProposer(use_depth=False)",
    "grid-search": "GridSearchProposer()",
    "uniform": "UniformProposer()",
    "default": "default list (grid, greedy, greedy no depth, uniform)",
    "dynamic-programming": "DynamicProgrammingProposer() (CUDA topology)",
}
CPU_PROPOSERS = ("greedy", "greedy-no-depth", "grid-search", "uniform", "default")
DEFAULT_MEMBERS = ("grid-search", "greedy", "greedy-no-depth", "uniform")


def workload(tables: int) -> WorkloadSpec:
    return prepare_workload(f"synthetic:tables={tables},seed=0").effective()


def memory_per_rank_bytes(w: WorkloadSpec, ranks: int) -> int:
    """Each rank's memory (`ddr_cap`): `usable_bytes` plus what TorchRec reserves (`reserved_bytes`)."""
    return usable_bytes(w, ranks) + reserved_bytes(w, ranks)


def usable_bytes(w: WorkloadSpec, ranks: int) -> int:
    """The memory of a rank for tables: 2 x the tables' bytes / ranks plus 1.25 x the pooled outputs TorchRec
    counts with them (a table's outputs of the global batch, on its rank), and at least 1.25 x the largest
    table with its outputs. TorchRec's planners and EmbmapShardingPlanner all get this much."""
    outputs = [BATCH_PER_RANK * ranks * t.dim * OUTPUT_BYTES for t in w.tables]
    spread = 2 * w.total_bytes / ranks + 1.25 * sum(outputs) / ranks
    largest = 1.25 * max(t.bytes + o for t, o in zip(w.tables, outputs, strict=True))
    return math.ceil(max(spread, largest))


def reserved_bytes(w: WorkloadSpec, ranks: int) -> int:
    """What TorchRec's default storage reservation takes from a CPU rank's memory: the inputs of two pipelined
    batches (its 15% applies to HBM only)."""
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder
    from torchrec.distributed.planner import Topology
    from torchrec.distributed.planner.storage_reservations import HeuristicalStorageReservation

    from embmap.mapper.torchrec.io import collection

    probe = 1 << 50
    warnings.filterwarnings("ignore", "HeuristicalStorageReservation", FutureWarning)
    topology = Topology(world_size=ranks, compute_device="cpu", ddr_cap=probe)
    left = HeuristicalStorageReservation(RESERVATION).reserve(
        topology=topology,
        batch_size=BATCH_PER_RANK,
        module=collection(w, "meta"),
        sharders=[EmbeddingBagCollectionSharder()],
        constraints=constraints(w),
    )
    return probe - int(left.devices[0].storage.ddr)


def constraints(w: WorkloadSpec) -> dict[str, Any]:
    from torchrec.distributed.planner.types import ParameterConstraints

    return {
        t.name: ParameterConstraints(sharding_types=list(KINDS), pooling_factors=[float(t.pooling)]) for t in w.tables
    }


def proposers(name: str) -> Any:
    """The proposer (or list) of a TorchRec planner name; None for TorchRec's default list."""
    from torchrec.distributed.planner import proposers as p

    return {
        "greedy": lambda: p.GreedyProposer(),
        "greedy-no-depth": lambda: p.GreedyProposer(use_depth=False),
        "grid-search": lambda: p.GridSearchProposer(),
        "uniform": lambda: p.UniformProposer(),
        "default": lambda: None,
        "dynamic-programming": lambda: p.DynamicProgrammingProposer(),
    }[name]()


def make_planner(name: str, w: WorkloadSpec, ranks: int, memory: int, batch: int = BATCH_PER_RANK) -> Any:
    """The planner `name` for `ranks` ranks of `memory` bytes each, with the cell's constraints."""
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology

    if name in OURS:
        from torchrec.distributed.planner.storage_reservations import FixedPercentageStorageReservation

        from embmap.mapper.torchrec.sharding_planner import EmbmapShardingPlanner
        from embmap.passes.solver.settings import SolverSettings

        topology = Topology(world_size=ranks, compute_device="cpu", ddr_cap=memory)
        # The memory TorchRec's planners have left (EmbmapShardingPlanner reserves a share of it, no inputs).
        reserved = FixedPercentageStorageReservation(1 - usable_bytes(w, ranks) / memory)
        return EmbmapShardingPlanner(
            topology=topology,
            batch_size=batch,
            constraints=constraints(w),
            storage_reservation=reserved,
            debug=False,
            solver=SolverSettings(workers=1, seed=0),
        )
    if name == "dynamic-programming":  # HBM, with TorchRec's 15% of it reserved; no DDR to spill to
        hbm = math.ceil(memory / (1 - RESERVATION)) + 1
        topology = Topology(world_size=ranks, compute_device="cuda", hbm_cap=hbm, ddr_cap=0)
    else:
        topology = Topology(world_size=ranks, compute_device="cpu", ddr_cap=memory)
    return EmbeddingShardingPlanner(
        topology=topology, batch_size=batch, constraints=constraints(w), proposer=proposers(name), debug=False
    )


def plan_with(name: str, w: WorkloadSpec, ranks: int, memory: int, batch: int = BATCH_PER_RANK) -> dict[str, Any]:
    """Plan `w` with planner `name` in this process: the plan, its seconds and what the planner says of it."""
    import torch
    from torchrec.distributed.embeddingbag import EmbeddingBagCollectionSharder

    from embmap.mapper.torchrec.io import collection

    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    device = "cuda" if name == "dynamic-programming" else "cpu"
    planner = make_planner(name, w, ranks, memory, batch)
    module = collection(w, "meta")
    sharders = [EmbeddingBagCollectionSharder()]
    if name == "embmap-device-level":
        return device_level(planner, module, sharders)
    with torch.no_grad():
        start = time.perf_counter()
        try:
            plan = planner.plan(module, sharders)
        except Exception as exc:
            grid = [p for p in getattr(planner, "_proposers", ()) if hasattr(p, "_max_proposals")]
            if grid and not grid[0]._proposals:  # TorchRec then reports "insufficient storage"
                raise RuntimeError(
                    f"proposed nothing: more than its {grid[0]._max_proposals:,} proposals (max_proposals)"
                ) from exc
            raise
        seconds = time.perf_counter() - start
    out: dict[str, Any] = {"plan": plan, "plan_s": seconds, "device": device}
    best = getattr(planner, "_best_plan", None)
    if best is not None:
        out["rating"] = float(planner._perf_model.rate(plan=best))
    last = getattr(planner, "last_plan", None)
    if last is not None:
        out["memory_bytes"] = last.cluster.device.main.capacity_bytes
        out["workload_key"] = workload_key(last.workload)
        out["objective_s"], out["gap"] = last.solver.objective_s, last.solver.gap
    return out


def device_level(planner: Any, module: Any, sharders: list[Any]) -> dict[str, Any]:
    """What `EmbmapShardingPlanner.plan` does up to its device level's placement (`compile_cluster`'s first
    half: the same options and CP-SAT search, so the same shardings), timed: the decision TorchRec's planner
    makes, without mapping each device's share onto its cores."""
    from embmap.mapper.profiles import default_profile
    from embmap.mapper.torchrec import sharding_planner as sp
    from embmap.mapper.torchrec.cluster import cluster, table_options
    from embmap.mapper.torchrec.io import workload_from_torchrec
    from embmap.passes.solver.device_level import place

    n = planner._topology.world_size
    start = time.perf_counter()
    found = sp._sharded_modules(module, sharders)
    configs, per_table, _ = planner._tables(found, "cpu", n)
    pooling = {name: tc.pooling for name, tc in per_table.items() if tc.pooling is not None}
    w = workload_from_torchrec(configs, batch_size=planner._batch_size * n, pooling=pooling).effective()
    spec = cluster(planner._target, n, memory_bytes=planner._memory_bytes(module, found))
    allowed = {name: list(tc.allowed) for name, tc in per_table.items()}
    options = table_options(w, spec, default_profile(spec.device), allowed)
    choice, report = place(list(w.tables), options, spec, "cp-sat", planner._solver)
    seconds = time.perf_counter() - start
    return {
        "plan_s": seconds,
        "device": "cpu",
        "shardings": {t.name: [o.sharding.value, list(o.ranks)] for t, o in zip(w.tables, choice, strict=True)},
        "memory_bytes": spec.device.main.capacity_bytes,
        "workload_key": workload_key(w),
        "objective_s": report.objective_s,
        "gap": report.gap,
    }


def workload_key(w: WorkloadSpec) -> str:
    """What the device level prices of a workload: its batch and its tables, each with its distribution."""
    return w.effective().model_copy(update={"name": "w", "assumptions": ()}).digest()


def child(name: str, tables: int, ranks: int) -> dict[str, Any]:
    """What a child process prints: plan seconds, shardings (table -> [type, ranks]) and the planner's notes."""
    w = workload(tables)
    try:
        done = plan_with(name, w, ranks, memory_per_rank_bytes(w, ranks))
    except Exception as exc:  # a planner that plans nothing is a result, reported with its reason
        lines = str(exc).strip().splitlines() or [""]
        kind = "" if isinstance(exc, RuntimeError) else f"{type(exc).__name__}: "  # ours say what happened
        return {"error": f"{kind}{lines[0][:200]}"}
    if "plan" in done:
        done["shardings"] = {t: [kind, list(r)] for t, (kind, r) in _shardings(done.pop("plan")).items()}
    return done


def _shardings(plan: Any) -> dict[str, tuple[str, tuple[int, ...]]]:
    out = {}
    for table, ps in plan.plan[""].items():
        out[table] = (str(getattr(ps.sharding_type, "value", ps.sharding_type)), tuple(ps.ranks or ()))
    return out


def run_script(
    script: str, args: list[str], timeout_s: float, stopped: str, width: int | None = None
) -> tuple[dict[str, Any] | None, str]:
    """Run a benchmark `script` with `args` in a fresh process: the JSON of its last line, or why there is none
    (`stopped` where it ran past `timeout_s`; a failure's last line of stderr, cut at `width`)."""
    command = [sys.executable, str(Path(script).resolve()), *args]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        return None, stopped
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"failed (exit {done.returncode}): {last[:width]}"
    return json.loads(done.stdout.strip().splitlines()[-1]), ""


def run_child(args: list[str], timeout_s: float) -> tuple[dict[str, Any] | None, str]:
    """Run this script with `args` in a fresh process: its JSON result, or why there is none."""
    return run_script(__file__, args, timeout_s, f"> {timeout_s:g} s, stopped", width=200)


@dataclass
class Row:
    """One planner on one cell: its time and plan priced, or why there is none."""

    tables: int
    ranks: int
    planner: str
    plan_s: float | None = None
    predicted_s: float | None = None
    counts: dict[str, int] = field(default_factory=dict)
    note: str = ""
    error: str = ""


def measure(name: str, tables: int, ranks: int, timeout_s: float | None) -> tuple[dict[str, Any] | None, str]:
    """One planner on one cell in a fresh process, or in this one (no timeout) where `timeout_s` is None."""
    if timeout_s is None:
        data: dict[str, Any] | None = json.loads(json.dumps(child(name, tables, ranks)))
        error = ""
    else:
        data, error = run_child(["--child", name, str(tables), str(ranks)], timeout_s)
    if data is not None and "error" in data:
        return None, data["error"]
    return data, error


def cell_spec(w: WorkloadSpec, ranks: int) -> tuple[WorkloadSpec, ClusterSpec]:
    """The workload and cluster EmbmapShardingPlanner plans for this cell (the global batch; no dense
    parameters in a bare EmbeddingBagCollection, so the memory is the topology's less the reservation)."""
    from embmap.mapper.torchrec.cluster import cluster
    from embmap.mapper.torchrec.io import collection, workload_from_torchrec

    configs = collection(w, "meta").embedding_bag_configs()
    pooling = {t.name: float(t.pooling) for t in w.tables}
    planned = workload_from_torchrec(configs, batch_size=BATCH_PER_RANK * ranks, pooling=pooling)
    memory = memory_per_rank_bytes(w, ranks)
    usable = max(1, int(memory * (1 - (1 - usable_bytes(w, ranks) / memory))))  # as EmbmapShardingPlanner counts it
    return planned, cluster("cpu", ranks, memory_bytes=usable)


def score(rows: list[Row], results: dict[str, dict[str, Any]], w: WorkloadSpec, ranks: int) -> None:
    """Price every plan of one cell on embmap's device-level model, and count its sharding types."""
    from embmap.mapper.torchrec.compare import all_options, memory_bytes, predicted_s

    planned, spec = cell_spec(w, ranks)
    for ours in (results.get(name) for name in OURS):
        if ours is not None and ours.get("workload_key") not in (None, workload_key(planned)):
            raise SystemExit("the rebuilt workload differs from the one EmbmapShardingPlanner planned")
        if ours is not None and ours.get("memory_bytes") not in (None, spec.device.main.capacity_bytes):
            raise SystemExit("the rebuilt cluster's memory differs from EmbmapShardingPlanner's")
    options = all_options(planned, spec)
    capacity = spec.device.main.capacity_bytes
    for row in rows:
        data = results.get(row.planner)
        if data is None:
            continue
        shardings = {t: (Sharding(k), tuple(r)) for t, (k, r) in data["shardings"].items()}
        row.predicted_s = predicted_s(planned, spec, shardings, options=options)
        for kind, _ in shardings.values():
            row.counts[kind.value] = row.counts.get(kind.value, 0) + 1
        notes = []
        over = sum(b > capacity for b in memory_bytes(planned, spec, shardings, options))
        if over:
            notes.append(f"over {fmt_bytes(capacity)} on {over} ranks")
        if "objective_s" in data:
            notes.append(f"device level {fmt_s(data['objective_s'])}, gap {data['gap']:.1%}")
        if "rating" in data:
            notes.append(f"TorchRec's rating {data['rating']:.3g}")
        row.note = "; ".join(notes)


def run_cell(
    tables: int,
    ranks: int,
    names: Sequence[str],
    timeout_s: float | None,
    stopped: dict[str, tuple[int, int]] | None = None,
) -> list[Row]:
    """Every planner on one cell, one process each (None: all in this one, for tests). Not run, to save the
    timeout: a planner `stopped` (name -> cell) on a cell of no more tables and ranks, where it is recorded too,
    and the default list when a member passed the timeout alone (it runs them all, one after the other)."""
    stopped = {} if stopped is None else stopped
    results: dict[str, dict[str, Any]] = {}
    rows: list[Row] = []
    for name in names:
        row = Row(tables, ranks, name)
        data: dict[str, Any] | None = None
        row.error = _skipped(name, tables, ranks, rows, stopped, timeout_s)
        if not row.error:
            data, row.error = measure(name, tables, ranks, timeout_s)
        if row.error.endswith("stopped"):
            stopped.setdefault(name, (tables, ranks))
        if data is not None:
            results[name], row.plan_s = data, data["plan_s"]
            if timeout_s is not None:  # kept, should the pricing below fail
                keep = Path("out") / "torchrec_planners" / f"{tables}x{ranks}-{name}.json"
                keep.parent.mkdir(parents=True, exist_ok=True)
                keep.write_text(json.dumps(data))
        rows.append(row)
        print(f"{tables} x {ranks} {name}: {row.error or f'{row.plan_s:.1f} s'}", file=sys.stderr, flush=True)
    score(rows, results, workload(tables), ranks)
    return rows


def _skipped(
    name: str, tables: int, ranks: int, rows: list[Row], stopped: dict[str, tuple[int, int]], timeout_s: float | None
) -> str:
    """Why `name` is not run on this cell, or ""."""
    limit = f"> {timeout_s or 0:g} s, not run"
    if name in stopped and stopped[name][0] <= tables and stopped[name][1] <= ranks:
        return f"{limit}: stopped on {stopped[name][0]} tables x {stopped[name][1]} ranks"
    slow = [r.planner for r in rows if r.planner in DEFAULT_MEMBERS and r.error.startswith(">")]
    if name == "default" and slow:
        return f"{limit}: {LABELS[slow[0]]} alone passed the timeout"
    return ""


def best_torchrec(rows: Sequence[Row]) -> Row | None:
    """TorchRec's best proposer of a cell, by predicted time."""
    planned = [r for r in rows if r.planner not in OURS and r.predicted_s is not None]
    return min(planned, key=lambda r: r.predicted_s or 0.0, default=None)


def cell_table(rows: Sequence[Row]) -> list[str]:
    ours = next((r.predicted_s for name in OURS for r in rows if r.planner == name and r.predicted_s), None)
    out = [
        "| tables | ranks | planner (proposer) | plan time | predicted (embmap's device-level model) | vs embmap "
        "| shardings | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        time_s = "-" if r.plan_s is None else f"{r.plan_s:.2f} s"
        predicted = "-" if r.predicted_s is None else fmt_s(r.predicted_s)
        ratio = "-" if r.predicted_s is None or not ours else f"{r.predicted_s / ours:.2f}x"
        counts = ", ".join(f"{k} {v}" for k, v in sorted(r.counts.items())) or "-"
        note = r.error or r.note or ""
        out.append(
            f"| {r.tables} | {r.ranks} | {LABELS[r.planner]} | {time_s} | {predicted} | {ratio} | {counts} | {note} |"
        )
    best = best_torchrec(rows)
    if best is None:
        out += ["", f"TorchRec's best proposer on {rows[0].tables} tables x {rows[0].ranks} ranks: none planned."]
    else:
        ratio = f" ({best.predicted_s / ours:.2f}x embmap's)" if ours and best.predicted_s else ""
        out += [
            "",
            f"TorchRec's best proposer on {best.tables} tables x {best.ranks} ranks: {LABELS[best.planner]}, "
            f"predicted {fmt_s(best.predicted_s or 0.0)}{ratio}, planned in {best.plan_s or 0.0:.2f} s.",
        ]
    return out


def section(cells: Sequence[Sequence[Row]], command: str, timeout_s: float) -> str:
    lines = [
        SECTION,
        "",
        f"- command: `{command}`",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {machine_key()}; planning times are wall-clock on a shared 2-core machine",
        f"- per-rank batch {BATCH_PER_RANK}; constraints: {', '.join(KINDS)} and the workload's pooling factors; "
        "`ddr_cap` per rank: TorchRec's input reservation plus a usable part of 2 x the tables' bytes / ranks plus "
        "1.25 x the pooled outputs TorchRec counts with them (at least 1.25 x the largest table with its "
        "outputs), which EmbmapShardingPlanner is given too; each planner in a fresh process, stopped after "
        f"{timeout_s:g} s, and not rerun on larger cells once stopped",
        "- predicted: embmap's device-level model (`mapper.torchrec.compare.predicted_s`) on the cluster "
        "EmbmapShardingPlanner plans for, the slowest rank's compute and output all-to-all; vs embmap: this "
        "plan's predicted time / EmbmapShardingPlanner's, or its device level's where the planner did not finish "
        "(the same shardings; above 1: embmap's plan is faster). TorchRec's rating "
        "is its own perf model's (training: forward and backward), not comparable across planners' models.",
        "",
    ]
    for rows in cells:
        lines += [*cell_table(rows), ""]
    return "\n".join(lines)


def write_section(path: Path, text: str, heading: str = SECTION) -> None:
    """Replace the section `heading` of the Markdown file at `path` (up to the next `## ` heading) by `text`,
    or append it; everything else is kept byte for byte."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    body = text if text.endswith("\n") else text + "\n"
    start = 0 if old.startswith(heading + "\n") else old.find("\n" + heading + "\n") + 1
    if start == 0 and not old.startswith(heading + "\n"):  # not there: append, after a blank line
        new = old + ("" if not old or old.endswith("\n\n") else "\n" if old.endswith("\n") else "\n\n") + body
    else:
        end = old.find("\n## ", start + len(heading))
        new = old[:start] + body + ("" if end < 0 else "\n" + old[end + 1 :])
    write_text_atomic(path, new)


def ints_arg(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated positive integers (the benchmarks' lists of cells)."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tables", type=ints_arg, default=(500, 5000), help="e.g. 500,5000")
    parser.add_argument("--ranks", type=ints_arg, default=(32, 128), help="e.g. 32,128")
    parser.add_argument("--planners", default=",".join(LABELS), help="a comma-separated subset of " + ", ".join(LABELS))
    parser.add_argument("--timeout", type=float, default=300.0, help="stop a planner's process after this (s)")
    parser.add_argument("--out", type=Path, help="write the section into this Markdown file (e.g. docs/RESULTS.md)")
    parser.add_argument("--quick", action="store_true", help=f"one cell of {QUICK_CELL[0]} tables x {QUICK_CELL[1]}")
    parser.add_argument("--in-process", action="store_true", help="run the planners in this process (tests)")
    parser.add_argument("--child", nargs=3, metavar=("PLANNER", "TABLES", "RANKS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # child: one planner on one cell, one JSON line
        name, tables, ranks = args.child
        print(json.dumps(child(name, int(tables), int(ranks))))
        return 0
    names = [n for n in args.planners.split(",") if n]
    unknown = sorted(set(names) - set(LABELS))
    if unknown:
        parser.error(f"--planners: unknown {unknown[0]!r}; use {', '.join(LABELS)}")
    grid = [QUICK_CELL] if args.quick else [(t, r) for t in args.tables for r in args.ranks]
    timeout_s = None if args.in_process else args.timeout
    stopped: dict[str, tuple[int, int]] = {}
    cells = [run_cell(t, r, names, timeout_s, stopped) for t, r in grid]
    command = "python benchmarks/torchrec_planners.py " + " ".join(sys.argv[1:] if argv is None else argv)
    text = section(cells, command.strip(), args.timeout)
    print(text, end="")
    if args.out:
        write_section(args.out, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
