"""The device level of a plan across devices: for every table, one of TorchRec's sharding types and the devices
that hold it, chosen to minimise the predicted time of the slowest device (its compute, spread over its cores,
plus sending its outputs) within every device's memory.

`options_for` lists a table's options with their costs from the core level's cost model; `place` picks one per
table, by CP-SAT (seeded with the greedy table-wise placement) or by that greedy placement alone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

from ortools.sat.python import cp_model

from embmap.cost_models.analytic import ItemShape, item_cost
from embmap.ir.cluster import ClusterSpec, LinkSpec, Sharding
from embmap.ir.cost_profile import CostProfile
from embmap.ir.errors import InfeasibleError, SpecError
from embmap.ir.lowering import largest_fitting_cap
from embmap.ir.module import TableProfile
from embmap.ir.plan import SolverReport, Strategy
from embmap.ir.printer import fmt_bytes
from embmap.ir.spec import TableSpec
from embmap.passes.solver.problem import MAX_MODEL_SUM
from embmap.passes.solver.settings import SolverSettings

OUTPUT_BYTES = 4  # pooled outputs travel in fp32
SCALE = 1e9  # CP-SAT works in integer nanoseconds


@dataclass(frozen=True)
class Option:
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


def options_for(
    t: TableSpec,
    stats: TableProfile,
    spec: ClusterSpec,
    batch: int,
    profile: CostProfile,
    allowed: tuple[Sharding, ...] = tuple(Sharding),
) -> list[Option]:
    return [o for o in _all_options(t, stats, spec, batch, profile) if o.sharding in allowed]


def _all_options(
    t: TableSpec, stats: TableProfile, spec: ClusterSpec, batch: int, profile: CostProfile
) -> list[Option]:
    n, tgt = spec.devices, spec.device
    local_batch = math.ceil(batch / n)
    strategies = [s for s in Strategy if not s.preloaded or t.bytes <= tgt.local.capacity_bytes]

    def cost(table: TableSpec, rows: tuple[int, int], samples: int) -> float:
        return min(item_cost(ItemShape(s, rows, (0, samples)), table, stats, tgt, profile).total_s for s in strategies)

    others = (n - 1) / n  # the share of the samples that live on other devices
    out_bytes = batch * t.dim * OUTPUT_BYTES
    full = ((0, t.rows),)
    opts = [
        Option(
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
            Option(
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
            Option(
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


def greedy_table_wise(tables: list[TableSpec], options: list[list[Option]], spec: ClusterSpec) -> list[Option] | None:
    """Largest table first onto the device that finishes first with it and still has room (table-wise only)."""
    n, cap, link = spec.devices, spec.device.main.capacity_bytes, spec.link
    compute, send, memory = [0.0] * n, [0] * n, [0] * n
    chosen: list[Option | None] = [None] * len(tables)
    order = sorted(range(len(tables)), key=lambda i: -max(max(o.compute_s) for o in options[i]))
    for i in order:
        whole = [o for o in options[i] if o.sharding is Sharding.TABLE_WISE]
        fits = [o for o in whole if memory[o.ranks[0]] + o.bytes_per_rank[0] <= cap]
        if not fits:
            return None
        o = min(
            fits,
            key=lambda o: finish_s(
                compute[o.ranks[0]] + o.compute_s[0] / spec.device.cores, send[o.ranks[0]] + o.send_bytes[0], link
            ),
        )
        d = o.ranks[0]
        compute[d] += o.compute_s[0] / spec.device.cores
        send[d] += o.send_bytes[0]
        memory[d] += o.bytes_per_rank[0]
        chosen[i] = o
    return [o for o in chosen if o is not None]


def makespan_s(choice: list[Option], spec: ClusterSpec) -> float:
    compute, send, _ = device_loads(choice, spec)
    return max(finish_s(c, s, spec.link) for c, s in zip(compute, send, strict=True))


def place(
    tables: list[TableSpec], options: list[list[Option]], spec: ClusterSpec, method: str, solver: SolverSettings
) -> tuple[list[Option], SolverReport]:
    """One option per table: by CP-SAT (`method` "cp-sat") or by the greedy table-wise placement alone."""
    if method != "table-wise-greedy":
        return solve(tables, options, spec, solver)
    start = time.perf_counter()
    choice = greedy_table_wise(tables, options, spec)
    if choice is None:
        cap, n = spec.device.main.capacity_bytes, spec.devices
        largest = max(tables, key=lambda t: t.bytes)
        raise InfeasibleError(
            "workload.tables",
            f"the table-wise greedy placement (whole tables, largest first) does not fit {spec.name}: the "
            f"tables need {fmt_bytes(sum(t.bytes for t in tables))} (largest {largest.name}: "
            f"{fmt_bytes(largest.bytes)}), each of the {n} devices' {spec.device.main.name} holds {fmt_bytes(cap)}",
            f"use --device-method cp-sat (it may shard tables), --devices {n + 1} or more, or --row-cap "
            f"{largest_fitting_cap(tables, cap)} or less (then all tables fit one device)",
        )
    obj = makespan_s(choice, spec)
    return choice, SolverReport.of("table-wise-greedy", "FEASIBLE", obj, 0.0, time.perf_counter() - start)


def solve(
    tables: list[TableSpec], options: list[list[Option]], spec: ClusterSpec, solver: SolverSettings
) -> tuple[list[Option], SolverReport]:
    """The CP-SAT placement, seeded with the greedy one; where the search finds nothing in time, the greedy
    placement (and a bound of 0)."""
    start = time.perf_counter()
    hint = greedy_table_wise(tables, options, spec)
    model, x = _model(options, spec, hint)
    cp = cp_model.CpSolver()
    cp.parameters.max_time_in_seconds = solver.time_limit_s
    cp.parameters.num_workers = solver.workers
    cp.parameters.random_seed = solver.seed
    status = cp.solve(model)
    name = cp.status_name(status)
    found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    if found:
        choice = [opts[next(k for k, v in enumerate(xs) if cp.value(v))] for xs, opts in zip(x, options, strict=True)]
    elif status == cp_model.INFEASIBLE or hint is None:
        raise _no_placement(tables, spec, name)
    else:
        choice = hint
    objective = makespan_s(choice, spec)
    bound = cp.best_objective_bound / SCALE if found else 0.0
    report = SolverReport.of(
        "cp-sat",
        name,  # type: ignore[arg-type]
        objective,
        min(bound, objective),
        time.perf_counter() - start,
        workers=solver.workers,
        seed=solver.seed,
        time_limit_s=solver.time_limit_s,
        hint_objective_s=makespan_s(hint, spec) if hint is not None else None,
        options_considered=sum(len(o) for o in options),
    )
    return choice, report


def _model(
    options: list[list[Option]], spec: ClusterSpec, hint: list[Option] | None
) -> tuple[cp_model.CpModel, list[list[Any]]]:
    """The device-level model: one Boolean per table and option, minimising the slowest device's time."""
    n, cap, link = spec.devices, spec.device.main.capacity_bytes, spec.link
    m = cp_model.CpModel()
    # Variables: x[i][k] is 1 when table i takes its option k.
    x = [[m.new_bool_var(f"x{i}_{k}") for k in range(len(opts))] for i, opts in enumerate(options)]
    # Every table takes exactly one option.
    for xs in x:
        m.add_exactly_one(xs)
    latency = round(link.latency_s * SCALE) if n > 1 else 0
    loads = []
    for d in range(n):
        load, mem = _device_terms(x, options, spec, d)
        # A device's shards fit its memory (stated only where they could exceed it: else it cannot bind, and a
        # huge capacity may not fit int64).
        if sum(b for _, b in mem) > cap:
            m.add(sum(v * b for v, b in mem) <= cap)
        loads.append(load)
    _check_model_size(loads, [_mem_total(options, d) for d in range(n)], cap)
    # The makespan is at least every device's compute and sending, plus one link latency.
    span = m.new_int_var(0, max(sum(w for _, w in load) for load in loads) + latency, "makespan")
    for load in loads:
        m.add(span >= sum(v * w for v, w in load) + latency)
    m.minimize(span)
    # The greedy table-wise placement seeds the search.
    if hint is not None:
        for xs, opts, o in zip(x, options, hint, strict=True):
            for var, candidate in zip(xs, opts, strict=True):
                m.add_hint(var, candidate is o)
    return m, x


def _device_terms(
    x: list[list[Any]], options: list[list[Option]], spec: ClusterSpec, device: int
) -> tuple[list[tuple[Any, int]], list[tuple[Any, int]]]:
    """(variable, ns of compute and sending) and (variable, bytes) of every option that puts work on `device`."""
    link = spec.link
    load, mem = [], []
    for xs, opts in zip(x, options, strict=True):
        for var, o in zip(xs, opts, strict=True):
            if device in o.ranks:
                j = o.ranks.index(device)
                seconds = o.compute_s[j] / spec.device.cores + o.send_bytes[j] / link.bandwidth_bytes_per_s
                load.append((var, round(seconds * SCALE)))
                mem.append((var, o.bytes_per_rank[j]))
    return load, mem


def _no_placement(tables: list[TableSpec], spec: ClusterSpec, status: str) -> InfeasibleError:
    n, cap = spec.devices, spec.device.main.capacity_bytes
    total = sum(t.bytes for t in tables)
    largest = max(tables, key=lambda t: t.bytes)
    return InfeasibleError(
        "workload.tables",
        f"no way to place them on {spec.name} found ({status}): they need {fmt_bytes(total)} (largest "
        f"{largest.name}: {fmt_bytes(largest.bytes)}), the {n} devices' {spec.device.main.name} hold "
        f"{n} x {fmt_bytes(cap)}, and the allowed shardings do not pack them",
        f"use --devices {n + 1} or more, --row-cap {largest_fitting_cap(tables, cap)} or less (then all "
        "tables fit one device), or a smaller dtype",
    )


def _mem_total(options: list[list[Option]], device: int) -> int:
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
