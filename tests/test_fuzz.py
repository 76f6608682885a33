"""Malformed input to every loader and command: exit status 2, one line naming the field and a fix, no file.

The inputs are workload files (YAML and JSON), target files, cost-profile files, plan files (`embmap explain`,
`embmap run`) and measurement tables (`embmap calibrate --from-csv`). A table of hand-picked cases covers each
kind of damage (empty, random bytes, not UTF-8, nested 10,000 deep, integers of 5,000 digits, unknown and
missing fields, strings, booleans, NaN, infinities, 1e308, 10**100 and negative numbers where counts and
times belong); hypothesis then puts random bytes, random values in random fields of valid files, and random
CSV cells through the same commands. Whatever it draws, the command exits 0 with its output written or 2
with one line and nothing written: never a traceback, an internal error, or half a file.

Examples are derandomized under the `ci` profile of tests/conftest.py; `HYPOTHESIS_PROFILE=long` searches
ten times as long with fresh draws.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import tempfile
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from embmap.cost_models import preset_profile
from embmap.ir.printer import printable
from embmap.ir.targets import ascend910
from embmap.mapper.cli import main
from tests.conftest import examples

FAST = ["--time-limit", "1", "--workers", "1", "--seed", "0", "--no-baselines"]
WORKLOAD: dict[str, Any] = {
    "name": "w",
    "batch_size": 64,
    "distribution": {"kind": "zipf", "alpha": 1.05},
    "tables": [
        {"name": "a", "rows": 1000, "dim": 16},
        {"name": "b", "rows": 50, "dim": 8, "dtype": "fp16", "pooling": 3, "distribution": {"kind": "uniform"}},
    ],
}
CSV_HEADER = "strategy,rows,dim,dtype,pooling,batch_size,row_lo,row_hi,sample_lo,sample_hi,distribution,measured_s"
CSV_ROW = "L1,5000,32,fp16,4,1024,0,5000,0,512,zipf:1.05,1.8e-05"
DEEP_LIST = "[" * 10_000 + "]" * 10_000
DEEP_MAP = '{"a": ' * 10_000 + "1" + "}" * 10_000
HUGE_INT = "9" * 5000


def target_doc() -> dict[str, Any]:
    return json.loads(ascend910().model_dump_json())


def profile_doc() -> dict[str, Any]:
    return json.loads(preset_profile(ascend910()).model_dump_json())


@cache
def plan_text() -> str:
    """A valid plan of WORKLOAD on ascend910, compiled once."""
    with tempfile.TemporaryDirectory() as folder:
        work, plan = Path(folder) / "w.json", Path(folder) / "plan.json"
        work.write_text(json.dumps(WORKLOAD))
        code, _, err = cli(["compile", str(work), "--target", "ascend910", *FAST, "-o", str(plan)])
        assert code == 0, err
        return plan.read_text()


# Running a command on one input file ----------------------------------------------------------------------


def cli(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(args)
    return code, out.getvalue(), err.getvalue()


def command(kind: str, path: Path, folder: Path) -> tuple[list[str], Path | None]:
    """The command line that reads `path` as input of `kind`, and the output it would write (if any)."""
    out = folder / "result.json"
    workload = folder / "good-workload.json"
    workload.write_text(json.dumps(WORKLOAD))
    if kind == "workload":
        return ["compile", str(path), "--target", "ascend910", *FAST, "-o", str(out)], out
    if kind == "target":
        return ["compile", str(workload), "--target", str(path), *FAST, "-o", str(out)], out
    if kind == "profile":
        return ["compile", str(workload), "--target", "ascend910", "--profile", str(path), *FAST, "-o", str(out)], out
    if kind == "explain":
        return ["explain", str(path)], None
    if kind == "run":
        return ["run", str(path), "--batches", "1", "--warmup", "0"], None
    assert kind == "csv"
    return ["calibrate", "--target", "ascend910", "--from-csv", str(path), "-o", str(out)], out


def outcome(kind: str, name: str, content: bytes) -> tuple[int, str, Path | None, set[str]]:
    """Run the command of `kind` on a file `name` holding `content`: exit code, stderr, output path (which no
    longer exists once returned: it is checked inside), and the files left beside the input."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / name
        path.write_bytes(content)
        args, out = command(kind, path, folder)
        code, _, err = cli(args)
        assert code in (0, 2), f"exit {code}: {err}"
        if code == 2:
            assert_one_line_error(err)
            assert out is None or not out.exists(), f"wrote {out} although it failed: {err}"
        elif out is not None:
            assert out.is_file() and out.stat().st_size > 0
        left = {p.name for p in folder.iterdir()} - {name, "good-workload.json", "result.json"}
        return code, err, out, left


def assert_one_line_error(err: str) -> None:
    assert err.startswith("embmap: error: ") and err.count("\n") == 1, err
    assert printable(err[:-1]) == err[:-1], f"unescaped control characters: {err!r}"
    assert "Traceback" not in err and "internal error" not in err, err
    assert "(fix: " in err and not err.rstrip().endswith("(fix: )"), err


def assert_rejected(kind: str, name: str, content: bytes, words: str = "") -> None:
    code, err, _, left = outcome(kind, name, content)
    assert code == 2, f"accepted: {content[:200]!r}"
    assert words in err, err
    assert not left, f"left {left} behind"


# Hand-picked cases -----------------------------------------------------------------------------------------


def with_value(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy of `doc` with the field at dotted `path` (list indices as numbers) set, or removed if
    `value` is REMOVE."""
    doc = json.loads(json.dumps(doc))
    *parents, last = path.split(".")
    node: Any = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    key: Any = int(last) if isinstance(node, list) else last
    if value is REMOVE:
        del node[key]
    else:
        node[key] = value
    return doc


REMOVE = object()
NOT_A_COUNT = {
    "text": "abc",
    "quoted": "16",
    "float": 2.5,
    "1e308": 1e308,
    "10**100": 10**100,
    "negative": -1,
    "zero": 0,
    "nan": math.nan,
    "inf": math.inf,
    "null": None,
    "true": True,
    "list": [],
    "map": {},
}
NOT_A_MEAN = {k: v for k, v in NOT_A_COUNT.items() if k != "float"}  # a mean such as a pooling factor: 2.5 is one
NOT_A_TIME = {
    "text": "abc",
    "quoted": "1e-9",
    "negative": -1.0,
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "1e308": 1e308,
    "10**100": 10**100,
    "null": None,
    "true": True,
    "list": [1],
}
NOT_A_RATE = {
    "text": "abc",
    "zero": 0,
    "negative": -1e9,
    "nan": math.nan,
    "inf": math.inf,
    "null": None,
    "false": False,
}

FIELD_CASES: list[tuple[str, str, str, dict[str, Any]]] = [
    ("workload", "batch_size", "workload.batch_size", NOT_A_COUNT),
    ("workload", "tables.0.rows", "workload.tables[0].rows", NOT_A_COUNT),
    ("workload", "tables.1.dim", "workload.tables[1].dim", NOT_A_COUNT),
    ("workload", "tables.1.pooling", "workload.tables[1].pooling", NOT_A_MEAN),
    ("workload", "distribution.alpha", "workload.distribution.alpha", NOT_A_TIME | {"zero": 0}),
    ("target", "cores", "target.cores", NOT_A_COUNT),
    ("target", "local.capacity_bytes", "target.local.capacity_bytes", NOT_A_COUNT),
    ("target", "main.capacity_bytes", "target.main.capacity_bytes", NOT_A_COUNT),
    ("target", "scratch.bandwidth_bytes_per_s", "target.scratch.bandwidth_bytes_per_s", NOT_A_RATE),
    ("target", "main.latency_s", "target.main.latency_s", NOT_A_TIME),
    ("profile", "item_fixed_s", "profile", NOT_A_TIME),
    ("profile", "main_bytes_per_s", "profile.main_bytes_per_s", NOT_A_RATE),
    ("profile", "cache_effective_fraction", "profile.cache_effective_fraction", NOT_A_TIME | {"zero": 0}),
    ("explain", "makespan_s", "plan", NOT_A_TIME),
    ("explain", "tables.0.rows", "plan", NOT_A_COUNT),
    ("explain", "items.0.core", "plan", NOT_A_COUNT | {"past-last": 32}),
    ("run", "lower_bound_s", "plan", NOT_A_TIME),
]


def base_doc(kind: str) -> dict[str, Any]:
    if kind == "workload":
        return WORKLOAD
    if kind == "target":
        return target_doc()
    if kind == "profile":
        return profile_doc()
    return json.loads(plan_text())


def field_cases() -> list[Any]:
    cases = []
    for kind, path, words, values in FIELD_CASES:
        for label, value in values.items():
            cases.append(pytest.param(kind, path, value, words, id=f"{kind}-{path}={label}"))
    for kind in ("workload", "target", "profile", "explain"):
        cases.append(pytest.param(kind, "frobnicate", 1, "frobnicate: unknown field", id=f"{kind}-unknown-field"))
        required = {"workload": "tables", "target": "cores", "profile": "item_fixed_s", "explain": "workload"}[kind]
        cases.append(pytest.param(kind, required, REMOVE, "field required", id=f"{kind}-missing-{required}"))
    cases.append(pytest.param("workload", "tables.1.name", "a", "repeats", id="workload-duplicate-name"))
    cases.append(pytest.param("workload", "tables.0.dtype", "fp64", "dtype", id="workload-unknown-dtype"))
    cases.append(
        pytest.param("workload", "tables.0.distribution", {"kind": "pareto"}, "distribution", id="workload-bad-kind")
    )
    cases.append(pytest.param("workload", "tables", [[]] * 3, "workload.tables[0]", id="workload-tables-of-lists"))
    cases.append(pytest.param("workload", "tables.0.name", "a b/c", "workload.tables[0].name", id="workload-bad-name"))
    cases.append(pytest.param("explain", "schema_version", "embmap.plan/2", "schema_version", id="plan-version"))
    cases.append(pytest.param("explain", "workload.tables.0.rows", 999, "digest", id="plan-edited-workload"))
    return cases


@pytest.mark.parametrize(("kind", "path", "value", "words"), field_cases())
def test_one_broken_field(kind: str, path: str, value: Any, words: str) -> None:
    doc = with_value(base_doc(kind), path, value)
    assert_rejected(kind, "in.json", json.dumps(doc).encode(), words)


RAW_CASES = {
    "empty": b"",
    "whitespace": b"  \n\n",
    "random-bytes": bytes(range(256)) * 4,
    "latin-1": "name: caf\xe9\ntables: []\n".encode("latin-1"),
    "nul-bytes": b"\x00" * 64,
    "deep-list": DEEP_LIST.encode(),
    "deep-map": DEEP_MAP.encode(),
    "huge-int": f'{{"name": "w", "batch_size": {HUGE_INT}}}'.encode(),
    "null": b"null",
    "scalar": b"3",
    "list": b"[1, 2]",
    "truncated": json.dumps(WORKLOAD)[:40].encode(),
    "key-twice": b'{"name": "w", "name": "w"}',
}
FILE_KINDS = {
    "workload": ("w.json", "w.yaml"),
    "target": ("t.json", "t.yaml"),
    "profile": ("p.json", "p.yml"),
    "explain": ("plan.json",),
    "run": ("plan.json",),
    "csv": ("m.csv",),
}


@pytest.mark.parametrize("case", sorted(RAW_CASES))
@pytest.mark.parametrize("kind", sorted(FILE_KINDS))
def test_damaged_files(kind: str, case: str) -> None:
    for name in FILE_KINDS[kind]:
        assert_rejected(kind, name, RAW_CASES[case])


YAML_CASES = {
    "deep-flow": "name: w\ntables: " + DEEP_LIST + "\n",
    "deep-block": "name: w\ntables:\n" + "".join("  " * i + "- \n" for i in range(2000)),
    "alias-loop": "name: w\ntables: &t [*t]\n",
    "python-tag": "!!python/object/apply:os.system ['true']\n",
    "tab-indent": "name: w\ntables:\n\t- {name: a, rows: 5, dim: 4}\n",
    "yaml-nan": "name: w\ntables: [{name: a, rows: .nan, dim: 4}]\n",
    "yaml-inf": "name: w\nbatch_size: .inf\ntables: [{name: a, rows: 5, dim: 4}]\n",
    "yaml-bool": "name: w\ntables: [{name: a, rows: yes, dim: 4}]\n",
    "yaml-date": "name: w\ntables: [{name: a, rows: 2024-01-01, dim: 4}]\n",
    "duplicate-key-types": "name: w\ntables: {a: 1}\n",
    "key-twice": "name: w\ntables: [{name: a, rows: 5, dim: 4, dim: 4}]\n",
    "yaml-octal": "name: w\ntables: [{name: a, rows: 010, dim: 4}]\n",
    "yaml-base-60": "name: w\ntables: [{name: a, rows: 1:30, dim: 4}]\n",
    "yaml-underscore": "name: w\ntables: [{name: a, rows: 1_000, dim: 4}]\n",
    "yaml-no-as-name": "name: no\ntables: [{name: a, rows: 5, dim: 4}]\n",
    "escape-in-name": 'name: w\ntables: [{name: "a\\e[31m", rows: 5, dim: 4}]\n',
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_malformed_yaml_workloads(case: str) -> None:
    assert_rejected("workload", "w.yaml", YAML_CASES[case].encode())


CSV_CASES = {
    "header-only": (CSV_HEADER + "\n", "no measurements"),
    "one-row": (CSV_HEADER + "\n" + CSV_ROW + "\n", "measurements to fit"),
    "no-header": (CSV_ROW + "\n", "unknown column"),
    "unknown-column": (CSV_HEADER + ",colour\n" + CSV_ROW + ",red\n", "unknown column 'colour'"),
    "repeated-column": (CSV_HEADER + ",rows\n" + CSV_ROW + ",5\n", "repeats"),
    "missing-column": (CSV_HEADER.replace(",measured_s", "") + "\n", "measured_s"),
    "short-row": (CSV_HEADER + "\n" + CSV_ROW.rsplit(",", 1)[0] + "\n", "values"),
    "unclosed-quote": (CSV_HEADER + '\n"L1,5000\n', "line 2"),
    "rows-exponent": (CSV_HEADER + "\n" + CSV_ROW.replace("L1,5000,", "L1,5e3,", 1) + "\n", "column rows"),
    "rows-huge": (CSV_HEADER + "\n" + CSV_ROW.replace("L1,5000,", f"L1,{HUGE_INT},", 1) + "\n", "column rows"),
    "rows-negative": (CSV_HEADER + "\n" + CSV_ROW.replace("L1,5000,", "L1,-5,", 1) + "\n", "column rows"),
    "dim-text": (CSV_HEADER + "\n" + CSV_ROW.replace(",32,", ",wide,", 1) + "\n", "column dim"),
    "dtype": (CSV_HEADER + "\n" + CSV_ROW.replace("fp16", "fp64") + "\n", "column dtype"),
    "strategy": (CSV_HEADER + "\n" + CSV_ROW.replace("L1,", "L3,", 1) + "\n", "column strategy"),
    "measured-nan": (CSV_HEADER + "\n" + CSV_ROW.replace("1.8e-05", "nan") + "\n", "column measured_s"),
    "measured-inf": (CSV_HEADER + "\n" + CSV_ROW.replace("1.8e-05", "inf") + "\n", "column measured_s"),
    "measured-zero": (CSV_HEADER + "\n" + CSV_ROW.replace("1.8e-05", "0") + "\n", "column measured_s"),
    "measured-negative": (CSV_HEADER + "\n" + CSV_ROW.replace("1.8e-05", "-1e-5") + "\n", "column measured_s"),
    "row-range-past-end": (CSV_HEADER + "\n" + CSV_ROW.replace(",0,5000,", ",0,5001,") + "\n", "column row_hi"),
    "empty-range": (CSV_HEADER + "\n" + CSV_ROW.replace(",0,512,", ",512,512,") + "\n", "column sample_hi"),
    "zipf-alpha": (CSV_HEADER + "\n" + CSV_ROW.replace("zipf:1.05", "zipf:-1") + "\n", "column distribution"),
    "hot-set-mass": (CSV_HEADER + "\n" + CSV_ROW.replace("zipf:1.05", "hot-set:16:1.5") + "\n", "column distribution"),
    "hot-set-rows-text": (CSV_HEADER + "\n" + CSV_ROW.replace("zipf:1.05", "hot-set:x:0.5") + "\n", "distribution"),
    "first-on-core": (CSV_HEADER + ",first_on_core\n" + CSV_ROW + ",yes\n", "column first_on_core"),
    "cache-share-nan": (CSV_HEADER + ",cache_share_bytes\n" + CSV_ROW + ",nan\n", "column cache_share_bytes"),
    "core-text": (CSV_HEADER + ",core\n" + CSV_ROW + ",first\n", "column core"),
    "core-negative": (CSV_HEADER + ",core\n" + CSV_ROW + ",-1\n", "column core"),
}


@pytest.mark.parametrize("case", sorted(CSV_CASES))
def test_malformed_measurement_tables(case: str) -> None:
    text, words = CSV_CASES[case]
    assert_rejected("csv", "m.csv", text.encode(), words)


# Random input ----------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([0, -1, 2**63, 10**100, 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def field_paths(doc: Any, prefix: str = "") -> list[str]:
    """Every dotted path to a field or list entry of a document."""
    out = []
    items = enumerate(doc) if isinstance(doc, list) else doc.items() if isinstance(doc, dict) else ()
    for key, value in items:
        path = f"{prefix}{key}"
        out.append(path)
        out += field_paths(value, path + ".")
    return out


def assert_zero_or_clean(kind: str, name: str, content: bytes) -> None:
    code, err, _, left = outcome(kind, name, content)
    assert not left, f"left {left} behind ({err})"


@st.composite
def mutated(draw: st.DrawFn, kind: str) -> bytes:
    """A valid document of `kind` with one random field (or list entry) replaced by a random JSON value."""
    doc = base_doc(kind)
    path = draw(st.sampled_from(field_paths(doc)))
    return json.dumps(with_value(doc, path, draw(json_values))).encode()


@examples(40)
@given(content=mutated("workload"))
def test_random_value_in_a_workload(content: bytes) -> None:
    assert_zero_or_clean("workload", "w.json", content)


@examples(40)
@given(content=mutated("target"))
def test_random_value_in_a_target(content: bytes) -> None:
    assert_zero_or_clean("target", "t.json", content)


@examples(40)
@given(content=mutated("profile"))
def test_random_value_in_a_profile(content: bytes) -> None:
    assert_zero_or_clean("profile", "p.json", content)


@examples(60)
@given(content=mutated("explain"))
def test_random_value_in_a_plan(content: bytes) -> None:
    assert_zero_or_clean("explain", "plan.json", content)


@examples(40)
@given(kind=st.sampled_from(sorted(FILE_KINDS)), content=st.binary(max_size=300))
def test_random_bytes_are_rejected(kind: str, content: bytes) -> None:
    for name in FILE_KINDS[kind]:
        assert_rejected(kind, name, content)


@examples(40)
@given(text=st.text(st.characters(codec="utf-8"), max_size=200))
def test_random_text_workloads_are_rejected(text: str) -> None:
    """Text with no `name` and `tables` can never be a workload, in YAML or JSON."""
    assert_rejected("workload", "w.yaml", text.encode())


csv_cells = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", "nan", "inf", "-1", "0", "1e308", HUGE_INT, "L1", "zipf:", "hot-set:0:0", '"', "\x00"]),
)


@examples(40)
@given(cells=st.lists(csv_cells, min_size=12, max_size=12))
def test_random_measurement_rows_are_rejected(cells: list[str]) -> None:
    """One measured row can never be fitted (too few points), so every random row fails in one line."""
    line = ",".join(cells).replace("\n", " ").replace("\r", " ")
    assert_rejected("csv", "m.csv", f"{CSV_HEADER}\n{line}\n".encode())


# Numbers that never pass through a loader --------------------------------------------------------------------
# Every number of the command line and every key of a synthetic recipe, past its bounds, meets the same
# contract as a broken file: exit 2, one line naming the option or key, nothing written. Each case names the
# command's input as `{workload}` / `{plan}` (a valid file written first) and its outputs under the folder.

NUMBER_CASES: dict[str, tuple[list[str], str]] = {
    "time-limit-nan": (["--time-limit", "nan"], "--time-limit: must be positive"),
    "time-limit-inf": (["--time-limit", "inf"], "--time-limit: must be positive"),
    "time-limit-negative": (["--time-limit", "-1"], "--time-limit: must be positive"),
    "seed-65-bits": (["--seed", str(2**64)], "--seed: must be >= 0"),
    "seed-negative": (["--seed", "-1"], "--seed: must be >= 0"),
    "workers-100000": (["--workers", "100000"], "--workers: must be > 0"),
    "max-moves-1e30": (["--previous", "{plan}", "--max-moves", "1e30"], "--max-moves: must be >= 0"),
    "devices-100000": (["--devices", "100000"], "--devices: must be > 0"),
    "link-gbps-inf": (["--devices", "2", "--link-gbps", "inf"], "--link-gbps: must be positive"),
    "device-cores-0": (["--devices", "2", "--device-cores", "0"], "--device-cores: must be > 0"),
    "device-memory-0": (["--devices", "2", "--device-memory", "0"], "--device-memory: must be > 0"),
    "cores-huge-int": (["--cores", HUGE_INT], "--cores: must be > 0"),
    "hot-set-rows-beyond-any-table": (["--distribution", "hot-set:10000000000000"], "ROWS 1 to 1,000,000,000,000"),
    "batch-1e3": (["--batch", "1e3"], "--batch: must be > 0"),
    "row-cap-negative": (["--row-cap", "-5"], "--row-cap: must be >= 0"),
}
RECIPE_CASES: dict[str, tuple[str, str]] = {
    "batch_size=0": ("batch_size=0", "synthetic.batch_size: must be >= 1"),
    "tables=100001": ("tables=100001", "synthetic.tables: must be >= 1"),
    "tables=1e9": ("tables=1000000000", "synthetic.tables: must be >= 1"),
    "total_bytes=nan": ("total_bytes=nan", "synthetic.total_bytes: must be > 0"),
    "dims=70000": ("dims=70000", "synthetic.dims: must be >= 1"),
    "seed=-1": ("seed=-1", "synthetic.seed: must be >= 0"),
    "pooling_skew=-1": ("pooling_skew=-1", "synthetic.pooling_skew: must be >= 0"),
    "pooling-too-high": ("tables=50,pooling_mean=100000,pooling_skew=2", "synthetic.pooling_mean: draws table"),
    "rows-too-many": ("tables=1,total_bytes=1e15,dims=16", "synthetic.total_bytes: draws table"),
    "key-twice": ("seed=1,seed=2", "synthetic.seed: is given twice"),
}
RUN_CASES: dict[str, tuple[list[str], str]] = {
    "batches-0": (["--batches", "0"], "--batches: must be > 0"),
    "batches-1e7": (["--batches", "10000000"], "--batches: must be > 0"),
    "warmup-negative": (["--warmup", "-1"], "--warmup: must be >= 0"),
    "seed-negative": (["--seed", "-1"], "--seed: must be >= 0"),
    "timeout-inf": (["--timeout", "inf"], "--timeout: must be positive"),
}


def number_case(case: str, folder: Path) -> list[str]:
    """The command line of a case, its inputs written into `folder`, its outputs aimed there."""
    plan, workload = folder / "plan.json", folder / "good-workload.json"
    plan.write_text(plan_text())
    workload.write_text(json.dumps(WORKLOAD))
    out = ["-o", str(folder / "result.json")]
    kind, _, name = case.partition(":")
    if kind == "compile":
        options = [o.format(plan=plan) for o in NUMBER_CASES[name][0]]
        return ["compile", str(workload), "--target", "ascend910", *FAST, *options, *out]
    if kind == "recipe":
        return ["compile", f"synthetic:{RECIPE_CASES[name][0]}", "--target", "ascend910", *FAST, *out]
    if kind == "run":
        return ["run", str(plan), *RUN_CASES[name][0]]
    if kind == "bench":
        return ["bench", "--quick", "--no-measure", "--repeats", name, "--out", str(folder / "bench")]
    assert kind == "profile"
    profile = folder / "cpu-profile.json"
    profile.write_text(json.dumps({**profile_doc(), "target": "cpu"}))
    return ["compile", str(workload), "--target", "ascend910", "--profile", str(profile), *FAST, *out]


NUMBER_WORDS = {
    **{f"compile:{k}": v[1] for k, v in NUMBER_CASES.items()},
    **{f"recipe:{k}": v[1] for k, v in RECIPE_CASES.items()},
    **{f"run:{k}": v[1] for k, v in RUN_CASES.items()},
    **{f"bench:{n}": "--repeats: must be > 0" for n in ("0", "1000000")},
    "profile:another-target": "--profile: cpu-profile.json was made for target cpu",
}


@pytest.mark.parametrize("case", sorted(NUMBER_WORDS))
def test_numbers_outside_files(case: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        args = number_case(case, folder)
        before = {p.name for p in folder.iterdir()}
        code, _, err = cli(args)
        assert code == 2, f"exit {code}: {err}"
        assert_one_line_error(err)
        assert NUMBER_WORDS[case] in err, err
        assert {p.name for p in folder.iterdir()} == before, f"left {set(folder.iterdir()) - before} behind"


# Output paths: refused before any work, in one line, with exit 2 and the inputs untouched ------------------

OUTPUT_CASES: dict[str, tuple[str, str]] = {
    "compile-to-a-directory": ("compile -o {dir}", "is a directory"),
    "compile-to-a-fifo": ("compile -o {fifo}", "is a FIFO"),
    "compile-to-its-workload": ("compile -o {workload}", "is also an input"),
    "compile-to-its-previous-plan": ("compile --previous {plan} -o {plan}", "is also an input"),
    "compile-to-a-missing-directory": ("compile -o {folder}/nope/p.json", "does not exist"),
    "compile-into-a-file": ("compile -o {workload}/p.json", "is not a directory"),
    "calibrate-one-path-twice": ("calibrate -o {folder}/p.json --save-csv {folder}/p.json", "also given to --output"),
    "calibrate-over-its-table": ("calibrate -o {folder}/p.json --save-csv {csv}", "is also an input"),
    "calibrate-stdout-twice": ("calibrate -o - --save-csv -", "also given to --output"),
    "export-over-its-plan": ("export {plan} -o {plan}", "is also an input"),
    "export-to-stdout": ("export {plan} -o -", "is binary"),
    "bench-plot-is-a-directory": ("bench --quick --no-measure --out {folder}", "speedup.png is a directory"),
}


def output_case(case: str, folder: Path) -> list[str]:
    """The command line of a case, with a directory, a FIFO and the command's inputs in `folder`."""
    import os

    plan, workload, csv = folder / "plan.json", folder / "good-workload.json", folder / "m.csv"
    plan.write_text(plan_text())
    workload.write_text(json.dumps(WORKLOAD))
    csv.write_text(f"{CSV_HEADER}\n{CSV_ROW}\n")
    (folder / "dir").mkdir()
    (folder / "speedup.png").mkdir()
    os.mkfifo(folder / "fifo")
    line = OUTPUT_CASES[case][0].format(
        folder=folder, dir=folder / "dir", fifo=folder / "fifo", workload=workload, plan=plan, csv=csv
    )
    command, *rest = line.split()
    if command == "compile":
        return ["compile", str(workload), "--target", "ascend910", *FAST, *rest]
    if command == "calibrate":
        return ["calibrate", "--target", "ascend910", "--from-csv", str(csv), *rest]
    return [command, *rest]


@pytest.mark.parametrize("case", sorted(OUTPUT_CASES))
def test_bad_output_paths(case: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        args = output_case(case, folder)
        before = {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}
        code, out, err = cli(args)
        assert code == 2, f"exit {code}: {err}"
        assert_one_line_error(err)
        assert OUTPUT_CASES[case][1] in err, err
        assert out == "" and (folder / "fifo").is_fifo() and (folder / "dir").is_dir()
        assert {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()} == before
        assert sorted(p.name for p in folder.iterdir()) == sorted([*before, "dir", "fifo", "speedup.png"])
