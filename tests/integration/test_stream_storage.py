"""The ClickHouse sink on the real ClickHouse 18.16: DDL, batched inserts, replays counted once."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator

import pytest

from core.settings import Settings
from stack.warehouse import ADMIN_USER
from tables.clickhouse import ClickHouseSink
from tables.predictions import PredictionRow, dedup_count_query
from tables.sink import Server
from tests.integration.rows import prediction_row as row
from tests.private_clickhouse import admin_query
from tests.schema_history import PREDICTIONS_0_1

clickhouse = admin_query


@pytest.fixture
def database(stack: Settings) -> Iterator[str]:
    name = f"it_{secrets.token_hex(4)}"
    yield name
    clickhouse(stack, f"DROP DATABASE IF EXISTS {name}")


def admin_sink(
    settings: Settings, database: str, *, max_rows: int, max_wait_s: float
) -> ClickHouseSink:
    """A sink on a per-test database, as the stack's admin (it creates the database)."""
    return ClickHouseSink(
        Server("127.0.0.1", settings.clickhouse_port, ADMIN_USER, "", database),
        max_rows=max_rows,
        max_wait_s=max_wait_s,
        max_backoff_s=1.0,
    )


def test_concurrent_batches_share_inserts_and_replays_are_counted_once(
    stack: Settings, database: str
) -> None:
    async def run() -> ClickHouseSink:
        writer = admin_sink(stack, database, max_rows=100_000, max_wait_s=0.2)
        await writer.start()
        try:
            await writer.ensure_schema()
            await writer.ensure_schema()  # idempotent
            stamps = await asyncio.gather(
                *(
                    writer.write([row(b * 1000 + i) for i in range(1000)])
                    for b in range(10)
                )
            )
            assert len(set(stamps)) == 1  # ten batches, one insert
            await writer.write(
                [row(i) for i in range(500)]
            )  # a replay of stored records
        finally:
            await writer.stop()
        return writer

    writer = asyncio.run(run())
    assert writer.inserts == 2 and writer.rows_inserted == 10_500
    assert (
        clickhouse(stack, f"SELECT count() FROM {database}.predictions").strip()
        == "10500"
    )
    assert clickhouse(stack, dedup_count_query(database)).strip() == "10000"
    assert (
        clickhouse(stack, f"SELECT count() FROM {database}.predictions_unique").strip()
        == "10000"
    )
    stored = clickhouse(
        stack,
        f"SELECT isNaN(feature_values[2]), stored_at_ms >= event_time_ms, toYear(stored_at) "
        f"FROM {database}.predictions FINAL WHERE source_offset = 7 FORMAT TSV",
    ).split()
    assert stored[:2] == ["1", "1"] and int(stored[2]) >= 2026


def test_rows_go_in_at_once_when_every_batch_in_flight_waits_for_the_insert(
    stack: Settings, database: str
) -> None:
    """No waiting for rows that cannot come: the pipeline's batches are all at the writer."""
    in_flight = 3

    async def run() -> tuple[ClickHouseSink, float, set[int]]:
        writer = ClickHouseSink(
            Server(
                host="127.0.0.1",
                port=stack.clickhouse_port,
                user=ADMIN_USER,
                password="",
                database=database,
            ),
            max_rows=100_000,
            max_wait_s=60.0,  # would hold the rows for a minute without the trigger
            max_backoff_s=1.0,
        )
        handed = 0

        async def hand(rows: list[PredictionRow]) -> int:
            nonlocal handed
            handed += 1  # as the pipeline counts a batch at its store step
            return await writer.write(rows)

        writer.flush_when(lambda: handed >= in_flight)
        await writer.start()
        try:
            await writer.ensure_schema()
            started = time.monotonic()
            stamps = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        hand([row(b * 100 + i) for i in range(100)])
                        for b in range(in_flight)
                    )
                ),
                timeout=30,
            )
            took_s = time.monotonic() - started
        finally:
            await writer.stop()
        return writer, took_s, set(stamps)

    writer, took_s, stamps = asyncio.run(run())
    assert (
        writer.inserts == 1 and len(stamps) == 1
    )  # the three batches share one insert
    assert took_s < 30
    assert (
        clickhouse(stack, f"SELECT count() FROM {database}.predictions").strip()
        == "300"
    )


def test_an_older_table_is_upgraded_in_place_by_the_writer_keeping_its_rows(
    stack: Settings, database: str
) -> None:
    clickhouse(stack, f"CREATE DATABASE {database}")
    clickhouse(stack, PREDICTIONS_0_1.format(db=database))
    clickhouse(
        stack,
        f"CREATE VIEW {database}.predictions_unique AS "
        f"SELECT * FROM {database}.predictions FINAL",
    )
    clickhouse(
        stack,
        f"INSERT INTO {database}.predictions (source_topic, source_partition, "
        "source_offset, record_id, event_time, predicted_label) "
        "VALUES ('features', 0, 1, 'old-1', 1767323045, '0')",
    )

    async def run() -> None:
        writer = admin_sink(stack, database, max_rows=100, max_wait_s=0.05)
        await writer.start()
        try:
            await writer.ensure_schema()
            await writer.write([row(2)])
        finally:
            await writer.stop()

    asyncio.run(run())
    stored = clickhouse(
        stack,
        "SELECT record_id, text_feature_values, isNaN(predicted_value), explanation "
        f"FROM {database}.predictions_unique ORDER BY source_offset FORMAT TSV",
    )
    assert stored.splitlines() == ["old-1\t[]\t1\t", "r-2\t['yes']\t1\t"]


def test_a_batch_leaves_out_only_the_columns_that_hold_their_default_in_every_row(
    stack: Settings, database: str
) -> None:
    """18.16 fills a left-out column with its default; a column any row sets is written for all."""
    plain = row(1)._replace(text_feature_names=[], text_feature_values=[])
    shadowed = row(2)._replace(
        shadow_version="2",
        shadow_label="0",
        shadow_probabilities=[0.5, 0.5],
        explanation='{"kind":"tree"}',
    )

    async def run() -> None:
        writer = admin_sink(stack, database, max_rows=100, max_wait_s=0.05)
        await writer.start()
        try:
            await writer.ensure_schema()
            await writer.write([plain])  # every defaulted column left out
            await writer.write(
                [row(3), shadowed]
            )  # text inputs, shadow, explanation in
        finally:
            await writer.stop()

    asyncio.run(run())
    stored = clickhouse(
        stack,
        "SELECT source_offset, text_feature_names, text_feature_values, "
        "isNaN(predicted_value), shadow_version, shadow_label, shadow_probabilities, "
        "explanation, feature_names, probabilities "
        f"FROM {database}.predictions_unique ORDER BY source_offset FORMAT TSV",
    )
    names, probabilities = "['clump_thickness','bare_nuclei']", "[0.25,0.75]"
    assert stored.splitlines() == [
        f"1\t[]\t[]\t1\t\t\t[]\t\t{names}\t{probabilities}",
        f"2\t['smoker']\t['yes']\t1\t2\t0\t[0.5,0.5]\t{{\"kind\":\"tree\"}}\t{names}\t{probabilities}",
        f"3\t['smoker']\t['yes']\t1\t\t\t[]\t\t{names}\t{probabilities}",
    ]
