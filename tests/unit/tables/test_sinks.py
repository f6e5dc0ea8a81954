"""The sink interface without a server: merging, flushing, retrying; the registry; the settings."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from core.settings import Settings
from tables.clickhouse import ClickHouseSink
from tables.postgresql import PG_COLUMNS, PostgreSQLSink, create_table_statement
from tables.predictions import COLUMNS, LabelRow, PredictionRow
from tables.sink import Server, Sink
from tables.sinks import build_sinks
from tests.integration.rows import prediction_row as row


class MemorySink(Sink):
    """A store in a list; its first ``failures`` writes fail like a dropped connection."""

    name = "memory"
    kind = "Memory"
    transient = (ConnectionResetError,)

    def __init__(self, failures: int = 0, **options: Any) -> None:
        options = {
            "max_rows": 1000,
            "max_wait_s": 5.0,
            "max_backoff_s": 0.01,
            **options,
        }
        super().__init__(Server("memory", 0, "test"), **options)
        self.writes: list[list[PredictionRow]] = []
        self.label_writes: list[list[LabelRow]] = []
        self.failures = failures
        self.disconnects = 0

    @property
    def table(self) -> str:
        return "memory.predictions"

    async def _prepare(self) -> None:
        return None

    async def _insert(self, rows: Sequence[PredictionRow], stored_at_ms: int) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("the store went away")
        self.writes.append(list(rows))

    async def _insert_labels(self, rows: Sequence[LabelRow]) -> None:
        if self.failures:
            self.failures -= 1
            raise ConnectionResetError("the store went away")
        self.label_writes.append(list(rows))

    async def _disconnect(self) -> None:
        self.disconnects += 1

    async def count_rows(self) -> int:
        return sum(map(len, self.writes))

    async def count_records(self) -> int:
        return len({r[:3] for rows in self.writes for r in rows})

    async def rows(self, columns: Sequence[str]) -> list[tuple[Any, ...]]:
        return [tuple(getattr(r, c) for c in columns) for w in self.writes for r in w]

    async def count_labels(self) -> int:
        return len({r[:3] for rows in self.label_writes for r in rows})

    async def labelled(self) -> list[tuple[str, str]]:
        return [(r.record_id, r.label) for rows in self.label_writes for r in rows]

    async def shadow_agreement(self) -> list[tuple[str, str, str, int, int, int]]:
        return []

    def analysis_hint(self) -> str:
        return "look at the list"


async def test_batches_handed_over_together_share_one_write_once_nothing_more_can_come() -> (
    None
):
    sink = MemorySink()  # max_wait_s 5 s: without the trigger the rows would wait
    handed = 0

    async def hand(rows: list[PredictionRow]) -> int:
        nonlocal handed
        handed += 1
        return await sink.write(rows)

    sink.flush_when(lambda: handed >= 3)
    await sink.start()
    try:
        stamps = await asyncio.wait_for(
            asyncio.gather(
                *(hand([row(b * 10 + i) for i in range(10)]) for b in range(3))
            ),
            2,
        )
    finally:
        await sink.stop()
    assert len(sink.writes) == 1 and len(sink.writes[0]) == 30
    assert len(set(stamps)) == 1


async def test_a_write_reaching_max_rows_goes_at_once_and_failures_are_retried() -> (
    None
):
    sink = MemorySink(failures=2, max_rows=10)
    await sink.start()
    try:
        await asyncio.wait_for(sink.write([row(i) for i in range(10)]), 2)
    finally:
        await sink.stop()
    assert [[r.source_offset for r in w] for w in sink.writes] == [list(range(10))]
    assert sink.failed_inserts == 2 and sink.inserts == 1
    assert sink.disconnects >= 2  # a broken connection is dropped after each failure


async def test_a_label_write_is_retried_like_a_prediction_write() -> None:
    sink = MemorySink(failures=2)
    labels = [
        LabelRow("labels", 0, i, f"r{i}", "1", 1_767_323_045, 1_767_323_045_000)
        for i in range(3)
    ]
    await asyncio.wait_for(sink.write_labels(labels), 2)
    assert sink.label_writes == [labels] and sink.labels_inserted == 3
    assert sink.failed_inserts == 2 and sink.disconnects >= 2


async def test_an_unexpected_error_is_a_bug_and_is_not_retried() -> None:
    class Broken(MemorySink):
        async def _insert(
            self, rows: Sequence[PredictionRow], stored_at_ms: int
        ) -> None:
            raise TypeError("a row the store cannot take")

    sink = Broken(max_wait_s=0.01)
    with pytest.raises(TypeError):
        await sink._write_merged(
            [([row(1)], asyncio.get_running_loop().create_future())]
        )


def test_sinks_are_chosen_by_name_in_order_and_configured_from_the_settings() -> None:
    settings = Settings(
        sinks="postgresql, clickhouse",
        postgresql_port=15999,
        postgresql_password=SecretStr("s3cret"),
        clickhouse_database="warehouse",
    )
    postgresql, clickhouse = build_sinks(settings)
    assert isinstance(postgresql, PostgreSQLSink) and isinstance(
        clickhouse, ClickHouseSink
    )
    assert postgresql.server == Server(
        "127.0.0.1", 15999, "riskstream", "s3cret", "riskstream"
    )
    assert "s3cret" not in repr(postgresql.server)
    assert clickhouse.table == "warehouse.predictions"
    assert postgresql.table == "riskstream.predictions"
    with pytest.raises(ValueError, match="unknown sink 'mysql'"):
        build_sinks(Settings(sinks="mysql"))
    with pytest.raises(ValueError, match="names no sink"):
        build_sinks(Settings(sinks=" , "))


def test_postgresql_has_clickhouses_columns_and_the_coordinates_as_primary_key() -> (
    None
):
    assert list(PG_COLUMNS) == list(COLUMNS)
    assert PG_COLUMNS["event_time"] == PG_COLUMNS["stored_at"] == "timestamptz NOT NULL"
    assert PG_COLUMNS["feature_values"] == "double precision[] NOT NULL"
    assert PG_COLUMNS["predicted_value"].endswith("DEFAULT 'NaN'")
    # added to an older table with its rows: every old row gets the empty text
    assert PG_COLUMNS["explanation"] == "text NOT NULL DEFAULT ''"
    assert (
        "PRIMARY KEY (source_topic, source_partition, source_offset)"
        in create_table_statement()
    )


def test_the_local_stacks_generated_password_is_the_file_default(
    tmp_path: Path,
) -> None:
    generated = tmp_path / "postgresql" / "app-password"
    assert Settings(stack_dir=tmp_path).postgresql_password.get_secret_value() == ""
    generated.parent.mkdir()
    generated.write_text("from-the-stack\n")
    assert (
        Settings(stack_dir=tmp_path).postgresql_password.get_secret_value()
        == "from-the-stack"
    )
    # A password that was set wins, and setting both is still an error.
    chosen = Settings(stack_dir=tmp_path, postgresql_password=SecretStr("chosen"))
    assert chosen.postgresql_password.get_secret_value() == "chosen"
    with pytest.raises(ValueError, match="not both"):
        Settings(postgresql_password=SecretStr("x"), postgresql_password_file=generated)


async def test_rows_labels_and_the_schema_never_meet_on_the_connection() -> None:
    """The flush loop, the labels agent and the schema set-up take turns on the one connection."""
    busy: list[str] = []
    overlaps: list[tuple[str, str]] = []

    class OneAtATime(MemorySink):
        async def _use(self, what: str) -> None:
            if busy:
                overlaps.append((busy[0], what))
            busy.append(what)
            await asyncio.sleep(0.01)
            busy.remove(what)

        async def _prepare(self) -> None:
            await self._use("prepare")

        async def _insert(
            self, rows: Sequence[PredictionRow], stored_at_ms: int
        ) -> None:
            await self._use("rows")
            await super()._insert(rows, stored_at_ms)

        async def _insert_labels(self, rows: Sequence[LabelRow]) -> None:
            await self._use("labels")
            await super()._insert_labels(rows)

    sink = OneAtATime(max_wait_s=0.0)
    label = LabelRow("labels", 0, 0, "r0", "1", 0, 0)
    async with sink:
        await asyncio.gather(
            sink.ensure_schema(),
            sink.write([row(0), row(1)]),
            sink.write_labels([label]),
            sink.write([row(2)]),
            sink.write_labels([label]),
        )
    assert not overlaps
    assert await sink.count_rows() == 3 and len(sink.label_writes) == 2
