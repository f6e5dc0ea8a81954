"""The local stack is real: Kafka and ClickHouse answer clients, the CLI sees them."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from asynch.connection import Connection

from core.settings import Settings
from stack import control
from stack.warehouse import ADMIN_USER

pytestmark = pytest.mark.stack

#: Seconds any single client step may take before the test fails instead of hanging.
STEP_TIMEOUT_S = 60


async def test_kafka_round_trip_returns_every_message_in_order(stack: Settings) -> None:
    topic = f"test-stack-{uuid.uuid4().hex[:12]}"
    sent = [f"message {i}".encode() for i in range(500)]
    admin = AIOKafkaAdminClient(bootstrap_servers=stack.kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics(
            [NewTopic(topic, num_partitions=1, replication_factor=1)]
        )
        assert topic in await admin.list_topics()

        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap, acks="all")
        await producer.start()
        try:
            for value in sent:
                await producer.send(topic, value, key=b"patient")
            await producer.flush()
        finally:
            await producer.stop()

        consumer = AIOKafkaConsumer(
            topic,
            bootstrap_servers=stack.kafka_bootstrap,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=None,
        )
        await consumer.start()
        received: list[bytes] = []
        try:
            async with asyncio.timeout(STEP_TIMEOUT_S):
                async for record in consumer:
                    received.append(record.value)
                    if len(received) == len(sent):
                        break
        finally:
            await consumer.stop()
        assert received == sent
    finally:
        await admin.delete_topics([topic])
        await admin.close()


async def test_clickhouse_stores_and_returns_10000_rows(stack: Settings) -> None:
    table = f"default.test_stack_{uuid.uuid4().hex[:12]}"
    rows = [(i, f"patient-{i}", i / 8) for i in range(10_000)]
    connection = Connection(
        host=stack.clickhouse_host,
        port=stack.clickhouse_port,
        user=ADMIN_USER,  # a scratch table outside the app's database
    )
    async with connection, connection.cursor() as cursor:
        await cursor.execute(
            f"CREATE TABLE {table} (id UInt32, label String, score Float64) ENGINE = MergeTree() ORDER BY id"
        )
        try:
            inserted = await cursor.execute(
                f"INSERT INTO {table} (id, label, score) VALUES", rows
            )
            assert inserted == len(rows)
            await cursor.execute(f"SELECT count(), sum(id), max(score) FROM {table}")
            assert await cursor.fetchone() == (10_000, sum(range(10_000)), 9_999 / 8)
            await cursor.execute(f"SELECT id, label, score FROM {table} ORDER BY id")
            assert await cursor.fetchall() == rows
        finally:
            await cursor.execute(f"DROP TABLE IF EXISTS {table}")


def test_stack_status_reports_every_running_service_up(
    postgresql_stack: Settings,
) -> None:
    stack = postgresql_stack
    riskstream = Path(sys.executable).with_name("riskstream")
    result = subprocess.run(
        [str(riskstream), "stack", "status"],
        capture_output=True,
        text=True,
        timeout=STEP_TIMEOUT_S,
        env=os.environ,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reported = {
        line.split()[0]: line.split()[1:3] for line in result.stdout.splitlines()
    }
    assert reported == {
        "kafka": [f"127.0.0.1:{stack.kafka_port}", "up"],
        "clickhouse": [f"127.0.0.1:{stack.clickhouse_port}", "up"],
        # Not a base service, but listed while the stack runs it.
        "postgresql": [f"127.0.0.1:{stack.postgresql_port}", "up"],
    }


async def test_second_up_starts_nothing_and_keeps_the_same_processes(
    stack: Settings,
) -> None:
    before = {status.name: status.pid for status in await control.status(stack)}
    assert await control.up(stack) == []
    after = {status.name: status.pid for status in await control.status(stack)}
    assert after == before
    assert None not in after.values()
