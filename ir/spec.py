"""Workload and target specifications: what the user writes, validated when built.

A workload names the embedding tables of a model and how they are queried; a target names the cores of a
chip and the memories around them. Both are frozen pydantic models: values check themselves here, and
cross-object invariants (does this table fit anywhere?) live in `ir.verify`.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import math
from collections.abc import Sequence
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

NUMBER_TYPES = (int, float, int | None, float | None)

# The bounds of a workload's numbers, one place for the files' loaders and the command line's arguments.
# Tables: what a compile plans in minutes and a few GiB (synthetic:tables=10000 on ascend910: 234 s, 2.1 GiB;
# on target cpu, 1,471 s and 0.7 GiB, on two cores shared with other work). Time and memory
# grow with the tables, so 100,000 would take hours and about 20 GiB.
MAX_TABLES = 10_000
MAX_ROWS = 10**12
MAX_DIM = 65536
MAX_POOLING = 100_000
MAX_BATCH_SIZE = 10**7


def whole_if_integral(value: float) -> float:
    """A whole pooling factor as an int: 8 and 8.0 read, print and serialize as 8 (plans and digests of whole
    factors are what they were before fractional ones were allowed)."""
    return int(value) if float(value).is_integer() else value


# A count that is a mean, so it may be fractional; whole values stay ints.
_WHOLE = (AfterValidator(whole_if_integral), PlainSerializer(whole_if_integral, return_type=int | float))
MeanCount = Annotated[float, *_WHOLE]
# Lookups per sample: the mean over samples, so it may be fractional (TorchRec's pooling factors, a trace's
# measured mean). The cost model prices the mean; `embmap run` gives each sample floor or ceil of it (runtime.data).
Pooling = Annotated[float, Field(gt=0, le=MAX_POOLING), *_WHOLE]


class Frozen(BaseModel):
    """Base of every IR value: immutable, and unknown fields are an error rather than silently ignored.

    Numbers must be finite numbers as written: `true`, `"16"` or `.inf` where a count or a time belongs is a
    mistake in the file, not a value to convert.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=False, allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _numbers_are_numbers(cls, data: object) -> object:
        if isinstance(data, dict):
            numeric = _numeric_fields(cls)
            for name, value in data.items():
                if isinstance(value, bool | str) and name in numeric:
                    raise PydanticCustomError(
                        "number_type", "must be a number, not a {kind}", {"field": name, "kind": type(value).__name__}
                    )
        return data


@functools.cache
def _numeric_fields(cls: type[BaseModel]) -> frozenset[str]:
    """The fields of a model class that hold a plain number (found once per class: every IR value is checked
    when built, and large plans build millions)."""
    return frozenset(name for name, field in cls.__pydantic_fields__.items() if field.annotation in NUMBER_TYPES)


class DType(enum.StrEnum):
    """Storage type of an embedding table's elements."""

    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"

    @property
    def bytes(self) -> int:
        return _DTYPE_BYTES[self]


_DTYPE_BYTES = {DType.FP32: 4, DType.FP16: 2, DType.INT8: 1}


# Index distributions ------------------------------------------------------------------------------------
# A distribution is over popularity *ranks*; the row id of rank r is a fixed pseudo-random permutation of
# ranks (ids are hashed in practice), so a contiguous row range receives a proportional share of lookups.


class Uniform(Frozen):
    """Every row equally likely."""

    kind: Literal["uniform"] = "uniform"


class Zipf(Frozen):
    """P(rank r) proportional to 1 / r**alpha: real-like skew (alpha about 1 for click logs)."""

    kind: Literal["zipf"] = "zipf"
    alpha: float = Field(1.05, gt=0.0, le=5.0)


class HotSet(Frozen):
    """Extremely unbalanced: `hot_mass` of the lookups fall on `hot_rows` rows, the rest uniformly elsewhere."""

    kind: Literal["hot-set"] = "hot-set"
    hot_rows: int = Field(16, ge=1, le=MAX_ROWS)
    hot_mass: float = Field(0.9, gt=0.0, lt=1.0)


MAX_BUCKETS = 256  # buckets of an empirical histogram: a few kilobytes per table in a workload file
MASS_TOLERANCE = 1e-6  # how far from 1 the buckets' total probability may be (written numbers are rounded)


class Empirical(Frozen):
    """A measured rank histogram (`embmap profile-trace`): `counts[i]` rows each read with probability
    `probs[i]`, most popular first. It describes `sum(counts)` rows, which must be the table's rows; a row
    cap keeps the most popular ranks that fit and renormalises (`capped`). `alpha` is a Zipf exponent fitted
    to it, shown to readers and never used by the cost model."""

    kind: Literal["empirical"] = "empirical"
    counts: tuple[Annotated[int, Field(gt=0, le=MAX_ROWS)], ...] = Field(min_length=1, max_length=MAX_BUCKETS)
    probs: tuple[Annotated[float, Field(gt=0.0, le=1.0)], ...] = Field(min_length=1, max_length=MAX_BUCKETS)
    alpha: float | None = Field(None, ge=0.0, le=5.0, description="fitted Zipf exponent, for display only")

    @model_validator(mode="after")
    def _a_distribution(self) -> Empirical:
        if len(self.counts) != len(self.probs):
            raise ValueError(
                f"counts has {len(self.counts)} buckets and probs {len(self.probs)}: give one probability per bucket"
            )
        for i in range(1, len(self.probs)):
            if self.probs[i] > self.probs[i - 1] * (1.0 + 1e-12):
                raise ValueError(
                    f"probs[{i}] is {self.probs[i]!r}, more than probs[{i - 1}] {self.probs[i - 1]!r}: "
                    "list the buckets most popular first (probabilities non-increasing)"
                )
        mass = math.fsum(c * p for c, p in zip(self.counts, self.probs, strict=True))
        if abs(mass - 1.0) > MASS_TOLERANCE:
            raise ValueError(
                f"the buckets' lookups sum to {mass:.9g}, not 1 (sum of counts[i] * probs[i]): "
                "scale probs so that they sum to 1"
            )
        return self

    @property
    def rows(self) -> int:
        """The rows the histogram describes."""
        return sum(self.counts)

    def capped(self, rows: int) -> Empirical:
        """The histogram of the `rows` most popular ranks, renormalised: what a row cap does to it (as to a
        Zipf, whose ranks beyond the cap are dropped and the rest rescaled)."""
        if rows >= self.rows:
            return self
        counts: list[int] = []
        for c in self.counts:
            take = min(c, rows - sum(counts))
            if take <= 0:
                break
            counts.append(take)
        mass = math.fsum(c * p for c, p in zip(counts, self.probs, strict=False))
        probs = tuple(p / mass for p in self.probs[: len(counts)])
        return self.model_copy(update={"counts": tuple(counts), "probs": probs})


Distribution = Annotated[Uniform | Zipf | HotSet | Empirical, Field(discriminator="kind")]
AnyDistribution = Uniform | Zipf | HotSet | Empirical


class HotTables(Frozen):
    """Extremely unbalanced across tables: `mass` of each sample's lookups go to the `tables` largest tables,
    through their pooling factors. The other tables keep theirs; the hot tables' poolings grow, each in
    proportion to its own, until they carry `mass` of the lookups (so the batch does more lookups)."""

    tables: int = Field(2, ge=1, le=MAX_TABLES)
    mass: float = Field(0.9, gt=0.0, lt=1.0)

    def apply(self, tables: tuple[TableSpec, ...]) -> tuple[TableSpec, ...]:
        order = sorted(range(len(tables)), key=lambda i: (-tables[i].rows, tables[i].name))
        hot = set(order[: min(self.tables, len(tables))])
        if len(hot) == len(tables):
            return tables
        hot_pool = sum(tables[i].pooling for i in hot)
        cold_pool = sum(t.pooling for i, t in enumerate(tables) if i not in hot)
        hot_budget = max(hot_pool, self.mass / (1.0 - self.mass) * cold_pool)
        return tuple(
            t.model_copy(update={"pooling": max(1, min(MAX_POOLING, round(hot_budget * t.pooling / hot_pool)))})
            if i in hot
            else t
            for i, t in enumerate(tables)
        )


# Workload ------------------------------------------------------------------------------------------------

NAME_PATTERN = r"^[A-Za-z0-9_.\-]+$"


class TableSpec(Frozen):
    """One embedding table and how each sample queries it."""

    name: str = Field(min_length=1, max_length=128, pattern=NAME_PATTERN)
    rows: int = Field(gt=0, le=MAX_ROWS)
    dim: int = Field(gt=0, le=MAX_DIM)
    dtype: DType = DType.FP32
    pooling: Pooling = Field(1, description="lookups per sample (a mean: may be fractional), sum-pooled")
    distribution: Distribution | None = Field(None, description="overrides the workload's default")

    @model_validator(mode="after")
    def _histogram_fits(self) -> TableSpec:
        check_empirical_rows(self.distribution, self.rows, "its")
        return self

    @property
    def row_bytes(self) -> int:
        return self.dim * self.dtype.bytes

    @property
    def bytes(self) -> int:
        return self.rows * self.row_bytes


class WorkloadSpec(Frozen):
    """The tables of a model and how one batch queries them."""

    name: str = Field(min_length=1, max_length=128)
    title: str = ""
    batch_size: int = Field(1024, gt=0, le=MAX_BATCH_SIZE)
    distribution: Distribution = Field(default_factory=Uniform)
    hot_tables: HotTables | None = Field(None, description="skews the pooling factors onto the largest tables")
    row_cap: int | None = Field(
        None, gt=0, description="ids hashed into at most this many rows per table (DLRM's --max-ind-range)"
    )
    tables: tuple[TableSpec, ...] = Field(min_length=1, max_length=MAX_TABLES)
    source: str = ""
    notes: str = ""
    assumptions: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _unique_names(self) -> WorkloadSpec:
        seen: set[str] = set()
        for i, t in enumerate(self.tables):
            if t.name in seen:
                raise PydanticCustomError(
                    "duplicate_name", "tables[{i}].name {name} repeats an earlier table", {"i": i, "name": repr(t.name)}
                )
            seen.add(t.name)
        for t in self.tables:
            if t.distribution is None:
                check_empirical_rows(self.distribution, t.rows, f"table {t.name}'s (the workload's distribution)")
        return self

    def distribution_of(self, table: TableSpec) -> AnyDistribution:
        return table.distribution or self.distribution

    def effective(self) -> WorkloadSpec:
        """The workload as planned: row cap applied, every table's distribution made explicit, pooling
        factors skewed where `hot_tables` says so."""
        tables = tuple(_capped(t, self.distribution_of(t), self.row_cap) for t in self.tables)
        if self.hot_tables is not None:
            tables = self.hot_tables.apply(tables)
        return self.model_copy(update={"tables": tables, "hot_tables": None})

    @property
    def total_bytes(self) -> int:
        return sum(t.bytes for t in self.tables)

    def digest(self) -> str:
        return _digest(self)


def check_empirical_rows(distribution: AnyDistribution | None, rows: int, whose: str) -> None:
    """An empirical histogram describes as many rows as the table it is given to has."""
    if isinstance(distribution, Empirical) and distribution.rows != rows:
        raise PydanticCustomError(
            "histogram_rows",
            "{whose} empirical distribution describes {described} rows (the sum of its counts), the table has {rows}",
            {"whose": whose, "described": distribution.rows, "rows": rows},
        )


def _capped(table: TableSpec, distribution: AnyDistribution, row_cap: int | None) -> TableSpec:
    """The table as planned: at most `row_cap` rows, its distribution explicit (an empirical one capped too)."""
    rows = min(table.rows, row_cap) if row_cap else table.rows
    if isinstance(distribution, Empirical):
        distribution = distribution.capped(rows)
    return table.model_copy(update={"rows": rows, "distribution": distribution})


# Target --------------------------------------------------------------------------------------------------


MAX_MEMORY_BYTES = 1 << 50
MAX_CORES = 65536


class MemorySpec(Frozen):
    """One level of the memory hierarchy. Bandwidth is per core for core-private memories, aggregate for shared."""

    name: str = Field(min_length=1, max_length=64)
    capacity_bytes: int = Field(gt=0)
    bandwidth_bytes_per_s: float = Field(gt=0.0)
    latency_s: float = Field(ge=0.0, lt=1.0)

    @field_validator("capacity_bytes")
    @classmethod
    def _addressable(cls, value: int) -> int:
        # Byte counts are summed as 64-bit integers inside the solver; no memory of one chip holds a PiB.
        if value > MAX_MEMORY_BYTES:
            raise PydanticCustomError(
                "memory_too_large", "must be at most {most} bytes (1 PiB)", {"most": MAX_MEMORY_BYTES}
            )
        return value


class TLBSpec(Frozen):
    """The address translations one core caches: a row read on a page outside them pays a page walk."""

    entries: int = Field(gt=0, le=1 << 24)
    page_bytes: int = Field(gt=0, le=1 << 40)


class TargetSpec(Frozen):
    """A chip: identical cores, each with a persistent local buffer and a vector scratchpad, plus shared memory.

    The four lookup strategies map onto these roles: `local` holds preloaded tables (Ascend L1, a CPU core's
    L2), `scratch` receives streamed chunks (Ascend UB, a CPU core's L1d), `shared_cache` sits in front of
    `main` (Ascend L2 and HBM; a CPU's L3 and DRAM).
    """

    name: str = Field(min_length=1, max_length=64)
    description: str = ""
    cores: int = Field(gt=0, le=MAX_CORES)
    local: MemorySpec
    scratch: MemorySpec
    shared_cache: MemorySpec | None = None
    main: MemorySpec
    tlb: TLBSpec | None = Field(None, description="per-core translation cache; absent where reads pay no walks")
    local_is_cache: bool = Field(
        False,
        description="the local memory is a hardware cache (a CPU core's L2), not a buffer the program fills: "
        "shared-table reads hit it where their rows are there, and the core's other work evicts them",
    )
    calibrated: bool = False
    source: str = ""

    def digest(self) -> str:
        return _digest(self)


# Does a plan fit these tables? ----------------------------------------------------------------------------

TABLE_FIELDS = ("rows", "dim", "dtype", "pooling", "distribution")
TARGET_FIELDS = ("cores", "local", "scratch", "shared_cache", "main", "tlb", "local_is_cache")


def tables_difference(planned: Sequence[TableSpec], given: Sequence[TableSpec]) -> str:
    """The first difference between the tables a plan was made for and the tables given, as a clause
    after the subject ("lacks ...", "has ..."); "" if none. Both as planned: row cap applied and distributions explicit (`WorkloadSpec.effective`)."""
    planned_names, given_names = [t.name for t in planned], [t.name for t in given]
    missing = [n for n in planned_names if n not in given_names]
    extra = [n for n in given_names if n not in planned_names]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks the plan's table{'s' if len(missing) > 1 else ''} {', '.join(missing[:3])}")
        if extra:
            parts.append(f"has table{'s' if len(extra) > 1 else ''} {', '.join(extra[:3])}, not in the plan")
        return " and ".join(parts)
    if planned_names != given_names:
        return "lists the plan's tables in another order"
    for p, g in zip(planned, given, strict=True):
        for field in TABLE_FIELDS:
            mine, theirs = getattr(p, field), getattr(g, field)
            if mine != theirs:
                return f"has table {p.name} with {field} {_shown(theirs)} where the plan has {_shown(mine)}"
    return ""


def workload_difference(planned: WorkloadSpec, given: WorkloadSpec) -> str:
    """What makes a plan for `planned` wrong for `given` (both compared as planned), in words; "" if
    nothing does. Names, titles and notes do not matter; the batch size and the tables do."""
    p, g = planned.effective(), given.effective()
    if p.batch_size != g.batch_size:
        return f"has batch size {g.batch_size} where the plan has {p.batch_size}"
    return tables_difference(p.tables, g.tables)


def target_difference(planned: TargetSpec, given: TargetSpec) -> str:
    """The first difference in cores or memories between a plan's target and the target given; "" if none."""
    for field in TARGET_FIELDS:
        mine, theirs = getattr(planned, field), getattr(given, field)
        if mine != theirs and isinstance(mine, BaseModel) and isinstance(theirs, BaseModel):
            sub = next(k for k in type(mine).model_fields if getattr(mine, k) != getattr(theirs, k))
            mine, theirs, field = getattr(mine, sub), getattr(theirs, sub), f"{field}.{sub}"
        if mine != theirs:
            return f"has {field} {_shown(theirs)} where the plan's target {planned.name} has {_shown(mine)}"
    return ""


def _shown(value: object) -> str:
    if isinstance(value, BaseModel):
        return ", ".join(f"{k}={v}" for k, v in value.model_dump(mode="json").items())
    return str(value.value if isinstance(value, enum.Enum) else value)


def _digest(model: BaseModel) -> str:
    return "sha256:" + hashlib.sha256(model.model_dump_json().encode()).hexdigest()[:16]
