"""The one settings object of riskstream, read from ``RISKSTREAM_*`` variables.

Every component (stack, trainer, model server, generator, worker, bench)
reads its configuration here and nowhere else, so the README's
configuration table can be checked against a single class. Fields are
grouped by the part of the system they configure; the docstring under each
field is what the README says about it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.topology import Topology, TopologyKind, local_topology

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """riskstream's configuration (12-factor: environment only)."""

    # A validation error must not echo the inputs: they hold the secrets.
    model_config = SettingsConfigDict(
        env_prefix="RISKSTREAM_", extra="ignore", hide_input_in_errors=True
    )

    # --- local stack -------------------------------------------------------
    stack_dir: Path = Path(".stack")
    """Folder holding the local stack's binaries, data, logs and pid files."""

    stack_topology: TopologyKind = "single"
    """Layout of the local stack: single (one Kafka broker, one ClickHouse server) or cluster (three brokers, ZooKeeper, ClickHouse as two shards of two replicas; ports of node k are each base port + 100 k); also sets the clients' defaults below; like `stack up --topology`."""

    kafka_port: int = 9092
    """Port of the local Kafka broker's PLAINTEXT listener."""

    kafka_controller_port: int = 9093
    """Port of the local Kafka KRaft controller listener."""

    clickhouse_port: int = 9000
    """Native-protocol port of ClickHouse (the local stack's, or a remote one)."""

    clickhouse_http_port: int = 8123
    """HTTP port of the local ClickHouse server."""

    clickhouse_interserver_port: int = 9009
    """Port a local ClickHouse replica serves its parts on to the other replica of its shard (cluster topology)."""

    zookeeper_port: int = 2181
    """Client port of the local ZooKeeper that the replicated ClickHouse tables coordinate through (cluster topology)."""

    stack_timeout_s: float = 120.0
    """Seconds a local service may take to answer after start, or to exit after SIGTERM before SIGKILL."""

    stack_services: str = ""
    """Extra local services `riskstream stack up` starts besides Kafka and ClickHouse, comma-separated (postgresql); like `--with`."""

    postgresql_port: int = 5432
    """Port of PostgreSQL (the local stack's, or a remote one); also names its unix socket."""

    # --- Kafka (clients) ---------------------------------------------------
    kafka_bootstrap: str = ""
    """Kafka bootstrap servers, comma-separated host:port; default the local stack's broker(s), 127.0.0.1:<kafka_port> for the single topology."""

    topic_replication_factor: int | None = None
    """Copies of each partition of the topics the app creates (features, dead letters, labels, Faust's own); at least a majority must acknowledge a write (min.insync.replicas); default 1, 3 for the cluster topology."""

    # --- ClickHouse (clients) ----------------------------------------------
    clickhouse_host: str = "127.0.0.1"
    """Host of the ClickHouse server the worker writes to (with RISKSTREAM_CLICKHOUSE_PORT; RISKSTREAM_CLICKHOUSE_HOSTS names several)."""

    clickhouse_hosts: str = ""
    """ClickHouse servers the worker writes to, comma-separated host:port; any live one takes an insert; default <clickhouse_host>:<clickhouse_port>, the four local servers for the cluster topology."""

    clickhouse_cluster: str | None = None
    """ClickHouse cluster (remote_servers) the schema is created ON: replicated tables per shard under a Distributed table; empty: one server; default riskstream for the cluster topology, else empty."""

    clickhouse_database: str = "riskstream"
    """Database holding the predictions table."""

    clickhouse_user: str = "riskstream"
    """ClickHouse user the app connects as (the local stack creates it, allowed on RISKSTREAM_CLICKHOUSE_DATABASE only)."""

    clickhouse_password: SecretStr = SecretStr("")
    """Password of that user (never logged)."""

    # --- stores --------------------------------------------------------------
    sinks: str = "clickhouse"
    """Stores the workers write every prediction to, comma-separated: clickhouse, postgresql or both; a batch is acked once every one has it."""

    # --- PostgreSQL (clients) ----------------------------------------------
    postgresql_host: str = "127.0.0.1"
    """Host of the PostgreSQL server the worker writes to, or the folder of its unix socket (a path starting with /)."""

    postgresql_database: str = "riskstream"
    """PostgreSQL database holding the schema riskstream and its predictions table."""

    postgresql_user: str = "riskstream"
    """PostgreSQL role the app connects as (the local stack creates it with USAGE on the schema and INSERT, SELECT on its table only)."""

    postgresql_password: SecretStr = SecretStr("")
    """Password of that role (never logged)."""

    # --- models --------------------------------------------------------------
    data_dir: Path = Path("data")
    """The project's data folder (model repository, generated artefacts)."""

    model_repository: Path | None = None
    """Model repository folder; default <data_dir>/models."""

    model_token: SecretStr = SecretStr("")
    """Token the model servers require in X-Auth-Token; empty disables auth. Comma-separated tokens: servers accept each, clients send the first (rotation)."""

    # --- model servers ---------------------------------------------------------
    model_server_host: str = "127.0.0.1"
    """Interface the model servers listen on."""

    model_server_port: int = 8501
    """Port of the first model server; replica i of the pool listens on this port + i."""

    model_server_replicas: int = 1
    """Number of model-server processes `riskstream serve` starts."""

    model_max_body_bytes: int = 4 * 1024 * 1024
    """Largest request body (bytes) a model server reads; a larger one gets HTTP 413."""

    model_poll_interval_s: float = 1.0
    """Seconds between two checks of the repository's CURRENT pointer (hot reload)."""

    model_drain_timeout_s: float = 10.0
    """Seconds a model server waits for in-flight requests after SIGTERM before it exits."""

    # --- stream ------------------------------------------------------------
    app_id: str = "riskstream"
    """Faust app id: the workers' consumer group and the prefix of their internal topics."""

    feature_topic: str = "features"
    """Kafka topic the generator writes feature records to and the workers read."""

    dlq_topic: str = "features-dlq"
    """Kafka topic receiving dead letters: records that could not be scored, with the reason."""

    labels_topic: str = "labels"
    """Kafka topic of the ground truth that arrives late: JSON labels keyed by record id, stored by the workers."""

    topic_partitions: int = 4
    """Partitions of the feature topic and of the stats table (the most workers that share the work)."""

    commit_interval_s: float = 2.8
    """Seconds between a worker's offset commits: a crashed worker's successor replays at most this much."""

    worker_session_timeout_s: float = 10.0
    """Seconds without a heartbeat before Kafka hands a dead worker's partitions to the others."""

    web_host: str = "127.0.0.1"
    """Address the worker's web server (/stats, /dashboard, /metrics) binds to and advertises."""

    web_port: int = 6066
    """Port of the worker's web server."""

    faust_metrics: bool = True
    """Export Faust's own per-message Prometheus metrics on /metrics besides riskstream's (added up per record, published at each offset commit)."""

    model_servers: str = "http://127.0.0.1:8501"
    """Model servers the workers call, comma-separated base URLs (round-robin)."""

    model_name: str = "m"
    """Name the workers ask the model servers for, and that riskstream serve serves under unless --served-name says otherwise."""

    batch_max_records: int = 2000
    """Most records a worker takes from Kafka into one batch."""

    batch_max_wait_s: float = 0.05
    """Seconds a worker waits to fill a batch before processing what it has."""

    batches_in_flight: int = 4
    """Batches a worker scores and stores concurrently before it stops pulling from Kafka."""

    score_request_rows: int = 500
    """Most rows in one request to a model server."""

    explain: bool = False
    """Workers ask the model servers why each prediction came out as it did and store it in the `explanation` column (a tree's path, an ensemble's deciding features, a regression's contributions; '' when off)."""

    score_requests_per_server: int = 4
    """Requests a worker keeps in flight to each model server."""

    score_timeout_s: float = 5.0
    """Seconds a model server may take to answer one request before it leaves rotation."""

    probe_interval_s: float = 1.0
    """Seconds between health probes of a model server out of rotation."""

    store_max_rows: int = 20000
    """Most prediction rows in one ClickHouse insert."""

    store_max_wait_s: float = 0.1
    """Seconds rows wait for more rows before they are inserted."""

    retry_max_backoff_s: float = 5.0
    """Longest pause between retries while ClickHouse, Kafka or every model server is down."""

    stats_window_s: int = 60
    """Width of the stats table's tumbling windows, in seconds."""

    stats_retention_s: int = 3600
    """Seconds of stats windows kept (and shown on the dashboard)."""

    quality_refresh_s: float = 10.0
    """Seconds the live quality and drift figures (computed in ClickHouse) are kept before /stats or /metrics recompute them."""

    # --- faults and limits ---------------------------------------------------
    score_slow_factor: float = 5.0
    """A model server whose mean latency exceeds this many times the other servers' (and RISKSTREAM_SCORE_SLOW_MIN_MS) leaves rotation."""

    score_slow_min_ms: float = 250.0
    """Mean request latency (ms) below which no model server counts as slow, however fast the others are."""

    worker_shutdown_timeout_s: float = 8.0
    """Seconds a stopping worker lets its in-flight batches finish (stored, acked, committed); the rest is abandoned unacked."""

    max_record_bytes: int = 65536
    """Largest Kafka record value (bytes) a worker decodes; a larger one is dead-lettered with the reason."""

    record_id_field: str = "record_id"
    """Key of a JSON feature record holding its id; a record without one is known by its Kafka key, else its coordinates."""

    event_time_field: str = "event_time"
    """Key of a JSON feature record holding its event time (epoch seconds or ISO 8601); without one, its Kafka timestamp."""

    model_max_instances: int = 10000
    """Most instances (rows) one request to a model server may hold; more get HTTP 413."""

    # --- diagnostics -----------------------------------------------------------
    tracemalloc_dir: Path | None = None
    """Folder where a worker writes, every minute, the allocation sites whose memory grew most since its first minute (tracemalloc; slows the worker); unset: no tracing."""

    # --- security --------------------------------------------------------------
    model_token_file: Path | None = None
    """File holding the model token(s) instead of RISKSTREAM_MODEL_TOKEN (e.g. a Docker or Kubernetes secret); set one of the two."""

    clickhouse_password_file: Path | None = None
    """File holding the ClickHouse password instead of RISKSTREAM_CLICKHOUSE_PASSWORD; set one of the two."""

    postgresql_password_file: Path | None = None
    """File holding the PostgreSQL password instead of RISKSTREAM_POSTGRESQL_PASSWORD; set one of the two. With neither, the password the local stack generated in <stack_dir>/postgresql/app-password, if there is one."""

    model_tls_cert: Path | None = None
    """PEM certificate (chain) the model servers present; with RISKSTREAM_MODEL_TLS_KEY they serve HTTPS only."""

    model_tls_key: Path | None = None
    """PEM private key of RISKSTREAM_MODEL_TLS_CERT."""

    model_tls_ca: Path | None = None
    """PEM CA bundle the workers and the generator trust for https:// model servers; default: the system's CAs."""

    kafka_security_protocol: Literal[
        "PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"
    ] = "PLAINTEXT"
    """How the workers and the generator talk to Kafka: PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL."""

    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    """SASL mechanism for the SASL_* protocols: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512."""

    kafka_sasl_username: str = ""
    """SASL user name."""

    kafka_sasl_password: SecretStr = SecretStr("")
    """SASL password (never logged)."""

    kafka_sasl_password_file: Path | None = None
    """File holding the SASL password instead of RISKSTREAM_KAFKA_SASL_PASSWORD; set one of the two."""

    kafka_ssl_cafile: Path | None = None
    """PEM CA bundle trusted for the brokers' certificates (SSL, SASL_SSL); default: the system's CAs."""

    kafka_ssl_certfile: Path | None = None
    """PEM client certificate for brokers that require mutual TLS."""

    kafka_ssl_keyfile: Path | None = None
    """PEM private key of RISKSTREAM_KAFKA_SSL_CERTFILE."""

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        topology = self.topology
        if not self.kafka_bootstrap:
            self.kafka_bootstrap = topology.kafka_bootstrap
        if self.topic_replication_factor is None:
            self.topic_replication_factor = topology.replication_factor
        if self.topic_replication_factor < 1:
            raise ValueError("RISKSTREAM_TOPIC_REPLICATION_FACTOR must be at least 1")
        if self.clickhouse_cluster is None:
            self.clickhouse_cluster = topology.clickhouse_cluster
        if not self.clickhouse_hosts:
            self.clickhouse_hosts = (
                topology.clickhouse_hosts
                if self.stack_topology == "cluster"
                else f"{self.clickhouse_host}:{self.clickhouse_port}"
            )
        if not self.clickhouse_addresses:
            raise ValueError("RISKSTREAM_CLICKHOUSE_HOSTS names no server")
        if self.model_repository is None:
            self.model_repository = self.data_dir / "models"
        if (
            not self.postgresql_password.get_secret_value()
            and self.postgresql_password_file is None
            and self.stack_postgresql_password_file.exists()
        ):
            self.postgresql_password_file = self.stack_postgresql_password_file
        for secret, path in _SECRET_FILES.items():
            self._read_secret_file(secret, path)
        if (self.model_tls_cert is None) != (self.model_tls_key is None):
            raise ValueError(
                "set both RISKSTREAM_MODEL_TLS_CERT and RISKSTREAM_MODEL_TLS_KEY, or neither"
            )
        return self

    def _read_secret_file(self, secret: str, path_field: str) -> None:
        """``X_FILE`` (the Docker-secrets convention) fills the secret ``X``; both at once is an error.

        One trailing line break is dropped (editors and ``echo`` add one);
        the file's content is never part of an error message.
        """
        path: Path | None = getattr(self, path_field)
        if path is None:
            return
        variable = f"RISKSTREAM_{secret.upper()}"
        if getattr(self, secret).get_secret_value():
            raise ValueError(f"set {variable} or {variable}_FILE, not both")
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
            raise ValueError(f"{variable}_FILE: cannot read {path}: {reason}") from None
        setattr(self, secret, SecretStr(text.removesuffix("\n").removesuffix("\r")))

    @property
    def model_client_token(self) -> str:
        """The token clients send: the first of RISKSTREAM_MODEL_TOKEN's comma-separated tokens.

        Servers accept every listed token, so during a rotation the servers
        hold ``new,old`` while clients move from ``old`` to ``new``.
        """
        return self.model_token.get_secret_value().split(",", 1)[0].strip()

    @property
    def stack_postgresql_password_file(self) -> Path:
        """Where the local stack keeps the app role's password it generated (none was set)."""
        return self.stack_dir / "postgresql" / "app-password"

    @property
    def topology(self) -> Topology:
        """The local stack's nodes and ports for RISKSTREAM_STACK_TOPOLOGY."""
        return local_topology(
            self.stack_topology,
            kafka_port=self.kafka_port,
            kafka_controller_port=self.kafka_controller_port,
            clickhouse_port=self.clickhouse_port,
            clickhouse_http_port=self.clickhouse_http_port,
            clickhouse_interserver_port=self.clickhouse_interserver_port,
            zookeeper_port=self.zookeeper_port,
        )

    def cluster_beside(self) -> Settings:
        """A cluster-topology stack that can run beside this one: its own folder, every base port + 20.

        The bench and the tests run both topologies in one session; +20
        keeps every node of the cluster (base + 100 k) clear of the single
        stack's ports and of each other.
        """
        return Settings(
            stack_topology="cluster",
            stack_dir=self.stack_dir / "cluster",
            **{field: getattr(self, field) + _BESIDE_SHIFT for field in _STACK_PORTS},
        )

    def stack_env(self) -> dict[str, str]:
        """The ``RISKSTREAM_*`` variables that point a child process at this stack."""
        values: dict[str, object] = {
            "stack_dir": self.stack_dir,
            "stack_topology": self.stack_topology,
            **{field: getattr(self, field) for field in _STACK_PORTS},
        }
        return {
            f"RISKSTREAM_{name.upper()}": str(value) for name, value in values.items()
        }

    @property
    def min_insync_replicas(self) -> int:
        """A majority of RISKSTREAM_TOPIC_REPLICATION_FACTOR: a write survives any minority of brokers lost."""
        return self.replication_factor // 2 + 1

    @property
    def replication_factor(self) -> int:
        """RISKSTREAM_TOPIC_REPLICATION_FACTOR, resolved from the topology when unset."""
        assert self.topic_replication_factor is not None
        return self.topic_replication_factor

    @property
    def topic_config(self) -> dict[str, str]:
        """The topic configs of every topic the app creates (Kafka's names, string values)."""
        return {"min.insync.replicas": str(self.min_insync_replicas)}

    @property
    def clickhouse_addresses(self) -> list[tuple[str, int]]:
        """RISKSTREAM_CLICKHOUSE_HOSTS as (host, port) pairs, in order."""
        addresses = []
        for entry in _names(self.clickhouse_hosts):
            host, separator, port = entry.rpartition(":")
            if not separator or not port.isdigit():
                raise ValueError(
                    f"RISKSTREAM_CLICKHOUSE_HOSTS: {entry!r} is not host:port"
                )
            addresses.append((host, int(port)))
        return addresses

    @property
    def sink_names(self) -> list[str]:
        """RISKSTREAM_SINKS as a list, in order, without blanks or repeats."""
        return _names(self.sinks)

    @property
    def stack_service_names(self) -> list[str]:
        """RISKSTREAM_STACK_SERVICES as a list, in order, without blanks or repeats."""
        return _names(self.stack_services)

    @property
    def model_server_urls(self) -> list[str]:
        """The model servers' base URLs, without trailing slashes."""
        return [
            url.strip().rstrip("/")
            for url in self.model_servers.split(",")
            if url.strip()
        ]

    @property
    def repository_path(self) -> Path:
        assert self.model_repository is not None
        return self.model_repository


#: Secret -> the field naming a file that may hold it instead.
_SECRET_FILES = {
    "model_token": "model_token_file",
    "clickhouse_password": "clickhouse_password_file",
    "postgresql_password": "postgresql_password_file",
    "kafka_sasl_password": "kafka_sasl_password_file",
}


#: The base ports of the local stack's services.
_STACK_PORTS = (
    "kafka_port",
    "kafka_controller_port",
    "clickhouse_port",
    "clickhouse_http_port",
    "clickhouse_interserver_port",
    "zookeeper_port",
)

#: How far :meth:`Settings.cluster_beside` moves each base port.
_BESIDE_SHIFT = 20


def _names(text: str) -> list[str]:
    """Comma-separated names, trimmed and lower-cased, each once, in order."""
    return list(dict.fromkeys(n.strip().lower() for n in text.split(",") if n.strip()))


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()
