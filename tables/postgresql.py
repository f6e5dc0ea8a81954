"""The PostgreSQL sink: ``<database>.riskstream.predictions``, written with asyncpg.

The table has the columns of ClickHouse's (:data:`tables.predictions.COLUMNS`,
in the same order, each ``NOT NULL``): arrays are PostgreSQL arrays, the
two ``DateTime`` columns are ``timestamptz`` (what people filter and
truncate by in SQL; the rows carry epoch seconds, turned into timestamps
by the server) and the ``_ms`` twins stay ``bigint`` for latency
arithmetic, as in ClickHouse. The primary key is the record's Kafka
coordinates ``(source_topic, source_partition, source_offset)``: a replayed
record meets its first copy and ``ON CONFLICT DO NOTHING`` keeps one row,
so every query counts each record once with no dedup view.

A merged write is one ``COPY`` of the rows into a temporary staging table
(asyncpg's binary ``copy_records_to_table``) and one ``INSERT ... SELECT
... ON CONFLICT DO NOTHING`` from it, in one transaction; it returns once
PostgreSQL has committed (``synchronous_commit``: on disk). Measured
against a multi-row ``INSERT ... ON CONFLICT DO NOTHING`` (asyncpg's
pipelined ``executemany``) on the local stack, 20,000 rows: see the
README's Sinks section for the figures. The staging table needs the
``TEMPORARY`` privilege on the database, which the local stack grants the
app's role.

Labels go to ``riskstream.labels`` (primary key: the label message's Kafka
coordinates, ``ON CONFLICT DO NOTHING``), and the view
``riskstream.labelled_predictions`` gives each prediction its record's
latest label (``DISTINCT ON`` by ``observed_at_ms``), a record's own
``true_label`` counting as a label observed at its event time: the same
answer as ClickHouse's view of the same name.

DDL creates only what is missing (schema, tables, view, columns added since),
so the app's role, which may not create anything, works against the
schema ``riskstream stack up`` prepared as the admin.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import asyncpg

from tables.predictions import (
    COLUMNS,
    INSERT_COLUMNS,
    LABEL_COLUMNS,
    LABELLED_VIEW,
    LABELS_TABLE,
    LabelRow,
    PredictionRow,
    quote_name,
)
from tables.sink import Server, Sink

__all__ = [
    "PG_COLUMNS",
    "QUALIFIED_LABELS",
    "QUALIFIED_TABLE",
    "QUALIFIED_VIEW",
    "RETRIED_ERRORS",
    "SCHEMA",
    "PostgreSQLSink",
    "connect",
    "prepare_schema",
    "quote_identifier",
]

logger = logging.getLogger(__name__)

#: The schema holding the predictions table.
SCHEMA = "riskstream"
TABLE = "predictions"
QUALIFIED_TABLE = f"{SCHEMA}.{TABLE}"
QUALIFIED_LABELS = f"{SCHEMA}.{LABELS_TABLE}"
QUALIFIED_VIEW = f"{SCHEMA}.{LABELLED_VIEW}"

#: ClickHouse type -> PostgreSQL type.
_TYPES = {
    "String": "text",
    "UInt32": "bigint",
    "UInt64": "bigint",
    "Float64": "double precision",
    "DateTime": "timestamptz",
    "Array(String)": "text[]",
    "Array(Float64)": "double precision[]",
}

#: The Kafka coordinates: the primary key, hence the dedup key.
KEY = ("source_topic", "source_partition", "source_offset")


#: A ClickHouse column default -> PostgreSQL's (what an added column gives the old rows).
_DEFAULTS = {"nan": "'NaN'", "''": "''", "emptyArrayFloat64()": "'{}'"}


def _pg_column(kind: str) -> str:
    base, _, default = kind.partition(" DEFAULT ")
    declared = f"{_TYPES[base]} NOT NULL"
    return f"{declared} DEFAULT {_DEFAULTS[default]}" if default else declared


#: Column -> PostgreSQL type, in ClickHouse's order (a later column comes last).
PG_COLUMNS: dict[str, str] = {name: _pg_column(kind) for name, kind in COLUMNS.items()}

#: Column -> PostgreSQL type of the labels table.
PG_LABEL_COLUMNS: dict[str, str] = {
    name: _pg_column(kind) for name, kind in LABEL_COLUMNS.items()
}

#: Columns holding epoch seconds in a row and ``timestamptz`` in the table.
_TIMESTAMPS = frozenset(n for n, k in COLUMNS.items() if k == "DateTime")

#: Failures worth a retry: the server going away or starting up, the network,
#: overload, a serialisation conflict. Anything else is a bug. A connection
#: the server terminated while it was idle (``stack stop postgresql`` between
#: two writes) is not known closed yet: its next use fails with asyncpg's
#: ``InternalClientError`` ("another operation (2) is in progress"), and a
#: new connection is the cure.
RETRIED_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.InternalClientError,
)


def quote_identifier(name: str) -> str:
    """A database or role name safe to splice into SQL (settings are not trusted blindly)."""
    return quote_name(name, '"', "PostgreSQL")


def create_table_statement() -> str:
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in PG_COLUMNS.items())
    return (
        f"CREATE TABLE IF NOT EXISTS {QUALIFIED_TABLE} (\n    {columns},\n"
        f"    PRIMARY KEY ({', '.join(KEY)})\n)"
    )


def create_labels_statement() -> str:
    columns = ",\n    ".join(
        f"{name} {kind}" for name, kind in PG_LABEL_COLUMNS.items()
    )
    return (
        f"CREATE TABLE IF NOT EXISTS {QUALIFIED_LABELS} (\n    {columns},\n"
        f"    PRIMARY KEY ({', '.join(KEY)})\n)"
    )


def create_view_statement() -> str:
    """Each prediction with its record's latest label (listed columns: a view's are fixed)."""
    return (
        f"CREATE VIEW {QUALIFIED_VIEW} AS\n"
        f"SELECT {', '.join(f'p.{name}' for name in COLUMNS)},\n"
        "    latest.label, latest.label_observed_at_ms\n"
        f"FROM {QUALIFIED_TABLE} AS p\n"
        "JOIN (\n"
        "    SELECT DISTINCT ON (record_id) record_id, label,\n"
        "        observed_at_ms AS label_observed_at_ms\n"
        "    FROM (\n"
        f"        SELECT record_id, label, observed_at_ms FROM {QUALIFIED_LABELS}\n"
        "        UNION ALL\n"
        "        SELECT record_id, true_label, event_time_ms\n"
        f"        FROM {QUALIFIED_TABLE} WHERE true_label <> ''\n"
        "    ) AS observed\n"
        "    ORDER BY record_id, observed_at_ms DESC\n"
        ") AS latest USING (record_id)"
    )


async def prepare_schema(connection: asyncpg.Connection) -> list[str]:
    """Create what is missing of the schema and table, add newer columns; returns the statements run.

    A role without DDL rights (the local stack's app role) runs none
    against a schema the stack already prepared. Workers starting together
    take turns (a transaction-scoped advisory lock): ``CREATE ... IF NOT
    EXISTS`` is not safe against a concurrent create of the same name.
    """
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", _DDL_LOCK)
        return await _create_missing(connection)


#: The advisory lock key that serialises riskstream's DDL in a database.
_DDL_LOCK = 0x7269736B  # "risk"


async def _create_missing(connection: asyncpg.Connection) -> list[str]:
    has_schema, has_table, has_labels, has_view = await connection.fetchrow(
        "SELECT to_regnamespace($1) IS NOT NULL, to_regclass($2) IS NOT NULL, "
        "to_regclass($3) IS NOT NULL, to_regclass($4) IS NOT NULL",
        SCHEMA,
        QUALIFIED_TABLE,
        QUALIFIED_LABELS,
        QUALIFIED_VIEW,
    )
    statements = []
    if not has_schema:
        statements.append(f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}")
    if not has_table:
        statements.append(create_table_statement())
    else:
        existing = {
            record[0]
            for record in await connection.fetch(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = $1 AND table_name = $2",
                SCHEMA,
                TABLE,
            )
        }
        added = [
            f"ALTER TABLE {QUALIFIED_TABLE} ADD COLUMN IF NOT EXISTS {name} {kind}"
            for name, kind in PG_COLUMNS.items()
            if name not in existing
        ]
        if added and has_view:
            # the view lists the predictions' columns: made again with the new ones
            added.append(f"DROP VIEW {QUALIFIED_VIEW}")
            has_view = False
        statements += added
    if not has_labels:
        statements.append(create_labels_statement())
    if not has_view:
        statements.append(create_view_statement())
    for statement in statements:
        await connection.execute(statement)
    return statements


async def connect(
    *, host: str, port: int, user: str, password: str, database: str, timeout_s: float
) -> asyncpg.Connection:
    """One asyncpg connection; ``host`` may be a socket folder (a path starting with /)."""
    return await asyncpg.connect(
        host=host,
        port=port,
        user=user,
        password=password or None,
        database=database,
        timeout=timeout_s,
        # No prepared-statement cache surprises across DDL: a handful of statements.
        statement_cache_size=16,
    )


#: The staging table a merged write COPYs into: the insert's columns, times as epoch seconds.
_STAGING = "riskstream_staging"
_STAGING_DDL = (
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {_STAGING} ("
    + ", ".join(
        f"{name} {'bigint' if name in _TIMESTAMPS else PG_COLUMNS[name].split(' NOT NULL')[0]}"
        for name in INSERT_COLUMNS
    )
    + ") ON COMMIT DELETE ROWS"
)
_FROM_STAGING = (
    f"INSERT INTO {QUALIFIED_TABLE} ({', '.join(INSERT_COLUMNS)}) SELECT "
    + ", ".join(
        f"to_timestamp({name})" if name in _TIMESTAMPS else name
        for name in INSERT_COLUMNS
    )
    + f" FROM {_STAGING} ON CONFLICT DO NOTHING"
)


#: One label row; a label message stored before (a replay) is skipped.
_INSERT_LABEL = (
    f"INSERT INTO {QUALIFIED_LABELS} ({', '.join(LABEL_COLUMNS)}) VALUES ("
    + ", ".join(
        f"to_timestamp(${i})" if kind == "DateTime" else f"${i}"
        for i, kind in enumerate(LABEL_COLUMNS.values(), start=1)
    )
    + ") ON CONFLICT DO NOTHING"
)


class PostgreSQLSink(Sink):
    """Owns one PostgreSQL connection; the primary key absorbs replays."""

    name = "postgresql"
    kind = "PostgreSQL"
    transient = RETRIED_ERRORS

    def __init__(self, server: Server, **kwargs: Any) -> None:
        quote_identifier(server.database)
        super().__init__(server, **kwargs)
        self.address = f"{server.host}:{server.port}/{server.database}"
        self._connection: asyncpg.Connection | None = None

    @property
    def table(self) -> str:
        return QUALIFIED_TABLE

    async def _connect(self, database: str | None = None) -> asyncpg.Connection:
        return await connect(
            host=self.server.host,
            port=self.server.port,
            user=self.server.user,
            password=self.server.password,
            database=database or self.database,
            timeout_s=10.0,
        )

    async def _prepare(self) -> None:
        if self._connection is not None and not self._connection.is_closed():
            return
        try:
            connection = await self._connect()
        except asyncpg.InvalidCatalogNameError:
            await self._create_database()
            connection = await self._connect()
        try:
            for statement in await prepare_schema(connection):
                logger.info(
                    "PostgreSQL %s: %s", self.address, statement.splitlines()[0]
                )
            await connection.execute(_STAGING_DDL)
        except BaseException:
            connection.terminate()
            raise
        self._connection = connection

    async def _create_database(self) -> None:
        """Create the missing database (a role allowed to: the tests' and bench's admin)."""
        maintenance = await self._connect("postgres")
        try:
            # CREATE DATABASE cannot run in a transaction: a session lock (released
            # with the connection) makes workers starting together take turns.
            await maintenance.execute("SELECT pg_advisory_lock($1)", _DDL_LOCK)
            if not await maintenance.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.database
            ):
                await maintenance.execute(
                    f"CREATE DATABASE {quote_identifier(self.database)}"
                )
                logger.info(
                    "PostgreSQL %s: CREATE DATABASE %s", self.address, self.database
                )
        finally:
            await maintenance.close()

    async def _insert(self, rows: Sequence[PredictionRow], stored_at_ms: int) -> None:
        connection = self._connection
        assert connection is not None
        stamp = (stored_at_ms // 1000, stored_at_ms)
        async with connection.transaction():
            await connection.copy_records_to_table(
                _STAGING,
                records=[row + stamp for row in rows],
                columns=INSERT_COLUMNS,
            )
            await connection.execute(_FROM_STAGING)

    async def _insert_labels(self, rows: Sequence[LabelRow]) -> None:
        connection = self._connection
        assert connection is not None
        async with connection.transaction():
            await connection.executemany(_INSERT_LABEL, rows)

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()  # no goodbye on a socket that may be broken

    async def _query(self, query: str) -> list[asyncpg.Record]:
        connection = await self._connect()
        try:
            return list(await connection.fetch(query))
        finally:
            await connection.close()

    async def count_rows(self) -> int:
        [(count,)] = await self._query(f"SELECT count(*) FROM {QUALIFIED_TABLE}")
        return int(count)

    async def count_records(self) -> int:
        """A real distinct count over the coordinates, not the same query as :meth:`count_rows`."""
        [(count,)] = await self._query(
            f"SELECT count(*) FROM (SELECT DISTINCT {', '.join(KEY)} "
            f"FROM {QUALIFIED_TABLE}) AS records"
        )
        return int(count)

    async def rows(self, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        unknown = [c for c in columns if c not in PG_COLUMNS]
        if unknown:
            raise ValueError(f"no such column: {', '.join(unknown)}")
        selected = ", ".join(
            f"extract(epoch FROM {c})::bigint" if c in _TIMESTAMPS else c
            for c in columns
        )
        return [
            tuple(record)
            for record in await self._query(f"SELECT {selected} FROM {QUALIFIED_TABLE}")
        ]

    async def count_labels(self) -> int:
        [(count,)] = await self._query(f"SELECT count(*) FROM {QUALIFIED_LABELS}")
        return int(count)

    async def labelled(self) -> list[tuple[str, str]]:
        return [
            (record["record_id"], record["label"])
            for record in await self._query(
                f"SELECT record_id, label FROM {QUALIFIED_VIEW}"
            )
        ]

    async def shadow_agreement(self) -> list[tuple[str, str, str, int, int, int]]:
        """The same counts as ClickHouse's :func:`tables.predictions.shadow_agreement_query`."""
        return [
            (r[0], r[1], r[2], int(r[3]), int(r[4]), int(r[5]))
            for r in await self._query(
                "SELECT model_name, model_version, shadow_version, count(*),\n"
                "    count(*) FILTER (WHERE shadow_label <> ''),\n"
                "    count(*) FILTER (WHERE shadow_label <> '' "
                "AND shadow_label = predicted_label)\n"
                f"FROM {QUALIFIED_TABLE} WHERE shadow_version <> ''\n"
                "GROUP BY model_name, model_version, shadow_version\n"
                "ORDER BY model_name, model_version, shadow_version"
            )
        ]

    def analysis_hint(self) -> str:
        return (
            f'psql "host={self.server.host} port={self.server.port} '
            f'dbname={self.database} user={self.server.user}" -c \\\n'
            f'                "SELECT predicted_label, count(*) FROM {QUALIFIED_TABLE} '
            'GROUP BY predicted_label"\n'
            "              (the primary key on the Kafka coordinates keeps each record once)"
        )
