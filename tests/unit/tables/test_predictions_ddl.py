"""The predictions table's DDL and queries run on current ClickHouse (chdb); 18.16 is checked in integration."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from chdb import session

from tables.predictions import (
    COLUMNS,
    DEFAULTED_COLUMNS,
    INSERT_COLUMNS,
    LABELLED_VIEW,
    UNIQUE_VIEW,
    PredictionRow,
    create_statements,
    dedup_count_query,
    insert_columns,
    insert_statement,
    missing_statements,
    quote_identifier,
    shadow_agreement_query,
    upgrade_statements,
)
from tests.schema_history import PREDICTIONS_0_1, PREDICTIONS_0_1_COLUMNS


@pytest.fixture
def clickhouse() -> Iterator[session.Session]:
    chs = session.Session()
    yield chs
    chs.close()


def _cells(topic: str, partition: int, offset: int, label: str) -> dict[str, str]:
    return {
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
        "text_feature_names": "['smoker']",
        "text_feature_values": "['yes']",
        "predicted_value": "nan",
        "shadow_version": "''",
        "shadow_label": "''",
        "shadow_probabilities": "[]",
        "explanation": """'{"kind":"tree","path":["bare_nuclei > 2.5"]}'""",
    }


def _values(topic: str, partition: int, offset: int, label: str) -> str:
    row = _cells(topic, partition, offset, label)
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


def test_a_prediction_row_and_the_stored_at_pair_are_every_column() -> None:
    assert set(INSERT_COLUMNS) == set(COLUMNS)
    assert INSERT_COLUMNS[: len(PredictionRow._fields)] == PredictionRow._fields


def _plain_row(offset: int) -> PredictionRow:
    """A classifier's row with every defaulted column at its default."""
    return PredictionRow(
        "t", 0, offset, "r", 1, 1, 1, ["a"], [1.0], "1", ["0", "1"], [0.5, 0.5],
        "", "m", "1", "s", 1.0, [], [], float("nan"),
    )  # fmt: skip


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("text_feature_names", ["smoker"]),
        ("text_feature_values", ["yes"]),
        ("predicted_value", 0.0),
        ("shadow_version", "2"),
        ("shadow_label", "0"),
        ("shadow_probabilities", [0.5, 0.5]),
        ("explanation", "{}"),
    ],
)
def test_an_insert_keeps_a_defaulted_column_that_any_row_sets(
    column: str, value: Any
) -> None:
    rows = [_plain_row(i) for i in range(3)]
    assert insert_columns(rows) == tuple(
        c for c in INSERT_COLUMNS if c not in DEFAULTED_COLUMNS
    )
    rows[1] = rows[1]._replace(**{column: value})
    kept = insert_columns(rows)
    assert column in kept
    assert set(INSERT_COLUMNS) - set(kept) == set(DEFAULTED_COLUMNS) - {column}


def test_a_narrowed_insert_leaves_the_defaults_to_the_server(
    clickhouse: session.Session,
) -> None:
    for statement in create_statements("rs_narrow"):
        clickhouse.query(statement)
    _insert_into(clickhouse, "rs_narrow", insert_columns([_plain_row(1)]))
    stored = _scalar(
        clickhouse,
        "SELECT text_feature_names, isNaN(predicted_value), shadow_version, "
        "shadow_probabilities, explanation FROM rs_narrow.predictions",
    )
    assert stored == b'"[]",1,"","[]",""'


def _insert_into(
    clickhouse: session.Session, database: str, columns: Sequence[str]
) -> None:
    """One row (offset 1 of topic t) into ``columns`` of the table, the rest left to its defaults."""
    cells = _cells("t", 0, 1, "1")
    clickhouse.query(
        f"{insert_statement(database, columns)} ({', '.join(cells[c] for c in columns)})"
    )


def _scalar(clickhouse: session.Session, query: str) -> bytes:
    return bytes(clickhouse.query(query, "CSV").bytes().strip())


def test_an_older_table_is_upgraded_in_place_keeping_its_rows(
    clickhouse: session.Session,
) -> None:
    clickhouse.query("CREATE DATABASE rs_old")
    clickhouse.query(PREDICTIONS_0_1.format(db="rs_old"))
    clickhouse.query(
        "CREATE VIEW rs_old.predictions_unique AS SELECT * FROM rs_old.predictions FINAL"
    )
    _insert_into(
        clickhouse,
        "rs_old",
        [c for c in INSERT_COLUMNS if c in PREDICTIONS_0_1_COLUMNS],
    )
    existing = _scalar(
        clickhouse,
        "SELECT groupArray(name) FROM system.columns "
        "WHERE database = 'rs_old' AND table = 'predictions'",
    )
    names = [n.strip("'\"") for n in existing.decode().strip('"[]').split(",")]
    statements = upgrade_statements("rs_old", names)
    assert sum("ADD COLUMN" in s for s in statements) == len(COLUMNS) - len(
        PREDICTIONS_0_1_COLUMNS
    )
    # as prepare_schema does: the missing labels table first, its view by the upgrade
    existing_objects = {"rs_old", "predictions", "predictions_unique", LABELLED_VIEW}
    for statement in missing_statements("rs_old", existing_objects) + statements:
        clickhouse.query(statement)
    assert upgrade_statements("rs_old", list(COLUMNS)) == []
    clickhouse.query(f"{insert_statement('rs_old')} {_values('t', 0, 2, '0')}")
    rows = _scalar(
        clickhouse,
        "SELECT source_offset, text_feature_values, isNaN(predicted_value), "
        f"shadow_version, shadow_probabilities, explanation = '' FROM rs_old.{UNIQUE_VIEW} "
        "ORDER BY source_offset",
    )
    assert rows.decode().splitlines() == [
        '1,"[]",1,"","[]",1',
        '2,"[\'yes\']",1,"","[]",0',
    ]


def test_database_names_are_checked_before_they_reach_sql() -> None:
    assert quote_identifier("riskstream_e2e_1") == "`riskstream_e2e_1`"
    with pytest.raises(ValueError, match="not a valid ClickHouse identifier"):
        quote_identifier("x; DROP TABLE y")


def test_the_shadow_agreement_counts_each_record_once_and_compares_only_scored_rows(
    clickhouse: session.Session,
) -> None:
    for statement in create_statements("rs_shadow"):
        clickhouse.query(statement)

    def shadowed(offset: int, label: str, shadow_label: str) -> str:
        cells = {
            **_cells("t", 0, offset, label),
            "shadow_version": "'2'",
            "shadow_label": f"'{shadow_label}'",
            "shadow_probabilities": "[0.5, 0.5]" if shadow_label else "[]",
        }
        return "(" + ", ".join(cells[column] for column in INSERT_COLUMNS) + ")"

    rows = [shadowed(1, "1", "1"), shadowed(2, "0", "1"), shadowed(3, "1", "")]
    insert = insert_statement("rs_shadow")
    clickhouse.query(f"{insert} {', '.join(rows)}")
    clickhouse.query(f"{insert} {shadowed(1, '1', '1')}")  # a replay: counted once
    clickhouse.query(f"{insert} {_values('t', 0, 4, '1')}")  # no shadow: not counted
    counts = _scalar(clickhouse, shadow_agreement_query("rs_shadow"))
    assert counts.decode() == '"breast-cancer","1","2",3,2,1'
