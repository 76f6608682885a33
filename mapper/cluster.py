"""Planning across devices, then cores: `compile_cluster`.

The device level decides, for every table, one of TorchRec's sharding types and the devices that hold it:

  table_wise     the whole table on one device, serving the global batch; its pooled outputs, except the
                 sending device's own samples, go to the other devices in the all-to-all.
  row_wise       rows in equal blocks (TorchRec's split) over all devices, each serving the global batch's
                 lookups that fall in its block; partial sums are reduced to the samples' devices.
  column_wise    columns in equal blocks over all devices; each sends its columns of the outputs.
  data_parallel  a replica on every device serving only that device's samples: no communication, but the
                 table's bytes on every device.

It minimises the predicted time of the slowest device, compute (the device's share of the work, spread over
its cores) plus sending its outputs, subject to every device's memory, with CP-SAT. The costs come from the
same cost model as the core level (the device target's profile), so the two levels agree on what is
expensive. Each device's share then becomes one or two ordinary workloads, mapped onto its cores by the core
level's pipeline: the model-parallel shards over the global batch, and the data-parallel replicas over the
device's own samples (TorchRec runs the two groups one after the other, too).

A row-wise block is planned at the core level as a table of its rows with the table's pooling scaled by the
block's share of the rows (rounded, at least one lookup per sample); the device level uses the exact share.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ortools.sat.python import cp_model

from embmap.cost_models.analytic import ItemShape, item_cost
from embmap.ir.cluster import ClusterPlan, ClusterSpec, DevicePlan, LinkSpec, Sharding, TableSharding
from embmap.ir.cost_profile import CostProfile
from embmap.ir.errors import InfeasibleError, SpecError
from embmap.ir.lowering import check_fits, largest_fitting_cap, lower
from embmap.ir.module import Module, TableProfile
from embmap.ir.plan import ExecutionPlan, SolverReport, Strategy
from embmap.ir.printer import fmt_bytes, fmt_s
from embmap.ir.spec import Distribution, TableSpec, TargetSpec, WorkloadSpec
from embmap.mapper.backend import tool_version
from embmap.mapper.compiler import compile, prepare_workload, resolve_target
from embmap.mapper.profiles import default_profile
from embmap.passes import PassManager, parse_pipeline
from embmap.passes.solver.problem import MAX_MODEL_SUM
from embmap.passes.solver.settings import SolverSettings

OUTPUT_BYTES = 4  # pooled outputs travel in fp32
SCALE = 1e9  # CP-SAT works in integer nanoseconds
DEVICE_METHODS = ("cp-sat", "table-wise-greedy")

# Links per device, for the output all-to-all. Assumptions, not measurements: see docs/torchrec.md.
LINKS = {
    "ascend910": LinkSpec(name="HCCS", bandwidth_bytes_per_s=30e9, latency_s=10e-6),
    "cpu": LinkSpec(name="gloo (TCP loopback)", bandwidth_bytes_per_s=2e9, latency_s=100e-6),
}
DEFAULT_LINK = LinkSpec(name="network", bandwidth_bytes_per_s=10e9, latency_s=20e-6)


def cluster(
    device: TargetSpec | str,
    devices: int,
    link: LinkSpec | None = None,
    *,
    cores: int | None = None,
    memory_bytes: int | None = None,
) -> ClusterSpec:
    """N identical devices of a built-in or given target, with the target's default link unless given.

    Ranks of the `cpu` target share this machine: unless told otherwise, each gets an equal part of its cores
    (at least one) and of its memory. `cores` and `memory_bytes` override a device's cores and main memory."""
    tgt = resolve_target(device)
    if devices < 1:
        raise SpecError("devices", f"must be at least 1, got {devices}", "give the number of devices (ranks)")
    if tgt.name == "cpu":
        cores = cores or max(1, tgt.cores // devices)
        memory_bytes = memory_bytes or tgt.main.capacity_bytes // devices
    update: dict[str, object] = {}
    if cores is not None:
        if cores < 1:
            raise SpecError("cores", f"must be at least 1, got {cores}", "give the cores of one device")
        update["cores"] = cores
    if memory_bytes is not None:
        if memory_bytes < 1:
            raise SpecError("memory_bytes", f"must be positive, got {memory_bytes}", "give one device's memory")
        update["main"] = tgt.main.model_copy(update={"capacity_bytes": memory_bytes})
    tgt = tgt.model_copy(update=update)
    lk = link or LINKS.get(tgt.name, DEFAULT_LINK)
    return ClusterSpec(
        name=f"{devices}x{tgt.name}",
        devices=devices,
        device=tgt,
        link=lk,
        source=f"{devices} x {tgt.name} ({tgt.cores} cores, {fmt_bytes(tgt.main.capacity_bytes)} {tgt.main.name}); "
        f"link: {lk.name}" + ("" if link else " (this target's default, assumed)"),
    )


@dataclass(frozen=True)
class _Option:
    sharding: Sharding
    ranks: tuple[int, ...]
    compute_s: tuple[float, ...]  # per rank in `ranks`, on one core
    send_bytes: tuple[int, ...]
    bytes_per_rank: tuple[int, ...]
    rows: tuple[tuple[int, int], ...]
    columns: tuple[tuple[int, int], ...]


def row_blocks(rows: int, devices: int) -> tuple[tuple[int, int], ...]:
    """TorchRec's even row-wise split: blocks of ceil(rows / devices) rows, the last one shorter (or empty)."""
    block = math.ceil(rows / devices)
    return tuple((min(rows, d * block), min(rows, (d + 1) * block)) for d in range(devices))


def column_blocks(dim: int, devices: int) -> tuple[tuple[int, int], ...] | None:
    """Equal column blocks over all devices, or None where the dim does not split evenly (TorchRec needs
    column shards of equal width, a multiple of 4 columns)."""
    if devices < 2 or dim % devices or (dim // devices) % 4:
        return None
    width = dim // devices
    return tuple((d * width, (d + 1) * width) for d in range(devices))


def _options(
    t: TableSpec,
    stats: TableProfile,
    spec: ClusterSpec,
    batch: int,
    profile: CostProfile,
    allowed: tuple[Sharding, ...] = tuple(Sharding),
) -> list[_Option]:
    return [o for o in _all_options(t, stats, spec, batch, profile) if o.sharding in allowed]


def _all_options(
    t: TableSpec, stats: TableProfile, spec: ClusterSpec, batch: int, profile: CostProfile
) -> list[_Option]:
    n, tgt = spec.devices, spec.device
    local_batch = math.ceil(batch / n)
    strategies = [s for s in Strategy if not s.preloaded or t.bytes <= tgt.local.capacity_bytes]

    def cost(table: TableSpec, rows: tuple[int, int], samples: int) -> float:
        return min(item_cost(ItemShape(s, rows, (0, samples)), table, stats, tgt, profile).total_s for s in strategies)

    others = (n - 1) / n  # the share of the samples that live on other devices
    out_bytes = batch * t.dim * OUTPUT_BYTES
    full = ((0, t.rows),)
    opts = [
        _Option(
            Sharding.TABLE_WISE,
            (d,),
            (cost(t, (0, t.rows), batch),),
            (round(out_bytes * others),),
            (t.bytes,),
            full,
            ((0, t.dim),),
        )
        for d in range(n)
    ]
    if n == 1:
        return opts
    blocks = row_blocks(t.rows, n)
    if all(b > a for a, b in blocks):
        opts.append(
            _Option(
                Sharding.ROW_WISE,
                tuple(range(n)),
                tuple(cost(t, blk, batch) for blk in blocks),
                tuple(round(out_bytes * others) for _ in blocks),
                tuple((b - a) * t.row_bytes for a, b in blocks),
                blocks,
                tuple((0, t.dim) for _ in blocks),
            )
        )
    cols = column_blocks(t.dim, n)
    if cols is not None:
        narrow = t.model_copy(update={"dim": t.dim // n})
        c = cost(narrow, (0, t.rows), batch)
        opts.append(
            _Option(
                Sharding.COLUMN_WISE,
                tuple(range(n)),
                tuple(c for _ in cols),
                tuple(round(out_bytes / n * others) for _ in cols),
                tuple(narrow.bytes for _ in cols),
                tuple((0, t.rows) for _ in cols),
                cols,
            )
        )
    c = cost(t, (0, t.rows), local_batch)
    opts.append(
        _Option(
            Sharding.DATA_PARALLEL,
            tuple(range(n)),
            tuple(c for _ in range(n)),
            tuple(0 for _ in range(n)),
            tuple(t.bytes for _ in range(n)),
            tuple((0, t.rows) for _ in range(n)),
            tuple((0, t.dim) for _ in range(n)),
        )
    )
    return opts


def _device_loads(choice: list[_Option], spec: ClusterSpec) -> tuple[list[float], list[int], list[int]]:
    compute, send, memory = [0.0] * spec.devices, [0] * spec.devices, [0] * spec.devices
    for o in choice:
        for r, c, s, b in zip(o.ranks, o.compute_s, o.send_bytes, o.bytes_per_rank, strict=True):
            compute[r] += c / spec.device.cores
            send[r] += s
            memory[r] += b
    return compute, send, memory


def _finish_s(compute: float, send: int, link: LinkSpec) -> float:
    return compute + (link.latency_s + send / link.bandwidth_bytes_per_s if send else 0.0)


def _greedy(tables: list[TableSpec], options: list[list[_Option]], spec: ClusterSpec) -> list[_Option] | None:
    """Largest table first onto the device that finishes first with it and still has room (table-wise only)."""
    n, cap, link = spec.devices, spec.device.main.capacity_bytes, spec.link
    compute, send, memory = [0.0] * n, [0] * n, [0] * n
    chosen: list[_Option | None] = [None] * len(tables)
    order = sorted(range(len(tables)), key=lambda i: -max(max(o.compute_s) for o in options[i]))
    for i in order:
        whole = [o for o in options[i] if o.sharding is Sharding.TABLE_WISE]
        fits = [o for o in whole if memory[o.ranks[0]] + o.bytes_per_rank[0] <= cap]
        if not fits:
            return None
        o = min(
            fits,
            key=lambda o: _finish_s(
                compute[o.ranks[0]] + o.compute_s[0] / spec.device.cores, send[o.ranks[0]] + o.send_bytes[0], link
            ),
        )
        d = o.ranks[0]
        compute[d] += o.compute_s[0] / spec.device.cores
        send[d] += o.send_bytes[0]
        memory[d] += o.bytes_per_rank[0]
        chosen[i] = o
    return [o for o in chosen if o is not None]


def _makespan(choice: list[_Option], spec: ClusterSpec) -> float:
    compute, send, _ = _device_loads(choice, spec)
    return max(_finish_s(c, s, spec.link) for c, s in zip(compute, send, strict=True))


def _solve(
    tables: list[TableSpec], options: list[list[_Option]], spec: ClusterSpec, solver: SolverSettings
) -> tuple[list[_Option], SolverReport]:
    n, cap, link = spec.devices, spec.device.main.capacity_bytes, spec.link
    start = time.perf_counter()
    hint = _greedy(tables, options, spec)
    m = cp_model.CpModel()
    x = [[m.new_bool_var(f"x{i}_{k}") for k in range(len(opts))] for i, opts in enumerate(options)]
    for xs in x:
        m.add_exactly_one(xs)
    latency = round(link.latency_s * SCALE) if n > 1 else 0
    loads = []
    for d in range(n):
        load, mem = [], []
        for xs, opts in zip(x, options, strict=True):
            for var, o in zip(xs, opts, strict=True):
                if d in o.ranks:
                    j = o.ranks.index(d)
                    seconds = o.compute_s[j] / spec.device.cores + o.send_bytes[j] / link.bandwidth_bytes_per_s
                    load.append((var, round(seconds * SCALE)))
                    mem.append((var, o.bytes_per_rank[j]))
        if sum(b for _, b in mem) > cap:  # else it cannot bind (and a huge capacity may not fit int64)
            m.add(sum(v * b for v, b in mem) <= cap)
        loads.append(load)
    _check_model_size(loads, [_mem_total(options, d) for d in range(n)], cap)
    span = m.new_int_var(0, max(sum(w for _, w in load) for load in loads) + latency, "makespan")
    for load in loads:
        m.add(span >= sum(v * w for v, w in load) + latency)
    m.minimize(span)
    if hint is not None:
        for xs, opts, o in zip(x, options, hint, strict=True):
            for var, candidate in zip(xs, opts, strict=True):
                m.add_hint(var, candidate is o)
    limit, workers, seed = solver.time_limit_s, solver.workers, solver.seed
    cp = cp_model.CpSolver()
    cp.parameters.max_time_in_seconds = limit
    cp.parameters.num_workers = workers
    cp.parameters.random_seed = seed
    status = cp.solve(m)
    name = cp.status_name(status)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        if status == cp_model.INFEASIBLE or hint is None:
            total = sum(t.bytes for t in tables)
            largest = max(tables, key=lambda t: t.bytes)
            raise InfeasibleError(
                "workload.tables",
                f"no way to place them on {spec.name} found ({name}): they need {fmt_bytes(total)} (largest "
                f"{largest.name}: {fmt_bytes(largest.bytes)}), the {n} devices' {spec.device.main.name} hold "
                f"{n} x {fmt_bytes(cap)}, and the allowed shardings do not pack them",
                f"use --devices {n + 1} or more, --row-cap {largest_fitting_cap(tables, cap)} or less (then all "
                "tables fit one device), or a smaller dtype",
            )
        choice = hint
    else:
        choice = [opts[next(k for k, v in enumerate(xs) if cp.value(v))] for xs, opts in zip(x, options, strict=True)]
    objective = _makespan(choice, spec)
    bound = cp.best_objective_bound / SCALE if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else 0.0
    report = SolverReport.of(
        "cp-sat",
        name,  # type: ignore[arg-type]
        objective,
        min(bound, objective),
        time.perf_counter() - start,
        workers=workers,
        seed=seed,
        time_limit_s=limit,
        hint_objective_s=_makespan(hint, spec) if hint is not None else None,
        options_considered=sum(len(o) for o in options),
    )
    return choice, report


def _mem_total(options: list[list[_Option]], device: int) -> int:
    """Bytes every option would put on `device`, all together: what the memory constraint could sum."""
    return sum(o.bytes_per_rank[o.ranks.index(device)] for opts in options for o in opts if device in o.ranks)


def _check_model_size(loads: list[list[tuple[Any, int]]], held: list[int], cap: int) -> None:
    """The device-level model's sums fit CP-SAT's 64-bit arithmetic (as `passes.solver.problem.check_model_size`)."""
    time_units = max(sum(w for _, w in load) for load in loads)
    if time_units >= MAX_MODEL_SUM:
        raise SpecError(
            "workload",
            f"the device-level options add up to {time_units / SCALE:.3g} s per batch, beyond the "
            f"{MAX_MODEL_SUM / SCALE:.3g} s the device assignment can count in ns",
            "check the target's and link's bandwidths, and use a smaller batch size or pooling factor",
        )
    if any(h > cap and h >= MAX_MODEL_SUM for h in held):
        raise SpecError(
            "workload.tables",
            f"their shards add up to {max(held):.3g} bytes per device, beyond the {MAX_MODEL_SUM:.3g} the device "
            "assignment can sum",
            "cap rows (--row-cap) to sizes a device can hold",
        )


def _device_module(workload: WorkloadSpec, spec: ClusterSpec, profile: CostProfile) -> Module:
    """All tables on one device, profiled: each table's cache share as if the device served them all (the
    device level's estimate; each device's own share is profiled again when its cores are mapped)."""
    m = lower(workload, spec.device, profile, check=False)
    return PassManager(parse_pipeline("profile")).run(m)


def compile_cluster(
    workload: WorkloadSpec | str,
    spec: ClusterSpec,
    pipeline: str = "embmap",
    *,
    device_method: str = "cp-sat",
    cost_profile: CostProfile | None = None,
    batch: int | None = None,
    row_cap: int | None = None,
    distribution: Distribution | None = None,
    solver: SolverSettings | None = None,
    shardings: Mapping[str, Sequence[Sharding | str]] | None = None,
    progress: Callable[[str], None] | None = None,
) -> ClusterPlan:
    """Shard a workload's tables across `spec.devices` devices, then map every device's share onto its cores
    with `pipeline`. `batch` is the global batch: all devices' samples of one step together. `shardings`
    limits a table's sharding types (as TorchRec's `ParameterConstraints.sharding_types` do)."""
    solver = solver or SolverSettings()
    if device_method not in DEVICE_METHODS:
        raise SpecError("device_method", f"unknown: {device_method!r}", f"use one of {', '.join(DEVICE_METHODS)}")
    w = prepare_workload(workload, batch, row_cap, distribution, None).effective()
    n = spec.devices
    check_fits(w, _as_one_target(spec))
    profile = cost_profile or default_profile(spec.device)
    module = _device_module(w, spec, profile)
    tables = list(w.tables)
    allowed = _allowed(shardings or {}, tables)
    options = []
    for t in tables:
        opts = _options(t, module.table_profile(t.name), spec, w.batch_size, profile, allowed[t.name])
        if not opts:
            kinds = ", ".join(s.value for s in allowed[t.name])
            raise InfeasibleError(
                f"shardings.{t.name}",
                f"allows only {kinds}, which cannot split it over {spec.devices} devices (dim {t.dim}, {t.rows} rows)",
                "allow another sharding type",
            )
        options.append(opts)
    if device_method == "table-wise-greedy" and not all(
        any(o.sharding is Sharding.TABLE_WISE for o in opts) for opts in options
    ):
        raise SpecError("device_method", "table-wise-greedy needs every table to allow table_wise", "use cp-sat")
    if device_method == "table-wise-greedy":
        start = time.perf_counter()
        choice = _greedy(tables, options, spec)
        if choice is None:
            cap = spec.device.main.capacity_bytes
            largest = max(tables, key=lambda t: t.bytes)
            raise InfeasibleError(
                "workload.tables",
                f"the table-wise greedy placement (whole tables, largest first) does not fit {spec.name}: the "
                f"tables need {fmt_bytes(sum(t.bytes for t in tables))} (largest {largest.name}: "
                f"{fmt_bytes(largest.bytes)}), each of the {n} devices' {spec.device.main.name} holds {fmt_bytes(cap)}",
                f"use --device-method cp-sat (it may shard tables), --devices {n + 1} or more, or --row-cap "
                f"{largest_fitting_cap(tables, cap)} or less (then all tables fit one device)",
            )
        obj = _makespan(choice, spec)
        report = SolverReport.of("table-wise-greedy", "FEASIBLE", obj, 0.0, time.perf_counter() - start)
    else:
        choice, report = _solve(tables, options, spec, solver)
    layout = tuple(
        TableSharding(
            table=t.name,
            sharding=o.sharding,
            ranks=o.ranks,
            rows=o.rows,
            columns=o.columns,
            bytes_per_rank=max(o.bytes_per_rank),
        )
        for t, o in zip(tables, choice, strict=True)
    )
    _, send, memory = _device_loads(choice, spec)
    devices = []
    for d in range(n):
        if progress:
            progress(f"device {d}: mapping its share onto {spec.device.cores} cores")
        plans = [
            compile(sub, spec.device, pipeline, cost_profile=profile, solver=solver, baselines=False)
            for sub in device_workloads(w, layout, d, n)
        ]
        compute = sum(p.makespan_s for p in plans)
        devices.append(
            DevicePlan(
                device=d,
                plans=tuple(plans),
                memory_bytes=memory[d],
                compute_s=compute,
                send_bytes=send[d],
                comm_s=_finish_s(0.0, send[d], spec.link),
                finish_s=_finish_s(compute, send[d], spec.link),
            )
        )
    return ClusterPlan(
        generator=tool_version(),
        pipeline=pipeline,
        workload=w,
        cluster=spec,
        shardings=layout,
        devices=tuple(devices),
        makespan_s=max(dp.finish_s for dp in devices),
        solver=report,
    )


def _allowed(
    shardings: Mapping[str, Sequence[Sharding | str]], tables: list[TableSpec]
) -> dict[str, tuple[Sharding, ...]]:
    names = {t.name for t in tables}
    out = {t.name: tuple(Sharding) for t in tables}
    for name, kinds in shardings.items():
        if name not in names:
            raise SpecError(f"shardings.{name}", "names no table of the workload", "use the workload's table names")
        try:
            out[name] = tuple(Sharding(k) for k in kinds)
        except ValueError:
            raise SpecError(
                f"shardings.{name}",
                f"unknown sharding type in {list(kinds)}",
                f"use {', '.join(s.value for s in Sharding)}",
            ) from None
        if not out[name]:
            raise SpecError(f"shardings.{name}", "allows no sharding type", "name at least one")
    return out


def _as_one_target(spec: ClusterSpec) -> TargetSpec:
    """The cluster as one target with all devices' memory, for the same fit checks as any workload."""
    main = spec.device.main
    return spec.device.model_copy(
        update={
            "name": spec.name,
            "main": main.model_copy(update={"capacity_bytes": main.capacity_bytes * spec.devices}),
        }
    )


def device_workloads(
    workload: WorkloadSpec, shardings: tuple[TableSharding, ...], device: int, devices: int
) -> list[WorkloadSpec]:
    """What one device serves: its model-parallel shards over the global batch, and its data-parallel
    replicas over its own samples (each a workload, omitted when empty)."""
    by_name = {t.name: t for t in workload.tables}
    model_parallel, replicas = [], []
    for s in shardings:
        if device not in s.ranks:
            continue
        t = by_name[s.table]
        j = s.ranks.index(device)
        (r0, r1), (c0, c1) = s.rows[j], s.columns[j]
        if s.sharding is Sharding.DATA_PARALLEL:
            replicas.append(t)
        elif s.sharding is Sharding.TABLE_WISE:
            model_parallel.append(t)
        elif s.sharding is Sharding.ROW_WISE:
            share = (r1 - r0) / t.rows
            model_parallel.append(
                t.model_copy(
                    update={
                        "name": f"{t.name}.rows{r0}-{r1}",
                        "rows": r1 - r0,
                        "pooling": max(1, round(t.pooling * share)),
                    }
                )
            )
        else:
            model_parallel.append(t.model_copy(update={"name": f"{t.name}.cols{c0}-{c1}", "dim": c1 - c0}))
    out = []
    if model_parallel:
        out.append(
            workload.model_copy(
                update={"name": f"{workload.name}.device{device}", "tables": tuple(model_parallel), "row_cap": None}
            )
        )
    if replicas:
        out.append(
            workload.model_copy(
                update={
                    "name": f"{workload.name}.device{device}.replicas",
                    "tables": tuple(replicas),
                    "batch_size": math.ceil(workload.batch_size / devices),
                    "row_cap": None,
                }
            )
        )
    return out


def device_plans(plan: ClusterPlan) -> list[ExecutionPlan]:
    return [p for d in plan.devices for p in d.plans]


def explain_cluster(plan: ClusterPlan) -> str:
    """Per device: its shards, predicted compute and communication; then every table's sharding."""
    spec = plan.cluster
    lines = [
        f"{plan.workload.name} on {spec.name}: {spec.devices} x {spec.device.name} ({spec.device.cores} cores, "
        f"{fmt_bytes(spec.device.main.capacity_bytes)} {spec.device.main.name}), link {spec.link.name} "
        f"{spec.link.bandwidth_bytes_per_s / 1e9:g} GB/s",
        f"predicted makespan {fmt_s(plan.makespan_s)} (device level: {plan.solver.method} {plan.solver.status}, "
        f"gap {plan.solver.gap:.2%})",
        "",
        "device  memory      compute     send        comm        finish",
    ]
    for d in plan.devices:
        lines.append(
            f"{d.device:<7} {fmt_bytes(d.memory_bytes):<11} {fmt_s(d.compute_s):<11} {fmt_bytes(d.send_bytes):<11} "
            f"{fmt_s(d.comm_s):<11} {fmt_s(d.finish_s)}"
        )
    counts: dict[str, int] = {}
    for s in plan.shardings:
        counts[s.sharding.value] = counts.get(s.sharding.value, 0) + 1
    lines += ["", "shardings: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())), ""]
    lines.append("table                 sharding       ranks")
    for s in plan.shardings:
        lines.append(f"{s.table:<21} {s.sharding.value:<14} {list(s.ranks)}")
    return "\n".join(lines)
