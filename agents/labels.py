"""The labels agent: ground truth that arrives late, from the labels topic into every sink.

A label is small and rare beside the features (one per record, days
later), so the agent is the plain form of the scoring agent's delivery:
it takes a batch of label messages (:func:`transport.stream.take_batches`,
nothing acked), decodes them (:func:`models.records.decode_label`), writes
the good ones to every sink of ``RISKSTREAM_SINKS`` and publishes the
malformed ones as dead letters (stage ``label``), all at once, and acks
the batch only when every sink and Kafka have it. One batch at a time and
concurrency 1, so a partition's acks stay in offset order (faust-streaming
#606) with no reordering to do. A replayed batch (a worker killed before
its commit, the same labels sent twice) is harmless: every store keeps
one row per label message's Kafka coordinates.

Its sinks are its own (:func:`tables.sinks.build_sinks`), not the scoring
agent's: a connection serves one statement at a time, and the labels must
not wait behind a merged write of predictions.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import faust

from agents.dead_letters import DeadLetterPublisher
from agents.pipeline import MessageLike
from agents.topics import StreamTopics
from core.settings import Settings
from models.records import DeadLetter, DecodeError, decode_label
from tables.predictions import LabelRow
from tables.sink import Sink
from tables.sinks import build_sinks
from transport.stream import ack_messages, take_batches

__all__ = ["add_labels_agent", "decode_labels"]

#: The stage a dead letter of a malformed label names.
STAGE = "label"


def decode_labels(
    messages: Sequence[MessageLike],
) -> tuple[list[LabelRow], list[DeadLetter]]:
    """The rows to store and the dead letters of one batch of label messages."""
    rows: list[LabelRow] = []
    letters: list[DeadLetter] = []
    for message in messages:
        try:
            label = decode_label(
                message.value, message.key, round(message.timestamp * 1000.0)
            )
        except DecodeError as error:
            letters.append(
                DeadLetter.of(
                    reason=str(error),
                    stage=STAGE,
                    topic=message.topic,
                    partition=message.partition,
                    offset=message.offset,
                    key=message.key,
                    value=message.value,
                )
            )
            continue
        rows.append(
            LabelRow(
                source_topic=message.topic,
                source_partition=message.partition,
                source_offset=message.offset,
                record_id=label.record_id,
                label=label.label,
                observed_at=label.observed_at_ms // 1000,
                observed_at_ms=label.observed_at_ms,
            )
        )
    return rows, letters


def add_labels_agent(
    app: faust.App, settings: Settings, topics: StreamTopics
) -> Sequence[Sink]:
    """Register the ``store_labels`` agent on ``app``; returns its sinks."""
    sinks = build_sinks(settings)
    dead_letters = DeadLetterPublisher(
        topics.dead_letters, settings.retry_max_backoff_s
    )

    async def store_labels(stream: faust.StreamT[bytes]) -> None:
        """Store each batch of labels (or dead-letter them), then ack it."""
        for sink in sinks:
            if not sink.started:
                await app.add_runtime_dependency(sink)
        await topics.dead_letters.maybe_declare()
        await asyncio.gather(*(sink.ensure_schema() for sink in sinks))
        async for batch in take_batches(
            stream, settings.batch_max_records, settings.batch_max_wait_s
        ):
            rows, letters = decode_labels(batch)
            await asyncio.gather(
                *(sink.write_labels(rows) for sink in sinks),
                dead_letters.publish(letters),
            )
            ack_messages(app, batch)

    app.agent(topics.labels, name="store_labels", concurrency=1)(store_labels)
    return sinks
