"""The agent's end of the transport: batches out of its channel, acks back in offset order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import faust

__all__ = ["RawSchema", "ack_events", "take_batches"]


class RawSchema(faust.Schema[bytes, bytes]):
    """Key and value bytes as they came from Kafka (no serializer registry round trip)."""

    def loads_key(self, app: Any, message: Any, **kwargs: Any) -> Any:
        return message.key

    def loads_value(self, app: Any, message: Any, **kwargs: Any) -> Any:
        return message.value


async def take_batches(
    stream: faust.StreamT[Any], max_records: int, within_s: float
) -> AsyncIterator[list[faust.EventT[Any]]]:
    """Yield lists of up to ``max_records`` events, or what came within ``within_s`` of the first.

    Acks nothing: the caller acks with :func:`ack_events` once the events
    are dealt with. Events read during a rebalance or from an older
    consumer generation are dropped untracked, to be read again after the
    seek; the others are tracked as pending ack before they are yielded.
    Ends when the stream stops.
    """
    app = stream.app
    queue = stream.channel.queue  # type: ignore[attr-defined]
    # Faust empties agent queues when the flow resumes at the end of a
    # rebalance, which comes after its seek to the committed offsets: an
    # event delivered in between would vanish with its offset already
    # read, never to be read again. This queue is left alone; its stale
    # events are dropped one by one below instead (older generation).
    app.flow_control._queues.discard(queue)
    consumer = app.consumer
    track = consumer.track_message
    acking_topics = app.topics.acking_topics
    flow_active = app.flow_control.is_active
    inbound_time = app.monitor.stream_inbound_time
    loop = asyncio.get_running_loop()
    while True:
        batch: list[faust.EventT[Any]] = []
        # Stream.stop() ends readers by throwing StopAsyncIteration into the
        # queue; the events taken so far stay unacked, hence uncommitted.
        try:
            event = await queue.get()
            deadline = loop.time() + within_s
            now = time.monotonic()
            while True:
                message = event.message
                if (
                    flow_active()
                    and message.generation_id == app.consumer_generation_id
                ):
                    if message.topic in acking_topics and not message.tracked:
                        message.tracked = True
                        track(message)
                    inbound_time[message.tp] = now
                    batch.append(event)
                    if len(batch) >= max_records:
                        break
                try:
                    event = queue.get_nowait()
                    continue
                except asyncio.QueueEmpty:
                    remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    event = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
                now = time.monotonic()
        except StopAsyncIteration:
            return
        if batch:
            yield batch


def ack_events(app: faust.App, events: Iterable[faust.EventT[Any]]) -> None:
    """Ack ``events`` as ``Stream.ack`` does; a partition's events must come in offset order."""
    consumer = app.consumer
    on_message_out = app.sensors.on_message_out
    for event in events:
        message = event.message
        if message.ack(consumer):
            on_message_out(message.tp, message.offset, message)
