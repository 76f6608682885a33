"""Measured work items, and the CSV format any runtime writes them in for `embmap calibrate --from-csv`.

One measured work item per line:

    # comment lines and blank lines are ignored
    strategy,rows,dim,dtype,pooling,batch_size,row_lo,row_hi,sample_lo,sample_hi,distribution,measured_s
    L1,5000,32,fp16,4,1024,0,5000,0,512,zipf:1.05,1.8e-05

Every column, the optional ones (`table`, `plan`, `cache_share_bytes`, `first_on_core`, `core`) and the
rules are in docs/calibration.md ("The measurements CSV"). Every problem is one line naming the file, the
line and the column, with a fix.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from embmap.ir.errors import SpecError
from embmap.ir.output import write_text_atomic
from embmap.ir.plan import Strategy
from embmap.ir.spec import AnyDistribution, DType, Empirical, HotSet, TableSpec, Uniform, Zipf

COLUMNS = (
    "strategy",
    "rows",
    "dim",
    "dtype",
    "pooling",
    "batch_size",
    "row_lo",
    "row_hi",
    "sample_lo",
    "sample_hi",
    "distribution",
    "measured_s",
)
OPTIONAL_COLUMNS = ("table", "plan", "cache_share_bytes", "first_on_core", "core")
DISTRIBUTION_FIX = "write uniform, zipf:ALPHA (e.g. zipf:1.05) or hot-set:ROWS:MASS (e.g. hot-set:16:0.9)"
# The most measurements one fit takes: a fit costs tens of milliseconds a measurement (each priced by the cost
# model at every cache fraction and window the search tries), so 10,000 take minutes; the shipped cpu fit
# has 2,315. Larger files are refused before they are read, at about 500 bytes a line.
MAX_MEASUREMENTS = 10_000
MAX_CSV_BYTES = 500 * MAX_MEASUREMENTS
# A measured item takes at least a nanosecond (no timer resolves less, and the solver counts whole
# nanoseconds) and at most an hour (a batch's item, not a benchmark's whole run).
MIN_MEASURED_S = 1e-9
MAX_MEASURED_S = 3600.0

Problem = tuple[str, str, str]  # (field, problem, fix), the field a CSV column name


@dataclass(frozen=True)
class Measurement:
    """One work item measured on one core: what was run, and how long it took."""

    strategy: Strategy
    table: TableSpec  # with `distribution` set
    batch_size: int
    rows: tuple[int, int]  # half-open row range
    samples: tuple[int, int]  # half-open sample range
    measured_s: float  # median over repetitions
    cache_share_bytes: float | None = None  # None: the share its plan's tables leave it (all of it if alone)
    first_on_core: bool = True  # the first item its core ran in the batch: it pays the core's start-up
    plan: str = ""  # measurements of one plan share the cache; "" means the table ran alone
    core: int | None = None  # the core it ran on in its plan; None: alone on its core


def _problem(m: Measurement) -> Problem | None:
    """What is wrong with a measurement, if anything, named by its CSV column."""
    if m.table.distribution is None:
        return "distribution", "is not set", "give the table an explicit distribution, e.g. uniform"
    if m.batch_size <= 0:
        return "batch_size", f"must be positive, got {m.batch_size}", "give the batch size the item served"
    ranges = (("row", m.rows, m.table.rows, "table"), ("sample", m.samples, m.batch_size, "batch"))
    for name, (lo, hi), end, whole in ranges:
        if lo < 0:
            return f"{name}_lo", f"must be at least 0, got {lo}", f"{name}s are numbered from 0"
        if hi > end:
            return f"{name}_hi", f"{hi} is past the end of the {whole} ({end} {name}s)", f"use at most {end}"
        if hi <= lo:
            return (
                f"{name}_hi",
                f"must be greater than {name}_lo ({lo}), got {hi}: the range is empty",
                f"give a non-empty half-open range {name}_lo < {name}_hi",
            )
    if not (math.isfinite(m.measured_s) and m.measured_s > 0):
        return "measured_s", f"must be a positive number, got {m.measured_s!r}", "write seconds, e.g. 1.2e-05"
    if not MIN_MEASURED_S <= m.measured_s <= MAX_MEASURED_S:
        return (
            "measured_s",
            f"must be between {MIN_MEASURED_S:g} and {MAX_MEASURED_S:g} s, got {m.measured_s!r}",
            "write the item's time in seconds, e.g. 1.2e-05",
        )
    share = m.cache_share_bytes
    if share is not None and not (math.isfinite(share) and share >= 0):
        return "cache_share_bytes", f"must be a non-negative number, got {share!r}", "write bytes, or leave it empty"
    return None


def require_valid(m: Measurement, where: str) -> None:
    problem = _problem(m)
    if problem is not None:
        field, what, fix = problem
        raise SpecError(f"{where}.{field}", what, fix)


def read_csv(path: Path) -> list[Measurement]:
    """Measurements from a CSV file (format in the module docstring); every problem is a one-line SpecError."""
    text = _read_text(path)
    columns: list[str] | None = None
    out: list[Measurement] = []
    for line, raw in enumerate(text.split("\n"), start=1):  # newlines are already universal: exact line numbers
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        cells = _split(raw, path.name, line)
        if columns is None:
            columns = _check_header(cells, path.name, line)
        elif len(out) == MAX_MEASUREMENTS:
            raise SpecError(f"{path.name} line {line}", f"more than {MAX_MEASUREMENTS:,} measurements", TOO_MANY_FIX)
        else:
            out.append(_parse_row(cells, columns, path.name, line))
    if columns is None:
        raise SpecError(path.name, "is empty: no header row", f"start the file with the header {','.join(COLUMNS)}")
    return out


TOO_MANY_FIX = f"fit a sample of at most {MAX_MEASUREMENTS:,} of them (every strategy and table size represented)"


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise SpecError(path.name or str(path), f"no such file {str(path)!r}", "give the path of a measurements CSV")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise SpecError(path.name, f"cannot read it: {exc}", "give a readable measurements CSV") from None
    if size > MAX_CSV_BYTES:
        raise SpecError(path.name, f"is {size:,} bytes, more than the {MAX_CSV_BYTES:,} a CSV may hold", TOO_MANY_FIX)
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte-order mark (spreadsheet export) is not a column
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(path.name, f"cannot read it: {exc}", "give a UTF-8 text file") from None


def _split(raw: str, file: str, line: int) -> list[str]:
    try:
        cells = next(csv.reader([raw], strict=True))
    except csv.Error as exc:
        raise SpecError(f"{file} line {line}", f"not valid CSV: {exc}", "separate values with commas") from None
    return [c.strip() for c in cells]


def _check_header(cells: list[str], file: str, line: int) -> list[str]:
    known = COLUMNS + OPTIONAL_COLUMNS
    for i, name in enumerate(cells):
        where = f"{file} line {line} column {name or i + 1}"
        if name not in known:
            raise SpecError(
                where, f"unknown column {name!r}", f"the first row must be the header; columns are {','.join(known)}"
            )
        if name in cells[:i]:
            raise SpecError(where, "repeats an earlier column", "name each column once")
    missing = [c for c in COLUMNS if c not in cells]
    if missing:
        raise SpecError(
            f"{file} line {line} column {missing[0]}",
            "is missing from the header",
            f"the header must name {','.join(COLUMNS)}",
        )
    return cells


def _parse_row(cells: list[str], columns: list[str], file: str, line: int) -> Measurement:
    prefix = f"{file} line {line}"
    if len(cells) != len(columns):
        raise SpecError(
            prefix,
            f"has {len(cells)} values, the header has {len(columns)} columns",
            "write one value per column, separated by commas",
        )
    row = dict(zip(columns, cells, strict=True))

    def where(column: str) -> str:
        return f"{prefix} column {column}"

    table = _parse_table(row, line, where)
    share = row.get("cache_share_bytes", "")
    m = Measurement(
        strategy=_parse_strategy(row["strategy"], where("strategy")),
        table=table,
        batch_size=_parse_int(row["batch_size"], where("batch_size"), 1),
        rows=(_parse_int(row["row_lo"], where("row_lo"), 0), _parse_int(row["row_hi"], where("row_hi"), 0)),
        samples=(
            _parse_int(row["sample_lo"], where("sample_lo"), 0),
            _parse_int(row["sample_hi"], where("sample_hi"), 0),
        ),
        measured_s=_parse_float(row["measured_s"], where("measured_s"), "seconds, e.g. 1.2e-05", positive=True),
        cache_share_bytes=_parse_float(share, where("cache_share_bytes"), "bytes, or leave it empty")
        if share
        else None,
        first_on_core=_parse_flag(row.get("first_on_core", ""), where("first_on_core")),
        plan=row.get("plan", "").strip(),
        core=_parse_int(row["core"], where("core"), 0) if row.get("core", "") else None,
    )
    problem = _problem(m)
    if problem is not None:
        raise SpecError(where(problem[0]), problem[1], problem[2])
    return m


def _parse_table(row: dict[str, str], line: int, where: Callable[[str], str]) -> TableSpec:
    rows = _parse_int(row["rows"], where("rows"), 1)
    dim = _parse_int(row["dim"], where("dim"), 1)
    pooling = _parse_float(
        row["pooling"], where("pooling"), "the mean lookups per sample, e.g. 8 or 2.5", positive=True
    )
    dtype = row["dtype"].lower()
    if dtype not in {d.value for d in DType}:
        raise SpecError(where("dtype"), f"unknown dtype {row['dtype']!r}", "use fp32, fp16 or int8")
    distribution = _parse_distribution(row["distribution"], where("distribution"))
    try:
        return TableSpec(
            name=row.get("table") or f"m{line}",
            rows=rows,
            dim=dim,
            dtype=DType(dtype),
            pooling=pooling,
            distribution=distribution,
        )
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        column = str(err["loc"][0]) if err.get("loc") else "rows"
        column = "table" if column == "name" else column
        raise SpecError(
            where(column),
            f"{err['msg'][0].lower()}{err['msg'][1:]}, got {err.get('input')!r}",
            "use a value in the allowed range",
        ) from None


def _parse_strategy(text: str, where: str) -> Strategy:
    try:
        return Strategy(text.upper())
    except ValueError:
        raise SpecError(where, f"unknown strategy {text!r}", "use GM, L1, GM-UB or L1-UB") from None


def _parse_int(text: str, where: str, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise SpecError(
            where, f"must be a whole number, got {text!r}", f"write an integer of at least {minimum}"
        ) from None
    if value < minimum:
        raise SpecError(where, f"must be at least {minimum}, got {value}", f"write an integer of at least {minimum}")
    return value


def _parse_float(text: str, where: str, unit: str, positive: bool = False) -> float:
    """A finite number, positive or non-negative."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise SpecError(where, f"must be a {kind} number, got {text!r}", f"write {unit}")
    return value


def _parse_distribution(text: str, where: str) -> Uniform | Zipf | HotSet:
    kind, *args = [part.strip() for part in text.lower().split(":")]
    try:
        if kind == "uniform" and not args:
            return Uniform()
        if kind == "zipf" and len(args) == 1:
            return Zipf(alpha=float(args[0]))
        if kind == "hot-set" and len(args) == 2:
            return HotSet(hot_rows=int(args[0]), hot_mass=float(args[1]))
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err.get("loc", ()))
        raise SpecError(
            where, f"{field} {err['msg'][0].lower()}{err['msg'][1:]}, got {text!r}", DISTRIBUTION_FIX
        ) from None
    except ValueError:
        pass
    raise SpecError(where, f"unknown distribution {text!r}", DISTRIBUTION_FIX)


def _parse_flag(text: str, where: str) -> bool:
    """`first_on_core`: 1 or 0; empty or absent means 1 (an item measured alone is its core's first)."""
    if text in ("", "1"):
        return True
    if text == "0":
        return False
    raise SpecError(
        where, f"must be 0 or 1, got {text!r}", "write 1 for the first item its core ran in the batch, else 0"
    )


def write_csv(measurements: Sequence[Measurement], path: Path) -> None:
    """Write measurements in the CSV format `read_csv` reads, atomically (temporary file, then rename)."""
    rows = [_format_row(m, i) for i, m in enumerate(measurements)]
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS + OPTIONAL_COLUMNS)
    writer.writerows(rows)
    write_text_atomic(path, text.getvalue())


def _format_row(m: Measurement, index: int) -> list[str]:
    require_valid(m, f"measurements[{index}]")
    t = m.table
    share = "" if m.cache_share_bytes is None else repr(float(m.cache_share_bytes))
    return [
        m.strategy.value, str(t.rows), str(t.dim), t.dtype.value, str(t.pooling), str(m.batch_size),
        str(m.rows[0]), str(m.rows[1]), str(m.samples[0]), str(m.samples[1]),
        _format_distribution(t.distribution), repr(float(m.measured_s)),
        t.name if m.plan else "", m.plan, share, "1" if m.first_on_core else "0",
        "" if m.core is None else str(m.core),
    ]  # fmt: skip


def _format_distribution(d: AnyDistribution | None) -> str:
    if isinstance(d, Empirical):
        raise SpecError(
            "measurements.distribution",
            "an empirical (profiled) distribution has no form in the measurement CSV",
            "measure tables of uniform, zipf or hot-set distributions for the CSV",
        )
    if isinstance(d, Zipf):
        return f"zipf:{d.alpha!r}"
    if isinstance(d, HotSet):
        return f"hot-set:{d.hot_rows}:{d.hot_mass!r}"
    return "uniform"
