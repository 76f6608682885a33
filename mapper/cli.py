"""The `embmap` command line. Bad input exits with status 2 and one line naming the field and the fix.

Exit status: 0 done; 1 `embmap run` computed wrong outputs, or an internal error; 2 bad input (nothing
written); 3 `embmap run` failed on good input because a worker died or hung (a `RunFault`); 130 interrupted.
A Ctrl-C while `embmap compile` runs the CP-SAT search is not an interruption of the command: it stops the
search, and the compile finishes with the best plan found so far (status 0).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from embmap.ir.errors import EmbmapError, RunFault, SpecError
from embmap.ir.loader import check_writable
from embmap.ir.spec import Distribution, HotSet, HotTables, Uniform, Zipf

if TYPE_CHECKING:
    from embmap.passes.solver.progress import ProgressBar, ProgressLog
    from embmap.passes.solver.settings import SolverSettings


class OneLineParser(argparse.ArgumentParser):
    """argparse, but usage errors are one line and exit 2 like every other input error."""

    def error(self, message: str) -> NoReturn:
        fix = "" if "(fix:" in message else f" (fix: see `{self.prog} --help`)"
        sys.stderr.write(f"embmap: error: {message}{fix}\n")
        raise SystemExit(2)


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
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

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
    c.add_argument("--profile", type=Path, help="cost profile JSON (default: the target's uncalibrated preset)")
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
    c.add_argument("-o", "--output", type=Path, required=True, help="where to write the plan JSON")

    x = sub.add_parser("export", help="export a plan across devices for another runtime (TorchRec's ShardingPlan)")
    x.add_argument("plan", type=Path, help="a plan written by `embmap compile --devices N`")
    x.add_argument("--format", choices=("torchrec",), default="torchrec")
    x.add_argument("--device-type", choices=("cpu", "cuda"), help="TorchRec device type (default: cpu for cpu)")
    x.add_argument("-o", "--output", type=Path, required=True, help="where to write it (torch.save)")

    e = sub.add_parser("explain", help="explain a plan: per-core work, makespan, bound, gap, speedups")
    e.add_argument("plan", type=Path)
    e.add_argument("--json", action="store_true", help="print one JSON object")

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

    p = sub.add_parser("passes", help="list passes, their options and the named pipelines")
    p.add_argument("--json", action="store_true")
    t = sub.add_parser("targets", help="list built-in targets")
    t.add_argument("--json", action="store_true")
    w = sub.add_parser("workloads", help="list built-in workloads")
    w.add_argument("--json", action="store_true")
    return parser


def cmd_compile(args: argparse.Namespace) -> int:
    from embmap.mapper.compiler import compile
    from embmap.mapper.explain import explain_text, moves_text
    from embmap.mapper.pipelines import pipeline_for
    from embmap.mapper.planio import load_plan, save_plan
    from embmap.mapper.profiles import load_profile
    from embmap.passes import PrintIRAfter, TimingInstrument, parse_pipeline
    from embmap.passes.base import Instrument
    from embmap.passes.solver.progress import ProgressBar

    check_writable(args.output, "--output")  # fail before the work, not after it
    unknown = set(args.print_ir_after) - {p.name for p in parse_pipeline(pipeline_for(args.pipeline))} - {"all"}
    if unknown:
        raise SpecError(
            "--print-ir-after",
            f"names {', '.join(sorted(unknown))}, not in the pipeline",
            "name a pass of the pipeline, or 'all'",
        )
    profile = load_profile(args.profile) if args.profile else None
    if args.max_moves is not None and args.previous is None:
        raise SpecError("--max-moves", "bounds the moves from a previous plan", "add --previous OLD.plan.json")
    if args.max_moves is not None and args.max_moves < 0:
        raise SpecError(
            "--max-moves", f"must be >= 0, got {args.max_moves}", "give 0 to keep every table that can stay"
        )
    if args.devices is not None:
        if args.previous is not None:
            raise SpecError(
                "--previous", "does not apply with --devices", "re-plan one device's plan without --devices"
            )
        if args.cores is not None:
            raise SpecError("--cores", "does not apply with --devices", "give one device's cores with --device-cores")
        return _compile_cluster(args, profile)
    for flag in ("device_memory", "device_cores", "link_gbps", "device_method"):
        if getattr(args, flag) is not None:
            raise SpecError("--" + flag.replace("_", "-"), "only applies with --devices", "add --devices N")
    timing = TimingInstrument()
    instruments: list[Instrument] = [timing]
    if args.print_ir_after:
        instruments.append(PrintIRAfter(frozenset(args.print_ir_after)))
    progress = None if args.quiet else _progress_listener()
    try:
        plan = compile(
            args.workload,
            args.target,
            args.pipeline,
            cost_profile=profile,
            batch=args.batch,
            row_cap=args.row_cap,
            distribution=args.distribution,
            hot_tables=args.hot_tables,
            cores=args.cores,
            solver=_solver_settings(args),
            progress=progress,
            instruments=instruments,
            baselines=not args.no_baselines,
            previous=load_plan(args.previous) if args.previous else None,
            max_moves=args.max_moves,
        )
    finally:
        if isinstance(progress, ProgressBar):
            progress.close()  # so that an error message starts on a line of its own
    save_plan(plan, args.output)
    if plan.solver.interrupted:
        sys.stderr.write(
            f"embmap: interrupted: stopped the search after {plan.solver.wall_s:.2f} s at gap {plan.solver.gap:.2%}; "
            "the plan is the best found by then\n"
        )
    if args.timing:
        for name, seconds in timing.records:
            sys.stderr.write(f"  {name:<16} {seconds * 1e3:9.1f} ms\n")
    print(
        f"wrote {args.output}: {plan.workload.name} on {plan.target.name}, makespan {plan.makespan_s * 1e6:.2f} us, "
        f"{plan.solver.status} gap {plan.solver.gap:.2%}"
    )
    if plan.solver.moves is not None:
        print(moves_text(plan.solver.moves))
    if args.explain:
        print(explain_text(plan))
    return 0


def _compile_cluster(args: argparse.Namespace, profile: Any) -> int:
    from embmap.ir.cluster import LinkSpec
    from embmap.mapper.cluster import LINKS, cluster, compile_cluster, explain_cluster
    from embmap.mapper.compiler import resolve_target
    from embmap.mapper.planio import save_plan

    if args.print_ir_after or args.hot_tables:
        flag = "--print-ir-after" if args.print_ir_after else "--hot-tables"
        raise SpecError(flag, "does not apply with --devices", "drop it, or compile for one device")
    link = None
    if args.link_gbps is not None:
        if not args.link_gbps > 0:
            raise SpecError("--link-gbps", f"must be positive, got {args.link_gbps}", "give GB/s per device")
        base = LINKS.get(resolve_target(args.target).name)
        link = LinkSpec(
            name=f"{args.link_gbps:g} GB/s",
            bandwidth_bytes_per_s=args.link_gbps * 1e9,
            latency_s=base.latency_s if base else 0.0,
        )
    spec = cluster(args.target, args.devices, link, cores=args.device_cores, memory_bytes=args.device_memory)
    plan = compile_cluster(
        args.workload,
        spec,
        args.pipeline,
        device_method=args.device_method or "cp-sat",
        cost_profile=profile,
        batch=args.batch,
        row_cap=args.row_cap,
        distribution=args.distribution,
        solver=_solver_settings(args),
    )
    save_plan(plan, args.output)
    print(
        f"wrote {args.output}: {plan.workload.name} on {spec.name}, makespan {plan.makespan_s * 1e6:.2f} us, "
        f"device level {plan.solver.status} gap {plan.solver.gap:.2%}"
    )
    if args.explain:
        print(explain_cluster(plan))
    return 0


def _solver_settings(args: argparse.Namespace) -> SolverSettings:
    """--time-limit, --workers and --seed, each where given (else its default)."""
    from embmap.passes.solver.settings import SolverSettings

    default = SolverSettings()
    return SolverSettings(
        time_limit_s=default.time_limit_s if args.time_limit is None else args.time_limit,
        workers=default.workers if args.workers is None else args.workers,
        seed=default.seed if args.seed is None else args.seed,
    )


def cmd_export(args: argparse.Namespace) -> int:
    from embmap.ir.cluster import ClusterPlan
    from embmap.mapper.planio import load_any_plan
    from embmap.mapper.torchrec_io import export_torchrec

    check_writable(args.output, "--output")
    plan = load_any_plan(args.plan)
    if not isinstance(plan, ClusterPlan):
        raise SpecError("plan", "is a plan for one device", "compile with --devices N to get a plan TorchRec can run")
    export_torchrec(plan, args.output, args.device_type)
    print(
        f"wrote {args.output}: TorchRec ShardingPlan for {plan.cluster.devices} ranks (torch.load it, weights_only=False)"
    )
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    from embmap.ir.cluster import ClusterPlan
    from embmap.mapper.cluster import explain_cluster
    from embmap.mapper.explain import explain_data, explain_text
    from embmap.mapper.planio import load_any_plan

    plan = load_any_plan(args.plan)
    if isinstance(plan, ClusterPlan):
        print(plan.model_dump_json(indent=1) if args.json else explain_cluster(plan))
        return 0
    print(json.dumps(explain_data(plan), indent=1) if args.json else explain_text(plan))
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from embmap.mapper.measure import run_data, run_text
    from embmap.mapper.planio import load_plan
    from embmap.runtime import RunConfig, run_plan

    if args.batches < 1 or args.warmup < 0:
        raise SpecError("--batches", "must be >= 1 (and --warmup >= 0)", "give a positive number of batches")
    if not args.timeout > 0:
        raise SpecError("--timeout", f"must be positive, got {args.timeout}", "give seconds, e.g. --timeout 120")
    plan = load_plan(args.plan, workload=args.workload, target=args.target)
    config = RunConfig(
        batches=args.batches, warmup=args.warmup, seed=args.seed, backend=args.backend, timeout_s=args.timeout
    )
    report = run_plan(plan, config)
    print(json.dumps(run_data(plan, report), indent=1) if args.json else run_text(plan, report))
    if not report.correct:
        sys.stderr.write(
            f"embmap: error: pooled outputs differ from the reference lookup by {report.max_abs_error:.3g} "
            f"(tolerance {report.tolerance:.3g})\n"
        )
        return 1
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from embmap.cost_models.measurements import read_csv, write_csv
    from embmap.mapper.compiler import resolve_target
    from embmap.mapper.planio import write_text_atomic

    target = resolve_target(args.target)
    if args.check is not None:
        return _check_drift(target, args)
    if args.output is None:
        raise SpecError("--output", "is required to write the profile", "add -o PROFILE.json (or --check to compare)")
    for flag, path in (("--output", args.output), ("--save-csv", args.save_csv)):
        if path is not None:
            check_writable(path, flag)  # fail before measuring for minutes, not after
    command = (
        "embmap " + " ".join(sys.argv[1:])
        if sys.argv[1:2] == ["calibrate"]
        else f"embmap calibrate --target {args.target}"
    )
    if args.from_csv:
        from embmap.mapper.calibration import fit

        measured = read_csv(args.from_csv)
        if not measured:
            raise SpecError(
                "--from-csv",
                f"{args.from_csv.name} has a header but no measurements",
                "add one line per measured work item",
            )
        result = fit(measured, target, command, args.loss)
    else:
        _require_this_machine(target, "measure your hardware with your runtime and pass --from-csv FILE")
        from embmap.mapper.calibration import calibrate

        result, measured = calibrate(target, quick=args.quick, command=command, progress=_progress, loss=args.loss)
    if args.save_csv:
        write_csv(measured, args.save_csv)
    write_text_atomic(args.output, result.profile.model_dump_json(indent=1) + "\n")
    print(calibration_text(result, len(measured)))
    print(f"wrote {args.output}")
    return 0


def _check_drift(target: Any, args: argparse.Namespace) -> int:
    from embmap.cost_models.measurements import read_csv
    from embmap.mapper.calibration import check_drift

    _require_this_machine(target, "use --target cpu")
    if args.output is not None or args.from_csv is not None or args.save_csv is not None:
        raise SpecError("--check", "measures and compares only", "leave out -o, --from-csv and --save-csv")
    from embmap.mapper.profiles import SHIPPED_MEASUREMENTS

    print(check_drift(target, read_csv(SHIPPED_MEASUREMENTS if args.check is True else args.check)).text())
    return 0


def _require_this_machine(target: Any, fix: str) -> None:
    """Measuring runs the reference runtime, so only target `cpu` (this machine) can be measured."""
    if target.name != "cpu":
        raise SpecError("--target", f"can only measure this machine (target cpu), not {target.name}", fix)


def _progress_listener() -> ProgressBar | ProgressLog:
    """A live line on a terminal, one line per improvement otherwise (a log, a pipe)."""
    from embmap.passes.solver.progress import ProgressBar, ProgressLog

    return ProgressBar(sys.stderr) if sys.stderr.isatty() else ProgressLog(sys.stderr)


def _progress(line: str) -> None:
    sys.stderr.write(line + "\n")


def calibration_text(result: Any, points: int) -> str:
    r = result.report
    lines = [
        f"fitted {r.points_fit} of {points} measurements, {r.points_held_out} held out",
        f"relative error  fit: median {r.train_median_rel_error:.1%}, max {r.train_max_rel_error:.1%}   "
        f"held out: median {r.holdout_median_rel_error:.1%}, max {r.holdout_max_rel_error:.1%}",
        "",
    ]
    for name in type(result.profile).parameter_names():
        value = getattr(result.profile, name)
        source = result.profile.sources.get(name, "").replace(f" ({result.report.command})", "")
        lines.append(f"  {name:<26} {value:<12.4g} {source}")
    return "\n".join(lines)


def cmd_passes(args: argparse.Namespace) -> int:
    from embmap.mapper.pipelines import PIPELINES
    from embmap.passes import REGISTRY
    from embmap.passes.base import option_fields

    entries: list[dict[str, Any]] = []
    for name, cls in sorted(REGISTRY.items()):
        opts = {f.name.replace("_", "-"): _default_text(f) for f in option_fields(cls)}
        entries.append({"name": name, "summary": cls.summary, "options": opts})
    if args.json:
        print(json.dumps({"passes": entries, "pipelines": {k: v[0] for k, v in PIPELINES.items()}}, indent=1))
        return 0
    print("passes:")
    for e in entries:
        shown = ", ".join(f"{k}={v}" for k, v in e["options"].items())
        print(f"  {e['name']:<16} {e['summary']}" + (f"\n  {'':<16} options: {shown}" if shown else ""))
    print("\npipelines:")
    for name, (text, doc) in PIPELINES.items():
        print(f"  {name:<12} {doc}\n  {'':<12} {text}")
    return 0


def _default_text(field: object) -> str:
    import dataclasses

    assert isinstance(field, dataclasses.Field)
    value = field.default
    if isinstance(value, tuple):
        return ":".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def cmd_targets(args: argparse.Namespace) -> int:
    from embmap.ir.printer import fmt_bytes
    from embmap.ir.targets import BUILTIN_TARGETS

    targets = [f() for f in BUILTIN_TARGETS.values()]
    if args.json:
        print(json.dumps([t.model_dump() for t in targets], indent=1))
        return 0
    for t in targets:
        mems = [t.local, t.scratch, *([t.shared_cache] if t.shared_cache else []), t.main]
        print(f"{t.name:<10} {t.cores} cores  {'calibrated' if t.calibrated else 'uncalibrated'}  {t.description}")
        print("           " + ", ".join(f"{m.name} {fmt_bytes(m.capacity_bytes)}" for m in mems))
    return 0


def cmd_workloads(args: argparse.Namespace) -> int:
    from embmap.ir.printer import fmt_bytes
    from embmap.workloads import builtin_names, builtin_workload

    rows: list[dict[str, Any]] = []
    for name in builtin_names():
        w = builtin_workload(name)
        e = w.effective()
        rows.append(
            {
                "name": name,
                "tables": len(w.tables),
                "bytes": w.total_bytes,
                "planned_bytes": e.total_bytes,
                "batch_size": w.batch_size,
                "row_cap": w.row_cap,
                "title": w.title,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for r in rows:
        cap = f" (row cap {r['row_cap']:,}: {fmt_bytes(r['planned_bytes'])})" if r["row_cap"] else ""
        print(f"{r['name']:<20} {r['tables']:>3} tables {fmt_bytes(r['bytes']):>9}{cap}  {r['title']}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    import dataclasses

    from embmap.mapper.bench import BenchConfig, machine_limits, planning_times, quick_config, run_bench, write_outputs
    from embmap.workloads import builtin_names

    config = quick_config() if args.quick else BenchConfig(workloads=tuple(builtin_names()))
    if args.workloads:
        unknown = [w for w in args.workloads if w not in builtin_names()]
        if unknown:
            raise SpecError("--workloads", f"unknown workload {unknown[0]!r}", f"use {', '.join(builtin_names())}")
        config = dataclasses.replace(config, workloads=tuple(args.workloads))
    if args.repeats is not None:
        if args.repeats < 1:
            raise SpecError("--repeats", f"must be >= 1, got {args.repeats}", "give a positive number of runs")
        config = dataclasses.replace(config, repeats=args.repeats)
    if args.no_measure:
        config = dataclasses.replace(config, measure=False)
    check_writable(args.out / "RESULTS.md", "--out")
    limits = machine_limits(config)
    rows, plans = run_bench(config, progress=_progress)
    planning = planning_times(config)
    command = "embmap " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "embmap bench"
    for path in write_outputs(rows, plans, args.out, command, config, planning, limits):
        print(f"wrote {path}")
    return 0


COMMANDS = {
    "bench": cmd_bench,
    "compile": cmd_compile,
    "explain": cmd_explain,
    "export": cmd_export,
    "run": cmd_run,
    "calibrate": cmd_calibrate,
    "passes": cmd_passes,
    "targets": cmd_targets,
    "workloads": cmd_workloads,
}


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already reported on one line
        return int(exc.code or 0)
    try:
        return COMMANDS[args.command](args)
    except RunFault as exc:  # good input, failed run: not status 2, so scripts can tell them apart
        sys.stderr.write(f"embmap: error: run failed: {exc.one_line()}\n")
        return 3
    except EmbmapError as exc:
        sys.stderr.write(f"embmap: error: {exc.one_line()}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("embmap: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug, not bad input: say so in one line, with the trace on request
        if os.environ.get("EMBMAP_DEBUG"):
            raise
        sys.stderr.write(f"embmap: internal error: {type(exc).__name__}: {exc} (set EMBMAP_DEBUG=1 for the trace)\n")
        return 1


def entry() -> NoReturn:
    raise SystemExit(main())


if __name__ == "__main__":
    entry()
