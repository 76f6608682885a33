"""The front door: `compile()`, named pipelines, the plan backend, reports and the `embmap` command line."""

from embmap.mapper.compiler import SolverOptions, compile, prepare_workload, resolve_target
from embmap.mapper.pipelines import BASELINES, PIPELINES

__all__ = ["BASELINES", "PIPELINES", "SolverOptions", "compile", "prepare_workload", "resolve_target"]
