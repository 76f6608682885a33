"""Shared fixtures: a tiny target, tiny workloads, a helper that runs a pipeline prefix, and the hypothesis
settings profiles of the property and fuzz tests.

Profiles: `ci` (the default) is derandomized, so every run tries the same examples, and small enough that
tests/test_properties.py and tests/test_fuzz.py each finish in well under a minute on two cores; `long`
(`HYPOTHESIS_PROFILE=long`) draws fresh random examples, ten times as many, for a search worth waiting for.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import sys
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import HealthCheck, settings

from embmap.cost_models import preset_profile
from embmap.cost_models.analytic import ItemShape, item_terms
from embmap.ir.lowering import lower
from embmap.ir.module import Module, TableProfile
from embmap.ir.spec import MemorySpec, TableSpec, TargetSpec, WorkloadSpec
from embmap.passes import PassContext, PassManager, SolverSettings, parse_pipeline

KiB = 1024
ROOT = Path(__file__).resolve().parents[1]

settings.register_profile(
    "ci",
    derandomize=True,
    database=None,
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "long",
    deadline=None,
    max_examples=400,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# A shell starts a background job (`make test &`) with Ctrl-C ignored, and nohup ignores SIGHUP; Python keeps
# both ignored, and so do the processes the tests start. The tests of what those signals do would wait for a
# signal that never arrives. So Ctrl-C gets Python's usual handler, and SIGHUP a handler that does nothing:
# the suite still survives a hangup, and the processes it starts begin with the default (a caught signal is
# reset by exec, an ignored one is not).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN:
    signal.signal(signal.SIGHUP, lambda signum, frame: None)


def load_script(path: str, name: str) -> ModuleType:
    """A script of the repository (`benchmarks/...`, `tools/...`, not in a package) as a module, registered
    under `name` (its dataclasses look their module up by name)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def examples(ci_examples: int) -> settings:
    """Settings for a test that affords `ci_examples` examples under the `ci` profile, and proportionally
    more under `long` (whose budget is ten times ci's)."""
    scale = settings().max_examples / 40  # settings() inherits the loaded profile
    return settings(max_examples=max(1, round(ci_examples * scale)))


def tiny_target(cores: int = 3, local_bytes: int = 64 * KiB) -> TargetSpec:
    return TargetSpec(
        name="tiny",
        cores=cores,
        local=MemorySpec(name="L1", capacity_bytes=local_bytes, bandwidth_bytes_per_s=100e9, latency_s=50e-9),
        scratch=MemorySpec(name="UB", capacity_bytes=16 * KiB, bandwidth_bytes_per_s=200e9, latency_s=5e-9),
        shared_cache=MemorySpec(name="L2", capacity_bytes=256 * KiB, bandwidth_bytes_per_s=400e9, latency_s=200e-9),
        main=MemorySpec(name="HBM", capacity_bytes=1 << 30, bandwidth_bytes_per_s=300e9, latency_s=500e-9),
    )


def tiny_workload(batch: int = 64) -> WorkloadSpec:
    return WorkloadSpec(
        name="tiny",
        batch_size=batch,
        tables=(
            TableSpec(name="small", rows=40, dim=16),
            TableSpec(name="medium", rows=3000, dim=16, pooling=2),
            TableSpec(name="large", rows=200_000, dim=32, pooling=3),
        ),
    )


def run(module: Module, pipeline: str, solver: SolverSettings | None = None) -> Module:
    """The module after `pipeline`, with `solver` settings (default: `SolverSettings()`)."""
    return PassManager(parse_pipeline(pipeline)).run(module, PassContext(solver or SolverSettings()))


# A table too long for one core beside a short one: what `balance` cuts unevenly.
ONE_LONG = (
    TableSpec(name="long", rows=200_000, dim=32, pooling=4),
    TableSpec(name="short", rows=3000, dim=16, pooling=1),
)


def lowered_module(batch: int, cores: int, tables: tuple[TableSpec, ...]) -> Module:
    target = tiny_target(cores=cores)
    return lower(WorkloadSpec(name="w", batch_size=batch, tables=tables), target, preset_profile(target))


def same_plan(a: Module, b: Module) -> bool:
    return (a.items, a.solver, a.lower_bound_s) == (b.items, b.solver, b.lower_bound_s)


@pytest.fixture
def target() -> TargetSpec:
    return tiny_target()


@pytest.fixture
def workload() -> WorkloadSpec:
    return tiny_workload()


@pytest.fixture
def lowered(workload: WorkloadSpec, target: TargetSpec) -> Module:
    return lower(workload, target, preset_profile(target))


def amounts(shape: ItemShape, table: TableSpec, stats: TableProfile, target: TargetSpec) -> dict[str, float]:
    """Parameter -> total amount of an item's cost-model terms."""
    out: dict[str, float] = {}
    for term in item_terms(shape, table, stats, target):
        out[term.param] = out.get(term.param, 0.0) + term.amount
    return out
