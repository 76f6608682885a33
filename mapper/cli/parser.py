"""The argument parser of `embmap`: one parser per command, and the argument types that read
distributions and hot tables. Usage errors are one line and exit 2, like every other input error."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TypeAlias

from embmap import __version__
from embmap.ir.errors import SpecError
from embmap.ir.spec import Distribution, HotSet, HotTables, Uniform, Zipf


class OneLineParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other input error."""

    def error(self, message: str) -> NoReturn:
        fix = "" if "(fix:" in message else f" (fix: see `{self.prog} --help`)"
        sys.stderr.write(f"embmap: error: {message}{fix}\n")
        raise SystemExit(2)


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
        "use uniform, zipf[:ALPHA] (ALPHA in (0, 5]) or hot-set[:ROWS[:MASS]]",
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
    c.add_argument("--cores", type=int, help="number of cores (overrides the target's, e.g. ascend910 with 128)")
    c.add_argument("--batch", type=int, help="batch size (overrides the workload's)")
    c.add_argument("--row-cap", type=int, help="hash ids into at most N rows per table; 0 removes the workload's cap")
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
    c.add_argument(
        "--profile",
        type=Path,
        help="cost profile JSON (default: the one `embmap targets` names: the calibrated profile shipped for this "
        "kind of machine, else the target's uncalibrated preset)",
    )
    c.add_argument(
        "--time-limit",
        type=float,
        help="CP-SAT time limit in seconds (of the solver's deterministic time, so a stopped search repeats "
        "exactly; default 2); Ctrl-C stops the search sooner and keeps the best plan found so far",
    )
    c.add_argument("--workers", type=int, help="CP-SAT workers (default 1)")
    c.add_argument("--seed", type=int, help="CP-SAT random seed; the same seed and workers give the same plan")
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
    c.add_argument("-o", "--output", type=Path, required=True, help="where to write the plan JSON")


def _add_compile_devices(c: argparse.ArgumentParser) -> None:
    """compile's options across devices (a cluster plan) and from a previous plan (re-planning)."""
    c.add_argument(
        "--devices",
        type=int,
        help="plan across N devices of the target (tables sharded over devices, then cores): a cluster plan",
    )
    c.add_argument(
        "--device-method",
        choices=("cp-sat", "table-wise-greedy"),
        help="with --devices: how tables are placed on devices (default cp-sat)",
    )
    c.add_argument("--device-memory", type=int, metavar="BYTES", help="with --devices: one device's main memory")
    c.add_argument("--device-cores", type=int, help="with --devices: one device's cores")
    c.add_argument("--link-gbps", type=float, help="with --devices: GB/s one device sends in the output all-to-all")
    c.add_argument(
        "--previous",
        type=Path,
        metavar="PLAN",
        help="re-plan from this plan (same target, any workload): tables stay where it put them unless moving pays",
    )
    c.add_argument("--max-moves", type=int, metavar="K", help="with --previous: at most K tables move")


def _add_plan_readers(sub: Subparsers) -> None:
    x = sub.add_parser("export", help="export a plan across devices for another runtime (TorchRec's ShardingPlan)")
    x.add_argument("plan", type=Path, help="a plan written by `embmap compile --devices N`")
    x.add_argument("--format", choices=("torchrec",), default="torchrec")
    x.add_argument("--device-type", choices=("cpu", "cuda"), help="TorchRec device type (default: cpu for cpu)")
    x.add_argument("-o", "--output", type=Path, required=True, help="where to write it (torch.save)")

    e = sub.add_parser("explain", help="explain a plan: per-core work, makespan, bound, gap, speedups")
    e.add_argument("plan", type=Path)
    e.add_argument("--json", action="store_true", help="print one JSON object")


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
    r.add_argument("--batches", type=int, default=50, help="measured batches (after warm-up)")
    r.add_argument("--warmup", type=int, default=5)
    r.add_argument("--seed", type=int, default=0, help="seed of the materialised tables and indices")
    r.add_argument(
        "--backend",
        choices=("auto", "native", "torch", "numpy"),
        default="auto",
        help="native: the compiled executor (auto picks it where it is built); torch, numpy: the reference executor",
    )
    r.add_argument(
        "--timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="a run in which no core passes a barrier for S seconds has a hung core: it is stopped (exit 3)",
    )
    r.add_argument("--json", action="store_true", help="print one JSON object")


def _add_calibrate(sub: Subparsers) -> None:
    k = sub.add_parser("calibrate", help="fit the cost model to measurements (this machine's, or a CSV)")
    k.add_argument("--target", required=True, help="target the profile is for (`cpu` to measure this machine)")
    k.add_argument(
        "--from-csv", type=Path, help="fit from a measurement table made by another runtime (docs/calibration.md)"
    )
    k.add_argument("--save-csv", type=Path, help="also write the measurements as CSV")
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
    k.add_argument("-o", "--output", type=Path, help="where to write the profile JSON")


def _add_bench(sub: Subparsers) -> None:
    b = sub.add_parser("bench", help="every pipeline on the built-in workloads x distributions, predicted and measured")
    b.add_argument("--out", type=Path, default=Path("docs"), help="directory for RESULTS.md, results.csv, plots")
    b.add_argument("--quick", action="store_true", help="one small workload in seconds, to prove the path works")
    b.add_argument("--workloads", nargs="+", help="built-in workloads (default: all of them)")
    b.add_argument("--no-measure", action="store_true", help="predict only; do not run the plans on this machine")
    b.add_argument(
        "--repeats",
        type=int,
        help="interleaved rounds, each running every plan and framework once (default 5, quick 1)",
    )


def _add_listings(sub: Subparsers) -> None:
    p = sub.add_parser("passes", help="list passes, their options and the named pipelines")
    p.add_argument("--json", action="store_true")
    t = sub.add_parser("targets", help="list built-in targets")
    t.add_argument("--json", action="store_true")
    w = sub.add_parser("workloads", help="list built-in workloads")
    w.add_argument("--json", action="store_true")
