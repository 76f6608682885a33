"""The core-assignment problem in integers: every table picks one option of its menu, and the option's parts go
to distinct cores. A core's load is the sum of what it holds; the makespan is the largest load; preloaded parts
use local-buffer bytes on their core.

Costs are integers in `TIME_UNIT_S` units, shared by the greedy placement, the CP-SAT model, the configuration
LP and the exhaustive search in the tests, so that they compare exactly.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

from embmap.ir.errors import SpecError
from embmap.ir.module import Module, PartitionOption
from embmap.passes.solver.dff import choice_lower_bound, dff_lower_bound

TIME_UNIT_S = 1e-9  # the one integer scale used inside CP-SAT: 1 unit = 1 ns
# CP-SAT refuses a model whose linear sums could overflow 64-bit integers; every sum the model forms (of
# times in units, of local bytes) must stay below this. 2**60 ns is 36 years of work per batch.
MAX_MODEL_SUM = 2**60


def to_units(seconds: float) -> int:
    if not math.isfinite(seconds):
        raise SpecError(
            "cost", f"a work item's predicted time is {seconds}", "check the target's bandwidths and the cost profile"
        )
    return max(0, math.ceil(seconds / TIME_UNIT_S - 1e-6))


@dataclass(frozen=True)
class OptionData:
    parts: int
    part_units: int  # the largest part's cost: the model treats all parts of an option alike
    part_bytes: int  # local-buffer bytes of the largest part (0 unless preloaded)

    @property
    def work_units(self) -> int:
        return self.parts * self.part_units


@dataclass(frozen=True)
class AssignmentProblem:
    tables: tuple[str, ...]
    options: tuple[tuple[OptionData, ...], ...]  # per table
    cores: int
    capacity_bytes: int
    rows: tuple[int, ...] = ()  # per table, where known: lets an infeasibility error suggest a row cap

    @staticmethod
    def from_module(module: Module) -> AssignmentProblem:
        assert module.options is not None
        return AssignmentProblem(
            tables=tuple(m.table for m in module.options),
            options=tuple(tuple(option_data(o) for o in m.options) for m in module.options),
            cores=module.target.cores,
            capacity_bytes=module.target.local.capacity_bytes,
            rows=tuple(t.rows for t in module.workload.tables),
        )

    # The bounds are asked for by the pass, the greedy portfolio (once per re-placement) and the solver:
    # computed once per problem.
    @functools.cached_property
    def work_bound(self) -> int:
        """`choice_lower_bound` of the problem, in units."""
        menus = [[(o.part_units, o.work_units) for o in opts] for opts in self.options]
        return math.ceil(choice_lower_bound(menus, self.cores) - 1e-9)

    @functools.cached_property
    def lower_bound(self) -> int:
        """The work bound raised by the dual feasible functions, with the local buffers priced (`dff`)."""
        sizes = [[(o.parts, o.part_units) for o in opts] for opts in self.options]
        held = [[o.parts * o.part_bytes for o in opts] for opts in self.options]
        return dff_lower_bound(sizes, self.cores, self.work_bound, held=held, capacity_bytes=self.capacity_bytes)[0]


def option_data(o: PartitionOption) -> OptionData:
    return OptionData(
        parts=o.parts,
        part_units=to_units(o.part_s),
        part_bytes=max(o.local_bytes_per_part),
    )


@dataclass(frozen=True)
class Choice:
    option: int
    cores: tuple[int, ...]  # one per part, distinct


@dataclass(frozen=True)
class Assignment:
    choices: tuple[Choice, ...]  # per table

    def loads(self, problem: AssignmentProblem) -> list[int]:
        loads = [0] * problem.cores
        for opts, ch in zip(problem.options, self.choices, strict=True):
            for c in ch.cores:
                loads[c] += opts[ch.option].part_units
        return loads

    def makespan(self, problem: AssignmentProblem) -> int:
        return max(self.loads(problem))

    def relabel_by_load(self, problem: AssignmentProblem) -> Assignment:
        """The same plan with cores renumbered so that loads decrease (cores are identical)."""
        loads = self.loads(problem)
        order = sorted(range(problem.cores), key=lambda c: (-loads[c], c))
        new = {old: i for i, old in enumerate(order)}
        return Assignment(tuple(Choice(ch.option, tuple(sorted(new[c] for c in ch.cores))) for ch in self.choices))


def check_model_size(problem: AssignmentProblem) -> None:
    """The integer model's sums fit CP-SAT's 64-bit arithmetic, else one line says which table's cost is out
    of scale (absurd bandwidths, batch sizes or pooling factors end here rather than in a solver crash)."""
    work = sum(o.work_units for opts in problem.options for o in opts)
    span = sum(max(o.work_units for o in opts) for opts in problem.options)
    held = held_bytes(problem)
    if held > problem.capacity_bytes and held >= MAX_MODEL_SUM:
        raise SpecError(
            "target.local.capacity_bytes",
            f"the preloaded options hold {held:.3g} bytes in all, beyond the {MAX_MODEL_SUM:.3g} the core "
            "assignment can sum",
            "give the local buffer its real size, or fewer and smaller tables",
        )
    if max(work, problem.cores * span) < MAX_MODEL_SUM:
        return
    t = max(range(len(problem.tables)), key=lambda t: max(o.work_units for o in problem.options[t]))
    worst = max(o.work_units for o in problem.options[t]) * TIME_UNIT_S
    raise SpecError(
        "workload",
        f"table {problem.tables[t]}'s costliest option takes {worst:.3g} s per batch and the options together "
        f"{work * TIME_UNIT_S:.3g} s, beyond the {MAX_MODEL_SUM * TIME_UNIT_S:.3g} s the core assignment can count "
        f"in {TIME_UNIT_S:g} s units",
        "check the target's bandwidths and latencies, and use a smaller batch size or pooling factor",
    )


def held_bytes(problem: AssignmentProblem) -> int:
    """Local bytes of every part of every option: what a core could hold at the very most."""
    return sum(o.part_bytes for opts in problem.options for o in opts)


def last_true(lo: int, hi: int, ok: Callable[[int], bool]) -> int:
    """The largest n in [lo, hi] with ok(n), for ok true up to some n and false after it; lo if none is."""
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid - 1
    return lo
