"""The feature generator: Flink-datagen-style random rows, or a replay of a table.

Rows follow the served model's schema (its inputs in PMML order, their
types, valid ranges and declared values), read from a model server or, when
none answers, from the repository's PMML: a model with other inputs needs
no code change. Random rows draw integers per numeric input within
``min``-``max`` (default: the model's valid range), floats when a bound is
fractional, and a categorical input's values uniformly from its declared
values; any bound or value list can be overridden per input, like Flink's
``fields.X.min/max``. A replay sends the rows of the model's data set, or of
any CSV file whose columns are named as the model's inputs, in order.

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

With a labels delay (``--labels-delay``) a replay sends each record
without its label, and the label (:func:`models.records.encode_label`,
keyed by the record id) to the labels topic that many seconds after the
record, as a biopsy result follows the first reading; the run ends once
the last label is sent and acknowledged.
"""

from __future__ import annotations

import asyncio
import csv
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from core.backoff import Backoff, worth_retrying
from core.security import kafka_client_options
from core.settings import Settings
from models.records import (
    DecodeError,
    FeatureField,
    FeatureSchema,
    encode_csv,
    encode_json,
    encode_label,
    parse_text,
)

__all__ = [
    "Block",
    "DelayedLabels",
    "Delivery",
    "FieldOverride",
    "FieldRange",
    "FieldValues",
    "GeneratorConfig",
    "GeneratorReport",
    "Row",
    "SentRecord",
    "check_csv_values",
    "declare_topic",
    "field_ranges",
    "generate",
    "random_rows",
    "read_csv_records",
    "replay_rows",
    "typed_value",
    "unread_records",
]

logger = logging.getLogger(__name__)

#: Rows drawn and sent per block; the producer is flushed once per block.
BLOCK_ROWS = 5_000

#: Seconds between two rate-limiter ticks.
TICK_S = 0.02

#: Longest sleep, in seconds, while the last labels wait for their time.
DRAIN_NAP_S = 0.5

#: Range of an input the model leaves unbounded.
OPEN_RANGE = (0.0, 100.0)

#: First pause before records Kafka did not acknowledge are sent again; it doubles.
FIRST_BACKOFF_S = 0.5

#: One input value: a number, a category's string, a boolean, None = missing.
Value = float | str | bool | None

#: One record's input values in schema order.
Row = Sequence[Value]


class Block(NamedTuple):
    """A block of rows with their ground-truth labels and, in a replay, their ids."""

    rows: Sequence[Row]
    labels: Sequence[str | None]  #: None where there is no ground truth
    #: the records' ids; None: generated ``<run id>-<sequence>``
    record_ids: Sequence[str] | None = None


@dataclass(frozen=True)
class FieldRange:
    """The interval random values of one numeric input are drawn from (inclusive)."""

    low: float
    high: float

    @property
    def integral(self) -> bool:
        return float(self.low).is_integer() and float(self.high).is_integer()


@dataclass(frozen=True)
class FieldValues:
    """The values random values of one input are drawn from, uniformly (typed by the schema)."""

    values: tuple[Value, ...]


@dataclass(frozen=True)
class FieldOverride:
    """The ``--field`` options of one input, as given: bounds, or the values to draw."""

    low: float | None = None
    high: float | None = None
    #: the texts of ``NAME.values=a|b|c``; a value listed twice is drawn twice as often
    values: tuple[str, ...] | None = None


@dataclass
class GeneratorConfig:
    """What to produce, where, how many and how fast."""

    bootstrap: str
    topic: str
    partitions: int
    schema: FeatureSchema
    #: copies of each partition of a topic this generator creates, and its topic configs
    replication_factor: int = 1
    topic_config: dict[str, str] = field(default_factory=dict)
    count: int | None = None
    rate: float | None = None
    format: str = "csv"
    overrides: dict[str, FieldRange] = field(default_factory=dict)
    seed: int | None = None
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    #: aiokafka's security options (``core.security.kafka_client_options``)
    client_options: dict[str, Any] = field(default_factory=dict)
    #: longest pause between two sends of records Kafka did not acknowledge
    max_backoff_s: float = 5.0
    #: where labels go when they travel apart from their records
    labels_topic: str = "labels"
    #: seconds between a record and its label on the labels topic; None: the label rides in the record
    labels_delay_s: float | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, schema: FeatureSchema, **options: Any
    ) -> GeneratorConfig:
        """Kafka, topic and retries from the settings; ``options`` as the command gives them."""
        return cls(
            bootstrap=settings.kafka_bootstrap,
            topic=settings.feature_topic,
            partitions=settings.topic_partitions,
            schema=schema,
            replication_factor=settings.replication_factor,
            topic_config=settings.topic_config,
            client_options=kafka_client_options(settings),
            max_backoff_s=settings.retry_max_backoff_s,
            labels_topic=settings.labels_topic,
            **options,
        )


@dataclass
class GeneratorReport:
    """What a run produced: records acknowledged by Kafka and the achieved rate."""

    run_id: str
    produced: int
    elapsed_s: float
    #: records sent again because Kafka had not acknowledged them
    resent: int = 0
    #: labels Kafka acknowledged on the labels topic (with a labels delay)
    labels: int = 0

    @property
    def rate_per_s(self) -> float:
        return self.produced / self.elapsed_s if self.elapsed_s > 0 else 0.0


def typed_value(spec: FeatureField, text: str) -> Value:
    """``text`` as the value the input's schema types it, as the worker decodes a CSV cell.

    Raises ValueError saying why ``text`` is not such a value.
    """
    try:
        return parse_text(text, spec)
    except DecodeError as error:
        raise ValueError(f"the value {error}") from None


def _draw(
    spec: FeatureField, override: FieldOverride | None
) -> FieldRange | FieldValues:
    """How random values of one input are drawn: the override, else what the model declares."""
    if override is not None and override.values is not None:
        if override.low is not None or override.high is not None:
            raise ValueError(
                f"field {spec.name}: give either values or min/max, not both"
            )
        try:
            return FieldValues(tuple(typed_value(spec, v) for v in override.values))
        except ValueError as error:
            raise ValueError(f"field {spec.name}: {error}") from None
    if not spec.numeric:
        if override is not None:
            raise ValueError(
                f"field {spec.name} is a {spec.data_type} input: give "
                f"{spec.name}.values=a|b|c instead of min/max"
            )
        if spec.values:
            return FieldValues(tuple(typed_value(spec, v) for v in spec.values))
        if spec.data_type == "boolean":
            return FieldValues((False, True))
        raise ValueError(
            f"field {spec.name} is a {spec.data_type} input the model declares no "
            f"values for: give {spec.name}.values=a|b|c"
        )
    if override is None and spec.values:
        # a numeric category (e.g. integer codes): only its declared values
        return FieldValues(tuple(typed_value(spec, v) for v in spec.values))
    low = spec.valid_min if spec.valid_min is not None else OPEN_RANGE[0]
    high = spec.valid_max if spec.valid_max is not None else OPEN_RANGE[1]
    if override is not None:
        low = override.low if override.low is not None else low
        high = override.high if override.high is not None else high
    if low > high:
        raise ValueError(f"field {spec.name}: min {low} is above max {high}")
    return FieldRange(low, high)


def field_ranges(
    schema: FeatureSchema, overrides: dict[str, FieldOverride]
) -> list[FieldRange | FieldValues]:
    """Each input's range or values to draw from: the override, else what the model declares.

    Raises ValueError for an override of an unknown input, bounds of a
    string input, values its type refuses, or a string input without
    declared values and without an override.
    """
    unknown = set(overrides) - set(schema.names)
    if unknown:
        raise ValueError(
            f"--field names inputs the model does not have: {', '.join(sorted(unknown))} "
            f"(inputs: {', '.join(schema.names)})"
        )
    return [_draw(spec, overrides.get(spec.name)) for spec in schema.fields]


def random_rows(
    draws: Sequence[FieldRange | FieldValues], seed: int | None
) -> Iterator[Block]:
    """Endless blocks of random rows (and no labels), drawn column by column with numpy."""
    rng = np.random.default_rng(seed)
    while True:
        columns: list[list[Value]] = []
        for draw in draws:
            if isinstance(draw, FieldValues):
                picks = rng.integers(0, len(draw.values), BLOCK_ROWS)
                columns.append([draw.values[i] for i in picks])
            elif draw.integral:
                columns.append(
                    rng.integers(int(draw.low), int(draw.high) + 1, BLOCK_ROWS).tolist()
                )
            else:
                columns.append(
                    np.round(rng.uniform(draw.low, draw.high, BLOCK_ROWS), 4).tolist()
                )
        yield Block(list(zip(*columns, strict=True)), [None] * BLOCK_ROWS)


def replay_rows(
    rows: Sequence[Row],
    labels: Sequence[str | None],
    record_ids: Sequence[str] | None = None,
) -> Iterator[Block]:
    """The rows in order, again and again, in blocks, with their labels (and ids, if given).

    With ids, a replay longer than the rows sends each id again.
    """
    position = 0
    total = len(rows)
    while True:
        end = min(position + BLOCK_ROWS, total)
        yield Block(
            list(rows[position:end]),
            list(labels[position:end]),
            None if record_ids is None else list(record_ids[position:end]),
        )
        position = 0 if end == total else end


def read_csv_records(
    path: Path,
    schema: FeatureSchema,
    label_column: str | None = None,
    id_column: str | None = None,
) -> Block:
    """Every row of a CSV file with a header row, as the model's inputs typed by its schema.

    The columns named as the model's inputs are read (others are ignored),
    an empty cell is a missing value; ``label_column`` gives the true
    labels and ``id_column`` the record ids. Raises ValueError naming the
    missing columns, or the line and column of a cell the schema refuses.
    """
    try:
        with path.open(newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            header = next(reader, None)
            if header is None:
                raise ValueError(
                    f"{path} is empty: a header row naming the columns is needed"
                )
            columns = {name: index for index, name in enumerate(header)}
            wanted = [
                *schema.names,
                *(c for c in (label_column, id_column) if c is not None),
            ]
            missing = [name for name in wanted if name not in columns]
            if missing:
                raise ValueError(
                    f"{path} has no column {', '.join(repr(m) for m in missing)} "
                    f"(its columns: {', '.join(header)})"
                )
            rows: list[Row] = []
            labels: list[str | None] = []
            record_ids: list[str] = []
            for line, cells in enumerate(reader, start=2):
                if not cells:
                    continue  # a blank line
                if len(cells) != len(header):
                    raise ValueError(
                        f"{path} line {line}: {len(cells)} cells, the header has {len(header)}"
                    )
                row: list[Value] = []
                for spec in schema.fields:
                    text = cells[columns[spec.name]]
                    try:
                        row.append(typed_value(spec, text) if text else None)
                    except ValueError as error:
                        raise ValueError(
                            f"{path} line {line}, column {spec.name}: {error}"
                        ) from None
                rows.append(row)
                labels.append(
                    (cells[columns[label_column]] or None) if label_column else None
                )
                if id_column is not None:
                    record_id = cells[columns[id_column]]
                    if not record_id:
                        raise ValueError(
                            f"{path} line {line}: empty record id in column {id_column}"
                        )
                    record_ids.append(record_id)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise ValueError(f"cannot read {path}: {error}") from error
    return Block(rows, labels, record_ids if id_column is not None else None)


async def declare_topic(
    bootstrap: str,
    topic: str,
    partitions: int,
    client_options: dict[str, Any] | None = None,
    replication_factor: int = 1,
    config: Mapping[str, str] | None = None,
) -> None:
    """Create ``topic`` if it is missing (the broker does not auto-create topics), as the app would."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **(client_options or {}))
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            topic,
                            partitions,
                            replication_factor,
                            topic_configs=dict(config or {}),
                        )
                    ]
                )
                logger.info(
                    "created topic %s with %d partitions x %d replicas",
                    topic,
                    partitions,
                    replication_factor,
                )
            except TopicAlreadyExistsError:
                pass
    finally:
        await admin.close()


async def unread_records(
    bootstrap: str,
    topic: str,
    group: str,
    client_options: dict[str, Any] | None = None,
) -> int:
    """Records of ``topic`` the consumer group ``group`` has not committed yet (its lag).

    A partition the group never committed counts from its first record,
    where a new worker starts (``consumer_auto_offset_reset="earliest"``).
    """
    options = client_options or {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **options)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, **options)
    await admin.start()
    await consumer.start()
    try:
        if topic not in await admin.list_topics():
            return 0
        (described,) = await admin.describe_topics([topic])
        partitions = [
            TopicPartition(topic, entry["partition"])
            for entry in described["partitions"]
        ]
        committed = {
            tp: meta.offset
            for tp, meta in (await admin.list_consumer_group_offsets(group)).items()
            if meta.offset >= 0
        }
        first = await consumer.beginning_offsets(partitions)
        last = await consumer.end_offsets(partitions)
        # committed was read first: an end read after it is never behind it
        return sum(max(last[tp] - committed.get(tp, first[tp]), 0) for tp in partitions)
    finally:
        await consumer.stop()
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
    for topic in (
        [config.topic]
        if config.labels_delay_s is None
        else [config.topic, config.labels_topic]
    ):
        await declare_topic(
            config.bootstrap,
            topic,
            config.partitions,
            config.client_options,
            config.replication_factor,
            config.topic_config,
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
    labels = (
        None
        if config.labels_delay_s is None
        else DelayedLabels(
            Delivery(producer, config.labels_topic, config.max_backoff_s, stopping),
            config.labels_delay_s,
        )
    )
    send = delivery.send
    run_id = config.run_id
    started = last_progress = time.monotonic()
    # Two blocks in flight: block k is sent while block k-1's acks come back.
    pending: list[SentRecord] = []
    previous: list[SentRecord] = []
    sent = 0
    try:
        for block in rows:
            records = block.rows
            if config.count is not None:
                records = records[: config.count - sent]
            ids = block.record_ids
            for index, (values, label) in enumerate(
                zip(records, block.labels, strict=False)
            ):
                if stopping():
                    break
                if config.rate:
                    await _pace(config.rate, started, sent)
                record_id = ids[index] if ids is not None else f"{run_id}-{sent}"
                if labels is not None:
                    if label is not None:
                        labels.hold(record_id, label)
                    label = None
                    await labels.send_due()
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
            if labels is not None:
                await labels.confirm()
            if stopping() or (config.count is not None and sent >= config.count):
                break
        await delivery.confirm(previous)
        previous = []
        if labels is not None:
            await labels.drain(stopping)
    finally:
        await producer.stop()
        delivery.count_done(previous + pending)
        if labels is not None:
            labels.count_done()
    elapsed = time.monotonic() - started
    report = GeneratorReport(
        config.run_id,
        delivery.acknowledged,
        elapsed,
        delivery.resent,
        labels=0 if labels is None else labels.delivery.acknowledged,
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
            if not worth_retrying(error):
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
                if record.error is not None and not worth_retrying(record.error):
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


class DelayedLabels:
    """Labels held back from their records and sent ``delay_s`` seconds after each."""

    def __init__(self, delivery: Delivery, delay_s: float) -> None:
        self.delivery = delivery
        self._delay_s = delay_s
        #: (monotonic time it is due, record id, label), in the order they fall due
        self._due: deque[tuple[float, str, str]] = deque()
        self._sent: list[SentRecord] = []

    def hold(self, record_id: str, label: str) -> None:
        """Keep ``record_id``'s label until ``delay_s`` from now."""
        self._due.append((time.monotonic() + self._delay_s, record_id, label))

    async def send_due(self) -> None:
        """Hand over every label whose time has come, observed now."""
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            _, record_id, label = self._due.popleft()
            self._sent.append(
                await self.delivery.send(
                    record_id.encode(), encode_label(record_id, label, time.time())
                )
            )

    async def confirm(self) -> None:
        """Return once Kafka acknowledged the labels handed over so far."""
        await self.delivery.confirm(self._sent)
        self._sent = []

    async def drain(self, stopping: Callable[[], bool]) -> None:
        """Send the labels still held, each at its time, unless the run is stopped."""
        while self._due and not stopping():
            # short naps, so that Ctrl-C does not wait out a long delay
            await asyncio.sleep(
                min(max(self._due[0][0] - time.monotonic(), 0.0), DRAIN_NAP_S)
            )
            await self.send_due()
        await self.confirm()

    def count_done(self) -> None:
        """Count the labels acknowledged by now (on the way out)."""
        self.delivery.count_done(self._sent)


async def _pace(rate: float, started: float, sent: int) -> None:
    """Sleep until record ``sent`` is due; one sleep covers a whole tick's worth."""
    due = started + sent / rate
    delay = due - time.monotonic()
    if delay > TICK_S:
        await asyncio.sleep(delay)


def check_csv_values(name: str, values: Iterable[Value]) -> None:
    """Raise ValueError if one of input ``name``'s values cannot travel in a CSV line.

    The reference's CSV has no quoting, so a comma (or a line break) inside
    a value would shift or cut the fields after it.
    """
    for value in values:
        try:
            encode_csv((value,))
        except ValueError as error:
            raise ValueError(f"input {name}: {error}: use --format json") from None


def _encoder(
    config: GeneratorConfig,
) -> Callable[[str, Row, str | None], bytes]:
    schema = config.schema
    if config.format == "csv":
        return lambda record_id, values, label: encode_csv(values)
    if config.format == "json":
        return lambda record_id, values, label: encode_json(
            schema, record_id, time.time(), values, label
        )
    raise ValueError(f"unknown format {config.format!r}: choose csv or json")


def as_row(values: Sequence[Value]) -> list[Value]:
    """A data-set row with NaN (pandas' missing value) as None."""
    return [None if isinstance(v, float) and math.isnan(v) else v for v in values]
