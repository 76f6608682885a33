"""What a lookup costs when the tables' page tables no longer fit in the shared cache.

One core, PyTorch's embedding_bag over uniform random ids (pooling 100), the same number of lookups into a
table of 256 MiB (its leaf page-table entries, 1/512 of it, stay cached) and of 4 GiB (8 MiB of page-table
entries, which compete with the rows for the shared cache). Both miss the data cache on almost every row, so
the difference is address translation: the cost model's `page_walk_main_s`. Rounds alternate the sizes, and
each size reports the median over rounds of the per-round median.

Usage: python benchmarks/page_walks.py [--rounds N] [--core C]   (needs about 4.5 GiB of free memory)
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

MiB = 1 << 20
LOOKUPS = 102_400
POOLING = 100
CASES = ((256 * MiB, 16), (4096 * MiB, 16), (256 * MiB, 128), (4096 * MiB, 128))


def ns_per_lookup(weights: torch.Tensor, calls: int, generator: torch.Generator) -> float:
    offsets = torch.arange(0, LOOKUPS, POOLING)
    times = []
    for _ in range(calls):
        ids = torch.randint(0, weights.shape[0], (LOOKUPS,), generator=generator)
        start = time.perf_counter()
        torch.nn.functional.embedding_bag(ids, weights, offsets, mode="sum")
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]) / LOOKUPS * 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--core", type=int, default=sorted(os.sched_getaffinity(0))[0])
    args = parser.parse_args()
    torch.set_num_threads(1)
    os.sched_setaffinity(0, {args.core})
    generator = torch.Generator().manual_seed(0)
    results: dict[tuple[int, int], list[float]] = {case: [] for case in CASES}
    for _ in range(args.rounds):
        for size, dim in CASES:
            weights = torch.empty(size // (dim * 4), dim)
            weights.uniform_(generator=generator)  # every page touched before timing
            results[(size, dim)].append(ns_per_lookup(weights, 12, generator))
            del weights
    print(f"one core, embedding_bag, {LOOKUPS:,} uniform lookups per call, {args.rounds} rounds\n")
    print("| table | row bytes | page-table entries | ns per lookup (median of rounds) | rounds |")
    print("|---|---|---|---|---|")
    for (size, dim), values in results.items():
        rounds = ", ".join(f"{v:.0f}" for v in values)
        print(
            f"| {size // MiB:,} MiB | {dim * 4} | {size // 512 // 1024:,} KiB "
            f"| {statistics.median(values):.1f} | {rounds} |"
        )


if __name__ == "__main__":
    main()
