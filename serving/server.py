"""One model-server process: load the model, listen, hot-reload, drain on SIGTERM.

A replica logs one line when it listens (address, served name, model,
version, evaluator) and one when it has stopped. On SIGTERM or SIGINT it
stops accepting connections, lets the requests in flight finish (up to
``RISKSTREAM_MODEL_DRAIN_TIMEOUT_S``) and exits 0; if it cannot start (the
model does not load, the port is taken, the TLS certificate does not load)
it logs why and exits with :data:`EXIT_START_FAILED`, which tells the pool
supervisor not to retry. With a certificate and key
(``RISKSTREAM_MODEL_TLS_CERT``/``_KEY``) it serves HTTPS only.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import signal
import ssl
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from core.settings import Settings, get_settings
from models.repository import ModelRepository
from serving.api import create_app
from serving.auth import TokenCheck
from serving.errors import ServingError
from serving.loader import (
    FileSource,
    ModelRegistry,
    ModelSource,
    RepositorySource,
    ServedModel,
)
from serving.metrics import ServerMetrics

__all__ = ["EXIT_START_FAILED", "ServerConfig", "run_replica", "serve"]

logger = logging.getLogger(__name__)

#: Exit status of a replica that could not start (bad model, port in use).
EXIT_START_FAILED = 3


@dataclass(frozen=True)
class ServerConfig:
    """Everything a replica needs (picklable: the pool hands it to spawned processes).

    The token is not in here: each process reads it from the environment, so
    it never travels through a pipe or a command line.
    """

    host: str
    port: int
    served_name: str
    #: a repository model (``pmml`` is None) or a stand-alone PMML file
    repository: Path
    model_name: str
    pinned_version: int | None
    pmml: Path | None
    poll_interval_s: float
    drain_timeout_s: float
    max_body_bytes: int
    max_instances: int
    #: PEM certificate chain and key: HTTPS when set (both or neither)
    tls_cert: Path | None = None
    tls_key: Path | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> ServerConfig:
        """Limits, polling and TLS from the settings; ``options`` (the model, port...) as given."""
        values: dict[str, Any] = {
            "host": settings.model_server_host,
            "port": settings.model_server_port,
            "served_name": settings.model_name,
            "repository": settings.repository_path,
            "poll_interval_s": settings.model_poll_interval_s,
            "drain_timeout_s": settings.model_drain_timeout_s,
            "max_body_bytes": settings.model_max_body_bytes,
            "max_instances": settings.model_max_instances,
            "tls_cert": settings.model_tls_cert,
            "tls_key": settings.model_tls_key,
        }
        values.update(options)
        return cls(**values)

    @property
    def address(self) -> str:
        scheme = "https" if self.tls_cert is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context, or None for plain HTTP."""
        if self.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise ServingError(
                f"cannot load the TLS certificate {self.tls_cert} and key {self.tls_key}: "
                f"{getattr(exc, 'strerror', None) or exc}"
            ) from None
        return context

    def source(self) -> ModelSource:
        if self.pmml is not None:
            return FileSource(self.pmml)
        return RepositorySource(
            ModelRepository(self.repository), self.model_name, self.pinned_version
        )


async def serve(config: ServerConfig, token: TokenCheck, stop: asyncio.Event) -> None:
    """Serve until ``stop`` is set, then drain and return."""
    ssl_context = config.ssl_context()
    served = ServedModel(config.served_name, config.source())
    registry = ModelRegistry([served])
    await registry.load_all()
    # Everything alive now (libraries, the model) lives as long as the process:
    # taking it out of the cyclic collector's view keeps its full collections,
    # which would otherwise pause requests for tens of milliseconds, short.
    gc.collect()
    gc.freeze()
    app = create_app(
        registry,
        token=token,
        metrics_=ServerMetrics(),
        max_body_bytes=config.max_body_bytes,
        max_instances=config.max_instances,
    )
    runner = web.AppRunner(
        app,
        handle_signals=False,
        access_log=None,
        shutdown_timeout=config.drain_timeout_s,
    )
    await runner.setup()
    try:
        await web.TCPSite(
            runner, config.host, config.port, ssl_context=ssl_context
        ).start()
        model = served.current
        logger.info(
            "model server listening on %s: %s = model %s version %s (%s evaluator: %s; %s), "
            "auth %s",
            config.address,
            config.served_name,
            model.identity.name,
            model.version,
            model.evaluator.kind,
            getattr(model.evaluator, "description", ""),
            served.source.describe(),
            "on" if token.enabled else "off",
        )
        registry.start_watching(config.poll_interval_s)
        await stop.wait()
        logger.info(
            "model server on %s stopping: draining in-flight requests (up to %.0f s)",
            config.address,
            config.drain_timeout_s,
        )
        await registry.stop_watching()
    finally:
        await runner.cleanup()
    logger.info("model server on %s stopped", config.address)


async def _run(config: ServerConfig, token: TokenCheck) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await serve(config, token, stop)
    except ServingError as exc:
        logger.error("model server on %s cannot start: %s", config.address, exc.message)
        return EXIT_START_FAILED
    except OSError as exc:
        logger.error(
            "model server on %s cannot listen: %s", config.address, exc.strerror or exc
        )
        return EXIT_START_FAILED
    return 0


def run_replica(config: ServerConfig) -> None:
    """A replica process's entry point (also used for a pool of one, in-process)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    # Read here, in each process, so the token never travels through a pipe.
    token = TokenCheck(get_settings().model_token)
    status = asyncio.run(_run(config, token))
    if status:
        sys.exit(status)
