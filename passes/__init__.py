"""Passes over the IR module, their registry, the pass manager and the pass context.

One file per pass, named after it; no pass imports another: what passes share lives in the core-assignment
library they call, `passes/solver/` (its README.md says which functions produce plans and which produce bounds).
Importing this package registers every pass.
"""

from embmap.passes import (  # noqa: F401  (registration)
    assign_cores,
    balance,
    pack,
    partition,
    profile,
    schedule,
    select_strategy,
    verify,
)
from embmap.passes.base import REGISTRY, ModulePass, PassContext
from embmap.passes.manager import PassManager, PrintIRAfter, TimingInstrument, parse_pipeline, pipeline_text
from embmap.passes.solver.settings import SolverSettings

__all__ = [
    "REGISTRY",
    "ModulePass",
    "PassContext",
    "PassManager",
    "PrintIRAfter",
    "SolverSettings",
    "TimingInstrument",
    "parse_pipeline",
    "pipeline_text",
]
