"""Latency percentiles from summed fixed-bucket histograms."""

from __future__ import annotations

from tables.histogram import LATENCY_BUCKETS_MS, bucket_counts, percentile


def test_counts_land_in_the_bucket_whose_bound_covers_them() -> None:
    counts = bucket_counts([0, 5, 6, 10, 99_999_999])
    assert counts[0] == 2  # 0 and 5 (bounds are inclusive)
    assert counts[1] == 2  # 6 and 10
    assert counts[-1] == 1  # beyond the last bound
    assert sum(counts) == 5


def test_percentiles_interpolate_inside_a_bucket() -> None:
    counts = bucket_counts([110.0] * 100)  # all in (100, 150]
    assert percentile(counts, 0.5) == 125.0
    assert percentile(counts, 1.0) == 150.0


def test_histograms_add_up_across_partitions() -> None:
    fast = bucket_counts([4.0] * 99)
    slow = bucket_counts([2_500.0])
    summed = [a + b for a, b in zip(fast, slow, strict=True)]
    median, top = percentile(summed, 0.5), percentile(summed, 1.0)
    assert median is not None and median <= 5
    assert top is not None and 2_000 < top <= 3_000


def test_empty_histogram_has_no_percentile() -> None:
    assert percentile([0] * (len(LATENCY_BUCKETS_MS) + 1), 0.99) is None


def test_overflow_bucket_reads_as_its_lower_bound() -> None:
    counts = bucket_counts([10_000_000.0])
    assert percentile(counts, 0.99) == float(LATENCY_BUCKETS_MS[-1])
