"""The command line: compile and explain, and bad input that exits 2 with one line and writes nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from embmap.ir.targets import ascend910
from embmap.mapper.cli import main

FAST = ["--time-limit", "2", "--workers", "1"]


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


def test_compile_then_explain(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "plan.json"
    code, out, _ = run_cli(["compile", "tenrec-qb-article", "--target", "ascend910", "-o", str(plan), *FAST], capsys)
    assert code == 0 and plan.is_file() and "wrote" in out
    code, out, _ = run_cli(["explain", str(plan)], capsys)
    assert code == 0
    assert "predicted makespan" in out and "lower bound" in out and "gap" in out and "over default" in out
    code, out, _ = run_cli(["explain", str(plan), "--json"], capsys)
    data = json.loads(out)
    assert {"makespan_s", "lower_bound_s", "solver", "cores"} <= set(data)
    assert {"status", "gap"} <= set(data["solver"])
    assert len(data["cores"]) == 32 and all("busy_s" in c for c in data["cores"])
    assert max(c["finish_s"] for c in data["cores"]) == pytest.approx(data["makespan_s"])
    assert max(c["busy_s"] for c in data["cores"]) < data["makespan_s"]  # the per-core start-up comes first
    assert data["speedup_over"]["default"] > 1.0
    assert [e.endswith(".tmp") for e in map(str, tmp_path.iterdir())] == [False]  # no temporary left behind


def test_compile_options_and_print_ir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan = tmp_path / "p.json"
    code, _, err = run_cli(
        [
            "compile",
            "kuairec-big",
            "--target",
            "ascend910",
            "--pipeline",
            "greedy",
            "--batch",
            "256",
            "--distribution",
            "zipf:1.1",
            "--row-cap",
            "1000",
            "--print-ir-after",
            "partition",
            "--timing",
            "-o",
            str(plan),
        ],
        capsys,
    )
    assert code == 0
    assert "IR after partition" in err and "options @video_id" in err and "assign-cores" in err
    data = json.loads(plan.read_text())
    assert data["workload"]["batch_size"] == 256 and data["workload"]["row_cap"] == 1000
    assert max(t["rows"] for t in data["tables"]) == 1000
    assert all(t["distribution"] == {"kind": "zipf", "alpha": 1.1} for t in data["tables"])
    assert data["solver"]["method"] == "greedy"


def test_cores_overrides_the_targets_and_is_checked_like_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "p.json"
    args = ["compile", "tenrec-qb-article", "--target", "ascend910", "--pipeline", "greedy", "-o", str(plan)]
    code, _, _ = run_cli([*args, "--cores", "48", "--no-baselines"], capsys)
    assert code == 0
    data = json.loads(plan.read_text())
    assert data["target"]["cores"] == 48 and len(data["cores"]) == 48
    plan.unlink()
    code, _, err = run_cli([*args, "--cores", "0"], capsys)
    assert code == 2 and "--cores: must be > 0 and <= 65536" in err and not plan.exists()  # a file's bounds
    code, _, err = run_cli([*args, "--cores", "64", "--devices", "2"], capsys)
    assert code == 2 and "--device-cores" in err and not plan.exists()


def test_listings(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(["passes"], capsys)
    assert code == 0 and "assign-cores" in out and "method=cpsat, max-moves=None" in out and "round-robin" in out
    code, out, _ = run_cli(["targets"], capsys)
    assert code == 0 and "ascend910" in out and "cpu" in out
    code, out, _ = run_cli(["workloads", "--json"], capsys)
    names = {w["name"] for w in json.loads(out)}
    assert {"avazu", "criteo-1tb-t3", "huawei-25mb-like"} <= names


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    import embmap

    code, out, _ = run_cli(["--version"], capsys)
    assert code == 0 and out == f"embmap {embmap.__version__}\n"
    exe = Path(sys.executable).parent / "embmap"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "embmap.mapper.cli"]
    proc = subprocess.run([*cmd, "--version"], capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and proc.stdout == out


@pytest.mark.parametrize("fitted_here", [True, False], ids=["fitted-on-this-kind-of-machine", "another-machine"])
def test_targets_names_the_cost_profile_a_compile_uses(
    fitted_here: bool, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`embmap targets` says which profile a compile without --profile uses: for cpu, the shipped calibrated
    profile where this is the kind of machine it was fitted on, else the preset and why; the compile agrees."""
    from embmap.cost_models import preset_profile
    from embmap.ir.cost_profile import CostProfile
    from embmap.ir.targets import cpu
    from embmap.mapper import compile, profiles

    shipped_path = Path(profiles.__file__).parents[1] / "cost_models" / "profiles" / "cpu.json"
    shipped = CostProfile.model_validate_json(shipped_path.read_text())
    assert shipped.fit is not None
    machine = shipped.fit.machine if fitted_here else "Some Other CPU, 3 cores"
    monkeypatch.setattr(profiles, "machine_key", lambda: machine)
    code, out, _ = run_cli(["targets"], capsys)
    assert code == 0
    ascend_part = out[: out.index("\ncpu ")]
    cpu_part = out[out.index("\ncpu ") :]
    assert "cost profile: uncalibrated preset" in ascend_part
    assert "no calibrated profile ships for target ascend910" in ascend_part
    plan = compile("tenrec-qb-article", "cpu", "round-robin", row_cap=100_000, baselines=False)
    if fitted_here:
        assert "cost profile: calibrated, the shipped cpu.json" in cpu_part and shipped.fit.command in cpu_part
        assert plan.cost_profile == shipped
    else:
        assert "cost profile: uncalibrated preset" in cpu_part
        assert f"fitted on {shipped.fit.machine} and this machine is {machine}" in cpu_part
        assert "embmap calibrate --target cpu -o PROFILE.json" in cpu_part
        assert plan.cost_profile == preset_profile(cpu())


def _target_file(tmp_path: Path, **changes: object) -> Path:
    data = ascend910().model_dump()
    data.update(changes)
    path = tmp_path / "target.json"
    path.write_text(json.dumps(data))
    return path


BAD_WORKLOADS = {
    "malformed-yaml": ("w.yaml", "name: w\ntables: [{name: a, rows: 5, dim: 4}\n", "not valid YAML"),
    "malformed-json": ("w.json", '{"name": "w", "tables": [', "not valid JSON"),
    "unknown-field": (
        "w.yaml",
        "name: w\nbatchsize: 4\ntables: [{name: a, rows: 5, dim: 4}]\n",
        "workload.batchsize: unknown field",
    ),
    "zero-rows": ("w.yaml", "name: w\ntables: [{name: a, rows: 0, dim: 4}]\n", "workload.tables[0].rows"),
    "negative-dim": ("w.yaml", "name: w\ntables: [{name: a, rows: 5, dim: -1}]\n", "workload.tables[0].dim"),
    "too-large": ("w.yaml", "name: w\ntables: [{name: huge, rows: 100000000000, dim: 128}]\n", "table huge: needs"),
    "empty": ("w.yaml", "", "mapping"),
}


@pytest.mark.parametrize("case", sorted(BAD_WORKLOADS))
def test_bad_workload_exits_2_with_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name, text, words = BAD_WORKLOADS[case]
    (tmp_path / name).write_text(text)
    out_file = tmp_path / "plan.json"
    code, _, err = run_cli(["compile", str(tmp_path / name), "--target", "ascend910", "-o", str(out_file)], capsys)
    _assert_clean_error(code, err, words, tmp_path, out_file)


BAD_ARGS = {
    "unknown-pass": (["--pipeline", "profile,frobnicate"], "unknown pass"),
    "unknown-option": (["--pipeline", "profile,select-strategy{speed=3}"], "unknown option"),
    "unknown-pipeline": (["--pipeline", "fastest"], "unknown pipeline"),
    "unknown-target": (["--target", "tpu9"], "unknown target 'tpu9'"),
    "bad-distribution": (["--distribution", "pareto"], "--distribution"),
    "zero-batch": (["--batch", "0"], "batch: must be > 0"),
    "bad-print-ir": (["--print-ir-after", "lower"], "--print-ir-after"),
    "bad-time-limit": (["--time-limit", "-1"], "--time-limit: must be positive"),
    "preloaded-only-does-not-fit": (
        ["--pipeline", "profile,select-strategy{strategies=L1},partition,assign-cores,schedule"],
        "fit",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_ARGS))
def test_bad_arguments_exit_2_with_one_line(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    extra, words = BAD_ARGS[case]
    args = ["compile", "avazu", "-o", str(tmp_path / "plan.json")]
    args += extra if "--target" in extra else ["--target", "ascend910", *extra]
    code, _, err = run_cli(args, capsys)
    _assert_clean_error(code, err, words, tmp_path, tmp_path / "plan.json")


def test_unknown_workload_and_zero_cores_target(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "plan.json"
    code, _, err = run_cli(["compile", "movielens", "--target", "ascend910", "-o", str(out_file)], capsys)
    _assert_clean_error(code, err, "neither a built-in workload nor a file", tmp_path, out_file)
    target = _target_file(tmp_path, cores=0)
    code, _, err = run_cli(["compile", "avazu", "--target", str(target), "-o", str(out_file)], capsys)
    _assert_clean_error(code, err, "target.cores", tmp_path, out_file, allowed={target.name})


def test_missing_output_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_file = tmp_path / "nope" / "plan.json"
    code, _, err = run_cli(["compile", "avazu", "--target", "ascend910", "-o", str(out_file)], capsys)
    _assert_clean_error(code, err, "does not exist", tmp_path, out_file)


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_cli(["compile", "avazu"], capsys)
    assert code == 2 and err.count("\n") == 1 and "--target" in err


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("not json", "not valid JSON"),
        ('{"schema_version": "embmap.plan/999"}', "plan.schema_version"),
        ('{"schema_version": "embmap.plan/1", "items": 3}', "plan."),
    ],
)
def test_explain_rejects_bad_plans(
    content: str, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "plan.json"
    path.write_text(content)
    code, _, err = run_cli(["explain", str(path)], capsys)
    assert code == 2 and err.count("\n") == 1 and words in err


def test_console_script_exit_status(tmp_path: Path) -> None:
    exe = Path(sys.executable).parent / "embmap"
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "embmap.mapper.cli"]
    proc = subprocess.run(
        [*cmd, "compile", "avazu", "--target", "nowhere", "-o", str(tmp_path / "p.json")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "p.json").exists()


def _assert_clean_error(
    code: int, err: str, words: str, folder: Path, out_file: Path, allowed: set[str] | None = None
) -> None:
    assert code == 2, err
    assert err.startswith("embmap: error: ") and err.count("\n") == 1, err
    assert words in err, err
    assert "Traceback" not in err
    assert not out_file.exists()
    leftovers = {p.name for p in folder.iterdir()} - (allowed or set()) - {p for p in BAD_NAMES}
    assert not leftovers, leftovers


BAD_NAMES = {"w.yaml", "w.json"}
