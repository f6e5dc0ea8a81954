"""The Faust App of riskstream, configured from the one settings object.

Only the App is created here; topics, agents, tables and web views import
it (imports follow the data flow) and are found by autodiscovery from an
explicit list, so that ``faust -A app worker`` loads exactly them.
"""

from __future__ import annotations

from faust.sensors.prometheus import setup_prometheus_sensors

from app.security import kafka_credentials
from app.settings import get_settings
from app.transport import RiskstreamApp

__all__ = ["app"]


#: The modules that register agents, tables and web views on the App.
DISCOVERED_MODULES = ["agents.score", "tables.stats", "app.web"]

settings = get_settings()

# Faust creates its data directory without parents; the data folder may be new.
datadir = settings.data_dir / "workers"
datadir.mkdir(parents=True, exist_ok=True)

# Faust's App with the fast record path (app/transport.py).
app = RiskstreamApp(
    settings.app_id,
    broker=settings.kafka_url,
    # SASL/SSL from RISKSTREAM_KAFKA_* (None: PLAINTEXT), as the generator uses them.
    broker_credentials=kafka_credentials(settings),
    # Stats tables are small and rebuilt from their changelog on start.
    store="memory://",
    datadir=str(datadir),
    autodiscover=DISCOVERED_MODULES,
    origin="app",
    topic_partitions=settings.topic_partitions,
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

if settings.tracemalloc_dir is not None:
    # Diagnosis only (riskstream bench soak --tracemalloc): tracing slows the worker.
    from app.allocations import trace_allocations

    trace_allocations(app, settings.tracemalloc_dir)

if settings.faust_metrics:
    # Faust's own Prometheus sensor and its /metrics page; riskstream's
    # metrics join the same (default) registry. Without it, app/web.py
    # serves riskstream's alone.
    setup_prometheus_sensors(app, pattern="/metrics")
