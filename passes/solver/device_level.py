"""The device level of a plan across devices: for every table, one of TorchRec's sharding types and the devices
that hold it, chosen to minimise the slowest device's time within every device's memory.

`DeviceProblem` prices every table's options (`cluster.options_for`) in the core level's integer time unit
(`TIME_UNIT_S`): a device's load is the sum of its parts' compute (spread over its cores) and sending, plus one
link latency if it sends at all. `place` picks one option per
table: greedy seeds, then CP-SAT with the best seed as hint (up to `cpsat_boolean_limit` booleans, in
deterministic time), reported with `lower_bound_units` and its gap; or the table-wise greedy placement alone.
"""

from __future__ import annotations

import functools
import itertools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ortools.sat.python import cp_model

from embmap.ir.cluster import ClusterSpec, Sharding
from embmap.ir.errors import InfeasibleError, SpecError
from embmap.ir.lowering import largest_fitting_cap
from embmap.ir.plan import SolverReport
from embmap.ir.printer import fmt_bytes
from embmap.ir.spec import TableSpec
from embmap.passes.solver.cpsat import STATUS_NAMES, cpsat_boolean_limit, run_model
from embmap.passes.solver.dff import dff_lower_bound
from embmap.passes.solver.problem import MAX_MODEL_SUM, TIME_UNIT_S, to_units
from embmap.passes.solver.progress import ProgressEvent, ProgressListener
from embmap.passes.solver.settings import SolverSettings

Picks = tuple[int, ...]  # per table, the index of its option


@dataclass(frozen=True)
class Option:
    sharding: Sharding
    ranks: tuple[int, ...]
    compute_s: tuple[float, ...]  # per rank in `ranks`, on one core
    send_bytes: tuple[int, ...]
    bytes_per_rank: tuple[int, ...]
    rows: tuple[tuple[int, int], ...]
    columns: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class Priced:
    """One option in integer time units: per rank (in `ranks`), its compute on one device (spread over the
    device's cores) plus its sending, whether it sends at all, and its bytes."""

    ranks: tuple[int, ...]
    units: tuple[int, ...]
    sends: tuple[bool, ...]
    bytes: tuple[int, ...]

    @staticmethod
    def of(o: Option, spec: ClusterSpec) -> Priced:
        cores, bandwidth = spec.device.cores, spec.link.bandwidth_bytes_per_s
        return Priced(
            o.ranks,
            tuple(to_units(c / cores + s / bandwidth) for c, s in zip(o.compute_s, o.send_bytes, strict=True)),
            tuple(s > 0 for s in o.send_bytes),
            o.bytes_per_rank,
        )

    @property
    def work(self) -> int:
        return sum(self.units)

    def piece(self, latency: int) -> int:
        """The least load this option leaves on some device: its largest part, with the latency if it sends."""
        return max(u + latency * s for u, s in zip(self.units, self.sends, strict=True))


@dataclass(frozen=True)
class DeviceProblem:
    """Every table's options, priced; a device holds `capacity_bytes` and pays `latency_units` once if it sends."""

    devices: int
    capacity_bytes: int
    latency_units: int
    menus: tuple[tuple[Priced, ...], ...]  # per table, in the order of its options

    @staticmethod
    def of(options: Sequence[Sequence[Option]], spec: ClusterSpec) -> DeviceProblem:
        return DeviceProblem(
            spec.devices,
            spec.device.main.capacity_bytes,
            to_units(spec.link.latency_s),
            tuple(tuple(Priced.of(o, spec) for o in opts) for opts in options),
        )

    def fits(self, p: Priced) -> bool:
        """Whether the option fits empty devices (an option that does not can take part in no placement)."""
        return max(p.bytes) <= self.capacity_bytes

    def loads(self, picks: Picks) -> list[int]:
        """Per device: the units of the parts it holds, plus the latency if any of them sends. This is how the
        device level prices a placement; its makespan is the largest load."""
        loads, sending = [0] * self.devices, [False] * self.devices
        for menu, k in zip(self.menus, picks, strict=True):
            p = menu[k]
            for r, u, s in zip(p.ranks, p.units, p.sends, strict=True):
                loads[r] += u
                sending[r] = sending[r] or s
        return [load + self.latency_units * s for load, s in zip(loads, sending, strict=True)]

    def makespan(self, picks: Picks) -> int:
        return max(self.loads(picks))


def lower_bound_units(problem: DeviceProblem) -> int:
    """No placement of one option per table within every device's memory has a smaller makespan T. Options
    that overfill an empty device take part in none. A device holding an option's largest part, plus the
    latency if it sends (its piece), has at least that load, so at T every table takes an option whose piece is
    at most T; as a load is at least the sum of its parts, their parts pack into `devices` bins of size T: for
    any dual feasible function f the images f(part / T) sum to at most `devices` (f = identity: the work over
    devices), also priced against their bytes, which sum to at most `devices` x capacity (the core level's
    `passes.solver.dff.dff_lower_bound`; unequal row blocks count as cut to any sizes). Where some table has
    only options that send from every device, every device pays the latency: bins of T less the latency. The
    pieces cut T into intervals of constant options; the bound is the least T that survives in its interval
    (found by bisection: the tests grow weaker as T grows)."""
    lat = problem.latency_units
    menus = [[p for p in menu if problem.fits(p)] for menu in problem.menus]
    if not all(menus) or _overfilled(problem, menus) or not any(p.work for menu in menus for p in menu):
        return 0  # no placement at all (the placement says so), or nothing to do
    start = max(min(p.piece(lat) for p in menu) for menu in menus)
    cuts = sorted({p.piece(lat) for menu in menus for p in menu if p.piece(lat) >= start})
    lo, hi = 0, len(cuts) - 1
    while lo < hi:  # the first interval [cuts[j], cuts[j + 1]) that holds a T no test refutes
        mid = (lo + hi) // 2
        if _interval_bound(problem, menus, cuts[mid]) < cuts[mid + 1]:
            hi = mid
        else:
            lo = mid + 1
    return int(_interval_bound(problem, menus, cuts[lo]))


def _interval_bound(problem: DeviceProblem, menus: list[list[Priced]], at: int) -> float:
    """The least T >= `at` that the packing tests do not refute with the options whose piece is at most `at`
    (infinite where their leanest bytes overfill the devices)."""
    lat = problem.latency_units
    allowed = [[p for p in menu if p.piece(lat) <= at] for menu in menus]
    if _overfilled(problem, allowed):
        return math.inf
    bound = _packing_bound(problem, allowed, at)
    everywhere = [all(len(p.ranks) == problem.devices and all(p.sends) for p in menu) for menu in allowed]
    if lat and any(everywhere):  # every device sends: its parts fit T less the latency
        bound = max(bound, _packing_bound(problem, allowed, max(0, at - lat)) + lat)
    return bound


def _overfilled(problem: DeviceProblem, menus: list[list[Priced]]) -> bool:
    """Whether every choice of these options holds more bytes than all devices together."""
    return sum(min(sum(p.bytes) for p in menu) for menu in menus) > problem.devices * problem.capacity_bytes


@functools.lru_cache(maxsize=4096)
def _shapes(p: Priced) -> tuple[int, int, int, int]:
    """(parts, mean part, least part, bytes held) of an option, as `dff_lower_bound` counts it."""
    return len(p.units), p.work // len(p.units), min(p.units), sum(p.bytes)


def _packing_bound(problem: DeviceProblem, menus: list[list[Priced]], start: int) -> int:
    """`dff_lower_bound` of the options' parts and bytes on the devices, from `start`."""
    sizes, held, flexible = [], [], []
    for menu in menus:
        # One entry per distinct shape: the table-wise options differ only in their device.
        shapes = sorted({_shapes(p) for p in menu})
        sizes.append([(parts, mean) for parts, mean, _, _ in shapes])
        flexible.append([least if least < mean else None for _, mean, least, _ in shapes])
        held.append([b for *_, b in shapes])
    bound, _ = dff_lower_bound(
        sizes, problem.devices, start, held=held, capacity_bytes=problem.capacity_bytes, flexible=flexible
    )
    return bound


def check_model_size(problem: DeviceProblem) -> None:
    """The model's sums fit CP-SAT's 64-bit arithmetic (as `passes.solver.problem.check_model_size` for cores):
    else one line says what is out of scale."""
    work = sum(p.work for menu in problem.menus for p in menu) + problem.devices * problem.latency_units
    span = sum(max(p.piece(problem.latency_units) for p in menu) for menu in problem.menus)
    if max(work, problem.devices * span) >= MAX_MODEL_SUM:
        raise SpecError(
            "workload",
            f"the device-level options add up to {work * TIME_UNIT_S:.3g} s per batch, beyond the "
            f"{MAX_MODEL_SUM * TIME_UNIT_S:.3g} s the device assignment can count in {TIME_UNIT_S:g} s units",
            "check the target's and link's bandwidths, and use a smaller batch size or pooling factor",
        )
    on = [0] * problem.devices  # bytes every option would put on a device: what its memory constraint could sum
    for p in (p for menu in problem.menus for p in menu):
        for r, b in zip(p.ranks, p.bytes, strict=True):
            on[r] += b
    held = max(on)
    if held > problem.capacity_bytes and held >= MAX_MODEL_SUM:
        raise SpecError(
            "workload.tables",
            f"their shards add up to {held:.3g} bytes per device, beyond the {MAX_MODEL_SUM:.3g} the device "
            "assignment can sum",
            "cap rows (--row-cap) to sizes a device can hold",
        )


Key = Callable[["_Loads", Priced], tuple[int, ...] | None]  # a greedy's preference (least first), None: never


class _Loads:
    """Devices' loads, bytes and whether they send, as a greedy placement fills them."""

    def __init__(self, problem: DeviceProblem) -> None:
        self.problem = problem
        n = problem.devices
        self.units, self.held, self.sending = [0] * n, [0] * n, [False] * n
        self.peak = 0

    def fits(self, p: Priced) -> bool:
        cap = self.problem.capacity_bytes
        return all(self.held[r] + b <= cap for r, b in zip(p.ranks, p.bytes, strict=True))

    def peak_with(self, p: Priced) -> int:
        """The makespan once `p` is added."""
        lat = self.problem.latency_units
        return max(
            self.peak,
            *(
                self.units[r] + u + lat * (s or self.sending[r])
                for r, u, s in zip(p.ranks, p.units, p.sends, strict=True)
            ),
        )

    def add(self, p: Priced) -> None:
        self.peak = self.peak_with(p)
        for r, u, s, b in zip(p.ranks, p.units, p.sends, p.bytes, strict=True):
            self.units[r] += u
            self.held[r] += b
            self.sending[r] = self.sending[r] or s


def greedy_table_wise(problem: DeviceProblem) -> Picks | None:
    """Whole tables, largest first, each onto the device that finishes first with it and still has room (ties:
    the lowest device); None where some table does not fit (or has no table-wise option)."""
    order = sorted(range(len(problem.menus)), key=lambda i: -max((p.work for p in problem.menus[i]), default=0))
    return _greedy(problem, order, lambda loads, p: (loads.peak_with(p),) if len(p.ranks) == 1 else None)


def greedy_seeds(problem: DeviceProblem) -> list[Picks]:
    """The seeds of CP-SAT, fastest first: tables by decreasing least piece, each taking the option that leaves
    the least makespan; by decreasing bytes, each leaving the least full device (for memory); table-wise."""

    def fastest(loads: _Loads, p: Priced) -> tuple[int, int]:
        return loads.peak_with(p), p.work

    def leanest(loads: _Loads, p: Priced) -> tuple[int, int]:
        return max(loads.held[r] + b for r, b in zip(p.ranks, p.bytes, strict=True)), loads.peak_with(p)

    lat = problem.latency_units
    tables = range(len(problem.menus))
    by_piece = sorted(tables, key=lambda i: -min(p.piece(lat) for p in problem.menus[i]))
    by_bytes = sorted(tables, key=lambda i: -min(max(p.bytes) for p in problem.menus[i]))
    seeds = [_greedy(problem, by_piece, fastest), _greedy(problem, by_bytes, leanest), greedy_table_wise(problem)]
    found = [s for s in seeds if s is not None]
    return sorted(dict.fromkeys(found), key=problem.makespan)


def _greedy(problem: DeviceProblem, order: Sequence[int], key: Key) -> Picks | None:
    """Tables in `order`, each taking its option of least `key(loads, option)` (None: not a candidate) among
    those that fit (ties: the first option); None where some table finds none."""
    loads = _Loads(problem)
    picks = [0] * len(problem.menus)
    for i in order:
        scored = [(score, k) for k, p in enumerate(problem.menus[i]) if (score := key(loads, p)) is not None]
        fitting = [(score, k) for score, k in scored if loads.fits(problem.menus[i][k])]
        if not fitting:
            return None
        picks[i] = min(fitting)[1]
        loads.add(problem.menus[i][picks[i]])
    return tuple(picks)


def place(
    tables: list[TableSpec],
    options: list[list[Option]],
    spec: ClusterSpec,
    method: str,
    solver: SolverSettings,
    *,
    progress: ProgressListener | None = None,
    max_booleans: int | None = None,
) -> tuple[list[Option], SolverReport]:
    """One option per table, with the solver's report (objective, `lower_bound_units` and their gap).

    `method` "cp-sat": the fastest greedy seed, improved by CP-SAT where its model has at most `max_booleans`
    booleans (default `cpsat_boolean_limit(time limit)`, as at the core level), else the seed alone, reported
    NOT_SOLVED. "table-wise-greedy": the table-wise greedy placement alone (NOT_SOLVED: no solver ran)."""
    start = time.perf_counter()
    problem = DeviceProblem.of(options, spec)
    check_model_size(problem)
    lb = lower_bound_units(problem)
    if method == "table-wise-greedy":
        picks = greedy_table_wise(problem)
        if picks is None:
            raise _table_wise_error(tables, spec)
        return _chosen(options, picks), _report(method, "NOT_SOLVED", problem, picks, lb, start)
    seeds = greedy_seeds(problem)
    hint = seeds[0] if seeds else None
    if hint is not None and problem.makespan(hint) <= lb:  # the bound proves the seed optimal: nothing to search
        return _chosen(options, hint), _report(method, "OPTIMAL", problem, hint, lb, start)
    limit = cpsat_boolean_limit(solver.time_limit_s) if max_booleans is None else max_booleans
    if cpsat_booleans(problem, hint) > limit:
        if hint is None:
            raise _no_placement(tables, spec, "NOT_SOLVED")
        return _chosen(options, hint), _report(method, "NOT_SOLVED", problem, hint, lb, start)
    result = solve(problem, solver, hint, lb, progress)
    picks = result.picks
    if hint is not None and (picks is None or problem.makespan(picks) > problem.makespan(hint)):
        picks = hint  # no better placement in time: the greedy one stands
    if picks is None:
        raise _no_placement(tables, spec, result.status)
    report = _report(
        method,
        result.status,
        problem,
        picks,
        max(lb, result.bound_units),
        start,
        workers=solver.workers,
        seed=solver.seed,
        time_limit_s=solver.time_limit_s,
        hint_objective_s=None if hint is None else problem.makespan(hint) * TIME_UNIT_S,
        interrupted=result.interrupted,
    )
    if progress is not None:
        bound_s, interrupted = report.best_bound_s, result.interrupted
        progress(ProgressEvent("done", report.wall_s, report.objective_s, bound_s, result.status, interrupted))
    return _chosen(options, picks), report


def _chosen(options: list[list[Option]], picks: Picks) -> list[Option]:
    return [opts[k] for opts, k in zip(options, picks, strict=True)]


def _report(
    method: str, status: str, problem: DeviceProblem, picks: Picks, bound: int, start: float, **more: object
) -> SolverReport:
    """The report of a placement: its makespan, the bound (never above it) and the gap `SolverReport.of` computes."""
    objective = problem.makespan(picks)
    return SolverReport.of(
        method,
        status,  # type: ignore[arg-type]
        objective * TIME_UNIT_S,
        min(bound, objective) * TIME_UNIT_S,
        time.perf_counter() - start,
        options_considered=sum(len(menu) for menu in problem.menus),
        **more,
    )


@dataclass(frozen=True)
class DeviceSolve:
    """What the search found: its status, the placement (where one was found) and the bound it proved."""

    status: str
    picks: Picks | None
    bound_units: int
    wall_s: float
    interrupted: bool = False  # Ctrl-C stopped the search; the picks are the best found by then


X = dict[tuple[int, int], cp_model.IntVar]  # x[i, k]: table i takes its option k


def usable_options(problem: DeviceProblem, ub: int) -> list[list[int]]:
    """Per table, the options a placement with makespan <= ub can take: they fit an empty device and leave no
    piece above ub."""
    lat = problem.latency_units
    return [[k for k, p in enumerate(menu) if problem.fits(p) and p.piece(lat) <= ub] for menu in problem.menus]


def cpsat_booleans(problem: DeviceProblem, hint: Picks | None) -> int:
    """The model's booleans: one per usable option, and one per device for whether it sends."""
    return sum(len(ks) for ks in usable_options(problem, _upper(problem, hint))) + problem.devices


def _upper(problem: DeviceProblem, hint: Picks | None) -> int:
    """The hint's makespan, else one no placement exceeds (every table's largest piece on one device)."""
    if hint is not None:
        return problem.makespan(hint)
    return sum(max(p.piece(problem.latency_units) for p in menu) for menu in problem.menus)


def solve(
    problem: DeviceProblem,
    settings: SolverSettings,
    hint: Picks | None,
    lb: int,
    listener: ProgressListener | None = None,
) -> DeviceSolve:
    """The CP-SAT model of the device level, minimising the makespan in units; `lb` is a valid lower bound."""
    ub = _upper(problem, hint)
    # Variables: x[i, k] for the usable options (no placement as good as the hint takes another).
    usable = usable_options(problem, ub)
    model = cp_model.CpModel()
    x: X = {(i, k): model.new_bool_var(f"x_t{i}_o{k}") for i, ks in enumerate(usable) for k in ks}
    makespan = model.new_int_var(lb, max(lb, ub), "makespan")
    # Constraints.
    loads, sending = _constraints(model, problem, usable, x, makespan)
    _redundant_constraints(model, problem, x, makespan, list(sending.values()), lb)
    # Symmetry breaking (redundant for the optimum): within a class of devices that every usable option treats
    # alike, loads do not increase with the device index.
    classes = device_classes(problem, usable)
    for cls in classes:
        for a, b in itertools.pairwise(cls):
            model.add(loads[a] >= loads[b])
    # Objective.
    model.minimize(makespan)
    # Hint: the greedy placement, relabelled to respect the symmetry breaking.
    if hint is not None:
        _add_hint(model, problem, x, sending, makespan, relabel(problem, hint, classes))
    solver, status, interrupted, wall = run_model(model, settings, listener, lb, ub if hint else None)
    return _read_result(solver, status, usable, x, lb, wall, interrupted)


def _constraints(
    model: cp_model.CpModel, problem: DeviceProblem, usable: list[list[int]], x: X, makespan: cp_model.IntVar
) -> tuple[list[cp_model.LinearExprT], dict[int, cp_model.IntVar]]:
    """The rules of a placement; returns each device's load and, per device that may send, whether it does."""
    n, lat = problem.devices, problem.latency_units
    # Each table takes exactly one of its usable options.
    for i, ks in enumerate(usable):
        model.add_exactly_one([x[i, k] for k in ks])
    parts: list[list[tuple[cp_model.IntVar, Priced, int]]] = [[] for _ in range(n)]
    for (i, k), var in x.items():
        for j, r in enumerate(problem.menus[i][k].ranks):
            parts[r].append((var, problem.menus[i][k], j))
    # A device that holds a part that sends pays the link's latency once: sending[d] is 1 if any part on d sends.
    sending: dict[int, cp_model.IntVar] = {}
    for d in range(n):
        senders = [var for var, p, j in parts[d] if p.sends[j]]
        if lat and senders:
            sending[d] = model.new_bool_var(f"send_d{d}")
            for var in senders:
                model.add_implication(var, sending[d])
    # A device's load is its parts' units plus its latency; the makespan bounds every load.
    loads: list[cp_model.LinearExprT] = []
    for d in range(n):
        load = cp_model.LinearExpr.weighted_sum([var for var, _, _ in parts[d]], [p.units[j] for _, p, j in parts[d]])
        if d in sending:
            load += lat * sending[d]
        model.add(load <= makespan)
        loads.append(load)
    # A device's parts fit its memory (stated only where they could exceed it: else it cannot bind, and a huge
    # capacity may not fit int64).
    for d in range(n):
        if sum(p.bytes[j] for _, p, j in parts[d]) > problem.capacity_bytes:
            held = cp_model.LinearExpr.weighted_sum(
                [var for var, _, _ in parts[d]], [p.bytes[j] for _, p, j in parts[d]]
            )
            model.add(held <= problem.capacity_bytes)
    return loads, sending


def _redundant_constraints(
    model: cp_model.CpModel,
    problem: DeviceProblem,
    x: X,
    makespan: cp_model.IntVar,
    sending: list[cp_model.IntVar],
    lb: int,
) -> None:
    """Redundant (they tighten the bound): the makespan is at least the average load, and at least every chosen
    option's largest piece (stated where that exceeds `lb`)."""
    lat = problem.latency_units
    work = cp_model.LinearExpr.weighted_sum(list(x.values()), [problem.menus[i][k].work for i, k in x])
    model.add(problem.devices * makespan >= work + lat * sum(sending))
    for (i, k), var in x.items():
        piece = problem.menus[i][k].piece(lat)
        if piece > lb:
            model.add(makespan >= piece * var)


def device_classes(problem: DeviceProblem, usable: Sequence[Sequence[int]]) -> list[list[int]]:
    """Devices that every usable option treats alike (the same units, sending and bytes for the same part of the
    same option; table-wise options count as one per table), in classes of two or more: relabelling devices
    within a class maps placements to placements of the same loads, bytes and makespan."""
    signature: list[list[tuple[int, int, int, bool, int]]] = [[] for _ in range(problem.devices)]
    for i, ks in enumerate(usable):
        for k in ks:
            p = problem.menus[i][k]
            key = k if len(p.ranks) > 1 else -1
            for r, u, s, b in zip(p.ranks, p.units, p.sends, p.bytes, strict=True):
                signature[r].append((i, key, u, s, b))
    classes: dict[tuple[tuple[int, int, int, bool, int], ...], list[int]] = {}
    for d, sig in enumerate(signature):
        classes.setdefault(tuple(sorted(sig)), []).append(d)
    return [cls for cls in classes.values() if len(cls) > 1]


def relabel(problem: DeviceProblem, picks: Picks, classes: list[list[int]]) -> Picks:
    """The same placement with devices renumbered within each class so that loads do not increase with the index."""
    loads = problem.loads(picks)
    new = {d: d for d in range(problem.devices)}
    for cls in classes:
        for d, old in zip(cls, sorted(cls, key=lambda d: (-loads[d], d)), strict=True):
            new[old] = d
    whole = {
        (i, p.ranks[0]): k for i, menu in enumerate(problem.menus) for k, p in enumerate(menu) if len(p.ranks) == 1
    }
    return tuple(
        whole[i, new[menu[k].ranks[0]]] if len(menu[k].ranks) == 1 else k
        for i, (menu, k) in enumerate(zip(problem.menus, picks, strict=True))
    )


def _add_hint(
    model: cp_model.CpModel,
    problem: DeviceProblem,
    x: X,
    sending: dict[int, cp_model.IntVar],
    makespan: cp_model.IntVar,
    hint: Picks,
) -> None:
    for (i, k), var in x.items():
        model.add_hint(var, hint[i] == k)
    sends = {
        r
        for menu, k in zip(problem.menus, hint, strict=True)
        for r, s in zip(menu[k].ranks, menu[k].sends, strict=True)
        if s
    }
    for d, var in sending.items():
        model.add_hint(var, d in sends)
    model.add_hint(makespan, problem.makespan(hint))


def _read_result(
    solver: cp_model.CpSolver,
    status: cp_model.CpSolverStatus,
    usable: list[list[int]],
    x: X,
    lb: int,
    wall: float,
    interrupted: bool,
) -> DeviceSolve:
    """The status first, then the values (only where a solution exists)."""
    name = STATUS_NAMES.get(status, "UNKNOWN")
    found = status in (cp_model.OPTIMAL, cp_model.FEASIBLE)
    best = solver.best_objective_bound if found or status == cp_model.UNKNOWN else math.nan
    bound = max(lb, int(best)) if math.isfinite(best) else lb  # a bound on an integer objective: its floor holds
    picks = (
        tuple(next(k for k in ks if solver.boolean_value(x[i, k])) for i, ks in enumerate(usable)) if found else None
    )
    return DeviceSolve(name, picks, bound, wall, interrupted)


def _table_wise_error(tables: list[TableSpec], spec: ClusterSpec) -> InfeasibleError:
    cap, n = spec.device.main.capacity_bytes, spec.devices
    largest = max(tables, key=lambda t: t.bytes)
    return InfeasibleError(
        "workload.tables",
        f"the table-wise greedy placement (whole tables, largest first) does not fit {spec.name}: the "
        f"tables need {fmt_bytes(sum(t.bytes for t in tables))} (largest {largest.name}: "
        f"{fmt_bytes(largest.bytes)}), each of the {n} devices' {spec.device.main.name} holds {fmt_bytes(cap)}",
        f"use --device-method cp-sat (it may shard tables), --devices {n + 1} or more, or --row-cap "
        f"{largest_fitting_cap(tables, cap)} or less (then all tables fit one device)",
    )


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
