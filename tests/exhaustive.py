"""An exhaustive reference for plans and their bounds, written from the plan format (docs/plan-format.md and
`ir.verify`), independent of the compiler's menus, bounds and solver.

A plan serves each table with one strategy, cut by samples (every part all rows) or by rows (every part the
whole batch) into k parts, 1 <= k <= min(cores, samples or rows), of any positive sizes (equal cuts and every
uneven one), each part on its own core; preloaded strategies (L1, L1-UB) hold their rows in the local buffer of
the part's core, within its capacity summed over all tables. A part costs
`item_cost(ItemShape(strategy, rows, samples), table, Module.part_profile(table, k), target, profile)`, which
depends on the sizes of its ranges only; a busy core takes the sum of its parts plus the profile's
`core_start_s`, and the makespan is the largest core time.

`optimum` finds the least makespan over all such plans: per table, the per-core loads (seconds and local bytes)
of each of its configurations (strategy, mode, cut, cores), those another beats on every core dropped; then a
depth-first search over the tables, largest first, pruned by an upper bound (the compiler's plan, re-priced
here) and by lower bounds (work over cores, the least largest part on the least loaded core), with cores of
equal state interchangeable. `check` compares a compiled plan with it. Only the `profile` pass is borrowed from
the compiler: the per-table facts the cost model reads.
"""

from __future__ import annotations

import itertools
import json
import math
import random
import sys
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

import embmap
from embmap.cost_models import preset_profile
from embmap.cost_models.analytic import ItemShape, item_cost
from embmap.ir.cost_profile import CostProfile
from embmap.ir.lowering import lower
from embmap.ir.module import Module
from embmap.ir.plan import CostBreakdown, ExecutionPlan, PartitionMode, Strategy, WorkItem
from embmap.ir.spec import (
    DType,
    HotSet,
    MemorySpec,
    TableSpec,
    TargetSpec,
    TLBSpec,
    Uniform,
    WorkloadSpec,
    Zipf,
)
from embmap.ir.verify import item_violations, plan_violations
from embmap.mapper import compile as compile_plan
from embmap.passes.base import PassContext
from embmap.passes.profile import ProfilePass

REL = 1e-9  # relative tolerance of the comparisons with the optimum
NS = 1e-9  # "to the nanosecond"
CALIBRATED_CPU = Path(__file__).resolve().parents[1] / "cost_models" / "profiles" / "cpu.json"
KiB = 1024


# Instances ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Instance:
    """A workload, a target and a cost profile (`base` profile with `overrides`), from `seed` if random."""

    workload: WorkloadSpec
    target: TargetSpec
    base: str = "preset"  # "preset": preset_profile(target); "cpu-calibrated": cost_models/profiles/cpu.json
    overrides: dict[str, float] = field(default_factory=dict)
    seed: int | None = None

    @cached_property
    def profile(self) -> CostProfile:
        if self.base == "cpu-calibrated":
            base = CostProfile.model_validate_json(CALIBRATED_CPU.read_text())
        else:
            base = preset_profile(self.target)
        return CostProfile.model_validate({**base.model_dump(), **self.overrides})

    def to_json(self) -> str:
        """One line that `Instance.from_json` reads back: what a regression test pastes."""
        return json.dumps(
            {
                "seed": self.seed,
                "workload": _compact(self.workload.model_dump(mode="json")),
                "target": _compact(self.target.model_dump(mode="json")),
                "base": self.base,
                "overrides": self.overrides,
            },
            separators=(",", ":"),
        )

    @staticmethod
    def from_json(text: str) -> Instance:
        doc = json.loads(text)
        return Instance(
            workload=WorkloadSpec.model_validate(doc["workload"]),
            target=TargetSpec.model_validate(doc["target"]),
            base=doc.get("base", "preset"),
            overrides=doc.get("overrides", {}),
            seed=doc.get("seed"),
        )


def _compact(value: object) -> object:
    """A JSON value without its empty fields (None, "", [], {}), which every spec field defaults to."""
    if isinstance(value, dict):
        return {k: _compact(v) for k, v in value.items() if v not in (None, "", [], {})}
    if isinstance(value, list):
        return [_compact(v) for v in value]
    return value


def random_instance(
    seed: int, max_tables: int = 5, max_cores: int = 3, max_batch: int = 8, max_rows: int = 12
) -> Instance:
    """A small random instance: up to 5 tables of up to 12 rows, up to 3 cores, a batch of up to 8; an NPU-like
    target (local buffer and scratchpad, ascend910's memories) or a CPU-like one (local memory a cache, a TLB),
    whose local buffer holds from half the largest table to twice all of them (so that preloading is sometimes
    a real choice), a small scratchpad (streamed tables take several chunks), and, one time in four, memories
    made faster or slower; the preset profile, the calibrated CPU profile, or a few parameters changed."""
    rng = random.Random(seed)
    tables = tuple(_random_table(rng, f"t{i}", max_rows) for i in range(rng.randint(1, max_tables)))
    workload = WorkloadSpec(name=f"exhaustive-{seed}", batch_size=rng.randint(1, max_batch), tables=tables)
    cpu_like = rng.random() < 0.4
    target = _random_target(rng, rng.randint(1, max_cores), cpu_like, workload.effective().tables)
    base = "cpu-calibrated" if cpu_like and rng.random() < 0.3 else "preset"
    overrides: dict[str, float] = {}
    if rng.random() < 0.3:
        overrides["core_start_s"] = rng.choice([0.0, 0.2e-6, 3e-6])
    if rng.random() < 0.25:
        overrides["item_fixed_s"] = rng.choice([0.0, 0.1e-6, 5e-6])
    if rng.random() < 0.25:
        overrides.update(
            bag_s=rng.uniform(0, 2e-9), main_bag_s=rng.uniform(0, 5e-9), shard_setup_s=rng.uniform(0, 2e-6)
        )
    if rng.random() < 0.2:
        overrides.update(main_window_rows=rng.choice([1.0, 2.0, 3.5]), cache_effective_fraction=rng.uniform(0.3, 1.0))
    return Instance(workload=workload, target=target, base=base, overrides=overrides, seed=seed)


def _random_table(rng: random.Random, name: str, max_rows: int) -> TableSpec:
    rows = rng.randint(1, max_rows)
    kind = rng.random()
    if kind < 0.4:
        dist: Uniform | Zipf | HotSet = Uniform()
    elif kind < 0.8:
        dist = Zipf(alpha=round(rng.uniform(0.3, 2.0), 2))
    else:
        dist = HotSet(hot_rows=rng.randint(1, rows), hot_mass=round(rng.uniform(0.3, 0.95), 2))
    return TableSpec(
        name=name,
        rows=rows,
        dim=rng.choice([1, 4, 8, 16, 32, 64, 256]),
        dtype=rng.choice(list(DType)),
        pooling=rng.choice([1, 1, 2, 3, 8]),
        distribution=dist,
    )


def _random_target(rng: random.Random, cores: int, cpu_like: bool, tables: Sequence[TableSpec]) -> TargetSpec:
    largest, total = max(t.bytes for t in tables), sum(t.bytes for t in tables)
    local = max(1, rng.choice([largest // 2, largest, largest + total // 3, total // max(1, cores), total, 2 * total]))
    scratch = rng.choice([64, 256, 1 * KiB, 16 * KiB])
    scale = (lambda: rng.choice([0.1, 0.5, 2.0, 10.0])) if rng.random() < 0.25 else (lambda: 1.0)
    cache_bytes = rng.choice([None, max(1, total // 4), max(1, total // 2), 4 * total + 64 * KiB])
    if cpu_like:
        return TargetSpec(
            name="cpu",
            cores=cores,
            local=MemorySpec(
                name="L2", capacity_bytes=local, bandwidth_bytes_per_s=64e9 * scale(), latency_s=4e-9 * scale()
            ),
            scratch=MemorySpec(name="L1d", capacity_bytes=scratch, bandwidth_bytes_per_s=128e9, latency_s=1.2e-9),
            shared_cache=None
            if cache_bytes is None
            else MemorySpec(
                name="L3", capacity_bytes=cache_bytes, bandwidth_bytes_per_s=32e9 * cores, latency_s=15e-9 * scale()
            ),
            main=MemorySpec(
                name="DRAM", capacity_bytes=1 << 34, bandwidth_bytes_per_s=20e9 * scale(), latency_s=90e-9 * scale()
            ),
            tlb=TLBSpec(entries=rng.choice([1, 2, 8, 64]), page_bytes=rng.choice([64, 256, 4 * KiB])),
            local_is_cache=True,
        )
    return TargetSpec(
        name="ascend910",
        cores=cores,
        local=MemorySpec(
            name="L1", capacity_bytes=local, bandwidth_bytes_per_s=128e9 * scale(), latency_s=60e-9 * scale()
        ),
        scratch=MemorySpec(name="UB", capacity_bytes=scratch, bandwidth_bytes_per_s=256e9 * scale(), latency_s=5e-9),
        shared_cache=None
        if cache_bytes is None
        else MemorySpec(
            name="L2", capacity_bytes=cache_bytes, bandwidth_bytes_per_s=2.4e12, latency_s=250e-9 * scale()
        ),
        main=MemorySpec(
            name="HBM", capacity_bytes=1 << 34, bandwidth_bytes_per_s=1.2e12 * scale(), latency_s=600e-9 * scale()
        ),
    )


# Pricing --------------------------------------------------------------------------------------------------


class Pricer:
    """Items priced by the project's cost model, with each table's profile as the `profile` pass computes it."""

    def __init__(self, workload: WorkloadSpec, target: TargetSpec, profile: CostProfile) -> None:
        self.module: Module = ProfilePass().apply(lower(workload, target, profile), PassContext())
        self.workload = self.module.workload  # effective: row cap applied, distributions explicit
        self.target = target
        self.profile = profile
        self._cache: dict[tuple[str, Strategy, int, int, int], CostBreakdown] = {}

    @staticmethod
    def of(instance: Instance) -> Pricer:
        return Pricer(instance.workload, instance.target, instance.profile)

    @property
    def start_s(self) -> float:
        return self.profile.core_start_s

    def cost(self, table: str, strategy: Strategy, rows: int, samples: int, parts: int) -> CostBreakdown:
        """One of `parts` parts of `table` reading `rows` of its rows for `samples` samples."""
        key = (table, strategy, rows, samples, parts)
        if key not in self._cache:
            t = self.module.table(table)
            shape = ItemShape(strategy, (0, rows), (0, samples))
            stats = self.module.part_profile(table, parts)
            self._cache[key] = item_cost(shape, t, stats, self.target, self.profile)
        return self._cache[key]

    def item_cost(self, it: WorkItem, parts: int) -> CostBreakdown:
        return self.cost(it.table, it.strategy, it.rows[1] - it.rows[0], it.samples[1] - it.samples[0], parts)

    def makespan_s(self, items: Sequence[WorkItem]) -> float:
        """The makespan of `items` re-priced here: per busy core, its items' costs plus the start-up."""
        parts: dict[str, int] = defaultdict(int)
        for it in items:
            parts[it.table] += 1
        busy: dict[int, float] = defaultdict(float)
        for it in items:
            busy[it.core] += self.item_cost(it, parts[it.table]).total_s
        return max(busy.values(), default=-self.start_s) + self.start_s


# A table's configurations ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TableChoice:
    """One way to serve a table: a strategy, a mode, the sizes of its consecutive parts and each part's core."""

    table: str
    strategy: Strategy
    mode: PartitionMode
    sizes: tuple[int, ...]
    cores: tuple[int, ...]

    def describe(self) -> str:
        return f"{self.table}: {self.strategy.value}/{self.mode.value} sizes {list(self.sizes)} on cores {list(self.cores)}"


def compositions(n: int, k: int) -> Iterator[tuple[int, ...]]:
    """Every way to write n as an ordered sum of k positive integers."""
    for cuts in itertools.combinations(range(1, n), k - 1):
        bounds = (0, *cuts, n)
        yield tuple(b - a for a, b in itertools.pairwise(bounds))


def is_equal_cut(sizes: tuple[int, ...]) -> bool:
    return max(sizes) - min(sizes) <= 1


@dataclass
class Config:
    """A configuration's per-core loads: seconds and local bytes (0 where it has no part)."""

    times: tuple[float, ...]
    held: tuple[int, ...]
    choice: TableChoice

    @cached_property
    def work(self) -> float:
        return sum(self.times)

    @cached_property
    def largest(self) -> float:
        return max(self.times)


def table_configs(pricer: Pricer, t: TableSpec, equal_only: bool = False, prune: bool = True) -> list[Config]:
    """Every configuration of table `t` that fits the local buffer part by part, less (with `prune`) those
    another beats on every core in both seconds and bytes (any plan with it does as well with the other)."""
    cores, batch, cap = pricer.target.cores, pricer.workload.batch_size, pricer.target.local.capacity_bytes
    found: dict[tuple[tuple[float, ...], tuple[int, ...]], Config] = {}
    for strategy in Strategy:
        for mode in PartitionMode:
            n = batch if mode is PartitionMode.SAMPLES else t.rows
            for k in range(1 if mode is PartitionMode.SAMPLES else 2, min(cores, n) + 1):
                for sizes in compositions(n, k):
                    if equal_only and not is_equal_cut(sizes):
                        continue
                    rows = [t.rows if mode is PartitionMode.SAMPLES else s for s in sizes]
                    held = [r * t.row_bytes if strategy.preloaded else 0 for r in rows]
                    if max(held) > cap:
                        continue
                    samples = [s if mode is PartitionMode.SAMPLES else batch for s in sizes]
                    secs = [pricer.cost(t.name, strategy, r, s, k).total_s for r, s in zip(rows, samples, strict=True)]
                    for on in itertools.combinations(range(cores), k):
                        times, used = [0.0] * cores, [0] * cores
                        for c, s, b in zip(on, secs, held, strict=True):
                            times[c], used[c] = s, b
                        key = (tuple(times), tuple(used))
                        if key not in found:
                            found[key] = Config(key[0], key[1], TableChoice(t.name, strategy, mode, sizes, on))
    return _undominated(list(found.values())) if prune else list(found.values())


def _undominated(configs: list[Config]) -> list[Config]:
    if len(configs) <= 1:
        return configs
    v = np.array([[*c.times, *c.held] for c in configs], dtype=np.float64)
    le = (v[:, None, :] <= v[None, :, :]).all(axis=2)  # le[i, j]: i is at most j everywhere
    np.fill_diagonal(le, False)
    beaten = (le & ~le.T).any(axis=0)  # some i strictly better than j somewhere, no worse anywhere
    return [c for c, b in zip(configs, beaten, strict=True) if not b]


# The search -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Optimum:
    makespan_s: float  # start-up included
    choices: tuple[TableChoice, ...]  # in workload order
    configs: int  # configurations searched over (after pruning), all tables together
    nodes: int  # search nodes visited

    def describe(self) -> str:
        return "; ".join(c.describe() for c in self.choices)


class _Search:
    def __init__(self, per_table: list[list[Config]], cores: int, cap: int, best: float) -> None:
        self.order = sorted(range(len(per_table)), key=lambda i: -min(c.largest for c in per_table[i]))
        self.tables = [sorted(per_table[i], key=lambda c: (c.largest, c.work)) for i in self.order]
        self.cores, self.cap, self.best = cores, cap, best
        # What the tables from position p on need at least: work, and the largest part of the costliest one.
        self.rest_work = [sum(min(c.work for c in tab) for tab in self.tables[p:]) for p in range(len(self.tables) + 1)]
        self.rest_part = [
            max((min(c.largest for c in tab) for tab in self.tables[p:]), default=0.0)
            for p in range(len(self.tables) + 1)
        ]
        self.loads, self.used = [0.0] * cores, [0] * cores
        self.path: list[Config] = []
        self.found: list[Config] | None = None
        self.nodes = 0

    def run(self) -> None:
        self._visit(0, 0.0)

    def _visit(self, p: int, total: float) -> None:
        self.nodes += 1
        if p == len(self.tables):
            top = max(self.loads)
            if top < self.best:
                self.best, self.found = top, list(self.path)
            return
        seen: set[tuple[object, ...]] | None = set() if self._symmetric() else None
        for cfg in self.tables[p]:
            if cfg.largest >= self.best:
                break  # sorted by largest part: so are all that follow
            loads = [a + b for a, b in zip(self.loads, cfg.times, strict=True)]
            if max(loads) >= self.best or (total + cfg.work + self.rest_work[p + 1]) / self.cores >= self.best:
                continue
            if min(loads) + self.rest_part[p + 1] >= self.best:
                continue
            if any(u + h > self.cap for u, h in zip(self.used, cfg.held, strict=True)):
                continue
            if seen is not None:
                key = self._canonical(cfg)
                if key in seen:
                    continue
                seen.add(key)
            saved = self.loads, self.used
            self.loads, self.used = loads, [u + h for u, h in zip(self.used, cfg.held, strict=True)]
            self.path.append(cfg)
            self._visit(p + 1, total + cfg.work)
            self.path.pop()
            self.loads, self.used = saved

    def _symmetric(self) -> bool:
        states = list(zip(self.loads, self.used, strict=True))
        return len(set(states)) < len(states)

    def _canonical(self, cfg: Config) -> tuple[object, ...]:
        """The configuration up to permutations of cores in equal states (which make equivalent plans)."""
        groups: dict[tuple[float, int], list[int]] = defaultdict(list)
        for c in range(self.cores):
            groups[(self.loads[c], self.used[c])].append(c)
        return tuple(
            (state, tuple(sorted((cfg.times[c], cfg.held[c]) for c in on))) for state, on in sorted(groups.items())
        )


def optimum(pricer: Pricer, upper_s: float | None = None, equal_only: bool = False, naive: bool = False) -> Optimum:
    """The least makespan over every plan (with `equal_only`, over plans whose cuts differ by at most one), and
    a plan that has it. `upper_s`, a makespan some plan reaches (start-up included), prunes the search; it is
    only a hint: if no plan is found under it, the search runs again without it. `naive`: no pruning of
    configurations by dominance (for testing the pruning)."""
    tables = pricer.workload.tables
    per_table = [table_configs(pricer, t, equal_only, prune=not naive) for t in tables]
    start = pricer.start_s
    for bound in ([upper_s - start] if upper_s is not None else []) + [math.inf]:
        search = _Search(per_table, pricer.target.cores, pricer.target.local.capacity_bytes, bound * (1 + 1e-9) + 1e-15)
        search.run()
        if search.found is not None:
            by_table = {c.choice.table: c.choice for c in search.found}
            return Optimum(
                makespan_s=search.best + start,
                choices=tuple(by_table[t.name] for t in tables),
                configs=sum(map(len, per_table)),
                nodes=search.nodes,
            )
    raise AssertionError("no plan fits the local buffers, yet GM holds nothing: the enumeration is wrong")


# Plans from choices ---------------------------------------------------------------------------------------


def items_of(pricer: Pricer, choices: Sequence[TableChoice]) -> tuple[WorkItem, ...]:
    """The work items of `choices`, as a plan holds them: consecutive ranges in the given sizes, each part on
    its core, priced by the cost model."""
    batch = pricer.workload.batch_size
    items: list[WorkItem] = []
    for ch in choices:
        t = pricer.module.table(ch.table)
        lo = 0
        rows_mode = ch.mode is PartitionMode.ROWS
        for size, core in zip(ch.sizes, ch.cores, strict=True):
            rows, samples = ((lo, lo + size), (0, batch)) if rows_mode else ((0, t.rows), (lo, lo + size))
            lo += size
            items.append(
                WorkItem(
                    id=len(items),
                    table=t.name,
                    output="accumulate" if rows_mode and len(ch.sizes) > 1 else "write",
                    strategy=ch.strategy,
                    rows=rows,
                    samples=samples,
                    core=core,
                    local_bytes=(rows[1] - rows[0]) * t.row_bytes if ch.strategy.preloaded else 0,
                    cost=pricer.cost(t.name, ch.strategy, rows[1] - rows[0], samples[1] - samples[0], len(ch.sizes)),
                )
            )
    return tuple(items)


def choice_violations(pricer: Pricer, choices: Sequence[TableChoice]) -> list[str]:
    """What the verifier says of the items of `choices` (nothing, for any plan `optimum` returns)."""
    return item_violations(pricer.workload.tables, pricer.target, pricer.workload.batch_size, items_of(pricer, choices))


# Checking a compiled plan ---------------------------------------------------------------------------------


KINDS = {
    "bound": "(a) lower_bound_s above the optimum",
    "best-bound": "(a) solver.best_bound_s above the optimum",
    "optimal": "(b) status OPTIMAL, makespan above the optimum",
    "gap": "(c) plan further from the optimum than its gap",
    "invalid": "(d) plan does not verify",
    "pricing": "(d) makespan_s differs from its items re-priced by the cost model",
    "objective": "(d) solver.objective_s differs from makespan_s",
    "below-optimum": "plan faster than the enumerated optimum",
}


@dataclass(frozen=True)
class Failure:
    kind: str  # a key of KINDS
    excess: float  # by how much, relative (to the optimum; to the makespan for pricing, objective and gap)
    excess_s: float  # by how much, in seconds
    message: str


def check(plan: ExecutionPlan, opt: Optimum, pricer: Pricer) -> list[Failure]:
    """Every way `plan` contradicts the exhaustive optimum `opt` of its instance: (a) a bound above it, (b)
    OPTIMAL above it, (c) further from it than the gap says, (d) a plan that does not verify, is priced
    otherwise than by the cost model, or whose solver objective is not its makespan."""
    out: list[Failure] = []
    best, s, witness = opt.makespan_s, plan.solver, opt.describe()
    for kind, name, value in (
        ("bound", "lower_bound_s", plan.lower_bound_s),
        ("best-bound", "solver.best_bound_s", s.best_bound_s),
    ):
        if value > best * (1 + REL):
            over = (value - best) / best
            text = (
                f"{name} {_us(value)} exceeds the optimum {_us(best)} by {over:.2%} (a plan that reaches it: {witness})"
            )
            out.append(Failure(kind, over, value - best, text))
    above = plan.makespan_s - best
    if above < -REL * best:
        text = f"makespan_s {_us(plan.makespan_s)} is below the enumerated optimum {_us(best)}: outside the space, or priced otherwise"
        out.append(Failure("below-optimum", -above / best, -above, text))
    if s.status == "OPTIMAL" and above > REL * best:
        text = f"status OPTIMAL with makespan_s {_us(plan.makespan_s)}, {above / best:.2%} over the optimum {_us(best)} ({witness})"
        out.append(Failure("optimal", above / best, above, text))
    if plan.makespan_s > 0 and above / plan.makespan_s > s.gap + REL:
        true_gap = above / plan.makespan_s
        text = f"reported gap {s.gap:.4%}, but the plan is {true_gap:.4%} from the optimum {_us(best)} ({witness})"
        out.append(Failure("gap", true_gap - s.gap, above, text))
    return out + _plan_failures(plan, pricer)


def _plan_failures(plan: ExecutionPlan, pricer: Pricer) -> list[Failure]:
    """(d): the plan verifies, its makespan is its items' re-priced makespan and the solver's objective is it."""
    out: list[Failure] = []
    wrong = plan_violations(plan) + _mode_violations(plan)
    if wrong:
        out.append(Failure("invalid", math.inf, math.inf, "the plan does not verify: " + "; ".join(wrong)))
    repriced = pricer.makespan_s(plan.work_items())
    diff = plan.makespan_s - repriced
    if abs(diff) > NS:
        text = f"makespan_s {_us(plan.makespan_s)}, its items re-priced by the cost model {_us(repriced)}: {_mispriced(plan, pricer)}"
        out.append(Failure("pricing", abs(diff) / repriced, abs(diff), text))
    diff = plan.solver.objective_s - plan.makespan_s
    if abs(diff) > NS:
        text = f"solver.objective_s {_us(plan.solver.objective_s)} differs from makespan_s {_us(plan.makespan_s)} by {diff * 1e9:+.3f} ns"
        out.append(Failure("objective", abs(diff) / plan.makespan_s, abs(diff), text))
    return out


def _mode_violations(plan: ExecutionPlan) -> list[str]:
    """One mode per table, as its `tables` entry says: every item all rows (samples) or the whole batch (rows)."""
    out = []
    for t in plan.tables:
        items = [it for it in plan.items if it.table == t.name]
        if t.mode is PartitionMode.SAMPLES and any(it.rows != (0, t.rows) for it in items):
            out.append(f"table {t.name}: mode samples, but an item does not cover all rows")
        if t.mode is PartitionMode.ROWS and any(it.samples != (0, plan.workload.batch_size) for it in items):
            out.append(f"table {t.name}: mode rows, but an item does not cover the whole batch")
    return out


def _mispriced(plan: ExecutionPlan, pricer: Pricer) -> str:
    parts: dict[str, int] = defaultdict(int)
    for it in plan.items:
        parts[it.table] += 1
    wrong = [
        f"item {it.id} ({it.table} {it.strategy.value} rows {list(it.rows)} samples {list(it.samples)}, {parts[it.table]} parts) "
        f"costs {_us(it.cost.total_s)} in the plan, {_us(pricer.item_cost(it, parts[it.table]).total_s)} re-priced"
        for it in plan.work_items()
        if abs(it.cost.total_s - pricer.item_cost(it, parts[it.table]).total_s) > 1e-15
    ]
    return "; ".join(wrong[:3]) or "every item is priced right: the schedule or start-up differs"


def _us(seconds: float) -> str:
    return f"{seconds * 1e6:.6f} us"


# Running instances ----------------------------------------------------------------------------------------


def settings(time_limit_s: float = 1.0) -> embmap.SolverSettings:
    return embmap.SolverSettings(time_limit_s=time_limit_s, workers=1, seed=0)


@dataclass(frozen=True)
class Outcome:
    instance: Instance
    plan: ExecutionPlan | None
    optimum: Optimum
    failures: tuple[Failure, ...]
    compile_s: float
    search_s: float


def run_instance(instance: Instance, pipeline: str = "embmap") -> Outcome:
    """Compile `instance` (no baselines, one worker, seed 0) and check the plan against the exhaustive optimum."""
    t0 = time.perf_counter()
    try:
        plan: ExecutionPlan | None = compile_plan(
            instance.workload,
            instance.target,
            pipeline,
            cost_profile=instance.profile,
            baselines=False,
            solver=settings(),
        )
    except Exception as e:  # noqa: BLE001 - a compile error is a finding like any other
        plan, error = None, f"{type(e).__name__}: {e}"
    t1 = time.perf_counter()
    pricer = Pricer.of(instance)
    upper = pricer.makespan_s(plan.work_items()) if plan is not None else None
    opt = optimum(pricer, upper_s=upper)
    t2 = time.perf_counter()
    if plan is None:
        failures: tuple[Failure, ...] = (Failure("invalid", math.inf, math.inf, f"the compile failed: {error}"),)
    else:
        failures = tuple(check(plan, opt, pricer))
    return Outcome(instance, plan, opt, failures, t1 - t0, t2 - t1)


def rounding_only(f: Failure, o: Outcome) -> bool:
    """Within what CP-SAT's whole nanoseconds explain: each item rounded up to 1 ns (`passes/solver/problem.py`)."""
    items = len(o.plan.items) if o.plan is not None else 0
    return f.kind in ("bound", "best-bound", "objective", "optimal", "gap") and f.excess_s <= items * NS


def summarize(outcomes: Sequence[Outcome], kinds: Sequence[str] = tuple(KINDS), shown: int = 3) -> str:
    """Per kind of failure: in how many instances, how many of those within nanosecond rounding, the worst
    (beyond rounding first, then by relative excess: seed, by how much, what) and the worst one's instance,
    ready to paste into a regression test (`Instance.from_json`)."""
    by_kind: dict[str, list[tuple[Failure, Outcome]]] = defaultdict(list)
    for o in outcomes:
        for f in o.failures:
            by_kind[f.kind].append((f, o))
    failing = sum(any(f.kind in kinds for f in o.failures) for o in outcomes)
    lines = [
        f"{failing} of {len(outcomes)} instances fail; compile {sum(o.compile_s for o in outcomes):.1f} s, "
        f"exhaustive search {sum(o.search_s for o in outcomes):.1f} s"
    ]
    for kind in kinds:
        found = sorted(by_kind.get(kind, []), key=lambda fo: (rounding_only(*fo), -fo[0].excess))
        if not found:
            continue
        rounding = sum(rounding_only(f, o) for f, o in found)
        worst = found[0][0]
        lines.append(
            f"- {KINDS[kind]}: {len(found)} instances, {len(found) - rounding} beyond the solver's rounding (1 ns per "
            f"item); worst {worst.excess:.3%} ({worst.excess_s * 1e9:.1f} ns); seeds "
            + ",".join(str(o.instance.seed) for _, o in found[:40])
            + (" ..." if len(found) > 40 else "")
        )
        lines += [f"    seed {o.instance.seed}: {f.message}" for f, o in found[:shown]]
        lines.append(f"    instance: {found[0][1].instance.to_json()}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tests.exhaustive FIRST LAST`: check seeds FIRST..LAST-1 and print the summary;
    `python -m tests.exhaustive --seed N`: one instance in full (its JSON, the plan, the optimum)."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] == "--seed":
        o = run_instance(random_instance(int(args[1])))
        print(o.instance.to_json())
        if o.plan is not None:
            p = o.plan
            print(
                f"plan {_us(p.makespan_s)}, lower_bound_s {_us(p.lower_bound_s)}, {p.solver.status}, objective {_us(p.solver.objective_s)}, best bound {_us(p.solver.best_bound_s)}, gap {p.solver.gap:.4%}"
            )
            for it in p.items:
                print(
                    f"  {it.table} {it.strategy.value} rows {list(it.rows)} samples {list(it.samples)} core {it.core}: {_us(it.cost.total_s)}"
                )
        print(f"optimum {_us(o.optimum.makespan_s)}: {o.optimum.describe()}")
        print("\n".join(f"{f.kind}: {f.message}" for f in o.failures) or "no failure")
        return 0
    first, last = (int(args[0]), int(args[1])) if len(args) == 2 else (0, 200)
    print(summarize([run_instance(random_instance(seed)) for seed in range(first, last)]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
