"""Shared fixtures: a tiny target, tiny workloads, and a helper that runs a pipeline prefix."""

from __future__ import annotations

import pytest

from cost_models import preset_profile
from ir.lowering import lower
from ir.module import Module
from ir.spec import MemorySpec, TableSpec, TargetSpec, WorkloadSpec
from passes import PassManager, parse_pipeline

KiB = 1024


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


def run(module: Module, pipeline: str) -> Module:
    return PassManager(parse_pipeline(pipeline)).run(module)


@pytest.fixture
def target() -> TargetSpec:
    return tiny_target()


@pytest.fixture
def workload() -> WorkloadSpec:
    return tiny_workload()


@pytest.fixture
def lowered(workload: WorkloadSpec, target: TargetSpec) -> Module:
    return lower(workload, target, preset_profile(target))
