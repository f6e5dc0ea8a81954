"""The generator sends again what Kafka did not acknowledge, and counts each record once."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError, RecordTooLargeError

from datagen import generator
from datagen.generator import Delivery


class FlakyProducer:
    """Fails the first ``failures`` sends of each key (as an expired batch does), then acks."""

    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or KafkaTimeoutError()
        self.sends: list[bytes] = []

    async def send(self, topic: str, value: bytes, key: bytes) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        attempt = self.sends.count(key)
        self.sends.append(key)
        if attempt < self.failures:
            future.set_exception(self.error)
        else:
            future.set_result(None)
        return future


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(generator, "FIRST_BACKOFF_S", 0.001)


async def test_records_not_acknowledged_are_sent_again_until_they_are() -> None:
    producer = FlakyProducer(failures=2)
    delivery = Delivery(producer, "t", 0.01, lambda: False)  # type: ignore[arg-type]
    sent = [await delivery.send(f"k{i}".encode(), b"v") for i in range(10)]
    await delivery.confirm(sent)
    assert delivery.acknowledged == 10
    assert delivery.resent == 20
    assert sorted(set(producer.sends)) == sorted(f"k{i}".encode() for i in range(10))
    delivery.count_done(sent)  # on the way out: nothing is counted twice
    assert delivery.acknowledged == 10


async def test_a_record_kafka_can_never_take_stops_the_generator() -> None:
    producer = FlakyProducer(failures=1, error=RecordTooLargeError())
    delivery = Delivery(producer, "t", 0.01, lambda: False)  # type: ignore[arg-type]
    sent = [await delivery.send(b"k", b"v")]
    with pytest.raises(RecordTooLargeError):
        await delivery.confirm(sent)
    assert delivery.acknowledged == 0


async def test_stopping_ends_the_resending() -> None:
    producer = FlakyProducer(failures=100)
    delivery = Delivery(producer, "t", 0.01, lambda: True)  # type: ignore[arg-type]
    await delivery.confirm([await delivery.send(b"k", b"v")])
    assert delivery.acknowledged == 0 and delivery.resent == 0
