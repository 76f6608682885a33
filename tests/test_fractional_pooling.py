"""Pooling factors are means: a table read 2.5 times per sample on average is planned as 2.5 lookups, not
rounded to 2 or 3. Whole factors keep reading, printing and serializing as ints, so plans of whole factors do
not change. `embmap run` gives each sample floor(p) or ceil(p) lookups, the mean p; a whole factor exactly p,
the same ids as before lookups per sample could vary."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest

from embmap.cost_models import preset_profile
from embmap.cost_models.analytic import ItemShape, item_cost
from embmap.cost_models.measurements import read_csv
from embmap.ir.cluster import Sharding, TableSharding
from embmap.ir.errors import SpecError
from embmap.ir.lowering import lower
from embmap.ir.plan import Strategy
from embmap.ir.spec import TableSpec, Uniform, WorkloadSpec, Zipf
from embmap.mapper.cli import main
from embmap.mapper.torchrec.cluster import device_workloads
from embmap.passes import PassManager, parse_pipeline
from embmap.runtime.data import make_indices, sample_lengths
from tests.conftest import tiny_target


def table(pooling: float) -> TableSpec:
    return TableSpec(name="t", rows=4096, dim=16, pooling=pooling, distribution=Uniform())


def test_a_mean_is_kept_and_a_whole_factor_stays_an_int() -> None:
    assert table(2.5).pooling == 2.5 and table(0.3).pooling == 0.3
    whole = table(8.0)
    assert isinstance(whole.pooling, int) and whole.pooling == 8
    assert json.loads(whole.model_dump_json())["pooling"] == 8 and '"pooling":8,' in whole.model_dump_json()
    for bad in (0, -0.5, 100_000.5):
        with pytest.raises(ValueError, match="pooling"):
            table(bad)


@pytest.mark.parametrize("strategy", list(Strategy))
def test_the_cost_model_prices_the_mean_between_its_whole_neighbours(strategy: Strategy) -> None:
    target = tiny_target(cores=2, local_bytes=1 << 20)
    profile = preset_profile(target)

    def cost(pooling: float) -> float:
        t = table(pooling)
        m = lower(WorkloadSpec(name="w", batch_size=64, tables=(t,)), target, profile)
        stats = PassManager(parse_pipeline("profile")).run(m).table_profile("t")
        return item_cost(ItemShape(strategy, (0, t.rows), (0, 64)), t, stats, target, profile).total_s

    assert cost(2) < cost(2.5) < cost(3)
    assert cost(0.3) < cost(1)  # what rounding 0.3 up to one lookup per sample used to price


def test_a_row_wise_block_reads_its_exact_share_of_the_lookups() -> None:
    w = WorkloadSpec(name="w", batch_size=8, tables=(table(3),))
    blocks = ((0, 2048), (2048, 4096))
    sharding = TableSharding(
        table="t", sharding=Sharding.ROW_WISE, ranks=(0, 1), rows=blocks, columns=((0, 16), (0, 16)), bytes_per_rank=1
    )
    shares = [device_workloads(w, (sharding,), d, 2)[0].tables[0].pooling for d in (0, 1)]
    assert shares == [1.5, 1.5]  # rounding made each block 2 lookups per sample: 4 in all for a table of 3


def workload_file(tmp_path: Path, pooling: float) -> Path:
    path = tmp_path / "w.yaml"
    path.write_text(f"name: w\nbatch_size: 64\ntables:\n  - {{name: t, rows: 1000, dim: 16, pooling: {pooling}}}\n")
    return path


def test_compile_plans_a_fractional_factor_and_run_runs_it_correct(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A mean of 2.5 lookups is planned as 2.5 and run as 2 or 3 per sample (half each): every pooled output
    within its own sample's bound, and a batch reads about 64 * 2.5 rows."""
    plan = tmp_path / "plan.json"
    args = ["compile", str(workload_file(tmp_path, 2.5)), "--target", "cpu", "-o", str(plan)]
    assert main([*args, "--time-limit", "2", "--workers", "1"]) == 0
    data = json.loads(plan.read_text())
    assert data["workload"]["tables"][0]["pooling"] == 2.5 and data["tables"][0]["pooling"] == 2.5
    capsys.readouterr()
    for backend in ("native", "numpy"):
        assert main(["run", str(plan), "--batches", "40", "--backend", backend, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["correct"] and report["backend"] == backend
        assert 64 * 2.3 < report["lookups_per_batch"] < 64 * 2.7  # the mean of 45 batches of 64 samples
        assert "seed 0" in report["ids_from"]


def test_fractional_lengths_are_the_two_whole_neighbours_with_the_mean_as_asked() -> None:
    lengths = sample_lengths(table(2.3), 200_000, np.random.default_rng(0))
    assert set(np.unique(lengths).tolist()) == {2, 3}
    assert abs(lengths.mean() - 2.3) < 0.005
    below_one = sample_lengths(table(0.3), 200_000, np.random.default_rng(0))
    assert set(np.unique(below_one).tolist()) == {0, 1} and abs(below_one.mean() - 0.3) < 0.005
    bags = make_indices(table(2.3), 3, 64, seed=5)
    assert bags.offsets.shape == (3, 65) and bags.ids.size == bags.offsets[-1, -1]
    assert np.array_equal(make_indices(table(2.3), 3, 64, seed=5).ids, bags.ids)  # seeded


def test_a_whole_factor_draws_the_same_ids_as_before_lengths_were_drawn() -> None:
    """Earlier results stay comparable: the digests of the ids that dense index batches [n, batch, pooling]
    held for these tables and seed, before index batches were jagged."""
    zipf = TableSpec(name="z", rows=100_000, dim=4, pooling=3, distribution=Zipf(alpha=1.05))
    uniform = TableSpec(name="u", rows=5000, dim=4, pooling=1, distribution=Uniform())
    for t, digest in ((zipf, 0xEF032EAF), (uniform, 0x59366C01)):
        bags = make_indices(t, 4, 64, seed=7)
        assert (np.diff(bags.offsets, axis=1) == t.pooling).all()
        assert zlib.crc32(bags.ids.tobytes()) == digest, t.name


def test_a_measurement_of_a_fractional_factor_reads_back(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    header = "strategy,rows,dim,dtype,pooling,batch_size,row_lo,row_hi,sample_lo,sample_hi,distribution,measured_s"
    csv.write_text(f"{header}\nGM,5000,32,fp32,2.5,1024,0,5000,0,512,uniform,1.8e-05\n")
    (m,) = read_csv(csv)
    assert m.table.pooling == 2.5
    csv.write_text(f"{header}\nGM,5000,32,fp32,0,1024,0,5000,0,512,uniform,1.8e-05\n")
    with pytest.raises(SpecError, match="column pooling: must be a positive number"):
        read_csv(csv)
