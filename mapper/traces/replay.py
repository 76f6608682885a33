"""A trace's own ids as a run's index batches: `embmap run PLAN --replay TRACE` (`replay_bags`).

Per table of the plan, its features' ids and lengths (a table reads the feature of its own name, or those
`--tables` gives it, as `profile-trace` reads them), cut into batches of the plan's batch size: a table read by
several features gets, per sample, the ids of each of them one after another, as profile-trace sums their
pooling. Samples beyond the last whole batch, or beyond the batches the run needs, are left out, and the
trace is read only until every feature has the samples the run needs. Refused in
one line: a table's feature missing from the trace, an id outside the plan's rows (a row cap cut them), fewer
samples than one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from embmap.ir.errors import SpecError
from embmap.ir.spec import TableSpec, WorkloadSpec
from embmap.mapper.traces.formats import Batches, read_pieces
from embmap.mapper.traces.profile import load_table_configs
from embmap.runtime.data import INDEX_DTYPE, Bags, bags_of


@dataclass(frozen=True)
class Replay:
    """The index batches of a replayed trace, per table of the plan, and where they came from."""

    bags: dict[str, Bags]
    index_batches: int
    ids_from: str


@dataclass
class _Feature:
    """One feature's first samples: their ids and lengths, piece by piece."""

    ids: list[np.ndarray] = field(default_factory=list)
    lengths: list[np.ndarray] = field(default_factory=list)
    samples: int = 0

    def add(self, ids: np.ndarray, lengths: np.ndarray, limit: int) -> None:
        take = min(lengths.size, limit - self.samples)
        if take <= 0:
            return
        self.lengths.append(lengths[:take])
        self.ids.append(ids[: int(lengths[:take].sum())])
        self.samples += take

    def arrays(self, samples: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, lengths) of the first `samples` samples."""
        lengths = np.concatenate(self.lengths)[:samples].astype(INDEX_DTYPE)
        return np.concatenate(self.ids)[: int(lengths.sum())].astype(INDEX_DTYPE), lengths


def features_of(workload: WorkloadSpec, tables: Any = None) -> dict[str, tuple[str, ...]]:
    """Table -> the features it reads: those of `tables` (a YAML/JSON path, a mapping or TorchRec configs, as
    for profile-trace), else the feature of the table's own name."""
    configs = load_table_configs(tables) if tables is not None else {}
    return {
        t.name: (configs[t.name].features or (t.name,)) if t.name in configs else (t.name,) for t in workload.tables
    }


def replay_bags(trace: str | Path, workload: WorkloadSpec, max_batches: int, tables: Any = None) -> Replay:
    """At most `max_batches` index batches of `workload`'s batch size from the trace's own ids (module
    docstring); a bad trace for this plan raises a one-line SpecError."""
    path = Path(trace)
    reads = features_of(workload, tables)
    wanted = {f for fs in reads.values() for f in fs}
    batch, limit = workload.batch_size, max_batches * workload.batch_size
    seen: dict[str, _Feature] = {}
    for piece in read_pieces(path, Batches()):
        if piece.feature in wanted:
            seen.setdefault(piece.feature, _Feature()).add(piece.ids, piece.lengths, limit)
            if len(seen) == len(wanted) and all(f.samples >= limit for f in seen.values()):
                break  # every feature has the samples the run takes: the rest of the trace is not read
    for t in workload.tables:
        missing = [f for f in reads[t.name] if f not in seen]
        if missing:
            raise SpecError(
                f"--replay {path.name}",
                f"has no feature {missing[0]}, which table {t.name} reads",
                "give the trace the plan was compiled from, or name each table's features with --tables",
            )
    counts = sorted((seen[f].samples, f) for f in wanted)
    if counts[0][0] != counts[-1][0]:
        raise SpecError(
            f"--replay {path.name}",
            f"features have different sample counts: {counts[0][1]} {counts[0][0]}, {counts[-1][1]} {counts[-1][0]}",
            "give every feature one length per sample (0 for a sample without ids)",
        )
    samples = counts[0][0]
    if samples < batch:
        raise SpecError(
            f"--replay {path.name}",
            f"holds {samples} samples, fewer than one batch of {batch}",
            "give a longer trace, or compile the plan for a smaller batch (compile --batch N)",
        )
    index_batches = min(samples // batch, max_batches)
    bags = {
        t.name: _table_bags(t, workload, [seen[f] for f in reads[t.name]], index_batches, path) for t in workload.tables
    }
    ids_from = f"trace {path.name}: its first {index_batches} batches of {batch} samples"
    return Replay(bags, index_batches, ids_from)


def _table_bags(
    table: TableSpec, workload: WorkloadSpec, features: list[_Feature], index_batches: int, path: Path
) -> Bags:
    """One table's index batches: per sample, the ids of each of its features one after another."""
    samples = index_batches * workload.batch_size
    parts = [f.arrays(samples) for f in features]
    lengths = np.sum([lengths for _, lengths in parts], axis=0)
    offsets = np.zeros(samples + 1, dtype=INDEX_DTYPE)
    np.cumsum(lengths, out=offsets[1:])
    ids = np.empty(int(offsets[-1]), dtype=INDEX_DTYPE)
    before = offsets[:-1].copy()  # where the next feature's ids of each sample go
    for feature_ids, feature_lengths in parts:
        starts = np.repeat(before - np.concatenate([[0], np.cumsum(feature_lengths)[:-1]]), feature_lengths)
        ids[starts + np.arange(feature_ids.size)] = feature_ids
        before += feature_lengths
    _check_ids(table, workload, ids, path)
    return bags_of(ids, lengths, workload.batch_size)


def _check_ids(table: TableSpec, workload: WorkloadSpec, ids: np.ndarray, path: Path) -> None:
    if ids.size and int(ids.min()) < 0:
        raise SpecError(f"--replay {path.name}", f"holds a negative id for table {table.name}", "give ids >= 0")
    if ids.size and int(ids.max()) >= table.rows:
        top = int(ids.max())
        fix = (
            f"the plan was compiled with a row cap of {workload.row_cap}: compile it without --row-cap, or with "
            f"--row-cap {top + 1} or more"
            if workload.row_cap is not None and workload.row_cap <= top
            else f"compile from a workload whose table {table.name} has more than {top} rows (profile-trace "
            "--tables gives the real counts)"
        )
        raise SpecError(
            f"--replay {path.name}", f"holds id {top} for table {table.name}, beyond the plan's {table.rows} rows", fix
        )
