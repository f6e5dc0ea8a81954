"""The prediction writer: batched, retried inserts into ClickHouse with asynch.

Callers hand over the rows of one batch and wait: :meth:`PredictionWriter.store`
returns only once ClickHouse has acknowledged the insert holding those rows,
which is the moment the worker may ack (and later commit) their Kafka
offsets. Rows of several concurrent batches are merged into one insert,
bounded by rows (``store_max_rows``) and by time (``store_max_wait_s``),
and sent at once when every batch in flight waits for it
(:meth:`PredictionWriter.expect_callers`): ClickHouse prefers few large
inserts (its merges cost more CPU than the inserts), the stream wants low
latency.

A failed insert is never reported to the caller: ClickHouse being down is
transient, so the writer reconnects and retries the same rows with capped
exponential backoff until it succeeds or the worker stops, in which case the
callers' waits are cancelled and their offsets stay uncommitted. Repeating
an insert is safe because the table deduplicates by Kafka coordinates
(see :mod:`tables.predictions`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asynch
import asynch.errors
from mode import Service
from mode.utils.locks import Event

from app.backoff import Backoff, retry_until_done
from tables.predictions import PredictionRow, insert_statement, prepare_schema

__all__ = ["PredictionWriter"]

logger = logging.getLogger(__name__)

#: Seconds one insert (or connect + DDL) may take before it is abandoned and retried.
INSERT_TIMEOUT_S = 60.0

#: Failures worth a retry: the server, the network, a timeout. Anything else is
#: a bug in the rows or the code and stops the worker (nothing is acked).
RETRIED_ERRORS = (asynch.errors.Error, OSError, EOFError, TimeoutError)

#: First pause after a failed insert; it doubles up to the configured maximum.
FIRST_BACKOFF_S = 0.1


class PredictionWriter(Service):
    """Owns the ClickHouse connection; merges, inserts and retries prediction rows."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        user: str,
        password: str,
        database: str,
        max_rows: int,
        max_wait_s: float,
        max_backoff_s: float,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._host, self._port, self._user, self._password = host, port, user, password
        self.database = database
        self.address = f"{host}:{port}"
        self._insert_sql = insert_statement(database)
        self._max_rows = max_rows
        self._max_wait_s = max_wait_s
        self._max_backoff_s = max_backoff_s
        self._connection: asynch.Connection | None = None
        # (rows, future resolved with the stored-at stamp) waiting for the next insert
        self._pending: list[tuple[Sequence[PredictionRow], asyncio.Future[int]]] = []
        self._pending_rows = 0
        self._first_pending_at = 0.0
        self._has_pending = Event()
        self._full = Event()
        # callers whose rows are in the insert under way, and how many may call at all
        self._inserting_callers = 0
        self._callers: Callable[[], int] | None = None
        self.rows_inserted = 0
        self.inserts = 0
        self.failed_inserts = 0

    async def store(self, rows: Sequence[PredictionRow]) -> int:
        """Insert ``rows``, stamped with the stored-at pair.

        Returns the stored-at time (epoch ms) stamped on them, once ClickHouse
        has them. Never raises for ClickHouse failures: it waits them out.
        """
        if not rows:
            return int(time.time() * 1000)
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        if not self._pending:
            self._first_pending_at = time.monotonic()
        self._pending.append((rows, future))
        self._pending_rows += len(rows)
        self._has_pending.set()
        if self._pending_rows >= self._max_rows or self._all_callers_wait():
            self._full.set()
        return await future

    def expect_callers(self, callers: Callable[[], int]) -> None:
        """Insert without waiting for more rows once ``callers()`` callers wait for inserts.

        ``max_wait_s`` lets rows of concurrent batches share an insert
        (ClickHouse merges fewer, larger parts); but once every batch that
        could add rows is already waiting, no row can come: waiting longer
        would only add latency and stall the pipeline. The pipeline passes
        how many of its batches are being processed.
        """
        self._callers = callers

    def _all_callers_wait(self) -> bool:
        if self._callers is None:
            return False
        return len(self._pending) + self._inserting_callers >= self._callers()

    async def on_start(self) -> None:
        logger.info(
            "prediction writer starting: ClickHouse %s, table %s.predictions",
            self.address,
            self.database,
        )

    async def on_stop(self) -> None:
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        await self._disconnect()
        logger.info(
            "prediction writer stopped: %d rows in %d inserts to %s",
            self.rows_inserted,
            self.inserts,
            self.address,
        )

    async def ensure_schema(self) -> None:
        """Connect and create what is missing of the database, table and view; retried like inserts.

        Only missing objects are created, so a user without DDL rights works
        against a prepared schema (the local stack's app user).
        """
        await self._retrying("create the predictions table", self._connected)

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
                self._inserting_callers = len(batch)
                try:
                    await self._insert(batch)
                finally:
                    self._inserting_callers = 0

    async def _insert(
        self, batch: list[tuple[Sequence[PredictionRow], asyncio.Future[int]]]
    ) -> None:
        stored_at_ms = int(time.time() * 1000)
        stamp = (stored_at_ms // 1000, stored_at_ms)
        rows = [row + stamp for rows, _ in batch for row in rows]

        async def insert() -> None:
            connection = await self._connected()
            async with connection.cursor() as cursor:
                await cursor.execute(self._insert_sql, rows)

        await self._retrying(f"insert {len(rows)} rows", insert)
        self.rows_inserted += len(rows)
        self.inserts += 1
        for _, future in batch:
            if not future.done():
                future.set_result(stored_at_ms)

    async def _retrying(
        self, what: str, action: Callable[[], Awaitable[object]]
    ) -> None:
        """Run ``action`` until it succeeds; after each failure drop the connection and back off."""

        async def attempt() -> None:
            await asyncio.wait_for(action(), timeout=INSERT_TIMEOUT_S)

        async def failed() -> None:
            self.failed_inserts += 1
            await self._disconnect()

        await retry_until_done(
            attempt,
            where=f"ClickHouse {self.address}",
            what=what,
            retried=RETRIED_ERRORS,
            backoff=Backoff(FIRST_BACKOFF_S, self._max_backoff_s),
            log=logger,
            on_failure=failed,
        )

    async def _connected(self) -> asynch.Connection:
        if self._connection is not None and self._connection.opened:
            return self._connection
        connection = asynch.connect(
            host=self._host,
            port=self._port,
            user=self._user,
            password=self._password,
            # No database: every statement names its own, and the app's user
            # may be confined to it (naming `default` would be refused).
            database="",
        )
        await connection.connect()
        try:
            async with connection.cursor() as cursor:
                for statement in await prepare_schema(cursor, self.database):
                    logger.info("ClickHouse %s: %s", self.address, statement)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection
        return connection

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except RETRIED_ERRORS as exc:  # closing a broken socket may fail too
                logger.debug("closing ClickHouse connection failed: %s", exc)
