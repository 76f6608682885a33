"""Pooling factors are means: a table read 2.5 times per sample on average is planned as 2.5 lookups, not
rounded to 2 or 3. Whole factors keep reading, printing and serializing as ints, so plans of whole factors do
not change; `embmap run` draws the same whole number of lookups for every sample and refuses a fractional one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from embmap.cost_models import preset_profile
from embmap.cost_models.analytic import ItemShape, item_cost
from embmap.cost_models.measurements import read_csv
from embmap.ir.cluster import Sharding, TableSharding
from embmap.ir.errors import SpecError
from embmap.ir.lowering import lower
from embmap.ir.plan import Strategy
from embmap.ir.spec import TableSpec, Uniform, WorkloadSpec
from embmap.mapper.cli import main
from embmap.mapper.torchrec.cluster import device_workloads
from embmap.passes import PassManager, parse_pipeline
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


def test_compile_plans_a_fractional_factor_and_run_refuses_it_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    args = ["compile", str(workload_file(tmp_path, 2.5)), "--target", "cpu", "-o", str(plan)]
    assert main([*args, "--time-limit", "2", "--workers", "1"]) == 0
    data = json.loads(plan.read_text())
    assert data["workload"]["tables"][0]["pooling"] == 2.5 and data["tables"][0]["pooling"] == 2.5
    capsys.readouterr()
    assert main(["run", str(plan), "--batches", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "tables.t.pooling: is 2.5" in err and "whole number" in err


def test_a_measurement_of_a_fractional_factor_reads_back(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    header = "strategy,rows,dim,dtype,pooling,batch_size,row_lo,row_hi,sample_lo,sample_hi,distribution,measured_s"
    csv.write_text(f"{header}\nGM,5000,32,fp32,2.5,1024,0,5000,0,512,uniform,1.8e-05\n")
    (m,) = read_csv(csv)
    assert m.table.pooling == 2.5
    csv.write_text(f"{header}\nGM,5000,32,fp32,0,1024,0,5000,0,512,uniform,1.8e-05\n")
    with pytest.raises(SpecError, match="column pooling: must be a positive number"):
        read_csv(csv)
