"""The commands that write and read plans: `embmap compile` (one device, or across devices with --devices),
`embmap export` (a plan across devices as TorchRec's ShardingPlan) and `embmap explain`."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embmap.ir.errors import SpecError
from embmap.ir.output import check_outputs, is_stdout

if TYPE_CHECKING:
    from embmap.ir.cost_profile import CostProfile
    from embmap.ir.plan import ExecutionPlan
    from embmap.passes.solver.progress import ProgressBar, ProgressLog
    from embmap.passes.solver.settings import SolverSettings


def cmd_compile(args: argparse.Namespace) -> int:
    from embmap.ir.printer import printable
    from embmap.mapper.explain import explain_text, moves_text
    from embmap.mapper.planio import save_plan
    from embmap.mapper.profiles import load_profile
    from embmap.passes import TimingInstrument

    # fail before the work, not after it; the plan is written to no file it was compiled from
    check_outputs([("--output", args.output)], [args.workload, args.target, args.profile, args.previous])
    _check_print_ir_after(args)
    if args.force_profile and not args.profile:
        raise SpecError("--force-profile", "given without --profile", "give --profile PROFILE.json, or leave it out")
    profile = load_profile(args.profile, args.target, args.force_profile) if args.profile else None
    _check_moves_and_devices(args)
    if args.devices is not None:
        return _compile_cluster(args, profile)
    timing = TimingInstrument()
    plan = _compile_one(args, profile, timing)
    save_plan(plan, args.output)
    say = _messages(args.output)
    if plan.solver.interrupted:
        sys.stderr.write(
            f"embmap: interrupted: stopped the search after {plan.solver.wall_s:.2f} s at gap {plan.solver.gap:.2%}; "
            "the plan is the best found by then\n"
        )
    if args.timing:
        for name, seconds in timing.records:
            sys.stderr.write(f"  {name:<16} {seconds * 1e3:9.1f} ms\n")
    say(
        f"wrote {printable(_where(args.output))}: {printable(plan.workload.name)} on {printable(plan.target.name)}, "
        f"makespan {plan.makespan_s * 1e6:.2f} us, {plan.solver.status} gap {plan.solver.gap:.2%}"
    )
    if plan.solver.moves is not None:
        say(moves_text(plan.solver.moves))
    if args.explain:
        say(explain_text(plan))
    return 0


def _messages(output: Path) -> Callable[[str], None]:
    """Where a command's messages go: standard output, unless the command writes its result there (`-o -`)."""
    stream = sys.stderr if is_stdout(output) else sys.stdout
    return lambda text: print(text, file=stream)


def _where(output: Path) -> str:
    return "standard output" if is_stdout(output) else str(output)


def _check_print_ir_after(args: argparse.Namespace) -> None:
    """--print-ir-after names passes of the pipeline (or 'all')."""
    from embmap.mapper.pipelines import pipeline_for
    from embmap.passes import parse_pipeline

    unknown = set(args.print_ir_after) - {p.name for p in parse_pipeline(pipeline_for(args.pipeline))} - {"all"}
    if unknown:
        raise SpecError(
            "--print-ir-after",
            f"names {', '.join(sorted(unknown))}, not in the pipeline",
            "name a pass of the pipeline, or 'all'",
        )


def _check_moves_and_devices(args: argparse.Namespace) -> None:
    """--max-moves needs --previous; --previous and --cores do not apply across devices, the --device-* and
    --link-gbps flags only there."""
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
        return
    for flag in ("device_memory", "device_cores", "link_gbps", "device_method"):
        if getattr(args, flag) is not None:
            raise SpecError("--" + flag.replace("_", "-"), "only applies with --devices", "add --devices N")


def _compile_one(args: argparse.Namespace, profile: CostProfile | None, timing: Any) -> ExecutionPlan:
    """The plan for one device, with the progress line on stderr unless --quiet."""
    from embmap.mapper.compiler import compile
    from embmap.mapper.planio import load_plan
    from embmap.passes import PrintIRAfter
    from embmap.passes.base import Instrument
    from embmap.passes.solver.progress import ProgressBar

    instruments: list[Instrument] = [timing]
    if args.print_ir_after:
        instruments.append(PrintIRAfter(frozenset(args.print_ir_after)))
    progress = None if args.quiet else _progress_listener()
    try:
        return compile(
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


def _compile_cluster(args: argparse.Namespace, profile: CostProfile | None) -> int:
    from embmap.ir.cluster import LinkSpec
    from embmap.ir.printer import printable
    from embmap.mapper.compiler import resolve_target
    from embmap.mapper.planio import save_plan
    from embmap.mapper.torchrec.cluster import LINKS, cluster, compile_cluster, explain_cluster

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
    say = _messages(args.output)
    say(
        f"wrote {printable(_where(args.output))}: {printable(plan.workload.name)} on {printable(spec.name)}, "
        f"makespan {plan.makespan_s * 1e6:.2f} us, "
        f"device level {plan.solver.status} gap {plan.solver.gap:.2%}"
    )
    if args.explain:
        say(explain_cluster(plan))
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
    from embmap.mapper.torchrec.io import export_torchrec

    if is_stdout(args.output):
        raise SpecError("--output", "is binary (torch.save), not text for standard output", "give a file path")
    check_outputs([("--output", args.output)], [args.plan])
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
    from embmap.ir.printer import printable
    from embmap.mapper.explain import explain_data, explain_text
    from embmap.mapper.planio import load_any_plan
    from embmap.mapper.torchrec.cluster import explain_cluster

    if args.gantt is not None:  # fail before reading the plan, not after
        from embmap.mapper.gantt import check_gantt_path

        check_gantt_path(args.gantt, [args.plan])
    plan = load_any_plan(args.plan)
    if isinstance(plan, ClusterPlan):
        if args.gantt is not None:
            raise SpecError(
                "--gantt", "draws a plan for one device; this plan spans devices", "leave out --gantt for it"
            )
        print(plan.model_dump_json(indent=1) if args.json else explain_cluster(plan))
        return 0
    print(json.dumps(explain_data(plan), indent=1) if args.json else explain_text(plan))
    if args.gantt is not None:
        from embmap.mapper.gantt import draw_gantt

        draw_gantt(plan, args.gantt)
        print(f"wrote {printable(str(args.gantt))}", file=sys.stderr if args.json else sys.stdout)
    return 0


def _progress_listener() -> ProgressBar | ProgressLog:
    """A live line on a terminal, one line per improvement otherwise (a log, a pipe)."""
    from embmap.passes.solver.progress import ProgressBar, ProgressLog

    return ProgressBar(sys.stderr) if sys.stderr.isatty() else ProgressLog(sys.stderr)
