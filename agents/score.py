"""The scoring agent: Kafka feature records in, predictions out to every configured sink.

The agent is a thin adapter. It takes batches of messages from its stream
with :func:`transport.stream.take_batches`, which reads the agent's channel
in bulk (slices of records, past the Conductor), marks each message as
pending ack and acks nothing: an offset becomes committable only when the
:class:`~agents.pipeline.Pipeline` acks it
(:func:`transport.stream.ack_messages`) after the batch is stored.
Concurrency stays 1 (faust-streaming #606: Faust commits past a lone
unacked offset, so a partition's events must be acked in offset order,
which one actor and the pipeline's in-order completion guarantee); the
concurrency lives inside the pipeline, which keeps ``batches_in_flight``
batches going and acks them in order.

The services the pipeline needs (model-server pool, the sinks that
``RISKSTREAM_SINKS`` names, :mod:`tables.sinks`) are created in the running
loop when the agent starts, as children of the app, so they stop with the
worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import faust
from faust.types import Message

from agents.dead_letters import DeadLetterPublisher
from agents.metrics import StreamMetrics
from agents.pipeline import BatchProcessor, Pipeline
from agents.scoring_client import ModelServerPool
from agents.topics import StreamTopics
from core.settings import Settings
from models.records import RecordKeys
from tables.sink import Sink
from tables.sinks import build_sinks
from tables.stats import StreamStats
from transport.stream import ack_messages, take_batches

__all__ = ["Scoring", "add_scoring_agent"]


@dataclass(frozen=True)
class Scoring:
    """What the scoring agent runs on, for the web views to report on."""

    pipeline: Pipeline
    pool: ModelServerPool
    sinks: Sequence[Sink]


def add_scoring_agent(
    app: faust.App, settings: Settings, topics: StreamTopics, stats: StreamStats
) -> Scoring:
    """Register the ``score_features`` agent on ``app``; its pipeline reports to ``stats``."""
    pool = ModelServerPool.from_settings(settings)
    sinks = build_sinks(settings)
    keys = RecordKeys(
        record_id=settings.record_id_field, event_time=settings.event_time_field
    )

    async def prepare() -> BatchProcessor:
        """Start the clients, learn the model's inputs, make sure topics and tables exist."""
        await pipeline.add_runtime_dependency(pool)
        for sink in sinks:
            await pipeline.add_runtime_dependency(sink)
        await topics.dead_letters.maybe_declare()
        await asyncio.gather(*(sink.ensure_schema() for sink in sinks))
        schema = await pool.fetch_schema()
        return BatchProcessor(
            schema=schema,
            scorer=pool,
            sinks=sinks,
            dead_letters=DeadLetterPublisher(
                topics.dead_letters, settings.retry_max_backoff_s
            ),
            request_rows=settings.score_request_rows,
            max_record_bytes=settings.max_record_bytes,
            keys=keys,
        )

    pipeline = Pipeline(prepare=prepare, batches_in_flight=settings.batches_in_flight)
    # Once every batch in flight has handed its rows over, no more rows can join a write.
    for sink in sinks:
        sink.flush_when(pipeline.all_at_store)

    metrics = StreamMetrics(servers=pool.snapshot, pipeline=pipeline.snapshot)
    metrics.register()
    pipeline.add_outcome_listener(stats.record_outcome)
    pipeline.add_outcome_listener(metrics.record_outcome)

    def ack(messages: Sequence[Message]) -> None:
        ack_messages(app, messages)

    async def score_features(stream: faust.StreamT[bytes]) -> None:
        """Hand each batch of raw feature messages to the pipeline, which acks them once stored."""
        if not pipeline.started:
            await app.add_runtime_dependency(pipeline)
        await pipeline.wait_ready()
        async for batch in take_batches(
            stream, settings.batch_max_records, settings.batch_max_wait_s
        ):
            await pipeline.submit(batch, ack)

    app.agent(topics.features, name="score_features", concurrency=1)(score_features)
    return Scoring(pipeline=pipeline, pool=pool, sinks=sinks)
