"""The ClickHouse side of riskstream: the ``predictions`` table and its queries.

Delivery is at-least-once, so the same Kafka record can be stored twice
(a worker killed after the insert and before its offset commit replays the
batch). The table makes that harmless: a ``ReplacingMergeTree`` ordered by
the record's Kafka coordinates ``(source_topic, source_partition,
source_offset)`` keeps one row per record once parts merge, and ``FINAL``
(the view ``predictions_unique``) gives that answer before they have. A
replayed record has the same event time, hence the same monthly partition,
so its copies always meet in one merge.

Every statement must run on ClickHouse 18.16 (the local stack) and on the
current release: no DateTime64, no LowCardinality, no Nullable arrays. Times
are kept twice, a ``DateTime`` for people and partitioning and a ``UInt64``
of epoch milliseconds for latency; a missing input is NaN in
``feature_values``, which stays parallel to ``feature_names`` whichever
model (9 or 30 inputs) wrote the row.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection

__all__ = [
    "INSERT_COLUMNS",
    "TABLE",
    "UNIQUE_VIEW",
    "create_statements",
    "dedup_count_query",
    "existing_objects_query",
    "insert_statement",
    "missing_statements",
    "quote_identifier",
]

logger = logging.getLogger(__name__)

TABLE = "predictions"
UNIQUE_VIEW = "predictions_unique"

#: Column -> ClickHouse type, in insert order; the writer's row tuples follow it.
COLUMNS: dict[str, str] = {
    "source_topic": "String",
    "source_partition": "UInt32",
    "source_offset": "UInt64",
    "record_id": "String",
    "event_time": "DateTime",
    "event_time_ms": "UInt64",
    "scored_at_ms": "UInt64",
    "feature_names": "Array(String)",
    "feature_values": "Array(Float64)",
    "predicted_label": "String",
    "probability_labels": "Array(String)",
    "probabilities": "Array(Float64)",
    "true_label": "String",
    "model_name": "String",
    "model_version": "String",
    "model_server": "String",
    "scoring_latency_ms": "Float64",
    "stored_at": "DateTime",
    "stored_at_ms": "UInt64",
}

INSERT_COLUMNS: tuple[str, ...] = tuple(COLUMNS)

#: The two columns the writer stamps on every row just before the insert.
STORED_AT_COLUMNS = ("stored_at", "stored_at_ms")

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_identifier(name: str) -> str:
    """A database name safe to splice into SQL (settings are not trusted blindly)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(
            f"{name!r} is not a valid ClickHouse identifier (letters, digits, _)"
        )
    return f"`{name}`"


def _named_statements(database: str) -> list[tuple[str, str]]:
    """Idempotent DDL of each object, with the name it has in ``system.databases``/``system.tables``."""
    db = quote_identifier(database)
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    return [
        (database, f"CREATE DATABASE IF NOT EXISTS {db}"),
        (
            TABLE,
            (
                f"CREATE TABLE IF NOT EXISTS {db}.{TABLE} (\n    {columns}\n)\n"
                "ENGINE = ReplacingMergeTree()\n"
                "PARTITION BY toYYYYMM(event_time)\n"
                "ORDER BY (source_topic, source_partition, source_offset)"
            ),
        ),
        (
            UNIQUE_VIEW,
            f"CREATE VIEW IF NOT EXISTS {db}.{UNIQUE_VIEW} AS SELECT * FROM {db}.{TABLE} FINAL",
        ),
    ]


def create_statements(database: str) -> list[str]:
    """Idempotent DDL: the database, the table and the dedup view."""
    return [statement for _, statement in _named_statements(database)]


def existing_objects_query(database: str) -> str:
    """The database's name (if it exists) and its tables' names, one per row."""
    name = quote_identifier(database).strip("`")
    return (
        f"SELECT name FROM system.databases WHERE name = '{name}' "
        f"UNION ALL SELECT name FROM system.tables WHERE database = '{name}'"
    )


def missing_statements(database: str, existing: Collection[str]) -> list[str]:
    """The DDL of what is not in ``existing`` (the names :func:`existing_objects_query` returns).

    A writer whose user may not run DDL (the local stack's app user) then
    runs none against the schema the stack prepared.
    """
    return [
        statement
        for name, statement in _named_statements(database)
        if name not in existing
    ]


def insert_statement(database: str) -> str:
    """The INSERT the writer sends with its row tuples (native protocol, no VALUES text)."""
    return f"INSERT INTO {quote_identifier(database)}.{TABLE} ({', '.join(INSERT_COLUMNS)}) VALUES"


def dedup_count_query(database: str) -> str:
    """How many distinct records are stored: each Kafka record counted once."""
    return f"SELECT count() FROM {quote_identifier(database)}.{TABLE} FINAL"
