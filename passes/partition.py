"""`partition`: each table's menu of options, the choices the core assignment picks from: replicate or split
its samples over k cores, or shard its rows over k cores, for each candidate strategy, with per-part costs
and local-buffer bytes; options no plan needs are pruned (`solver.options.pareto_front`)."""

from __future__ import annotations

import dataclasses
import enum

from embmap.cost_models.table_facts import table_profiles
from embmap.ir.errors import InfeasibleError
from embmap.ir.lowering import lower
from embmap.ir.module import Module, TableOptions
from embmap.ir.plan import PartitionMode, Strategy
from embmap.ir.printer import fmt_bytes
from embmap.ir.spec import TableSpec
from embmap.passes.base import ModulePass, PassContext, register
from embmap.passes.solver.cpsat import cpsat_boolean_limit
from embmap.passes.solver.errors import Menu, greedy_places, largest_packing_cap
from embmap.passes.solver.greedy import round_robin
from embmap.passes.solver.options import OptionShape, option_shape, pareto_front
from embmap.passes.solver.problem import AssignmentProblem, to_units

# Every part count from 1 to the cores is offered where the menus' shapes number at most this (each costs two
# calls of the cost model: about half a second) and the CP-SAT model they make stays within its size rule
# (`cpsat_boolean_limit`); else the sparse counts of `part_counts`. The plan's bound covers every count either
# way (`solver.space`), and the plan says which menu it was chosen from (`Module.part_counts`).
MAX_EVERY_COUNT_SHAPES = 50_000


class PartitionPolicy(enum.StrEnum):
    ENUMERATE = "enumerate"  # every useful (strategy, mode, parts); dominated options pruned
    SPLIT_ALL = "split-all"  # the batch split evenly over every core (what a default compiler does)
    WHOLE = "whole"  # one part per table: table-wise placement


@register
@dataclasses.dataclass(frozen=True)
class PartitionPass(ModulePass):
    """Build each table's menu of partition options: replicate or split its samples over k cores, or shard its
    rows over k cores, for each candidate strategy, with per-part costs and local-buffer bytes."""

    name = "partition"
    summary = "menu of (strategy, replicate/split samples/shard rows, parts) per table, dominated options pruned"
    requires = ("table_profiles", "candidates")
    ensures = ("options",)
    policy: PartitionPolicy = PartitionPolicy.ENUMERATE
    max_parts: int = 0  # 0: up to the number of cores
    prune: bool = True

    def __post_init__(self) -> None:
        if self.max_parts < 0:
            raise ValueError("max-parts must be >= 0 (0 means: up to the number of cores)")

    def apply(self, module: Module, ctx: PassContext) -> Module:
        assert module.candidates is not None
        cores = module.target.cores
        limit = min(cores, self.max_parts) if self.max_parts else cores
        every = self.policy is PartitionPolicy.ENUMERATE
        every = every and sum(2 * limit * len(c.candidates) for c in module.candidates) <= MAX_EVERY_COUNT_SHAPES
        shapes = self._shapes(module, limit, every)
        if every:
            menus = self._menus(shapes)
            if cores * sum(len(m.options) for m in menus) <= cpsat_boolean_limit(ctx.solver.time_limit_s):
                return module.model_copy(update={"options": menus, "part_counts": "every"})
            # The sparse counts are a subset of every count: the same shapes, fewer of them.
            shapes = [
                [s for s in table if s.parts in self._sparse(module, t, s)]
                for t, table in zip(module.workload.tables, shapes, strict=True)
            ]
        menus = self._menus(shapes)
        if self.policy is not PartitionPolicy.ENUMERATE:
            counts = self.policy.value
        else:
            counts = "every" if limit <= 8 else "sparse"
        return module.model_copy(update={"options": menus, "part_counts": counts})

    def _shapes(self, module: Module, limit: int, every: bool) -> list[list[OptionShape]]:
        """Per table, the shapes `_enumerate` offers that fit the local buffer (an error where none does)."""
        assert module.candidates is not None
        out = []
        cap = module.target.local.capacity_bytes
        for t, cands in zip(module.workload.tables, module.candidates, strict=True):
            strategies = [c.strategy for c in cands.candidates]
            shapes = [s for s in self._enumerate(module, t, strategies, limit, every) if s.part_bytes <= cap]
            if not shapes:
                raise self._no_option(module, t, strategies, limit)
            out.append(shapes)
        return out

    def _sparse(self, module: Module, t: TableSpec, shape: OptionShape) -> set[int]:
        """The part counts the sparse menu offers `t` in `shape`'s strategy and mode (as `_enumerate` does)."""
        cores = module.target.cores
        limit = min(cores, self.max_parts) if self.max_parts else cores
        if shape.mode is PartitionMode.SAMPLES:
            return set(part_counts(min(limit, module.workload.batch_size)))
        counts = set(part_counts(min(limit, t.rows)))
        if shape.strategy.preloaded and t.bytes > module.target.local.capacity_bytes:
            counts.add(-(-t.bytes // module.target.local.capacity_bytes))
        return counts

    def _menus(self, shapes: list[list[OptionShape]]) -> tuple[TableOptions, ...]:
        """Each table's menu of its shapes, those no other needs pruned (before the options are built: most are
        dominated, and some have hundreds of parts)."""
        menus = []
        for table in shapes:
            if self.prune:
                table = pareto_front(table, key=lambda s: (s.parts, to_units(s.part_s), s.part_bytes))
            menus.append(TableOptions(table=table[0].table, options=tuple(s.build() for s in table)))
        return tuple(menus)

    def _no_option(self, module: Module, t: TableSpec, strategies: list[Strategy], limit: int) -> InfeasibleError:
        """Only preloaded strategies are allowed and no part of the table fits one core's local buffer: the
        numbers, and each fix that would work (a shared strategy, more parts, a row cap, a bigger buffer)."""
        local = module.target.local
        cap = local.capacity_bytes
        rows_per_core = cap // t.row_bytes
        sharded = self.policy is PartitionPolicy.ENUMERATE
        shards = -(-t.bytes // cap)  # the fewest row shards that each fit
        if sharded:
            holds = f"{limit} row shards on {limit} cores hold {fmt_bytes(limit * cap)}"
        else:
            holds = f"policy {self.policy.value} keeps the whole table in each part"
        fixes = [
            f"allow a shared-memory strategy for it (select-strategy{{strategies=GM:GM-UB:{':'.join(strategies)}}})"
        ]
        if sharded and shards <= module.target.cores and limit < shards:
            fixes.append(f"allow {shards} parts (partition{{max-parts={shards}}})")
        row_cap = self._fitting_row_cap(module, limit)
        if row_cap:
            fixes.append(f"--row-cap {row_cap} or less")
        fixes.append(f"a target whose {local.name} holds {fmt_bytes(-(-t.bytes // (limit if sharded else 1)))} or more")
        return InfeasibleError(
            f"table {t.name}",
            f"no option fits: strategies {', '.join(s.value for s in strategies)} preload it, it needs "
            f"{fmt_bytes(t.bytes)} ({t.rows} rows x {t.row_bytes} B) and one core's {local.name} holds "
            f"{fmt_bytes(cap)} ({rows_per_core} rows); {holds}",
            ", ".join(fixes[:-1]) + ", or " + fixes[-1],
        )

    def _fitting_row_cap(self, module: Module, limit: int) -> int:
        """About the largest row cap with which this compile gets through this pass and the core assignment.
        The cap applies to every table, and the tables that must be preloaded (all their strategies preloaded)
        share the local buffers: from the largest cap under which their options pack onto the cores together
        (`largest_packing_cap`), down to one under which the passes, rerun on the capped tables, find a
        placement (`_places_under_cap`). 0 where no cap does."""
        assert module.candidates is not None
        held = [
            t
            for t, cands in zip(module.workload.tables, module.candidates, strict=True)
            if all(c.strategy.preloaded for c in cands.candidates)
        ]

        def menus_under(row_cap: int) -> list[Menu]:
            return [self._bytes_menu(module, t.model_copy(update={"rows": min(t.rows, row_cap)}), limit) for t in held]

        return largest_packing_cap(
            menus_under,
            max(t.rows for t in held),
            module.target.cores,
            module.target.local.capacity_bytes,
            lambda row_cap: self._places_under_cap(module, row_cap),
        )

    def _places_under_cap(self, module: Module, row_cap: int) -> bool:
        """Whether a compile with `--row-cap row_cap` gets through this pass and the core assignment: the
        workload lowered with the cap (as the compiler does), profiled by the `profile` pass, partitioned by
        this one and placed by the greedy placement, which CP-SAT starts from (for whole tables, by round-robin
        too)."""
        capped = lower(module.workload.model_copy(update={"row_cap": row_cap}), module.target, module.cost_profile)
        ctx = PassContext()
        capped = capped.model_copy(update={"table_profiles": table_profiles(capped), "candidates": module.candidates})
        try:
            problem = AssignmentProblem.from_module(self.apply(capped, ctx))
            if self.policy is PartitionPolicy.WHOLE:
                round_robin(problem)  # the placement a table-wise pipeline uses; raises where it finds no room
        except InfeasibleError:
            return False
        return greedy_places(problem)

    def _bytes_menu(self, module: Module, t: TableSpec, limit: int) -> Menu:
        """The (parts, local bytes per part) of the options a preloaded table may have, uncosted: its fewest
        replicas of the whole table and every row sharding `_enumerate` may offer (every part count, the
        widest of its menus), those that fit the local buffer."""
        local = module.target.local.capacity_bytes
        if self.policy is PartitionPolicy.SPLIT_ALL:
            menu = [(min(limit, module.workload.batch_size), t.bytes)]
        elif self.policy is PartitionPolicy.WHOLE:
            menu = [(1, t.bytes)]
        else:
            menu = [(k, -(-t.rows // k) * t.row_bytes) for k in range(1, min(limit, t.rows) + 1)]
        return [(k, b) for k, b in menu if b <= local]

    def _enumerate(
        self, module: Module, t: TableSpec, strategies: list[Strategy], limit: int, every: bool = False
    ) -> list[OptionShape]:
        batch = module.workload.batch_size
        if self.policy is PartitionPolicy.SPLIT_ALL:
            shapes = [(s, PartitionMode.SAMPLES, min(limit, batch)) for s in strategies]
        elif self.policy is PartitionPolicy.WHOLE:
            shapes = [(s, PartitionMode.SAMPLES, 1) for s in strategies]
        else:
            local = module.target.local.capacity_bytes
            counts = (lambda n: list(range(1, n + 1))) if every else part_counts
            shapes = []
            for s in strategies:
                shapes += [(s, PartitionMode.SAMPLES, k) for k in counts(min(limit, batch))]
                rows_k = set(counts(min(limit, t.rows)))
                if s.preloaded and t.bytes > local:
                    rows_k.add(-(-t.bytes // local))  # the fewest shards that fit the local buffer
                shapes += [(s, PartitionMode.ROWS, k) for k in sorted(rows_k) if 1 < k <= min(limit, t.rows)]
        return [option_shape(module, t, s, mode, k) for s, mode, k in shapes]


def part_counts(limit: int) -> list[int]:
    """Candidate numbers of parts: every count up to 8, then powers of two, and the limit itself."""
    counts = {k for k in range(1, min(limit, 8) + 1)}
    k = 16
    while k < limit:
        counts.add(k)
        k *= 2
    counts.add(limit)
    return sorted(counts)
