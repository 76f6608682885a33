"""The checkers grow with their input, not with its square: the plan verifier in a table's items, the fit in
its measurements. Asserted by memory (tracemalloc's peak, which numpy's arrays count in) for n and 4n,
never by time: a square law gives 16 times the peak, a near-linear one at most about 4."""

from __future__ import annotations

import dataclasses
import gc
import itertools
import random
import tracemalloc
from collections.abc import Callable

import pytest

from embmap.cost_models.calibrate import fit_profile
from embmap.cost_models.measurements import Measurement
from embmap.cost_models.presets import preset_profile
from embmap.ir.plan import CoreSchedule, CostBreakdown, Strategy, WorkItem
from embmap.ir.spec import TableSpec, TargetSpec, Uniform
from embmap.ir.targets import cpu
from embmap.ir.verify import item_violations, schedule_violations
from tests.conftest import tiny_target

GROWTH = 6.0  # peak(4n) / peak(n) below this: near-linear (a pairwise check gives about 16)


def peak_bytes(work: Callable[[], object]) -> int:
    gc.collect()  # no earlier test's garbage freed inside the measured run
    tracemalloc.start()
    try:
        work()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def one_table(n: int, cut: str) -> tuple[TableSpec, TargetSpec, int, list[WorkItem], list[CoreSchedule]]:
    """A table of n items, each on its own core: one sample each (cut by samples) or one row each (by rows)."""
    rows, batch = (8, n) if cut == "samples" else (n, 8)
    table = TableSpec(name="t", rows=rows, dim=4)
    items = [
        WorkItem(
            id=i,
            table="t",
            output="write" if cut == "samples" else "accumulate",
            strategy=Strategy.GM,
            rows=(0, rows) if cut == "samples" else (i, i + 1),
            samples=(i, i + 1) if cut == "samples" else (0, batch),
            core=i,
            cost=CostBreakdown(fixed_s=1e-6),
        )
        for i in range(n)
    ]
    schedules = [CoreSchedule(core=i, items=(i,), start_s=(0.0,), finish_s=(1e-6,)) for i in range(n)]
    return table, tiny_target(cores=n), batch, items, schedules


@pytest.mark.parametrize("cut", ["samples", "rows"])
def test_the_verifier_is_near_linear_in_a_tables_items(cut: str) -> None:
    """A table of 1,000 and of 4,000 items: comparing every pair of items took 16 times the memory (a
    20,000-item table 1 GB, a 350,000-item plan 114 GiB)."""
    peaks = []
    for n in (1000, 4000):
        table, target, batch, items, schedules = one_table(n, cut)
        assert item_violations([table], target, batch, items) == []
        assert schedule_violations(target, items, schedules) == []
        peaks.append(peak_bytes(lambda: item_violations([table], target, batch, items)))  # noqa: B023
    assert peaks[1] < GROWTH * peaks[0], f"peak {peaks[0]} B for 1,000 items, {peaks[1]} B for 4,000"


def test_the_verifier_still_finds_two_items_on_one_cell_among_thousands() -> None:
    table, target, batch, items, _ = one_table(4000, "samples")
    last = items[-1].model_copy(update={"samples": (batch - 2, batch)})  # also serves its neighbour's sample
    wrong = item_violations([table], target, batch, [*items[:-1], last])
    assert "table t: two items serve the same (row, sample) lookups" in wrong


def measurements(n: int) -> list[Measurement]:
    """n measurements of small tables alone on a core, their times from a made-up linear law with noise."""
    rng = random.Random(n)
    shapes = itertools.cycle(itertools.product((64, 256, 1024), (16, 64), (1, 4), (Strategy.GM, Strategy.L1)))
    out = []
    for i, (rows, dim, pooling, strategy) in zip(range(n), shapes, strict=False):
        table = TableSpec(name=f"t{i}", rows=rows, dim=dim, pooling=pooling, distribution=Uniform())
        batch = 64 * (1 + i % 5)
        seconds = (1e-6 + 2e-9 * batch * pooling + 1e-12 * rows * dim) * rng.uniform(0.95, 1.05)
        out.append(Measurement(strategy, table, batch, (0, rows), (0, batch), seconds, plan=f"p{i}", core=0))
    return out


def test_the_fit_is_near_linear_in_its_measurements() -> None:
    """400 and 1,600 measurements, one (cache fraction, window) so that the search tries one linear fit: a
    singular value decomposition that also built the points x points matrix took 16 times the memory (and
    its time grew with the square: 2,096 measurements did not finish in ten minutes)."""
    target = cpu()
    base = preset_profile(target)
    fixed = {"cache_effective_fraction": 1.0, "main_window_rows": 1.0}
    peaks = []
    for n in (400, 1600):
        ms = [dataclasses.replace(m, core=None) for m in measurements(n)]
        # The cost model's memo caches are process-wide: filled here first, so that the measured run neither
        # adds entries nor resizes a cache that earlier tests left half full (that gave 6.5 times, not 4).
        fit_profile(ms, target, base, command="c", fixed=fixed)
        peaks.append(peak_bytes(lambda: fit_profile(ms, target, base, command="c", fixed=fixed)))  # noqa: B023
    assert peaks[1] < GROWTH * peaks[0], f"peak {peaks[0]} B for 400 measurements, {peaks[1]} B for 1,600"


def guillotine(rng: random.Random, box: tuple[int, int, int, int], depth: int) -> list[tuple[int, int, int, int]]:
    """A random tiling of `box` (r0, r1, s0, s1) by cuts across rows or samples."""
    r0, r1, s0, s1 = box
    if depth == 0 or rng.random() < 0.3 or (r1 - r0 < 2 and s1 - s0 < 2):
        return [box]
    if r1 - r0 >= 2 and (s1 - s0 < 2 or rng.random() < 0.5):
        cut = rng.randint(r0 + 1, r1 - 1)
        halves = [(r0, cut, s0, s1), (cut, r1, s0, s1)]
    else:
        cut = rng.randint(s0 + 1, s1 - 1)
        halves = [(r0, r1, s0, cut), (r0, r1, cut, s1)]
    return [piece for half in halves for piece in guillotine(rng, half, depth - 1)]


def rectangles(rng: random.Random, rows: int, batch: int) -> list[tuple[int, int, int, int]]:
    """A tiling of rows x samples (whole, cut one way or both), or one with a piece dropped, copied or moved."""
    kind = rng.choice(["both", "rows", "samples"])
    if kind == "rows":
        cuts = sorted({0, rows, *rng.sample(range(1, rows), rng.randint(0, rows - 1))})
        rects = [(a, b, 0, batch) for a, b in itertools.pairwise(cuts)]
    elif kind == "samples":
        cuts = sorted({0, batch, *rng.sample(range(1, batch), rng.randint(0, batch - 1))})
        rects = [(0, rows, a, b) for a, b in itertools.pairwise(cuts)]
    else:
        rects = guillotine(rng, (0, rows, 0, batch), 4)
    change = rng.choice(["none", "drop", "copy", "move"])
    i = rng.randrange(len(rects))
    if change == "drop" and len(rects) > 1:
        del rects[i]
    elif change == "copy":
        rects.append(rects[i])
    elif change == "move":
        r0, r1, s0, s1 = rects[i]
        dr, ds = rng.randint(-r0, rows - r1), rng.randint(-s0, batch - s1)
        rects[i] = (r0 + dr, r1 + dr, s0 + ds, s1 + ds)
    return rects


@pytest.mark.parametrize("seed", range(300))
def test_the_verifier_agrees_with_counting_every_cell(seed: int) -> None:
    """Small tables cut at random, checked against a count of the items serving each (row, sample) cell: no
    tiling complaint exactly where every cell is served once; "two items serve the same" only where two do
    (and always, for a table cut one way)."""
    rng = random.Random(seed)
    rows, batch = rng.randint(1, 6), rng.randint(1, 6)
    rects = rectangles(rng, rows, batch)
    counts = [[0] * batch for _ in range(rows)]
    for r0, r1, s0, s1 in rects:
        for r, s in itertools.product(range(r0, r1), range(s0, s1)):
            counts[r][s] += 1
    cells = [c for line in counts for c in line]
    items = [
        WorkItem(id=i, table="t", output="accumulate", strategy=Strategy.GM, rows=(r0, r1), samples=(s0, s1), core=i,
                 cost=CostBreakdown(fixed_s=1e-6))
        for i, (r0, r1, s0, s1) in enumerate(rects)
    ]  # fmt: skip
    wrong = item_violations([TableSpec(name="t", rows=rows, dim=4)], tiny_target(cores=len(rects)), batch, items)
    overlap = "table t: two items serve the same (row, sample) lookups" in wrong
    tiling = overlap or any(v.startswith("table t: items cover") for v in wrong)
    one_way = all(r[:2] == (0, rows) for r in rects) or all(r[2:] == (0, batch) for r in rects)
    assert tiling == (cells != [1] * len(cells)), (rects, wrong)
    assert not overlap or max(cells) > 1, (rects, wrong)
    assert overlap or max(cells) < 2 or not one_way, (rects, wrong)


@pytest.mark.parametrize("seed", range(50))
def test_the_cycle_check_agrees_with_a_graph_library(seed: int) -> None:
    """The schedule check's cycle finder (flat arrays, not a graph library's objects) against networkx on
    random graphs: sparse ones, dense ones, with self-loops and repeated edges."""
    import networkx as nx

    from embmap.ir.verify import _has_cycle

    rng = random.Random(seed)
    nodes = rng.sample(range(100), rng.randint(1, 12))
    pairs = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(rng.randint(0, 3 * len(nodes)))]
    if rng.random() < 0.5:  # keep only forward edges of a random order: acyclic
        rank = {n: k for k, n in enumerate(rng.sample(nodes, len(nodes)))}
        pairs = [(a, b) for a, b in pairs if rank[a] < rank[b]]
    graph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(pairs)
    edges = ([a for a, _ in pairs], [b for _, b in pairs])
    assert _has_cycle(nodes, edges) == (not nx.is_directed_acyclic_graph(graph)), pairs
