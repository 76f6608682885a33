"""Workloads measured from index traces: the acceptance test (a trace of known Zipf exponents and pooling
factors, profiled, gives the pooling within 1% and the cost model's hit ratios within 2 points of the
generating distribution's), every format alike, bad traces refused in one line, and the empirical
distribution through files, row caps and compiles."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest

from embmap.cost_models.analytic import table_histogram
from embmap.ir.distributions import histogram
from embmap.ir.errors import SpecError
from embmap.ir.loader import parse_document, validate
from embmap.ir.spec import Empirical, TableSpec, WorkloadSpec, Zipf
from embmap.mapper.cli import main
from embmap.mapper.traces import (
    FeatureSpec,
    IdCounter,
    TraceProgress,
    empirical,
    generate,
    workload_from_trace,
    write_trace,
)
from embmap.mapper.traces import histogram as trace_histogram
from embmap.mapper.traces.profile import workload_yaml
from embmap.mapper.workloads import resolve_workload

# Pure Zipf features (no hot ids, no locality): the generating distribution is known exactly.
KNOWN = (
    FeatureSpec("user", 20_000, alpha=0.8, pooling=3.0),
    FeatureSpec("item", 5_000, alpha=1.3, pooling=1.0, lengths="fixed"),
    FeatureSpec("history", 30_000, alpha=1.05, pooling=6.5, lengths="geometric"),
)
TABLES = {f.name: {"rows": f.rows, "dim": 32} for f in KNOWN}
CACHE_SHARES = (0.001, 0.01, 0.05, 0.2, 0.5)


@pytest.fixture(scope="module")
def known_trace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_trace(generate(KNOWN, samples=60_000, batch_size=512, seed=7), tmp_path_factory.mktemp("t") / "t.npz")


def test_profiled_trace_recovers_pooling_and_hit_ratios(known_trace: Path) -> None:
    """THE ACCEPTANCE TEST: pooling within 1%; for caches of 0.1% to 50% of each table's rows, the LRU hit
    ratio the cost model predicts from the profiled histogram within 2 points of the generating Zipf's."""
    workload = workload_from_trace(known_trace, tables=TABLES).effective()
    worst_pooling, worst_hit = 0.0, 0.0
    for feature, table in zip(KNOWN, workload.tables, strict=True):
        assert table.name == feature.name and table.rows == feature.rows
        assert isinstance(table.distribution, Empirical)
        worst_pooling = max(worst_pooling, abs(float(table.pooling) / feature.pooling - 1.0))
        generating = table.model_copy(update={"distribution": Zipf(alpha=feature.alpha)})
        for share in CACHE_SHARES:
            cache = share * table.rows
            measured = table_histogram(table).lru_hit_ratio(cache)
            truth = table_histogram(generating).lru_hit_ratio(cache)
            worst_hit = max(worst_hit, abs(measured - truth))
        assert table.distribution.alpha == pytest.approx(feature.alpha, abs=0.05)  # the fit, for display
    print(f"pooling error {worst_pooling:.4%}, largest hit-ratio difference {worst_hit * 100:.2f} points")
    assert worst_pooling < 0.01
    assert worst_hit < 0.02
    assert workload.batch_size == 512


def test_compression_moves_hit_ratios_and_distinct_rows_little(known_trace: Path) -> None:
    """At the default 64 buckets, against the uncompressed histogram (docs/traces.md's table)."""
    counter = IdCounter(None)
    ids = np.load(known_trace)["history.ids"]
    for chunk in np.array_split(ids, 7):  # counted chunk by chunk, merged
        counter.add(chunk)
    counts, rows = counter.result(), 30_000
    lossless = counts.lossless(rows)
    compressed = histogram(empirical(counts, rows, 64), rows)
    assert len(lossless.counts) > 64
    for share in CACHE_SHARES:
        assert abs(compressed.lru_hit_ratio(share * rows) - lossless.lru_hit_ratio(share * rows)) < 1e-4
    for lookups in (1024, 16_384, 262_144):
        assert compressed.expected_distinct(lookups) == pytest.approx(lossless.expected_distinct(lookups), rel=1e-3)


def test_sparse_counting_equals_dense(monkeypatch: pytest.MonkeyPatch) -> None:
    ids = np.random.default_rng(0).zipf(1.5, 200_000) % 5000
    dense = IdCounter(5000)
    monkeypatch.setattr(trace_histogram, "MERGE_IDS", 100)  # merge after nearly every chunk
    sparse = IdCounter(None)
    for chunk in np.array_split(ids, 50):
        dense.add(chunk)
        sparse.add(chunk)
    a, b = dense.result(), sparse.result()
    assert np.array_equal(a.values, b.values) and np.array_equal(a.rows_with, b.rows_with)
    assert a.lookups == b.lookups == ids.size and a.max_id == b.max_id == int(ids.max())


def _same(a: WorkloadSpec, b: WorkloadSpec) -> None:
    assert a.batch_size == b.batch_size
    assert a.tables == b.tables


def _write_offsets_npz(trace_path: Path, out: Path) -> Path:
    """The same trace with offsets instead of lengths, compressed."""
    data = np.load(trace_path)
    arrays = {}
    for key in data.files:
        if key.endswith(".lengths"):
            arrays[key.replace(".lengths", ".offsets")] = np.concatenate([[0], np.cumsum(data[key])])
        else:
            arrays[key] = data[key]
    np.savez_compressed(out, **arrays)
    return out


def test_every_format_gives_the_same_workload(tmp_path: Path) -> None:
    trace = generate(KNOWN[:2], samples=3000, batch_size=300, seed=3)
    tables = {f.name: TABLES[f.name] for f in KNOWN[:2]}
    reference = workload_from_trace(write_trace(trace, tmp_path / "t.npz"), tables=tables)
    _same(reference, workload_from_trace(_write_offsets_npz(tmp_path / "t.npz", tmp_path / "o.npz"), tables=tables))
    _same(reference, workload_from_trace(write_trace(trace, tmp_path / "t.pt"), tables=tables))
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(3):  # a directory of batch files, read in name order
        part = generate(KNOWN[:2], samples=1000, batch_size=300, seed=3)
        write_trace(part, parts / f"b{i}.npz")
    assert workload_from_trace(parts, tables=tables).batch_size == 300


def test_a_torchrec_file_is_memory_mapped_not_read_whole(tmp_path: Path) -> None:
    """A saved KeyedJaggedTensor file is mapped (its ids paged in as read), so one larger than memory streams."""
    pytest.importorskip("torchrec")
    maps = Path("/proc/self/maps")
    if not maps.exists():
        pytest.skip("needs /proc/self/maps (Linux) to see the mapping")
    from embmap.mapper.traces.formats import _load_kjts

    path = write_trace(generate(KNOWN[:2], samples=600, batch_size=300, seed=3), tmp_path / "mapped.pt")
    kjts = _load_kjts(path)
    assert len(kjts) == 2
    assert str(path) in maps.read_text()


def test_chunk_boundaries_change_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Lengths and offsets read a few samples at a time (offsets carried across chunks) count the same."""
    from embmap.mapper.traces import formats

    trace = generate(KNOWN[:2], samples=3000, batch_size=300, seed=4)
    tables = {f.name: TABLES[f.name] for f in KNOWN[:2]}
    path = write_trace(trace, tmp_path / "t.npz")
    offsets = _write_offsets_npz(path, tmp_path / "o.npz")
    whole = workload_from_trace(path, tables=tables)
    monkeypatch.setattr(formats, "CHUNK_SAMPLES", 7)
    _same(whole, workload_from_trace(path, tables=tables))
    _same(whole, workload_from_trace(offsets, tables=tables))
    events: list[TraceProgress] = []
    workload_from_trace(path, tables=tables, progress=events.append)
    assert [e.done for e in events[-2:]] == [False, True] and events[-1].ids == sum(t.size for t in trace.ids.values())
    assert all(a.ids <= b.ids and a.pieces <= b.pieces for a, b in zip(events, events[1:], strict=False))


def test_parquet_gives_the_same_workload(tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    trace = generate(KNOWN[:2], samples=3000, batch_size=300, seed=3)
    tables = {f.name: TABLES[f.name] for f in KNOWN[:2]}
    reference = workload_from_trace(write_trace(trace, tmp_path / "t.npz"), tables=tables)
    _same(reference, workload_from_trace(write_trace(trace, tmp_path / "t.parquet"), tables=tables))


def test_tables_from_torchrec_configs_sum_their_features(tmp_path: Path) -> None:
    pytest.importorskip("torchrec")
    from torchrec.modules.embedding_configs import DataType, EmbeddingBagConfig

    path = write_trace(generate(KNOWN[:2], samples=2000, batch_size=100, seed=1), tmp_path / "t.npz")
    configs = [
        EmbeddingBagConfig(
            name="shared",
            num_embeddings=20_000,
            embedding_dim=16,
            feature_names=["user", "item"],
            data_type=DataType.FP16,
        )
    ]
    (table,) = workload_from_trace(path, tables=configs).tables
    assert (table.name, table.rows, table.dim, table.dtype.value) == ("shared", 20_000, 16, "fp16")
    assert float(table.pooling) == pytest.approx(3.0 + 1.0, rel=0.02)


def test_without_tables_rows_are_the_largest_id_plus_one(tmp_path: Path) -> None:
    ids, lengths = np.array([3, 9, 9, 0]), np.array([1, 2, 0, 1])
    np.savez(tmp_path / "t.npz", **{"f.ids": ids, "f.lengths": lengths})
    workload = workload_from_trace(tmp_path / "t.npz")
    (table,) = workload.tables
    assert (table.rows, table.pooling, workload.batch_size) == (10, 1, 1024)
    assert any("batch size 1024" in a for a in workload.assumptions)


def _npz(path: Path, **arrays: object) -> Path:
    np.savez(path, **{k.replace("__", "."): v for k, v in arrays.items()})  # type: ignore[arg-type]
    return path


BAD = {
    "missing-lengths": ({"f__ids": np.arange(4)}, "f.lengths: is missing"),
    "lengths-short": ({"f__ids": np.arange(4), "f__lengths": np.array([1, 2])}, "account for 3 ids, ids has 4"),
    "lengths-long": ({"f__ids": np.arange(4), "f__lengths": np.array([3, 2])}, "account for more ids than the 4"),
    "negative-length": ({"f__ids": np.arange(4), "f__lengths": np.array([5, -1])}, "must not be negative"),
    "negative-id": ({"f__ids": np.array([1, -2]), "f__lengths": np.array([1, 1])}, "negative id -2"),
    "id-past-rows": ({"f__ids": np.array([1, 50]), "f__lengths": np.array([1, 1])}, "holds id 50, not below"),
    "empty": ({"f__ids": np.zeros(0, np.int64), "f__lengths": np.zeros(0, np.int64)}, "holds no samples"),
    "float-ids": ({"f__ids": np.array([1.0, 2.0]), "f__lengths": np.array([1, 1])}, "give a 1-D array of integers"),
    "offsets-not-from-0": ({"f__ids": np.arange(4), "f__offsets": np.array([1, 4])}, "must start at 0"),
    "uneven-samples": (
        {"f__ids": np.arange(2), "f__lengths": np.array([1, 1]), "g__ids": np.arange(1), "g__lengths": np.array([1])},
        "different sample counts",
    ),
    "stray-array": ({"f__ids": np.arange(2), "f__lengths": np.array([1, 1]), "extra": np.arange(2)}, "is not"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_trace_is_one_line_exit_2_and_nothing_written(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arrays, expected = BAD[case]
    trace = _npz(tmp_path / "bad.npz", **arrays)
    tables = tmp_path / "tables.yaml"
    tables.write_text("f: {rows: 10, dim: 8}\ng: {rows: 10, dim: 8}\n")
    out = tmp_path / "w.yaml"
    code = main(["profile-trace", str(trace), "-o", str(out), "--tables", str(tables)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("embmap: error: ") and err.count("\n") == 1 and "(fix: " in err
    assert expected in err
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["bad.npz", "tables.yaml"]


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("t.csv", b"1,2\n", "unknown format '.csv'"),
        ("t.npz", b"not a zip", "not a readable .npz"),
        ("t.pt", b"not a pickle", "cannot be read as saved KeyedJaggedTensors"),
        ("missing.npz", None, "no such file"),
    ],
)
def test_unreadable_trace_is_one_line_exit_2(
    name: str, content: bytes | None, expected: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if content is not None:
        (tmp_path / name).write_bytes(content)
    code = main(["profile-trace", str(tmp_path / name), "-o", str(tmp_path / "w.yaml")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and expected in err, err
    assert not (tmp_path / "w.yaml").exists()


def test_parquet_without_pyarrow_says_to_install_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    try:
        import pyarrow  # noqa: F401

        pytest.skip("pyarrow is installed")
    except ImportError:
        pass
    (tmp_path / "t.parquet").write_bytes(b"PAR1")
    code = main(["profile-trace", str(tmp_path / "t.parquet"), "-o", str(tmp_path / "w.yaml")])
    err = capsys.readouterr().err
    assert code == 4 and err.count("\n") == 1 and "pip install pyarrow" in err


def test_cli_writes_a_workload_that_compiles(
    known_trace: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tables = tmp_path / "tables.yaml"
    tables.write_text(json.dumps(TABLES))
    out = tmp_path / "w.yaml"
    assert main(["profile-trace", str(known_trace), "-o", str(out), "--tables", str(tables), "--buckets", "32"]) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "history" in printed
    workload = resolve_workload(str(out))
    assert all(isinstance(t.distribution, Empirical) and len(t.distribution.counts) <= 32 for t in workload.tables)
    as_json = validate(WorkloadSpec, parse_document(workload.model_dump_json(), True, "w"), "w")
    assert as_json == workload  # YAML and JSON both round-trip exactly
    assert workload == validate(WorkloadSpec, parse_document(workload_yaml(workload), False, "w"), "w")
    plan = tmp_path / "p.json"
    code = main(["compile", str(out), "--target", "ascend910", "-o", str(plan), "--time-limit", "2", "--workers", "1"])
    assert code == 0, capsys.readouterr().err
    planned = json.loads(plan.read_text())["workload"]["tables"]
    assert [t["distribution"]["kind"] for t in planned] == ["empirical"] * 3


def _zipf_empirical(alpha: float, rows: int) -> Empirical:
    exact = histogram(Zipf(alpha=alpha), rows)
    return Empirical(counts=(1,) * rows, probs=tuple(exact.probs[:rows]))


def test_a_row_cap_keeps_the_most_popular_ranks_renormalised() -> None:
    """As for a Zipf: the ranks beyond the cap are dropped, the others rescaled to sum to 1."""
    table = TableSpec(name="t", rows=200, dim=8, distribution=_zipf_empirical(1.1, 200))
    workload = WorkloadSpec(name="w", tables=(table,), row_cap=50)
    (capped,) = workload.effective().tables
    assert capped.rows == 50 and isinstance(capped.distribution, Empirical)
    assert capped.distribution.rows == 50
    assert np.allclose(histogram(capped.distribution, 50).probs, histogram(Zipf(alpha=1.1), 50).probs)
    TableSpec.model_validate(capped.model_dump())  # the table as planned is a valid table
    # A bucket the cap cuts keeps its share of rows; a cap above the rows changes nothing.
    wide = Empirical(counts=(10, 90), probs=(0.05, 0.5 / 90))
    assert wide.capped(40).counts == (10, 30)
    assert wide.capped(40).probs[0] / wide.capped(40).probs[1] == pytest.approx(0.05 / (0.5 / 90))
    assert wide.capped(100) == wide


@pytest.mark.parametrize(
    ("distribution", "expected"),
    [
        ({"counts": [1, 2], "probs": [0.5]}, "one probability per bucket"),
        ({"counts": [1, 1], "probs": [0.3, 0.7]}, "most popular first"),
        ({"counts": [1, 1], "probs": [0.5, 0.4]}, "sum to 0.9"),
        ({"counts": [0, 2], "probs": [0.5, 0.5]}, "greater than 0"),
        ({"counts": [2], "probs": [-0.5]}, "greater than 0"),
        ({"counts": [1] * 257, "probs": [1 / 257] * 257}, "at most 256"),
        ({"counts": [3], "probs": [1 / 3]}, "describes 3 rows (the sum of its counts), the table has 4"),
    ],
)
def test_a_bad_empirical_distribution_is_one_line(distribution: dict[str, object], expected: str) -> None:
    data = {
        "name": "w",
        "tables": [{"name": "t", "rows": 4, "dim": 8, "distribution": {"kind": "empirical", **distribution}}],
    }
    with pytest.raises(SpecError) as info:
        validate(WorkloadSpec, data, "workload")
    assert expected in str(info.value) and "\n" not in str(info.value) and "(fix: " in str(info.value)
    assert str(info.value).startswith("workload.tables[0]")


def test_the_workload_default_distribution_must_fit_each_table() -> None:
    with pytest.raises(SpecError, match="table b's .*describes 2 rows"):
        validate(
            WorkloadSpec,
            {
                "name": "w",
                "distribution": {"kind": "empirical", "counts": [2], "probs": [0.5]},
                "tables": [{"name": "a", "rows": 2, "dim": 8}, {"name": "b", "rows": 3, "dim": 8}],
            },
            "workload",
        )


def test_the_runtime_draws_indices_from_the_empirical_histogram() -> None:
    from embmap.runtime.data import sample_ranks

    dist = Empirical(counts=(1, 99), probs=(0.5, 0.5 / 99))
    table = TableSpec(name="t", rows=100, dim=8, distribution=dist)
    ranks = sample_ranks(table, 100_000, np.random.default_rng(0))
    assert np.mean(ranks == 0) == pytest.approx(0.5, abs=0.01) and ranks.max() < 100


def test_the_generator_is_seeded_and_realistic() -> None:
    hot = FeatureSpec("h", 10_000, alpha=0.9, pooling=2.0, hot_ids=3, hot_mass=0.3)
    local = FeatureSpec("l", 10_000, alpha=0.9, pooling=2.0, locality=0.5, window=10)
    pure = FeatureSpec("p", 10_000, alpha=0.9, pooling=2.0)
    a, b = generate([hot, local, pure], 20_000, 100, seed=5), generate([hot, local, pure], 20_000, 100, seed=5)
    assert all(np.array_equal(a.ids[k], b.ids[k]) for k in a.ids)
    assert a.lengths["p"].mean() == pytest.approx(2.0, rel=0.03) and a.samples == 20_000
    top3 = np.sort(np.bincount(a.ids["h"]))[-3:].sum() / a.ids["h"].size
    assert top3 == pytest.approx(0.3, abs=0.02)  # the hot ids carry their mass (their Zipf share is tiny)

    def repeats(ids: np.ndarray) -> float:  # an id equal to one of the 10 before it
        return float(np.mean([ids[i] in ids[max(0, i - 10) : i] for i in range(1, 5000)]))

    assert repeats(a.ids["l"]) > repeats(a.ids["p"]) + 0.3
    with zipfile.ZipFile(write_trace(a, Path(__import__("tempfile").mkdtemp()) / "a.npz")) as z:
        assert sorted(z.namelist())[0] == "batch_sizes.npy"


def test_the_measured_compression_error_in_the_docs_is_what_the_script_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import runpy

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setattr("sys.argv", ["trace_histograms.py"])
    runpy.run_path(str(root / "benchmarks" / "trace_histograms.py"), run_name="__main__")
    printed = capsys.readouterr().out
    page = (root / "docs" / "traces.md").read_text(encoding="utf-8")
    shown = page.split("<!-- trace_histograms -->\n```text\n")[1].split("```\n<!-- /trace_histograms -->")[0]
    assert shown == printed, "docs/traces.md: paste the output of python benchmarks/trace_histograms.py"
    assert "embmap: error: trace bad.npz: f.lengths: account for 3 ids, ids has 4 (fix: " in page
