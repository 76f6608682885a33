"""Untrusted input: YAML is parsed safely (a tag that would run code is refused and runs nothing), files and
numbers are bounded, and numbers too large for the solver's integer arithmetic are refused in one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from embmap import mapper
from embmap.ir.cluster import LinkSpec
from embmap.ir.errors import SpecError
from embmap.ir.loader import MAX_SPEC_BYTES
from embmap.ir.spec import MemorySpec, TableSpec, WorkloadSpec
from embmap.mapper import SolverSettings
from embmap.mapper.cli import main
from embmap.mapper.torchrec.cluster import cluster, compile_cluster
from embmap.mapper.workloads import resolve_workload
from tests.conftest import tiny_target, tiny_workload

FAST = SolverSettings(time_limit_s=2.0)


@pytest.mark.parametrize("kind", ["workload", "target"])
def test_a_python_tag_is_refused_and_runs_nothing(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    marker = tmp_path / "ran"
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"!!python/object/apply:os.system ['touch {marker}']\n")
    args = [str(spec), "--target", "ascend910"] if kind == "workload" else ["avazu", "--target", str(spec)]
    assert main(["compile", *args, "-o", str(tmp_path / "plan.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{kind} spec.yaml: not valid YAML" in err
    assert "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object/apply:os.system'" in err
    assert not marker.exists() and not (tmp_path / "plan.json").exists()


def test_a_python_tag_inside_a_field_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    spec = tmp_path / "w.yaml"
    spec.write_text(f"name: w\ntables:\n  - name: !!python/object/apply:os.system ['touch {marker}']\n    rows: 4\n")
    with pytest.raises(SpecError, match=r"^workload w\.yaml: not valid YAML at line 3"):
        resolve_workload(str(spec))
    assert not marker.exists()


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    spec = tmp_path / "w.yaml"
    with spec.open("wb") as f:
        f.truncate(MAX_SPEC_BYTES + 1)  # sparse: nothing to parse would make it valid anyway
    with pytest.raises(SpecError, match=rf"is {MAX_SPEC_BYTES + 1} bytes, more than the {MAX_SPEC_BYTES} allowed"):
        resolve_workload(str(spec))


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("batch_size: 100000000", r"^workload\.batch_size: input should be less than or equal to 10000000"),
        ("tables: [{name: t, rows: 2000000000000, dim: 4}]", r"tables\[0\]\.rows: input should be less than"),
        ("tables: [{name: t, rows: 4, dim: 100000}]", r"tables\[0\]\.dim: input should be less than or equal to 65536"),
        ("tables: [{name: t, rows: 4, dim: 4, pooling: 1000000}]", r"tables\[0\]\.pooling: input should be less"),
    ],
)
def test_numbers_beyond_their_bounds_are_refused(tmp_path: Path, text: str, words: str) -> None:
    spec = tmp_path / "w.yaml"
    base = {"batch_size": "batch_size: 64", "tables": "tables: [{name: t, rows: 4, dim: 4}]"}
    base[text.split(":")[0]] = text
    spec.write_text("name: w\n" + "\n".join(base.values()) + "\n")
    with pytest.raises(SpecError, match=words):
        resolve_workload(str(spec))


def test_a_batch_override_is_bounded_like_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.json"
    assert main(["compile", "avazu", "--target", "ascend910", "--batch", "1000000000000", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("embmap: error: --batch: must be > 0 and <= 10000000, got 1000000000000 (fix: ")
    assert not out.exists()


def test_costs_beyond_the_solver_scale_are_refused_in_one_line() -> None:
    # A main memory of 1 byte per microsecond makes one batch take years: more ns than CP-SAT can sum.
    target = tiny_target()
    slow = target.model_copy(
        update={
            "main": MemorySpec(name="HBM", capacity_bytes=1 << 30, bandwidth_bytes_per_s=1e-6, latency_s=0.5),
            "shared_cache": None,
        }
    )
    with pytest.raises(SpecError) as info:
        mapper.compile(tiny_workload(), slow, solver=FAST, baselines=False)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("workload: table ") and "the core assignment can count in 1e-09 s units" in message


def test_a_local_buffer_larger_than_int64_still_plans() -> None:
    """The capacity constraint cannot bind then, so it is left out rather than overflowing the solver."""
    target = tiny_target()
    huge = target.model_copy(update={"local": target.local.model_copy(update={"capacity_bytes": 10**30})})
    plan = mapper.compile(tiny_workload(), huge, solver=FAST, baselines=False)
    assert plan.makespan_s > 0 and plan.solver.status in ("OPTIMAL", "FEASIBLE")


def test_device_level_costs_beyond_the_solver_scale_are_refused() -> None:
    w = WorkloadSpec(name="w", batch_size=64, tables=(TableSpec(name="t", rows=1000, dim=16),))
    crawl = LinkSpec(name="crawl", bandwidth_bytes_per_s=1e-6, latency_s=0.0)
    with pytest.raises(SpecError, match=r"^workload: the device-level options add up to .* beyond the"):
        compile_cluster(w, cluster("cpu", 2, crawl), solver=FAST)


# Numbers that skip the loaders: the command line's options and the synthetic recipe's keys ------------------

COMPILE_NUMBERS = [
    # (options, the error's start: the field, then the range it must be in)
    (["--time-limit", "nan"], "--time-limit: must be positive and <= 86400, got nan"),
    (["--time-limit", "inf"], "--time-limit: must be positive and <= 86400, got inf"),
    (["--time-limit", "-1"], "--time-limit: must be positive"),
    (["--time-limit", "1e300"], "--time-limit: must be positive and <= 86400, got 1e300"),
    (["--seed", str(2**64)], "--seed: must be >= 0 and <= 2147483647, got 18446744073709551616"),
    (["--seed", str(2**31)], "--seed: must be >= 0 and <= 2147483647"),
    (["--seed", "-1"], "--seed: must be >= 0"),
    (["--workers", "100000"], "--workers: must be > 0 and <= 1024, got 100000"),
    (["--workers", "0"], "--workers: must be > 0"),
    (["--cores", "0"], "--cores: must be > 0 and <= 65536"),
    (["--cores", "70000"], "--cores: must be > 0 and <= 65536"),
    (["--batch", "2.5"], "--batch: must be > 0 and <= 10000000, got 2.5"),
    (["--batch", "1" + "0" * 5000], "--batch: must be > 0 and <= 10000000, got '1000"),
    (["--row-cap", "-1"], "--row-cap: must be >= 0 and <= 1000000000000"),
    (["--row-cap", "1e30"], "--row-cap: must be >= 0"),
    (["--previous", "old.json", "--max-moves", "1e30"], "--max-moves: must be >= 0 and <= 10000, got 1e30"),
    (["--previous", "old.json", "--max-moves", str(10**30)], "--max-moves: must be >= 0 and <= 10000"),
    (["--devices", "100000"], "--devices: must be > 0 and <= 4096, got 100000"),
    (["--devices", "0"], "--devices: must be > 0"),
    (["--devices", "2", "--link-gbps", "inf"], "--link-gbps: must be positive and <= 1e+06, got inf"),
    (["--devices", "2", "--link-gbps", "nan"], "--link-gbps: must be positive and <= 1e+06, got nan"),
    (["--devices", "2", "--link-gbps", "0"], "--link-gbps: must be positive and <= 1e+06, got 0"),
    (["--devices", "2", "--device-cores", "0"], "--device-cores: must be > 0 and <= 65536"),
    (["--devices", "2", "--device-memory", "0"], "--device-memory: must be > 0 and <= 1125899906842624"),
    (["--devices", "2", "--device-memory", str(2**60)], "--device-memory: must be > 0"),
]


@pytest.mark.parametrize(
    ("options", "words"), COMPILE_NUMBERS, ids=lambda v: " ".join(v) if isinstance(v, list) else ""
)
def test_compile_numbers_are_bounded_before_any_work(
    options: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "plan.json"
    assert main(["compile", "avazu", "--target", "ascend910", *options, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"embmap: error: {words}"), err
    assert "(fix: " in err and not out.exists()


@pytest.mark.parametrize(
    ("options", "words"),
    [
        (["--batches", "0"], "--batches: must be > 0 and <= 1000000, got 0"),
        (["--batches", "10000000"], "--batches: must be > 0 and <= 1000000"),
        (["--warmup", "-1"], "--warmup: must be >= 0 and <= 1000000"),
        (["--warmup", "1e9"], "--warmup: must be >= 0"),
        (["--seed", "-1"], "--seed: must be >= 0 and <= 18446744073709551615, got -1"),
        (["--seed", str(2**64)], "--seed: must be >= 0 and <= 18446744073709551615"),
        (["--timeout", "nan"], "--timeout: must be positive and <= 86400, got nan"),
        (["--timeout", "inf"], "--timeout: must be positive"),
        (["--timeout", "1e12"], "--timeout: must be positive"),
    ],
)
def test_run_numbers_are_bounded_before_the_plan_is_read(
    options: list[str], words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", str(tmp_path / "no-such-plan.json"), *options]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"embmap: error: {words}"), err


@pytest.mark.parametrize("repeats", ["0", "1000000", "2.5"])
def test_bench_repeats_are_bounded(repeats: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench"
    assert main(["bench", "--quick", "--no-measure", "--repeats", repeats, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"embmap: error: --repeats: must be > 0 and <= 1000, got {repeats} (fix: ")
    assert not out.exists()


def test_the_command_line_bounds_are_the_files_bounds() -> None:
    """A value the command line accepts at its limit is one a file accepts, and one past it neither does."""
    from embmap.ir.cluster import ClusterSpec
    from embmap.mapper.cli.parser import MAX_DEVICES

    assert MAX_DEVICES == 4096
    with pytest.raises(ValueError, match="less than or equal to 4096"):
        ClusterSpec.model_validate({"name": "c", "devices": MAX_DEVICES + 1, "device": {}, "link": {}})
    assert WorkloadSpec(name="w", batch_size=10**7, tables=(TableSpec(name="t", rows=10**12, dim=65536),))


SYNTHETIC_KEYS = [
    # recipe, the key the error names, its range
    ("batch_size=0", "batch_size", "must be >= 1 and <= 10000000, got 0"),
    ("batch_size=100000000", "batch_size", "must be >= 1 and <= 10000000"),
    ("tables=0", "tables", "must be >= 1 and <= 10000, got 0"),
    ("tables=10001", "tables", "must be >= 1 and <= 10000, got 10001"),
    ("total_bytes=nan", "total_bytes", "must be > 0 and <= 1125899906842624, got nan"),
    ("total_bytes=inf", "total_bytes", "must be > 0"),
    ("total_bytes=0", "total_bytes", "must be > 0 and <= 1125899906842624, got 0"),
    ("dims=16:70000", "dims", "must be >= 1 and <= 65536, got 70000"),
    ("dims=0", "dims", "must be >= 1"),
    ("seed=-1", "seed", "must be >= 0 and <= 18446744073709551615, got -1"),
    (f"seed={2**64}", "seed", "must be >= 0 and <= 18446744073709551615"),
    ("pooling_skew=-1", "pooling_skew", "must be >= 0 and <= 10, got -1"),
    ("pooling_skew=nan", "pooling_skew", "must be >= 0"),
    ("size_skew=-1", "size_skew", "must be >= 0 and <= 10, got -1"),
    ("size_skew=inf", "size_skew", "must be >= 0"),
    ("pooling_mean=0.5", "pooling_mean", "must be >= 1 and <= 100000, got 0.5"),
    ("pooling_mean=nan", "pooling_mean", "must be >= 1"),
    ("pooling_mean=100000,pooling_skew=2,tables=50", "pooling_mean", "draws table t0002 with a pooling factor of"),
    ("total_bytes=1e15,tables=1,dims=16", "total_bytes", "draws table t0000 with 15625000000000 rows, more than"),
    ("tables=1e3", "tables", "cannot read '1e3' (fix: give a whole number)"),
    ("tables=3,tables=4", "tables", "is given twice"),
    ("name=" + "x" * 129, "name", "has 129 characters, more than 128"),
]


@pytest.mark.parametrize(("recipe", "key", "words"), SYNTHETIC_KEYS)
def test_each_synthetic_key_is_bounded_and_named(recipe: str, key: str, words: str) -> None:
    with pytest.raises(SpecError) as info:
        resolve_workload(f"synthetic:{recipe}")
    assert info.value.field == f"synthetic.{key}"
    assert words in info.value.one_line() and info.value.fix


def test_synthetic_limits_are_checked_before_any_allocation() -> None:
    """A billion tables is refused before a single array is drawn (it allocated 7.45 GiB first)."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(SpecError, match=r"^synthetic\.tables: must be >= 1 and <= 10000, got 1000000000"):
            resolve_workload("synthetic:tables=1000000000")
        with pytest.raises(SpecError, match=r"^synthetic\.tables"):
            resolve_workload("synthetic:tables=200000")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, f"{peak} bytes allocated before the refusal"


def test_synthetic_at_its_limits_still_builds() -> None:
    w = resolve_workload("synthetic:tables=3,dims=65536,batch_size=10000000,seed=18446744073709551615,size_skew=10")
    assert len(w.tables) == 3 and w.batch_size == 10**7 and {t.dim for t in w.tables} == {65536}


# A profile made for another target -------------------------------------------------------------------------


def _profile_file(folder: Path, target: str) -> Path:
    from embmap.cost_models import preset_profile
    from embmap.ir.targets import builtin_target

    path = folder / f"{target}-profile.json"
    path.write_text(preset_profile(builtin_target(target)).model_dump_json())
    (folder / "w.json").write_text(tiny_workload().model_dump_json())  # compiled in a fraction of a second
    return path


@pytest.mark.parametrize("devices", [[], ["--devices", "2"]], ids=["one-device", "cluster"])
def test_a_profile_for_another_target_is_refused(
    devices: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile, out = _profile_file(tmp_path, "cpu"), tmp_path / "plan.json"
    args = ["compile", "avazu", "--target", "ascend910", "--profile", str(profile), *devices, "-q", "-o", str(out)]
    assert main([*args, "--time-limit", "1", "--no-baselines"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(
        "embmap: error: --profile: cpu-profile.json was made for target cpu, and this compile is for target ascend910"
    )
    assert "--force-profile" in err and not out.exists()


def test_a_forced_profile_for_another_target_compiles_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from embmap.mapper.planio import load_plan

    profile, out = _profile_file(tmp_path, "cpu"), tmp_path / "plan.json"
    args = ["compile", str(tmp_path / "w.json"), "--target", "ascend910", "--profile", str(profile), "--force-profile"]
    assert main([*args, "-q", "--time-limit", "1", "--no-baselines", "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert err == (
        "embmap: warning: --profile: cpu-profile.json was made for target cpu, and this compile is for target "
        "ascend910; used anyway (--force-profile)\n"
    )
    plan = load_plan(out)
    assert plan.target.name == "ascend910" and plan.cost_profile.target == "cpu" and plan.items


def test_a_profile_for_the_same_target_compiles_without_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    profile, out = _profile_file(tmp_path, "ascend910"), tmp_path / "plan.json"
    args = ["compile", str(tmp_path / "w.json"), "--target", "ascend910", "--profile", str(profile), "-q"]
    assert main([*args, "--time-limit", "1", "--no-baselines", "-o", str(out)]) == 0
    assert capsys.readouterr().err == "" and out.is_file()


@pytest.mark.parametrize(
    "args",
    [["--seed", "1\n2"], ["extra\narg"], ["--pipeline", "greedy", "--device-method", "a\x1b[2Jb"]],
    ids=["number", "unrecognized", "choice"],
)
def test_usage_errors_quote_what_was_typed_on_one_line(
    args: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compile", "avazu", "--target", "ascend910", *args, "-o", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("embmap: error: ") and err.count("\n") == 1 and "\x1b" not in err, err


def test_force_profile_without_a_profile_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "plan.json"
    assert main(["compile", "avazu", "--target", "ascend910", "--force-profile", "-q", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == "embmap: error: --force-profile: given without --profile (fix: give --profile PROFILE.json, or leave it out)\n"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "values, field",
    [
        ({"workers": 100_000}, "solver.workers"),
        ({"workers": 0}, "solver.workers"),
        ({"seed": -1}, "solver.seed"),
        ({"seed": 2**31}, "solver.seed"),
        ({"time_limit_s": float("nan")}, "solver.time_limit_s"),
        ({"time_limit_s": float("inf")}, "solver.time_limit_s"),
    ],
)
def test_solver_settings_refuse_what_the_command_line_refuses(values: dict[str, float], field: str) -> None:
    """A library caller gets the command line's bounds: CP-SAT would answer MODEL_INVALID or never stop."""
    with pytest.raises(SpecError) as caught:
        SolverSettings(**values)  # type: ignore[arg-type]
    assert caught.value.field == field
