"""When no plan exists, the error is one line naming the tables and memories involved and the fixes, with
the numbers behind them; on the command line it exits with status 2. A row cap it suggests compiles: the
same compile rerun with it succeeds (checked on generated workloads at the end)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from embmap import mapper
from embmap.ir.errors import InfeasibleError
from embmap.ir.spec import DType, TableSpec, TargetSpec, WorkloadSpec
from embmap.ir.verify import verify_plan
from embmap.mapper import SolverSettings
from embmap.mapper.cli import main
from embmap.mapper.torchrec.cluster import cluster, compile_cluster
from tests.conftest import KiB, examples, tiny_target

FORCE_L1 = "profile,select-strategy{strategies=L1},partition,assign-cores,schedule"
MiB = 1 << 20


def workload(*tables: TableSpec) -> WorkloadSpec:
    return WorkloadSpec(name="w", batch_size=64, tables=tables)


def infeasible(w: WorkloadSpec, target: TargetSpec, pipeline: str = "embmap") -> str:
    with pytest.raises(InfeasibleError) as info:
        mapper.compile(w, target, pipeline, baselines=False, solver=SolverSettings(time_limit_s=5.0))
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_table_larger_than_every_memory() -> None:
    # 20M rows x 128 B = 2.38 GiB; tiny's HBM holds 1 GiB = 8388608 rows of 128 B.
    message = infeasible(workload(TableSpec(name="big", rows=20_000_000, dim=32)), tiny_target())
    assert message.startswith("table big: needs 2.38GiB (20000000 rows x 128 B)")
    assert "the largest memory of tiny (HBM) holds 1GiB" in message
    assert "--row-cap 8388608 or less" in message


def test_tables_together_larger_than_the_memory() -> None:
    # Two tables of 610 MiB: 1.19 GiB together; 4194304 rows of 128 B each fill 1 GiB.
    tables = (TableSpec(name="a", rows=5_000_000, dim=32), TableSpec(name="b", rows=5_000_000, dim=32))
    message = infeasible(workload(*tables), tiny_target())
    assert message.startswith("workload.tables: together need 1.19GiB; tiny HBM holds 1GiB (largest table a: 610MiB)")
    assert "--row-cap 4194304 or less" in message


def test_a_forced_preloaded_strategy_that_cannot_fit() -> None:
    # 3000 rows x 128 B = 375 KiB; an L1 of 64 KiB holds 512 rows, three cores' shards 192 KiB (1536 rows).
    message = infeasible(workload(TableSpec(name="t", rows=3000, dim=32)), tiny_target(cores=3), FORCE_L1)
    assert message.startswith(
        "table t: no option fits: strategies L1 preload it, it needs 375KiB (3000 rows x 128 B) and one core's "
        "L1 holds 64KiB (512 rows); 3 row shards on 3 cores hold 192KiB"
    )
    assert "select-strategy{strategies=GM:GM-UB:L1}" in message
    assert "--row-cap 1536 or less" in message
    assert "a target whose L1 holds 125KiB or more" in message  # 384000 B over 3 shards
    assert "max-parts" not in message  # six shards would need six cores; there are three


def test_a_part_limit_that_prevents_sharding_names_the_parts_needed() -> None:
    pipeline = "profile,select-strategy{strategies=L1},partition{max-parts=2},assign-cores,schedule"
    message = infeasible(workload(TableSpec(name="t", rows=3000, dim=32)), tiny_target(cores=8), pipeline)
    assert "2 row shards on 2 cores hold 128KiB" in message
    assert "allow 6 parts (partition{max-parts=6})" in message
    assert "--row-cap 1024 or less" in message


FOUR = tuple(TableSpec(name=n, rows=500, dim=32) for n in "abcd")  # 62.5 KiB each, 250 KiB in all


def test_replicas_exceeding_the_local_buffers_are_proven_infeasible() -> None:
    message = infeasible(workload(*FOUR), tiny_target(cores=3), FORCE_L1)
    assert message.startswith(
        "assign-cores: no placement exists (CP-SAT proved it): tables that must be preloaded need 250KiB of "
        "local buffer at the least (a 62.5KiB, b 62.5KiB, c 62.5KiB and 1 more); the 3 cores hold 3 x 64KiB = 192KiB"
    )
    assert "allow a shared-memory strategy for a, b, c and 1 more" in message
    # With 384 rows the four tables would fill the three buffers to the byte, in a placement the compile may or
    # may not find. The cap suggested is one under which it cannot miss, whatever options and cores the
    # placement picks: at 153 rows, a table's parts take at most 19.1 KiB of a core, so three tables leave
    # 6.6 KiB on every core, room for a third of the fourth (3 x 19584 + 6528 B <= 64 KiB).
    assert "--row-cap 153 or less" in message
    assert follow_the_suggestion(workload(*FOUR), tiny_target(cores=3), FORCE_L1)[0] == 153
    assert "a target with at least 4 cores" in message


def test_the_greedy_pipeline_names_the_tables_not_the_first_one() -> None:
    pipeline = FORCE_L1.replace("assign-cores", "assign-cores{method=greedy}")
    tables = (TableSpec(name="small", rows=10, dim=32, distribution=None), *FOUR)
    message = infeasible(workload(*tables), tiny_target(cores=3), pipeline)
    assert message.startswith("assign-cores: the greedy placement found no way to pack the local buffers")
    assert "(a 62.5KiB, b 62.5KiB, c 62.5KiB and 2 more)" in message
    assert "small" not in message.split(";")[0].split("(")[1]


def test_round_robin_names_its_core_and_the_bytes_left() -> None:
    # 37.5 KiB tables dealt to 2 cores of 64 KiB: the third lands on core 0, with 26.5 KiB left.
    tables = tuple(TableSpec(name=n, rows=300, dim=32) for n in "abcd")
    pipeline = FORCE_L1.replace("assign-cores", "assign-cores{method=round-robin}")
    message = infeasible(workload(*tables), tiny_target(cores=2), pipeline)
    assert message.startswith(
        "table c: round-robin deals it to core 0, whose local buffer has 26.5KiB left of 64KiB; its smallest "
        "whole-table option needs 37.5KiB"
    )


def test_table_wise_greedy_across_devices_gives_the_devices_and_row_cap() -> None:
    # Three 610 MiB tables on two devices of 1 GiB: together they fit, whole tables do not.
    w = WorkloadSpec(
        name="w", batch_size=64, tables=tuple(TableSpec(name=n, rows=5_000_000, dim=32) for n in ("x", "y", "z"))
    )
    with pytest.raises(InfeasibleError) as info:
        compile_cluster(
            w,
            cluster("cpu", 2, memory_bytes=1 << 30),
            device_method="table-wise-greedy",
            solver=SolverSettings(time_limit_s=1.0),
        )
    message = str(info.value)
    assert "tables need 1.79GiB (largest x: 610MiB), each of the 2 devices' DRAM holds 1GiB" in message
    assert "--devices 3 or more" in message and "--row-cap 2796202 or less" in message  # 3 x 2796202 x 128 B <= 1 GiB


def test_cli_reports_infeasibility_in_one_line_with_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "w.json"
    spec.write_text(workload(TableSpec(name="big", rows=20_000_000, dim=32)).model_dump_json())
    target = tmp_path / "t.json"
    target.write_text(tiny_target().model_dump_json())
    out = tmp_path / "plan.json"
    assert main(["compile", str(spec), "--target", str(target), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("embmap: error: table big: needs 2.38GiB")
    assert not out.exists()
    assert main(["compile", str(spec), "--target", str(target), "--row-cap", "8388608", "-o", str(out)]) == 0
    assert out.exists()  # the suggested fix works


# Following a suggested row cap ---------------------------------------------------------------------------
# The cap applies to every table, and the tables that must be preloaded share the local buffers: the cap an
# error suggests is one under which they all fit and the placement finds them room, so the same compile rerun
# with it succeeds. Generated: tables that only L1 or L1-UB may serve, a tiny target, a part limit or
# partition policy, and CP-SAT or the greedy placement.

SUGGESTED_CAP = re.compile(r"--row-cap (\d+) or less")
FAST = SolverSettings(time_limit_s=1.0)


def follow_the_suggestion(w: WorkloadSpec, target: TargetSpec, pipeline: str) -> tuple[int | None, str]:
    """Compile; where no plan exists and the error suggests a row cap, compile again with it, which must
    succeed with a plan that verifies. The cap followed (or None) and what happened, for the statistics."""
    try:
        mapper.compile(w, target, pipeline, baselines=False, solver=FAST)
        return None, "feasible"
    except InfeasibleError as exc:
        message = str(exc)
    source = "assign-cores" if message.startswith("assign-cores") else "partition"
    found = SUGGESTED_CAP.search(message)
    if found is None:
        return None, f"{source}: no row cap suggested"
    cap = int(found.group(1))
    plan = mapper.compile(w, target, pipeline, row_cap=cap, baselines=False, solver=FAST)
    verify_plan(plan)
    assert plan.workload.row_cap == cap
    return cap, f"{source}: the row cap suggested compiles"


@st.composite
def preloaded_only(draw: st.DrawFn, tables: int, fit_alone: bool) -> tuple[WorkloadSpec, TargetSpec, str]:
    """`tables` tables that only preloaded strategies may serve, on a target of a few small local buffers,
    and a pipeline: a part limit or partition policy, then CP-SAT (with balance and pack, as in the embmap
    pipeline) or greedy. With `fit_alone`, each table fits the buffers of as many cores as the partition lets
    it use, from half of that up (most errors are then assign-cores's: the tables do not pack together);
    else up to 20,000 rows (most errors are partition's: some table has no option that fits)."""
    cores = draw(st.sampled_from([1, 2, 3, 4, 7, 8]))
    local = draw(st.sampled_from([4 * KiB, 10_000, 64 * KiB]))
    parts, partition = draw(
        st.sampled_from(
            [
                (cores, "partition"),
                (min(cores, 2), "partition{max-parts=2}"),
                (1, "partition{policy=whole}"),
                (1, "partition{policy=split-all}"),
            ]
        )
    )
    specs = []
    for i in range(tables):
        dim, dtype = draw(st.sampled_from([4, 8, 16, 24, 32, 50])), draw(st.sampled_from([DType.FP32, DType.FP16]))
        most = max(1, parts * local // (dim * dtype.bytes)) if fit_alone else 20_000
        rows = draw(st.integers(max(1, min(50, most // 2)), most))
        specs.append(TableSpec(name=f"t{i}", rows=rows, dim=dim, dtype=dtype, pooling=draw(st.sampled_from([1, 4]))))
    workload = WorkloadSpec(name="w", batch_size=draw(st.sampled_from([3, 64])), tables=tuple(specs))
    strategies = draw(st.sampled_from(["L1", "L1-UB", "L1:L1-UB"]))
    assign = draw(st.sampled_from(["assign-cores,balance,pack", "assign-cores{method=greedy}"]))
    pipeline = f"profile,select-strategy{{strategies={strategies}}},{partition},{assign},schedule,verify"
    return workload, tiny_target(cores=cores, local_bytes=local), pipeline


@examples(12)
@given(case=preloaded_only(tables=1, fit_alone=False))
def test_the_row_cap_suggested_for_one_table_compiles(case: tuple[WorkloadSpec, TargetSpec, str]) -> None:
    event(follow_the_suggestion(*case)[1])


@examples(16)
@given(tables=st.integers(2, 5), data=st.data())
def test_the_row_cap_suggested_for_several_tables_compiles(tables: int, data: st.DataObject) -> None:
    event(follow_the_suggestion(*data.draw(preloaded_only(tables, fit_alone=False)))[1])


@examples(16)
@given(tables=st.integers(3, 8), data=st.data())
def test_the_row_cap_suggested_when_tables_do_not_pack_compiles(tables: int, data: st.DataObject) -> None:
    event(follow_the_suggestion(*data.draw(preloaded_only(tables, fit_alone=True)))[1])


def test_a_table_error_suggests_a_cap_that_leaves_room_for_the_other_tables() -> None:
    # t alone fits 1536 rows in three shards of 64 KiB (the cap suggested before), but the cap applies to u as
    # well and both share the three local buffers: 2 x 768 rows x 128 B = 3 x 64 KiB is the most they hold.
    tables = (TableSpec(name="t", rows=3000, dim=32), TableSpec(name="u", rows=3000, dim=32))
    message = infeasible(workload(*tables), tiny_target(cores=3), FORCE_L1)
    assert message.startswith("table t: no option fits")
    cap, _ = follow_the_suggestion(workload(*tables), tiny_target(cores=3), FORCE_L1)
    assert cap is not None and 512 <= cap <= 768
