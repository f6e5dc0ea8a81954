"""The interface every prediction store implements, and the merging and retrying they share.

A store (ClickHouse, PostgreSQL, ...) is one :class:`Sink` subclass in one
module, registered by name in :mod:`tables.sinks`. The subclass says only
how to talk to its server: connect, create what is missing of its schema
(:meth:`Sink._prepare`), write rows in one statement (:meth:`Sink._insert`),
drop a broken connection, and answer the few queries the rest of riskstream
asks (stored rows, distinct records, rows for analysis). Everything about
*when* to write and *what to do when it fails* lives here, once:

- **Merging.** Callers hand over the rows of one batch and wait:
  :meth:`Sink.write` returns only once the store has acknowledged the
  statement holding those rows (durable: the moment the worker may ack
  their Kafka offsets). Rows of concurrent batches are merged into one
  write, bounded by rows (``max_rows``) and by time (``max_wait_s``), and
  sent at once when no more rows can come (:meth:`Sink.flush_when`): a
  column store merges fewer, larger parts, a row store commits fewer
  transactions, and the stream gets no added latency.
- **Retrying.** A failed write is never reported to the caller: the store
  being down is transient, so the sink drops its connection and retries
  the same rows with capped exponential backoff (:mod:`core.backoff`) until
  it succeeds or the worker stops, in which case the callers' waits are
  cancelled and their offsets stay uncommitted. Repeating a write is safe
  because every store keeps one row per Kafka record (its own way: see
  each implementation). Errors outside :attr:`Sink.transient` (and :func:`core.backoff.worth_retrying`) are permanent or bugs and
  propagate.

Labels (the ground truth that arrives late) go to the same store through
:meth:`Sink.write_labels`, retried the same way but not merged: they come
from one agent, one batch at a time, so its batch is already the write.

Queries (:meth:`Sink.count_rows`, :meth:`Sink.count_records`,
:meth:`Sink.rows`) open a connection of their own and close it, so the
bench, the demo and the tests can ask from any event loop without starting
the service.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

from mode import Service
from mode.utils.locks import Event

from core.backoff import Backoff, retry_until_done
from core.settings import Settings
from tables.predictions import LabelRow, PredictionRow

__all__ = ["FIRST_BACKOFF_S", "WRITE_TIMEOUT_S", "Server", "Sink"]

logger = logging.getLogger(__name__)

#: Seconds one write (or connect + DDL) may take before it is abandoned and retried.
WRITE_TIMEOUT_S = 60.0

#: First pause after a failed write; it doubles up to the configured maximum.
FIRST_BACKOFF_S = 0.1


@dataclass(frozen=True)
class Server:
    """Where a store is and who the sink is there (``host`` may be a socket folder)."""

    host: str
    port: int
    user: str
    password: str = ""
    database: str = "riskstream"
    #: Servers (host:port) tried in turn when ``host`` does not answer (ClickHouse's).
    failover: tuple[str, ...] = ()
    #: The ClickHouse cluster the schema lives on; empty for one server.
    cluster: str = ""

    def __repr__(self) -> str:  # never the password
        return f"Server({self.address}, user {self.user}, database {self.database})"

    @property
    def address(self) -> str:
        """host:port, and the failover servers after it."""
        return ",".join([f"{self.host}:{self.port}", *self.failover])

    @classmethod
    def of(cls, settings: Settings, store: str) -> Server:
        """The server ``RISKSTREAM_<STORE>_HOST``, ``_PORT``, ``_USER``, ``_PASSWORD``, ``_DATABASE`` name."""

        def setting(field: str) -> Any:
            return getattr(settings, f"{store}_{field}")

        return cls(
            host=setting("host"),
            port=setting("port"),
            user=setting("user"),
            password=setting("password").get_secret_value(),
            database=setting("database"),
        )


class Sink(Service, abc.ABC):
    """One prediction store: merged, retried writes; schema set-up; the queries riskstream asks.

    ``server`` says where; ``max_rows`` and ``max_wait_s`` bound a merged
    write; ``max_backoff_s`` is the longest pause between retries.
    """

    #: The name it is registered and chosen by (``RISKSTREAM_SINKS``), e.g. "postgresql";
    #: also the prefix of its settings (``RISKSTREAM_POSTGRESQL_HOST``, ...).
    name: ClassVar[str]
    #: How log lines name the server ("ClickHouse", "PostgreSQL").
    kind: ClassVar[str]
    #: Failures worth a retry: the server, the network, a timeout.
    transient: ClassVar[tuple[type[BaseException], ...]]

    def __init__(
        self,
        server: Server,
        *,
        max_rows: int,
        max_wait_s: float,
        max_backoff_s: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.server = server
        self.database = server.database
        self.address = server.address
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._max_backoff_s = max_backoff_s
        # (rows, future resolved with the stored-at stamp) waiting for the next write
        self._pending: list[tuple[Sequence[PredictionRow], asyncio.Future[int]]] = []
        self._pending_rows = 0
        self._first_pending_at = 0.0
        self._has_pending = Event()
        self._full = Event()
        self._nothing_more_coming: Callable[[], bool] | None = None
        self.rows_inserted = 0
        self.labels_inserted = 0
        self.inserts = 0
        self.failed_inserts = 0
        # One operation at a time on the store's connection: the flush loop's
        # rows, the labels agent's labels and the schema set-up would otherwise
        # meet on it (asyncpg: "another operation is in progress").
        self._connection_lock = asyncio.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, **server: Any) -> Self:
        """The sink as ``settings`` configure it; ``server`` overrides fields of :class:`Server`."""
        configured = Server.of(settings, cls.name)
        return cls(
            Server(**{**configured.__dict__, **server}),
            max_rows=settings.store_max_rows,
            max_wait_s=settings.store_max_wait_s,
            max_backoff_s=settings.retry_max_backoff_s,
        )

    # --- what each store defines ---------------------------------------------

    @property
    @abc.abstractmethod
    def table(self) -> str:
        """The predictions table's qualified name, as operators type it in SQL."""

    @abc.abstractmethod
    async def _prepare(self) -> None:
        """Connect if not connected, and create (only) what is missing of the schema."""

    @abc.abstractmethod
    async def _insert(self, rows: Sequence[PredictionRow], stored_at_ms: int) -> None:
        """Write ``rows`` stamped with ``stored_at_ms`` in one statement; return once durable."""

    @abc.abstractmethod
    async def _disconnect(self) -> None:
        """Drop the connection (after a failure, or at stop); never raises."""

    @abc.abstractmethod
    async def count_rows(self) -> int:
        """Rows stored, replays included if the store keeps them: cheap enough to poll."""

    @abc.abstractmethod
    async def count_records(self) -> int:
        """Distinct Kafka records stored: each record once, however often it was written."""

    @abc.abstractmethod
    async def rows(self, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """``columns`` (names of :data:`tables.predictions.COLUMNS`) of every record, each once."""

    @abc.abstractmethod
    async def _insert_labels(self, rows: Sequence[LabelRow]) -> None:
        """Write label ``rows`` in one statement, keeping one row per label message; return once durable."""

    @abc.abstractmethod
    async def count_labels(self) -> int:
        """Distinct label messages stored: each once, however often it was written."""

    @abc.abstractmethod
    async def labelled(self) -> list[tuple[str, str]]:
        """(record id, latest label) of every stored prediction that has a label, each once."""

    @abc.abstractmethod
    async def shadow_agreement(self) -> list[tuple[str, str, str, int, int, int]]:
        """Per (model, version, shadow version): records, records both scored, both agreed on.

        Each record once, over every stored prediction that had a shadow.
        """

    @abc.abstractmethod
    def analysis_hint(self) -> str:
        """A shell command an operator can paste to look at the predictions (no password in it)."""

    # --- shared behaviour ----------------------------------------------------
    async def write(self, rows: Sequence[PredictionRow]) -> int:
        """Write ``rows``, stamped with the stored-at pair; returns that stamp (epoch ms) once durable.

        Never raises for the store's failures: it waits them out.
        """
        if not rows:
            return int(time.time() * 1000)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if not self._pending:
            self._first_pending_at = time.monotonic()
        self._pending.append((rows, future))
        self._pending_rows += len(rows)
        self._has_pending.set()
        if self._pending_rows >= self._max_rows or self._no_more_rows():
            self._full.set()
        return await future

    async def write_labels(self, rows: Sequence[LabelRow]) -> None:
        """Write label ``rows``; returns once durable, waiting out the store's failures."""
        if not rows:
            return

        await self._store(f"{len(rows)} labels", lambda: self._insert_labels(rows))
        self.labels_inserted += len(rows)

    def flush_when(self, nothing_more_coming: Callable[[], bool]) -> None:
        """Write without waiting for more rows once ``nothing_more_coming()`` is true.

        ``max_wait_s`` lets rows of concurrent batches share a write; but
        once every batch that could add rows has handed its rows over (to
        this sink and every other), waiting longer would only add latency
        and stall the pipeline. The pipeline passes whether every batch in
        flight has reached its store step.
        """
        self._nothing_more_coming = nothing_more_coming

    def _no_more_rows(self) -> bool:
        return self._nothing_more_coming is not None and self._nothing_more_coming()

    async def ensure_schema(self) -> None:
        """Connect and create what is missing of the schema; retried like writes.

        Only missing objects are created, so an app user without DDL rights
        works against a schema the local stack prepared.
        """
        await self._retrying("create the predictions and labels tables", self._prepare)

    async def on_start(self) -> None:
        logger.info(
            "%s sink starting: %s %s, table %s",
            self.name,
            self.kind,
            self.address,
            self.table,
        )

    async def on_stop(self) -> None:
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        await self._disconnect()
        logger.info(
            "%s sink stopped: %d rows in %d writes, %d labels, to %s",
            self.name,
            self.rows_inserted,
            self.inserts,
            self.labels_inserted,
            self.address,
        )

    @Service.task
    async def _flush_loop(self) -> None:
        while not self.should_stop:
            await self.wait_for_stopped(self._has_pending)
            if self.should_stop:
                break
            remaining = self._first_pending_at + self._max_wait_s - time.monotonic()
            if remaining > 0 and self._pending_rows < self._max_rows:
                await self.wait_for_stopped(self._full, timeout=remaining)
            batch, self._pending = self._pending, []
            self._pending_rows = 0
            self._has_pending.clear()
            self._full.clear()
            if batch:
                await self._write_merged(batch)

    async def _write_merged(
        self, batch: list[tuple[Sequence[PredictionRow], asyncio.Future[int]]]
    ) -> None:
        stored_at_ms = int(time.time() * 1000)
        rows = [row for rows, _ in batch for row in rows]

        await self._store(f"{len(rows)} rows", lambda: self._insert(rows, stored_at_ms))
        self.rows_inserted += len(rows)
        self.inserts += 1
        for _, future in batch:
            if not future.done():
                future.set_result(stored_at_ms)

    async def _store(self, what: str, insert: Callable[[], Awaitable[None]]) -> None:
        """Insert ``what`` with ``insert``, (re)connecting first, retried until it is durable."""

        async def connected_insert() -> None:
            await self._prepare()
            await insert()

        await self._retrying(f"insert {what}", connected_insert)

    async def _retrying(
        self, what: str, action: Callable[[], Awaitable[object]]
    ) -> None:
        """Run ``action`` until it succeeds; after each failure drop the connection and back off."""

        async def attempt() -> None:
            async with self._connection_lock:
                await asyncio.wait_for(action(), timeout=WRITE_TIMEOUT_S)

        async def failed() -> None:
            self.failed_inserts += 1
            await self._disconnect()

        await retry_until_done(
            attempt,
            where=f"{self.kind} {self.address}",
            what=what,
            transient=self.transient,
            backoff=Backoff(FIRST_BACKOFF_S, self._max_backoff_s),
            log=logger,
            on_failure=failed,
        )
