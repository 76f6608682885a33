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
its cores) plus sending its outputs, subject to every device's memory, with CP-SAT (`device_level`, with its
lower bound and gap). The costs come from the same cost model as the core level (the device target's profile),
so the two levels agree on what is expensive. Each device's share then becomes one or two ordinary workloads,
mapped onto its cores by the core level's pipeline: the model-parallel shards over the global batch, and the
data-parallel replicas over the device's own samples (TorchRec runs the two groups one after the other, too).
The replicas are the same workload on every device and are compiled once; the devices' compiles share one
budget of deterministic time (`device_settings`) and leave out `DEVICE_SKIPPED_PASSES`.

A row-wise block is planned at the core level as a table of its rows with the table's pooling scaled by the
block's share of the rows (a mean, fractional like any pooling factor), as the device level prices it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Collection, Mapping, Sequence

from embmap.cost_models.analytic import ItemShape, coefficient, item_cost
from embmap.ir.cluster import ClusterPlan, ClusterSpec, DevicePlan, LinkSpec, Sharding, TableSharding
from embmap.ir.cost_profile import CostProfile
from embmap.ir.errors import InfeasibleError, SpecError
from embmap.ir.lowering import check_fits, lower
from embmap.ir.module import Module, TableProfile
from embmap.ir.plan import ExecutionPlan, Strategy
from embmap.ir.printer import fmt_bytes, fmt_s, printable
from embmap.ir.spec import Distribution, TableSpec, TargetSpec, WorkloadSpec, whole_if_integral
from embmap.mapper.backend import tool_version
from embmap.mapper.compiler import compile, prepare_workload, resolve_target
from embmap.mapper.pipelines import pipeline_for
from embmap.mapper.profiles import default_profile
from embmap.passes import PassManager, parse_pipeline, pipeline_text
from embmap.passes.solver.device_level import Option, place
from embmap.passes.solver.progress import ProgressListener
from embmap.passes.solver.settings import SolverSettings

DEVICE_METHODS = ("cp-sat", "table-wise-greedy")

# Links per device, for the output all-to-all. Assumptions, not measurements: see docs/torchrec.md.
LINKS = {
    "ascend910": LinkSpec(name="HCCS", bandwidth_bytes_per_s=30e9, latency_s=10e-6),
    "cpu": LinkSpec(name="gloo (TCP loopback)", bandwidth_bytes_per_s=2e9, latency_s=100e-6),
}
DEFAULT_LINK = LinkSpec(name="network", bandwidth_bytes_per_s=10e9, latency_s=20e-6)
OUTPUT_BYTES = 4  # pooled outputs travel in fp32

# The devices' core-level compiles share this many times the time limit (CP-SAT's deterministic seconds), split
# evenly over the distinct device workloads, each given at most the limit itself and at least
# `MIN_DEVICE_LIMIT_S`: 64 devices with shares of their own would otherwise take 64 full searches.
DEVICE_BUDGET_FACTOR = 8.0
MIN_DEVICE_LIMIT_S = 0.1
# Passes left out of the devices' pipelines. `pack` (the configuration LP with the local buffers, then the pattern
# dive) has no time limit: it took 60-94 s of the 81-111 s one device's compile of criteo-1tb-t3 on 16 x
# ascend910 took (26 replicas, 64 samples, 32 cores; 2 CPU cores), and improved no plan there.
DEVICE_SKIPPED_PASSES = ("pack",)


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


def options_for(
    t: TableSpec,
    stats: TableProfile,
    spec: ClusterSpec,
    batch: int,
    profile: CostProfile,
    allowed: tuple[Sharding, ...] = tuple(Sharding),
    sequence: bool = False,
) -> list[Option]:
    """The table's options within `allowed`; `sequence`: its outputs are one row per id, not pooled."""
    return [o for o in _all_options(t, stats, spec, batch, profile, sequence) if o.sharding in allowed]


def output_rows(t: TableSpec, samples: int, row_share: float, sequence: bool) -> float:
    """Output rows one part writes: a pooled row (or partial sum) per sample, or, for a sequence table, a row
    per id in its rows (`row_share` of the table's ids)."""
    return samples * t.pooling * row_share if sequence else float(samples)


def sequence_write_s(t: TableSpec, samples: int, row_share: float, dim: int, profile: CostProfile) -> float:
    """What a sequence table's part writes beyond the pooled rows the core level prices: its output rows less
    one per sample, at the profile's output bandwidth (negative below one id per sample)."""
    extra = output_rows(t, samples, row_share, True) - samples
    return extra * dim * OUTPUT_BYTES * coefficient(profile, "output_bytes_per_s")


def _all_options(
    t: TableSpec, stats: TableProfile, spec: ClusterSpec, batch: int, profile: CostProfile, sequence: bool
) -> list[Option]:
    n, tgt = spec.devices, spec.device
    local_batch = math.ceil(batch / n)
    strategies = [s for s in Strategy if not s.preloaded or t.bytes <= tgt.local.capacity_bytes]

    def cost(table: TableSpec, rows: tuple[int, int], samples: int) -> float:
        pooled = min(
            item_cost(ItemShape(s, rows, (0, samples)), table, stats, tgt, profile).total_s for s in strategies
        )
        share = (rows[1] - rows[0]) / t.rows
        return pooled + (sequence_write_s(t, samples, share, table.dim, profile) if sequence else 0.0)

    others = (n - 1) / n  # the share of the samples that live on other devices

    def sent(rows: tuple[int, int], dim: int) -> int:
        """Output bytes a part over the global batch sends: all but the sending device's own samples'."""
        share = (rows[1] - rows[0]) / t.rows
        return round(output_rows(t, batch, share, sequence) * dim * OUTPUT_BYTES * others)

    full = ((0, t.rows),)
    opts = [
        Option(
            Sharding.TABLE_WISE,
            (d,),
            (cost(t, (0, t.rows), batch),),
            (sent((0, t.rows), t.dim),),
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
            Option(
                Sharding.ROW_WISE,
                tuple(range(n)),
                tuple(cost(t, blk, batch) for blk in blocks),
                tuple(sent(blk, t.dim) for blk in blocks),
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
            Option(
                Sharding.COLUMN_WISE,
                tuple(range(n)),
                tuple(c for _ in cols),
                tuple(sent((0, t.rows), narrow.dim) for _ in cols),
                tuple(narrow.bytes for _ in cols),
                tuple((0, t.rows) for _ in cols),
                cols,
            )
        )
    c = cost(t, (0, t.rows), local_batch)
    opts.append(
        Option(
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


def device_loads(choice: list[Option], spec: ClusterSpec) -> tuple[list[float], list[int], list[int]]:
    compute, send, memory = [0.0] * spec.devices, [0] * spec.devices, [0] * spec.devices
    for o in choice:
        for r, c, s, b in zip(o.ranks, o.compute_s, o.send_bytes, o.bytes_per_rank, strict=True):
            compute[r] += c / spec.device.cores
            send[r] += s
            memory[r] += b
    return compute, send, memory


def finish_s(compute: float, send: int, link: LinkSpec) -> float:
    return compute + (link.latency_s + send / link.bandwidth_bytes_per_s if send else 0.0)


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
    progress: ProgressListener | None = None,
    sequence_tables: Collection[str] = (),
) -> ClusterPlan:
    """Shard a workload's tables across `spec.devices` devices, then map every device's share onto its cores
    with `pipeline` (less `DEVICE_SKIPPED_PASSES`). `batch` is the global batch: all devices' samples of one
    step together. `shardings` limits a table's sharding types (as TorchRec's `ParameterConstraints.sharding_types`
    do). `progress` follows the device level's CP-SAT search (`passes.solver.progress`), where it runs.
    `sequence_tables` output one row per id rather than a pooled row per sample (an EmbeddingCollection's):
    the device level prices their larger outputs, in writes and in the all-to-all; the core level maps their
    lookups as pooled ones, and each device's compute adds the difference (`DevicePlan.sequence_write_s`).

    `solver` bounds the device level's search; the devices' compiles share `DEVICE_BUDGET_FACTOR` times its
    time limit (`device_settings`), and devices with the same share (data-parallel replicas) share one compile.
    All limits count deterministic time: the same settings give the same plan on every run."""
    solver = solver or SolverSettings()
    if device_method not in DEVICE_METHODS:
        raise SpecError("device_method", f"unknown: {device_method!r}", f"use one of {', '.join(DEVICE_METHODS)}")
    w = prepare_workload(workload, batch, row_cap, distribution, None).effective()
    check_fits(w, _as_one_target(spec))
    profile = cost_profile or default_profile(spec.device)
    tables = list(w.tables)
    sequence = _sequence(sequence_tables, tables)
    options = table_options(w, spec, profile, shardings or {}, sequence)
    if device_method == "table-wise-greedy" and not all(
        any(o.sharding is Sharding.TABLE_WISE for o in opts) for opts in options
    ):
        raise SpecError("device_method", "table-wise-greedy needs every table to allow table_wise", "use cp-sat")
    choice, report = place(tables, options, spec, device_method, solver, progress=progress)
    layout = tuple(
        TableSharding(
            table=t.name,
            sharding=o.sharding,
            ranks=o.ranks,
            rows=o.rows,
            columns=o.columns,
            bytes_per_rank=max(o.bytes_per_rank),
            output="sequence" if t.name in sequence else "pooled",
        )
        for t, o in zip(tables, choice, strict=True)
    )
    devices = _device_plans(w, spec, layout, choice, pipeline, profile, solver)
    return ClusterPlan(
        generator=tool_version(),
        pipeline=pipeline,
        workload_digest=w.digest(),
        cluster_digest=spec.digest(),
        workload=w,
        cluster=spec,
        shardings=layout,
        devices=tuple(devices),
        makespan_s=max(dp.finish_s for dp in devices),
        solver=report,
    )


def table_options(
    w: WorkloadSpec,
    spec: ClusterSpec,
    profile: CostProfile,
    shardings: Mapping[str, Sequence[Sharding | str]],
    sequence: Collection[str] = (),
) -> list[list[Option]]:
    """Every table's device-level options, within the sharding types it allows (`sequence`: the tables whose
    outputs are a row per id)."""
    module = _device_module(w, spec, profile)
    tables = list(w.tables)
    allowed = _allowed(shardings, tables)
    options = []
    for t in tables:
        stats = module.table_profile(t.name)
        opts = options_for(t, stats, spec, w.batch_size, profile, allowed[t.name], t.name in sequence)
        if not opts:
            kinds = ", ".join(s.value for s in allowed[t.name])
            raise InfeasibleError(
                f"shardings.{t.name}",
                f"allows only {kinds}, which cannot split it over {spec.devices} devices (dim {t.dim}, {t.rows} rows)",
                "allow another sharding type",
            )
        options.append(opts)
    return options


def _device_plans(
    w: WorkloadSpec,
    spec: ClusterSpec,
    layout: tuple[TableSharding, ...],
    choice: list[Option],
    pipeline: str,
    profile: CostProfile,
    solver: SolverSettings,
) -> list[DevicePlan]:
    """Each device's share mapped onto its cores, with its memory, compute and communication. A workload that
    several devices serve (the data-parallel replicas, the same on every device) is compiled once."""
    _, send, memory = device_loads(choice, spec)
    shares = [device_workloads(w, layout, d, spec.devices) for d in range(spec.devices)]
    distinct = {sub.model_dump_json(): sub for subs in shares for sub in subs}
    settings = device_settings(solver, len(distinct))
    passes = device_pipeline(pipeline)
    compiled = {
        key: compile(sub, spec.device, passes, cost_profile=profile, solver=settings, baselines=False)
        for key, sub in distinct.items()
    }
    writes = sequence_writes_s(w, spec, layout, profile)
    devices = []
    for d, subs in enumerate(shares):
        plans = tuple(compiled[sub.model_dump_json()] for sub in subs)
        compute = sum(p.makespan_s for p in plans) + writes[d]
        devices.append(
            DevicePlan(
                device=d,
                plans=plans,
                memory_bytes=memory[d],
                compute_s=compute,
                sequence_write_s=writes[d],
                send_bytes=send[d],
                comm_s=finish_s(0.0, send[d], spec.link),
                finish_s=finish_s(compute, send[d], spec.link),
            )
        )
    return devices


def sequence_writes_s(
    w: WorkloadSpec, spec: ClusterSpec, layout: tuple[TableSharding, ...], profile: CostProfile
) -> list[float]:
    """Per device, what its sequence tables' parts write beyond the pooled rows its core-level plans price,
    spread over its cores (as the device level priced them: `sequence_write_s`)."""
    by_name = {t.name: t for t in w.tables}
    out = [0.0] * spec.devices
    for s in layout:
        if s.output != "sequence":
            continue
        t = by_name[s.table]
        samples = math.ceil(w.batch_size / spec.devices) if s.sharding is Sharding.DATA_PARALLEL else w.batch_size
        for r, (r0, r1), (c0, c1) in zip(s.ranks, s.rows, s.columns, strict=True):
            out[r] += sequence_write_s(t, samples, (r1 - r0) / t.rows, c1 - c0, profile) / spec.device.cores
    return out


def device_settings(solver: SolverSettings, distinct: int) -> SolverSettings:
    """The settings of each of `distinct` device compiles: the time limit an even share of
    `DEVICE_BUDGET_FACTOR` times the given one, within [`MIN_DEVICE_LIMIT_S`, the given one]."""
    share = DEVICE_BUDGET_FACTOR * solver.time_limit_s / max(1, distinct)
    return dataclasses.replace(solver, time_limit_s=min(solver.time_limit_s, max(MIN_DEVICE_LIMIT_S, share)))


def device_pipeline(pipeline: str) -> str:
    """The pass list a device's share is compiled with: `pipeline` less `DEVICE_SKIPPED_PASSES`."""
    return pipeline_text([p for p in parse_pipeline(pipeline_for(pipeline)) if p.name not in DEVICE_SKIPPED_PASSES])


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


def _sequence(names: Collection[str], tables: list[TableSpec]) -> frozenset[str]:
    unknown = sorted(set(names) - {t.name for t in tables})
    if unknown:
        raise SpecError(f"sequence_tables.{unknown[0]}", "names no table of the workload", "use its table names")
    return frozenset(names)


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
                        "pooling": whole_if_integral(t.pooling * share),
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
                    "name": f"{workload.name}.replicas",  # the same on every device: compiled once
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
        f"{printable(plan.workload.name)} on {printable(spec.name)}: {spec.devices} x {printable(spec.device.name)} "
        f"({spec.device.cores} cores, {fmt_bytes(spec.device.main.capacity_bytes)} {printable(spec.device.main.name)}), "
        f"link {printable(spec.link.name)} "
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
        rows = f"{printable(s.table):<21} {s.sharding.value:<14} {list(s.ranks)}"
        lines.append(rows + ("  (outputs a row per id)" if s.output == "sequence" else ""))
    return "\n".join(lines)
