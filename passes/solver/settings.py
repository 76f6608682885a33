"""The solver's settings: one frozen value, carried to every pass in the pass context (`passes.base`)."""

from __future__ import annotations

from dataclasses import dataclass

from embmap.ir.errors import SpecError

# CP-SAT's default limit, in deterministic seconds. It proves the small built-in models optimal in a tenth of a
# second; the larger ones (12,000-23,000 booleans) it spends about 5 s presolving, and 10 s improved no plan of
# any built-in workload over its hint, so a longer default would only slow every compile.
DEFAULT_TIME_LIMIT_S = 2.0


@dataclass(frozen=True)
class SolverSettings:
    """How long and how CP-SAT searches: copied one by one into its parameters (`passes.solver.cpsat`). The same
    settings give the same plan on every run: the limit counts deterministic time."""

    time_limit_s: float = DEFAULT_TIME_LIMIT_S
    workers: int = 1
    seed: int = 0
    relative_gap: float = 0.0  # stop once the plan is proven within this of optimal (0: prove it optimal)

    def __post_init__(self) -> None:
        if not self.time_limit_s > 0:
            raise SpecError(
                "solver.time_limit_s", f"must be > 0 seconds, got {self.time_limit_s}", "give e.g. --time-limit 2"
            )
        if self.workers < 1:
            raise SpecError("solver.workers", f"must be >= 1, got {self.workers}", "give e.g. --workers 1")
        if not 0.0 <= self.relative_gap < 1.0:
            raise SpecError("solver.relative_gap", f"must be in [0, 1), got {self.relative_gap}", "give e.g. 0.01")
