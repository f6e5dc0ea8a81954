"""The feature generator: Flink-datagen-style random rows, or a replay of the data set.

Rows follow the served model's schema (its inputs in PMML order and their
valid ranges), read from a model server or, when none answers, from the
repository's PMML: a model with other inputs needs no code change. Random
rows draw integers per input within ``min``-``max`` (default: the model's
valid range), floats when a bound is fractional; any bound can be
overridden per input, like Flink's ``fields.X.min/max``.

Records go straight to Kafka through aiokafka's batching producer, keyed by
record id (``<run id>-<sequence>``; in a replay the sequence modulo the
data-set size is the row number). Speed is the point: rows are drawn in
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

import numpy as np
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from models.records import FeatureSchema, encode_csv, encode_json

__all__ = [
    "FieldRange",
    "GeneratorConfig",
    "GeneratorReport",
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


@dataclass
class GeneratorReport:
    """What a run produced: records acknowledged by Kafka and the achieved rate."""

    run_id: str
    produced: int
    elapsed_s: float

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


async def declare_topic(bootstrap: str, topic: str, partitions: int) -> None:
    """Create the feature topic if it is missing (the broker does not auto-create topics)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
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
    await declare_topic(config.bootstrap, config.topic, config.partitions)
    producer = AIOKafkaProducer(
        bootstrap_servers=config.bootstrap,
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
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
    send = producer.send
    topic = config.topic
    run_id = config.run_id
    produced = 0
    started = last_progress = time.monotonic()
    # Two blocks in flight: block k is sent while block k-1's acks come back.
    pending: list[asyncio.Future[object]] = []
    previous: list[asyncio.Future[object]] = []
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
                    await send(
                        topic, encode(record_id, values, label), key=record_id.encode()
                    )
                )
                sent += 1
                if progress is not None and sent % 1000 == 0:
                    now = time.monotonic()
                    if now - last_progress >= 1.0:
                        progress(sent, now - started)
                        last_progress = now
            await asyncio.gather(*previous)
            produced += len(previous)
            previous, pending = pending, []
            if stopping() or (config.count is not None and sent >= config.count):
                break
        await asyncio.gather(*previous)
        produced += len(previous)
        previous = []
    finally:
        await producer.stop()
        produced += sum(
            1
            for future in (*previous, *pending)
            if future.done() and not future.cancelled() and future.exception() is None
        )
    elapsed = time.monotonic() - started
    report = GeneratorReport(config.run_id, produced, elapsed)
    logger.info(
        "generator %s stopped: %d records in %.1f s (%.0f records/s)",
        config.run_id,
        report.produced,
        elapsed,
        report.rate_per_s,
    )
    return report


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
