"""Live statistics: a windowed Faust table, per source partition, summed on read.

The table ``stats`` counts, per tumbling window of ``stats_window_s`` seconds
(wall-clock time of processing) and per source partition: records received,
stored and dead-lettered, predictions per label, and a fixed-bucket latency
histogram (event time -> stored). Keys are ``"<partition>|<metric>"`` and
each key is written to the changelog partition of its source partition, so
the worker that owns feature partition *p* owns its stats, and a worker
that takes *p* over after a rebalance recovers them from the changelog.

It is updated once per batch and per partition (never per record). Being a
Faust table, it is not transactional with the offset commits: after a crash
the replayed batch is counted again (the ClickHouse table, not this one, is
the record of truth).

Reading: each worker summarises the partitions it is active for
(:meth:`StreamStats.local_report`); ``/stats`` (app/web.py) adds up the
reports of every worker (:func:`merge_reports`), which is correct with any
number of workers since each partition is reported by its one owner.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from heapq import heappush
from typing import Any

import faust
from faust.types import EventT

from core.settings import Settings
from tables.histogram import LATENCY_BUCKETS_MS, percentile
from tables.tally import BatchOutcome

__all__ = ["StreamStats", "merge_reports"]

#: Metric names in the table keys (``<partition>|<metric>``).
RECEIVED, STORED, DEAD = "received", "stored", "dead_lettered"
LABEL_PREFIX, LATENCY_PREFIX, LATENCY_SUM = (
    "label:",
    "latency_bucket:",
    "latency_sum_ms",
)


class SourcePartitionedTable(faust.Table):
    """A table whose keys name the source partition their changelog partition must be.

    Faust picks a changelog partition from the event being processed; the
    stats are written after a batch is stored, outside any event, so the
    partition is read from the key instead.
    """

    def partition_for_key(self, key: Any) -> int | None:
        inner = key[0] if isinstance(key, tuple) else key
        return int(str(inner).split("|", 1)[0])

    def _maybe_set_key_ttl(self, key: Any, partition: int) -> None:
        """Note a written key for expiry; its window's end enters the expiry heap once.

        Faust (0.15.3, ``Collection._maybe_set_key_ttl``) pushes the end of
        the key's window onto the partition's expiry heap on *every* write
        and pops it only when that window expires, so the heap held one
        float per table write of the last ``stats_retention_s`` (up to 20
        writes per batch and partition: 3,800 entries, 120 KiB, a minute at
        500 records/s under tracemalloc), growing for an hour. Here the end is pushed when the window gets
        its first key in the partition (the heap holds one entry per
        window and partition); expiry (``_del_old_keys``) is Faust's, unchanged.
        """
        if not self._should_expire_keys():
            return
        _, (_, range_end) = key
        keys = self._partition_timestamp_keys.get((partition, range_end))
        if keys is None:
            heappush(self._partition_timestamps[partition], range_end)
            keys = self._partition_timestamp_keys[(partition, range_end)] = set()
        latest = self._partition_latest_timestamp
        latest[partition] = max(latest[partition], range_end)
        keys.add(key)

    def apply_changelog_batch(self, batch: Iterable[EventT]) -> None:
        """Recover keys from the changelog and note them for expiry, as a write would.

        Faust's recovery fills the table without noting the keys' windows,
        so every window a worker recovered (at a restart, or taking a
        partition over) stayed in its memory for good, and with it the
        changelog's older windows that Kafka had not deleted yet (it
        deletes whole segments, long after the retention).
        """
        events = list(batch)
        super().apply_changelog_batch(events)
        data = self.data
        for event in events:
            key = self._to_key(event.key)
            if isinstance(key, tuple) and key in data:
                self._maybe_set_key_ttl(key, event.message.partition)


def _wall_clock(event: object = None) -> float:
    return time.time()


class StreamStats:
    """The ``stats`` table of an App: written once per batch, read per worker and summarised."""

    def __init__(
        self, app: faust.App, window_s: float, retention_s: float, partitions: int
    ) -> None:
        self.window_s = window_s
        self.retention_s = retention_s
        self.table = (
            app.tables.add(
                SourcePartitionedTable(
                    app,
                    name="stats",
                    default=int,
                    partitions=partitions,
                    beacon=app.tables.beacon,
                    help="Per-window, per-partition counts of the stream (records, labels, latency).",
                )
            )
            .tumbling(window_s, expires=retention_s)
            # WindowWrapper.relative_to exists; faust's WindowWrapperT stub omits it.
            .relative_to(_wall_clock)  # type: ignore[attr-defined]
        )

    @classmethod
    def from_settings(cls, app: faust.App, settings: Settings) -> StreamStats:
        return cls(
            app,
            window_s=settings.stats_window_s,
            retention_s=settings.stats_retention_s,
            partitions=settings.topic_partitions,
        )

    def record_outcome(self, outcome: BatchOutcome) -> None:
        """Add one batch's tallies to the current window (one table write per changed metric)."""
        table = self.table
        for partition, tally in outcome.partitions.items():
            prefix = f"{partition}|"
            for metric, amount in (
                (RECEIVED, tally.received),
                (STORED, tally.stored),
                (DEAD, tally.dead_lettered),
            ):
                if amount:
                    table[prefix + metric] += amount
            for label, amount in tally.labels.items():
                table[f"{prefix}{LABEL_PREFIX}{label}"] += amount
            for bucket, amount in enumerate(tally.latency_counts):
                if amount:
                    table[f"{prefix}{LATENCY_PREFIX}{bucket}"] += amount
            if tally.stored:
                table[prefix + LATENCY_SUM] += round(tally.latency_sum_ms)

    def local_report(
        self, active_partitions: Iterable[int]
    ) -> dict[str, dict[str, dict[str, float]]]:
        """This worker's windows for the partitions it owns: partition -> window start -> metric -> value."""
        active = {int(partition) for partition in active_partitions}
        oldest = time.time() - self.retention_s
        report: dict[str, dict[str, dict[str, float]]] = {}
        for (key, (start, _end)), value in list(self.table.table.data.items()):
            partition, metric = str(key).split("|", 1)
            if int(partition) not in active or start < oldest:
                continue
            window = report.setdefault(partition, {}).setdefault(str(int(start)), {})
            window[metric] = value
        return report

    def summarize(
        self, merged: Mapping[int, Mapping[str, float]], now: float
    ) -> dict[str, Any]:
        """The ``/stats`` body: totals over the retained windows and one entry per window.

        Every number's unit is in its key (``_records``, ``_ms``, ``_per_s``,
        ``_epoch_s``).
        """
        window_s = self.window_s
        windows: list[dict[str, Any]] = []
        total: dict[str, float] = {}
        for start in sorted(merged):
            metrics = merged[start]
            for metric, value in metrics.items():
                total[metric] = total.get(metric, 0) + value
            elapsed = min(window_s, max(1.0, now - start))
            entry = _figures(metrics)
            entry["start_epoch_s"] = start
            entry["end_epoch_s"] = start + window_s
            entry["received_rate_records_per_s"] = round(
                metrics.get(RECEIVED, 0) / elapsed, 3
            )
            entry["stored_rate_records_per_s"] = round(
                metrics.get(STORED, 0) / elapsed, 3
            )
            windows.append(entry)
        return {
            "window_s": window_s,
            "retention_s": self.retention_s,
            "generated_at_epoch_s": round(now, 3),
            "totals": _figures(total),
            "windows": windows,
        }


def merge_reports(
    reports: Iterable[Mapping[str, Mapping[str, Mapping[str, float]]]],
) -> dict[int, dict[str, float]]:
    """Window start -> metric -> value over every partition of every report.

    A partition reported twice (two workers both claiming it for a moment
    during a rebalance) is counted once, from the report with more records.
    """
    best: dict[str, Mapping[str, Mapping[str, float]]] = {}
    for report in reports:
        for partition, windows in report.items():
            current = best.get(partition)
            if current is None or _received(windows) > _received(current):
                best[partition] = windows
    merged: dict[int, dict[str, float]] = {}
    for windows in best.values():
        for start, metrics in windows.items():
            target = merged.setdefault(int(start), {})
            for metric, value in metrics.items():
                target[metric] = target.get(metric, 0) + value
    return merged


def _received(windows: Mapping[str, Mapping[str, float]]) -> float:
    return sum(metrics.get(RECEIVED, 0) for metrics in windows.values())


def _figures(metrics: Mapping[str, float]) -> dict[str, Any]:
    counts = [
        int(metrics.get(f"{LATENCY_PREFIX}{i}", 0))
        for i in range(len(LATENCY_BUCKETS_MS) + 1)
    ]
    stored = int(metrics.get(STORED, 0))
    labels = {
        metric[len(LABEL_PREFIX) :]: int(value)
        for metric, value in sorted(metrics.items())
        if metric.startswith(LABEL_PREFIX)
    }
    return {
        "received_records": int(metrics.get(RECEIVED, 0)),
        "stored_records": stored,
        "dead_lettered_records": int(metrics.get(DEAD, 0)),
        "predicted_label_records": labels,
        "latency_mean_ms": round(metrics.get(LATENCY_SUM, 0) / stored, 3)
        if stored
        else None,
        "latency_p50_ms": _rounded(percentile(counts, 0.50)),
        "latency_p95_ms": _rounded(percentile(counts, 0.95)),
        "latency_p99_ms": _rounded(percentile(counts, 0.99)),
    }


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
