"""Seeded synthetic index traces, for the tests and the benchmarks, in every format `profile-trace` reads.

Each feature draws its ids from a Zipf popularity of its own exponent over its rows (the cost model's own
`histogram(Zipf(alpha), rows)`, so the generating distribution is known exactly), mapped to ids by a fixed
pseudo-random permutation (ids are hashed in practice). Realism on top, each off by default:

- hot ids: `hot_mass` of the lookups fall on `hot_ids` ids drawn at random (a viral item, a default value);
- temporal locality: with probability `locality` an id repeats one of the feature's `window` previous ids;
- multi-hot lengths: `lengths` is `poisson` (mean `pooling`, empty samples possible), `geometric` (at least
  one id, mean `pooling` >= 1) or `fixed` (floor or ceil of `pooling`, so that the mean is `pooling`).

With neither hot ids nor locality (the defaults) a feature is pure Zipf: what the acceptance test profiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from embmap.ir.distributions import RankHistogram, histogram
from embmap.ir.output import write_atomic
from embmap.ir.spec import Zipf

Lengths = Literal["poisson", "geometric", "fixed"]
FORMATS = ("npz", "parquet", "torchrec")


@dataclass(frozen=True)
class FeatureSpec:
    """How one feature of a synthetic trace looks up its table."""

    name: str
    rows: int
    alpha: float = 1.05
    pooling: float = 1.0
    lengths: Lengths = "poisson"
    hot_ids: int = 0
    hot_mass: float = 0.0
    locality: float = 0.0
    window: int = 1000

    def generating(self) -> RankHistogram:
        """The popularity the fresh draws follow (before hot ids and locality)."""
        return histogram(Zipf(alpha=self.alpha), self.rows)


@dataclass(frozen=True)
class Trace:
    """A trace in memory: per feature its ids and per-sample lengths, and the samples of each batch."""

    ids: dict[str, np.ndarray]
    lengths: dict[str, np.ndarray]
    batch_sizes: np.ndarray

    @property
    def samples(self) -> int:
        return int(self.batch_sizes.sum())


def generate(features: Sequence[FeatureSpec], samples: int, batch_size: int, seed: int = 0) -> Trace:
    """A trace of `samples` samples in batches of `batch_size` (the last one shorter where it does not divide)."""
    ids, lengths = {}, {}
    for index, feature in enumerate(features):
        rng = np.random.default_rng([seed, index])
        lengths[feature.name] = _lengths(feature, samples, rng)
        ids[feature.name] = _ids(feature, int(lengths[feature.name].sum()), rng)
    sizes = np.full(samples // batch_size, batch_size, dtype=np.int64)
    if samples % batch_size:
        sizes = np.append(sizes, samples % batch_size)
    return Trace(ids, lengths, sizes)


def _lengths(feature: FeatureSpec, samples: int, rng: np.random.Generator) -> np.ndarray:
    if feature.lengths == "poisson":
        return rng.poisson(feature.pooling, samples).astype(np.int64)
    if feature.lengths == "geometric":
        if feature.pooling < 1:
            raise ValueError(f"{feature.name}: geometric lengths need pooling >= 1, got {feature.pooling}")
        return rng.geometric(1.0 / feature.pooling, samples).astype(np.int64)
    whole = int(np.floor(feature.pooling))
    return (whole + (rng.random(samples) < feature.pooling - whole)).astype(np.int64)


def _ids(feature: FeatureSpec, count: int, rng: np.random.Generator) -> np.ndarray:
    hist = feature.generating()
    cum = np.cumsum(hist.counts * hist.probs)
    bucket = np.minimum(np.searchsorted(cum / cum[-1], rng.random(count), side="right"), len(cum) - 1)
    starts = np.concatenate([[0.0], np.cumsum(hist.counts)[:-1]]).astype(np.int64)
    ranks = np.minimum(starts[bucket] + (rng.random(count) * hist.counts[bucket]).astype(np.int64), feature.rows - 1)
    ids = _permuted(ranks, feature.rows)
    if feature.hot_ids and feature.hot_mass > 0:
        hot = rng.choice(feature.rows, size=min(feature.hot_ids, feature.rows), replace=False)
        is_hot = rng.random(count) < feature.hot_mass
        ids[is_hot] = hot[rng.integers(0, hot.size, int(is_hot.sum()))]
    if feature.locality > 0:
        ids = _with_locality(ids, feature.locality, feature.window, rng)
    return ids


def _permuted(ranks: np.ndarray, rows: int) -> np.ndarray:
    """Rank -> id by id = (a * rank + c) mod rows, a coprime with rows: a fixed permutation."""
    a = 2654435761 % rows or 1
    while np.gcd(a, rows) != 1:
        a += 1
    out: np.ndarray = (ranks * a + rows // 3) % rows
    return out


def _with_locality(ids: np.ndarray, locality: float, window: int, rng: np.random.Generator) -> np.ndarray:
    """Each id, with probability `locality`, replaced by the id `1..window` positions before it (itself maybe
    a repeat: chains are followed to the fresh id they repeat, by pointer jumping)."""
    n = ids.size
    source = np.arange(n)
    repeat = rng.random(n) < locality
    back = rng.integers(1, window + 1, n)
    source[repeat] = np.maximum(source[repeat] - back[repeat], 0)
    source[0] = 0
    while True:
        further = source[source]
        if np.array_equal(further, source):
            break
        source = further
    return ids[source]


def write_trace(trace: Trace, path: str | Path, fmt: str | None = None) -> Path:
    """Write `trace` at `path` as `fmt` (npz, parquet or torchrec; by default from the suffix), atomically."""
    path = Path(path)
    fmt = fmt or {".npz": "npz", ".parquet": "parquet", ".pq": "parquet"}.get(path.suffix.lower(), "torchrec")
    if fmt == "npz":
        arrays = {f"{name}.ids": ids for name, ids in trace.ids.items()}
        arrays.update({f"{name}.lengths": lengths for name, lengths in trace.lengths.items()})
        arrays["batch_sizes"] = trace.batch_sizes
        savez: Any = np.savez  # numpy's stubs read the arrays' names as its own keyword arguments
        write_atomic(path, lambda f: savez(f, **arrays))
    elif fmt == "parquet":
        _write_parquet(trace, path)
    elif fmt == "torchrec":
        import torch

        kjts = list(_kjts(trace))
        write_atomic(path, lambda f: torch.save(kjts, f))
    else:
        raise ValueError(f"unknown trace format {fmt!r}: use one of {', '.join(FORMATS)}")
    return path


def _batches(trace: Trace) -> list[tuple[int, int, dict[str, tuple[int, int]]]]:
    """Per batch: its samples [s0, s1), and per feature the range of its ids."""
    out, s0 = [], 0
    offsets = {name: np.concatenate([[0], np.cumsum(lengths)]) for name, lengths in trace.lengths.items()}
    for size in trace.batch_sizes.tolist():
        s1 = s0 + size
        out.append((s0, s1, {name: (int(o[s0]), int(o[s1])) for name, o in offsets.items()}))
        s0 = s1
    return out


def _kjts(trace: Trace) -> list[object]:
    import torch
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    names = list(trace.ids)
    out: list[object] = []
    for s0, s1, spans in _batches(trace):
        values = np.concatenate([trace.ids[n][spans[n][0] : spans[n][1]] for n in names])
        lengths = np.concatenate([trace.lengths[n][s0:s1] for n in names])
        out.append(KeyedJaggedTensor(keys=names, values=torch.from_numpy(values), lengths=torch.from_numpy(lengths)))
    return out


def _write_parquet(trace: Trace, path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    batches = _batches(trace)
    schema = pa.schema([(name, pa.list_(pa.int64())) for name in trace.ids])

    def write(f: object) -> None:
        with pq.ParquetWriter(f, schema) as writer:
            for s0, s1, spans in batches:
                columns = []
                for name in trace.ids:
                    lo, hi = spans[name]
                    offsets = np.concatenate([[0], np.cumsum(trace.lengths[name][s0:s1])]).astype(np.int32)
                    columns.append(pa.ListArray.from_arrays(pa.array(offsets), pa.array(trace.ids[name][lo:hi])))
                writer.write_table(pa.Table.from_arrays(columns, schema=schema))

    write_atomic(path, write)
