"""The device level's lower bound, gap and solver, checked against every placement of small instances.

The placements are enumerated and priced here, from the rule the device level documents (a device's load is
the sum over its parts of compute / cores + sending / bandwidth, each in whole `TIME_UNIT_S` units, plus the
link's latency once if any of its parts sends; its parts' bytes within its memory), not from its model.
"""

from __future__ import annotations

import itertools
import random

import pytest

from embmap.ir.cluster import ClusterSpec, Sharding
from embmap.ir.plan import relative_gap
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.mapper import SolverSettings
from embmap.mapper.compiler import prepare_workload
from embmap.mapper.profiles import default_profile
from embmap.mapper.torchrec.cluster import cluster, table_options
from embmap.passes.solver.device_level import (
    DeviceProblem,
    Option,
    device_classes,
    greedy_seeds,
    lower_bound_units,
    place,
    relabel,
    usable_options,
)
from embmap.passes.solver.problem import TIME_UNIT_S, to_units

FAST = SolverSettings(time_limit_s=2.0, workers=1, seed=0)
MiB = 1 << 20


def price(choice: tuple[Option, ...], spec: ClusterSpec) -> int | None:
    """The makespan of a placement in units, or None where some device's memory overflows."""
    n, cores, link = spec.devices, spec.device.cores, spec.link
    load, sending, held = [0] * n, [False] * n, [0] * n
    for o in choice:
        for r, c, s, b in zip(o.ranks, o.compute_s, o.send_bytes, o.bytes_per_rank, strict=True):
            load[r] += to_units(c / cores + s / link.bandwidth_bytes_per_s)
            sending[r] = sending[r] or s > 0
            held[r] += b
    if max(held) > spec.device.main.capacity_bytes:
        return None
    return max(u + to_units(link.latency_s) * s for u, s in zip(load, sending, strict=True))


def placements(options: list[list[Option]], spec: ClusterSpec) -> dict[tuple[int, ...], int | None]:
    """Every placement (one option index per table) with its makespan (None: does not fit)."""
    return {
        picks: price(tuple(opts[k] for opts, k in zip(options, picks, strict=True)), spec)
        for picks in itertools.product(*(range(len(opts)) for opts in options))
    }


def random_instance(seed: int) -> tuple[list[TableSpec], list[list[Option]], ClusterSpec]:
    """A few tables on 2 or 3 devices with every sharding type: equal or unequal row blocks, some tables without
    a row-wise or column-wise option, memory that binds in some instances and not in others."""
    rng = random.Random(seed)
    n, tables = rng.choice([(2, 4), (3, 3), (2, 3), (3, 4)])
    table_bytes = [rng.randint(10, 100) * MiB for _ in range(tables)]
    spec = cluster("ascend910", n, memory_bytes=int(sum(table_bytes) * rng.choice([0.45, 0.7, 1.2, 5.0])))
    options = []
    for b in table_bytes:
        whole_s, out = rng.uniform(2e-5, 4e-4), rng.randint(1, 200_000)
        opts = [Option(Sharding.TABLE_WISE, (d,), (whole_s,), (out,), (b,), ((0, 1),), ((0, 1),)) for d in range(n)]
        if rng.random() < 0.8:
            equal = rng.random() < 0.5  # then devices that hold no whole table are alike (symmetry breaking)
            shares = [1.0 if equal else rng.uniform(0.5, 1.0) for _ in range(n)]
            opts.append(spread(Sharding.ROW_WISE, [whole_s * x / sum(shares) * 1.3 for x in shares], out, b, n))
        if rng.random() < 0.6:
            opts.append(spread(Sharding.COLUMN_WISE, [whole_s / n * 1.1] * n, out // n, b // n, n))
        opts.append(spread(Sharding.DATA_PARALLEL, [whole_s / n * 1.05] * n, 0, b, n, per_rank_bytes=b))
        options.append(opts)
    names = [TableSpec(name=f"t{i}", rows=1000, dim=16) for i in range(tables)]
    return names, options, spec


def spread(
    kind: Sharding, compute_s: list[float], out: int, b: int, n: int, per_rank_bytes: int | None = None
) -> Option:
    share = per_rank_bytes if per_rank_bytes is not None else b // n
    return Option(kind, tuple(range(n)), tuple(compute_s), (out,) * n, (share,) * n, ((0, 1),) * n, ((0, 1),) * n)


def simple_bounds(options: list[list[Option]], spec: ClusterSpec) -> int:
    """The work over devices and the largest piece, from this file's pricing: what any real bound reaches."""
    problem = DeviceProblem.of(options, spec)
    lat = problem.latency_units
    menus = [[p for p in menu if max(p.bytes) <= problem.capacity_bytes] for menu in problem.menus]
    work = -(-sum(min(p.work for p in menu) for menu in menus) // spec.devices)
    piece = max(min(max(u + lat * s for u, s in zip(p.units, p.sends, strict=True)) for p in menu) for menu in menus)
    return max(work, piece)


INSTANCES = range(40)


@pytest.mark.parametrize("seed", INSTANCES)
def test_the_bound_is_below_every_placement_and_cp_sat_finds_the_best(seed: int) -> None:
    tables, options, spec = random_instance(seed)
    priced = placements(options, spec)
    feasible = [m for m in priced.values() if m is not None]
    if not feasible:
        pytest.skip("no placement fits")
    best = min(feasible)
    problem = DeviceProblem.of(options, spec)
    # The device level prices every placement as this file does.
    assert all(problem.makespan(picks) == m for picks, m in priced.items() if m is not None)
    bound = lower_bound_units(problem)
    assert simple_bounds(options, spec) <= bound <= best
    choice, report = place(tables, options, spec, "cp-sat", FAST)
    assert report.status == "OPTIMAL"
    assert report.objective_s == pytest.approx(best * TIME_UNIT_S, rel=1e-12)
    assert price(tuple(choice), spec) == best
    assert report.best_bound_s == report.objective_s and report.gap == 0.0


@pytest.mark.parametrize("seed", INSTANCES)
def test_without_the_solver_the_gap_is_to_the_bound(seed: int) -> None:
    """The seed alone (a size limit of 0 booleans), reported NOT_SOLVED with the bound and its gap; OPTIMAL
    where the bound proves it so."""
    tables, options, spec = random_instance(seed)
    feasible = [m for m in placements(options, spec).values() if m is not None]
    seeds = greedy_seeds(DeviceProblem.of(options, spec))
    if not feasible or not seeds:
        pytest.skip("no placement fits, or the greedy placements find none")
    choice, report = place(tables, options, spec, "cp-sat", FAST, max_booleans=0)
    objective = price(tuple(choice), spec)
    assert objective is not None
    assert report.status == ("OPTIMAL" if report.best_bound_s == report.objective_s else "NOT_SOLVED")
    assert report.objective_s == pytest.approx(objective * TIME_UNIT_S, rel=1e-12)
    assert report.best_bound_s == pytest.approx(lower_bound_units(DeviceProblem.of(options, spec)) * TIME_UNIT_S)
    assert 0 < report.best_bound_s <= min(feasible) * TIME_UNIT_S * (1 + 1e-12)
    assert report.gap == pytest.approx((report.objective_s - report.best_bound_s) / report.objective_s, abs=1e-15)


def test_the_table_wise_greedy_placement_reports_its_gap_to_the_bound() -> None:
    tables, options, spec = random_instance(3)
    choice, report = place(tables, options, spec, "table-wise-greedy", FAST)
    assert {o.sharding for o in choice} == {Sharding.TABLE_WISE}
    assert report.status == "NOT_SOLVED" and report.best_bound_s > 0
    assert report.gap == relative_gap(report.objective_s, report.best_bound_s) > 0


def test_relabelling_within_classes_keeps_the_makespan_and_orders_the_loads() -> None:
    """The symmetry breaking is sound: devices that every option treats alike can be renumbered by load."""
    for seed in INSTANCES:
        _, options, spec = random_instance(seed)
        problem = DeviceProblem.of(options, spec)
        usable = usable_options(problem, 10**12)
        classes = device_classes(problem, usable)
        for picks in itertools.islice(itertools.product(*(range(len(o)) for o in options)), 200):
            new = relabel(problem, picks, classes)
            loads = problem.loads(new)
            assert sorted(loads) == sorted(problem.loads(picks))
            assert all(loads[a] >= loads[b] for cls in classes for a, b in itertools.pairwise(cls))


def test_the_bound_on_the_cost_models_options_holds_against_every_placement() -> None:
    """Three tables of the cost model's options on three devices of 60 MiB: memory binds (no two replicas of
    the big table fit beside the others), the bound is below every placement and CP-SAT finds the best."""
    w = WorkloadSpec(
        name="w",
        batch_size=256,
        tables=(
            TableSpec(name="big", rows=300_000, dim=32, pooling=6),
            TableSpec(name="mid", rows=60_000, dim=64, pooling=3),
            TableSpec(name="small", rows=4_000, dim=16, pooling=2),
        ),
    )
    spec = cluster("ascend910", 3, memory_bytes=60 * MiB)
    prepared = prepare_workload(w).effective()
    options = table_options(prepared, spec, default_profile(spec.device), {})
    feasible = [m for m in placements(options, spec).values() if m is not None]
    problem = DeviceProblem.of(options, spec)
    assert 0 < lower_bound_units(problem) <= min(feasible)
    _, report = place(list(prepared.tables), options, spec, "cp-sat", FAST)
    assert report.objective_s == pytest.approx(min(feasible) * TIME_UNIT_S) and report.gap == 0.0
