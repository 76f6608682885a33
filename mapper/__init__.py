"""The front door: `compile()`, named pipelines, the plan backend, reports and the `embmap` command line."""

from embmap.mapper.compiler import compile, prepare_workload, resolve_target
from embmap.mapper.pipelines import BASELINES, PIPELINES
from embmap.passes.solver.settings import SolverSettings

__all__ = ["BASELINES", "PIPELINES", "SolverSettings", "compile", "prepare_workload", "resolve_target"]
