"""A measured run as a Chrome trace (`embmap run PLAN --trace out.json`): the JSON object format of the Trace
Event Format, which Perfetto (ui.perfetto.dev) and chrome://tracing open.

One process (the run), one thread per plan core, named "core C (cpu N)"; one complete event ("ph": "X") per
work item per measured batch, named "table strategy", with the item's id, rows, samples, predicted and
measured seconds in its args. Every measured batch is traced: a run is at most a few thousand items x batches.

What is measured and what is placed: the run report holds each item's duration in each batch and each core's
busy time, not the clock times of either. A core runs its items one after another in the plan's order, so in
the trace an item starts where the core's previous item of that batch ended (starts are cumulative sums of
measured durations); every core starts its batch at the batch's start (the cores leave a barrier together),
and batch b starts where batch b-1's measured end-to-end latency ended. The durations are the measured ones,
exactly; the gaps between items (the core's own overhead) are pushed to the end of the core's batch. The
trace's `otherData` says so.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embmap.ir.errors import SpecError
from embmap.ir.output import check_outputs, is_stdout, write_text_atomic
from embmap.ir.printer import printable

if TYPE_CHECKING:
    from embmap.ir.plan import ExecutionPlan
    from embmap.runtime import RunReport

PID = 1  # the run: one process in the trace
PLACEMENT = (
    "durations are measured; start times are placed: within a core's batch, items run back to back in the "
    "plan's order from the batch's start (cumulative sums of measured item times); batches are laid end to end "
    "by their measured end-to-end latency"
)


def check_trace_path(path: Path | str, inputs: list[Path | str] | None = None) -> None:
    """Refuse, before the run, a path the trace cannot be written to (a directory, a suffix other than .json)."""
    if is_stdout(path):
        raise SpecError("--trace", "writes a file, not standard output", "give a path ending in .json")
    check_outputs([("--trace", Path(path))], inputs or [])
    if Path(path).suffix.lower() != ".json":
        raise SpecError(
            "--trace",
            f"{printable(str(path))} does not end in .json (a Chrome trace is one JSON object)",
            "end the name with .json, e.g. --trace run.trace.json",
        )


def trace_events(plan: ExecutionPlan, report: RunReport) -> dict[str, Any]:
    """The run as a trace: metadata events naming the process and a thread per core, then one "X" event per
    item per measured batch (times in microseconds, as the format has them)."""
    events: list[dict[str, Any]] = [
        _meta("process_name", 0, {"name": f"embmap run: {plan.workload.name} on {plan.target.name}"}),
    ]
    for c in plan.cores:
        cpu = report.cpus[c.core] if c.core < len(report.cpus) else c.core
        events.append(_meta("thread_name", c.core, {"name": f"core {c.core} (cpu {cpu})"}))
        events.append(_meta("thread_sort_index", c.core, {"sort_index": c.core}))
    batch_start_s = 0.0
    for b in range(report.batches):
        for c in plan.cores:
            at_s = batch_start_s
            for i in c.items:
                seconds = report.item_s[i][b]
                events.append(_item_event(plan, i, b, at_s, seconds))
                at_s += seconds
        batch_start_s += report.e2e_s[b]
    return {
        "traceEvents": events,
        "displayTimeUnit": "ns",
        "otherData": {
            "workload": plan.workload.name,
            "target": plan.target.name,
            "backend": report.backend,
            "batches": report.batches,
            "predicted_makespan_s": plan.makespan_s,
            "measured_p50_s": report.p50_s,
            "times": PLACEMENT,
        },
    }


def _meta(name: str, tid: int, args: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, "ph": "M", "pid": PID, "tid": tid, "args": args}


def _item_event(plan: ExecutionPlan, item: int, batch: int, start_s: float, seconds: float) -> dict[str, Any]:
    it = plan.items[item]
    return {
        "name": f"{it.table} {it.strategy.value}",
        "cat": it.strategy.value,
        "ph": "X",
        "pid": PID,
        "tid": it.core,
        "ts": start_s * 1e6,
        "dur": seconds * 1e6,
        "args": {
            "item": it.id,
            "table": it.table,
            "strategy": it.strategy.value,
            "batch": batch,
            "rows": list(it.rows),
            "samples": list(it.samples),
            "predicted_s": it.cost.total_s,
            "measured_s": seconds,
        },
    }


def write_trace(plan: ExecutionPlan, report: RunReport, path: Path | str) -> Path:
    """The run's trace, written atomically to `path`."""
    write_text_atomic(Path(path), json.dumps(trace_events(plan, report), separators=(",", ":")) + "\n")
    return Path(path)
