"""Labels in each real store (ClickHouse 18.16, PostgreSQL 15): stored once, the latest one joined."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator

import pytest

from core.settings import Settings
from stack import postgresql as stack_postgresql
from stack.warehouse import ADMIN_USER
from tables.predictions import LabelRow
from tables.sink import Sink
from tables.sinks import build_sink
from tests.integration.rows import prediction_row
from tests.private_clickhouse import admin_query

T0_MS = 1_767_323_050_000


@pytest.fixture(params=["clickhouse", "postgresql"])
def sink(request: pytest.FixtureRequest, stack: Settings) -> Iterator[Sink]:
    """A sink on a per-test database, as the stack's admin (it creates the database)."""
    database = f"it_{secrets.token_hex(4)}"
    if request.param == "postgresql":
        request.getfixturevalue("postgresql_stack")
        admin = {
            "host": str(stack_postgresql.socket_dir(stack)),
            "user": stack_postgresql.ADMIN_USER,
        }
    else:
        admin = {"user": ADMIN_USER}
    yield build_sink(request.param, stack, password="", database=database, **admin)
    if request.param == "postgresql":
        asyncio.run(
            stack_postgresql.admin_execute(
                stack, [f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)']
            )
        )
    else:
        admin_query(stack, f"DROP DATABASE IF EXISTS {database}")


def label(offset: int, record_id: str, value: str, observed_at_ms: int) -> LabelRow:
    return LabelRow(
        "labels", 0, offset, record_id, value, observed_at_ms // 1000, observed_at_ms
    )


def test_replayed_labels_are_stored_once_and_the_latest_label_is_joined(
    sink: Sink,
) -> None:
    predictions = [prediction_row(i) for i in range(4)]
    predictions[3] = predictions[3]._replace(true_label="0")  # carried its label
    labels = [
        label(0, "r-0", "0", T0_MS),
        label(1, "r-0", "1", T0_MS + 60_000),  # a later reading corrects the first
        label(2, "r-1", "1", T0_MS),
    ]

    async def run() -> tuple[int, list[tuple[str, str]]]:
        await sink.start()
        try:
            await sink.ensure_schema()
            await sink.ensure_schema()  # idempotent
            for _ in range(2):  # a replayed batch of each
                await sink.write_labels(labels)
                await sink.write(predictions)
        finally:
            await sink.stop()
        return await sink.count_labels(), sorted(await sink.labelled())

    count, labelled = asyncio.run(run())
    assert count == 3
    assert labelled == [("r-0", "1"), ("r-1", "1"), ("r-3", "0")]
