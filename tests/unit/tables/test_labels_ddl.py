"""The labels table and the labelled view on current ClickHouse (chdb); 18.16 runs them in e2e."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from chdb import session

from tables.predictions import (
    INSERT_COLUMNS,
    LABEL_COLUMNS,
    LABELLED_VIEW,
    LabelRow,
    create_statements,
    insert_statement,
    label_insert_statement,
)
from tests.unit.tables.test_predictions_ddl import _cells


@pytest.fixture
def clickhouse() -> Iterator[session.Session]:
    chs = session.Session()
    for statement in create_statements("rs_labels"):
        chs.query(statement)
    yield chs
    chs.close()


def _prediction(offset: int, record_id: str, true_label: str = "") -> str:
    cells = {
        **_cells("features", 0, offset, "1"),
        "record_id": f"'{record_id}'",
        "true_label": f"'{true_label}'",
    }
    return "(" + ", ".join(cells[column] for column in INSERT_COLUMNS) + ")"


def _label(offset: int, record_id: str, label: str, observed_at_ms: int) -> str:
    row = LabelRow(
        "labels", 0, offset, record_id, label, observed_at_ms // 1000, observed_at_ms
    )
    return "(" + ", ".join(repr(value) for value in row) + ")"


def test_the_view_gives_each_prediction_its_latest_label_once(
    clickhouse: session.Session,
) -> None:
    predictions = insert_statement("rs_labels")
    labels = label_insert_statement("rs_labels")
    # r1 stored twice (a replay), r2 carried its label, r3 has none yet
    clickhouse.query(
        f"{predictions} {_prediction(1, 'r1')}, {_prediction(2, 'r2', '0')}, "
        f"{_prediction(3, 'r3')}"
    )
    clickhouse.query(f"{predictions} {_prediction(1, 'r1')}")
    # r1: a first reading, corrected later; the same batch of labels sent twice
    for _ in range(2):
        clickhouse.query(
            f"{labels} {_label(10, 'r1', '0', 1_767_323_050_000)}, "
            f"{_label(11, 'r1', '1', 1_767_323_060_000)}"
        )
    rows = clickhouse.query(
        f"SELECT record_id, label, true_label FROM rs_labels.{LABELLED_VIEW} "
        "ORDER BY record_id",
        "CSV",
    )
    assert rows.bytes().decode().splitlines() == ['"r1","1",""', '"r2","0","0"']
    distinct = clickhouse.query("SELECT count() FROM rs_labels.labels FINAL", "CSV")
    assert distinct.bytes().strip() == b"2"


def test_a_label_row_is_every_column_of_the_labels_table() -> None:
    assert LabelRow._fields == tuple(LABEL_COLUMNS)
