"""Jagged index batches: every kernel (native GM, L1, GM-UB, L1-UB, as sample cuts and as row shards; the torch
and numpy reference kernels) reads each sample's own number of ids, none included, in fp32 and fp16, and
its pooled outputs match the float64 reference per sample; an empty sample gives a zero row."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest

from embmap.cost_models import preset_profile
from embmap.ir.plan import ExecutionPlan, PartitionMode, Strategy
from embmap.ir.spec import DType, TableSpec, Zipf
from embmap.ir.targets import cpu
from embmap.mapper.calibration import GridPoint, point_plan
from embmap.runtime import RunConfig, baselines, materialize_for, native, run_plan
from embmap.runtime import kernels as kernels_module
from embmap.runtime.data import Bags, check_outputs, materialize, reference_lookup
from embmap.runtime.executor import usable_cpus

BACKENDS = ["native", "numpy", *(["torch"] if kernels_module.HAVE_TORCH else [])]
CUTS = (
    ((PartitionMode.SAMPLES, 2), (PartitionMode.ROWS, 2)) if len(usable_cpus()) >= 2 else ((PartitionMode.SAMPLES, 1),)
)
BATCH, ROWS, INDEX_BATCHES = 96, 2000, 3


def jagged_bags(seed: int, most: int = 12) -> Bags:
    """Lengths 0 to `most` (about one sample in eight empty, a run of empty samples at the start of batch 1),
    ids uniform over the rows."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, most + 1, INDEX_BATCHES * BATCH)
    lengths[rng.random(lengths.size) < 0.125] = 0
    lengths[BATCH : BATCH + 5] = 0
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    ids = rng.integers(0, ROWS, int(offsets[-1])).astype(np.int64)
    starts = offsets[:-1].reshape(INDEX_BATCHES, BATCH)
    return Bags(ids, np.concatenate([starts, offsets[BATCH::BATCH, None]], axis=1))


def jagged_plan(strategy: Strategy, mode: PartitionMode, parts: int, dtype: DType, dim: int) -> ExecutionPlan:
    target = cpu()
    table = TableSpec(name="t", rows=ROWS, dim=dim, dtype=dtype, pooling=6, distribution=Zipf(alpha=1.1))
    plan, _ = point_plan(GridPoint(table, BATCH, strategy, mode, parts), target, preset_profile(target))
    return plan


def run_jagged(plan: ExecutionPlan, backend: str, bags: Bags) -> tuple[bool, np.ndarray, np.ndarray, np.ndarray]:
    """(the run's own check, its last output, the float64 reference, the last batch's lengths)."""
    config = RunConfig(batches=4, warmup=1, index_batches=INDEX_BATCHES, backend=backend)
    data = materialize_for(plan, config, {"t": bags}, "by hand")
    try:
        report = run_plan(plan, config, data)
        last = (config.warmup + config.batches - 1) % INDEX_BATCHES
        ids, offsets = bags.batch(last)
        reference = reference_lookup(data.tables["t"].array, ids, offsets)
        return report.correct, data.outputs["t"].array.astype(np.float64), reference, np.diff(offsets)
    finally:
        data.close()


@pytest.mark.parametrize("dtype", [DType.FP32, DType.FP16])
@pytest.mark.parametrize("strategy", list(Strategy))
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_kernel_reads_each_samples_own_ids(backend: str, strategy: Strategy, dtype: DType) -> None:
    for mode, parts in CUTS:
        correct, out, reference, lengths = run_jagged(
            jagged_plan(strategy, mode, parts, dtype, 16), backend, jagged_bags(1)
        )
        assert correct, (mode, np.abs(out - reference).max())
        assert (lengths == 0).any() and (lengths >= 8).any()
        assert (out[lengths == 0] == 0).all()  # an empty sample is a zero row, exactly
        bound = np.maximum(lengths - 1, 0)[:, None] * 2.0**-24 * np.abs(reference) * 1.001
        assert (np.abs(out - reference) <= bound).all(), mode


@pytest.mark.parametrize("dim", [128, 24])  # the widest fixed width, and one the kernels do not fix
@pytest.mark.parametrize("strategy", list(Strategy))
def test_native_kernels_of_long_and_empty_bags(strategy: Strategy, dim: int) -> None:
    """Bags of 0 to 40 ids: the kernels' several-sums path (bags of at least 4) beside bags shorter than it."""
    for dtype in (DType.FP32, DType.FP16):
        for mode, parts in CUTS:
            correct, out, reference, lengths = run_jagged(
                jagged_plan(strategy, mode, parts, dtype, dim), "native", jagged_bags(2, most=40)
            )
            assert correct and (out[lengths == 0] == 0).all(), (dtype, mode)


@contextlib.contextmanager
def gm_table_and_output(bags: Bags) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """A one-item GM plan's table and output, materialized for `bags` (released after)."""
    plan = jagged_plan(Strategy.GM, PartitionMode.SAMPLES, 1, DType.FP32, 16)
    data = materialize_for(plan, RunConfig(batches=1, warmup=0, index_batches=INDEX_BATCHES), {"t": bags}, "x")
    try:
        yield data.tables["t"].array, data.outputs["t"].array
    finally:
        data.close()


def test_the_native_kernel_called_directly_reads_jagged_batches() -> None:
    bags = jagged_bags(3)
    with gm_table_and_output(bags) as (table, out):
        seconds = native.kernel_loop(
            table, DType.FP32, bags.ids, bags.offsets, out, "GM", (0, ROWS), (0, BATCH), 4096, usable_cpus()[0], 2
        )
        assert seconds.shape == (2,)
        assert np.allclose(out, reference_lookup(table, *bags.batch(1)), rtol=1e-5)


def test_offsets_or_ids_out_of_range_are_refused_before_anything_runs() -> None:
    good = jagged_bags(4)
    with gm_table_and_output(good) as (table, out):
        bad_offsets = good.offsets.copy()
        bad_offsets[0, 3] = bad_offsets[0, 4] + 1
        bad_ids = good.ids.copy()
        bad_ids[7] = ROWS
        for ids, offsets in ((good.ids, bad_offsets), (bad_ids, good.offsets)):
            with pytest.raises(ValueError, match="offsets decrease|outside its table"):
                native.kernel_loop(table, DType.FP32, ids, offsets, out, "GM", (0, ROWS), (0, BATCH), 4096, 0, 1)


def test_the_check_holds_each_sample_to_its_own_bound() -> None:
    """An empty sample must be exactly zero; a sample of one id exactly its row."""
    spec = TableSpec(name="t", rows=ROWS, dim=16, pooling=6, distribution=Zipf(alpha=1.1))
    bags = jagged_bags(5)
    data = materialize((spec,), BATCH, INDEX_BATCHES, seed=0, shared=False, bags={"t": bags}, ids_from="x")
    try:
        ids, offsets = bags.batch(0)
        right = reference_lookup(data.tables["t"].array, ids, offsets).astype(np.float32)
        assert check_outputs((spec,), {"t": right}, data, 0)[0]
        lengths = np.diff(offsets)
        for length in (0, 1):
            wrong = right.copy()
            s = int(np.flatnonzero(lengths == length)[0])
            wrong[s, 0] = np.nextafter(wrong[s, 0], np.float32(np.inf))
            assert not check_outputs((spec,), {"t": wrong}, data, 0)[0], length
    finally:
        data.close()


@pytest.mark.parametrize("name", [n for n in baselines.FRAMEWORKS if baselines.available(n)])
@pytest.mark.parametrize("dtype", [DType.FP32, DType.FP16])
def test_the_baselines_read_the_same_jagged_batches(name: str, dtype: DType) -> None:
    specs = tuple(
        TableSpec(name=n, rows=ROWS, dim=16, dtype=dtype, pooling=6, distribution=Zipf(alpha=1.1)) for n in "ab"
    )
    bags = {"a": jagged_bags(6), "b": jagged_bags(7, most=3)}
    data = materialize(specs, BATCH, INDEX_BATCHES, seed=0, shared=False, bags=bags, ids_from="x")
    try:
        report = baselines.run_baseline(name, specs, data, warmup=0, batches=INDEX_BATCHES, threads=1)
    finally:
        data.close()
    assert report.correct, (report.max_abs_error, report.tolerance)


def test_a_fractional_factor_runs_on_every_backend() -> None:
    for backend in BACKENDS:
        target = cpu()
        table = TableSpec(name="t", rows=ROWS, dim=16, pooling=2.5, distribution=Zipf(alpha=1.1))
        plan, _ = point_plan(
            GridPoint(table, BATCH, Strategy.GM, PartitionMode.SAMPLES, 1), target, preset_profile(target)
        )
        config = dataclasses.replace(RunConfig(batches=3, warmup=1, index_batches=2), backend=backend)
        report = run_plan(plan, config)
        assert report.correct and abs(report.lookups_per_batch / BATCH - 2.5) < 0.3, backend
