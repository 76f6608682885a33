"""The argument parser of `embmap`: one parser per command, and the argument types that read numbers,
distributions and hot tables. Usage errors are one line and exit 2, like every other input error.

Every number on the command line has bounds, checked as it is read, before any work: where a file states the
same quantity, its bounds are the file's (`ir.spec`), so that a value refused in a file is refused here too.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeAlias

from annotated_types import Le
from pydantic import BaseModel

from embmap import __version__
from embmap.ir.cluster import ClusterSpec
from embmap.ir.errors import SpecError
from embmap.ir.printer import printable
from embmap.ir.spec import (
    MAX_BATCH_SIZE,
    MAX_BUCKETS,
    MAX_CORES,
    MAX_MEMORY_BYTES,
    MAX_ROWS,
    MAX_TABLES,
    Distribution,
    HotSet,
    HotTables,
    Uniform,
    Zipf,
)
from embmap.passes.solver.settings import MAX_SEED, MAX_WORKERS

MAX_SECONDS = 86_400.0  # no compile searches and no run waits on a hung core for more than a day
MAX_RUN_SEED = 2**64 - 1  # the run's tables and indices are drawn by numpy, seeded with 64 bits


def _most(model: type[BaseModel], field: str) -> int:
    """The upper bound (`le`) a model's field declares, so that the command line refuses what a file would."""
    return next(m.le for m in model.model_fields[field].metadata if isinstance(m, Le) and isinstance(m.le, int))


MAX_DEVICES = _most(ClusterSpec, "devices")
MAX_LINK_GBPS = 1e6  # a petabyte per second per device: more is no link
MAX_BATCHES = 1_000_000  # batches a run measures or warms up with: each draws its own indices
MAX_REPEATS = 1000  # bench's interleaved rounds


class OneLineParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other input error: `embmap: error: FIELD:
    problem (fix: ...)`, the field being the option (`--seed`), not argparse's `argument --seed`."""

    def error(self, message: str) -> NoReturn:
        message = printable(message.removeprefix("argument "))  # what the user typed may hold a newline
        fix = "" if "(fix:" in message else f" (fix: see `{self.prog} --help`)"
        sys.stderr.write(f"embmap: error: {message}{fix}\n")
        raise SystemExit(2)


def _shown(text: str) -> str:
    """The value as given, short and printable, for an error line."""
    return text if text.isprintable() and 0 < len(text) <= 40 else repr(text[:40]) + ("..." if len(text) > 40 else "")


def whole(lowest: int, highest: int, fix: str) -> Callable[[str], int]:
    """An argument type: a whole number from `lowest` to `highest`, else a usage error naming the range."""
    least = "> 0" if lowest == 1 else f">= {lowest}"

    def read(text: str) -> int:
        try:
            value = int(text)
        except ValueError:  # not a whole number, or too many digits to read
            value = lowest - 1
        if not lowest <= value <= highest:
            raise argparse.ArgumentTypeError(f"must be {least} and <= {highest}, got {_shown(text)} (fix: {fix})")
        return value

    return read


def positive(highest: float, fix: str) -> Callable[[str], float]:
    """An argument type: a number above 0 and at most `highest` (so never NaN or infinite)."""

    def read(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not 0.0 < value <= highest:  # NaN fails every comparison
            raise argparse.ArgumentTypeError(f"must be positive and <= {highest:g}, got {_shown(text)} (fix: {fix})")
        return value

    return read


if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[OneLineParser]


def parse_distribution(text: str) -> Distribution:
    """uniform | zipf[:ALPHA] | hot-set[:ROWS[:MASS]]"""
    kind, *args = text.split(":")
    try:
        if kind == "uniform" and not args:
            return Uniform()
        if kind == "zipf" and len(args) <= 1:
            return Zipf(alpha=float(args[0])) if args else Zipf()
        if kind == "hot-set" and len(args) <= 2:
            values: dict[str, float | int] = {}
            if args:
                values["hot_rows"] = int(args[0])
            if len(args) > 1:
                values["hot_mass"] = float(args[1])
            return HotSet(**values)  # type: ignore[arg-type]
    except ValueError:
        pass
    raise SpecError(
        "--distribution",
        f"cannot read {text!r}",
        f"use uniform, zipf[:ALPHA] (ALPHA in (0, 5]) or hot-set[:ROWS[:MASS]] (ROWS 1 to {MAX_ROWS:,}, MASS in (0, 1))",
    )


def parse_hot_tables(text: str) -> HotTables:
    """TABLES[:MASS]"""
    tables, _, mass = text.partition(":")
    try:
        return HotTables(tables=int(tables), mass=float(mass)) if mass else HotTables(tables=int(tables))
    except ValueError:
        raise SpecError(
            "--hot-tables", f"cannot read {text!r}", "use TABLES[:MASS], e.g. 2:0.9 (TABLES >= 1, MASS in (0, 1))"
        ) from None


def _hot_tables_arg(text: str) -> HotTables:
    try:
        return parse_hot_tables(text)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(exc.problem + f" (fix: {exc.fix})") from None


def _distribution_arg(text: str) -> Distribution:
    try:
        return parse_distribution(text)
    except SpecError as exc:
        raise argparse.ArgumentTypeError(exc.problem + f" (fix: {exc.fix})") from None


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="embmap", description="Map embedding tables onto the cores of a chip.")
    parser.add_argument("--version", action="version", version=f"embmap {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    _add_compile(sub)
    _add_plan_readers(sub)
    _add_run(sub)
    _add_calibrate(sub)
    _add_bench(sub)
    _add_listings(sub)
    _add_profile_trace(sub)
    return parser


def _add_compile(sub: Subparsers) -> None:
    c = sub.add_parser("compile", help="compile a workload for a target into an execution plan")
    c.add_argument(
        "workload", help="built-in name (see `embmap workloads`), synthetic:key=value,..., or a YAML/JSON file"
    )
    c.add_argument("--target", required=True, help="built-in target (see `embmap targets`) or a YAML/JSON file")
    c.add_argument(
        "--pipeline", default="embmap", help="named pipeline (embmap, default, round-robin, greedy) or a pass list"
    )
    c.add_argument(
        "--cores",
        type=whole(1, MAX_CORES, f"give the chip's cores, at most {MAX_CORES} as in a target file"),
        help=f"number of cores (overrides the target's, e.g. ascend910 with 128; 1 to {MAX_CORES})",
    )
    c.add_argument(
        "--batch",
        type=whole(1, MAX_BATCH_SIZE, f"give samples per batch, at most {MAX_BATCH_SIZE} as in a workload file"),
        help=f"batch size (overrides the workload's; 1 to {MAX_BATCH_SIZE})",
    )
    c.add_argument(
        "--row-cap",
        type=whole(0, MAX_ROWS, f"give rows per table, at most {MAX_ROWS} as in a workload file, or 0 for no cap"),
        help=f"hash ids into at most N rows per table (up to {MAX_ROWS}); 0 removes the workload's cap",
    )
    c.add_argument(
        "--distribution",
        type=_distribution_arg,
        help="index distribution for every table: uniform, zipf[:ALPHA], hot-set[:ROWS[:MASS]]",
    )
    c.add_argument(
        "--hot-tables",
        type=_hot_tables_arg,
        metavar="TABLES[:MASS]",
        help="put MASS (default 0.9) of each sample's lookups on the TABLES largest tables via their pooling",
    )
    _add_compile_search(c)
    _add_compile_output(c)


def _add_compile_search(c: argparse.ArgumentParser) -> None:
    """The cost profile and CP-SAT's settings."""
    c.add_argument(
        "--profile",
        type=Path,
        help="cost profile JSON (default: the one `embmap targets` names: the calibrated profile shipped for this "
        "kind of machine, else the target's uncalibrated preset); refused if made for another target",
    )
    c.add_argument(
        "--force-profile",
        action="store_true",
        help="use --profile even though it was made for another target (with a warning line)",
    )
    c.add_argument(
        "--time-limit",
        type=positive(MAX_SECONDS, "give seconds of search, at most a day, e.g. --time-limit 2"),
        help="CP-SAT time limit in seconds (of the solver's deterministic time, so a stopped search repeats "
        f"exactly; default 2, at most {MAX_SECONDS:g}); Ctrl-C stops the search sooner and keeps the best plan "
        "found so far",
    )
    c.add_argument(
        "--workers",
        type=whole(1, MAX_WORKERS, f"give CP-SAT's search threads, at most {MAX_WORKERS}, e.g. --workers 1"),
        help=f"CP-SAT workers (default 1, at most {MAX_WORKERS})",
    )
    c.add_argument(
        "--seed",
        type=whole(0, MAX_SEED, f"give a seed from 0 to {MAX_SEED}: CP-SAT's seeds are 32-bit"),
        help=f"CP-SAT random seed (0 to {MAX_SEED}); the same seed and workers give the same plan",
    )


def _add_compile_output(c: argparse.ArgumentParser) -> None:
    """What a compile prints and writes."""
    c.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress while solving (default: best objective, bound and gap on stderr, as one live line "
        "on a terminal, else one line per improvement)",
    )
    c.add_argument("--no-baselines", action="store_true", help="do not compile the baseline pipelines for comparison")
    c.add_argument(
        "--print-ir-after",
        action="append",
        default=[],
        metavar="PASS",
        help="print the IR after PASS ('all' for every pass); repeatable",
    )
    c.add_argument("--timing", action="store_true", help="print per-pass wall time to stderr")
    c.add_argument("--explain", action="store_true", help="print the explanation after compiling")
    _add_compile_devices(c)
    c.add_argument(
        "-o", "--output", type=Path, required=True, help="where to write the plan JSON (- for standard output)"
    )


def _add_compile_devices(c: argparse.ArgumentParser) -> None:
    """compile's options across devices (a cluster plan) and from a previous plan (re-planning)."""
    c.add_argument(
        "--devices",
        type=whole(1, MAX_DEVICES, f"give the number of devices, at most {MAX_DEVICES}"),
        help=f"plan across N devices of the target (tables sharded over devices, then cores; 1 to {MAX_DEVICES}): "
        "a cluster plan",
    )
    c.add_argument(
        "--device-method",
        choices=("cp-sat", "table-wise-greedy"),
        help="with --devices: how tables are placed on devices (default cp-sat)",
    )
    c.add_argument(
        "--device-memory",
        type=whole(1, MAX_MEMORY_BYTES, f"give one device's main memory in bytes, at most 1 PiB = {MAX_MEMORY_BYTES}"),
        metavar="BYTES",
        help=f"with --devices: one device's main memory (1 to {MAX_MEMORY_BYTES} bytes)",
    )
    c.add_argument(
        "--device-cores",
        type=whole(1, MAX_CORES, f"give one device's cores, at most {MAX_CORES} as in a target file"),
        help=f"with --devices: one device's cores (1 to {MAX_CORES})",
    )
    c.add_argument(
        "--link-gbps",
        type=positive(MAX_LINK_GBPS, "give the GB/s one device sends, e.g. --link-gbps 25"),
        help=f"with --devices: GB/s one device sends in the output all-to-all (above 0, at most {MAX_LINK_GBPS:g})",
    )
    c.add_argument(
        "--previous",
        type=Path,
        metavar="PLAN",
        help="re-plan from this plan (same target, any workload): tables stay where it put them unless moving pays",
    )
    c.add_argument(
        "--max-moves",
        type=whole(0, MAX_TABLES, f"give a number of tables, at most {MAX_TABLES}, a workload's table limit"),
        metavar="K",
        help=f"with --previous: at most K tables move (0 to {MAX_TABLES})",
    )


def _add_plan_readers(sub: Subparsers) -> None:
    x = sub.add_parser("export", help="export a plan across devices for another runtime (TorchRec's ShardingPlan)")
    x.add_argument("plan", type=Path, help="a plan written by `embmap compile --devices N`")
    x.add_argument("--format", choices=("torchrec",), default="torchrec")
    x.add_argument("--device-type", choices=("cpu", "cuda"), help="TorchRec device type (default: cpu for cpu)")
    x.add_argument("-o", "--output", type=Path, required=True, help="where to write it (torch.save)")

    e = sub.add_parser("explain", help="explain a plan: per-core work, makespan, bound, gap, speedups")
    e.add_argument("plan", type=Path)
    e.add_argument("--json", action="store_true", help="print one JSON object")
    e.add_argument(
        "--gantt",
        type=Path,
        metavar="OUT.png|OUT.svg",
        help="also draw the predicted schedule: a row per core (identical cores share one), bars by strategy",
    )


def _add_run(sub: Subparsers) -> None:
    r = sub.add_parser(
        "run",
        help="execute a plan on this machine's cores; measured beside predicted",
        epilog="exit status: 0 correct output; 1 wrong output; 2 bad input (plan, options); 3 the run failed: "
        "a worker died, exited early or hung (one line names the core, batch and item)",
    )
    r.add_argument("plan", type=Path)
    r.add_argument(
        "--workload",
        help="refuse the plan unless it was compiled for this workload (same batch size and tables); "
        "a name, synthetic recipe or file, as for compile",
    )
    r.add_argument("--target", help="refuse the plan unless it was compiled for this target (same cores and memories)")
    r.add_argument(
        "--batches",
        type=whole(1, MAX_BATCHES, f"give a positive number of batches, at most {MAX_BATCHES}"),
        default=50,
        help=f"measured batches (after warm-up; 1 to {MAX_BATCHES})",
    )
    r.add_argument(
        "--warmup",
        type=whole(0, MAX_BATCHES, f"give a number of batches, at most {MAX_BATCHES}"),
        default=None,
        help=f"batches run before the measured ones (0 to {MAX_BATCHES}; default: until the caches hold what "
        "they hold in a long run, 5 to 1000 batches)",
    )
    r.add_argument(
        "--seed",
        type=whole(0, MAX_RUN_SEED, f"give a seed from 0 to {MAX_RUN_SEED}, 64 bits"),
        default=0,
        help=f"seed of the materialised tables and indices (0 to {MAX_RUN_SEED})",
    )
    r.add_argument(
        "--backend",
        choices=("auto", "native", "torch", "numpy"),
        default="auto",
        help="native: the compiled executor (auto picks it where it is built); torch, numpy: the reference executor",
    )
    r.add_argument(
        "--timeout",
        type=positive(MAX_SECONDS, "give seconds, at most a day, e.g. --timeout 120"),
        default=120.0,
        metavar="S",
        help="a run in which no core passes a barrier for S seconds has a hung core: it is stopped (exit 3); "
        f"above 0, at most {MAX_SECONDS:g}",
    )
    r.add_argument("--json", action="store_true", help="print one JSON object")
    r.add_argument(
        "--replay",
        type=Path,
        metavar="TRACE",
        help="run the trace's own ids and lengths (.npz, Parquet, TorchRec batches or a directory, as for "
        "profile-trace), cut into batches of the plan's batch size, instead of ids drawn from the distributions",
    )
    r.add_argument(
        "--tables",
        type=Path,
        metavar="CONFIG.yaml",
        help="with --replay: the features each table reads (as for profile-trace); default: its own name",
    )
    r.add_argument(
        "--trace",
        type=Path,
        metavar="OUT.json",
        help="also write the measured items as a Chrome trace (Perfetto, chrome://tracing): a track per core",
    )


def _add_calibrate(sub: Subparsers) -> None:
    k = sub.add_parser("calibrate", help="fit the cost model to measurements (this machine's, or a CSV)")
    k.add_argument("--target", required=True, help="target the profile is for (`cpu` to measure this machine)")
    k.add_argument(
        "--from-csv", type=Path, help="fit from a measurement table made by another runtime (docs/calibration.md)"
    )
    k.add_argument("--save-csv", type=Path, help="also write the measurements as CSV (- for standard output)")
    k.add_argument("--quick", action="store_true", help="a small grid (about a minute), for trying it out")
    k.add_argument(
        "--check",
        nargs="?",
        const=True,
        type=Path,
        metavar="CSV",
        help="write no profile: measure again a sample of the grid points behind a profile (default: the shipped "
        "cpu profile's measurements) and say how much slower or faster this machine runs now",
    )
    k.add_argument(
        "--loss",
        choices=("huber", "squares"),
        default="huber",
        help="the fit's loss over relative errors: huber (default; a point measured while another tenant slowed "
        "its core weighs less) or squares (plain least squares)",
    )
    k.add_argument("-o", "--output", type=Path, help="where to write the profile JSON (- for standard output)")


def _add_bench(sub: Subparsers) -> None:
    b = sub.add_parser("bench", help="every pipeline on the built-in workloads x distributions, predicted and measured")
    b.add_argument("--out", type=Path, default=Path("docs"), help="directory for RESULTS.md, results.csv, plots")
    b.add_argument("--quick", action="store_true", help="one small workload in seconds, to prove the path works")
    b.add_argument("--workloads", nargs="+", help="built-in workloads (default: all of them)")
    b.add_argument("--no-measure", action="store_true", help="predict only; do not run the plans on this machine")
    b.add_argument(
        "--repeats",
        type=whole(1, MAX_REPEATS, f"give a positive number of rounds, at most {MAX_REPEATS}"),
        help=f"interleaved rounds, each running every plan and framework once (default 5, quick 1; at most "
        f"{MAX_REPEATS})",
    )


def _add_profile_trace(sub: Subparsers) -> None:
    t = sub.add_parser("profile-trace", help="measure a workload from an index trace: pooling and popularity")
    t.add_argument("trace", type=Path, help=".npz, .parquet, .pt (TorchRec KeyedJaggedTensors), or a directory")
    t.add_argument("-o", "--output", type=Path, required=True, help="the workload file to write (YAML)")
    t.add_argument("--tables", type=Path, help="YAML/JSON: table name -> rows, dim, dtype, features")
    t.add_argument(
        "--buckets",
        type=whole(1, MAX_BUCKETS, f"give 1 to {MAX_BUCKETS}"),
        default=64,
        help=f"histogram buckets per table (1 to {MAX_BUCKETS}; default 64)",
    )
    t.add_argument(
        "--batch-size",
        type=whole(1, MAX_BATCH_SIZE, "give the samples of one batch"),
        help="samples per batch (default: the trace's own batches)",
    )


def _add_listings(sub: Subparsers) -> None:
    p = sub.add_parser("passes", help="list passes, their options and the named pipelines")
    p.add_argument("--json", action="store_true")
    t = sub.add_parser("targets", help="list built-in targets")
    t.add_argument("--json", action="store_true")
    w = sub.add_parser("workloads", help="list built-in workloads")
    w.add_argument("--json", action="store_true")
