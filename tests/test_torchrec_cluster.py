"""Planning across devices and running the plan on TorchRec's DistributedModelParallel (2 CPU ranks, gloo)."""

from __future__ import annotations

from typing import Any

import pytest

from embmap.ir.cluster import Sharding, verify_cluster_plan
from embmap.ir.errors import InfeasibleError, SpecError, VerificationError
from embmap.ir.plan import relative_gap
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.mapper import SolverSettings
from embmap.mapper.torchrec import cluster as cluster_module
from embmap.mapper.torchrec.cluster import (
    cluster,
    column_blocks,
    compile_cluster,
    device_settings,
    device_workloads,
    row_blocks,
)
from embmap.mapper.torchrec.planner import available

needs_torchrec = pytest.mark.skipif(not available(), reason="TorchRec is not installed (make installs it)")
FAST = SolverSettings(time_limit_s=2.0, workers=1, seed=0)
MiB = 1 << 20


def small_workload() -> WorkloadSpec:
    tables = (
        TableSpec(name="big", rows=40_000, dim=32, pooling=8),
        TableSpec(name="wide", rows=2_000, dim=64, pooling=4),
        TableSpec(name="mid", rows=5_000, dim=12, pooling=2),
        TableSpec(name="tiny", rows=50, dim=16, pooling=1),
        TableSpec(name="free", rows=1_000, dim=16, pooling=3),
    )
    return WorkloadSpec(name="dmp-small", batch_size=64, tables=tables)


# One sharding type forced per table (as TorchRec's ParameterConstraints.sharding_types do), so that the
# end-to-end run covers all four; "free" is the planner's choice.
FORCED = {"big": ["row_wise"], "wide": ["column_wise"], "mid": ["table_wise"], "tiny": ["data_parallel"]}


def test_row_and_column_blocks_match_torchrecs_even_split() -> None:
    assert row_blocks(150, 2) == ((0, 75), (75, 150))
    assert row_blocks(10, 4) == ((0, 3), (3, 6), (6, 9), (9, 10))
    assert column_blocks(64, 2) == ((0, 32), (32, 64))
    assert column_blocks(12, 2) is None  # 6-column shards: not a multiple of 4
    assert column_blocks(16, 1) is None


def test_devices_get_a_share_of_this_machines_cores_and_memory() -> None:
    spec = cluster("cpu", 2)
    one = cluster("cpu", 1)
    assert spec.device.main.capacity_bytes == one.device.main.capacity_bytes // 2
    assert spec.device.cores == max(1, one.device.cores // 2)
    assert cluster("ascend910", 4).device.cores == 32  # separate chips keep all their cores


def test_replicas_when_memory_allows_and_sharding_when_it_does_not() -> None:
    w = WorkloadSpec(
        name="w",
        batch_size=512,
        tables=tuple(TableSpec(name=f"t{i}", rows=100_000, dim=64, pooling=4) for i in range(4)),
    )
    roomy = compile_cluster(w, cluster("cpu", 2, memory_bytes=1 << 30), solver=FAST)
    assert {s.sharding for s in roomy.shardings} == {Sharding.DATA_PARALLEL}  # no all-to-all, half the samples each
    # 4 tables of 24.4 MiB, 60 MiB per device: at most two replicas fit anywhere
    tight = compile_cluster(w, cluster("cpu", 2, memory_bytes=60 * MiB), solver=FAST)
    assert any(s.sharding is not Sharding.DATA_PARALLEL for s in tight.shardings)
    for d in tight.devices:
        assert d.memory_bytes <= 60 * MiB
        assert d.send_bytes > 0 and d.finish_s == pytest.approx(d.compute_s + d.comm_s)
    assert tight.makespan_s > roomy.makespan_s
    verify_cluster_plan(tight)


def test_device_shares_are_what_each_device_serves() -> None:
    w = small_workload()
    plan = compile_cluster(w, cluster("cpu", 2, memory_bytes=64 * MiB), shardings=FORCED, solver=FAST)
    kinds = {s.table: s.sharding for s in plan.shardings}
    assert {k: [v.value] for k, v in kinds.items() if k != "free"} == FORCED
    for d in range(2):
        parallel, *replicas = device_workloads(plan.workload, plan.shardings, d, 2)
        names = {t.name: t for t in parallel.tables}
        assert parallel.batch_size == 64 and replicas[0].batch_size == 32
        assert names[f"big.rows{d * 20_000}-{(d + 1) * 20_000}"].rows == 20_000
        assert names[f"big.rows{d * 20_000}-{(d + 1) * 20_000}"].pooling == 4  # half the lookups land here
        assert names[f"wide.cols{d * 32}-{(d + 1) * 32}"].dim == 32
        assert "tiny" in {t.name for t in replicas[0].tables}
        assert ("mid" in names) == (plan.sharding_of("mid").ranks == (d,))


def tight_workload() -> WorkloadSpec:
    """Six tables on three devices of 60 MiB: the replicas of the big ones do not all fit, so the device level
    mixes sharding types and its bound comes from the packing argument rather than a single table."""
    sizes = [(200_000, 32), (150_000, 32), (80_000, 64), (20_000, 16), (5_000, 16), (1_000, 8)]
    tables = tuple(TableSpec(name=f"t{i}", rows=r, dim=d, pooling=2 + i) for i, (r, d) in enumerate(sizes))
    return WorkloadSpec(name="tight", batch_size=256, tables=tables)


def without_wall_clock(value: Any) -> Any:
    """A plan's JSON with every wall-clock time left out: what must repeat from run to run."""
    if isinstance(value, dict):
        return {k: without_wall_clock(v) for k, v in value.items() if k != "wall_s"}
    if isinstance(value, list):
        return [without_wall_clock(v) for v in value]
    return value


def test_two_runs_give_identical_plans_with_the_bound_and_gap_of_the_device_level() -> None:
    spec = cluster("ascend910", 3, memory_bytes=60 * MiB)
    first = compile_cluster(tight_workload(), spec, solver=FAST)
    second = compile_cluster(tight_workload(), spec, solver=FAST)
    assert without_wall_clock(first.model_dump(mode="json")) == without_wall_clock(second.model_dump(mode="json"))
    report = first.solver
    assert len({s.sharding for s in first.shardings}) > 1
    assert 0 < report.best_bound_s <= report.objective_s
    assert report.gap == relative_gap(report.objective_s, report.best_bound_s)
    assert report.status in ("OPTIMAL", "FEASIBLE") and (report.status == "OPTIMAL") == (report.gap == 0)


def test_devices_with_the_same_share_are_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """All tables replicated on 4 devices: one workload, one compile (within the devices' budget), no pack."""
    compiled: list[tuple[str, float]] = []
    original = cluster_module.compile

    def counting(workload: WorkloadSpec, *args: Any, **kwargs: Any) -> Any:
        compiled.append((workload.name, kwargs["solver"].time_limit_s))
        return original(workload, *args, **kwargs)

    monkeypatch.setattr(cluster_module, "compile", counting)
    w = small_workload()
    plan = compile_cluster(
        w, cluster("cpu", 4, memory_bytes=1 << 30), shardings={"free": ["data_parallel"]}, solver=FAST
    )
    assert {s.sharding for s in plan.shardings} == {Sharding.DATA_PARALLEL}
    assert compiled == [("dmp-small.replicas", FAST.time_limit_s)]
    assert all(d.plans == plan.devices[0].plans for d in plan.devices)
    assert "pack" not in plan.devices[0].plans[0].pipeline.split(",")
    verify_cluster_plan(plan)


def test_the_devices_share_a_budget_of_deterministic_time() -> None:
    limit = SolverSettings(time_limit_s=2.0, seed=3)
    assert device_settings(limit, 1) == limit
    assert device_settings(limit, 16).time_limit_s == 1.0 and device_settings(limit, 16).seed == 3
    assert device_settings(limit, 64).time_limit_s == 0.25
    assert device_settings(limit, 1000).time_limit_s == cluster_module.MIN_DEVICE_LIMIT_S
    assert device_settings(SolverSettings(time_limit_s=0.05), 64).time_limit_s == 0.05


def test_bad_sharding_constraints_and_tables_too_large_for_the_devices() -> None:
    w = small_workload()
    with pytest.raises(SpecError, match="shardings.nope"):
        compile_cluster(w, cluster("cpu", 2), shardings={"nope": ["row_wise"]}, solver=FAST)
    with pytest.raises(SpecError, match="unknown sharding type"):
        compile_cluster(w, cluster("cpu", 2), shardings={"big": ["diagonal"]}, solver=FAST)
    with pytest.raises(InfeasibleError, match="shardings.mid"):
        compile_cluster(w, cluster("cpu", 2), shardings={"mid": ["column_wise"]}, solver=FAST)  # 6-column shards
    huge = WorkloadSpec(name="huge", batch_size=64, tables=(TableSpec(name="t", rows=10_000_000, dim=64),))
    with pytest.raises(InfeasibleError, match=r"table t: needs 2.38GiB .* 2xcpu"):
        compile_cluster(huge, cluster("cpu", 2, memory_bytes=1 << 30), solver=FAST)


def test_a_broken_cluster_plan_fails_verification() -> None:
    plan = compile_cluster(small_workload(), cluster("cpu", 2, memory_bytes=64 * MiB), shardings=FORCED, solver=FAST)
    rw = plan.sharding_of("big")
    gap = rw.model_copy(update={"rows": ((0, 19_000), (20_000, 40_000))})
    broken = plan.model_copy(update={"shardings": tuple(gap if s.table == "big" else s for s in plan.shardings)})
    with pytest.raises(VerificationError, match="do not cover"):
        verify_cluster_plan(broken)


@needs_torchrec
def test_import_reads_tables_and_pooling_from_torchrec() -> None:
    from torchrec.distributed.planner.types import ParameterConstraints
    from torchrec.modules.embedding_configs import DataType, EmbeddingBagConfig

    from embmap.mapper.torchrec.io import workload_from_torchrec

    configs = [
        EmbeddingBagConfig(name="a", embedding_dim=16, num_embeddings=100, feature_names=["f1", "f2"]),
        EmbeddingBagConfig(name="b", embedding_dim=32, num_embeddings=7, feature_names=["g"], data_type=DataType.FP16),
        EmbeddingBagConfig(name="c", embedding_dim=8, num_embeddings=9, feature_names=["h"]),
    ]
    w = workload_from_torchrec(
        configs,
        batch_size=256,
        pooling={"c": 5.4},
        constraints={"a": ParameterConstraints(pooling_factors=[3.0, 2.0])},
    )
    got = {t.name: (t.rows, t.dim, t.dtype.value, t.pooling) for t in w.tables}
    assert got == {"a": (100, 16, "fp32", 5), "b": (7, 32, "fp16", 1), "c": (9, 8, "fp32", 5.4)}  # means kept
    assert w.batch_size == 256 and w.assumptions == (w.assumptions[0],) and w.assumptions[0].endswith("without one: b")
    with pytest.raises(SpecError, match="pooling.zz"):
        workload_from_torchrec(configs, batch_size=8, pooling={"zz": 1.0})


@needs_torchrec
def test_export_lays_out_the_shards_the_plan_assumed() -> None:
    from embmap.mapper.torchrec.io import sharding_plan

    plan = compile_cluster(small_workload(), cluster("cpu", 2, memory_bytes=64 * MiB), shardings=FORCED, solver=FAST)
    exported = sharding_plan(plan).plan[""]
    for s in plan.shardings:
        p = exported[s.table]
        assert p.sharding_type == s.sharding.value
        assert sorted(p.ranks) == sorted(s.ranks)
        if p.sharding_spec is not None:
            shards = sorted(
                (m.placement.rank(), tuple(m.shard_offsets), tuple(m.shard_sizes)) for m in p.sharding_spec.shards
            )
            ours = sorted(
                (r, (rows[0], cols[0]), (rows[1] - rows[0], cols[1] - cols[0]))
                for r, rows, cols in zip(s.ranks, s.rows, s.columns, strict=True)
            )
            assert shards == ours


@needs_torchrec
def test_distributed_model_parallel_runs_the_exported_plan_exactly() -> None:
    """2 processes, gloo on CPU: DMP with our ShardingPlan gives the unsharded collection's pooled outputs."""
    from embmap.mapper.torchrec.dmp import run_dmp
    from embmap.mapper.torchrec.io import sharding_plan

    w = small_workload()
    plan = compile_cluster(w, cluster("cpu", 2, memory_bytes=64 * MiB), shardings=FORCED, solver=FAST)
    assert {s.sharding for s in plan.shardings} == set(Sharding)
    results = run_dmp(plan.workload, sharding_plan(plan), world_size=2)
    assert [r.rank for r in results] == [0, 1]
    for r in results:
        assert r.outputs == 32 * (32 + 64 + 12 + 16 + 16)  # the rank's 32 samples, every table's pooled row
        assert r.max_abs_error < 1e-5


def test_cli_compiles_explains_and_exports_a_cluster_plan(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    from embmap.mapper.cli import main

    plan = tmp_path / "cluster.json"
    args = ["compile", "avazu", "--target", "cpu", "--devices", "2", "--row-cap", "10000", "--time-limit", "1"]
    assert main([*args, "--device-memory", "6000000", "-o", str(plan)]) == 0
    assert "on 2xcpu" in capsys.readouterr().out
    assert main(["explain", str(plan)]) == 0
    text = capsys.readouterr().out
    assert "device  memory" in text and "shardings:" in text
    # Bad input: one line, exit 2, nothing written.
    assert main(["run", str(plan)]) == 2
    assert "a plan across devices" in capsys.readouterr().err
    assert main(["compile", "avazu", "--target", "cpu", "--link-gbps", "5", "-o", str(tmp_path / "x.json")]) == 2
    assert "--link-gbps: only applies with --devices" in capsys.readouterr().err
    assert main([*args, "--device-memory", "100000", "-o", str(tmp_path / "y.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "2xcpu" in err and "--row-cap" in err
    assert not (tmp_path / "x.json").exists() and not (tmp_path / "y.json").exists()
    if available():
        out = tmp_path / "plan.pt"
        assert main(["export", str(plan), "--format", "torchrec", "-o", str(out)]) == 0
        import torch

        loaded = torch.load(out, weights_only=False)
        assert set(loaded.plan[""]) == {t.name for t in compile_cluster_tables(plan)}


def compile_cluster_tables(path):  # type: ignore[no-untyped-def]
    from embmap.mapper.planio import load_any_plan

    return load_any_plan(path).workload.tables
