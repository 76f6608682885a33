"""The front door: `compile()` (compiler), the named pipelines, the plan backend, plan files (planio), the cost
profile a compile uses (profiles) and the plan report (explain).

Its wings: the subpackages `cli` (the `embmap` command line), `bench` (`embmap bench`), `torchrec` (plans
across devices, TorchRec in and out) and `workloads` (the built-in workload library), and the module
`calibration` (what `embmap calibrate` measures and fits).
"""

from embmap.mapper.compiler import compile, prepare_workload, resolve_target
from embmap.mapper.pipelines import BASELINES, PIPELINES
from embmap.passes.solver.settings import SolverSettings

__all__ = ["BASELINES", "PIPELINES", "SolverSettings", "compile", "prepare_workload", "resolve_target"]
