"""Specs validate themselves when built, and files load into them or fail with one line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from embmap.ir.errors import SpecError
from embmap.ir.loader import read_document, validate
from embmap.ir.spec import DType, HotSet, HotTables, TableSpec, TargetSpec, TLBSpec, WorkloadSpec, Zipf
from embmap.ir.targets import ascend910, builtin_target, cpu


def load_workload(path: Path) -> WorkloadSpec:
    return validate(WorkloadSpec, read_document(path, "workload"), "workload")


def test_yaml_and_json_give_the_same_workload(tmp_path: Path) -> None:
    (tmp_path / "w.yaml").write_text(
        "name: w\nbatch_size: 8\ndistribution: {kind: zipf, alpha: 1.2}\n"
        "tables:\n  - {name: a, rows: 10, dim: 4, dtype: fp16, pooling: 2}\n"
    )
    (tmp_path / "w.json").write_text(
        '{"name": "w", "batch_size": 8, "distribution": {"kind": "zipf", "alpha": 1.2},'
        ' "tables": [{"name": "a", "rows": 10, "dim": 4, "dtype": "fp16", "pooling": 2}]}'
    )
    a, b = load_workload(tmp_path / "w.yaml"), load_workload(tmp_path / "w.json")
    assert a == b
    assert a.tables[0].bytes == 10 * 4 * 2
    assert a.distribution == Zipf(alpha=1.2)


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("name: w\ntables: [{name: a, rows: 0, dim: 4}]\n", "workload.tables[0].rows", "greater than 0"),
        ("name: w\ntables: [{name: a, rows: 5, dim: -4}]\n", "workload.tables[0].dim", "greater than 0"),
        ("name: w\ntables: [{name: a, rows: 5, dim: 4, colour: red}]\n", "workload.tables[0].colour", "unknown field"),
        ("name: w\ntables: [{name: a, rows: 5, dim: 4, dtype: fp64}]\n", "workload.tables[0].dtype", "fp32"),
        ("name: w\ntables: [{name: a, rows: 5}]\n", "workload.tables[0].dim", "required"),
        ("name: w\ntables: []\n", "workload.tables", "at least 1"),
        ("name: w\nbatch_size: 0\ntables: [{name: a, rows: 5, dim: 4}]\n", "workload.batch_size", "greater than 0"),
        (
            "name: w\ntables: [{name: a, rows: 5, dim: 4, distribution: {kind: zipf, alpha: -1}}]\n",
            "workload.tables[0].distribution.alpha",
            "greater than 0",
        ),
        ("name: w\ntables: [{name: a, rows: 5, dim: 4}, {name: a, rows: 6, dim: 4}]\n", "workload", "repeats"),
        ("name: w\ntables: [{name: a, rows: 5, dim: 4}\n", "workload w.yaml", "not valid YAML"),
        ("- just\n- a list\n", "workload w.yaml", "mapping"),
        ("", "workload w.yaml", "mapping"),
    ],
)
def test_bad_workload_files_name_the_field(tmp_path: Path, text: str, field: str, words: str) -> None:
    path = tmp_path / "w.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as info:
        load_workload(path)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(field), message
    assert words in message


def test_bad_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "w.json"
    path.write_text('{"name": "w",\n "tables": [}\n')
    with pytest.raises(SpecError, match=r"not valid JSON at line 2 column"):
        load_workload(path)


def test_missing_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="no such file"):
        load_workload(tmp_path / "absent.yaml")


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    path = tmp_path / "w.yaml"
    path.write_text("!!python/object/apply:os.system ['true']\n")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_workload(path)


def test_target_rejects_zero_cores() -> None:
    data = ascend910().model_dump()
    data["cores"] = 0
    with pytest.raises(SpecError, match=r"^target\.cores: input should be greater than 0"):
        validate(TargetSpec, data, "target")


def test_row_cap_applies_on_effective_workload() -> None:
    w = WorkloadSpec(
        name="w", row_cap=100, tables=(TableSpec(name="a", rows=1000, dim=4), TableSpec(name="b", rows=5, dim=4))
    )
    e = w.effective()
    assert [t.rows for t in e.tables] == [100, 5]
    assert all(t.distribution == w.distribution for t in e.tables)


def test_table_distribution_overrides_workload_default() -> None:
    hot = HotSet(hot_rows=3, hot_mass=0.5)
    w = WorkloadSpec(
        name="w", tables=(TableSpec(name="a", rows=10, dim=4, distribution=hot), TableSpec(name="b", rows=10, dim=4))
    )
    assert [t.distribution for t in w.effective().tables] == [hot, w.distribution]


def test_hot_tables_skew_pooling_onto_the_largest_tables() -> None:
    tables = tuple(
        TableSpec(name=f"t{i}", rows=1000 * (i + 1), dim=4, pooling=p) for i, p in enumerate([4, 2, 6, 3, 5])
    )
    w = WorkloadSpec(name="w", hot_tables=HotTables(tables=2, mass=0.9), tables=tables)
    e = w.effective()
    pooling = {t.name: t.pooling for t in e.tables}
    assert e.hot_tables is None  # applied once; the effective workload carries the skewed poolings
    hot = pooling["t4"] + pooling["t3"]  # the two with the most rows
    assert hot / sum(pooling.values()) == pytest.approx(0.9, abs=0.01)
    assert [pooling[n] for n in ("t0", "t1", "t2")] == [4, 2, 6]  # the others keep theirs
    assert pooling["t4"] / pooling["t3"] == pytest.approx(5 / 3, rel=0.02)  # in proportion to their own
    ones = tuple(t.model_copy(update={"pooling": 1}) for t in tables)
    skewed = WorkloadSpec(name="w", hot_tables=HotTables(tables=1, mass=0.9), tables=ones).effective()
    assert [t.pooling for t in skewed.tables] == [1, 1, 1, 1, 36]  # works with pooling 1 everywhere
    everything = WorkloadSpec(name="w", hot_tables=HotTables(tables=9), tables=tables).effective()
    assert [t.pooling for t in everything.tables] == [t.pooling for t in tables]


def test_dtype_sizes() -> None:
    assert [d.bytes for d in DType] == [4, 2, 1]


def test_builtin_targets() -> None:
    a = ascend910()
    assert (a.cores, a.local.capacity_bytes, a.scratch.capacity_bytes) == (32, 1 << 20, 256 << 10)
    assert not a.calibrated and "assumption" in a.source
    c = cpu()
    assert c.cores >= 1 and c.local.capacity_bytes > c.scratch.capacity_bytes
    with pytest.raises(SpecError, match="unknown target 'nope'"):
        builtin_target("nope")


def test_cpu_target_reads_sysfs(tmp_path: Path) -> None:
    for idx, (level, kind, size) in enumerate(
        [(1, "Data", "48K"), (1, "Instruction", "32K"), (2, "Unified", "1024K"), (3, "Unified", "32768K")]
    ):
        d = tmp_path / "cpu0" / "cache" / f"index{idx}"
        d.mkdir(parents=True)
        (d / "level").write_text(f"{level}\n")
        (d / "type").write_text(f"{kind}\n")
        (d / "size").write_text(f"{size}\n")
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       1048576 kB\n")
    t = cpu(sysfs=tmp_path, meminfo=meminfo)
    assert t.scratch.capacity_bytes == 48 * 1024
    assert t.local.capacity_bytes == 1024 * 1024
    assert t.shared_cache is not None and t.shared_cache.capacity_bytes == 32 * 1024 * 1024
    assert t.main.capacity_bytes == 1 << 30


@pytest.mark.parametrize(
    ("setting", "page_bytes"),
    [("always [madvise] never", 2 << 20), ("[always] madvise never", 2 << 20), ("always madvise [never]", 4096)],
)
def test_cpu_target_translates_huge_pages_where_the_kernel_grants_them(
    tmp_path: Path, setting: str, page_bytes: int
) -> None:
    """The runtime asks for 2 MiB pages for its tables; the TLB translates those where the kernel grants them."""
    cpuinfo, thp = tmp_path / "cpuinfo", tmp_path / "enabled"
    cpuinfo.write_text("processor\t: 0\nTLB size\t: 3584 4K pages\n")
    thp.write_text(setting + "\n")
    t = cpu(cpuinfo=cpuinfo, thp=thp)
    assert t.tlb is not None and (t.tlb.entries, t.tlb.page_bytes) == (3584, page_bytes)
    assert cpu(cpuinfo=cpuinfo, thp=tmp_path / "missing").tlb == TLBSpec(entries=3584, page_bytes=4096)
