"""The Faust App of riskstream, built from one settings object: the top of the house.

Everything a worker runs is added here, explicitly and in the order the
data flows: the topics, the stats table, the scoring agent (which reads
the feature topic through the transport, scores, stores and acks), the
labels agent (the ground truth that arrives late, stored beside), and the
web views that report on them. ``app/__init__.py`` calls
:func:`create_app` with the environment's settings for ``faust -A app
worker``; nothing below reads the environment itself.
"""

from __future__ import annotations

from agents.labels import add_labels_agent
from agents.metrics import LiveQualityMetrics
from agents.score import add_scoring_agent
from agents.topics import StreamTopics
from app.web import add_web_views
from core.security import kafka_credentials
from core.settings import Settings
from tables.monitor import LiveMonitor
from tables.stats import StreamStats
from transport.driver import RiskstreamApp, broker_url
from transport.overhead import BatchPrometheusMonitor

__all__ = ["create_app"]


def create_app(settings: Settings) -> RiskstreamApp:
    """The worker's App with its topics, stats table, scoring and labels agents and web views."""
    # Faust creates its data directory without parents; the data folder may be new.
    datadir = settings.data_dir / "workers"
    datadir.mkdir(parents=True, exist_ok=True)
    app = RiskstreamApp(
        settings.app_id,
        # riskstream:// selects the transport of transport/driver.py by name.
        broker=broker_url(settings.kafka_bootstrap),
        # SASL/SSL from RISKSTREAM_KAFKA_* (None: PLAINTEXT), as the generator uses them.
        broker_credentials=kafka_credentials(settings),
        # Stats tables are small and rebuilt from their changelog on start.
        store="memory://",
        datadir=str(datadir),
        # Agents, tables and views are added below, not discovered.
        autodiscover=False,
        origin="app",
        topic_partitions=settings.topic_partitions,
        # Faust's own topics (the stats table's changelog, its leader topic)
        # as replicated as the app's; every write waits for the in-sync replicas.
        topic_replication_factor=settings.replication_factor,
        producer_acks=-1,
        # Auto-creation is off on the broker: the app declares its own topics.
        topic_allow_declare=True,
        consumer_auto_offset_reset="earliest",
        # A feature topic created after the worker joined (by the generator, or by
        # this app's own declaration racing the join) is picked up within seconds.
        consumer_metadata_max_age_ms=5_000,
        # Heartbeats run in the consumer's own thread, so a short session only
        # shortens the failover after a crash (Faust's default waits 60 s).
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_commit_interval=settings.commit_interval_s,
        # A stop waits this long at most for records in flight to be stored and acked.
        shutdown_timeout_s=settings.worker_shutdown_timeout_s,
        # Part of the delivery guarantee: a rebalance first waits until every
        # record taken from Kafka is acked, i.e. stored or dead-lettered.
        stream_wait_empty=True,
        web_host=settings.web_host,
        web_bind=settings.web_host,
        web_port=settings.web_port,
    )
    topics = StreamTopics.from_settings(app, settings)
    stats = StreamStats.from_settings(app, settings)
    scoring = add_scoring_agent(app, settings, topics, stats)
    add_labels_agent(app, settings, topics)
    # live quality and drift, computed in ClickHouse over the stored rows
    monitor = LiveMonitor.from_settings(settings, scoring.sinks)
    LiveQualityMetrics(monitor).register()
    add_web_views(
        app, topics, stats, scoring, monitor, faust_metrics=settings.faust_metrics
    )

    if settings.tracemalloc_dir is not None:
        # Diagnosis only (riskstream bench soak --tracemalloc): tracing slows the worker.
        from app.allocations import trace_allocations

        trace_allocations(app, settings.tracemalloc_dir)

    if settings.faust_metrics:
        # Faust's own Prometheus metrics and /metrics page (its sensor's
        # per-record updates batched); riskstream's metrics join the same
        # (default) registry. Without it, app/web.py serves riskstream's alone.
        BatchPrometheusMonitor.install(app, pattern="/metrics")
    return app
