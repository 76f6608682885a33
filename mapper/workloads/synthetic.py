"""Seeded synthetic workloads: N tables with a given total size, size skew and pooling skew.

Table sizes follow a power law over a random ranking (`size_skew` 0: all equal; 1-1.5: a few big tables and
a long tail of small ones, as in production models), jittered log-normally; pooling factors likewise.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from embmap.ir.errors import SpecError
from embmap.ir.spec import DType, TableSpec, Uniform, WorkloadSpec

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
    if tables < 1:
        raise SpecError("synthetic.tables", f"must be >= 1, got {tables}", "ask for at least one table")
    if total_bytes <= 0:
        raise SpecError("synthetic.total_bytes", f"must be > 0, got {total_bytes}", "give a positive size")
    if size_skew < 0 or pooling_skew < 0:
        raise SpecError("synthetic.size_skew", "skews must be >= 0", "use 0 for no skew, about 1 for production-like")
    if pooling_mean < 1:
        raise SpecError("synthetic.pooling_mean", f"must be >= 1, got {pooling_mean}", "use 1 for one-hot features")
    if not dims or min(dims) < 1:
        raise SpecError("synthetic.dims", f"must be positive, got {dims}", "e.g. dims=16:32:64")
    rng = np.random.default_rng(seed)
    size_w = _skewed(rng, tables, size_skew)
    pool_w = _skewed(rng, tables, pooling_skew)
    pooling = np.maximum(1, np.round(pooling_mean * pool_w / pool_w.mean())).astype(int)
    dim = rng.choice(np.array(dims), size=tables)
    row_bytes = dim * DType.FP32.bytes
    rows = np.maximum(2, np.round(total_bytes * size_w / size_w.sum() / row_bytes)).astype(np.int64)
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
        if not eq:
            raise SpecError(f"synthetic.{key}", "has no value", "write key=value")
        try:
            if key == "dims":
                out[key] = tuple(int(d) for d in value.split(":"))
            elif key in _FIELDS:
                out[key] = _FIELDS[key](value)
            else:
                raise SpecError(f"synthetic.{key}", "unknown field", f"use {', '.join([*_FIELDS, 'dims'])}")
        except ValueError:
            raise SpecError(f"synthetic.{key}", f"cannot read {value!r}", "give a number") from None
    return out
