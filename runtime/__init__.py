"""The reference runtime: executes an ExecutionPlan for real on this machine's cores.

It depends on `ir` only, exactly as an outside runtime would: it reads the plan, materialises the tables and
index batches the plan's workload describes, runs one pinned worker process per core, checks the pooled
outputs against a plain reference lookup, and reports measured times beside the plan's predictions.
"""

from embmap.runtime.baselines import FRAMEWORKS, Baseline, BaselineReport, prepare_baseline, run_baseline
from embmap.runtime.data import Bags
from embmap.runtime.executor import Fault, RunConfig, RunReport, materialize_for, run_interleaved, run_plan, run_rounds

__all__ = [
    "FRAMEWORKS",
    "Bags",
    "Baseline",
    "BaselineReport",
    "Fault",
    "RunConfig",
    "RunReport",
    "materialize_for",
    "prepare_baseline",
    "run_baseline",
    "run_interleaved",
    "run_plan",
    "run_rounds",
]
