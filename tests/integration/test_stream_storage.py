"""The prediction writer on the real ClickHouse 18.16: DDL, batched inserts, replays counted once."""

from __future__ import annotations

import asyncio
import secrets
import time
import urllib.request
from collections.abc import Iterator

import pytest

from app.settings import Settings
from stack.warehouse import ADMIN_USER
from tables.predictions import INSERT_COLUMNS, STORED_AT_COLUMNS, dedup_count_query
from tables.writer import PredictionWriter


def clickhouse(settings: Settings, query: str) -> str:
    request = urllib.request.Request(
        f"http://127.0.0.1:{settings.clickhouse_http_port}/", data=query.encode()
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.read().decode())


def row(offset: int) -> tuple[object, ...]:
    values = {
        "source_topic": "features",
        "source_partition": offset % 4,
        "source_offset": offset,
        "record_id": f"r-{offset}",
        "event_time": 1_767_323_045,
        "event_time_ms": 1_767_323_045_500,
        "scored_at_ms": 1_767_323_045_600,
        "feature_names": ["clump_thickness", "bare_nuclei"],
        "feature_values": [5.0, float("nan")],
        "predicted_label": "1",
        "probability_labels": ["0", "1"],
        "probabilities": [0.25, 0.75],
        "true_label": "",
        "model_name": "breast-cancer",
        "model_version": "1",
        "model_server": "http://127.0.0.1:8501",
        "scoring_latency_ms": 1.5,
    }
    return tuple(values[c] for c in INSERT_COLUMNS if c not in STORED_AT_COLUMNS)


@pytest.fixture
def database(stack: Settings) -> Iterator[str]:
    name = f"it_{secrets.token_hex(4)}"
    yield name
    clickhouse(stack, f"DROP DATABASE IF EXISTS {name}")


def test_concurrent_batches_share_inserts_and_replays_are_counted_once(
    stack: Settings, database: str
) -> None:
    async def run() -> PredictionWriter:
        writer = PredictionWriter(
            host="127.0.0.1",
            port=stack.clickhouse_port,
            user=ADMIN_USER,  # a per-test database: the stack's admin creates it
            password="",
            database=database,
            max_rows=100_000,
            max_wait_s=0.2,
            max_backoff_s=1.0,
        )
        await writer.start()
        try:
            await writer.ensure_schema()
            await writer.ensure_schema()  # idempotent
            stamps = await asyncio.gather(
                *(
                    writer.store([row(b * 1000 + i) for i in range(1000)])
                    for b in range(10)
                )
            )
            assert len(set(stamps)) == 1  # ten batches, one insert
            await writer.store(
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

    async def run() -> tuple[PredictionWriter, float, set[int]]:
        writer = PredictionWriter(
            host="127.0.0.1",
            port=stack.clickhouse_port,
            user=ADMIN_USER,
            password="",
            database=database,
            max_rows=100_000,
            max_wait_s=60.0,  # would hold the rows for a minute without the trigger
            max_backoff_s=1.0,
        )
        writer.expect_callers(lambda: in_flight)
        await writer.start()
        try:
            await writer.ensure_schema()
            started = time.monotonic()
            stamps = await asyncio.wait_for(
                asyncio.gather(
                    *(
                        writer.store([row(b * 100 + i) for i in range(100)])
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
