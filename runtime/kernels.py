"""One kernel per strategy, built once per work item and called once per batch.

- shared table (GM): rows gathered from the one copy of the table in shared memory;
- private replica (L1): the worker copies its rows into its own memory once, before timing starts;
- streamed (GM-UB from the shared table, L1-UB from the private replica): indices are bucketed by chunk, each
  chunk of the table is copied into a scratch buffer half the size of the core's L1d, and the chunk's
  lookups are gathered from the scratch buffer;
- row shards gather only the lookups in their rows and accumulate into the output under a per-table lock.

Index batches are jagged (`data.Bags`): a sample reads ids[offsets[b, s]:offsets[b, s + 1]], any number of
them, none giving a zero row. Where every sample of every batch reads the same number P, the whole-rows
kernels take the batch as a [samples, P] array, as they did before index batches were jagged.

PyTorch's embedding_bag (FBGEMM on CPU) does the gathers when torch is importable; NumPy otherwise. Every
kernel sums in fp32 and writes fp32, whatever the table's dtype: embedding_bag returns an fp16 table's sums
rounded to fp16, so fp16 rows are gathered and summed in fp32 instead.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np

from embmap.ir.plan import Strategy, WorkItem, stream_chunk_rows
from embmap.ir.spec import TableSpec
from embmap.runtime.data import uniform_length

try:  # the fast path
    import torch
    import torch.nn.functional as F  # noqa: N812

    HAVE_TORCH = True
except ImportError:  # pragma: no cover - exercised where torch is absent
    HAVE_TORCH = False

Kernel = Callable[[int], None]  # called with the index-batch number


@dataclass(frozen=True)
class ItemData:
    """What a kernel reads and writes: the whole table, the index batches, the table's pooled output."""

    table: TableSpec
    weights: np.ndarray  # [rows, dim], shared
    ids: np.ndarray  # every index batch's ids, shared
    offsets: np.ndarray  # [index_batches, batch + 1] into ids, shared
    output: np.ndarray  # [batch, dim] float32, shared
    scratch_bytes: int
    lock: AbstractContextManager[Any] | None = None


def backend_name(requested: str) -> str:
    if requested == "auto":
        return "torch" if HAVE_TORCH else "numpy"
    if requested == "torch" and not HAVE_TORCH:
        raise RuntimeError("backend torch requested but torch is not importable; install embmap[runtime]")
    return requested


@dataclass(frozen=True)
class _Span:
    """Where an item reads and writes, and how a streamed item walks its rows: shared by both backends."""

    s0: int
    s1: int
    r0: int
    r1: int
    uniform: int  # lookups of every sample of every batch where they are all the same and above 0; else 0
    shard: bool  # owns a slice of the rows: filters its lookups, accumulates into the output
    streamed: bool
    accumulate: bool
    chunk: int  # rows per streamed chunk
    n_chunks: int

    def geometry(self) -> tuple[int, int, int, int, int, int, int]:
        """(s0, s1, r0, r1, uniform, chunk, n_chunks), for kernels that bind them as locals of their closure."""
        return self.s0, self.s1, self.r0, self.r1, self.uniform, self.chunk, self.n_chunks


def build_kernel(item: WorkItem, data: ItemData, backend: str) -> Kernel:
    """The kernel of one work item; private replicas are copied here, before anything is timed."""
    r0, r1 = item.rows
    source = data.weights[r0:r1]
    if item.strategy.preloaded:
        source = np.array(source, copy=True)  # the core's private replica
    chunk = stream_chunk_rows(data.scratch_bytes, data.table.row_bytes)
    span = _Span(
        s0=item.samples[0],
        s1=item.samples[1],
        r0=r0,
        r1=r1,
        uniform=uniform_length(data.offsets) or 0,
        shard=(r0, r1) != (0, data.table.rows),
        streamed=item.strategy in (Strategy.GM_UB, Strategy.L1_UB),
        accumulate=item.output == "accumulate",
        chunk=chunk,
        n_chunks=-(-(r1 - r0) // chunk),
    )
    lock = data.lock if span.accumulate and data.lock is not None else nullcontext()
    make = _torch_kernel if backend == "torch" else _numpy_kernel
    return make(span, data, source, lock)


def _torch_kernel(span: _Span, data: ItemData, source: np.ndarray, lock: AbstractContextManager[Any]) -> Kernel:
    s0, s1, r0, r1, uniform, _, _ = span.geometry()
    shard, streamed, accumulate = span.shard, span.streamed, span.accumulate
    weights = torch.from_numpy(source)
    ids, offsets = torch.from_numpy(data.ids), data.offsets
    out = torch.from_numpy(data.output)[s0:s1]
    bag_starts = torch.arange(s1 - s0, dtype=torch.int64)
    all_bags = torch.div(torch.arange((s1 - s0) * uniform), max(uniform, 1), rounding_mode="floor")

    def lookups(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The item's samples' ids of batch `b` and the sample (bag) of each, in batch order."""
        lo, hi = int(offsets[b, s0]), int(offsets[b, s1])
        if uniform:
            return ids[lo:hi], all_bags
        lengths = torch.from_numpy(np.diff(offsets[b, s0 : s1 + 1]))
        return ids[lo:hi], torch.repeat_interleave(bag_starts, lengths)

    def select(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Local row ids and bag (sample) ids of the lookups this item serves, in batch order."""
        idx, bags = lookups(b)
        if not shard:
            return idx, bags
        pos = ((idx >= r0) & (idx < r1)).nonzero().squeeze(1)
        return idx[pos] - r0, bags[pos]

    def store(result: torch.Tensor) -> None:
        if accumulate:
            with lock:
                out.add_(result)
        else:
            out.copy_(result)

    if not streamed and not shard:

        def gather_all(b: int) -> None:
            if uniform:
                lo = int(offsets[b, s0])
                store(_bag_sums(weights, ids[lo : lo + (s1 - s0) * uniform].view(s1 - s0, uniform)))
            else:
                store(_lookup_sums(weights, *lookups(b), bag_starts))

        return gather_all

    if not streamed:

        def gather_shard(b: int) -> None:
            local, bags = select(b)
            store(_lookup_sums(weights, local, bags, bag_starts))

        return gather_shard

    return _torch_stream(span, data, weights, select, store)


def _torch_stream(
    span: _Span,
    data: ItemData,
    weights: torch.Tensor,
    select: Callable[[int], tuple[torch.Tensor, torch.Tensor]],
    store: Callable[[torch.Tensor], None],
) -> Kernel:
    """The streamed kernel: the item's lookups bucketed by chunk, each chunk copied into the scratchpad."""
    s0, s1, r0, r1, _, chunk, n_chunks = span.geometry()
    scratch = torch.empty((min(chunk, r1 - r0), data.table.dim), dtype=weights.dtype)

    def stream(b: int) -> None:
        local, bags = select(b)
        chunk_of = torch.div(local, chunk, rounding_mode="floor")
        order = torch.argsort(chunk_of, stable=True)
        local, bags = local[order], bags[order]
        bounds = [0, *torch.bincount(chunk_of, minlength=n_chunks).cumsum(0).tolist()]
        acc = torch.zeros((s1 - s0, data.table.dim), dtype=torch.float32)
        for c in range(n_chunks):
            lo = c * chunk
            rows = min(chunk, r1 - r0 - lo)
            scratch[:rows].copy_(weights[lo : lo + rows])  # the chunk streamed into the scratchpad
            a, z = bounds[c], bounds[c + 1]
            if z > a:
                acc.index_add_(0, bags[a:z], scratch[local[a:z] - lo].float())
        store(acc)

    return stream


def _bag_sums(weights: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Each bag's sum of its rows (`idx` [bags, pooling]) in fp32. embedding_bag returns its sums in the table's
    dtype (an fp16 table's rounded to fp16), so an fp16 table's rows are gathered, converted and summed in fp32
    (index_select gathers several times faster than indexing with a tensor)."""
    if weights.dtype == torch.float32:
        return F.embedding_bag(idx, weights, mode="sum")
    return weights.index_select(0, idx.reshape(-1)).float().view(*idx.shape, -1).sum(1)


def _lookup_sums(
    weights: torch.Tensor, local: torch.Tensor, bags: torch.Tensor, bag_starts: torch.Tensor
) -> torch.Tensor:
    """Each bag's sum in fp32 of lookups `local` whose bags are `bags` (ascending; bags may be empty)."""
    if weights.dtype == torch.float32:
        return F.embedding_bag(local, weights, torch.searchsorted(bags, bag_starts), mode="sum")
    acc = torch.zeros((len(bag_starts), weights.shape[1]), dtype=torch.float32)
    return acc.index_add_(0, bags, weights.index_select(0, local).float())


def _numpy_kernel(span: _Span, data: ItemData, source: np.ndarray, lock: AbstractContextManager[Any]) -> Kernel:
    s0, s1, r0, r1, uniform, chunk, n_chunks = span.geometry()
    shard, streamed, accumulate = span.shard, span.streamed, span.accumulate
    ids, offsets = data.ids, data.offsets
    out = data.output[s0:s1]
    scratch = np.empty((min(chunk, r1 - r0), data.table.dim), dtype=source.dtype)
    all_bags = np.arange((s1 - s0) * uniform) // max(uniform, 1)
    bag_starts = np.arange(s1 - s0)

    def select(b: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = int(offsets[b, s0]), int(offsets[b, s1])
        idx = ids[lo:hi]
        bags = all_bags if uniform else np.repeat(bag_starts, np.diff(offsets[b, s0 : s1 + 1]))
        if not shard:
            return idx, bags
        pos = np.flatnonzero((idx >= r0) & (idx < r1))
        return idx[pos] - r0, bags[pos]

    def store(result: np.ndarray) -> None:
        if accumulate:
            with lock:
                out[:] += result
        else:
            out[:] = result

    def kernel(b: int) -> None:
        if not streamed and not shard and uniform:
            lo = int(offsets[b, s0])
            rows = source[ids[lo : lo + (s1 - s0) * uniform].reshape(s1 - s0, uniform)]
            store(rows.sum(axis=1, dtype=np.float32))
            return
        local, bags = select(b)
        acc = np.zeros((s1 - s0, data.table.dim), dtype=np.float32)
        if not streamed:
            np.add.at(acc, bags, source[local])
            store(acc)
            return
        chunk_of = local // chunk
        order = np.argsort(chunk_of, kind="stable")
        local, bags = local[order], bags[order]
        bounds = np.concatenate([[0], np.cumsum(np.bincount(chunk_of, minlength=n_chunks))])
        for c in range(n_chunks):
            lo = c * chunk
            rows = min(chunk, r1 - r0 - lo)
            scratch[:rows] = source[lo : lo + rows]
            a, z = bounds[c], bounds[c + 1]
            if z > a:
                np.add.at(acc, bags[a:z], scratch[local[a:z] - lo])
        store(acc)

    return kernel
