"""A fixed-bucket latency histogram that sums across batches, partitions and workers.

Percentiles cannot be averaged, but bucket counts can be added: every batch
counts its records' latencies into the same fixed buckets, the stats table
adds those counts per window and partition, and /stats adds them across
workers before reading p50/p95/p99 off the sum.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Sequence

__all__ = ["LATENCY_BUCKETS_MS", "bucket_counts", "percentile"]


#: Upper bounds (ms, inclusive) of the latency buckets; one more bucket holds the rest.
LATENCY_BUCKETS_MS: tuple[int, ...] = (
    5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200, 250, 300, 400, 500, 750,
    1_000, 1_500, 2_000, 3_000, 5_000, 10_000, 30_000, 60_000, 300_000,
)  # fmt: skip


def bucket_counts(latencies_ms: Iterable[float]) -> list[int]:
    """Counts per bucket (``len(LATENCY_BUCKETS_MS) + 1`` of them) of ``latencies_ms``."""
    counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
    bounds = LATENCY_BUCKETS_MS
    for latency in latencies_ms:
        counts[bisect_left(bounds, latency)] += 1
    return counts


def percentile(counts: Sequence[int], fraction: float) -> float | None:
    """The ``fraction`` quantile (0-1) of a histogram, interpolated inside its bucket.

    None for an empty histogram; a quantile in the overflow bucket reads as
    that bucket's lower bound (the histogram knows no more).
    """
    total = sum(counts)
    if total == 0:
        return None
    rank = fraction * total
    seen = 0
    for index, count in enumerate(counts):
        if count and seen + count >= rank:
            lower = 0 if index == 0 else LATENCY_BUCKETS_MS[index - 1]
            if index == len(LATENCY_BUCKETS_MS):
                return float(lower)
            upper = LATENCY_BUCKETS_MS[index]
            return lower + (upper - lower) * max(0.0, rank - seen) / count
        seen += count
    return float(LATENCY_BUCKETS_MS[-1])
