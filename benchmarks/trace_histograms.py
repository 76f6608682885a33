"""What compressing a profiled trace's histogram costs, and how close a profiled trace comes to the
distribution that generated it: the tables of docs/traces.md.

Usage: python benchmarks/trace_histograms.py [--samples N] [--seed S]

For seeded synthetic traces (mapper.traces.generate), each table's measured counts are turned into the
uncompressed histogram (one bucket per count value) and into histograms of 16 to 256 buckets; the table
prints, per bucket count, the largest difference over the tables in the cost model's LRU hit ratio (caches
of 0.1% to 50% of the rows) and the largest relative difference in expected distinct rows (batches of 1K
to 256K lookups). The second table compares the profiled histogram (64 buckets) with the generating Zipf.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from embmap.ir.distributions import RankHistogram, histogram  # noqa: E402
from embmap.mapper.traces import FeatureSpec, IdCounter, empirical, generate  # noqa: E402

CACHE_SHARES = (0.001, 0.01, 0.05, 0.2, 0.5)
LOOKUPS = (1024, 16_384, 262_144)
BUCKETS = (16, 32, 64, 128, 256)
FEATURES = (
    FeatureSpec("zipf0.8", 20_000, alpha=0.8, pooling=3.0),
    FeatureSpec("zipf1.05", 100_000, alpha=1.05, pooling=8.0, lengths="geometric"),
    FeatureSpec("zipf1.3", 5_000, alpha=1.3, pooling=1.0, lengths="fixed"),
    FeatureSpec("hot+local", 50_000, alpha=0.9, pooling=4.0, hot_ids=5, hot_mass=0.2, locality=0.3),
)


def differences(a: RankHistogram, b: RankHistogram, rows: int) -> tuple[float, float]:
    """(largest |hit-ratio difference| in points, largest relative distinct-rows difference in %)."""
    hit = max(abs(a.lru_hit_ratio(s * rows) - b.lru_hit_ratio(s * rows)) for s in CACHE_SHARES)
    distinct = max(abs(a.expected_distinct(n) / b.expected_distinct(n) - 1.0) for n in LOOKUPS)
    return 100 * hit, 100 * distinct


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    trace = generate(FEATURES, args.samples, 1024, seed=args.seed)
    counts = {}
    for f in FEATURES:
        counter = IdCounter(f.rows)
        counter.add(trace.ids[f.name])
        counts[f.name] = counter.result()
    print(
        f"{args.samples:,} samples, seed {args.seed}; tables: "
        + ", ".join(f"{f.name} ({f.rows:,} rows)" for f in FEATURES)
    )
    print()
    print("| buckets | largest hit-ratio difference (points) | largest distinct-rows difference |")
    print("|---:|---:|---:|")
    for buckets in BUCKETS:
        worst = [
            differences(
                histogram(empirical(counts[f.name], f.rows, buckets), f.rows), counts[f.name].lossless(f.rows), f.rows
            )
            for f in FEATURES
        ]
        print(f"| {buckets} | {max(w[0] for w in worst):.4f} | {max(w[1] for w in worst):.4f}% |")
    print()
    print("| table | lookups per row | profiled vs generating: hit ratio (points) | distinct rows |")
    print("|---|---:|---:|---:|")
    for f in FEATURES:
        if f.hot_ids or f.locality:
            continue  # its generating distribution is not the Zipf alone
        profiled = histogram(empirical(counts[f.name], f.rows, 64), f.rows)
        hit, distinct = differences(profiled, f.generating(), f.rows)
        print(f"| {f.name} | {counts[f.name].lookups / f.rows:.1f} | {hit:.2f} | {distinct:.2f}% |")


if __name__ == "__main__":
    main()
