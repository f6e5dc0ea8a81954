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

from pydantic import SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    """riskstream's configuration (12-factor: environment only)."""

    model_config = SettingsConfigDict(env_prefix="RISKSTREAM_", extra="ignore")

    # --- local stack -------------------------------------------------------
    stack_dir: Path = Path(".stack")
    """Folder holding the local stack's binaries, data, logs and pid files."""

    kafka_port: int = 9092
    """Port of the local Kafka broker's PLAINTEXT listener."""

    kafka_controller_port: int = 9093
    """Port of the local Kafka KRaft controller listener."""

    clickhouse_port: int = 9000
    """Native-protocol port of ClickHouse (the local stack's, or a remote one)."""

    clickhouse_http_port: int = 8123
    """HTTP port of the local ClickHouse server."""

    stack_timeout_s: float = 120.0
    """Seconds a local service may take to answer after start, or to exit after SIGTERM before SIGKILL."""

    # --- Kafka (clients) ---------------------------------------------------
    kafka_bootstrap: str = ""
    """Kafka bootstrap servers, comma-separated host:port; default 127.0.0.1:<kafka_port>."""

    # --- ClickHouse (clients) ----------------------------------------------
    clickhouse_host: str = "127.0.0.1"
    """Host of the ClickHouse server the worker writes to."""

    clickhouse_database: str = "riskstream"
    """Database holding the predictions table."""

    clickhouse_user: str = "default"
    """ClickHouse user the app connects as."""

    clickhouse_password: SecretStr = SecretStr("")
    """Password of that user (never logged)."""

    # --- models --------------------------------------------------------------
    data_dir: Path = Path("data")
    """The project's data folder (model repository, generated artefacts)."""

    model_repository: Path | None = None
    """Model repository folder; default <data_dir>/models."""

    model_token: SecretStr = SecretStr("")
    """Token the model servers require in X-Auth-Token; empty disables auth."""

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

    @model_validator(mode="after")
    def _derive_defaults(self) -> Settings:
        if not self.kafka_bootstrap:
            self.kafka_bootstrap = f"127.0.0.1:{self.kafka_port}"
        if self.model_repository is None:
            self.model_repository = self.data_dir / "models"
        return self

    @property
    def kafka_url(self) -> str:
        """The broker list in Faust's ``kafka://`` form."""
        return ";".join(f"kafka://{hp.strip()}" for hp in self.kafka_bootstrap.split(","))

    @property
    def repository_path(self) -> Path:
        assert self.model_repository is not None
        return self.model_repository


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once from the environment."""
    return Settings()

