"""The writer creates only what is missing, so a user without DDL rights works on a prepared schema."""

from __future__ import annotations

import chdb

from tables.predictions import (
    LABELLED_VIEW,
    LABELS_TABLE,
    TABLE,
    UNIQUE_VIEW,
    create_statements,
    existing_objects_query,
    missing_statements,
)


def test_only_missing_objects_get_ddl() -> None:
    everything = create_statements("rs")
    assert missing_statements("rs", set()) == everything
    assert missing_statements("rs", {"rs"}) == everything[1:]
    assert missing_statements("rs", {"rs", TABLE}) == everything[2:]
    assert missing_statements("rs", {"rs", TABLE, UNIQUE_VIEW}) == everything[3:]
    assert missing_statements("rs", {"rs", TABLE, UNIQUE_VIEW, LABELS_TABLE}) == [
        everything[4]
    ]
    assert (
        missing_statements(
            "rs", {"rs", TABLE, UNIQUE_VIEW, LABELS_TABLE, LABELLED_VIEW}
        )
        == []
    )


def test_the_existence_query_runs_on_current_clickhouse() -> None:
    names = str(chdb.query(existing_objects_query("system"), "CSV")).split()
    assert '"system"' in names and '"tables"' in names
