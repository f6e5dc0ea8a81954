"""The feature generator: Flink-datagen-style random rows, or a replay of the data set.

Rows follow the served model's schema (its inputs in PMML order and their
valid ranges), read from a model server or, when none answers, from the
repository's PMML: a model with other inputs needs no code change. Random
rows draw integers per input within ``min``-``max`` (default: the model's
valid range), floats when a bound is fractional; any bound can be
overridden per input, like Flink's ``fields.X.min/max``.

Records go straight to Kafka through aiokafka's batching producer, keyed by
record id (``<run id>-<sequence>``; in a replay the sequence modulo the
data-set size is the row number). The producer is idempotent (the broker
drops the copies its own retries would write), and records Kafka did not
acknowledge in time (a broker restart, a network cut longer than the
producer's request timeout) are sent again with capped backoff until it
does: every id gets into the topic. A record sent again after a lost
acknowledgement may be in the topic twice, under two offsets; the run logs
how many were sent again. Speed is the point: rows are drawn in
blocks with numpy and the send loop only appends to the producer's batches,
waiting for delivery once per block, so an unthrottled run reaches tens of
thousands of records per second. A rate limit spreads the same blocks over
time (a token bucket ticking every 20 ms).
"""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, KafkaTimeoutError, TopicAlreadyExistsError

from app.backoff import Backoff
from models.records import FeatureSchema, encode_csv, encode_json

__all__ = [
    "Delivery",
    "FieldRange",
    "GeneratorConfig",
    "GeneratorReport",
    "SentRecord",
    "declare_topic",
    "generate",
    "random_rows",
    "replay_rows",
]

logger = logging.getLogger(__name__)

#: Rows drawn and sent per block; the producer is flushed once per block.
BLOCK_ROWS = 5_000

#: Seconds between two rate-limiter ticks.
TICK_S = 0.02

#: Range of an input the model leaves unbounded.
OPEN_RANGE = (0.0, 100.0)

#: First pause before records Kafka did not acknowledge are sent again; it doubles.
FIRST_BACKOFF_S = 0.5

#: One record's input values in schema order (None = missing).
Row = Sequence[float | None]

#: A block of rows and their ground-truth labels (None when there is none).
Block = tuple[Sequence[Row], Sequence[str | None]]


@dataclass(frozen=True)
class FieldRange:
    """The interval random values of one input are drawn from (inclusive)."""

    low: float
    high: float

    @property
    def integral(self) -> bool:
        return float(self.low).is_integer() and float(self.high).is_integer()


@dataclass
class GeneratorConfig:
    """What to produce, where, how many and how fast."""

    bootstrap: str
    topic: str
    partitions: int
    schema: FeatureSchema
    count: int | None = None
    rate: float | None = None
    format: str = "csv"
    overrides: dict[str, FieldRange] = field(default_factory=dict)
    seed: int | None = None
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    #: aiokafka's security options (``app.security.kafka_client_options``)
    client_options: dict[str, Any] = field(default_factory=dict)
    #: longest pause between two sends of records Kafka did not acknowledge
    max_backoff_s: float = 5.0


@dataclass
class GeneratorReport:
    """What a run produced: records acknowledged by Kafka and the achieved rate."""

    run_id: str
    produced: int
    elapsed_s: float
    #: records sent again because Kafka had not acknowledged them
    resent: int = 0

    @property
    def rate_per_s(self) -> float:
        return self.produced / self.elapsed_s if self.elapsed_s > 0 else 0.0


def field_ranges(
    schema: FeatureSchema, overrides: dict[str, FieldRange]
) -> list[FieldRange]:
    """Each input's range: the override, else the model's valid range."""
    unknown = set(overrides) - set(schema.names)
    if unknown:
        raise ValueError(
            f"--field names inputs the model does not have: {', '.join(sorted(unknown))} "
            f"(inputs: {', '.join(schema.names)})"
        )
    ranges = []
    for spec in schema.fields:
        low = spec.valid_min if spec.valid_min is not None else OPEN_RANGE[0]
        high = spec.valid_max if spec.valid_max is not None else OPEN_RANGE[1]
        override = overrides.get(spec.name)
        if override is not None:
            low, high = override.low, override.high
        if low > high:
            raise ValueError(f"field {spec.name}: min {low} is above max {high}")
        ranges.append(FieldRange(low, high))
    return ranges


def random_rows(ranges: Sequence[FieldRange], seed: int | None) -> Iterator[Block]:
    """Endless blocks of random rows (and no labels), drawn column by column with numpy."""
    rng = np.random.default_rng(seed)
    while True:
        columns = []
        for spec in ranges:
            if spec.integral:
                columns.append(
                    rng.integers(int(spec.low), int(spec.high) + 1, BLOCK_ROWS)
                )
            else:
                columns.append(
                    np.round(rng.uniform(spec.low, spec.high, BLOCK_ROWS), 4)
                )
        yield np.column_stack(columns).tolist(), [None] * BLOCK_ROWS


def replay_rows(rows: Sequence[Row], labels: Sequence[str]) -> Iterator[Block]:
    """The data set's rows in order, again and again, in blocks, with their true labels."""
    position = 0
    total = len(rows)
    while True:
        end = min(position + BLOCK_ROWS, total)
        yield list(rows[position:end]), list(labels[position:end])
        position = 0 if end == total else end


async def declare_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    client_options: dict[str, Any] | None = None,
) -> None:
    """Create the feature topic if it is missing (the broker does not auto-create topics)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client_options or {}))
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            try:
                await admin.create_topics([NewTopic(topic, partitions, 1)])
                logger.info("created topic %s with %d partitions", topic, partitions)
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def generate(
    config: GeneratorConfig,
    rows: Iterator[Block],
    progress: Callable[[int, float], None] | None = None,
    stop: asyncio.Event | None = None,
) -> GeneratorReport:
    """Produce ``config.count`` records (or until ``stop`` is set) from ``rows`` blocks.

    Returns once Kafka has acknowledged every record sent; ``produced`` counts
    only acknowledged records. ``progress`` is called about once a second
    with (records sent, seconds elapsed).
    """
    await declare_topic(
        config.bootstrap, config.topic, config.partitions, config.client_options
    )
    producer = AIOKafkaProducer(
        bootstrap_servers=config.bootstrap,
        acks="all",
        enable_idempotence=True,
        linger_ms=5,
        max_batch_size=256 * 1024,
        **config.client_options,
    )
    await producer.start()
    logger.info(
        "generator %s started: %s records to %s at %s (%s)",
        config.run_id,
        config.count if config.count is not None else "unbounded",
        config.topic,
        f"{config.rate:g} records/s" if config.rate else "full speed",
        config.format,
    )
    encode = _encoder(config)
    stopping = stop.is_set if stop is not None else (lambda: False)
    delivery = Delivery(producer, config.topic, config.max_backoff_s, stopping)
    send = delivery.send
    run_id = config.run_id
    started = last_progress = time.monotonic()
    # Two blocks in flight: block k is sent while block k-1's acks come back.
    pending: list[SentRecord] = []
    previous: list[SentRecord] = []
    sent = 0
    try:
        for block, labels in rows:
            if config.count is not None:
                block = block[: config.count - sent]
            for values, label in zip(block, labels, strict=False):
                if stopping():
                    break
                if config.rate:
                    await _pace(config.rate, started, sent)
                record_id = f"{run_id}-{sent}"
                pending.append(
                    await send(record_id.encode(), encode(record_id, values, label))
                )
                sent += 1
                if progress is not None and sent % 1000 == 0:
                    now = time.monotonic()
                    if now - last_progress >= 1.0:
                        progress(sent, now - started)
                        last_progress = now
            await delivery.confirm(previous)
            previous, pending = pending, []
            if stopping() or (config.count is not None and sent >= config.count):
                break
        await delivery.confirm(previous)
        previous = []
    finally:
        await producer.stop()
        delivery.count_done(previous + pending)
    elapsed = time.monotonic() - started
    report = GeneratorReport(
        config.run_id, delivery.acknowledged, elapsed, delivery.resent
    )
    logger.info(
        "generator %s stopped: %d records in %.1f s (%.0f records/s), %d sent again",
        config.run_id,
        report.produced,
        elapsed,
        report.rate_per_s,
        report.resent,
    )
    return report


@dataclass
class SentRecord:
    """A record handed to the producer, kept until Kafka acknowledges it (to send it again)."""

    key: bytes
    value: bytes
    future: asyncio.Future[Any] | None
    #: the error that kept it from being handed over or acknowledged
    error: BaseException | None = None
    acknowledged: bool = False


def _retriable(error: BaseException) -> bool:
    """Kafka could not take the record now (broker down or moving), as opposed to never."""
    return isinstance(error, KafkaTimeoutError) or bool(
        isinstance(error, KafkaError) and error.retriable
    )


class Delivery:
    """Sends records and makes sure Kafka acknowledged each, sending the others again."""

    def __init__(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        max_backoff_s: float,
        stopping: Callable[[], bool],
    ) -> None:
        self._producer = producer
        self._topic = topic
        self._max_backoff_s = max_backoff_s
        self._stopping = stopping
        self.acknowledged = 0
        self.resent = 0

    async def send(self, key: bytes, value: bytes) -> SentRecord:
        """Hand one record to the producer's batches (a failure is kept for :meth:`confirm`)."""
        try:
            future = await self._producer.send(self._topic, value, key=key)
        except KafkaError as error:
            if not _retriable(error):
                raise
            return SentRecord(key, value, None, error)
        return SentRecord(key, value, future)

    async def confirm(self, records: list[SentRecord]) -> None:
        """Return once Kafka acknowledged every record, sending the unacknowledged again."""
        backoff = Backoff(FIRST_BACKOFF_S, self._max_backoff_s)
        while records:
            futures = [record.future for record in records if record.future is not None]
            await asyncio.gather(*futures, return_exceptions=True)
            for record in records:
                if record.future is not None:
                    record.error = (
                        asyncio.CancelledError()
                        if record.future.cancelled()
                        else record.future.exception()
                    )
                if record.error is not None and not _retriable(record.error):
                    raise record.error
            failed = []
            for record in records:
                if record.error is None:
                    self._acknowledge(record)
                else:
                    failed.append(record)
            if not failed or self._stopping():
                return
            logger.warning(
                "Kafka did not acknowledge %d records (%s: %s); sending them again in %.1f s",
                len(failed),
                type(failed[0].error).__name__,
                failed[0].error,
                backoff.pause_s,
            )
            await backoff.wait()
            self.resent += len(failed)
            records = [await self.send(record.key, record.value) for record in failed]

    def count_done(self, records: list[SentRecord]) -> None:
        """Count the records acknowledged by now among those not confirmed yet (on the way out)."""
        for record in records:
            future = record.future
            if (
                future is not None
                and future.done()
                and not future.cancelled()
                and future.exception() is None
            ):
                self._acknowledge(record)

    def _acknowledge(self, record: SentRecord) -> None:
        if not record.acknowledged:
            record.acknowledged = True
            self.acknowledged += 1


async def _pace(rate: float, started: float, sent: int) -> None:
    """Sleep until record ``sent`` is due; one sleep covers a whole tick's worth."""
    due = started + sent / rate
    delay = due - time.monotonic()
    if delay > TICK_S:
        await asyncio.sleep(delay)


def _encoder(
    config: GeneratorConfig,
) -> Callable[[str, Sequence[float | None], str | None], bytes]:
    schema = config.schema
    if config.format == "csv":
        return lambda record_id, values, label: encode_csv(values)
    if config.format == "json":
        return lambda record_id, values, label: encode_json(
            schema, record_id, time.time(), values, label
        )
    raise ValueError(f"unknown format {config.format!r}: choose csv or json")


def as_row(values: Sequence[float]) -> list[float | None]:
    """A data-set row with NaN (pandas' missing value) as None."""
    return [None if math.isnan(v) else v for v in values]
