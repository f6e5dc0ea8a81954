"""The predictions table's DDL and queries run on current ClickHouse (chdb); 18.16 is checked in integration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chdb import session

from tables.predictions import (
    INSERT_COLUMNS,
    UNIQUE_VIEW,
    create_statements,
    dedup_count_query,
    insert_statement,
    quote_identifier,
)


@pytest.fixture
def clickhouse() -> Iterator[session.Session]:
    chs = session.Session()
    yield chs
    chs.close()


def _values(topic: str, partition: int, offset: int, label: str) -> str:
    row = {
        "source_topic": f"'{topic}'",
        "source_partition": str(partition),
        "source_offset": str(offset),
        "record_id": "'r'",
        "event_time": "toDateTime(1767323045)",
        "event_time_ms": "1767323045500",
        "scored_at_ms": "1767323045600",
        "feature_names": "['clump_thickness', 'bare_nuclei']",
        "feature_values": "[5, nan]",
        "predicted_label": f"'{label}'",
        "probability_labels": "['0', '1']",
        "probabilities": "[0.25, 0.75]",
        "true_label": "''",
        "model_name": "'breast-cancer'",
        "model_version": "'1'",
        "model_server": "'http://127.0.0.1:8501'",
        "scoring_latency_ms": "1.5",
        "stored_at": "toDateTime(1767323046)",
        "stored_at_ms": "1767323046000",
    }
    return "(" + ", ".join(row[column] for column in INSERT_COLUMNS) + ")"


def test_ddl_is_idempotent_and_the_dedup_query_counts_each_record_once(
    clickhouse: session.Session,
) -> None:
    for _ in range(2):
        for statement in create_statements("rs_unit"):
            clickhouse.query(statement)
    insert = insert_statement("rs_unit")
    clickhouse.query(f"{insert} {_values('t', 0, 1, '1')}, {_values('t', 0, 2, '0')}")
    # the same Kafka record stored again (a replay after a crash)
    clickhouse.query(f"{insert} {_values('t', 0, 1, '1')}")
    assert (
        clickhouse.query("SELECT count() FROM rs_unit.predictions", "CSV")
        .bytes()
        .strip()
        == b"3"
    )
    assert clickhouse.query(dedup_count_query("rs_unit"), "CSV").bytes().strip() == b"2"
    unique = (
        clickhouse.query(f"SELECT count() FROM rs_unit.{UNIQUE_VIEW}", "CSV")
        .bytes()
        .strip()
    )
    assert unique == b"2"
    missing = clickhouse.query(
        "SELECT isNaN(feature_values[2]) FROM rs_unit.predictions FINAL WHERE source_offset = 1",
        "CSV",
    )
    assert missing.bytes().strip() == b"1"


def test_database_names_are_checked_before_they_reach_sql() -> None:
    assert quote_identifier("riskstream_e2e_1") == "`riskstream_e2e_1`"
    with pytest.raises(ValueError, match="not a valid ClickHouse identifier"):
        quote_identifier("x; DROP TABLE y")
