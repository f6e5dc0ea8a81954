"""The stats table: one write per metric and batch, per source partition, summed across workers."""

from __future__ import annotations

import time
from collections import Counter
from types import SimpleNamespace

import faust
import pytest

from tables.histogram import LATENCY_BUCKETS_MS
from tables.stats import StreamStats, merge_reports
from tables.tally import BatchOutcome, PartitionTally

WINDOW_S, RETENTION_S = 60.0, 3600.0


@pytest.fixture
def stats() -> StreamStats:
    return StreamStats(
        faust.App("stats-test"),
        window_s=WINDOW_S,
        retention_s=RETENTION_S,
        partitions=4,
    )


def _outcome(
    partition: int, received: int, stored: int, labels: dict[str, int]
) -> BatchOutcome:
    outcome = BatchOutcome()
    tally = PartitionTally(
        received=received,
        stored=stored,
        dead_lettered=received - stored,
        labels=Counter(labels),
    )
    tally.latency_counts[LATENCY_BUCKETS_MS.index(50)] = stored
    tally.latency_sum_ms = 45.0 * stored
    outcome.partitions[partition] = tally
    return outcome


def test_a_key_goes_to_the_changelog_partition_of_its_source_partition(
    stats: StreamStats,
) -> None:
    table = stats.table.table
    assert table.partition_for_key(("3|received", (0.0, 59.9))) == 3
    assert table.partition_for_key("0|label:1") == 0


async def test_batches_add_up_per_partition_and_window(stats: StreamStats) -> None:
    # A table write reaches for the running event loop (its changelog).
    stats.table.table.data.clear()
    stats.record_outcome(_outcome(2, received=10, stored=9, labels={"0": 4, "1": 5}))
    stats.record_outcome(_outcome(2, received=5, stored=5, labels={"1": 5}))
    stats.record_outcome(_outcome(1, received=7, stored=7, labels={"0": 7}))
    only_two = stats.local_report([2])
    assert list(only_two) == ["2"]
    (window,) = only_two["2"].values()
    assert (
        window["received"] == 15
        and window["stored"] == 14
        and window["dead_lettered"] == 1
    )
    assert window["label:0"] == 4 and window["label:1"] == 10
    (start,) = only_two["2"]
    assert int(start) % WINDOW_S == 0


def test_reports_of_several_workers_sum_and_a_doubly_reported_partition_counts_once() -> (
    None
):
    worker_a = {"0": {"600": {"received": 10, "stored": 10, "label:1": 10}}}
    worker_b = {
        "1": {"600": {"received": 5, "stored": 4, "dead_lettered": 1, "label:0": 4}},
        # partition 0 again, from a worker that held it before a rebalance
        "0": {"600": {"received": 3, "stored": 3, "label:1": 3}},
    }
    merged = merge_reports([worker_a, worker_b])
    assert merged == {
        600: {
            "received": 15,
            "stored": 14,
            "label:1": 10,
            "dead_lettered": 1,
            "label:0": 4,
        }
    }


def test_summary_names_units_and_reads_percentiles_off_the_summed_histogram(
    stats: StreamStats,
) -> None:
    bucket = f"latency_bucket:{LATENCY_BUCKETS_MS.index(100)}"
    merged = {
        0: {
            "received": 60,
            "stored": 60,
            "label:1": 60,
            bucket: 60,
            "latency_sum_ms": 5400,
        },
        60: {
            "received": 30,
            "stored": 29,
            "dead_lettered": 1,
            "label:0": 29,
            bucket: 29,
        },
    }
    summary = stats.summarize(merged, now=time.time())
    totals = summary["totals"]
    assert totals["received_records"] == 90 and totals["stored_records"] == 89
    assert totals["dead_lettered_records"] == 1
    assert totals["predicted_label_records"] == {"0": 29, "1": 60}
    assert 75 < totals["latency_p50_ms"] <= 100
    first = summary["windows"][0]
    assert first["start_epoch_s"] == 0 and first["end_epoch_s"] == summary["window_s"]
    assert first["stored_rate_records_per_s"] == 60 / summary["window_s"]


async def test_the_expiry_heap_holds_one_entry_per_window_and_partition_not_per_write(
    stats: StreamStats,
) -> None:
    # Faust's own bookkeeping pushed a window end per table write and kept it
    # for the whole retention: these 200 batches left 1,400 entries behind.
    table = stats.table.table
    table.data.clear()
    table._partition_timestamps.clear()
    table._partition_timestamp_keys.clear()
    for _ in range(200):
        stats.record_outcome(
            _outcome(3, received=10, stored=9, labels={"0": 4, "1": 5})
        )
    windows = [
        end for partition, end in table._partition_timestamp_keys if partition == 3
    ]
    assert sorted(table._partition_timestamps[3]) == sorted(windows)
    assert len(windows) <= 2  # a window boundary may fall inside the loop
    keys = table._partition_timestamp_keys[(3, max(windows))]
    assert {key for key, _ in keys} >= {"3|received", "3|stored", "3|label:1"}


async def test_an_expired_window_leaves_the_table_and_the_expiry_bookkeeping(
    stats: StreamStats, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = stats.table.table
    table.data.clear()
    table._partition_timestamps.clear()
    table._partition_timestamp_keys.clear()
    stats.record_outcome(_outcome(1, received=5, stored=5, labels={"1": 5}))
    assert table.data
    later = time.time() + RETENTION_S + 2 * WINDOW_S
    monkeypatch.setattr(time, "time", lambda: later)
    await table._del_old_keys()
    assert not table.data
    assert not table._partition_timestamps[1]
    assert not table._partition_timestamp_keys


async def test_windows_recovered_from_the_changelog_expire_like_written_ones(
    stats: StreamStats, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Faust's recovery noted no recovered window for expiry: they stayed for good.
    table = stats.table.table
    table.data.clear()
    table._partition_timestamps.clear()
    table._partition_timestamp_keys.clear()
    window_s = WINDOW_S
    start = float(int(time.time()) // window_s * window_s)
    recovered = [
        SimpleNamespace(
            key=[
                f"2|{metric}",
                [start, start + window_s - 0.1],
            ],  # as JSON gives it back
            value=amount,
            message=SimpleNamespace(partition=2, value=str(amount).encode()),
        )
        for metric, amount in (("received", 7), ("stored", 6))
    ]
    table.apply_changelog_batch(recovered)
    assert table.data[("2|received", (start, start + window_s - 0.1))] == 7
    later = time.time() + RETENTION_S + 2 * window_s
    monkeypatch.setattr(time, "time", lambda: later)
    await table._del_old_keys()
    assert not table.data
