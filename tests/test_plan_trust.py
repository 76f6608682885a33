"""Plan files you can trust: written atomically, refused when edited after compiling (plans across devices
too) or when a key is given twice, refused for tables, batch sizes or targets other than the ones they were
compiled for, and printed with the control characters of their names escaped."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from embmap.ir.cluster import ClusterPlan
from embmap.ir.errors import SpecError
from embmap.ir.output import write_text_atomic
from embmap.ir.plan import ExecutionPlan, PartitionMode, Strategy
from embmap.ir.spec import TableSpec, WorkloadSpec, Zipf
from embmap.ir.targets import ascend910, cpu
from embmap.mapper import SolverSettings
from embmap.mapper.cli import main
from embmap.mapper.planio import load_any_plan, load_plan, save_plan
from embmap.mapper.torchrec.cluster import cluster, compile_cluster
from embmap.runtime import RunConfig, materialize_for, run_plan
from tests.test_runtime import plan_for


@pytest.fixture(scope="module")
def plan() -> ExecutionPlan:
    return plan_for(Strategy.GM, PartitionMode.SAMPLES, 1)


@pytest.fixture
def path(plan: ExecutionPlan, tmp_path: Path) -> Path:
    out = tmp_path / "plan.json"
    save_plan(plan, out)
    return out


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# Atomic writes ---------------------------------------------------------------------------------------------


def test_a_failure_mid_write_leaves_no_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "plan.json"
    text = "x" * 100_000 + "\ud800"  # a lone surrogate cannot be encoded: the write fails part-way
    with pytest.raises(UnicodeEncodeError):
        write_text_atomic(target, text)
    assert leftovers(tmp_path) == []


def test_a_failed_rewrite_keeps_the_old_file_whole(
    path: Path, plan: ExecutionPlan, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = path.read_text()

    def broken(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError, match="disk full"):
        save_plan(plan.model_copy(update={"pipeline": "other"}), path)
    assert leftovers(path.parent) == ["plan.json"]
    assert path.read_text() == before


# Plans edited after compiling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        ("workload", lambda d: d["workload"].update(title="renamed")),
        ("workload", lambda d: d["workload"]["tables"][0].update(pooling=4)),
        ("target", lambda d: d["target"]["main"].update(capacity_bytes=d["target"]["main"]["capacity_bytes"] * 2)),
        ("target", lambda d: d["target"]["local"].update(latency_s=0.5)),
    ],
)
def test_an_edited_workload_or_target_is_refused(path: Path, field: str, edit: object) -> None:
    data = json.loads(path.read_text())
    recorded = data[f"{field}_digest"]
    edit(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError) as info:
        load_plan(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"plan.{field}: was edited after compiling")
    assert recorded in message and "recompile" in message


def test_explain_refuses_an_edited_plan_with_status_2(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = json.loads(path.read_text())
    data["target"]["cores"] = data["target"]["cores"] + 1
    path.write_text(json.dumps(data))
    assert main(["explain", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "plan.target: was edited after compiling" in err


# Plans used for other tables or targets -----------------------------------------------------------------


def variant(plan: ExecutionPlan, **table: object) -> WorkloadSpec:
    t = plan.workload.tables[0]
    return plan.workload.model_copy(update={"tables": (t.model_copy(update=table),)})


def test_the_workload_the_plan_was_compiled_for_is_accepted(path: Path, plan: ExecutionPlan) -> None:
    renamed = plan.workload.model_copy(update={"name": "same-tables", "title": "another title"})
    assert load_plan(path, workload=renamed, target=plan.target) == plan


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"rows": 2000}, "has table t with rows 2000 where the plan has 3000"),
        ({"dim": 16}, "has table t with dim 16 where the plan has 8"),
        ({"pooling": 1}, "has table t with pooling 1 where the plan has 3"),
        ({"name": "u"}, "lacks the plan's table t and has table u, not in the plan"),
        ({"distribution": Zipf(alpha=2.0)}, "has table t with distribution kind=zipf, alpha=2.0 where the plan has"),
    ],
)
def test_a_workload_with_other_tables_is_refused(
    path: Path, plan: ExecutionPlan, change: dict[str, object], words: str
) -> None:
    with pytest.raises(SpecError) as info:
        load_plan(path, workload=variant(plan, **change))
    message = str(info.value)
    assert message.startswith(f"plan.workload: was compiled for {plan.workload.name}; workload ")
    assert words in message and "(fix: recompile the plan for" in message


def test_a_workload_with_another_batch_or_an_extra_table_is_refused(path: Path, plan: ExecutionPlan) -> None:
    bigger = plan.workload.model_copy(update={"batch_size": 2 * plan.workload.batch_size})
    with pytest.raises(SpecError, match=f"has batch size {2 * plan.workload.batch_size} where the plan has 96"):
        load_plan(path, workload=bigger)
    extra = plan.workload.model_copy(
        update={"tables": (*plan.workload.tables, TableSpec(name="v", rows=10, dim=8, distribution=Zipf()))}
    )
    with pytest.raises(SpecError, match="has table v, not in the plan"):
        load_plan(path, workload=extra)


def test_another_target_is_refused(path: Path, plan: ExecutionPlan) -> None:
    with pytest.raises(SpecError) as info:
        load_plan(path, target="ascend910")
    assert str(info.value).startswith(
        f"plan.target: was compiled for cpu; target ascend910 has cores 32 where the plan's target cpu has "
        f"{plan.target.cores}"
    )
    smaller = plan.target.model_copy(update={"main": ascend910().main})
    with pytest.raises(SpecError, match=r"has main\.name HBM where the plan's target cpu has DRAM"):
        load_plan(path, target=smaller)


def test_run_command_checks_the_workload_and_target(
    path: Path, plan: ExecutionPlan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = tmp_path / "other.json"
    other.write_text(variant(plan, rows=2000).model_dump_json())
    assert main(["run", str(path), "--workload", str(other), "--batches", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "has table t with rows 2000 where the plan has 3000" in err
    assert main(["run", str(path), "--target", "ascend910", "--batches", "1"]) == 2
    assert "plan.target: was compiled for cpu" in capsys.readouterr().err
    same, target = tmp_path / "same.json", tmp_path / "target.json"
    same.write_text(plan.workload.model_dump_json())
    target.write_text(plan.target.model_dump_json())
    assert main(["run", str(path), "--workload", str(same), "--target", str(target), "--batches", "1"]) == 0


def test_run_refuses_data_made_for_other_tables(plan: ExecutionPlan) -> None:
    config = RunConfig(batches=1, warmup=0, index_batches=2, backend="numpy")
    other = plan.model_copy(update={"workload": variant(plan, rows=2000)})
    data = materialize_for(other, config)
    try:
        with pytest.raises(SpecError, match=r"^run data: does not fit plan .*: it has table t with rows 2000 where"):
            run_plan(plan, config, data)
        with pytest.raises(SpecError, match="has 2 index batches of seed 0 where the run config asks 2 of seed 5"):
            run_plan(other, RunConfig(batches=1, warmup=0, index_batches=2, seed=5), data)
    finally:
        data.close()


# A key given twice -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["pipeline", "makespan_s"])
def test_a_plan_that_gives_a_key_twice_is_refused(path: Path, key: str) -> None:
    text = path.read_text()
    data = json.loads(text)
    path.write_text("{" + json.dumps(key) + ": " + json.dumps(data[key]) + ", " + text.lstrip()[1:])
    with pytest.raises(SpecError, match=f"^plan: the top level has the key '{key}' twice"):
        load_plan(path)


def test_a_key_given_twice_inside_a_plan_is_refused_with_its_path(path: Path) -> None:
    text = path.read_text().replace('"items": [', '"items": [{"id": 0, "id": 0},', 1)
    path.write_text(text)
    with pytest.raises(SpecError, match=r"^plan: items\[0\] has the key 'id' twice"):
        load_plan(path)
    assert main(["explain", str(path)]) == 2


# Plans across devices --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_plan() -> ClusterPlan:
    tables = (TableSpec(name="a", rows=4000, dim=16, pooling=2), TableSpec(name="b", rows=500, dim=8))
    return compile_cluster(
        WorkloadSpec(name="c", batch_size=64, tables=tables),
        cluster("cpu", 2, memory_bytes=1 << 26),
        solver=SolverSettings(time_limit_s=1.0, workers=1, seed=0),
    )


def test_a_cluster_plan_records_the_digests_of_its_workload_and_cluster(
    cluster_plan: ClusterPlan, tmp_path: Path
) -> None:
    assert cluster_plan.workload_digest == cluster_plan.workload.digest()
    assert cluster_plan.cluster_digest == cluster_plan.cluster.digest()
    path = tmp_path / "cluster.json"
    save_plan(cluster_plan, path)
    assert load_any_plan(path) == cluster_plan


@pytest.mark.parametrize(
    ("field", "edit"),
    [
        ("plan.workload", lambda d: d["workload"]["tables"][0].update(pooling=4)),
        ("plan.workload", lambda d: d["workload"].update(name="other")),
        ("plan.cluster", lambda d: d["cluster"]["link"].update(bandwidth_bytes_per_s=1.0)),
        ("plan.cluster", lambda d: d["cluster"]["device"]["main"].update(latency_s=0.5)),
        (
            "plan.devices[1].plans[0].workload",
            lambda d: d["devices"][1]["plans"][0]["workload"]["tables"][0].update(pooling=9),
        ),
        ("plan.devices[0].plans[0].target", lambda d: d["devices"][0]["plans"][0]["target"]["main"].update(name="X")),
    ],
)
def test_an_edited_cluster_plan_is_refused(
    cluster_plan: ClusterPlan, tmp_path: Path, field: str, edit: object, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cluster.json"
    save_plan(cluster_plan, path)
    data = json.loads(path.read_text())
    edit(data)  # type: ignore[operator]
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError) as info:
        load_any_plan(path)
    assert str(info.value).startswith(f"{field}: was edited after compiling")
    assert main(["explain", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{field}: was edited after compiling" in err


def test_a_cluster_plan_without_digests_is_refused(cluster_plan: ClusterPlan, tmp_path: Path) -> None:
    path = tmp_path / "cluster.json"
    save_plan(cluster_plan, path)
    data = json.loads(path.read_text())
    del data["workload_digest"], data["cluster_digest"]
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match="digest"):
        load_any_plan(path)
    data["schema_version"] = "embmap.cluster-plan/1"
    path.write_text(json.dumps(data))
    with pytest.raises(SpecError, match="recompile the plan"):
        load_any_plan(path)


# Names printed on a terminal -------------------------------------------------------------------------------

EVIL = "w\n\x1b[31mred\u202e"  # a newline would forge a line, ESC [31m a colour, U+202E reverse the text
SHOWN = "w\\n\\x1b[31mred\\u202e"


def _no_raw_controls(text: str) -> bool:
    return not any(ch in text for ch in "\x1b\u202e\r") and all(line.isprintable() for line in text.splitlines())


def test_names_are_printed_escaped_by_explain_and_run(
    plan: ExecutionPlan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    workload = plan.workload.model_copy(update={"name": EVIL})
    path = tmp_path / "plan.json"
    save_plan(plan.model_copy(update={"workload": workload, "workload_digest": workload.digest()}), path)
    assert main(["explain", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"plan: {SHOWN} on cpu ") and _no_raw_controls(out)
    assert main(["run", str(path), "--batches", "1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"ran {SHOWN} plan on cpus") and _no_raw_controls(out)
    other = tmp_path / "other.json"  # an error that quotes the name
    other.write_text(variant(plan, rows=2000).model_copy(update={"name": EVIL}).model_dump_json())
    assert main(["run", str(path), "--workload", str(other), "--batches", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"was compiled for {SHOWN}; workload {SHOWN} has table t" in err
    assert _no_raw_controls(err)


def test_names_are_printed_escaped_by_compile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    workload, target = tmp_path / "w.json", tmp_path / "t.yaml"
    tables = (TableSpec(name="t", rows=100, dim=8),)
    workload.write_text(WorkloadSpec(name=EVIL, batch_size=32, tables=tables).model_dump_json())
    target.write_text(cpu().model_copy(update={"name": "chip\x1b]0;title\x07"}).model_dump_json())  # YAML reads JSON
    out = tmp_path / "plan.json"
    args = ["compile", str(workload), "--target", str(target), "-o", str(out), "-q", "--no-baselines"]
    assert main([*args, "--time-limit", "1", "--print-ir-after", "verify", "--explain"]) == 0
    captured = capsys.readouterr()
    assert f"{SHOWN} on chip\\x1b]0;title\\x07, makespan" in captured.out
    assert f"plan: {SHOWN} on chip\\x1b]0;title\\x07 (" in captured.out  # --explain
    assert f"module @{SHOWN} target=@chip\\x1b]0;title\\x07 " in captured.err  # --print-ir-after
    assert _no_raw_controls(captured.out) and _no_raw_controls(captured.err)


@pytest.mark.parametrize("name", ["t\n", "t\x1b[31m", "a\nb"])
def test_a_table_name_with_control_characters_is_refused_on_one_escaped_line(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Table names are letters, digits, '_', '.' and '-' (their schema): they never reach a terminal raw."""
    workload = tmp_path / "w.json"
    workload.write_text(json.dumps({"name": "w", "tables": [{"name": name, "rows": 10, "dim": 8}]}))
    assert main(["compile", str(workload), "--target", "cpu", "-o", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "workload.tables[0].name" in err and _no_raw_controls(err)
