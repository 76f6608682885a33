"""Workloads measured from index traces (`embmap profile-trace`), and seeded synthetic traces.

`workload_from_trace(path, tables=..., buckets=..., batch_size=...)` reads a trace (`.npz`, Parquet or saved
TorchRec KeyedJaggedTensors: `formats`), counts its ids chunk by chunk and returns the `WorkloadSpec` it
measures: per table the mean pooling factor and an empirical rank histogram (`histogram`). `generate` and
`write_trace` make traces of known per-feature Zipf exponents and pooling factors (`generate`).
docs/traces.md describes the formats, the command and the histogram's compression and its error.
"""

from embmap.mapper.traces.formats import SUFFIXES
from embmap.mapper.traces.generate import FORMATS, FeatureSpec, Trace, generate, write_trace
from embmap.mapper.traces.histogram import IdCounter, RankCounts, empirical, smoothed
from embmap.mapper.traces.profile import (
    DEFAULT_BUCKETS,
    TraceProgress,
    TraceTable,
    load_table_configs,
    workload_from_trace,
)

__all__ = [
    "DEFAULT_BUCKETS",
    "FORMATS",
    "SUFFIXES",
    "FeatureSpec",
    "IdCounter",
    "RankCounts",
    "Trace",
    "TraceProgress",
    "TraceTable",
    "empirical",
    "generate",
    "load_table_configs",
    "smoothed",
    "workload_from_trace",
    "write_trace",
]
