"""Materialise a plan's tables and index batches in shared memory, seeded and reproducible.

Index batches are jagged (CSR): per table, the ids of every index batch in one flat array, and per index batch
`offsets` [batch + 1] into it; sample s of batch b looks up ids[offsets[b, s]:offsets[b, s + 1]], none at all
where the two are equal. Drawn ones (`make_indices`): a table of pooling factor p gives each sample floor(p) or
ceil(p) lookups, ceil(p) with probability frac(p) (seeded), so that the mean is p and the variance the least;
a whole factor gives every sample exactly p. Ids follow the table's distribution over popularity ranks, then a
fixed affine permutation maps ranks to row ids (ids are hashed in practice), exactly as the cost model assumes:
a contiguous row range receives a proportional share of the lookups. Replayed ones are a trace's own (`Bags`
given to `materialize`).

What worker processes share lives in a `SharedRegion`: one anonymous shared mapping per run holding every
array, which forked workers inherit. It has no name in /dev/shm and no file descriptor, so a run killed in
any way leaves nothing behind, a small or read-only /dev/shm does not matter, and a plan of any number of
tables maps one region. The memory goes with the last process that maps it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import math
import mmap
import resource
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType

import numpy as np

from embmap.ir.distributions import histogram
from embmap.ir.errors import ResourceError
from embmap.ir.spec import DType, TableSpec
from embmap.ir.targets import HUGE_PAGE_BYTES

NUMPY_DTYPES = {DType.FP32: np.float32, DType.FP16: np.float16}
INDEX_DTYPE = np.int64
PAGE_BYTES = 4096
LINE_BYTES = 64
SEM_BYTES = 64  # one cache line per semaphore; sizeof(sem_t) is 32 on 64-bit Linux (glibc and musl)

ArraySpec = tuple[tuple[int, ...], "np.dtype | type"]


def memory_refused(nbytes: int, what: str, smaller: str = "recompile with a row cap (--row-cap N)") -> ResourceError:
    """The one-line error for memory or address space the machine refused, with the limit that refused it;
    `smaller` says how to ask for less."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    limit = "" if soft == resource.RLIM_INFINITY else f" under an address-space limit of {soft / 2**30:.2f} GiB"
    raise_it = "raise the limit (ulimit -v unlimited), " if limit else ""
    return ResourceError(
        "memory", f"could not get {nbytes / 2**30:.2f} GiB for {what}{limit}", f"{raise_it}free memory, or {smaller}"
    )


def _layout(specs: Sequence[ArraySpec]) -> tuple[list[int], int]:
    """Each array's offset and the total: arrays of a page or more start on a page, others on a cache line."""
    offsets, end = [], 0
    for shape, dtype in specs:
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        align = PAGE_BYTES if nbytes >= PAGE_BYTES else LINE_BYTES
        end = -(-end // align) * align
        offsets.append(end)
        end += nbytes
    return offsets, max(end, 1)


class SharedRegion:
    """Arrays that forked processes share, all in one anonymous shared mapping (MAP_SHARED | MAP_ANONYMOUS):
    no name to unlink, no file descriptor, freed by the kernel with the last process that maps it."""

    def __init__(self, specs: Sequence[ArraySpec], what: str) -> None:
        offsets, self.nbytes = _layout(specs)
        try:
            self._map: mmap.mmap | None = mmap.mmap(-1, self.nbytes, flags=mmap.MAP_SHARED)
        except OSError as exc:
            if exc.errno in (errno.ENOMEM, errno.EAGAIN):
                raise memory_refused(self.nbytes, what) from None
            raise
        self.arrays = [
            np.ndarray(shape, dtype=dtype, buffer=self._map, offset=offset)
            for (shape, dtype), offset in zip(specs, offsets, strict=True)
        ]

    @property
    def closed(self) -> bool:
        return self._map is None

    def close(self) -> None:
        """Unmap now where no view of an array is left; otherwise the memory goes with the last view."""
        self.arrays = []
        region, self._map = self._map, None
        if region is not None:
            with contextlib.suppress(BufferError):
                region.close()


class ProcessLock:
    """A mutex that forked processes share: an unnamed POSIX semaphore (sem_init with pshared) inside a
    SharedRegion, so that it has no name in /dev/shm and no file descriptor, unlike multiprocessing's Lock.
    `slot` is SEM_BYTES of the region, initialised here once, before the processes are forked."""

    _libc = ctypes.CDLL(None, use_errno=True)

    def __init__(self, slot: np.ndarray) -> None:
        assert slot.nbytes >= SEM_BYTES and slot.ctypes.data % LINE_BYTES == 0
        self._slot = slot  # keeps the region mapped as long as the lock lives
        self._sem = ctypes.c_void_p(int(slot.ctypes.data))
        self._wait, self._post = self._libc.sem_wait, self._libc.sem_post  # bound once: a lock is taken per item
        if self._libc.sem_init(self._sem, 1, 1) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"sem_init: {errno.errorcode.get(code, code)}")

    def __enter__(self) -> None:
        while self._wait(self._sem) != 0:
            if ctypes.get_errno() != errno.EINTR:
                raise OSError(ctypes.get_errno(), "sem_wait")

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._post(self._sem)


@dataclass
class SharedArray:
    """A view of an array of a SharedRegion, with LocalArray's interface; the region owns the memory."""

    array: np.ndarray

    def close(self, unlink: bool = True) -> None:
        del self.array


@dataclass
class LocalArray:
    """A numpy array in this process's own memory, with SharedArray's interface: what threads share."""

    array: np.ndarray

    @staticmethod
    def create(shape: tuple[int, ...], dtype: np.dtype | type) -> LocalArray:
        return LocalArray(huge_page_array(shape, dtype))

    def close(self, unlink: bool = True) -> None:
        del self.array


def huge_page_array(shape: tuple[int, ...], dtype: np.dtype | type) -> np.ndarray:
    """An array whose memory the kernel may back with 2 MiB pages (transparent huge pages, asked for by
    madvise), as a serving process would hold its tables: a random read of a table far larger than the TLB's
    reach then costs no page walk. Small arrays, and systems without the advice, get ordinary memory. The
    memory is freed with the last view of the array."""
    count = int(np.prod(shape))
    nbytes = count * np.dtype(dtype).itemsize
    if nbytes < HUGE_PAGE_BYTES or not hasattr(mmap, "MADV_HUGEPAGE"):
        return np.empty(shape, dtype=dtype)
    region = mmap.mmap(-1, nbytes + HUGE_PAGE_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    start = ctypes.addressof(ctypes.c_char.from_buffer(region))
    pad = -start % HUGE_PAGE_BYTES
    with contextlib.suppress(OSError):  # no transparent huge pages here: ordinary pages, the same array
        region.madvise(mmap.MADV_HUGEPAGE, pad, nbytes - nbytes % HUGE_PAGE_BYTES)
    return np.frombuffer(region, dtype=dtype, count=count, offset=pad).reshape(shape)


@dataclass(frozen=True)
class Bags:
    """One table's index batches, jagged: `ids` of every batch in one flat int64 array, `offsets` int64
    [index_batches, batch + 1] into it (absolute: batch b's samples follow batch b - 1's)."""

    ids: np.ndarray
    offsets: np.ndarray

    def batch(self, b: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, offsets from 0) of index batch `b`."""
        return batch_bags(self.ids, self.offsets, b)


def batch_bags(ids: np.ndarray, offsets: np.ndarray, b: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids, offsets [batch + 1] from 0) of index batch `b` of a table's flat ids and absolute offsets."""
    row = offsets[b]
    return ids[int(row[0]) : int(row[-1])], row - row[0]


def uniform_length(offsets: np.ndarray) -> int | None:
    """The number of lookups every sample of every batch makes, where they all make the same; else None."""
    lengths = np.diff(offsets, axis=-1)
    if lengths.size == 0:
        return 0
    first = int(lengths.flat[0])
    return first if bool((lengths == first).all()) else None


@dataclass
class Materialized:
    """Tables [rows, dim], index batches (flat ids `indices` and `offsets` [n, batch + 1], `Bags`) and pooled
    outputs [batch, dim] per table; for worker processes, views of one SharedRegion (`region`). `ids_from`
    says where the ids came from (drawn with a seed, or a trace's own)."""

    tables: dict[str, SharedArray | LocalArray] = field(default_factory=dict)
    indices: dict[str, SharedArray | LocalArray] = field(default_factory=dict)
    offsets: dict[str, SharedArray | LocalArray] = field(default_factory=dict)
    outputs: dict[str, SharedArray | LocalArray] = field(default_factory=dict)
    made_for: tuple[object, ...] = ()  # (tables, batch size, index batches, seed or ids_from)
    region: SharedRegion | None = None
    ids_from: str = ""

    def arrays(self) -> list[SharedArray | LocalArray]:
        return [*self.tables.values(), *self.indices.values(), *self.offsets.values(), *self.outputs.values()]

    def bags(self, name: str) -> Bags:
        """Table `name`'s index batches."""
        return Bags(self.indices[name].array, self.offsets[name].array)

    def index_batches(self) -> int:
        return int(next(iter(self.offsets.values())).array.shape[0])

    def close(self, unlink: bool = True) -> None:
        for a in self.arrays():
            a.close(unlink)
        if self.region is not None:
            self.region.close()


def permutation_params(rows: int) -> tuple[int, int]:
    """(a, c) of the rank -> id permutation id = (a * rank + c) mod rows; gcd(a, rows) == 1."""
    if rows <= 2:
        return 1, 0
    a = 2654435761 % rows or 1
    while math.gcd(a, rows) != 1:
        a += 1
    return a, (rows // 3) % rows


def sample_ranks(table: TableSpec, size: int, rng: np.random.Generator) -> np.ndarray:
    assert table.distribution is not None
    if table.distribution.kind == "uniform":
        return rng.integers(0, table.rows, size=size, dtype=np.int64)
    hist = histogram(table.distribution, table.rows)
    mass = hist.counts * hist.probs
    cum = np.cumsum(mass)
    bucket = np.minimum(np.searchsorted(cum / cum[-1], rng.random(size), side="right"), len(cum) - 1)
    starts = np.concatenate([[0.0], np.cumsum(hist.counts)[:-1]]).astype(np.int64)
    offset = (rng.random(size) * hist.counts[bucket]).astype(np.int64)
    return np.minimum(starts[bucket] + offset, table.rows - 1)


def sample_lengths(table: TableSpec, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Lookups of each of `samples` samples: floor(p) or ceil(p) for pooling factor p, ceil(p) with probability
    frac(p), so that the mean is p with the least variance. A whole factor draws nothing from `rng`: every
    sample gets p, and the ids that follow are those of the same seed before lengths were drawn."""
    pooling = float(table.pooling)
    whole = math.floor(pooling)
    if pooling == whole:
        return np.full(samples, whole, dtype=INDEX_DTYPE)
    return (whole + (rng.random(samples) < pooling - whole)).astype(INDEX_DTYPE)


def make_indices(table: TableSpec, batches: int, batch_size: int, seed: int) -> Bags:
    """`batches` index batches of `batch_size` samples drawn for `table` (module docstring), seeded."""
    rng = np.random.default_rng([seed, 1, _stable_hash(table.name)])
    lengths = sample_lengths(table, batches * batch_size, rng)
    ranks = sample_ranks(table, int(lengths.sum()), rng)
    a, c = permutation_params(table.rows)
    return bags_of(((ranks * a + c) % table.rows).astype(INDEX_DTYPE), lengths, batch_size)


def bags_of(ids: np.ndarray, lengths: np.ndarray, batch_size: int) -> Bags:
    """The index batches of samples that look up `lengths` of `ids` each, in order, `batch_size` a batch."""
    offsets = np.zeros(lengths.size + 1, dtype=INDEX_DTYPE)
    np.cumsum(lengths, out=offsets[1:])
    starts = offsets[:-1].reshape(-1, batch_size)
    return Bags(ids, np.concatenate([starts, offsets[batch_size::batch_size, None]], axis=1))


def fill_table(table: TableSpec, out: np.ndarray, seed: int) -> None:
    """Values in [0, 1), distinct per row, written in blocks to bound temporary memory."""
    rng = np.random.default_rng([seed, 0, _stable_hash(table.name)])
    block = max(1, (64 << 20) // (table.dim * 4))
    for lo in range(0, table.rows, block):
        hi = min(table.rows, lo + block)
        out[lo:hi] = rng.random((hi - lo, table.dim), dtype=np.float32)


def materialize(
    tables: tuple[TableSpec, ...],
    batch_size: int,
    index_batches: int,
    seed: int,
    shared: bool = True,
    bags: Mapping[str, Bags] | None = None,
    ids_from: str = "",
) -> Materialized:
    """Tables, index batches and outputs; in one shared region (`shared`, for worker processes) or in this
    process's memory. Index batches are drawn with `seed`, or given per table (`bags`, e.g. a trace's own,
    `ids_from` saying whence). Memory or address space refused: a ResourceError naming how much was asked."""
    if bags is None:
        bags = {t.name: make_indices(t, index_batches, batch_size, seed) for t in tables}
        ids_from = f"drawn from the tables' distributions, seed {seed}"
    m = Materialized(made_for=(tables, batch_size, index_batches, seed, ids_from), ids_from=ids_from)
    specs: list[ArraySpec] = []
    for t in tables:
        specs += [
            ((t.rows, t.dim), NUMPY_DTYPES[t.dtype]),
            (bags[t.name].ids.shape, INDEX_DTYPE),
            ((index_batches, batch_size + 1), INDEX_DTYPE),
            ((batch_size, t.dim), np.float32),
        ]
    nbytes = _layout(specs)[1]
    try:
        if shared:
            m.region = SharedRegion(specs, "the tables, index batches and outputs")
            views: list[SharedArray | LocalArray] = [SharedArray(a) for a in m.region.arrays]
        else:
            views = [LocalArray.create(shape, dtype) for shape, dtype in specs]
        for k, t in enumerate(tables):
            m.tables[t.name], m.indices[t.name], m.offsets[t.name], m.outputs[t.name] = views[4 * k : 4 * k + 4]
            fill_table(t, m.tables[t.name].array, seed)
            m.indices[t.name].array[:] = bags[t.name].ids
            m.offsets[t.name].array[:] = bags[t.name].offsets
            m.outputs[t.name].array[:] = 0.0
    except MemoryError:
        m.close()
        raise memory_refused(nbytes, "the tables, index batches and outputs") from None
    except OSError as exc:
        m.close()
        if exc.errno in (errno.ENOMEM, errno.EAGAIN):
            raise memory_refused(nbytes, "the tables, index batches and outputs") from None
        raise
    except BaseException:
        m.close()
        raise
    return m


def reference_lookup(table: np.ndarray, ids: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """The plain definition: for each sample, the sum of its rows ids[offsets[s]:offsets[s + 1]] (float64
    accumulation, one row after another); a sample without ids sums to a zero row."""
    return _bag_sums(table[ids], offsets, ids.size)[0]


def _bag_sums(rows: np.ndarray, offsets: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(each sample's sum of its `rows` in float64, the sum of their absolute values) for samples
    rows[offsets[s] - offsets[0]:offsets[s + 1] - offsets[0]]; zero for a sample of no rows."""
    local = offsets - offsets[0]
    samples = len(local) - 1
    sums = np.zeros((samples, rows.shape[1]), dtype=np.float64)
    magnitude = np.zeros_like(sums)
    full = np.flatnonzero(local[1:] > local[:-1])  # reduceat's segment of a sample ends at the next one's start
    if full.size and n:
        sums[full] = np.add.reduceat(rows, local[full], axis=0, dtype=np.float64)
        magnitude[full] = np.add.reduceat(np.abs(rows), local[full], axis=0, dtype=np.float64)
    return sums, magnitude


def check_outputs(
    tables: tuple[TableSpec, ...],
    outputs: Mapping[str, np.ndarray],
    data: Materialized,
    index_batch: int,
    rounded_to: Mapping[str, DType] | None = None,
) -> tuple[bool, float, float]:
    """(every element within its bound, the worst error, its bound): every table's pooled output of index batch
    `index_batch` against the reference lookup of the table's rows in the table's dtype, element by element
    against `tolerance` with each sample's own number of lookups. `rounded_to` names the tables whose fp32
    sums were then stored in a narrower dtype."""
    worst, worst_tol, worst_ratio, ok = 0.0, 0.0, -1.0, True
    for t in tables:
        ids, offsets = data.bags(t.name).batch(index_batch)
        rows = data.tables[t.name].array[ids].astype(NUMPY_DTYPES[t.dtype], copy=False)
        reference, magnitude = _bag_sums(rows, offsets, ids.size)
        err = np.abs(np.asarray(outputs[t.name], dtype=np.float64) - reference)
        lengths = np.diff(offsets)[:, None]
        tol = tolerance(lengths, magnitude, (rounded_to or {}).get(t.name, DType.FP32))
        within = err <= tol  # False where the output is NaN
        ok = ok and bool(within.all())
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(within, np.where(err > 0, err / tol, 0.0), np.inf)
        at = int(ratio.argmax()) if ratio.size else 0
        if ratio.size and float(ratio.flat[at]) > worst_ratio:
            worst, worst_tol, worst_ratio = float(err.flat[at]), float(tol.flat[at]), float(ratio.flat[at])
    return ok, worst, worst_tol


F32_UNIT_ROUNDOFF = 2.0**-24  # round to nearest: |fl(x) - x| <= u |x|
F64_UNIT_ROUNDOFF = 2.0**-53
F16_UNIT_ROUNDOFF = 2.0**-11
F16_LEAST_SUBNORMAL = 2.0**-24  # below 2^-14 fp16 rounds to a multiple of this: absolute error at most its half


def tolerance(pooling: int | np.ndarray, magnitude: np.ndarray, rounded_to: DType = DType.FP32) -> np.ndarray:
    """Per element, the bound on |output - reference| of a pooled sum of `pooling` rows whose absolute values
    add up to `magnitude`, as every kernel here computes it: each row converted to fp32 (exact from fp16 or
    fp32), the rows added in fp32 with round-to-nearest in any order or tree (a row shard's partial sums
    included; pooling - 1 additions), the sum stored in fp32, or `rounded_to` fp16 once more (PyTorch's
    embedding_bag on an fp16 table). Any summation of k additions errs by at most gamma_k = k u / (1 - k u)
    times the sum of the magnitudes (Higham, Accuracy and Stability of Numerical Algorithms, 4.2); the float64
    reference's own error is bounded the same way and added. Nothing else is allowed for: an fp16 table's
    outputs are checked as tightly as an fp32 table's. `pooling` may be each sample's own count ([batch, 1])."""
    k = np.maximum(np.asarray(pooling, dtype=np.float64) - 1, 0)
    gamma_32 = k * F32_UNIT_ROUNDOFF / (1.0 - k * F32_UNIT_ROUNDOFF)
    gamma_64 = k * F64_UNIT_ROUNDOFF / (1.0 - k * F64_UNIT_ROUNDOFF)
    bound = (gamma_32 + gamma_64) * np.asarray(magnitude, dtype=np.float64)
    if rounded_to is DType.FP16:
        bound = bound + F16_UNIT_ROUNDOFF * (magnitude + bound) + F16_LEAST_SUBNORMAL / 2
    return bound


def _stable_hash(name: str) -> int:
    return zlib.crc32(name.encode())
