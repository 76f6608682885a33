"""The solver's settings: one frozen value, carried to every pass in the pass context (`passes.base`)."""

from __future__ import annotations

from dataclasses import dataclass

from embmap.ir.errors import SpecError

# CP-SAT's default limit, in deterministic seconds. It proves the small built-in models optimal in a tenth of a
# second; the larger ones (12,000-23,000 booleans) it spends about 5 s presolving, and 10 s improved no plan of
# any built-in workload over its hint, so a longer default would only slow every compile.
DEFAULT_TIME_LIMIT_S = 2.0
MAX_TIME_LIMIT_S = 86_400.0  # a day: no compile searches longer
MAX_SEED = 2**31 - 1  # CP-SAT's random seed is a 32-bit signed integer
MAX_WORKERS = 1024  # CP-SAT accepts up to 10,000 (more is MODEL_INVALID), each with its own copy of the model


@dataclass(frozen=True)
class SolverSettings:
    """How long and how CP-SAT searches: copied one by one into its parameters (`passes.solver.cpsat`). The same
    settings give the same plan on every run: the limit counts deterministic time."""

    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    workers: int = 1
    seed: int = 0
    relative_gap: float = 0.0  # stop once the plan is proven within this of optimal (0: prove it optimal)

    def __post_init__(self) -> None:
        if not 0 < self.time_limit_s <= MAX_TIME_LIMIT_S:  # also refuses nan
            raise SpecError(
                "solver.time_limit_s",
                f"must be > 0 and <= {MAX_TIME_LIMIT_S:g} seconds, got {self.time_limit_s}",
                "give e.g. --time-limit 2",
            )
        if not 1 <= self.workers <= MAX_WORKERS:
            raise SpecError(
                "solver.workers", f"must be in [1, {MAX_WORKERS}], got {self.workers}", "give e.g. --workers 1"
            )
        if not 0 <= self.seed <= MAX_SEED:
            raise SpecError("solver.seed", f"must be in [0, {MAX_SEED}], got {self.seed}", "give e.g. --seed 0")
        if not 0.0 <= self.relative_gap < 1.0:
            raise SpecError("solver.relative_gap", f"must be in [0, 1), got {self.relative_gap}", "give e.g. 0.01")
