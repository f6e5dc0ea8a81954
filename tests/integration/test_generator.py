"""The generator on the real Kafka: it declares the topic, keys records by id and keeps its rate."""

from __future__ import annotations

import asyncio
import secrets
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from core.settings import Settings
from datagen.generator import (
    GeneratorConfig,
    field_ranges,
    generate,
    random_rows,
    unread_records,
)
from models.records import FeatureField, FeatureSchema, decode_features

SCHEMA = FeatureSchema(
    "m", "1", tuple(FeatureField(f"f{i}", 1.0, 10.0) for i in range(9))
)


async def read_all(
    settings: Settings, topic: str, expected: int
) -> list[tuple[bytes, bytes]]:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=settings.kafka_bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    records: list[tuple[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + 60
        while len(records) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=1000)
            for messages in batch.values():
                records.extend((m.key, m.value) for m in messages)
    finally:
        await consumer.stop()
    return records


def test_every_record_produced_is_in_the_topic_once_keyed_by_its_id(
    stack: Settings,
) -> None:
    topic = f"it-gen-{secrets.token_hex(4)}"
    config = GeneratorConfig(
        bootstrap=stack.kafka_bootstrap,
        topic=topic,
        partitions=4,
        schema=SCHEMA,
        count=12_345,
    )
    report = asyncio.run(
        generate(config, random_rows(field_ranges(SCHEMA, {}), seed=3))
    )
    assert report.produced == 12_345
    records = asyncio.run(read_all(stack, topic, 12_345))
    assert len(records) == 12_345
    keys = {key.decode() for key, _ in records}
    assert keys == {f"{config.run_id}-{i}" for i in range(12_345)}
    assert all(decode_features(value, SCHEMA).values for _, value in records[:100])
    print(f"\nunthrottled: {report.rate_per_s:,.0f} records/s")


def test_a_rate_limit_spreads_the_records_over_time(stack: Settings) -> None:
    topic = f"it-gen-{secrets.token_hex(4)}"
    config = GeneratorConfig(
        bootstrap=stack.kafka_bootstrap,
        topic=topic,
        partitions=4,
        schema=SCHEMA,
        count=600,
        rate=300.0,
        format="json",
    )
    report = asyncio.run(
        generate(config, random_rows(field_ranges(SCHEMA, {}), seed=3))
    )
    assert report.produced == 600
    assert 1.8 <= report.elapsed_s <= 4.0, (
        f"600 records at 300/s took {report.elapsed_s:.2f} s"
    )


def test_unread_records_are_what_the_group_has_not_committed(stack: Settings) -> None:
    topic, group = f"it-lag-{secrets.token_hex(4)}", f"it-lag-{secrets.token_hex(4)}"
    config = GeneratorConfig(
        bootstrap=stack.kafka_bootstrap,
        topic=topic,
        partitions=2,
        schema=SCHEMA,
        count=1_000,
    )
    asyncio.run(generate(config, random_rows(field_ranges(SCHEMA, {}), seed=5)))

    async def commit_part_of_partition_0() -> int:
        consumer = AIOKafkaConsumer(
            bootstrap_servers=stack.kafka_bootstrap,
            group_id=group,
            enable_auto_commit=False,
        )
        await consumer.start()
        try:
            partition = TopicPartition(topic, 0)
            consumer.assign([partition])
            end = (await consumer.end_offsets([partition]))[partition]
            await consumer.commit({partition: end - 10})
            return end - 10
        finally:
            await consumer.stop()

    bootstrap = stack.kafka_bootstrap
    assert asyncio.run(unread_records(bootstrap, topic, group)) == 1_000
    committed = asyncio.run(commit_part_of_partition_0())
    assert asyncio.run(unread_records(bootstrap, topic, group)) == 1_000 - committed
    assert asyncio.run(unread_records(bootstrap, "no-such-topic", group)) == 0
