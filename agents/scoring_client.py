"""The client side of the model-server pool: round-robin, bounded, self-healing.

One :class:`ModelServerPool` per worker process owns one aiohttp session
(keep-alive connections to every server) and spreads scoring requests over
the servers in ``RISKSTREAM_MODEL_SERVERS`` in round-robin. Each server
takes at most ``score_requests_per_server`` requests at a time; when every
slot of every server is taken, :meth:`ModelServerPool.score` waits for one,
and since the pipeline bounds the batches in flight, the agent then stops
pulling from Kafka: backpressure instead of unbounded queues.

A server that fails a request (connection refused, timeout, HTTP 5xx, an
answer that is not the documented JSON) leaves the rotation at once and is
probed on its readiness route every ``probe_interval_s`` until it answers;
the failed request is retried on another server. A server that answers,
but slowly, leaves too: each server's latency is averaged (an exponentially
weighted mean over its requests), and one whose mean exceeds ``slow_factor``
times the median of the other servers in rotation, and ``slow_min_s``, is
taken out (never the last one: slowness is relative, an overloaded pool as
a whole is not ejected). Its probe must then also answer within that bound
before it comes back with a fresh mean. If no server is left,
:meth:`score` waits for the probes: a model-server outage pauses the stream
and loses nothing; the pool counts outages and their seconds for /stats.

Two failures are not absorbed but reported, as :class:`RequestRejected`,
so that the pipeline splits the request and dead-letters the offending
rows: a request a server refuses as a whole
(HTTP 4xx other than auth/not-found, which are server-side
misconfiguration), and a poison request, one that servers failed on
(HTTP 5xx, hang-up, timeout) ``SUSPECT_FAILURES`` times while they kept
answering other requests.

The wire contract is the reference's predict API, written down in
:mod:`models.protocol` (``{"instances": [...]}`` in, ``{"predictions":
[...]}`` out, the token header); per-row errors come back in place as
``{"error": ...}``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from mode import Service

from core.security import model_client_ssl
from core.settings import Settings
from models.protocol import (
    EXPLAIN_KEY,
    READY_PATH,
    TOKEN_HEADER,
    RepositoryIndex,
    StatusUnavailable,
    error_reason,
    fetch_status,
    predict_path,
    repository_index_path,
)
from models.records import FeatureSchema

__all__ = [
    "ModelServerPool",
    "PoolError",
    "RequestRejected",
    "ScoredRequest",
    "ServerState",
]

logger = logging.getLogger(__name__)

#: Failures of one request, while other requests succeed, that make it poison.
SUSPECT_FAILURES = 3

#: HTTP statuses that blame the server (or its configuration), not the rows sent.
SERVER_SIDE_4XX = frozenset({401, 403, 404, 408, 429})

#: Weight of the newest request in a server's mean latency (the rest: the older mean).
LATENCY_WEIGHT = 0.2

#: Requests a server must have answered before its mean latency is judged or compared.
LATENCY_SAMPLES = 5


class _NoSchema(Exception):
    """Why one server gave no schema; ``misconfigured`` when it answers without the model."""

    def __init__(self, message: str, *, misconfigured: bool = False) -> None:
        super().__init__(message)
        self.misconfigured = misconfigured


class PoolError(Exception):
    """Base of the pool client's errors."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RequestRejected(PoolError):
    """A model server refused a whole request (HTTP 4xx): the rows, not the server, are at fault."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class ServerFailed(PoolError):
    """One request to one server failed in a way that takes the server out of rotation.

    ``suspect`` is True when the server had the request and failed on it
    (HTTP 5xx, a broken answer, a hang-up or a timeout), as a poison record
    would make it; False when the server could not be reached at all.
    """

    def __init__(self, message: str, suspect: bool, status: int = 0) -> None:
        super().__init__(message)
        self.suspect = suspect
        self.status = status


@dataclass
class ServerState:
    """What the worker knows about one model server; shown in /stats."""

    url: str
    in_rotation: bool = True
    in_flight: int = 0
    requests: int = 0
    rows: int = 0
    failures: int = 0
    ejections: int = 0
    last_error: str = ""
    last_latency_s: float = 0.0
    #: exponentially weighted mean latency of its answered requests, and how many
    mean_latency_s: float = 0.0
    latency_samples: int = 0
    slow_ejections: int = 0
    #: out of rotation for slowness (its probe must be fast, too)
    out_for_slowness: bool = False
    out_since: float | None = None
    out_total_s: float = 0.0

    def observe_latency(self, latency_s: float) -> None:
        if self.latency_samples == 0:
            self.mean_latency_s = latency_s
        else:
            self.mean_latency_s += LATENCY_WEIGHT * (latency_s - self.mean_latency_s)
        self.latency_samples += 1

    def snapshot(self, now: float) -> dict[str, Any]:
        out_for = 0.0 if self.out_since is None else now - self.out_since
        return {
            "url": self.url,
            "in_rotation": self.in_rotation,
            "in_flight_requests": self.in_flight,
            "requests": self.requests,
            "rows": self.rows,
            "failures": self.failures,
            "ejections": self.ejections,
            "slow_ejections": self.slow_ejections,
            "last_error": self.last_error,
            "last_latency_ms": round(self.last_latency_s * 1000.0, 3),
            "mean_latency_ms": round(self.mean_latency_s * 1000.0, 3),
            "out_of_rotation_s": round(self.out_total_s + out_for, 3),
        }


@dataclass(slots=True)
class ScoredRequest:
    """A server's answer to one request: one prediction object per row, in order."""

    predictions: list[Mapping[str, Any]]
    server: str
    latency_s: float
    scored_at_ms: int = field(default=0)


class ModelServerPool(Service):
    """The worker's connection to the model servers (a ``mode`` service: its session lives in the loop)."""

    def __init__(
        self,
        *,
        urls: Sequence[str],
        model_name: str,
        token: str,
        requests_per_server: int,
        timeout_s: float,
        probe_interval_s: float,
        slow_factor: float = 5.0,
        slow_min_s: float = 0.25,
        ssl_context: ssl.SSLContext | bool = True,
        explain: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not urls:
            raise PoolError(
                "no model servers configured (RISKSTREAM_MODEL_SERVERS is empty)"
            )
        self.servers = [ServerState(url) for url in urls]
        self.model_name = model_name
        self._token = token
        self._per_server = max(1, requests_per_server)
        self._timeout_s = timeout_s
        self._probe_interval_s = probe_interval_s
        self._slow_factor = slow_factor
        self._slow_min_s = slow_min_s
        self._ssl = ssl_context
        #: ask for an explanation of every row (RISKSTREAM_EXPLAIN)
        self._explain = explain
        self._next = 0
        self.answered = 0
        #: times no server was left in rotation, and their seconds
        self.outages = 0
        self._outage_since: float | None = None
        self._outage_total_s = 0.0
        self._session: aiohttp.ClientSession | None = None
        self._slot_freed: asyncio.Condition | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **kwargs: Any) -> ModelServerPool:
        """The pool the settings describe (servers, token, limits, latency bound, TLS trust)."""
        return cls(
            urls=settings.model_server_urls,
            model_name=settings.model_name,
            token=settings.model_client_token,
            requests_per_server=settings.score_requests_per_server,
            timeout_s=settings.score_timeout_s,
            probe_interval_s=settings.probe_interval_s,
            slow_factor=settings.score_slow_factor,
            slow_min_s=settings.score_slow_min_ms / 1000.0,
            ssl_context=model_client_ssl(settings),
            explain=settings.explain,
            **kwargs,
        )

    async def on_start(self) -> None:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers[TOKEN_HEADER] = self._token
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=len(self.servers) * self._per_server + len(self.servers),
                keepalive_timeout=30,
                ssl=self._ssl,
            ),
            headers=headers,
            timeout=aiohttp.ClientTimeout(total=self._timeout_s),
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
        )
        self._slot_freed = asyncio.Condition()
        logger.info(
            "model-server pool starting: model %r on %s, %d requests in flight per server",
            self.model_name,
            ", ".join(s.url for s in self.servers),
            self._per_server,
        )

    async def on_stop(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        logger.info(
            "model-server pool stopped: %d requests, %d failures",
            sum(s.requests for s in self.servers),
            sum(s.failures for s in self.servers),
        )

    def snapshot(self) -> list[dict[str, Any]]:
        now = time.monotonic()
        return [server.snapshot(now) for server in self.servers]

    def availability(self) -> dict[str, Any]:
        """The pool as a whole: servers in rotation, outages (none left) and their seconds."""
        ongoing = (
            0.0 if self._outage_since is None else time.monotonic() - self._outage_since
        )
        return {
            "servers": len(self.servers),
            "servers_in_rotation": self.in_rotation,
            "in_outage": self._outage_since is not None,
            "outages": self.outages,
            "outage_s": round(self._outage_total_s + ongoing, 3),
        }

    @property
    def in_rotation(self) -> int:
        return sum(1 for server in self.servers if server.in_rotation)

    async def score(self, instances: Sequence[Mapping[str, float]]) -> ScoredRequest:
        """Score ``instances`` on some server, retrying on others until one answers.

        Server-side failures are absorbed (eject, retry elsewhere, probe). Two
        cases are reported as :class:`RequestRejected`, for the pipeline to
        split the request and dead-letter the rows at fault: a server refuses
        the request itself (HTTP 4xx), or the request is poison: it failed on
        ``SUSPECT_FAILURES`` attempts while other requests kept succeeding
        (when nothing succeeds, it is an outage, and the wait goes on).
        """
        body = orjson.dumps(
            {"instances": instances, EXPLAIN_KEY: True}
            if self._explain
            else {"instances": instances}
        )
        failures = 0
        answered_at_first_failure = 0
        while True:
            server = await self._acquire()
            try:
                answer = await self._post(server, body, len(instances))
            except ServerFailed as failure:
                self._eject(server, failure.message)
                if failure.suspect:
                    if failures == 0:
                        answered_at_first_failure = self.answered
                    failures += 1
                    if (
                        failures >= SUSPECT_FAILURES
                        and self.answered > answered_at_first_failure
                    ):
                        raise RequestRejected(
                            f"model servers failed {failures} times on this request while "
                            f"answering others: {failure.message}",
                            failure.status,
                        ) from None
                continue
            finally:
                await self._release(server)
            self.answered += 1
            server.observe_latency(answer.latency_s)
            self._eject_if_slow(server)
            return answer

    async def fetch_schema(self) -> FeatureSchema:
        """The served model's input schema, from the first server that gives it.

        Waits (probing every ``probe_interval_s``) while no server answers, so
        a worker started before its model servers simply waits for them. A
        server that answers but serves no model of that name is a
        configuration error: it is logged as one, with the names it does
        serve, and the wait goes on (a server may be about to load it).
        """
        attempt = 0
        while True:
            for server in self.servers:
                try:
                    return await self._schema_from(server)
                except _NoSchema as missing:
                    if attempt % 10 == 0:
                        log = logger.error if missing.misconfigured else logger.warning
                        log("%s", missing)
            attempt += 1
            await self.sleep(self._probe_interval_s)
            if self.should_stop:
                raise asyncio.CancelledError()

    async def _schema_from(self, server: ServerState) -> FeatureSchema:
        assert self._session is not None, "pool not started"
        try:
            status = await fetch_status(self._session, server.url, self.model_name)
            schema = FeatureSchema.from_model_status(status, self.model_name)
        except StatusUnavailable as unavailable:
            if unavailable.http_status == 404:
                served = await self._served_names(server)
                raise _NoSchema(
                    f"model server {server.url} serves no model named "
                    f"{self.model_name!r} (RISKSTREAM_MODEL_NAME); it serves: "
                    f"{', '.join(served) or 'nothing'}. Set RISKSTREAM_MODEL_NAME to "
                    "one of them, or start the servers with --served-name "
                    f"{self.model_name}",
                    misconfigured=True,
                ) from None
            raise _NoSchema(
                f"cannot read the model schema from {server.url}: {unavailable.reason}"
            ) from None
        except ValueError as exc:
            raise _NoSchema(f"model schema from {server.url}: {exc}") from None
        logger.info(
            "model %s version %s from %s: %d inputs (%s)",
            schema.model_name,
            schema.model_version,
            server.url,
            len(schema.fields),
            ", ".join(schema.names),
        )
        return schema

    async def _served_names(self, server: ServerState) -> list[str]:
        """The names ``server`` serves (its repository index), or none if it will not say."""
        assert self._session is not None, "pool not started"
        try:
            async with self._session.post(
                f"{server.url}{repository_index_path()}"
            ) as response:
                entries = RepositoryIndex.validate_json(await response.read())
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return []
        return [entry.name for entry in entries]

    async def _acquire(self) -> ServerState:
        assert self._slot_freed is not None, "pool not started"
        count = len(self.servers)
        async with self._slot_freed:
            while True:
                for step in range(count):
                    server = self.servers[(self._next + step) % count]
                    if server.in_rotation and server.in_flight < self._per_server:
                        self._next = (self._next + step + 1) % count
                        server.in_flight += 1
                        return server
                await self._slot_freed.wait()

    async def _release(self, server: ServerState) -> None:
        assert self._slot_freed is not None
        server.in_flight -= 1
        async with self._slot_freed:
            self._slot_freed.notify_all()

    async def _post(self, server: ServerState, body: bytes, rows: int) -> ScoredRequest:
        assert self._session is not None
        url = f"{server.url}{predict_path(self.model_name)}"
        started = time.perf_counter()
        try:
            async with self._session.post(url, data=body) as response:
                payload = await response.read()
                status = response.status
        except aiohttp.ClientConnectorError as exc:
            raise ServerFailed(f"{type(exc).__name__}: {exc}", suspect=False) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise ServerFailed(
                f"{type(exc).__name__}: {exc or 'timeout'}", suspect=True
            ) from None
        latency = time.perf_counter() - started
        server.requests += 1
        server.last_latency_s = latency
        if status != 200:
            reason = f"HTTP {status}: {error_reason(payload)}"
            if 400 <= status < 500 and status not in SERVER_SIDE_4XX:
                raise RequestRejected(
                    f"{server.url} refused the request: {reason}", status
                )
            raise ServerFailed(reason, suspect=status >= 500, status=status)
        try:
            predictions = orjson.loads(payload)["predictions"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise ServerFailed(
                f"answer is not {{'predictions': [...]}}: {payload[:200]!r}",
                suspect=True,
            ) from None
        if not isinstance(predictions, list) or len(predictions) != rows:
            raise ServerFailed(
                f"answered {len(predictions) if isinstance(predictions, list) else 'no'} "
                f"predictions for {rows} rows",
                suspect=True,
            )
        server.rows += rows
        return ScoredRequest(predictions, server.url, latency, int(time.time() * 1000))

    def _eject(self, server: ServerState, reason: str) -> None:
        server.failures += 1
        server.last_error = reason
        self._take_out(server, reason, slow=False)

    def _slow_bound_s(self, server: ServerState) -> float | None:
        """The mean latency above which ``server`` is slow, or None with nothing to compare to."""
        others = [
            other.mean_latency_s
            for other in self.servers
            if other is not server
            and other.in_rotation
            and other.latency_samples >= LATENCY_SAMPLES
        ]
        if not others:
            return None
        return max(self._slow_min_s, self._slow_factor * statistics.median(others))

    def _eject_if_slow(self, server: ServerState) -> None:
        if not server.in_rotation or server.latency_samples < LATENCY_SAMPLES:
            return
        bound = self._slow_bound_s(server)
        if bound is None or server.mean_latency_s <= bound:
            return
        server.slow_ejections += 1
        server.last_error = (
            f"slow: mean latency {server.mean_latency_s * 1000:.0f} ms over the bound of "
            f"{bound * 1000:.0f} ms ({self._slow_factor:g} x the other servers' median, "
            f"at least {self._slow_min_s * 1000:.0f} ms)"
        )
        self._take_out(server, server.last_error, slow=True)

    def _take_out(self, server: ServerState, reason: str, *, slow: bool) -> None:
        if not server.in_rotation:
            return
        server.in_rotation = False
        server.out_for_slowness = slow
        server.ejections += 1
        server.out_since = time.monotonic()
        logger.warning("model server %s out of rotation: %s", server.url, reason)
        if self.in_rotation == 0 and self._outage_since is None:
            self.outages += 1
            self._outage_since = server.out_since
            logger.warning(
                "no model server left in rotation: scoring waits for the probes"
            )
        self.add_future(self._probe(server))

    async def _probe(self, server: ServerState) -> None:
        """Ask ``server`` for readiness until it answers (fast enough, if it left for slowness)."""
        url = f"{server.url}{READY_PATH}"
        while True:
            await self.sleep(self._probe_interval_s)
            # The pool may have stopped during the pause (and closed its session).
            if self.should_stop or self._session is None:
                return
            started = time.perf_counter()
            try:
                async with self._session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        continue
            except (aiohttp.ClientError, TimeoutError, OSError):
                continue
            took_s = time.perf_counter() - started
            bound = self._slow_bound_s(server) or self._slow_min_s
            if not server.out_for_slowness or took_s <= bound:
                break
            server.last_error = (
                f"slow: readiness probe took {took_s * 1000:.0f} ms, over the bound of "
                f"{bound * 1000:.0f} ms"
            )
        assert server.out_since is not None
        now = time.monotonic()
        down_s = now - server.out_since
        server.out_total_s += down_s
        server.out_since = None
        server.latency_samples = 0
        server.mean_latency_s = 0.0
        server.out_for_slowness = False
        server.in_rotation = True
        logger.info("model server %s back in rotation after %.1f s", server.url, down_s)
        if self._outage_since is not None:
            outage_s = now - self._outage_since
            self._outage_total_s += outage_s
            self._outage_since = None
            logger.info("model-server outage over after %.1f s", outage_s)
        assert self._slot_freed is not None
        async with self._slot_freed:
            self._slot_freed.notify_all()
