"""A workload measured from an index trace: `workload_from_trace` (and `embmap profile-trace`).

Per table (a table reads one or more features; without a table list, each feature is a table of its own
name): the mean pooling factor (the table's ids over the trace's samples, kept fractional), and the
popularity of its rows as an empirical rank histogram (`histogram.empirical`) with a fitted Zipf exponent
for display. The batch size is the mean of the batches the trace records. The trace is read piece by piece
(`formats`); what stays in memory is one count per distinct id.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import Field

from embmap.ir.errors import SpecError
from embmap.ir.loader import read_document, validate
from embmap.ir.spec import MAX_BATCH_SIZE, MAX_DIM, MAX_ROWS, NAME_PATTERN, DType, Frozen, WorkloadSpec
from embmap.mapper.traces.formats import Batches, Piece, read_pieces
from embmap.mapper.traces.histogram import IdCounter, RankCounts, empirical

DEFAULT_BUCKETS = 64  # docs/traces.md: at 64 the compression moves hit ratios by < 0.01 point
DEFAULT_DIM = 64  # a trace does not say how wide rows are; a table list does
DEFAULT_BATCH_SIZE = 1024  # the workload default, for a trace that records no batches
TORCHREC_DTYPES = {"FP32": DType.FP32, "FP16": DType.FP16, "INT8": DType.INT8}


class TraceTable(Frozen):
    """A table a trace's features read: its size, and which features (default: the one of its own name)."""

    rows: int = Field(gt=0, le=MAX_ROWS)
    dim: int = Field(DEFAULT_DIM, gt=0, le=MAX_DIM)
    dtype: DType = DType.FP32
    features: tuple[str, ...] = ()


@dataclass(frozen=True)
class TraceProgress:
    """Where a profile stands: pieces and ids read, seconds since it started."""

    pieces: int
    ids: int
    elapsed_s: float
    done: bool = False


ProgressCallback = Callable[[TraceProgress], None]


def load_table_configs(source: Any) -> dict[str, TraceTable]:
    """Table name -> `TraceTable`, from a YAML/JSON path (name -> rows, dim, dtype, features), a mapping of
    the same, or a sequence of TorchRec `EmbeddingBagConfig`s."""
    if isinstance(source, str | Path):
        data = read_document(Path(source), "tables")
        return _validated(data, "tables")
    if isinstance(source, Mapping):
        return _validated(dict(source), "tables")
    out = {}
    for i, config in enumerate(source):
        dtype = TORCHREC_DTYPES.get(getattr(config.data_type, "name", str(config.data_type)))
        if dtype is None:
            raise SpecError(f"tables[{i}].data_type", f"{config.data_type} is not supported", "use FP32, FP16 or INT8")
        out[config.name] = {
            "rows": config.num_embeddings,
            "dim": config.embedding_dim,
            "dtype": dtype,
            "features": tuple(config.feature_names),
        }
    return _validated(out, "tables")


def _validated(data: dict[str, Any], what: str) -> dict[str, TraceTable]:
    if not data:
        raise SpecError(what, "names no table", "give name: {rows: N, dim: D, features: [...]} per table")
    for name in data:
        if not _is_name(str(name)):
            raise SpecError(f"{what}.{name!r}", "is not a table name", "use letters, digits, '_', '.' or '-'")
    return {str(name): validate(TraceTable, value, f"{what}.{name}") for name, value in data.items()}


@dataclass
class _Table:
    rows: int | None
    counter: IdCounter
    dim: int = DEFAULT_DIM
    dtype: DType = DType.FP32


class _Profiler:
    """The counts of one pass over a trace: per table its ids, per feature its samples."""

    def __init__(self, configs: Mapping[str, TraceTable] | None) -> None:
        self.configs = configs
        self.tables: dict[str, _Table] = {}
        self.table_of: dict[str, str] = {}
        self.samples: dict[str, int] = {}
        if configs is not None:
            for name, c in configs.items():
                self.tables[name] = _Table(c.rows, IdCounter(c.rows), c.dim, c.dtype)
                for feature in c.features or (name,):
                    if feature in self.table_of:
                        raise SpecError(
                            f"tables.{name}.features",
                            f"feature {feature} is read by table {self.table_of[feature]} too",
                            "give each feature to one table",
                        )
                    self.table_of[feature] = name

    def add(self, piece: Piece, where: str) -> None:
        table = self._table_for(piece.feature, where)
        ids, lengths = piece.ids, piece.lengths
        if ids.size and int(ids.min()) < 0:
            raise SpecError(f"{where}: {piece.feature}.ids", f"holds a negative id {int(ids.min())}", "give ids >= 0")
        if table.rows is not None and ids.size and int(ids.max()) >= table.rows:
            raise SpecError(
                f"{where}: {piece.feature}.ids",
                f"holds id {int(ids.max())}, not below table {self.table_of[piece.feature]}'s {table.rows} rows",
                "give the table's real row count, or leave --tables out to take the largest id + 1",
            )
        if int(lengths.sum()) != ids.size:
            raise SpecError(
                f"{where}: {piece.feature}.lengths", f"sum to {int(lengths.sum())}, ids has {ids.size}", "fix them"
            )
        table.counter.add(ids)
        self.samples[piece.feature] = self.samples.get(piece.feature, 0) + int(lengths.size)

    def _table_for(self, feature: str, where: str) -> _Table:
        name = self.table_of.get(feature)
        if name is None:
            if self.configs is not None:
                raise SpecError(
                    f"{where}: {feature}",
                    "is read by no table of --tables",
                    f"add {feature} to a table's features (tables: {', '.join(sorted(self.configs))[:80]})",
                )
            if not _is_name(feature):
                raise SpecError(
                    f"{where}: {feature!r}", "is not a table name", "name features with letters, digits, _ . -"
                )
            name = self.table_of[feature] = feature
            self.tables[name] = _Table(None, IdCounter(None))
        return self.tables[name]


def _is_name(text: str) -> bool:
    return re.fullmatch(NAME_PATTERN, text) is not None and len(text) <= 128


def workload_from_trace(
    trace: str | Path,
    *,
    tables: Any = None,
    buckets: int = DEFAULT_BUCKETS,
    batch_size: int | None = None,
    name: str | None = None,
    progress: ProgressCallback | None = None,
) -> WorkloadSpec:
    """The workload an index trace measures (module docstring). `tables`: a YAML/JSON path, a mapping name
    -> {rows, dim, dtype, features}, or TorchRec `EmbeddingBagConfig`s; None takes each feature as a table
    of the largest id seen + 1 rows and `DEFAULT_DIM` elements. `batch_size` overrides the trace's."""
    path = Path(trace)
    configs = load_table_configs(tables) if tables is not None else None
    profiler, batches = _Profiler(configs), Batches()
    start, pieces, ids = time.monotonic(), 0, 0
    for piece in read_pieces(path, batches):
        profiler.add(piece, f"trace {path.name}")
        pieces, ids = pieces + 1, ids + piece.ids.size
        if progress is not None:
            progress(TraceProgress(pieces, ids, time.monotonic() - start))
    if progress is not None:
        progress(TraceProgress(pieces, ids, time.monotonic() - start, done=True))
    return _workload(profiler, batches, path, buckets, batch_size, name)


def _workload(
    profiler: _Profiler, batches: Batches, path: Path, buckets: int, batch_size: int | None, name: str | None
) -> WorkloadSpec:
    samples = _samples(profiler, path)
    assumptions = []
    if batch_size is None and batches.sizes:  # the median: a last, shorter batch does not count
        batch_size = min(MAX_BATCH_SIZE, max(1, int(np.median(batches.sizes))))
    elif batch_size is None:
        batch_size = DEFAULT_BATCH_SIZE
        assumptions.append(f"batch size {DEFAULT_BATCH_SIZE} (the trace records no batches; --batch-size sets it)")
    if profiler.configs is None:
        assumptions.append(f"dim {DEFAULT_DIM}, fp32, rows the largest id + 1 (no table list given: --tables)")
    specs = [_table_spec(table_name, t, samples, buckets) for table_name, t in profiler.tables.items()]
    return validate(
        WorkloadSpec,
        dict(
            name=name or path.stem or "trace",
            title=f"profiled from {path.name}",
            batch_size=batch_size,
            tables=tuple(specs),
            source=f"embmap profile-trace {path.name}: {samples:,} samples, {len(batches.sizes) or 'no'} batches",
            notes=f"pooling: mean ids per sample; distributions: empirical, at most {buckets} buckets",
            assumptions=tuple(assumptions),
        ),
        f"trace {path.name}",
    )


def _samples(profiler: _Profiler, path: Path) -> int:
    if not profiler.samples:
        raise SpecError(f"trace {path.name}", "holds no samples", "give a trace of at least one sample")
    counts = sorted(set(profiler.samples.values()))
    if len(counts) > 1:
        by = sorted(profiler.samples.items(), key=lambda kv: kv[1])
        raise SpecError(
            f"trace {path.name}",
            f"features have different sample counts: {by[0][0]} {by[0][1]}, {by[-1][0]} {by[-1][1]}",
            "give every feature one length per sample (0 for a sample without ids)",
        )
    for table_name, t in profiler.tables.items():
        if t.counter.lookups == 0:
            raise SpecError(
                f"trace {path.name}: {table_name}",
                "has no ids: its pooling factor would be 0",
                "leave the table out, or give a trace that reads it",
            )
    return counts[0]


def _table_spec(name: str, table: _Table, samples: int, buckets: int) -> dict[str, Any]:
    counts: RankCounts = table.counter.result()
    rows = table.rows if table.rows is not None else counts.max_id + 1
    return {
        "name": name,
        "rows": rows,
        "dim": table.dim,
        "dtype": table.dtype,
        "pooling": counts.lookups / samples,
        "distribution": empirical(counts, rows, buckets),
    }


class _FlowLists(yaml.SafeDumper):
    """Lists of numbers on one line each (a histogram's buckets), mappings as blocks."""


def _represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
    flow = all(isinstance(x, int | float | str) for x in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_FlowLists.add_representer(list, _represent_list)


def workload_yaml(workload: WorkloadSpec) -> str:
    """The workload as a YAML file that `embmap compile` reads (floats written exactly, as Python's repr)."""
    data = workload.model_dump(mode="json", exclude_none=True)
    text: str = yaml.dump(data, Dumper=_FlowLists, sort_keys=False, width=120, allow_unicode=True)
    return text
