"""What a worker does with a batch of feature records, and in which order it acks them.

:class:`BatchProcessor` is the plain async handler behind the agent: decode
the raw records (malformed ones, and those over ``max_record_bytes``,
become dead letters), score the rest on the
model-server pool in concurrent requests, dead-letter the rows the model
rejects, write the predictions to every sink (ClickHouse, PostgreSQL: see
:mod:`tables.sinks`) at once and publish the dead letters, and return what
happened (:class:`BatchOutcome`). It knows nothing of Faust
streams; tests drive it with plain message objects.

:class:`Pipeline` adds the delivery guarantees. The agent hands it batches
of Kafka messages; it processes up to ``batches_in_flight`` of them at once
(scoring batch N+1 while batch N is being stored) and refuses more until one
completes, which stops the agent pulling from Kafka. Completed batches are
acked strictly in the order they were taken, each only after
:meth:`BatchProcessor.process` has returned, i.e. after every one of its
rows is in every sink and every dead letter is confirmed by Kafka. Faust
commits an offset only once it and all earlier offsets of its partition are
acked, so a committed offset always means "stored". Nothing here raises for
transient failures (the pool, the sinks and the dead-letter publisher wait
them out); if processing fails anyway, the worker crashes without acking:
the batch is replayed by whoever takes the partition next, and the
idempotent tables absorb the repeat.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from mode import Service
from mode.utils.locks import Event

from agents.scoring_client import RequestRejected, ScoredRequest
from models.protocol import (
    ERROR_KEY,
    EXPLANATION_KEY,
    LABEL_KEY,
    PREDICTION_KEY,
    PREDICTION_TEXT_KEY,
    SHADOW_LABEL_KEY,
    SHADOW_PROBABILITIES_KEY,
    SHADOW_VERSION_KEY,
    VERSION_KEY,
    probability_key,
)
from models.records import (
    DEFAULT_KEYS,
    MAX_EVENT_TIME_S,
    DeadLetter,
    DecodedRecord,
    DecodeError,
    FeatureSchema,
    RecordKeys,
    decode_features,
)
from tables.histogram import bucket_counts
from tables.predictions import PredictionRow
from tables.tally import BatchOutcome, PartitionTally

__all__ = [
    "BatchProcessor",
    "MessageLike",
    "Pipeline",
]

logger = logging.getLogger(__name__)

#: What every class-probability key of an answer starts with: ``probability(<class>)``.
PROBABILITY_PREFIX = probability_key("")[:-1]

#: Distinct answer key sets remembered (a model has one or two: answer and error).
MAX_ANSWER_LAYOUTS = 64


class MessageLike(Protocol):
    """The parts of a Kafka message the pipeline reads (Faust's ``Message`` has them)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: float


class Scorer(Protocol):
    async def score(
        self, instances: Sequence[Mapping[str, float]]
    ) -> ScoredRequest: ...


class RowStore(Protocol):
    """A prediction store as the pipeline sees it (:class:`tables.sink.Sink`)."""

    async def write(self, rows: Sequence[PredictionRow]) -> int: ...


class DeadLetterSink(Protocol):
    async def publish(self, letters: Sequence[DeadLetter]) -> None: ...


class BatchProcessor:
    """Decode, score, store and dead-letter one batch; never ack anything itself."""

    def __init__(
        self,
        *,
        schema: FeatureSchema,
        scorer: Scorer,
        sinks: Sequence[RowStore],
        dead_letters: DeadLetterSink,
        request_rows: int,
        max_record_bytes: int | None = None,
        keys: RecordKeys = DEFAULT_KEYS,
    ) -> None:
        keys.check(schema)
        self.schema = schema
        self._keys = keys
        self._scorer = scorer
        if not sinks:
            raise ValueError("a batch processor needs at least one sink")
        self._sinks = list(sinks)
        #: Batches between handing their rows to the sinks and having them back.
        self.storing = 0
        self._dead_letters = dead_letters
        self._request_rows = max(1, request_rows)
        self._max_record_bytes = max_record_bytes
        self._regression = schema.function_name == "regression"
        numeric = [i for i, field in enumerate(schema.fields) if field.numeric]
        text = [i for i, field in enumerate(schema.fields) if not field.numeric]
        #: None when every input is numeric: a record's values are stored as they are
        self._split: tuple[list[int], list[int]] | None = (
            None if not text else (numeric, text)
        )
        self._feature_names = [schema.names[i] for i in numeric]
        self._text_feature_names = [schema.names[i] for i in text]
        self._layouts: dict[tuple[str, ...], _AnswerLayout] = {}

    async def process(self, messages: Sequence[MessageLike]) -> BatchOutcome:
        schema = self.schema
        outcome = BatchOutcome()
        tallies = outcome.partitions
        dead: list[DeadLetter] = []
        good: list[tuple[MessageLike, Any]] = []
        limit = self._max_record_bytes
        for message in messages:
            tally = tallies.get(message.partition)
            if tally is None:
                tally = tallies[message.partition] = PartitionTally()
            tally.received += 1
            if limit is not None and len(message.value or b"") > limit:
                dead.append(self._oversized(message, limit))
                continue
            try:
                record = decode_features(message.value, schema, self._keys)
                if record.event_time_ms is None:
                    record.event_time_ms = _kafka_event_time_ms(message)
            except DecodeError as error:
                dead.append(_dead_letter(message, str(error), "decode"))
                continue
            good.append((message, record))

        instances = self._instances(good)
        step = self._request_rows
        answers = await asyncio.gather(
            *(
                self._score(instances[i : i + step])
                for i in range(0, len(instances), step)
            )
        )

        rows: list[PredictionRow] = []
        row_partitions: list[int] = []
        row_event_ms: list[int] = []
        row_labels: list[str] = []
        index = 0
        for request_answers in answers:
            for answer in request_answers:
                for prediction in answer.predictions:
                    message, record = good[index]
                    index += 1
                    row = self._row(message, record, answer, prediction)
                    if isinstance(row, str):
                        dead.append(_dead_letter(message, row, "score"))
                        continue
                    rows.append(row)
                    row_partitions.append(message.partition)
                    row_event_ms.append(row.event_time_ms)
                    row_labels.append(row.predicted_label)

        # Every sink at once: the batch is done when the slowest has its rows.
        self.storing += 1
        try:
            stamps, _ = await asyncio.gather(
                asyncio.gather(*(sink.write(rows) for sink in self._sinks)),
                self._dead_letters.publish(dead),
            )
        finally:
            self.storing -= 1
        stored_at_ms = max(stamps)
        outcome.stored_at_ms = stored_at_ms
        for letter in dead:
            tallies[letter.source_partition].dead_lettered += 1
            outcome.dead_letters_by_stage[letter.stage] += 1
        per_partition_latencies: dict[int, list[int]] = {}
        for partition, event_ms, label in zip(
            row_partitions, row_event_ms, row_labels, strict=True
        ):
            tally = tallies[partition]
            tally.stored += 1
            tally.labels[label] += 1
            per_partition_latencies.setdefault(partition, []).append(
                stored_at_ms - event_ms
            )
        for partition, latencies in per_partition_latencies.items():
            tally = tallies[partition]
            tally.latency_counts = bucket_counts(latencies)
            tally.latency_sum_ms = float(sum(latencies))
        return outcome

    def _oversized(self, message: MessageLike, limit: int) -> DeadLetter:
        """The dead letter of a record over ``limit`` bytes (``max_record_bytes``).

        The letter keeps only the record's first ``limit`` bytes: a whole
        huge record (base64 is a third larger) could exceed what Kafka
        accepts for the dead-letter topic and block the partition.
        """
        value = message.value or b""
        return _dead_letter(
            message,
            f"record of {len(value)} bytes exceeds the limit of {limit} bytes "
            f"(RISKSTREAM_MAX_RECORD_BYTES); the letter keeps its first {limit} bytes",
            "decode",
            value=value[:limit],
        )

    def _instances(
        self, good: list[tuple[MessageLike, DecodedRecord]]
    ) -> list[dict[str, Any]]:
        """The request rows: each record's inputs by name, a missing one left out."""
        names = self.schema.names
        instances: list[dict[str, Any]] = []
        append = instances.append
        if self._split is None:
            for _, record in good:
                values = record.values
                total = sum(cast(list[float], values))
                if total == total:  # noqa: PLR0124  (no NaN: the common, cheap case)
                    append(dict(zip(names, values)))
                else:  # a missing input (NaN, unequal to itself) is left out
                    append({n: v for n, v in zip(names, values) if v == v})  # noqa: PLR0124
            return instances
        for _, record in good:
            append(
                {
                    n: v
                    for n, v in zip(names, record.values)
                    if v is not None and v == v  # noqa: PLR0124
                }
            )
        return instances

    async def _score(self, instances: list[dict[str, Any]]) -> list[ScoredRequest]:
        """Score one request's rows; a request refused as a whole is split until the bad rows are alone.

        The answers hold one prediction per row, in the rows' order.
        """
        try:
            return [await self._scorer.score(instances)]
        except RequestRejected as rejection:
            if len(instances) == 1:
                refused = {ERROR_KEY: rejection.message}
                return [ScoredRequest([refused], "", 0.0, int(time.time() * 1000))]
            middle = len(instances) // 2
            first, second = await asyncio.gather(
                self._score(instances[:middle]), self._score(instances[middle:])
            )
            return first + second

    def _row(
        self,
        message: MessageLike,
        record: DecodedRecord,
        answer: ScoredRequest,
        prediction: Mapping[str, Any],
    ) -> PredictionRow | str:
        """The stored row of one scored record, or why the model refused it."""
        keys = tuple(prediction)
        layout = self._layouts.get(keys)
        if layout is None:
            if len(self._layouts) >= MAX_ANSWER_LAYOUTS:
                self._layouts.clear()
            layout = self._layouts[keys] = _AnswerLayout.of(keys)
        if layout.has_error:
            error = prediction[ERROR_KEY]
            if error is not None:
                return f"model refused the record: {error}"
        read = self._read_answer(prediction, layout)
        if isinstance(read, str):
            return f"{read}: {dict(prediction)!r}"[:500]
        label, probabilities, predicted_value = read
        event_ms = record.event_time_ms
        assert event_ms is not None  # filled in from Kafka at decode
        record_id = record.record_id
        if record_id is None:
            record_id = (
                message.key.decode("utf-8", "replace")
                if message.key
                else f"{message.topic}:{message.partition}:{message.offset}"
            )
        # decode_features typed each value by the schema: numbers for the
        # numeric inputs, text or None for the others
        values = record.values
        if self._split is None:
            numbers, texts = cast(list[float], values), _NO_TEXT
        else:
            numeric, text = self._split
            numbers = cast(list[float], [values[i] for i in numeric])
            texts = cast(list[str], [values[i] or "" for i in text])
        shadow_version, shadow_label, shadow_probabilities = _shadow_columns(
            prediction, layout.probability_labels
        )
        # Positional, in PredictionRow's field order: a NamedTuple built with
        # keywords costs about 1.5 us more per row, a tenth of a worker's budget.
        return PredictionRow(
            message.topic,
            message.partition,
            message.offset,
            record_id,
            event_ms // 1000,
            event_ms,
            answer.scored_at_ms,
            self._feature_names,
            numbers,
            label,
            layout.probability_labels,
            probabilities,
            record.label,
            self.schema.model_name,
            str(prediction.get(VERSION_KEY, self.schema.model_version)),
            answer.server,
            answer.latency_s * 1000.0,
            self._text_feature_names,
            texts,
            predicted_value,
            shadow_version,
            shadow_label,
            shadow_probabilities,
            prediction.get(EXPLANATION_KEY, ""),
        )

    def _read_answer(
        self, prediction: Mapping[str, Any], layout: _AnswerLayout
    ) -> tuple[str, list[float], float] | str:
        """(label, class probabilities, predicted value) of an answer, or what it lacks."""
        if self._regression:
            value = _number(prediction.get(PREDICTION_KEY))
            if value is None:
                return "model answer has no numeric prediction"
            return "", [], value
        label = None if layout.label_key is None else prediction[layout.label_key]
        if label is None:
            return "model answer has no label"
        try:
            probabilities = list(
                map(float, map(prediction.__getitem__, layout.probability_keys))
            )
        except (TypeError, ValueError):
            return "model answer has a non-numeric probability"
        return str(label), probabilities, NAN


def _shadow_columns(
    prediction: Mapping[str, Any], labels: list[str]
) -> tuple[str, str, list[float]]:
    """The shadow version's answer stored beside the prediction: version, label, probabilities.

    Its probabilities are stored parallel to the current version's
    ``labels`` (NaN for a class it does not give). A row the shadow did not
    score keeps its version and an empty label; a row without a shadow has
    neither.
    """
    version = prediction.get(SHADOW_VERSION_KEY)
    if version is None:
        return "", "", _NO_SHADOW_PROBABILITIES
    label = prediction.get(SHADOW_LABEL_KEY)
    given = prediction.get(SHADOW_PROBABILITIES_KEY)
    if label is None or not isinstance(given, dict):
        return str(version), "", _NO_SHADOW_PROBABILITIES
    probabilities = []
    for category in labels:
        value = _number(given.get(category))
        probabilities.append(NAN if value is None else value)
    return str(version), str(label), probabilities


#: The shadow probabilities of a row without any (shared: the writer only reads it).
_NO_SHADOW_PROBABILITIES: list[float] = []

#: The text inputs of a model that has none (shared: the writer only reads it).
_NO_TEXT: list[str] = []

NAN = float("nan")


def _number(value: Any) -> float | None:
    """A regression's predicted value from the answer (Java double text or a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None  # noqa: PLR0124  (NaN)


@dataclass(frozen=True)
class _AnswerLayout:
    """Where the parts of a model answer are, for one set of answer keys.

    A model answers every row with the same keys, so they are read once
    per key set rather than once per row. ``probability_labels`` is shared
    by the rows (the writer only reads it).
    """

    has_error: bool
    label_key: str | None
    probability_keys: tuple[str, ...]
    probability_labels: list[str]

    @classmethod
    def of(cls, keys: tuple[str, ...]) -> _AnswerLayout:
        probability_keys = tuple(k for k in keys if k.startswith(PROBABILITY_PREFIX))
        return cls(
            has_error=ERROR_KEY in keys,
            label_key=LABEL_KEY
            if LABEL_KEY in keys
            else (PREDICTION_TEXT_KEY if PREDICTION_TEXT_KEY in keys else None),
            probability_keys=probability_keys,
            probability_labels=[
                k[len(PROBABILITY_PREFIX) : -1] for k in probability_keys
            ],
        )


def _kafka_event_time_ms(message: MessageLike) -> int:
    """A CSV record's event time: its Kafka timestamp, if ClickHouse's DateTime can hold it."""
    seconds = message.timestamp
    if not 0.0 < seconds < MAX_EVENT_TIME_S:
        raise DecodeError(
            f"Kafka timestamp {seconds!r} is outside 1970-2100; no event time"
        )
    return int(seconds * 1000)


def _dead_letter(
    message: MessageLike, reason: str, stage: str, value: bytes | None = None
) -> DeadLetter:
    """The dead letter of ``message``, carrying ``value`` (default: the record's own bytes)."""
    return DeadLetter.of(
        reason=reason,
        stage=stage,
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value if value is None else value,
    )


@dataclass
class _InFlight:
    messages: Sequence[Any]
    ack: Callable[[Sequence[Any]], None]
    task: asyncio.Future[BatchOutcome]


class Pipeline(Service):
    """Bounded, pipelined processing of event batches with in-order acks.

    ``prepare`` builds the :class:`BatchProcessor` once the dependencies
    are up (it needs the served model's schema); outcome listeners (stats
    table, metrics) run once per completed batch, before its acks.
    """

    def __init__(
        self,
        *,
        prepare: Callable[[], Awaitable[BatchProcessor]],
        batches_in_flight: int,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self._prepare = prepare
        self._limit = max(1, batches_in_flight)
        self._on_outcome: list[Callable[[BatchOutcome], None]] = []
        self._in_flight: deque[_InFlight] = deque()
        self._slots: asyncio.Semaphore | None = None
        self._queued: Event | None = None
        self._processor: BatchProcessor | None = None
        self._ready: Event | None = None
        self.batches_done = 0

    def add_outcome_listener(self, listener: Callable[[BatchOutcome], None]) -> None:
        self._on_outcome.append(listener)

    async def on_start(self) -> None:
        self._slots = asyncio.Semaphore(self._limit)
        self._queued = Event()
        self._ready = Event()
        self.add_future(self._get_ready())

    async def on_stop(self) -> None:
        abandoned = sum(len(batch.messages) for batch in self._in_flight)
        for batch in self._in_flight:
            batch.task.cancel()
        self._in_flight.clear()
        logger.info(
            "pipeline stopped after %d batches; %d records in flight abandoned unacked",
            self.batches_done,
            abandoned,
        )

    async def _get_ready(self) -> None:
        self._processor = await self._prepare()
        assert self._ready is not None
        self._ready.set()

    async def wait_ready(self) -> None:
        """Wait until the model schema is known and every sink's table exists."""
        await self.maybe_start()
        assert self._ready is not None
        await self.wait_for_stopped(self._ready)

    async def submit(
        self, messages: Sequence[Any], ack: Callable[[Sequence[Any]], None]
    ) -> None:
        """Start processing ``messages`` (Faust's); wait while the in-flight limit is reached.

        ``ack`` is called with ``messages`` once they are processed, after the
        ``ack`` of every batch submitted before (in the order of ``messages``).
        """
        assert self._slots is not None and self._queued is not None and self._processor
        await self._slots.acquire()
        task = asyncio.ensure_future(self._processor.process(messages))
        self._in_flight.append(_InFlight(messages, ack, task))
        self._queued.set()

    @Service.task
    async def _complete_in_order(self) -> None:
        assert self._queued is not None and self._slots is not None
        while not self.should_stop:
            if not self._in_flight:
                self._queued.clear()
                await self.wait_for_stopped(self._queued)
                continue
            batch = self._in_flight[0]
            try:
                outcome = await batch.task
            except asyncio.CancelledError:
                return
            except Exception as exc:
                logger.exception(
                    "batch processing failed; stopping the worker without acking"
                )
                await self.crash(exc)
                return
            for callback in self._on_outcome:
                callback(outcome)
            batch.ack(batch.messages)
            self._in_flight.popleft()
            self._slots.release()
            self.batches_done += 1

    def processing(self) -> int:
        """Batches taken and not processed yet."""
        return sum(1 for batch in self._in_flight if not batch.task.done())

    def all_at_store(self) -> bool:
        """Whether every batch in flight has handed its rows to the sinks: no more rows can come.

        The sinks then write what they hold at once (:meth:`tables.sink.Sink.flush_when`).
        """
        processor = self._processor
        return processor is not None and self.processing() <= processor.storing

    def snapshot(self) -> dict[str, Any]:
        return {
            "batches_in_flight": len(self._in_flight),
            "records_in_flight": sum(len(batch.messages) for batch in self._in_flight),
            "batches_done": self.batches_done,
            "ready": bool(self._ready and self._ready.is_set()),
        }
