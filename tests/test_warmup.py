"""The warm-up a run takes by default: until the caches hold what a long run keeps in them."""

from __future__ import annotations

import math

import pytest

from embmap.cost_models import preset_profile
from embmap.ir.plan import PartitionMode, Strategy
from embmap.ir.spec import TableSpec, Uniform
from embmap.ir.targets import cpu
from embmap.mapper.calibration import GridPoint, point_plan
from embmap.runtime import RunConfig, run_plan
from embmap.runtime.executor import MAX_WARMUP, MIN_WARMUP, steady_warmup

MiB = 1 << 20


def table(rows: int, dim: int = 32, pooling: float = 1) -> TableSpec:
    return TableSpec(name=f"t{rows}", rows=rows, dim=dim, pooling=pooling, distribution=Uniform())


def test_a_table_within_the_cache_is_drawn_three_times_its_rows() -> None:
    # 24,516 rows read 1,024 times a batch: 3 x 24,516 / 1,024 = 71.8 batches. Its 3 MiB are far below
    # what three passes over the 32 MiB cache take (512 KiB a batch: 192 batches), so the rows decide.
    assert steady_warmup([table(24516)], 1024, cpu()) == 72


def test_the_slowest_table_to_draw_decides() -> None:
    small, large = table(2000), table(24516)
    assert steady_warmup([small, large], 1024, cpu()) == steady_warmup([large], 1024, cpu())


def test_a_table_beyond_the_cache_needs_three_caches_of_reads_not_every_row() -> None:
    # 4M rows of 64 floats (1 GiB) read 8,192 times a batch: every row thrice would take 1,536 batches;
    # three times the 32 MiB cache is read in 3 x 32 MiB / (8,192 x 256 B) = 48 batches.
    t = table(4 << 20, dim=64, pooling=8)
    cache = cpu().shared_cache.capacity_bytes
    expected = math.ceil(3 * cache / (1024 * 8 * t.row_bytes))
    assert expected == 48
    assert steady_warmup([t], 1024, cpu()) == expected


def test_the_warmup_is_bounded() -> None:
    assert steady_warmup([table(8)], 1024, cpu()) == MIN_WARMUP  # every row drawn in the first batch
    assert steady_warmup([table(1 << 20, dim=4)], 1, cpu()) == MAX_WARMUP  # one lookup a batch


def test_run_plan_decides_the_warmup_and_reports_it() -> None:
    point = GridPoint(table(3000, dim=8, pooling=3), 64, Strategy.GM, PartitionMode.SAMPLES, 1)
    plan, _ = point_plan(point, cpu(), preset_profile(cpu()))
    decided = RunConfig(batches=2).for_plan(plan)
    assert decided.warmup == steady_warmup(plan.workload.tables, plan.workload.batch_size, plan.target)
    assert decided.warmup > MIN_WARMUP  # 3,000 rows at 192 lookups a batch: 47 batches
    report = run_plan(plan, RunConfig(batches=2))
    assert report.correct and report.warmup == decided.warmup
    assert run_plan(plan, RunConfig(batches=2, warmup=0)).warmup == 0  # a given warm-up is kept


def test_an_undecided_warmup_has_no_index_batch_count() -> None:
    with pytest.raises(ValueError, match="for_plan"):
        _ = RunConfig().index_batch_count
