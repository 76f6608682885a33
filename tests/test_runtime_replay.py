"""`embmap run PLAN --replay TRACE`: a trace's own ids and lengths as the run's index batches, cut into batches
of the plan's batch size (a table read by several features gets each sample's ids of all of them); bad replays
refused in one line with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embmap.ir.errors import SpecError
from embmap.mapper.cli import main
from embmap.mapper.planio import load_plan
from embmap.mapper.traces import FeatureSpec, Trace, generate, write_trace
from embmap.mapper.traces.replay import replay_bags

FEATURES = (
    FeatureSpec("user", 20_000, alpha=0.9, pooling=3.0),  # Poisson lengths: empty samples among them
    FeatureSpec("item", 5_000, alpha=1.2, pooling=1.0, lengths="fixed"),
)
BATCH = 256
SAMPLES = 10 * BATCH + 100  # ten whole batches and a part of one


def tables_yaml(path: Path, tables: dict[str, dict[str, object]]) -> Path:
    path.write_text(json.dumps(tables))
    return path


@pytest.fixture(scope="module")
def replayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Trace, Path, Path, Path]:
    """(the trace, its .npz, its table list, a plan compiled for cpu from its profile)."""
    tmp = tmp_path_factory.mktemp("replay")
    trace = generate(FEATURES, samples=SAMPLES, batch_size=BATCH, seed=11)
    path = write_trace(trace, tmp / "t.npz")
    tables = tables_yaml(tmp / "tables.yaml", {f.name: {"rows": f.rows, "dim": 16} for f in FEATURES})
    workload, plan = tmp / "w.yaml", tmp / "p.json"
    assert main(["profile-trace", str(path), "-o", str(workload), "--tables", str(tables)]) == 0
    assert (
        main(["compile", str(workload), "--target", "cpu", "-o", str(plan), "--time-limit", "2", "--workers", "1"]) == 0
    )
    return trace, path, tables, plan


def test_a_replayed_run_is_correct_and_reads_the_traces_lookups(
    replayed: tuple[Trace, Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    """Ten batches run once each: the measured lookups per batch are the trace's ten first batches' mean."""
    trace, path, tables, plan = replayed
    capsys.readouterr()
    for backend in ("native", "numpy"):
        args = ["run", str(plan), "--replay", str(path), "--tables", str(tables), "--warmup", "0", "--batches", "10"]
        assert main([*args, "--backend", backend, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["correct"] and report["backend"] == backend
        samples = 10 * BATCH
        expected = sum(int(trace.lengths[f.name][:samples].sum()) for f in FEATURES) / 10
        assert report["lookups_per_batch"] == round(expected)
        assert "t.npz" in report["ids_from"] and "10 batches" in report["ids_from"]


def test_the_index_batches_are_the_traces_own_samples(replayed: tuple[Trace, Path, Path, Path]) -> None:
    trace, path, tables, plan = replayed
    workload = load_plan(plan).workload
    replay = replay_bags(path, workload, max_batches=50, tables=tables)
    assert replay.index_batches == 10  # the part of an eleventh batch is left out
    for f in FEATURES:
        bags = replay.bags[f.name]
        assert bags.offsets.shape == (10, BATCH + 1)
        assert np.array_equal(np.diff(bags.offsets, axis=1).reshape(-1), trace.lengths[f.name][: 10 * BATCH])
        assert np.array_equal(bags.ids, trace.ids[f.name][: bags.ids.size])
    assert (np.diff(replay.bags["user"].offsets, axis=1) == 0).any()  # empty samples, replayed as they are


def test_a_table_read_by_two_features_gets_each_samples_ids_of_both(tmp_path: Path) -> None:
    trace = generate(FEATURES, samples=3 * BATCH, batch_size=BATCH, seed=12)
    path = write_trace(trace, tmp_path / "t.npz")
    tables = tables_yaml(tmp_path / "tables.yaml", {"both": {"rows": 20_000, "dim": 16, "features": ["user", "item"]}})
    workload, plan = tmp_path / "w.yaml", tmp_path / "p.json"
    assert main(["profile-trace", str(path), "-o", str(workload), "--tables", str(tables)]) == 0
    assert (
        main(["compile", str(workload), "--target", "cpu", "-o", str(plan), "--time-limit", "2", "--workers", "1"]) == 0
    )
    bags = replay_bags(path, load_plan(plan).workload, max_batches=3, tables=tables).bags["both"]
    user_at = np.concatenate([[0], np.cumsum(trace.lengths["user"])])
    for s in (0, 1, 300, 3 * BATCH - 1):
        b, i = divmod(s, BATCH)
        mine = bags.ids[bags.offsets[b, i] : bags.offsets[b, i + 1]]
        assert mine.tolist() == [*trace.ids["user"][user_at[s] : user_at[s + 1]], trace.ids["item"][s]]
    assert main(["run", str(plan), "--replay", str(path), "--tables", str(tables), "--batches", "3"]) == 0


def test_a_replay_reads_the_trace_only_as_far_as_the_run_needs(
    replayed: tuple[Trace, Path, Path, Path], tmp_path: Path
) -> None:
    """A directory trace whose last file is not a trace at all: a replay of the first batches never opens it,
    while profiling the whole trace does, and says so."""
    trace, _, tables, plan = replayed
    parts = tmp_path / "parts"
    parts.mkdir()
    write_trace(generate(FEATURES, samples=3 * BATCH, batch_size=BATCH, seed=11), parts / "a.npz")
    (parts / "z.npz").write_bytes(b"not a zip archive")
    workload = load_plan(plan).workload
    assert replay_bags(parts, workload, max_batches=2, tables=tables).index_batches == 2
    with pytest.raises(SpecError, match="z.npz"):
        replay_bags(parts, workload, max_batches=4, tables=tables)


def _one_line_exit_2(args: list[str], capsys: pytest.CaptureFixture[str], *expected: str) -> None:
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err, err
    for text in expected:
        assert text in err, err


def test_bad_replays_are_one_line_exit_2(
    replayed: tuple[Trace, Path, Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace, path, tables, plan = replayed
    only_user = write_trace(generate(FEATURES[:1], samples=SAMPLES, batch_size=BATCH, seed=11), tmp_path / "u.npz")
    _one_line_exit_2(["run", str(plan), "--replay", str(only_user)], capsys, "no feature item", "table item")
    short = write_trace(generate(FEATURES, samples=BATCH - 1, batch_size=BATCH, seed=11), tmp_path / "s.npz")
    _one_line_exit_2(["run", str(plan), "--replay", str(short)], capsys, f"{BATCH - 1} samples", f"batch of {BATCH}")
    workload, capped = tmp_path / "w.yaml", tmp_path / "capped.json"
    assert main(["profile-trace", str(path), "-o", str(workload), "--tables", str(tables)]) == 0
    args = ["compile", str(workload), "--target", "cpu", "--row-cap", "1000", "-o", str(capped), "--time-limit", "1"]
    assert main(args) == 0
    _one_line_exit_2(["run", str(capped), "--replay", str(path)], capsys, "beyond the plan's 1000 rows", "--row-cap")
    uneven = generate(FEATURES, samples=SAMPLES, batch_size=BATCH, seed=11)
    uneven.lengths["item"] = uneven.lengths["item"][:-1]
    uneven.ids["item"] = uneven.ids["item"][: int(uneven.lengths["item"].sum())]
    path_uneven = write_trace(uneven, tmp_path / "uneven.npz")
    _one_line_exit_2(["run", str(plan), "--replay", str(path_uneven), "--batches", "50"], capsys, "sample counts")
    _one_line_exit_2(["run", str(plan), "--tables", str(tables)], capsys, "--replay")
    _one_line_exit_2(["run", str(plan), "--replay", str(tmp_path / "none.npz")], capsys, "no such file")
