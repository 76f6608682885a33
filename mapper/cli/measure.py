"""The commands that run plans on this machine: `embmap run` (measured beside predicted), `embmap calibrate`
(measure and fit the cost model, or check a profile for drift) and `embmap bench` (every pipeline on the
built-in workloads, written to RESULTS.md)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from embmap.ir.errors import SpecError
from embmap.ir.output import check_outputs, is_stdout
from embmap.ir.printer import fmt_s, printable

if TYPE_CHECKING:
    from embmap.ir.plan import ExecutionPlan
    from embmap.runtime import RunConfig, RunReport


def run_data(plan: ExecutionPlan, report: RunReport) -> dict[str, Any]:
    p50 = report.p50_s
    return {
        "workload": plan.workload.name,
        "target": plan.target.name,
        "backend": report.backend,
        "cpus": list(report.cpus),
        "batches": report.batches,
        "warmup": report.warmup,
        "correct": report.correct,
        "max_abs_error": report.max_abs_error,
        "tolerance": report.tolerance,
        "predicted_s": plan.makespan_s,
        "measured_p50_s": p50,
        "measured_p99_s": report.p99_s,
        "error": (plan.makespan_s - p50) / p50 if p50 else 0.0,
        "ids_from": report.ids_from,
        "lookups_per_batch": report.lookups_per_batch,
        "lookups_per_s": report.lookups_per_batch / p50 if p50 else 0.0,
        "gb_per_s": report.bytes_per_batch / p50 / 1e9 if p50 else 0.0,
        "calibrated": plan.cost_profile.calibrated,
        "cores": [
            {"core": c.core, "predicted_s": c.finish_s, "measured_s": report.core_p50_s(c.core)} for c in plan.cores
        ],
        "items": [
            {
                "item": it.id,
                "table": it.table,
                "strategy": it.strategy.value,
                "core": it.core,
                "predicted_s": it.cost.total_s,
                "measured_s": report.item_p50_s(it.id),
            }
            for it in plan.items
        ],
    }


def run_text(plan: ExecutionPlan, report: RunReport) -> str:
    d = run_data(plan, report)
    verdict = "correct" if d["correct"] else "WRONG"
    lines = [
        f"ran {printable(d['workload'])} plan on cpus {d['cpus']} with {d['backend']}: {d['batches']} batches "
        f"after {d['warmup']} warm-up, "
        f"output {verdict} (max error {d['max_abs_error']:.2g}, tolerance {d['tolerance']:.2g})",
        f"batch latency  measured p50 {fmt_s(d['measured_p50_s'])}  p99 {fmt_s(d['measured_p99_s'])}   "
        f"predicted {fmt_s(d['predicted_s'])} ({d['error']:+.1%})"
        + ("" if d["calibrated"] else "   [cost profile uncalibrated]"),
        f"ids            {printable(d['ids_from'])}; {d['lookups_per_batch']:,} lookups per batch",
        f"throughput     {d['lookups_per_s'] / 1e6:.2f} M lookups/s, {d['gb_per_s']:.2f} GB/s of rows",
        "",
        "core  predicted   measured",
    ]
    for c in d["cores"]:
        lines.append(f"{c['core']:>4}  {fmt_s(c['predicted_s']):>9}  {fmt_s(c['measured_s']):>9}")
    return "\n".join(lines)


def cmd_run(args: argparse.Namespace) -> int:
    from embmap.mapper.planio import load_plan
    from embmap.runtime import RunConfig, run_plan

    if args.batches < 1 or (args.warmup is not None and args.warmup < 0):
        raise SpecError("--batches", "must be >= 1 (and --warmup >= 0)", "give a positive number of batches")
    if not args.timeout > 0:
        raise SpecError("--timeout", f"must be positive, got {args.timeout}", "give seconds, e.g. --timeout 120")
    if args.trace is not None:  # fail before the run, not after it
        from embmap.mapper.run_trace import check_trace_path

        check_trace_path(args.trace, [args.plan])
    if args.tables is not None and args.replay is None:
        raise SpecError("--tables", "names the features of a replayed trace", "add --replay TRACE, or leave it out")
    plan = load_plan(args.plan, workload=args.workload, target=args.target)
    config = RunConfig(
        batches=args.batches, warmup=args.warmup, seed=args.seed, backend=args.backend, timeout_s=args.timeout
    )
    report = run_plan(plan, config) if args.replay is None else _replayed(plan, config, args)
    print(json.dumps(run_data(plan, report), indent=1) if args.json else run_text(plan, report))
    if not report.correct:
        sys.stderr.write(
            f"embmap: error: pooled outputs differ from the reference lookup by {report.max_abs_error:.3g} "
            f"(tolerance {report.tolerance:.3g})\n"
        )
        return 1
    if args.trace is not None:  # a run with wrong output writes no trace
        from embmap.mapper.run_trace import write_trace

        write_trace(plan, report, args.trace)
        print(f"wrote {printable(str(args.trace))}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _replayed(plan: ExecutionPlan, config: RunConfig, args: argparse.Namespace) -> RunReport:
    """The run on the index batches of the trace `--replay` names (cycled through where it holds fewer
    batches than the run takes)."""
    import dataclasses

    from embmap.mapper.traces.replay import replay_bags
    from embmap.runtime import materialize_for, run_plan

    config = config.for_plan(plan)
    replay = replay_bags(args.replay, plan.workload, config.warmup_batches + config.batches, args.tables)
    config = dataclasses.replace(config, index_batches=replay.index_batches)
    data = materialize_for(plan, config, replay.bags, replay.ids_from)
    try:
        return run_plan(plan, config, data)
    finally:
        data.close()


def cmd_calibrate(args: argparse.Namespace) -> int:
    from embmap.cost_models.measurements import read_csv, write_csv
    from embmap.ir.output import write_text_atomic
    from embmap.mapper.compiler import resolve_target

    target = resolve_target(args.target)
    if args.check is not None:
        return _check_drift(target, args)
    if args.output is None:
        raise SpecError("--output", "is required to write the profile", "add -o PROFILE.json (or --check to compare)")
    # fail before measuring for minutes, not after; neither output is the table fitted nor the other output
    check_outputs([("--output", args.output), ("--save-csv", args.save_csv)], [args.from_csv])
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
    # the messages go where no result goes: standard error when -o - or --save-csv - writes to standard output
    messages = sys.stderr if is_stdout(args.output) or is_stdout(args.save_csv) else sys.stdout
    print(calibration_text(result, len(measured)), file=messages)
    print(f"wrote {'standard output' if is_stdout(args.output) else args.output}", file=messages)
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


def cmd_bench(args: argparse.Namespace) -> int:
    import dataclasses

    from embmap.mapper.bench.report import write_outputs
    from embmap.mapper.bench.run import BenchConfig, machine_limits, planning_times, quick_config, run_bench
    from embmap.mapper.workloads import builtin_names

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
    names = ("results.csv", "RESULTS.md", "speedup.png", "core-load.png")
    check_outputs([("--out", args.out / name) for name in names])
    limits = machine_limits(config)
    rows, plans = run_bench(config, progress=_progress)
    planning = planning_times(config)
    command = "embmap " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["bench"] else "embmap bench"
    for path in write_outputs(rows, plans, args.out, command, config, planning, limits):
        print(f"wrote {path}")
    return 0
