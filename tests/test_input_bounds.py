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
    assert "workload.batch_size: input should be less than or equal to 10000000, got 1000000000000" in err
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
