"""The ClickHouse sink: merged, retried inserts into ``<database>.predictions`` with asynch.

One asynch connection over the native protocol; an insert is the rows as
tuples (a :class:`~tables.predictions.PredictionRow` plus the stored-at
pair), no VALUES text, and leaves out the columns that hold their default
in every row of the batch (:func:`~tables.predictions.insert_columns`).
Merging and retrying are the shared :class:`~tables.sink.Sink`'s. Repeating an insert is safe because the table
is a ``ReplacingMergeTree`` on the Kafka coordinates: a record written
twice keeps one row once parts merge, and ``FINAL`` (the view
``predictions_unique``) counts it once before they have (see
:mod:`tables.predictions`).

On a cluster (``RISKSTREAM_CLICKHOUSE_CLUSTER``) the connection goes to the
first of ``RISKSTREAM_CLICKHOUSE_HOSTS`` that answers, and the insert into
the ``Distributed`` table is synchronous (``insert_distributed_sync``): it
returns once a replica of every shard holds its rows, never while they
wait in a local queue of the server that took them, so an acked offset
never points past a row that only one server's disk has seen.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, Self

import asynch
import asynch.errors

from core.settings import Settings
from models.labelled import LabelledExample
from tables.predictions import (
    COLUMNS,
    INSERT_COLUMNS,
    LABELLED_VIEW,
    LABELS_TABLE,
    LabelRow,
    PredictionRow,
    dedup_count_query,
    insert_columns,
    insert_statement,
    label_insert_statement,
    labelled_examples_query,
    prepare_schema,
    quote_identifier,
    shadow_agreement_query,
)
from tables.sink import Server, Sink

__all__ = ["ClickHouseSink"]

logger = logging.getLogger(__name__)


class ClickHouseSink(Sink):
    """Owns the ClickHouse connection; the table deduplicates replays by merging."""

    name = "clickhouse"
    kind = "ClickHouse"
    transient = (asynch.errors.Error, OSError, EOFError)

    def __init__(self, server: Server, **kwargs: Any) -> None:
        super().__init__(server, **kwargs)
        #: insert columns -> (statement, what picks them from a stamped row)
        self._insert_shapes: dict[
            tuple[str, ...], tuple[str, Callable[[tuple[Any, ...]], Any] | None]
        ] = {}
        self._label_insert_sql = label_insert_statement(server.database)
        # On a cluster: synchronous, and (like the reads) to the first live replica
        # of each shard in remote_servers' order, so a read right after an insert
        # sees it instead of a replica still fetching the part.
        self._cluster_settings: dict[str, Any] = (
            {"load_balancing": "in_order"} if server.cluster else {}
        )
        self._insert_settings = (
            {**self._cluster_settings, "insert_distributed_sync": 1}
            if server.cluster
            else {}
        )
        self._connection: asynch.Connection | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **server: Any) -> Self:
        """Every server of RISKSTREAM_CLICKHOUSE_HOSTS, in order, and the cluster."""
        (host, port), *others = settings.clickhouse_addresses
        assert settings.clickhouse_cluster is not None
        return super().from_settings(
            settings,
            **{
                "host": host,
                "port": port,
                "failover": tuple(f"{h}:{p}" for h, p in others),
                "cluster": settings.clickhouse_cluster,
                **server,
            },
        )

    @property
    def table(self) -> str:
        return f"{self.database}.predictions"

    async def _prepare(self) -> None:
        if self._connection is not None and self._connection.opened:
            return
        connection = self._connect()
        await connection.connect()
        try:
            async with connection.cursor() as cursor:
                for statement in await prepare_schema(
                    cursor, self.database, self.server.cluster
                ):
                    logger.info("ClickHouse %s: %s", self.address, statement)
        except BaseException:
            await connection.close()
            raise
        self._connection = connection

    async def _insert(self, rows: Sequence[PredictionRow], stored_at_ms: int) -> None:
        assert self._connection is not None
        stamp = (stored_at_ms // 1000, stored_at_ms)
        statement, pick = self._insert_shape(insert_columns(rows))
        data = (
            [row + stamp for row in rows]
            if pick is None
            else [pick(row + stamp) for row in rows]
        )
        async with self._connection.cursor() as cursor:
            cursor.set_settings(self._insert_settings)
            await cursor.execute(statement, data)

    def _insert_shape(
        self, columns: tuple[str, ...]
    ) -> tuple[str, Callable[[tuple[Any, ...]], Any] | None]:
        """The INSERT of ``columns`` and what picks them from a stamped row (None: all of it)."""
        shape = self._insert_shapes.get(columns)
        if shape is None:
            pick = (
                None
                if columns == INSERT_COLUMNS
                else itemgetter(*(INSERT_COLUMNS.index(c) for c in columns))
            )
            shape = self._insert_shapes[columns] = (
                insert_statement(self.database, columns),
                pick,
            )
        return shape

    async def _insert_labels(self, rows: Sequence[LabelRow]) -> None:
        assert self._connection is not None
        async with self._connection.cursor() as cursor:
            cursor.set_settings(self._insert_settings)
            await cursor.execute(self._label_insert_sql, list(rows))

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                await connection.close()
            except self.transient as exc:  # closing a broken socket may fail too
                logger.debug("closing ClickHouse connection failed: %s", exc)

    def _connect(self) -> asynch.Connection:
        return asynch.connect(
            host=self.server.host,
            port=self.server.port,
            user=self.server.user,
            password=self.server.password,
            alt_hosts=",".join(self.server.failover) or None,
            # No database: every statement names its own, and the app's user
            # may be confined to it (naming `default` would be refused).
            database="",
        )

    async def query(self, query: str) -> list[tuple[Any, ...]]:
        """The rows of ``query``, on a connection of its own (live quality and drift read so)."""
        connection = self._connect()
        await connection.connect()
        try:
            async with connection.cursor() as cursor:
                cursor.set_settings(self._cluster_settings)
                await cursor.execute(query)
                return list(await cursor.fetchall() or [])
        finally:
            await connection.close()

    async def count_rows(self) -> int:
        [(count,)] = await self.query(
            f"SELECT count() FROM {quote_identifier(self.database)}.predictions"
        )
        return int(count)

    async def count_records(self) -> int:
        [(count,)] = await self.query(dedup_count_query(self.database))
        return int(count)

    async def rows(self, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        """Each record's first stored copy, as PostgreSQL keeps it (``FINAL`` would give the last)."""
        unknown = [c for c in columns if c not in COLUMNS]
        if unknown:
            raise ValueError(f"no such column: {', '.join(unknown)}")
        return await self.query(
            f"SELECT {', '.join(columns)} FROM "
            f"{quote_identifier(self.database)}.predictions ORDER BY stored_at_ms "
            "LIMIT 1 BY source_topic, source_partition, source_offset"
        )

    async def count_labels(self) -> int:
        [(count,)] = await self.query(
            f"SELECT count() FROM {quote_identifier(self.database)}.{LABELS_TABLE} FINAL"
        )
        return int(count)

    async def labelled(self) -> list[tuple[str, str]]:
        return [
            (str(record_id), str(label))
            for record_id, label in await self.query(
                f"SELECT record_id, label FROM "
                f"{quote_identifier(self.database)}.{LABELLED_VIEW}"
            )
        ]

    async def shadow_agreement(self) -> list[tuple[str, str, str, int, int, int]]:
        return [
            (
                str(name),
                str(version),
                str(shadow),
                int(records),
                int(compared),
                int(agreed),
            )
            for name, version, shadow, records, compared, agreed in await self.query(
                shadow_agreement_query(self.database)
            )
        ]

    async def labelled_examples(
        self, model: str, since_ms: int | None = None
    ) -> list[LabelledExample]:
        """``model``'s labelled records (each once), as retraining reads them."""
        return [
            LabelledExample(
                record_id=str(record_id),
                numbers=dict(zip(names, values, strict=True)),
                texts=dict(zip(text_names, text_values, strict=True)),
                label=str(label),
                event_time_ms=int(event_time_ms),
            )
            for record_id, names, values, text_names, text_values, label, event_time_ms in (
                await self.query(
                    labelled_examples_query(model, self.database, since_ms)
                )
            )
        ]

    def analysis_hint(self) -> str:
        return (
            f"clickhouse-client --port {self.server.port} --query \\\n"
            f'                "SELECT predicted_label, count() FROM {self.table} FINAL '
            'GROUP BY predicted_label"\n'
            f"              (FINAL, or the view {self.database}.predictions_unique, "
            "counts each Kafka record once)"
        )
