"""The model server's Prometheus metrics (``GET /metrics``).

Each server process has its own registry, so that every replica of the
pool reports its own figures on its own port and tests can run several
servers in one process. Label values are bounded: model names and versions
come from the server's own registry, never from a request, so a client
cannot create series at will.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["ServerMetrics"]


_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.005,
    0.01,
    0.02,
    0.05,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 16384)


class ServerMetrics:
    """Counters, histograms and gauges of one server process."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "riskstream_model_requests",
            "Scoring requests answered, by model, version and outcome "
            "(ok: every row scored; partial: some rows invalid; invalid: no row scored).",
            ["model", "version", "outcome"],
            registry=self.registry,
        )
        self.rows = Counter(
            "riskstream_model_rows",
            "Rows (instances) received, by model, version and outcome (scored or invalid).",
            ["model", "version", "outcome"],
            registry=self.registry,
        )
        self.errors = Counter(
            "riskstream_model_errors",
            "Errors by kind: a rejected request (bad_request, unauthorized, not_found, "
            "too_large), an invalid row (invalid_row), a failed load, an internal error, "
            "a shadow version that failed to load (shadow_load_failed) or to score a "
            "request (shadow_score_failed; the request was answered without it).",
            ["kind"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "riskstream_model_request_seconds",
            "Time from request received to answer ready, in seconds, by endpoint.",
            ["endpoint"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "riskstream_model_batch_rows",
            "Rows per scoring request.",
            buckets=_BATCH_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "riskstream_model_requests_in_flight",
            "Requests being handled right now.",
            registry=self.registry,
        )
        self.loaded = Gauge(
            "riskstream_model_loaded_version",
            "The version each served model answers with (the value is the version number).",
            ["model"],
            registry=self.registry,
        )
        self.shadow = Gauge(
            "riskstream_model_shadow_version",
            "The shadow version scoring beside each served model (the value is the "
            "version number; 0: no shadow is scoring).",
            ["model"],
            registry=self.registry,
        )

    def count_batch(self, model: str, version: str, scored: int, invalid: int) -> None:
        """Record one answered scoring request of ``scored + invalid`` rows."""
        outcome = "ok" if not invalid else ("partial" if scored else "invalid")
        self.requests.labels(model, version, outcome).inc()
        if scored:
            self.rows.labels(model, version, "scored").inc(scored)
        if invalid:
            self.rows.labels(model, version, "invalid").inc(invalid)
            self.errors.labels("invalid_row").inc(invalid)
        self.batch_rows.observe(scored + invalid)
