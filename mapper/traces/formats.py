"""Reading index traces piece by piece: `.npz` arrays, Parquet list columns, saved TorchRec KeyedJaggedTensors.

A trace is, per feature, the ids each sample looked up. Every reader yields `Piece`s (one feature's ids
and per-sample lengths for consecutive samples), never the whole trace, and says how many samples each
batch held where the format records batches. The formats (docs/traces.md):

- `.npz`: `<feature>.ids` (integers) with `<feature>.lengths` (ids per sample) or `<feature>.offsets`
  (samples + 1 positions into ids, from 0); optionally `batch_sizes` (samples per batch). Read from the zip
  member by member, `CHUNK_SAMPLES` samples at a time, so a feature's arrays are never in memory whole.
- Parquet (`.parquet`, `.pq`; needs `pyarrow`): one column per feature, each row a sample holding the list
  of its ids; each row group is a batch.
- TorchRec (`.pt`, `.pth`): `torch.save` of a `KeyedJaggedTensor` or a list of them, each a batch, loaded
  with `weights_only` (nothing but tensors and KeyedJaggedTensors is unpickled) and memory-mapped (`mmap`),
  so a batch's ids are read from the file when its pieces are.

A directory is read as the concatenation of its trace files, in name order (one file of KeyedJaggedTensors
per batch streams as well as the other formats do).
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np

from embmap.ir.errors import ResourceError, SpecError

CHUNK_SAMPLES = 1 << 16
SUFFIXES = {".npz": "npz", ".parquet": "parquet", ".pq": "parquet", ".pt": "torchrec", ".pth": "torchrec"}
FORMAT_FIX = "give a .npz, .parquet or .pt (TorchRec KeyedJaggedTensor) file, or a directory of them"


@dataclass(frozen=True)
class Piece:
    """Consecutive samples of one feature: their ids, and how many each sample looked up."""

    feature: str
    ids: np.ndarray
    lengths: np.ndarray


@dataclass
class Batches:
    """What a reader learns of the trace's batches as it goes: samples per batch, where the format says."""

    sizes: list[int] = field(default_factory=list)


def trace_files(path: Path) -> list[tuple[Path, str]]:
    """The files of a trace with their formats: the file, or a directory's trace files in name order."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
        if not files:
            raise SpecError("trace", f"directory {path} holds no trace file", FORMAT_FIX)
    elif path.is_file():
        files = [path]
    else:
        raise SpecError("trace", f"no such file {str(path)!r}", "give the path of an existing trace")
    kinds = {SUFFIXES.get(p.suffix.lower()) for p in files}
    if None in kinds:
        raise SpecError("trace", f"{path.name}: unknown format {path.suffix or '(no suffix)'!r}", FORMAT_FIX)
    if len(kinds) > 1:
        raise SpecError("trace", f"directory {path} mixes formats {sorted(str(k) for k in kinds)}", FORMAT_FIX)
    return [(p, SUFFIXES[p.suffix.lower()]) for p in files]


def read_pieces(path: Path, batches: Batches) -> Iterator[Piece]:
    """Every piece of the trace at `path`, file by file; `batches` collects the batch sizes on the way."""
    readers = {"npz": _npz_pieces, "parquet": _parquet_pieces, "torchrec": _kjt_pieces}
    for file, kind in trace_files(path):
        yield from readers[kind](file, batches)


# .npz -----------------------------------------------------------------------------------------------------


def _npz_pieces(path: Path, batches: Batches) -> Iterator[Piece]:
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile) as exc:
        raise SpecError(f"trace {path.name}", f"not a readable .npz: {exc}", "write it with numpy.savez") from None
    with archive:
        features = _npz_features(archive, path.name)
        if "batch_sizes" in features.pop("", {}):
            sizes = _NpyStream(archive, "batch_sizes", f"trace {path.name}: batch_sizes").read(None)
            if sizes.size == 0 or int(sizes.min()) <= 0:
                raise SpecError(f"trace {path.name}: batch_sizes", "must be positive", "give samples per batch")
            batches.sizes += [int(s) for s in sizes]
        for name, arrays in features.items():
            yield from _npz_feature(archive, path.name, name, arrays)


def _npz_features(archive: zipfile.ZipFile, file: str) -> dict[str, set[str]]:
    """Feature -> the arrays it has (`ids`, `lengths`, `offsets`); "" -> {"batch_sizes"} if given."""
    features: dict[str, set[str]] = {}
    for member in archive.namelist():
        key = member.removesuffix(".npy")
        feature, _, array = key.rpartition(".")
        if key == "batch_sizes":
            feature, array = "", key
        elif not feature or array not in ("ids", "lengths", "offsets"):
            raise SpecError(
                f"trace {file}",
                f"array {key!r} is not <feature>.ids, <feature>.lengths, <feature>.offsets or batch_sizes",
                "name each feature's arrays <feature>.ids and <feature>.lengths (or .offsets)",
            )
        features.setdefault(feature, set()).add(array)
    for feature, arrays in features.items():
        where = f"trace {file}: {feature}"
        if feature and "ids" not in arrays:
            raise SpecError(f"{where}.ids", "is missing", f"add the ids of feature {feature}")
        if feature and not arrays & {"lengths", "offsets"}:
            raise SpecError(f"{where}.lengths", "is missing", "add <feature>.lengths (ids per sample) or .offsets")
        if {"lengths", "offsets"} <= arrays:
            raise SpecError(f"{where}.offsets", "given with lengths", "give lengths or offsets, not both")
    if not any(features):
        raise SpecError(f"trace {file}", "holds no feature", "add <feature>.ids and <feature>.lengths")
    return features


def _npz_feature(archive: zipfile.ZipFile, file: str, name: str, arrays: set[str]) -> Iterator[Piece]:
    where = f"trace {file}: {name}"
    ids = _NpyStream(archive, f"{name}.ids", f"{where}.ids")
    kind = "lengths" if "lengths" in arrays else "offsets"
    counts = _NpyStream(archive, f"{name}.{kind}", f"{where}.{kind}")
    last = None
    if kind == "offsets":
        first = counts.read(1)
        if first.size != 1 or int(first[0]) != 0:
            raise SpecError(f"{where}.offsets", "must start at 0", "give samples + 1 offsets into ids, from 0")
        last = 0
    while True:
        chunk = counts.read(CHUNK_SAMPLES)
        if chunk.size == 0:
            break
        if last is not None:  # offsets: each sample's length is the step from the offset before it
            chunk, last = np.diff(chunk, prepend=last), int(chunk[-1])
        if int(chunk.min()) < 0:
            problem = "must not decrease" if kind == "offsets" else "must not be negative"
            raise SpecError(f"{where}.{kind}", problem, "give the ids of each sample")
        yield Piece(name, ids.read(int(chunk.sum()), exact=f"{where}.{kind}"), chunk)
    left = ids.remaining
    if left:
        raise SpecError(
            f"{where}.{kind}",
            f"account for {ids.done} ids, ids has {ids.done + left}",
            "make the lengths sum to the number of ids",
        )


class _NpyStream:
    """One 1-D integer array of an .npz, read a few elements at a time from the zip member."""

    def __init__(self, archive: zipfile.ZipFile, key: str, where: str) -> None:
        self.where = where
        member = key + ".npy" if key + ".npy" in archive.namelist() else key
        self.file: IO[bytes] = archive.open(member)
        try:
            version = np.lib.format.read_magic(self.file)
            read_header = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}
            shape, _, dtype = read_header[version](self.file)
        except (ValueError, KeyError) as exc:
            raise SpecError(where, f"is not a numpy array: {exc}", "write the trace with numpy.savez") from None
        if len(shape) != 1 or dtype.kind not in "iu":
            raise SpecError(where, f"is {dtype} of shape {shape}", "give a 1-D array of integers")
        self.dtype, self.total, self.done = dtype, int(shape[0]), 0

    @property
    def remaining(self) -> int:
        return self.total - self.done

    def read(self, count: int | None, exact: str = "") -> np.ndarray:
        """The next `count` elements (all that are left: None) as int64. With `exact`, fewer is an error
        blamed on that field (the lengths that asked for them)."""
        count = self.remaining if count is None else count
        if exact and count > self.remaining:
            raise SpecError(
                exact,
                f"account for more ids than the {self.total} of {self.where.rpartition(':')[2].strip()}",
                "make the lengths sum to the number of ids",
            )
        count = min(count, self.remaining)
        data = self.file.read(count * self.dtype.itemsize)
        self.done += count
        return np.frombuffer(data, dtype=self.dtype, count=count).astype(np.int64)


# Parquet ----------------------------------------------------------------------------------------------------


def _parquet_pieces(path: Path, batches: Batches) -> Iterator[Piece]:
    try:
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError:
        raise ResourceError(
            "pyarrow", "reading a Parquet trace needs pyarrow, which is not installed", "pip install pyarrow"
        ) from None
    try:
        table_file = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow's errors have no common base beyond Exception
        raise SpecError(f"trace {path.name}", f"not a readable Parquet file: {exc}", "write it with pyarrow") from None
    for group in range(table_file.num_row_groups):
        table = table_file.read_row_group(group)
        batches.sizes.append(table.num_rows)
        for name in table.column_names:
            column = table.column(name).combine_chunks()
            if not (hasattr(column.type, "value_type") and str(column.type.value_type).startswith(("int", "uint"))):
                raise SpecError(f"trace {path.name}: {name}", f"is {column.type}", "give each sample a list of ids")
            lengths = pc.list_value_length(column).fill_null(0).to_numpy().astype(np.int64)
            ids = column.flatten()
            if ids.null_count:
                raise SpecError(f"trace {path.name}: {name}", "holds a null id", "give every id")
            yield Piece(name, ids.to_numpy().astype(np.int64), lengths)


# TorchRec KeyedJaggedTensor ----------------------------------------------------------------------------------


def _kjt_pieces(path: Path, batches: Batches) -> Iterator[Piece]:
    for kjt in _load_kjts(path):
        batches.sizes.append(int(kjt.stride()))
        for name, jagged in kjt.to_dict().items():
            ids = jagged.values().detach().cpu().numpy()
            if ids.dtype.kind not in "iu":
                raise SpecError(f"trace {path.name}: {name}", f"holds {ids.dtype} values", "give integer ids")
            yield Piece(str(name), ids.astype(np.int64), jagged.lengths().detach().cpu().numpy().astype(np.int64))


def _load_kjts(path: Path) -> list[Any]:
    try:
        import torch
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor
    except ImportError:
        raise ResourceError(
            "torchrec", "reading KeyedJaggedTensor traces needs torch and torchrec", "run `make test` once"
        ) from None
    try:
        with torch.serialization.safe_globals([KeyedJaggedTensor]):
            # mmap: the tensors' bytes stay in the file and are paged in as each batch is read, so a file
            # larger than memory streams too (the kernel can drop pages already read).
            loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:  # an unpickling error, a truncated file, a type outside the allowed ones
        problem = " ".join(str(exc).split())[:160]
        raise SpecError(
            f"trace {path.name}", f"cannot be read as saved KeyedJaggedTensors: {problem}", "torch.save the batches"
        ) from None
    kjts = list(loaded) if isinstance(loaded, list | tuple) else [loaded]
    if not kjts or not all(isinstance(k, KeyedJaggedTensor) for k in kjts):
        raise SpecError(
            f"trace {path.name}",
            "holds no KeyedJaggedTensor, or something else besides",
            "torch.save a KeyedJaggedTensor or a list of them",
        )
    return kjts
