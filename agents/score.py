"""The scoring agent: Kafka feature records in, predictions out to every configured sink.

The agent is a thin adapter. It takes batches of events from its stream
with :func:`app.transport.take_batches`, which reads the agent's channel in
bulk, marks each event as pending ack and acks nothing: an offset becomes
committable only when the :class:`~agents.pipeline.Pipeline` acks it
(:func:`app.transport.ack_events`) after the batch is stored. Concurrency
stays 1 (faust-streaming #606: Faust commits past a lone unacked offset,
so a partition's events must be acked in offset order, which one actor and
the pipeline's in-order completion guarantee); the concurrency lives
inside the pipeline, which keeps ``batches_in_flight`` batches going and
acks them in order.

The services the pipeline needs (model-server pool, the sinks that
``RISKSTREAM_SINKS`` names, :mod:`tables.sinks`) are created in the running
loop when the agent starts, as children of the app, so they stop with the
worker.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import faust

from agents.dead_letters import DeadLetterPublisher
from agents.metrics import StreamMetrics
from agents.pipeline import BatchProcessor, Pipeline
from agents.scoring_client import ModelServerPool
from agents.topics import dead_letter_topic, feature_topic
from app.application import app
from app.settings import get_settings
from app.transport import ack_events, take_batches
from models.records import RecordKeys
from tables import stats
from tables.sinks import build_sinks

__all__ = ["pipeline", "pool", "score_features", "sinks"]


settings = get_settings()

pool = ModelServerPool.from_settings(settings)

sinks = build_sinks(settings)


async def _prepare() -> BatchProcessor:
    """Start the clients, learn the model's inputs, make sure topics and tables exist."""
    await pipeline.add_runtime_dependency(pool)
    for sink in sinks:
        await pipeline.add_runtime_dependency(sink)
    await dead_letter_topic.maybe_declare()
    await asyncio.gather(*(sink.ensure_schema() for sink in sinks))
    schema = await pool.fetch_schema()
    return BatchProcessor(
        schema=schema,
        scorer=pool,
        sinks=sinks,
        dead_letters=DeadLetterPublisher(
            dead_letter_topic, settings.retry_max_backoff_s
        ),
        request_rows=settings.score_request_rows,
        max_record_bytes=settings.max_record_bytes,
        keys=RecordKeys(
            record_id=settings.record_id_field, event_time=settings.event_time_field
        ),
    )


pipeline = Pipeline(prepare=_prepare, batches_in_flight=settings.batches_in_flight)
# Once every batch in flight has handed its rows over, no more rows can join a write.
for sink in sinks:
    sink.flush_when(pipeline.all_at_store)

metrics = StreamMetrics(servers=pool.snapshot, pipeline=pipeline.snapshot)
metrics.register()
pipeline.add_outcome_listener(stats.record_outcome)
pipeline.add_outcome_listener(metrics.record_outcome)


def _ack(events: Sequence[faust.EventT[Any]]) -> None:
    ack_events(app, events)


@app.agent(feature_topic, name="score_features", concurrency=1)
async def score_features(stream: faust.StreamT[bytes]) -> None:
    """Hand each batch of raw feature events to the pipeline, which acks them once stored."""
    if not pipeline.started:
        await app.add_runtime_dependency(pipeline)
    await pipeline.wait_ready()
    async for batch in take_batches(
        stream, settings.batch_max_records, settings.batch_max_wait_s
    ):
        await pipeline.submit(batch, _ack)
