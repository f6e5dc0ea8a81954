"""The ClickHouse side of riskstream: the ``predictions`` and ``labels`` tables, their views and queries.

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
of epoch milliseconds for latency. Inputs are kept whatever their type:
numeric ones in ``feature_values`` (NaN = missing), parallel to
``feature_names``, the others (categories, "true"/"false") as text in
``text_feature_values`` ("" = missing), parallel to ``text_feature_names``.
A classifier's answer is ``predicted_label`` with its ``probabilities``; a
regression's is ``predicted_value`` (NaN for a classifier). A row scored
while a shadow version ran beside the current one also holds the shadow's
answer: ``shadow_version``, ``shadow_label`` ("" where the shadow did not
score the row) and ``shadow_probabilities``, parallel to
``probability_labels`` (NaN for a class the shadow does not have); all
empty without a shadow. :func:`shadow_agreement_query` compares the two.

Ground truth arrives late, on its own topic, into ``labels``: a
``ReplacingMergeTree`` on the label message's Kafka coordinates, like the
predictions, so a replayed label batch is harmless. The view
``labelled_predictions`` joins each stored prediction (once, ``FINAL``) to
its record's latest label (``argMax`` by ``observed_at_ms``), where the
``true_label`` a record carried counts as a label observed at its event
time. Its columns are listed, not ``*``: ClickHouse 18.16 expands ``*``
to the left table's columns only, current releases to both sides'.

A table made by an older riskstream lacks the newer columns; the same step
that creates what is missing adds them (``ALTER TABLE ... ADD COLUMN``, old
rows get the default) and re-creates the view over the new columns.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Sequence
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

__all__ = [
    "DEFAULTED_COLUMNS",
    "INSERT_COLUMNS",
    "LABELLED_VIEW",
    "LABELS_TABLE",
    "LABEL_COLUMNS",
    "TABLE",
    "UNIQUE_VIEW",
    "LabelRow",
    "PredictionRow",
    "SchemaConflict",
    "create_statements",
    "dedup_count_query",
    "existing_columns_query",
    "existing_objects_query",
    "insert_columns",
    "insert_statement",
    "label_insert_statement",
    "labelled_examples_query",
    "missing_statements",
    "prepare_schema",
    "quote_identifier",
    "quote_name",
    "shadow_agreement_query",
    "sql_string",
    "upgrade_statements",
]


TABLE = "predictions"
UNIQUE_VIEW = "predictions_unique"
#: On a cluster, ``<table>_local`` is each shard's replicated table under the Distributed ``<table>``.
LOCAL_SUFFIX = "_local"
#: Which shard a row goes to: its Kafka coordinates, so a replay lands where its first copy is.
SHARDING_KEY = "cityHash64(source_topic, source_partition, source_offset)"
LABELS_TABLE = "labels"
LABELLED_VIEW = "labelled_predictions"


class PredictionRow(NamedTuple):
    """One stored prediction as the pipeline builds it: every column but the stored-at pair.

    A tuple, so that the writer hands it to asynch as it is, with the two
    stored-at values stamped on at the insert.
    """

    source_topic: str
    source_partition: int
    source_offset: int
    record_id: str
    event_time: int  #: epoch seconds (the DateTime column)
    event_time_ms: int
    scored_at_ms: int
    feature_names: list[str]
    feature_values: list[float]
    predicted_label: str
    probability_labels: list[str]
    probabilities: list[float]
    true_label: str
    model_name: str
    model_version: str
    model_server: str
    scoring_latency_ms: float
    text_feature_names: list[str]
    text_feature_values: list[str]
    predicted_value: float
    shadow_version: str = ""
    shadow_label: str = ""
    #: parallel to ``probability_labels``; the default is shared (rows are only read)
    shadow_probabilities: list[float] = []  # noqa: RUF012
    #: why the model answered so (JSON text, see serving.explanations); '' unless asked for
    explanation: str = ""


class LabelRow(NamedTuple):
    """One stored label: where its message was in Kafka, whose it is, what and when."""

    source_topic: str
    source_partition: int
    source_offset: int
    record_id: str
    label: str
    observed_at: int  #: epoch seconds (the DateTime column)
    observed_at_ms: int


#: Column -> ClickHouse type of the labels table, in :class:`LabelRow` order.
LABEL_COLUMNS: dict[str, str] = {
    "source_topic": "String",
    "source_partition": "UInt32",
    "source_offset": "UInt64",
    "record_id": "String",
    "label": "String",
    "observed_at": "DateTime",
    "observed_at_ms": "UInt64",
}

#: Column -> ClickHouse type, in table order: a column added in a later version
#: comes last, where ``ALTER TABLE ... ADD COLUMN`` puts it in an older table.
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
    "text_feature_names": "Array(String)",
    "text_feature_values": "Array(String)",
    "predicted_value": "Float64 DEFAULT nan",
    "shadow_version": "String DEFAULT ''",
    "shadow_label": "String DEFAULT ''",
    "shadow_probabilities": "Array(Float64) DEFAULT emptyArrayFloat64()",
    "explanation": "String DEFAULT ''",
}

#: The two columns the writer stamps on every row just before the insert.
STORED_AT_COLUMNS = ("stored_at", "stored_at_ms")

#: The insert's columns: a :class:`PredictionRow`, then the stored-at pair.
INSERT_COLUMNS: tuple[str, ...] = (*PredictionRow._fields, *STORED_AT_COLUMNS)

#: Columns whose table default ('', [] or NaN) is what most rows hold: no
#: text inputs, no regression value, no shadow, no explanation. A batch in
#: which every row holds the default leaves such a column out of its insert,
#: and the server fills it in. asynch encodes every value of every row in
#: Python; leaving these seven out took the sink's insert from 5.7 to 4.9
#: us per row (2,000-row inserts into ClickHouse 18.16).
DEFAULTED_COLUMNS: tuple[str, ...] = (
    "text_feature_names",
    "text_feature_values",
    "predicted_value",
    "shadow_version",
    "shadow_label",
    "shadow_probabilities",
    "explanation",
)
#: The defaulted columns whose default is NaN rather than empty.
_NAN_DEFAULTED = frozenset({"predicted_value"})
_DEFAULTED_VALUE = {
    name: itemgetter(PredictionRow._fields.index(name)) for name in DEFAULTED_COLUMNS
}

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def quote_name(name: str, quote: str, dialect: str) -> str:
    """``name`` between ``quote`` marks, if it is a plain identifier (settings are not trusted blindly)."""
    if not _IDENTIFIER.match(name):
        raise ValueError(
            f"{name!r} is not a valid {dialect} identifier (letters, digits, _)"
        )
    return f"{quote}{name}{quote}"


def quote_identifier(name: str) -> str:
    """A ClickHouse database name safe to splice into SQL."""
    return quote_name(name, "`", "ClickHouse")


def sql_string(value: str) -> str:
    """``value`` as a ClickHouse string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _on_cluster(cluster: str) -> str:
    """`` ON CLUSTER <name>`` for a cluster's DDL, nothing for one server."""
    return f" ON CLUSTER {quote_identifier(cluster)}" if cluster else ""


def _view_statement(db: str, cluster: str = "") -> str:
    return (
        f"CREATE VIEW IF NOT EXISTS {db}.{UNIQUE_VIEW}{_on_cluster(cluster)} "
        f"AS SELECT * FROM {db}.{TABLE} FINAL"
    )


def _labelled_view_statement(db: str, cluster: str = "") -> str:
    """Each prediction with its record's latest label (18.16's JOIN: ``ALL INNER JOIN ... USING``).

    On a cluster the latest labels are gathered once, by the server that
    runs the query, and sent to every shard (``GLOBAL``): a record's label
    and its prediction may live on different shards.
    """
    join = "GLOBAL ALL INNER JOIN" if cluster else "ALL INNER JOIN"
    return (
        f"CREATE VIEW IF NOT EXISTS {db}.{LABELLED_VIEW}{_on_cluster(cluster)} AS\n"
        f"SELECT {', '.join(COLUMNS)}, label, label_observed_at_ms\n"
        f"FROM {db}.{TABLE} FINAL\n"
        f"{join} (\n"
        "    SELECT record_id, argMax(observed_label, observed_at_ms) AS label,\n"
        "        max(observed_at_ms) AS label_observed_at_ms\n"
        "    FROM (\n"
        "        SELECT record_id, label AS observed_label, observed_at_ms\n"
        f"        FROM {db}.{LABELS_TABLE}\n"
        "        UNION ALL\n"
        "        SELECT record_id, true_label AS observed_label,\n"
        "            event_time_ms AS observed_at_ms\n"
        f"        FROM {db}.{TABLE} WHERE true_label != ''\n"
        "    )\n"
        "    GROUP BY record_id\n"
        ") AS latest USING record_id"
    )


def _merge_tree_statements(
    database: str, table: str, columns: str, partition_by: str, cluster: str
) -> list[tuple[str, str]]:
    """A ``ReplacingMergeTree`` on the Kafka coordinates: one table, or per shard plus a ``Distributed`` one.

    On a cluster each shard keeps its rows in ``<table>_local``, a
    ``ReplicatedReplacingMergeTree`` whose replicas share the ZooKeeper path
    of their ``{shard}`` macro; ``<table>`` is the ``Distributed`` table over
    them, sharded by a hash of the coordinates, so that a replayed record
    meets its first copy on the same shard and merges away there.
    """
    db = quote_identifier(database)
    order = "ORDER BY (source_topic, source_partition, source_offset)"
    if not cluster:
        return [
            (
                table,
                (
                    f"CREATE TABLE IF NOT EXISTS {db}.{table} (\n    {columns}\n)\n"
                    f"ENGINE = ReplacingMergeTree()\nPARTITION BY {partition_by}\n{order}"
                ),
            )
        ]
    local = f"{table}{LOCAL_SUFFIX}"
    on_cluster = _on_cluster(cluster)
    return [
        (
            local,
            (
                f"CREATE TABLE IF NOT EXISTS {db}.{local}{on_cluster} (\n    {columns}\n)\n"
                "ENGINE = ReplicatedReplacingMergeTree("
                f"'/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}')\n"
                f"PARTITION BY {partition_by}\n{order}"
            ),
        ),
        (
            table,
            (
                f"CREATE TABLE IF NOT EXISTS {db}.{table}{on_cluster} AS {db}.{local}\n"
                f"ENGINE = Distributed({quote_identifier(cluster)}, {db}, {local}, {SHARDING_KEY})"
            ),
        ),
    ]


def _named_statements(database: str, cluster: str = "") -> list[tuple[str, str]]:
    """Idempotent DDL of each object, with the name it has in ``system.databases``/``system.tables``."""
    db = quote_identifier(database)
    columns = ",\n    ".join(f"{name} {kind}" for name, kind in COLUMNS.items())
    label_columns = ",\n    ".join(
        f"{name} {kind}" for name, kind in LABEL_COLUMNS.items()
    )
    return [
        (database, f"CREATE DATABASE IF NOT EXISTS {db}{_on_cluster(cluster)}"),
        *_merge_tree_statements(
            database, TABLE, columns, "toYYYYMM(event_time)", cluster
        ),
        (UNIQUE_VIEW, _view_statement(db, cluster)),
        *_merge_tree_statements(
            database, LABELS_TABLE, label_columns, "toYYYYMM(observed_at)", cluster
        ),
        (LABELLED_VIEW, _labelled_view_statement(db, cluster)),
    ]


def create_statements(database: str, cluster: str = "") -> list[str]:
    """Idempotent DDL: the database, the predictions table and its dedup view, the labels and their view.

    With ``cluster`` every statement runs ``ON CLUSTER`` and each table is a
    replicated table per shard under a ``Distributed`` one.
    """
    return [statement for _, statement in _named_statements(database, cluster)]


def existing_objects_query(database: str) -> str:
    """The database's name (if it exists) and its tables' names and engines, one per row."""
    name = quote_identifier(database).strip("`")
    return (
        f"SELECT name, 'Database' FROM system.databases WHERE name = '{name}' "
        f"UNION ALL SELECT name, engine FROM system.tables WHERE database = '{name}'"
    )


def missing_statements(
    database: str, existing: Collection[str], cluster: str = ""
) -> list[str]:
    """The DDL of what is not in ``existing`` (the names :func:`existing_objects_query` returns).

    A writer whose user may not run DDL (the local stack's app user) then
    runs none against the schema the stack prepared.
    """
    return [
        statement
        for name, statement in _named_statements(database, cluster)
        if name not in existing
    ]


def existing_columns_query(database: str, cluster: str = "") -> str:
    """The column names of the table holding the predictions' rows, one per row (none if no table)."""
    name = quote_identifier(database).strip("`")
    table = f"{TABLE}{LOCAL_SUFFIX}" if cluster else TABLE
    return (
        f"SELECT name FROM system.columns WHERE database = '{name}' "
        f"AND table = '{table}'"
    )


def upgrade_statements(
    database: str, existing_columns: Collection[str], cluster: str = ""
) -> list[str]:
    """What brings a table of an older version up to :data:`COLUMNS`, keeping its rows.

    Nothing for a missing table (it is created whole) or a current one.
    On a cluster the shards' tables and the ``Distributed`` one gain the
    column alike. The views are re-created, since a view's columns are
    fixed when it is made.
    """
    missing = [name for name in COLUMNS if name not in existing_columns]
    if not existing_columns or not missing:
        return []
    db = quote_identifier(database)
    on_cluster = _on_cluster(cluster)
    tables = [f"{TABLE}{LOCAL_SUFFIX}", TABLE] if cluster else [TABLE]
    return [
        *(
            f"ALTER TABLE {db}.{table}{on_cluster} ADD COLUMN {name} {COLUMNS[name]}"
            for table in tables
            for name in missing
        ),
        f"DROP TABLE IF EXISTS {db}.{UNIQUE_VIEW}{on_cluster}",
        _view_statement(db, cluster),
        f"DROP TABLE IF EXISTS {db}.{LABELLED_VIEW}{on_cluster}",
        _labelled_view_statement(db, cluster),
    ]


class SchemaConflict(ValueError):
    """The database holds a table riskstream did not make for this layout."""


class _Cursor(Protocol):
    async def execute(self, query: str, args: Any = None) -> Any: ...
    async def fetchall(self) -> Any: ...


async def prepare_schema(
    cursor: _Cursor, database: str, cluster: str = ""
) -> list[str]:
    """Create what is missing and upgrade an older table; returns the statements run.

    A user without DDL rights (the local stack's app user) runs none
    against a schema the stack already prepared and upgraded. A
    single-server predictions table where a cluster's is expected is
    refused, not written to: it would neither replicate nor shard.
    """
    await cursor.execute(existing_objects_query(database))
    engines = {row[0]: row[1] for row in await cursor.fetchall()}
    if cluster and engines.get(TABLE, "Distributed") != "Distributed":
        raise SchemaConflict(
            f"{database}.{TABLE} is a single-server {engines[TABLE]} table but "
            f"RISKSTREAM_CLICKHOUSE_CLUSTER is {cluster}: rename it and copy its rows "
            "into the cluster's table (README, Running at scale), or unset the cluster"
        )
    existing = set(engines)
    upgrade: list[str] = []
    if TABLE in existing:
        await cursor.execute(existing_columns_query(database, cluster))
        upgrade = upgrade_statements(
            database, {row[0] for row in await cursor.fetchall()}, cluster
        )
    if upgrade:
        # the labelled view names the new columns: the upgrade creates it once they exist
        existing.add(LABELLED_VIEW)
    statements = missing_statements(database, existing, cluster) + upgrade
    for statement in statements:
        await cursor.execute(statement)
    return statements


def insert_statement(database: str, columns: Sequence[str] = INSERT_COLUMNS) -> str:
    """The INSERT the writer sends with its rows (native protocol, no VALUES text)."""
    return f"INSERT INTO {quote_identifier(database)}.{TABLE} ({', '.join(columns)}) VALUES"


def insert_columns(rows: Sequence[PredictionRow]) -> tuple[str, ...]:
    """The columns an insert of ``rows`` needs, in :data:`INSERT_COLUMNS` order.

    All of them but the :data:`DEFAULTED_COLUMNS` that hold their default
    in every row. The tests run in C (``map``, ``any``, ``all``): a Python
    call per value would cost half of what leaving a column out saves.
    """
    left_out = {
        name
        for name, value in _DEFAULTED_VALUE.items()
        if (
            all(map(math.isnan, map(value, rows)))
            if name in _NAN_DEFAULTED
            else not any(map(value, rows))
        )
    }
    return tuple(name for name in INSERT_COLUMNS if name not in left_out)


def label_insert_statement(database: str) -> str:
    """The INSERT of :class:`LabelRow` tuples (native protocol)."""
    return (
        f"INSERT INTO {quote_identifier(database)}.{LABELS_TABLE} "
        f"({', '.join(LabelRow._fields)}) VALUES"
    )


def shadow_agreement_query(database: str) -> str:
    """Per (model, version, shadow version): records, records both scored, and both gave one label.

    Each record once (``FINAL``); a record the shadow did not score
    (``shadow_label`` empty) is counted but not compared.
    """
    return (
        "SELECT model_name, model_version, shadow_version, count() AS records,\n"
        "    countIf(shadow_label != '') AS compared,\n"
        "    countIf(shadow_label != '' AND shadow_label = predicted_label) AS agreed\n"
        f"FROM {quote_identifier(database)}.{TABLE} FINAL\n"
        "WHERE shadow_version != ''\n"
        "GROUP BY model_name, model_version, shadow_version\n"
        "ORDER BY model_name, model_version, shadow_version"
    )


def labelled_examples_query(model: str, database: str, since_ms: int | None) -> str:
    """Each labelled record of ``model`` once: its stored inputs, latest label and event time.

    A record stored more than once (the producer sent it twice: two Kafka
    offsets) is one patient: its first stored copy stands for it.
    """
    since = f" AND event_time_ms >= {int(since_ms)}" if since_ms is not None else ""
    return (
        "SELECT record_id, feature_names, feature_values, text_feature_names,\n"
        "    text_feature_values, label, event_time_ms\n"
        f"FROM {quote_identifier(database)}.{LABELLED_VIEW}\n"
        f"WHERE model_name = {sql_string(model)} AND label != ''{since}\n"
        "ORDER BY record_id, stored_at_ms\n"
        "LIMIT 1 BY record_id"
    )


def dedup_count_query(database: str) -> str:
    """How many distinct records are stored: each Kafka record counted once."""
    return f"SELECT count() FROM {quote_identifier(database)}.{TABLE} FINAL"
