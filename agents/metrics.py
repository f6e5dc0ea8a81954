"""riskstream's Prometheus metrics, served beside Faust's on the worker's ``/metrics``.

The pipeline counts per batch, never per record: :class:`StreamMetrics`
accumulates batch outcomes in plain integers and a collector turns them
into metric families when Prometheus scrapes, including the end-to-end
latency histogram built from the same fixed buckets as the stats table.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import (
    REGISTRY,
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from tables.histogram import LATENCY_BUCKETS_MS
from tables.tally import BatchOutcome

__all__ = ["StreamMetrics"]


class StreamMetrics(Collector):
    """Cumulative counters of this worker process, exported as ``riskstream_*``."""

    def __init__(
        self,
        servers: Callable[[], list[dict[str, Any]]],
        pipeline: Callable[[], dict[str, Any]],
    ) -> None:
        self._servers = servers
        self._pipeline = pipeline
        self.received = 0
        self.stored = 0
        self.dead_letters: Counter[str] = Counter()
        self.labels: Counter[str] = Counter()
        self.latency_counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        self.latency_sum_ms = 0.0

    def record_outcome(self, outcome: BatchOutcome) -> None:
        for tally in outcome.partitions.values():
            self.received += tally.received
            self.stored += tally.stored
            self.labels.update(tally.labels)
            self.latency_sum_ms += tally.latency_sum_ms
            for bucket, amount in enumerate(tally.latency_counts):
                self.latency_counts[bucket] += amount
        self.dead_letters.update(outcome.dead_letters_by_stage)

    def register(self) -> None:
        REGISTRY.register(self)

    def collect(self) -> Iterator[Metric]:
        yield CounterMetricFamily(
            "riskstream_records_received",
            "Feature records taken from Kafka.",
            value=self.received,
        )
        yield CounterMetricFamily(
            "riskstream_records_stored",
            "Predictions stored in ClickHouse.",
            value=self.stored,
        )
        dead = CounterMetricFamily(
            "riskstream_dead_letters",
            "Records sent to the dead-letter topic.",
            labels=["stage"],
        )
        for stage, amount in sorted(self.dead_letters.items()):
            dead.add_metric([stage], amount)
        yield dead
        labels = CounterMetricFamily(
            "riskstream_predictions",
            "Stored predictions by predicted label.",
            labels=["label"],
        )
        for label, amount in sorted(self.labels.items()):
            labels.add_metric([label], amount)
        yield labels
        cumulative, buckets = 0, []
        for bound, amount in zip(
            [*(f"{b / 1000:g}" for b in LATENCY_BUCKETS_MS), "+Inf"],
            self.latency_counts,
            strict=True,
        ):
            cumulative += amount
            buckets.append((bound, cumulative))
        yield HistogramMetricFamily(
            "riskstream_end_to_end_latency_seconds",
            "Event time to stored in ClickHouse.",
            buckets=buckets,
            sum_value=self.latency_sum_ms / 1000.0,
        )
        in_rotation = GaugeMetricFamily(
            "riskstream_model_server_in_rotation",
            "1 while the model server is in rotation.",
            labels=["server"],
        )
        requests = CounterMetricFamily(
            "riskstream_model_server_requests",
            "Scoring requests answered.",
            labels=["server"],
        )
        failures = CounterMetricFamily(
            "riskstream_model_server_failures",
            "Failed scoring requests.",
            labels=["server"],
        )
        for server in self._servers():
            in_rotation.add_metric(
                [server["url"]], 1.0 if server["in_rotation"] else 0.0
            )
            requests.add_metric([server["url"]], server["requests"])
            failures.add_metric([server["url"]], server["failures"])
        yield in_rotation
        yield requests
        yield failures
        yield GaugeMetricFamily(
            "riskstream_records_in_flight",
            "Records taken from Kafka and not yet acked.",
            value=self._pipeline().get("records_in_flight", 0),
        )
