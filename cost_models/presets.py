"""Uncalibrated preset profiles derived from a target's spec-sheet numbers.

Each derivation is written down in `sources`, so a plan says exactly where its predictions come from.
Shared memories' bandwidth is split evenly over the cores (every core busy, as during a batch).
"""

from __future__ import annotations

from embmap.ir.cost_profile import CostProfile
from embmap.ir.spec import TargetSpec

# Per-item launch overheads, which no spec sheet gives. Assumptions until calibrated.
ITEM_FIXED_S = {"ascend910": 1.0e-6, "cpu": 3.0e-6}
DEFAULT_ITEM_FIXED_S = 2.0e-6
INDEX_S = 1.0e-9  # reading and bucketing one 32/64-bit index: a few vector lanes per cycle
DOUBLE_BUFFER_OVERLAP = 0.5
CORE_START_S = 1.0e-6  # a barrier across the cores at the start of a batch
SETUP_S = 0.5e-6  # one pass of vector instructions over an item's indices before its lookups start
PAGE_WALK_ACCESSES = 2  # page-table entries a walk reads, most of them cached
CHUNK_GATHER_S = 50e-9  # issuing one vector gather  # two rows in flight hide half of each row's latency


def preset_profile(target: TargetSpec) -> CostProfile:
    cores = target.cores
    main, cache, local, scratch = target.main, target.shared_cache or target.main, target.local, target.scratch
    main_share = main.bandwidth_bytes_per_s / cores
    cache_share = cache.bandwidth_bytes_per_s / cores
    fixed = ITEM_FIXED_S.get(target.name, DEFAULT_ITEM_FIXED_S)
    sheet = f"{target.name} spec"
    return CostProfile(
        target=target.name,
        calibrated=False,
        item_fixed_s=fixed,
        core_start_s=CORE_START_S,
        main_row_s=main.latency_s * DOUBLE_BUFFER_OVERLAP,
        main_bytes_per_s=main_share,
        cache_row_s=cache.latency_s * DOUBLE_BUFFER_OVERLAP,
        cache_bytes_per_s=cache_share,
        page_walk_cache_s=cache.latency_s * PAGE_WALK_ACCESSES,
        page_walk_main_s=main.latency_s,
        local_row_s=local.latency_s,
        local_bytes_per_s=local.bandwidth_bytes_per_s,
        scratch_row_s=scratch.latency_s,
        scratch_bytes_per_s=scratch.bandwidth_bytes_per_s,
        stream_main_bytes_per_s=main_share,
        stream_local_bytes_per_s=local.bandwidth_bytes_per_s,
        stream_cache_bytes_per_s=cache_share,
        stream_setup_s=SETUP_S,
        chunk_fixed_s=main.latency_s,
        chunk_gather_s=CHUNK_GATHER_S,
        shard_setup_s=SETUP_S,
        index_s=INDEX_S,
        output_bytes_per_s=main_share,
        combine_bytes_per_s=main_share,
        sources={
            "item_fixed_s": f"assumption ({fixed * 1e6:g} us per item launch), uncalibrated",
            "core_start_s": f"assumption ({CORE_START_S * 1e6:g} us per core and batch), uncalibrated",
            "item_evicted_s": "assumption: 0 (an evicted item starts as fast as a warm one), uncalibrated",
            "main_row_s": f"{sheet}: {main.name} latency x {DOUBLE_BUFFER_OVERLAP} (double-buffered)",
            "main_bytes_per_s": f"{sheet}: {main.name} bandwidth / {cores} cores",
            "bag_s": "assumption: 0 (a bag costs only its rows' reads and its output), uncalibrated",
            "main_bag_s": "assumption: 0 (reads overlap across bags as well as within one), uncalibrated",
            "cache_row_s": f"{sheet}: {cache.name} latency x {DOUBLE_BUFFER_OVERLAP} (double-buffered)",
            "cache_bytes_per_s": f"{sheet}: {cache.name} bandwidth / {cores} cores",
            "page_walk_s": "assumption: 0 (a walk costs only the reads of its page-table lines), uncalibrated",
            "page_walk_overlapped_s": "assumption: 0 (a walk costs only the reads of its page-table lines), "
            "uncalibrated",
            "page_walk_cache_s": f"assumption: {PAGE_WALK_ACCESSES} {cache.name} accesses per walk, uncalibrated",
            "page_walk_main_s": f"{sheet}: one {main.name} access (the page-table line the cache does not hold)",
            "local_row_s": f"{sheet}: {local.name} latency",
            "local_bytes_per_s": f"{sheet}: {local.name} bandwidth",
            "scratch_row_s": f"{sheet}: {scratch.name} latency",
            "scratch_bytes_per_s": f"{sheet}: {scratch.name} bandwidth",
            "stream_main_bytes_per_s": f"{sheet}: {main.name} bandwidth / {cores} cores",
            "stream_local_bytes_per_s": f"{sheet}: {local.name} bandwidth",
            "stream_cache_bytes_per_s": f"{sheet}: {cache.name} bandwidth / {cores} cores",
            "stream_setup_s": f"assumption ({SETUP_S * 1e6:g} us per item), uncalibrated",
            "chunk_fixed_s": f"{sheet}: one {main.name} access per chunk",
            "chunk_gather_s": f"assumption ({CHUNK_GATHER_S * 1e9:g} ns per chunk), uncalibrated",
            "shard_setup_s": f"assumption ({SETUP_S * 1e6:g} us per item), uncalibrated",
            "index_s": "assumption (1 ns per index), uncalibrated",
            "output_bytes_per_s": f"{sheet}: {main.name} bandwidth / {cores} cores",
            "combine_bytes_per_s": f"{sheet}: {main.name} bandwidth / {cores} cores",
            "cache_effective_fraction": "assumption: the whole shared cache holds hot rows, uncalibrated",
            "main_window_rows": "assumption: 1 (misses overlap with each other however rare), uncalibrated",
        },
    )
