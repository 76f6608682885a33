// The native executor: runs an execution plan's work items in compiled code, one pinned thread per core.
//
// Python hands over flat arrays (tables, index batches, outputs, items and each core's order); `run` then
// releases the interpreter and every core runs all its batches by itself: wait at the batch barrier, run its
// items in order (timing each with one clock read), record when it started and ended. Nothing in Python runs
// inside the timed loop. The strategies are distinct kernels:
//   GM     rows gathered from the one shared copy of the table, with software prefetch a few bags ahead;
//   L1     the same from the core's private replica of its rows, copied once before timing starts;
//   GM-UB  lookups bucketed by chunk, each chunk of the table copied into a scratch buffer of half the core's
//   L1-UB  L1d, the chunk's lookups gathered from there (from the shared table, or from the private replica).
// A row shard gathers the lookups in its rows only. Shards do not share a lock: each writes its own partial
// sums, and the last shard of a table to finish (an atomic counter) adds the partials into the output.
// Accumulation is in fp32 whatever the table's dtype (fp32 or fp16), in AVX-512 (or AVX2) registers. Index
// batches are jagged (CSR): sample s of batch b looks up ids[offsets[b][s] .. offsets[b][s + 1]), any number
// of ids including none (a zero row).
//
// The barrier spins for a bounded time, then sleeps on a futex, so a core that waits for a slower one
// gives its time back to the machine instead of burning it.

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#define EMBMAP_PAUSE() _mm_pause()
#else
#define EMBMAP_PAUSE() ((void)0)
#endif

namespace py = pybind11;

namespace {

using half = _Float16;

enum Strategy : int { GM = 0, L1 = 1, GM_UB = 2, L1_UB = 3 };
enum DType : int { FP32 = 0, FP16 = 1 };

constexpr int64_t kLineBytes = 64;
constexpr int kPrefetchLookups = 16;  // lookups whose rows are prefetched ahead of the bag being accumulated

int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

struct alignas(64) Aligned {
  // Memory aligned to a cache line, freed on destruction.
  void* ptr = nullptr;
  explicit Aligned(size_t bytes) {
    if (bytes == 0) return;
    ptr = std::aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (ptr == nullptr) throw std::bad_alloc();
  }
  ~Aligned() { std::free(ptr); }
  Aligned(const Aligned&) = delete;
  Aligned& operator=(const Aligned&) = delete;
};

// What every item of a table reads and writes.
struct Table {
  const char* weights;  // [rows, dim] of dtype
  int dtype;
  int64_t rows;
  int64_t dim;
  int64_t row_bytes;
  const int64_t* ids;      // every index batch's ids, one after another
  const int64_t* offsets;  // [index_batches, batch + 1] into ids
  int64_t index_batches;
  int64_t batch;
  int64_t pooling;  // mean lookups per sample, rounded down: U sums pay where bags hold at least U lookups
  int64_t uniform;  // P where sample s of batch b reads ids[(b * batch + s) * P ..] (P > 0), else 0
  float* output;  // [batch, dim]
  // Row shards: how many there are, how many have finished this batch, and their partial sums.
  int shards = 0;
  std::atomic<int> arrived{0};
  std::vector<const float*> partials;
  std::vector<std::pair<int64_t, int64_t>> partial_samples;
};

struct Item {
  int64_t id;
  int table;
  int strategy;
  int64_t r0, r1, s0, s1;
  bool accumulate;
};

// Per-item state built by its core before timing starts: replica, scratch, buckets, partial sums.
struct ItemState {
  const Item* item;
  Table* table;
  const char* base;  // row r0 of the rows it reads (shared table or private replica)
  bool shard;        // serves a strict subset of the rows: filters its lookups
  int64_t chunk_rows = 0, n_chunks = 0;
  std::unique_ptr<Aligned> replica, scratch, acc, partial, bucket_rows, bucket_bags, counts;
};

// ---- kernels ---------------------------------------------------------------------------------------------

// Where sample s's lookups start in the ids (its end: where s + 1's start). Kernels take either kind as O:
// a jagged batch reads its offsets; where every sample of every batch makes P lookups, one batch after
// another, the start is computed (s * P from the batch's first id) and no offset is read, so that whole
// pooling factors run the code they ran before index batches were jagged (reading the batch's first offset
// alone cost a cache miss per item and batch: 3% on a one-item plan of 3.7 us).
struct JaggedOffsets {
  const int64_t* offsets;
  int64_t operator[](int64_t s) const { return offsets[s]; }
};
struct UniformOffsets {
  int64_t pooling;
  int64_t operator[](int64_t s) const { return s * pooling; }
};

template <typename T>
inline float as_float(T v) {
  return static_cast<float>(v);
}

// ---- vector sums ---------------------------------------------------------------------------------------
// A bag's sum is kept in vector registers by name: DIM / kLanes registers, each row loaded (fp16 rows widened
// to fp32 on load) and added with one instruction per register. Written with intrinsics rather than left to
// the compiler's vectorizer: from a loop over a float array the compiler's choice between registers and the
// stack changed with unrelated edits of this file, and with it the time of a small item by up to 3x.
#if defined(__AVX512F__)
#define EMBMAP_VECTOR 1
using vfloat = __m512;
constexpr int kLanes = 16;
inline vfloat vzero() { return _mm512_setzero_ps(); }
inline vfloat vadd(vfloat a, vfloat b) { return _mm512_add_ps(a, b); }
inline vfloat vload(const float* p) { return _mm512_loadu_ps(p); }
inline vfloat vload(const half* p) {  // the zero-masked form: the plain one trips -Wmaybe-uninitialized in GCC 12
  return _mm512_maskz_cvtph_ps(__mmask16(0xFFFF), _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
inline void vstore(float* p, vfloat v) { _mm512_storeu_ps(p, v); }
#elif defined(__AVX2__) && defined(__F16C__)
#define EMBMAP_VECTOR 1
using vfloat = __m256;
constexpr int kLanes = 8;
inline vfloat vzero() { return _mm256_setzero_ps(); }
inline vfloat vadd(vfloat a, vfloat b) { return _mm256_add_ps(a, b); }
inline vfloat vload(const float* p) { return _mm256_loadu_ps(p); }
inline vfloat vload(const half* p) { return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))); }
inline void vstore(float* p, vfloat v) { _mm256_storeu_ps(p, v); }
#else
#define EMBMAP_VECTOR 0
constexpr int kLanes = 1;
#endif

// Whether rows of DIM floats go through vector registers (a whole number of registers wide).
template <int DIM>
constexpr bool kVectorized = EMBMAP_VECTOR && DIM > 0 && DIM % kLanes == 0;

#if EMBMAP_VECTOR
// One bag's running sum of DIM floats, in DIM / kLanes vector registers.
template <int DIM>
struct Sum {
  static constexpr int N = DIM / kLanes;
  vfloat v[N];
  void zero() {
#pragma GCC unroll 16
    for (int i = 0; i < N; ++i) v[i] = vzero();
  }
  template <typename T>
  void add(const T* __restrict row) {
#pragma GCC unroll 16
    for (int i = 0; i < N; ++i) v[i] = vadd(v[i], vload(row + i * kLanes));
  }
  void add(const Sum& other) {
#pragma GCC unroll 16
    for (int i = 0; i < N; ++i) v[i] = vadd(v[i], other.v[i]);
  }
  void store(float* out) const {
#pragma GCC unroll 16
    for (int i = 0; i < N; ++i) vstore(out + i * kLanes, v[i]);
  }
};
#endif

// acc[0:dim) += row[0:dim) in memory (a shard's or a streamed item's per-sample sums); DIM > 0 fixes the width.
template <typename T, int DIM>
inline void add_row(float* __restrict acc, const T* __restrict row, int64_t dim) {
#if EMBMAP_VECTOR
  if constexpr (kVectorized<DIM>) {
#pragma GCC unroll 16
    for (int i = 0; i < DIM; i += kLanes) vstore(acc + i, vadd(vload(acc + i), vload(row + i)));
    return;
  }
#endif
  if constexpr (DIM > 0) {
#pragma GCC unroll 16
    for (int d = 0; d < DIM; ++d) acc[d] += as_float(row[d]);
  } else {
    for (int64_t d = 0; d < dim; ++d) acc[d] += as_float(row[d]);
  }
}

inline void prefetch_row(const char* row, int64_t row_bytes) {
  for (int64_t o = 0; o < row_bytes; o += kLineBytes) __builtin_prefetch(row + o, 0, 3);
}

// The same with the row's width fixed at compile time: one prefetch per line, no loop.
template <typename T, int DIM>
inline void prefetch_row(const char* row, int64_t row_bytes) {
  if constexpr (DIM > 0) {
    constexpr int64_t bytes = int64_t(DIM) * int64_t(sizeof(T));
#pragma GCC unroll 8
    for (int64_t o = 0; o < bytes; o += kLineBytes) __builtin_prefetch(row + o, 0, 3);
  } else {
    prefetch_row(row, row_bytes);
  }
}

// Pool each sample's rows into dst[s - s0]: the whole-rows kernel (GM from the shared table, L1 from the
// replica). While lookup k is accumulated (in registers where DIM is fixed), every line of the row of lookup
// k + kPrefetchLookups is prefetched: a core then keeps many row reads in flight, which is what a gather from
// main memory needs. With U > 1 a bag's lookups go U at a time into U sums: U independent chains of adds, so
// a row late to arrive holds up one chain while the others go on (one chain was 1.5x slower per lookup on a
// table in main memory at pooling 200). Only bags of at least U lookups take that path. This is the version
// for any width; widths of whole vector registers run gather_bags_vec below, the same loop on Sum<DIM>.
template <typename T, int DIM, int U, typename O>
void gather_bags(const ItemState& st, const int64_t* idx, O offs, float* __restrict dst) {
  const Item& it = *st.item;
  const int64_t dim = DIM > 0 ? DIM : st.table->dim, rb = st.table->row_bytes;
  const int64_t dist = kPrefetchLookups, first = offs[it.s0], last = offs[it.s1];
  const int64_t r0 = it.r0;  // lookups name rows of the table; `base` is its row r0
  const T* base = reinterpret_cast<const T*>(st.base);
  const char* bytes = st.base;
  // The last kPrefetchLookups lookups prefetch nothing: every lookup below `stop` prefetches without a test.
  const int64_t stop = std::max(first, last - dist);
  for (int64_t k = first; k < std::min(last, first + dist); ++k) prefetch_row<T, DIM>(bytes + (idx[k] - r0) * rb, rb);
  alignas(64) float acc[U][DIM > 0 ? DIM : 1];
  for (int64_t s = it.s0; s < it.s1; ++s) {
    float* out = dst + (s - it.s0) * dim;
    float* a = DIM > 0 ? acc[0] : out;
    for (int64_t d = 0; d < dim; ++d) a[d] = 0.0f;
    int64_t k = offs[s];
    const int64_t end = offs[s + 1];
    if constexpr (U > 1) {
      for (int u = 1; u < U; ++u)
        for (int d = 0; d < DIM; ++d) acc[u][d] = 0.0f;
      for (; k + U <= std::min(end, stop); k += U)
        for (int u = 0; u < U; ++u) {
          prefetch_row<T, DIM>(bytes + (idx[k + u + dist] - r0) * rb, rb);
          add_row<T, DIM>(acc[u], base + (idx[k + u] - r0) * dim, dim);
        }
      for (; k + U <= end; k += U)
        for (int u = 0; u < U; ++u) add_row<T, DIM>(acc[u], base + (idx[k + u] - r0) * dim, dim);
      for (int u = 1; u < U; ++u)
        for (int d = 0; d < DIM; ++d) acc[0][d] += acc[u][d];
    }
    for (; k < end; ++k) {
      if (k < stop) prefetch_row<T, DIM>(bytes + (idx[k + dist] - r0) * rb, rb);
      add_row<T, DIM>(a, base + (idx[k] - r0) * dim, dim);
    }
    if constexpr (DIM > 0)
      for (int d = 0; d < DIM; ++d) out[d] = acc[0][d];
  }
}

#if EMBMAP_VECTOR
// gather_bags with each bag's U sums in vector registers (Sum<DIM>), for widths of whole registers.
template <typename T, int DIM, int U, typename O>
void gather_bags_vec(const ItemState& st, const int64_t* idx, O offs, float* __restrict dst) {
  const Item& it = *st.item;
  const int64_t rb = st.table->row_bytes, dist = kPrefetchLookups, first = offs[it.s0], last = offs[it.s1];
  const int64_t r0 = it.r0;
  const T* base = reinterpret_cast<const T*>(st.base);
  const char* bytes = st.base;
  const int64_t stop = std::max(first, last - dist);
  for (int64_t k = first; k < std::min(last, first + dist); ++k) prefetch_row<T, DIM>(bytes + (idx[k] - r0) * rb, rb);
  for (int64_t s = it.s0; s < it.s1; ++s) {
    Sum<DIM> acc[U];
#pragma GCC unroll 8
    for (int u = 0; u < U; ++u) acc[u].zero();
    int64_t k = offs[s];
    const int64_t end = offs[s + 1];
    if constexpr (U > 1) {
      for (; k + U <= std::min(end, stop); k += U) {
#pragma GCC unroll 8
        for (int u = 0; u < U; ++u) {
          prefetch_row<T, DIM>(bytes + (idx[k + u + dist] - r0) * rb, rb);
          acc[u].add(base + (idx[k + u] - r0) * DIM);
        }
      }
      for (; k + U <= end; k += U) {
#pragma GCC unroll 8
        for (int u = 0; u < U; ++u) acc[u].add(base + (idx[k + u] - r0) * DIM);
      }
#pragma GCC unroll 8
      for (int u = 1; u < U; ++u) acc[0].add(acc[u]);
    }
    for (; k < end; ++k) {
      if (k < stop) prefetch_row<T, DIM>(bytes + (idx[k + dist] - r0) * rb, rb);
      acc[0].add(base + (idx[k] - r0) * DIM);
    }
    acc[0].store(dst + (s - it.s0) * DIM);
  }
}
#endif

template <typename T, int DIM, typename O>
void gather(const ItemState& st, const int64_t* idx, O offs, float* dst) {
  constexpr int U = DIM > 0 && DIM <= 64 ? 4 : DIM > 0 ? 2 : 1;  // U sums of 128 floats fill the registers at 2
#if EMBMAP_VECTOR
  if constexpr (kVectorized<DIM>) {
    if (U > 1 && st.table->pooling >= U)
      gather_bags_vec<T, DIM, U, O>(st, idx, offs, dst);
    else
      gather_bags_vec<T, DIM, 1, O>(st, idx, offs, dst);
    return;
  }
#endif
  if (U > 1 && st.table->pooling >= U)
    gather_bags<T, DIM, U, O>(st, idx, offs, dst);
  else
    gather_bags<T, DIM, 1, O>(st, idx, offs, dst);
}

// A row shard's kernel: first keep the lookups in its rows (written without a branch, so that a random share
// of lookups outside does not mispredict), then add each kept row into its sample's partial sum, prefetching
// kPrefetchLookups kept rows ahead.
template <typename T, int DIM, typename O>
void gather_shard(const ItemState& st, const int64_t* idx, O offs, float* __restrict dst) {
  const Item& it = *st.item;
  const int64_t dim = DIM > 0 ? DIM : st.table->dim, rb = st.table->row_bytes;
  const uint64_t nrows = uint64_t(it.r1 - it.r0);
  int32_t* rows = static_cast<int32_t*>(st.bucket_rows->ptr);
  int32_t* bags = static_cast<int32_t*>(st.bucket_bags->ptr);
  int64_t n = 0;
  for (int64_t s = it.s0; s < it.s1; ++s)
    for (int64_t k = offs[s]; k < offs[s + 1]; ++k) {
      const uint64_t u = uint64_t(idx[k] - it.r0);
      rows[n] = int32_t(u);
      bags[n] = int32_t(s - it.s0);
      n += u < nrows;
    }
  std::memset(dst, 0, sizeof(float) * dim * (it.s1 - it.s0));
  const T* base = reinterpret_cast<const T*>(st.base);
  const int64_t dist = kPrefetchLookups;
  for (int64_t j = 0; j < std::min(n, dist); ++j) prefetch_row<T, DIM>(st.base + int64_t(rows[j]) * rb, rb);
  for (int64_t j = 0; j < n; ++j) {
    if (j + dist < n) prefetch_row<T, DIM>(st.base + int64_t(rows[j + dist]) * rb, rb);
    add_row<T, DIM>(dst + int64_t(bags[j]) * dim, base + int64_t(rows[j]) * dim, dim);
  }
}

// The streamed kernels: bucket the item's lookups by chunk, stream every chunk of its rows through the
// scratch buffer, gather each chunk's lookups from there.
template <typename T, int DIM, typename O>
void stream(const ItemState& st, const int64_t* idx, O offs, float* __restrict dst) {
  const Item& it = *st.item;
  const int64_t dim = st.table->dim, rb = st.table->row_bytes;
  const int64_t nrows = it.r1 - it.r0, r0 = it.r0, chunk = st.chunk_rows, n_chunks = st.n_chunks;
  int64_t* counts = static_cast<int64_t*>(st.counts->ptr);  // n_chunks + 1
  int32_t* rows = static_cast<int32_t*>(st.bucket_rows->ptr);
  int32_t* bags = static_cast<int32_t*>(st.bucket_bags->ptr);
  std::memset(counts, 0, sizeof(int64_t) * (n_chunks + 1));
  const int64_t first = offs[it.s0], last = offs[it.s1];
  for (int64_t k = first; k < last; ++k) {
    const uint64_t u = uint64_t(idx[k] - r0);
    if (u < uint64_t(nrows)) ++counts[int64_t(u) / chunk + 1];
  }
  for (int64_t c = 0; c < n_chunks; ++c) counts[c + 1] += counts[c];
  for (int64_t s = it.s0; s < it.s1; ++s)
    for (int64_t k = offs[s]; k < offs[s + 1]; ++k) {
      const uint64_t u = uint64_t(idx[k] - r0);
      if (u >= uint64_t(nrows)) continue;
      const int64_t c = int64_t(u) / chunk;
      const int64_t at = counts[c]++;
      rows[at] = int32_t(int64_t(u) - c * chunk);
      bags[at] = int32_t(s - it.s0);
    }
  // counts[c] now holds the end of chunk c's bucket; chunk c's bucket starts where chunk c - 1's ends.
  std::memset(dst, 0, sizeof(float) * dim * (it.s1 - it.s0));
  T* scratch = static_cast<T*>(st.scratch->ptr);
  int64_t begin = 0;
  for (int64_t c = 0; c < n_chunks; ++c) {
    const int64_t lo = c * chunk, n = std::min(chunk, nrows - lo);
    std::memcpy(scratch, st.base + lo * rb, size_t(n * rb));
    const int64_t end = counts[c];
    for (int64_t j = begin; j < end; ++j) add_row<T, DIM>(dst + int64_t(bags[j]) * dim, scratch + int64_t(rows[j]) * dim, dim);
    begin = end;
  }
}

template <typename T, int DIM, typename O>
void run_kernel(const ItemState& st, const int64_t* idx, O offs, float* dst) {
  if (st.item->strategy == GM_UB || st.item->strategy == L1_UB)
    stream<T, DIM, O>(st, idx, offs, dst);
  else if (st.shard)
    gather_shard<T, DIM, O>(st, idx, offs, dst);
  else
    gather<T, DIM, O>(st, idx, offs, dst);
}

template <typename T, typename O>
void dispatch_dim(const ItemState& st, const int64_t* idx, O offs, float* dst) {
  switch (st.table->dim) {
    case 8: return run_kernel<T, 8, O>(st, idx, offs, dst);
    case 16: return run_kernel<T, 16, O>(st, idx, offs, dst);
    case 32: return run_kernel<T, 32, O>(st, idx, offs, dst);
    case 64: return run_kernel<T, 64, O>(st, idx, offs, dst);
    case 128: return run_kernel<T, 128, O>(st, idx, offs, dst);
    default: return run_kernel<T, 0, O>(st, idx, offs, dst);
  }
}

// Add the shards' partial sums into the table's output (the last shard to finish does this).
void combine(Table& t) {
  const int64_t dim = t.dim;
  int64_t lo = INT64_MAX, hi = 0;
  bool same = true;
  for (auto& [s0, s1] : t.partial_samples) {
    same = same && s0 == t.partial_samples[0].first && s1 == t.partial_samples[0].second;
    lo = std::min(lo, s0);
    hi = std::max(hi, s1);
  }
  float* out = t.output + lo * dim;
  const int64_t n = (hi - lo) * dim;
  if (same) {
    std::memcpy(out, t.partials[0], sizeof(float) * n);
    for (size_t k = 1; k < t.partials.size(); ++k) {
      const float* __restrict p = t.partials[k];
      for (int64_t e = 0; e < n; ++e) out[e] += p[e];
    }
    return;
  }
  std::memset(out, 0, sizeof(float) * n);
  for (size_t k = 0; k < t.partials.size(); ++k) {
    const auto [s0, s1] = t.partial_samples[k];
    const float* __restrict p = t.partials[k];
    float* o = t.output + s0 * dim;
    for (int64_t e = 0; e < (s1 - s0) * dim; ++e) o[e] += p[e];
  }
}

void run_item(ItemState& st, int64_t ib) {
  Table& t = *st.table;
  float* dst = st.item->accumulate ? static_cast<float*>(st.partial->ptr) : t.output + st.item->s0 * t.dim;
  if (t.uniform > 0) {  // every sample makes the same lookups: the batch's ids start at ib * batch * P
    const int64_t* idx = t.ids + ib * t.batch * t.uniform;
    if (t.dtype == FP16)
      dispatch_dim<half>(st, idx, UniformOffsets{t.uniform}, dst);
    else
      dispatch_dim<float>(st, idx, UniformOffsets{t.uniform}, dst);
  } else {
    const JaggedOffsets at{t.offsets + ib * (t.batch + 1)};
    if (t.dtype == FP16)
      dispatch_dim<half>(st, t.ids, at, dst);
    else
      dispatch_dim<float>(st, t.ids, at, dst);
  }
  if (st.item->accumulate) {
    // Release our partial; the shard that completes the count acquires them all and combines.
    if (t.arrived.fetch_add(1, std::memory_order_acq_rel) + 1 == t.shards) {
      combine(t);
      t.arrived.store(0, std::memory_order_relaxed);  // no shard of this table runs again before the barrier
    }
  }
}

// ---- barrier ---------------------------------------------------------------------------------------------

long futex(std::atomic<uint32_t>* addr, int op, uint32_t val, const timespec* timeout) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(addr), op, val, timeout, nullptr, 0);
}

// All threads reach phase k before any passes it. A waiter spins `spin_ns`, then sleeps on the futex.
class Barrier {
 public:
  Barrier(uint32_t n, int64_t spin_ns, const std::atomic<bool>* abort) : n_(n), spin_ns_(spin_ns), abort_(abort) {}

  void wait() {
    const uint32_t gen = gen_.load(std::memory_order_acquire);
    if (count_.fetch_add(1, std::memory_order_acq_rel) + 1 == n_) {
      count_.store(0, std::memory_order_relaxed);
      gen_.store(gen + 1, std::memory_order_release);
      if (sleepers_.load(std::memory_order_seq_cst) > 0) futex(&gen_, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr);
      return;
    }
    const int64_t until = now_ns() + spin_ns_;
    for (int spins = 0; gen_.load(std::memory_order_acquire) == gen; ++spins) {
      EMBMAP_PAUSE();
      if ((spins & 255) == 0 && now_ns() > until) break;
    }
    sleepers_.fetch_add(1, std::memory_order_seq_cst);
    const timespec tick{0, 10 * 1000 * 1000};  // wake every 10 ms to notice an abort
    while (gen_.load(std::memory_order_acquire) == gen && !abort_->load(std::memory_order_relaxed))
      futex(&gen_, FUTEX_WAIT_PRIVATE, gen, &tick);
    sleepers_.fetch_sub(1, std::memory_order_seq_cst);
  }

  void release_all() {  // on abort: wake every sleeper so it sees the flag
    gen_.fetch_add(1, std::memory_order_release);
    futex(&gen_, FUTEX_WAKE_PRIVATE, INT_MAX, nullptr);
  }

 private:
  alignas(64) std::atomic<uint32_t> count_{0};
  alignas(64) std::atomic<uint32_t> gen_{0};
  alignas(64) std::atomic<int> sleepers_{0};
  const uint32_t n_;
  const int64_t spin_ns_;
  const std::atomic<bool>* abort_;
};

// ---- the run ---------------------------------------------------------------------------------------------

struct Run {
  std::vector<std::unique_ptr<Table>> tables;
  std::vector<Item> items;
  std::vector<std::vector<int64_t>> order;  // per core: item indices in execution order
  std::vector<int> cpus;
  int64_t warmup, batches, index_batches, scratch_bytes;
  int64_t* starts;    // [warmup + batches, cores]
  int64_t* ends;      // [warmup + batches, cores]
  int64_t* item_ns;   // [warmup + batches, items]
  std::atomic<bool> abort{false};
  std::atomic<int> finished{0};
  std::string error;
  std::atomic<bool> failed{false};
  std::unique_ptr<Barrier> barrier;
};

void fail(Run& run, const std::string& message) {
  bool expected = false;
  if (run.failed.compare_exchange_strong(expected, true)) run.error = message;
  run.abort.store(true);
  run.barrier->release_all();
}

ItemState prepare(Run& run, const Item& it) {
  ItemState st;
  st.item = &it;
  st.table = run.tables[it.table].get();
  const Table& t = *st.table;
  const int64_t nrows = it.r1 - it.r0, samples = it.s1 - it.s0;
  st.shard = nrows != t.rows;
  st.base = t.weights + it.r0 * t.row_bytes;
  if (it.strategy == L1 || it.strategy == L1_UB) {  // the core's private replica, copied before timing
    st.replica = std::make_unique<Aligned>(size_t(nrows * t.row_bytes));
    std::memcpy(st.replica->ptr, st.base, size_t(nrows * t.row_bytes));
    st.base = static_cast<const char*>(st.replica->ptr);
  }
  const bool streamed = it.strategy == GM_UB || it.strategy == L1_UB;
  if (streamed) {
    st.chunk_rows = std::max<int64_t>(1, (run.scratch_bytes / 2) / t.row_bytes);
    st.n_chunks = (nrows + st.chunk_rows - 1) / st.chunk_rows;
    st.scratch = std::make_unique<Aligned>(size_t(std::min(st.chunk_rows, nrows) * t.row_bytes));
    st.counts = std::make_unique<Aligned>(size_t(st.n_chunks + 1) * sizeof(int64_t));
  }
  if (streamed || st.shard) {  // the lookups a streamed item buckets, or a shard keeps: at most its samples' most
    int64_t most = 0;
    for (int64_t b = 0; b < t.index_batches; ++b) {
      const int64_t* offs = t.offsets + b * (t.batch + 1);
      most = std::max(most, offs[it.s1] - offs[it.s0]);
    }
    st.bucket_rows = std::make_unique<Aligned>(size_t(most) * sizeof(int32_t));
    st.bucket_bags = std::make_unique<Aligned>(size_t(most) * sizeof(int32_t));
  }
  if (it.accumulate) {
    st.partial = std::make_unique<Aligned>(size_t(samples * t.dim) * sizeof(float));
    std::memset(st.partial->ptr, 0, size_t(samples * t.dim) * sizeof(float));
  }
  return st;
}

void pin(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0)
    throw std::runtime_error("cannot pin a thread to CPU " + std::to_string(cpu));
}

void core_main(Run& run, int core, std::vector<std::vector<ItemState>>& states) {
  try {
    pin(run.cpus[core]);
    for (int64_t i : run.order[core]) states[core].push_back(prepare(run, run.items[i]));
    // Register this core's partial sums with their tables (under the set-up barrier below).
    for (auto& st : states[core])
      if (st.item->accumulate) {
        static std::mutex register_lock;
        std::lock_guard<std::mutex> g(register_lock);
        st.table->partials.push_back(static_cast<const float*>(st.partial->ptr));
        st.table->partial_samples.emplace_back(st.item->s0, st.item->s1);
      }
  } catch (const std::exception& e) {
    fail(run, "core " + std::to_string(core) + " while building its items: " + e.what());
  }
  run.barrier->wait();  // every core built its replicas and buffers
  const int64_t cores = int64_t(run.cpus.size()), n_items = int64_t(run.items.size());
  auto& mine = states[core];
  for (int64_t b = 0; b < run.warmup + run.batches && !run.abort.load(std::memory_order_relaxed); ++b) {
    const int64_t ib = b % run.index_batches;
    const int64_t start = now_ns();
    int64_t last = start;
    for (auto& st : mine) {
      run_item(st, ib);
      const int64_t t = now_ns();
      run.item_ns[b * n_items + st.item->id] = t - last;
      last = t;
    }
    run.starts[b * cores + core] = start;
    run.ends[b * cores + core] = last;
    run.barrier->wait();
  }
  run.finished.fetch_add(1);
}

template <typename T>
T* data_of(py::array& a, const char* what) {
  if (!(a.flags() & py::array::c_style)) throw std::invalid_argument(std::string(what) + " must be C-contiguous");
  return static_cast<T*>(a.mutable_data());
}

// A table of the run from its arrays: weights [rows, dim], ids int64 [n], offsets int64 [index_batches,
// batch + 1] (absolute into ids), output float32 [batch, dim]. Every offset and id is checked once here, so
// that no kernel reads outside the ids or the table whatever Python handed over.
std::unique_ptr<Table> make_table(py::array w, int dtype, py::array ids, py::array offsets, py::array out) {
  auto t = std::make_unique<Table>();
  if (!ids.dtype().is(py::dtype::of<int64_t>()) || !offsets.dtype().is(py::dtype::of<int64_t>()) || ids.ndim() != 1 ||
      offsets.ndim() != 2 || offsets.shape(1) < 2 || w.ndim() != 2 || out.ndim() != 2)
    throw std::invalid_argument("ids must be int64 [n], offsets int64 [index batches, batch + 1]");
  t->weights = data_of<char>(w, "table weights");
  t->dtype = dtype;
  t->rows = w.shape(0);
  t->dim = w.shape(1);
  t->row_bytes = t->dim * (dtype == FP16 ? 2 : 4);
  t->ids = data_of<int64_t>(ids, "ids");
  t->offsets = data_of<int64_t>(offsets, "offsets");
  t->index_batches = offsets.shape(0);
  t->batch = offsets.shape(1) - 1;
  t->output = data_of<float>(out, "output");
  if (out.shape(0) != t->batch || out.shape(1) != t->dim || !out.dtype().is(py::dtype::of<float>()))
    throw std::invalid_argument("output must be float32 [batch, dim]");
  const int64_t n = ids.shape(0);
  t->uniform = t->index_batches > 0 ? t->offsets[1] - t->offsets[0] : 0;
  for (int64_t b = 0; b < t->index_batches; ++b) {
    const int64_t* o = t->offsets + b * (t->batch + 1);
    for (int64_t s = 0; s < t->batch; ++s) {
      if (o[s] < 0 || o[s] > o[s + 1] || o[s + 1] > n) throw std::invalid_argument("offsets decrease or pass the ids");
      if (o[s] != (b * t->batch + s) * t->uniform || o[s + 1] - o[s] != t->uniform) t->uniform = 0;
    }
  }
  for (int64_t k = 0; k < n; ++k)
    if (uint64_t(t->ids[k]) >= uint64_t(t->rows)) throw std::invalid_argument("an id is outside its table's rows");
  const int64_t lookups = t->offsets[t->index_batches * (t->batch + 1) - 1] - t->offsets[0];
  t->pooling = t->index_batches * t->batch > 0 ? lookups / (t->index_batches * t->batch) : 0;
  return t;
}

// Run the plan. `tables`: per table (weights, ids, offsets, output, dtype code); `items`: int64 [n, 8] of
// (id, table, strategy, r0, r1, s0, s1, accumulate); `order`: per core, item row numbers in execution order;
// `starts`, `ends`: int64 [warmup + batches, cores]; `item_ns`: int64 [warmup + batches, n] (by item id).
void run_plan(py::list tables, py::array_t<int64_t, py::array::c_style> items, py::list order, py::list cpus,
              int64_t warmup, int64_t batches, int64_t index_batches, int64_t scratch_bytes, int64_t spin_ns,
              py::array starts, py::array ends, py::array item_ns) {
  Run run;
  run.warmup = warmup;
  run.batches = batches;
  run.index_batches = index_batches;
  run.scratch_bytes = scratch_bytes;
  for (auto handle : tables) {
    auto spec = handle.cast<py::tuple>();
    auto t = make_table(spec[0].cast<py::array>(), spec[4].cast<int>(), spec[1].cast<py::array>(),
                        spec[2].cast<py::array>(), spec[3].cast<py::array>());
    if (t->index_batches < index_batches) throw std::invalid_argument("fewer index batches than the run cycles through");
    run.tables.push_back(std::move(t));
  }
  auto it = items.unchecked<2>();
  if (items.ndim() != 2 || items.shape(1) != 8) throw std::invalid_argument("items must be int64 [n, 8]");
  for (py::ssize_t i = 0; i < it.shape(0); ++i) {
    Item x{it(i, 0), int(it(i, 1)), int(it(i, 2)), it(i, 3), it(i, 4), it(i, 5), it(i, 6), it(i, 7) != 0};
    if (x.table < 0 || x.table >= int(run.tables.size())) throw std::invalid_argument("item names no table");
    const Table& t = *run.tables[x.table];
    if (x.r0 < 0 || x.r1 > t.rows || x.r0 >= x.r1 || x.s0 < 0 || x.s1 > t.batch || x.s0 >= x.s1)
      throw std::invalid_argument("item " + std::to_string(x.id) + " reads outside its table or batch");
    if (x.id < 0 || x.id >= item_ns.shape(1)) throw std::invalid_argument("item id outside the timing array");
    if (x.accumulate) run.tables[x.table]->shards += 1;
    run.items.push_back(x);
  }
  for (auto core : order) run.order.push_back(core.cast<std::vector<int64_t>>());
  run.cpus = cpus.cast<std::vector<int>>();
  if (run.order.size() != run.cpus.size()) throw std::invalid_argument("one order per CPU");
  run.starts = data_of<int64_t>(starts, "starts");
  run.ends = data_of<int64_t>(ends, "ends");
  run.item_ns = data_of<int64_t>(item_ns, "item_ns");
  const int cores = int(run.cpus.size());
  run.barrier = std::make_unique<Barrier>(uint32_t(cores), spin_ns, &run.abort);

  std::vector<std::vector<ItemState>> states(cores);
  std::vector<std::thread> threads;
  {
    py::gil_scoped_release nogil;
    for (int c = 0; c < cores; ++c) threads.emplace_back(core_main, std::ref(run), c, std::ref(states));
    // Watch for Ctrl-C while the cores run: look at the interpreter's signals every 20 ms.
    while (run.finished.load() < cores) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      if (run.finished.load() >= cores) break;
      py::gil_scoped_acquire gil;
      if (PyErr_CheckSignals() != 0) {
        fail(run, "interrupted");
        {
          py::gil_scoped_release again;
          for (auto& t : threads) t.join();
        }
        throw py::error_already_set();
      }
    }
    for (auto& t : threads) t.join();
  }
  if (run.failed.load()) throw std::runtime_error(run.error);
}

// The same kernel as a one-item plan, called directly in a loop on this thread (pinned to `cpu`): the
// yardstick of the executor's own overhead. Returns each batch's seconds.
py::array_t<double> kernel_loop(py::array weights, int dtype, py::array ids, py::array offsets, py::array output,
                                int strategy, int64_t r0, int64_t r1, int64_t s0, int64_t s1, int64_t scratch_bytes,
                                int cpu, int64_t batches) {
  Run run;
  run.scratch_bytes = scratch_bytes;
  run.tables.push_back(make_table(weights, dtype, ids, offsets, output));
  const Table& t = *run.tables[0];
  if (r0 < 0 || r1 > t.rows || r0 >= r1 || s0 < 0 || s1 > t.batch || s0 >= s1)
    throw std::invalid_argument("the item reads outside its table or batch");
  run.items.push_back(Item{0, 0, strategy, r0, r1, s0, s1, false});
  const int64_t n_index = t.index_batches;
  py::array_t<double> seconds(batches);
  double* out = seconds.mutable_data();
  {
    py::gil_scoped_release nogil;
    std::thread worker([&] {
      try {
        pin(cpu);
        ItemState st = prepare(run, run.items[0]);
        for (int64_t b = 0; b < batches; ++b) {
          const int64_t t0 = now_ns();
          run_item(st, b % n_index);
          out[b] = double(now_ns() - t0) * 1e-9;
        }
      } catch (const std::exception& e) {
        run.error = e.what();
        run.failed.store(true);
      }
    });
    worker.join();
  }
  if (run.failed.load()) throw std::runtime_error(run.error);
  return seconds;
}

// ---- the machine's limits -------------------------------------------------------------------------------

// Run `work(thread, cpu)` on one pinned thread per CPU, all starting together; seconds from the common start
// to the last thread's end.
template <typename Work>
double timed_on_all(const std::vector<int>& cpus, Work work) {
  std::atomic<bool> stop{false};
  Barrier start(uint32_t(cpus.size()) + 1, 1000000000, &stop);
  std::vector<int64_t> ends(cpus.size());
  std::vector<std::thread> threads;
  for (size_t c = 0; c < cpus.size(); ++c)
    threads.emplace_back([&, c] {
      pin(cpus[c]);
      start.wait();
      work(c);
      ends[c] = now_ns();
    });
  start.wait();
  const int64_t began = now_ns();
  for (auto& t : threads) t.join();
  return double(*std::max_element(ends.begin(), ends.end()) - began) * 1e-9;
}

// STREAM's copy on every CPU: each thread copies its slice of `src` into `dst`. Seconds of the best repeat.
double copy_seconds(py::array src, py::array dst, std::vector<int> cpus, int repeats) {
  const char* from = data_of<char>(src, "src");
  char* to = data_of<char>(dst, "dst");
  const int64_t bytes = int64_t(src.nbytes()), n = int64_t(cpus.size());
  double best = 1e30;
  py::gil_scoped_release nogil;
  for (int r = 0; r < repeats; ++r)
    best = std::min(best, timed_on_all(cpus, [&](size_t c) {
      const int64_t lo = bytes * int64_t(c) / n / 64 * 64, hi = c + 1 == size_t(n) ? bytes : bytes * int64_t(c + 1) / n / 64 * 64;
      std::memcpy(to + lo, from + lo, size_t(hi - lo));
    }));
  return best;
}

// Random gather on every CPU: each thread sums the rows its slice of `indices` names (fp32 rows of `table`),
// prefetching every line of the row `prefetch` lookups ahead. Seconds of the best repeat.
double gather_seconds(py::array table, py::array_t<int64_t, py::array::c_style> indices, std::vector<int> cpus,
                      int prefetch, int repeats) {
  const float* base = data_of<float>(table, "table");
  const int64_t dim = table.shape(1), rb = dim * 4, n = indices.size(), threads = int64_t(cpus.size());
  const int64_t* ix = indices.data();
  std::vector<float> sink(size_t(threads) * 16);
  double best = 1e30;
  py::gil_scoped_release nogil;
  for (int r = 0; r < repeats; ++r)
    best = std::min(best, timed_on_all(cpus, [&](size_t c) {
      const int64_t lo = n * int64_t(c) / threads, hi = n * int64_t(c + 1) / threads;
      std::vector<float> acc(size_t(dim), 0.0f);
      for (int64_t k = lo; k < hi; ++k) {
        if (prefetch > 0 && k + prefetch < hi) prefetch_row(reinterpret_cast<const char*>(base + ix[k + prefetch] * dim), rb);
        const float* row = base + ix[k] * dim;
        for (int64_t d = 0; d < dim; ++d) acc[d] += row[d];
      }
      sink[c * 16] = acc[0];  // keeps the sums alive
    }));
  return best;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "embmap's native executor: a plan's work items in compiled code, one pinned thread per core";
  m.def("run_plan", &run_plan);
  m.def("kernel_loop", &kernel_loop);
  m.def("copy_seconds", &copy_seconds);
  m.def("gather_seconds", &gather_seconds);
  m.attr("STRATEGIES") = py::make_tuple("GM", "L1", "GM-UB", "L1-UB");
#if defined(__AVX512F__)
  m.attr("VECTOR_ISA") = "avx512";
#elif defined(__AVX2__)
  m.attr("VECTOR_ISA") = "avx2";
#else
  m.attr("VECTOR_ISA") = "scalar";
#endif
}
