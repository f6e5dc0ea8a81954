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
    upgrade_statements,
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
    rows = str(chdb.query(existing_objects_query("system"), "CSV")).split()
    assert '"system","Database"' in rows and '"tables","SystemTables"' in rows


def test_a_cluster_gets_a_replicated_table_per_shard_and_a_distributed_one() -> None:
    named = dict(
        zip(
            ["database", "local", TABLE, UNIQUE_VIEW, "labels_local", LABELS_TABLE],
            create_statements("rs", "rs_cluster"),
            strict=False,
        )
    )
    assert all(" ON CLUSTER `rs_cluster`" in ddl for ddl in named.values())
    assert "`rs`.predictions_local ON CLUSTER" in named["local"]
    assert (
        "ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/rs/predictions_local', '{replica}')"
        in named["local"]
    )
    assert (
        "Distributed(`rs_cluster`, `rs`, predictions_local, "
        "cityHash64(source_topic, source_partition, source_offset))" in named[TABLE]
    )
    # the view reads the Distributed table: every shard's rows
    assert "FROM `rs`.predictions FINAL" in named[UNIQUE_VIEW]


def test_the_labelled_view_gathers_labels_once_on_a_cluster() -> None:
    [single] = [s for s in create_statements("rs") if LABELLED_VIEW in s]
    [clustered] = [s for s in create_statements("rs", "c") if LABELLED_VIEW in s]
    assert "\nALL INNER JOIN" in single and "GLOBAL" not in single
    assert "GLOBAL ALL INNER JOIN" in clustered


def test_cluster_ddl_parses_on_current_clickhouse() -> None:
    """chdb has no ZooKeeper to run it: its parser checks every statement."""
    for statement in create_statements("rs", "rs_cluster"):
        chdb.query(f"EXPLAIN AST {statement}", "CSV")


def test_a_cluster_upgrade_alters_the_shards_tables_and_the_distributed_one() -> None:
    statements = upgrade_statements("rs", ["source_topic"], "c")
    assert (
        "ALTER TABLE `rs`.predictions_local ON CLUSTER `c` ADD COLUMN record_id String"
        in statements
    )
    assert (
        "ALTER TABLE `rs`.predictions ON CLUSTER `c` ADD COLUMN record_id String"
        in statements
    )
    for statement in statements:
        chdb.query(f"EXPLAIN AST {statement}", "CSV")
