"""Pricing any TorchRec plan on the device level's model (`mapper.torchrec.compare`), and the proposer-by-proposer
benchmark (benchmarks/torchrec_planners.py) on its quick cell."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from embmap.ir.cluster import ClusterSpec, Sharding
from embmap.ir.errors import SpecError
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.mapper import SolverSettings
from embmap.mapper.bench.report import DMP_SECTION, _kept_section
from embmap.mapper.profiles import default_profile
from embmap.mapper.torchrec.cluster import cluster, compile_cluster, finish_s, table_options
from embmap.mapper.torchrec.compare import device_finishes_s, predicted_s, shardings_of
from embmap.mapper.torchrec.planner import available
from tests.conftest import load_script

needs_torchrec = pytest.mark.skipif(not available(), reason="TorchRec is not installed (make installs it)")
MiB = 1 << 20


def _bench() -> ModuleType:
    return load_script("benchmarks/torchrec_planners.py", "torchrec_planners_bench")


def two_tables() -> WorkloadSpec:
    tables = (TableSpec(name="a", rows=20_000, dim=32, pooling=4), TableSpec(name="b", rows=8_000, dim=64, pooling=2))
    return WorkloadSpec(name="two", batch_size=256, tables=tables)


def mixed() -> tuple[WorkloadSpec, ClusterSpec]:
    """Tables of several sizes on 4 devices with room for only some replicas: the plan mixes sharding types."""
    tables = (
        TableSpec(name="big", rows=60_000, dim=32, pooling=8),
        TableSpec(name="wide", rows=2_000, dim=64, pooling=4),
        TableSpec(name="mid", rows=5_000, dim=16, pooling=2),
        TableSpec(name="tiny", rows=50, dim=16, pooling=1),
        TableSpec(name="free", rows=1_000, dim=16, pooling=3),
    )
    return WorkloadSpec(name="mixed", batch_size=512, tables=tables), cluster("cpu", 4, memory_bytes=6 * MiB)


def test_predicted_s_is_the_device_levels_objective_for_its_own_plan() -> None:
    w, spec = mixed()
    plan = compile_cluster(w, spec, solver=SolverSettings(time_limit_s=2.0, workers=1, seed=0))
    shardings = {s.table: (s.sharding, s.ranks) for s in plan.shardings}
    assert len({s for s, _ in shardings.values()}) >= 2, "the case should mix sharding types"
    predicted = predicted_s(plan.workload, plan.cluster, shardings)
    # The device level counts every part in whole units (1 ns, rounded up) and the latency once per sender:
    # its objective is the prediction rounded up, by at most one unit per part on the slowest device.
    slack = (len(plan.workload.tables) * spec.devices + 1) * 1e-9
    assert 0 <= plan.solver.objective_s - predicted <= slack
    assert predicted > 0


def test_a_hand_built_sharding_is_priced_as_its_options_say() -> None:
    w, spec = two_tables(), cluster("cpu", 2, memory_bytes=64 * MiB)
    options = table_options(w.effective(), spec, default_profile(spec.device), {})
    tw = [{o.ranks[0]: o for o in opts if o.sharding is Sharding.TABLE_WISE} for opts in options]
    cores = spec.device.cores
    (ca, sa), (cb, sb) = ((o[0].compute_s[0], o[0].send_bytes[0]) for o in tw)
    both_on_0 = {"a": (Sharding.TABLE_WISE, (0,)), "b": (Sharding.TABLE_WISE, (0,))}
    one_each = {"a": (Sharding.TABLE_WISE, (0,)), "b": (Sharding.TABLE_WISE, (1,))}
    assert device_finishes_s(w, spec, both_on_0) == [finish_s((ca + cb) / cores, sa + sb, spec.link), 0.0]
    assert device_finishes_s(w, spec, one_each) == [
        finish_s(ca / cores, sa, spec.link),
        finish_s(tw[1][1].compute_s[0] / cores, tw[1][1].send_bytes[0], spec.link),
    ]
    assert predicted_s(w, spec, one_each) < predicted_s(w, spec, both_on_0)
    # A rank set the device level has no option for is refused, naming the table.
    with pytest.raises(SpecError, match=r"shardings\.b.*row_wise on ranks \[1, 0\]"):
        predicted_s(w, spec, {"a": both_on_0["a"], "b": (Sharding.ROW_WISE, (1, 0))})


@needs_torchrec
def test_shardings_of_reads_a_plan_and_refuses_types_without_an_embmap_form() -> None:
    from torchrec.distributed.types import ParameterSharding

    def ps(kind: str, ranks: list[int]) -> Any:
        return ParameterSharding(sharding_type=kind, compute_kernel="fused", ranks=ranks)

    read = shardings_of({"a": ps("table_wise", [1]), "b": ps("data_parallel", [1, 0])})
    assert read == {"a": (Sharding.TABLE_WISE, (1,)), "b": (Sharding.DATA_PARALLEL, (0, 1))}
    with pytest.raises(SpecError) as caught:
        shardings_of({"a": ps("table_wise", [0]), "t7": ps("table_row_wise", [0, 1])})
    line = caught.value.one_line()
    assert "\n" not in line and "t7" in line and "table_row_wise" in line


@needs_torchrec
def test_quick_benchmark_prints_every_planner_and_the_best_proposer(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench()
    assert bench.main(["--quick", "--in-process"]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith(f"| {bench.QUICK_CELL[0]} | {bench.QUICK_CELL[1]} |")]
    assert [r.split("|")[3].strip() for r in rows] == list(bench.LABELS.values())
    ours = next(r for r in rows if "EmbmapShardingPlanner" in r)
    assert "| 1.00x |" in ours
    best = [line for line in out.splitlines() if line.startswith("TorchRec's best proposer on 20 tables x 4 ranks: ")]
    assert len(best) == 1 and "predicted" in best[0]


def test_the_section_writer_replaces_its_section_and_keeps_the_rest(tmp_path: Path) -> None:
    bench = _bench()
    path = tmp_path / "RESULTS.md"
    before = "# Results\n\nintro \u00b5s\n\n"
    after = "## Later\n\nkept  as is\n"
    path.write_text(before + f"{bench.SECTION}\n\nold table\n\n" + after, encoding="utf-8")
    bench.write_section(path, f"{bench.SECTION}\n\nnew table\n")
    assert path.read_text(encoding="utf-8") == before + f"{bench.SECTION}\n\nnew table\n\n" + after
    fresh = tmp_path / "other.md"
    fresh.write_text("# Results\n", encoding="utf-8")
    bench.write_section(fresh, f"{bench.SECTION}\n\nnew table\n")
    assert fresh.read_text(encoding="utf-8") == f"# Results\n\n{bench.SECTION}\n\nnew table\n"


def test_rewriting_results_keeps_the_planners_section(tmp_path: Path) -> None:
    bench = _bench()
    path = tmp_path / "RESULTS.md"
    planners = f"{bench.SECTION}\n\n| planners |\n"
    dmp = f"{DMP_SECTION}\n\n| dmp |\n"
    path.write_text("# Benchmark results\n\nold\n\n" + dmp + "\n" + planners, encoding="utf-8")
    assert _kept_section(path) == "\n" + dmp + "\n" + planners
    path.write_text("# Benchmark results\n\nold\n\n" + planners, encoding="utf-8")
    assert _kept_section(path) == "\n" + planners
