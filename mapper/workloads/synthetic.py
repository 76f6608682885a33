"""Seeded synthetic workloads: N tables with a given total size, size skew and pooling skew.

Table sizes follow a power law over a random ranking (`size_skew` 0: all equal; 1-1.5: a few big tables and
a long tail of small ones, as in production models), jittered log-normally; pooling factors likewise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embmap.ir.errors import SpecError
from embmap.ir.spec import (
    MAX_BATCH_SIZE,
    MAX_DIM,
    MAX_MEMORY_BYTES,
    MAX_POOLING,
    MAX_ROWS,
    MAX_TABLES,
    DType,
    TableSpec,
    Uniform,
    WorkloadSpec,
)

SYNTHETIC_PRESETS: dict[str, dict[str, Any]] = {
    # The paper's private 25 MB set is not public; this stands in for it: same total size, a few dozen tables.
    "huawei-25mb-like": {
        "tables": 36,
        "total_bytes": 25_000_000,
        "size_skew": 1.2,
        "pooling_mean": 2.0,
        "pooling_skew": 0.8,
        "dims": (16, 32, 64),
        "seed": 0,
        "name": "huawei-25mb-like",
    },
}


def synthetic(
    tables: int = 100,
    total_bytes: float = 1e9,
    size_skew: float = 1.0,
    pooling_mean: float = 1.0,
    pooling_skew: float = 0.0,
    dims: tuple[int, ...] = (16, 32, 64, 128),
    batch_size: int = 1024,
    seed: int = 0,
    name: str | None = None,
) -> WorkloadSpec:
    """The seeded workload of a recipe; each key is checked against `RECIPE_LIMITS` before anything is drawn, and
    the drawn tables against a workload file's limits before they are built."""
    check_recipe(
        tables=tables,
        total_bytes=total_bytes,
        size_skew=size_skew,
        pooling_mean=pooling_mean,
        pooling_skew=pooling_skew,
        batch_size=batch_size,
        seed=seed,
    )
    if not dims:
        raise SpecError("synthetic.dims", "is empty", "e.g. dims=16:32:64")
    for d in dims:
        _check_key("dims", d)
    if name is not None and len(name) > MAX_NAME_CHARS:
        raise SpecError(
            "synthetic.name", f"has {len(name)} characters, more than {MAX_NAME_CHARS}", "give a shorter name"
        )
    rng = np.random.default_rng(seed)
    size_w = _skewed(rng, tables, size_skew)
    pool_w = _skewed(rng, tables, pooling_skew)
    pooling = np.maximum(1, np.round(pooling_mean * pool_w / pool_w.mean()))
    dim = rng.choice(np.array(dims), size=tables)
    row_bytes = dim * DType.FP32.bytes
    rows = np.maximum(2, np.round(total_bytes * size_w / size_w.sum() / row_bytes))
    _check_drawn(
        "pooling_mean", "a pooling factor of {}", pooling, MAX_POOLING, "give a smaller pooling_mean or pooling_skew"
    )
    _check_drawn("total_bytes", "{} rows", rows, MAX_ROWS, "give a smaller total_bytes, larger dims or more tables")
    specs = tuple(
        TableSpec(name=f"t{i:04d}", rows=int(rows[i]), dim=int(dim[i]), pooling=int(pooling[i])) for i in range(tables)
    )
    recipe = (
        f"tables={tables}, total_bytes={total_bytes:g}, size_skew={size_skew}, pooling_mean={pooling_mean}, "
        f"pooling_skew={pooling_skew}, dims={':'.join(map(str, dims))}, batch_size={batch_size}, seed={seed}"
    )
    return WorkloadSpec(
        name=name or f"synthetic-{tables}t-s{seed}",
        title="synthetic workload",
        batch_size=batch_size,
        distribution=Uniform(),
        tables=specs,
        source=f"embmap synthetic generator ({recipe})",
        notes="synthetic: table sizes and pooling factors drawn from seeded power laws, not from a dataset",
    )


MAX_SKEW = 10.0  # at 10 the second-ranked table is a thousandth of the first: steeper is no longer a skew
MAX_NAME_CHARS = 128  # as a workload file's name
MAX_SEED = 2**64 - 1  # numpy's generator is seeded with 64 bits
RECIPE_LIMITS: dict[str, tuple[float, float, str]] = {
    # key: (least, most, fix); every bound is inclusive but total_bytes's least (0, itself refused)
    "tables": (1, MAX_TABLES, f"ask for 1 to {MAX_TABLES} tables, a workload's table limit"),
    "total_bytes": (
        0,
        MAX_MEMORY_BYTES,
        f"give the tables' total size in bytes, above 0 and at most {MAX_MEMORY_BYTES}",
    ),
    "size_skew": (0.0, MAX_SKEW, "use 0 for equal sizes, about 1 for production-like, at most 10"),
    "pooling_mean": (1.0, MAX_POOLING, f"use 1 for one-hot features, at most {MAX_POOLING}, a table's pooling limit"),
    "pooling_skew": (0.0, MAX_SKEW, "use 0 for equal pooling factors, about 1 for production-like, at most 10"),
    "dims": (1, MAX_DIM, f"give dimensions from 1 to {MAX_DIM}, e.g. dims=16:32:64"),
    "batch_size": (1, MAX_BATCH_SIZE, f"give samples per batch, 1 to {MAX_BATCH_SIZE} as in a workload file"),
    "seed": (0, MAX_SEED, f"give a seed from 0 to {MAX_SEED}"),
}


def check_recipe(**values: float) -> None:
    """Each of a recipe's numbers within `RECIPE_LIMITS`, or a SpecError naming its key: before any allocation,
    so that `tables=1000000000` is refused, not drawn."""
    for key, value in values.items():
        _check_key(key, value)


def _check_key(key: str, value: float) -> None:
    least, most, fix = RECIPE_LIMITS[key]
    above = key == "total_bytes"
    if not ((least < value) if above else (least <= value)) or not value <= most:  # NaN fails every comparison
        lower = f"> {_number(least)}" if above else f">= {_number(least)}"
        raise SpecError(f"synthetic.{key}", f"must be {lower} and <= {_number(most)}, got {_number(value)}", fix)


def _check_drawn(key: str, what: str, values: np.ndarray, most: int, fix: str) -> None:
    """The drawn tables within a workload file's limits (a recipe's keys together can exceed them)."""
    i = int(np.argmax(values))
    if values[i] > most:
        raise SpecError(
            f"synthetic.{key}",
            f"draws table t{i:04d} with {what.format(_number(float(values[i])))}, more than the {most} a table may have",
            fix,
        )


def _number(value: float) -> str:
    if isinstance(value, int):
        return str(value)
    return f"{value:.0f}" if value.is_integer() and abs(value) < 1e16 else f"{value:g}"


def _skewed(rng: np.random.Generator, n: int, skew: float) -> np.ndarray:
    """Power-law weights over a random ranking, with log-normal jitter so that sizes are not an exact ladder."""
    ranks = rng.permutation(n) + 1.0
    jitter = rng.lognormal(0.0, 0.25, size=n) if skew > 0 else np.ones(n)
    return ranks ** (-skew) * jitter


_FIELDS = {
    "tables": int,
    "total_bytes": float,
    "size_skew": float,
    "pooling_mean": float,
    "pooling_skew": float,
    "batch_size": int,
    "seed": int,
    "name": str,
}


def parse_recipe(text: str) -> dict[str, Any]:
    """`tables=100,total_bytes=1e9,seed=3,dims=16:32` -> keyword arguments of `synthetic`."""
    out: dict[str, Any] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        key, eq, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if key not in _FIELDS and key != "dims":
            raise SpecError(f"synthetic.{key}", "unknown field", f"use {', '.join([*_FIELDS, 'dims'])}")
        if not eq:
            raise SpecError(f"synthetic.{key}", "has no value", "write key=value")
        if key in out:
            raise SpecError(f"synthetic.{key}", "is given twice", "give each key once")
        kind = int if key == "dims" else _FIELDS[key]
        try:
            out[key] = tuple(int(d) for d in value.split(":")) if key == "dims" else kind(value.strip())
        except ValueError:  # also an integer of more digits than Python reads
            number = "a whole number" if kind is int else "a number"
            shown = repr(value[:40]) + ("..." if len(value) > 40 else "")
            raise SpecError(f"synthetic.{key}", f"cannot read {shown}", f"give {number}") from None
    return out
