"""`embmap profile-trace`: the workload an index trace measures, written as a YAML workload file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from embmap.ir.output import check_outputs, is_stdout, write_text_atomic
from embmap.ir.printer import printable

TICK_S = 0.25  # how often the progress line is redrawn


def cmd_profile_trace(args: argparse.Namespace) -> int:
    from embmap.ir.spec import Empirical
    from embmap.mapper.traces import TraceProgress, workload_from_trace
    from embmap.mapper.traces.profile import workload_yaml

    check_outputs([("--output", args.output)], [args.trace, args.tables])
    drawn = [0.0]

    def progress(event: TraceProgress) -> None:
        if not sys.stderr.isatty():
            return
        if event.done or event.elapsed_s - drawn[0] >= TICK_S:
            drawn[0] = event.elapsed_s
            line = f"profile-trace {event.elapsed_s:6.1f} s  {event.pieces:,} pieces  {event.ids:,} ids"
            sys.stderr.write("\r" + line + "\x1b[K" + ("\n" if event.done else ""))
            sys.stderr.flush()

    workload = workload_from_trace(
        args.trace, tables=args.tables, buckets=args.buckets, batch_size=args.batch_size, progress=progress
    )
    write_text_atomic(args.output, workload_yaml(workload))
    say = sys.stderr if is_stdout(args.output) else sys.stdout
    where = "standard output" if is_stdout(args.output) else str(args.output)
    print(
        f"wrote {printable(where)}: {len(workload.tables)} tables, batch size {workload.batch_size}, "
        f"from {printable(Path(args.trace).name)}",
        file=say,
    )
    for t in workload.tables:
        d = t.distribution
        assert isinstance(d, Empirical)
        alpha = "-" if d.alpha is None else f"{d.alpha:.2f}"
        print(
            f"  {printable(t.name):<24} rows {t.rows:>13,}  pooling {float(t.pooling):8.3f}  "
            f"zipf alpha ~{alpha:>5}  {len(d.counts)} buckets",
            file=say,
        )
    return 0
