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
from tables.monitor import LiveMonitor
from tables.tally import BatchOutcome

__all__ = ["LiveQualityMetrics", "StreamMetrics"]


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


#: The quality figures published as ``riskstream_live_quality{metric=...}``.
QUALITY_METRICS = (
    "labelled_records",
    "accuracy",
    "sensitivity",
    "specificity",
    "roc_auc",
    "brier_score",
)


class LiveQualityMetrics(Collector):
    """Gauges of live quality and drift over the retained windows, from the monitor's last report.

    A scrape is synchronous and must not wait for ClickHouse: it publishes
    the last report (none before the first) and starts a refresh in the
    background when that report is older than the monitor's refresh
    interval.
    """

    def __init__(self, monitor: LiveMonitor) -> None:
        self._monitor = monitor

    def register(self) -> None:
        REGISTRY.register(self)

    def collect(self) -> Iterator[Metric]:
        try:
            self._monitor.refresh_soon()
        except (
            RuntimeError
        ):  # no running loop (a scrape outside the worker): last figures only
            pass
        report = self._monitor.latest or {}
        quality = GaugeMetricFamily(
            "riskstream_live_quality",
            "Live quality of a model version over the retained windows (ratios 0-1; "
            "labelled_records in records), from ClickHouse.",
            labels=["model", "version", "metric"],
        )
        for entry in report.get("quality", []):
            for metric in QUALITY_METRICS:
                value = entry["totals"][metric]
                if value is not None:
                    quality.add_metric(
                        [entry["model"], entry["version"], metric], float(value)
                    )
        yield quality
        feature_psi = GaugeMetricFamily(
            "riskstream_feature_psi",
            "Population stability index of an input's live values against training.",
            labels=["model", "version", "feature"],
        )
        mix_psi = GaugeMetricFamily(
            "riskstream_prediction_mix_psi",
            "Population stability index of the predicted-label mix against the training class mix.",
            labels=["model", "version"],
        )
        records = GaugeMetricFamily(
            "riskstream_drift_records",
            "Stored predictions the drift figures are computed over (records).",
            labels=["model", "version"],
        )
        for entry in report.get("drift", []):
            if not entry["available"]:
                continue
            key = [entry["model"], entry["version"]]
            totals = entry["totals"]
            records.add_metric(key, float(totals["records"]))
            if totals["prediction_mix_psi"] is not None:
                mix_psi.add_metric(key, float(totals["prediction_mix_psi"]))
            for feature, figures in totals["features"].items():
                if figures["psi"] is not None:
                    feature_psi.add_metric([*key, feature], float(figures["psi"]))
        yield feature_psi
        yield mix_psi
        yield records
