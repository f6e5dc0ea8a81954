"""The agent's end of the transport: batches of messages out of its channel, acks back in offset order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, Iterable
from typing import Any, cast

import faust
from faust.types import Message

from transport.consumer import BatchGuardConsumer, SliceChannel

__all__ = ["RawSchema", "ack_messages", "take_batches"]

#: Messages a slice channel holds when its queue has no size (Faust's ``stream_buffer_maxsize``).
DEFAULT_QUEUE_MESSAGES = 4096


class RawSchema(faust.Schema[bytes, bytes]):
    """Key and value bytes as they came from Kafka (no serializer registry round trip)."""

    def loads_key(self, app: Any, message: Any, **kwargs: Any) -> Any:
        return message.key

    def loads_value(self, app: Any, message: Any, **kwargs: Any) -> Any:
        return message.value


async def take_batches(
    stream: faust.StreamT[Any], max_records: int, within_s: float
) -> AsyncGenerator[list[Message], None]:
    """Yield lists of up to ``max_records`` messages, or what came within ``within_s`` of the first.

    Acks nothing: the caller acks with :func:`ack_messages` once the
    messages are dealt with. Messages read during a rebalance or from an
    older consumer generation are dropped untracked, to be read again
    after the seek; the others are tracked as pending ack before they are
    yielded. When the stream's channel is the only one on its topics, the
    consumer puts their records into its queue a slice at a time
    (:class:`~transport.consumer.SliceChannel`), past the Conductor's
    per-record events; otherwise, or until then, events come one by one.
    Ends when the stream stops.
    """
    app = stream.app
    queue = stream.channel.queue  # type: ignore[attr-defined]
    # Faust empties agent queues when the flow resumes at the end of a
    # rebalance, which comes after its seek to the committed offsets: an
    # event delivered in between would vanish with its offset already
    # read, never to be read again. This queue is left alone; its stale
    # messages are dropped one by one below instead (older generation).
    app.flow_control._queues.discard(queue)
    consumer = app.consumer
    slices = _claim_slices(stream, queue)
    track = consumer.track_message
    acking_topics = app.topics.acking_topics
    flow_active = app.flow_control.is_active
    inbound_time = app.monitor.stream_inbound_time
    loop = asyncio.get_running_loop()
    try:
        while True:
            batch: list[Message] = []
            # Stream.stop() ends readers by throwing StopAsyncIteration into the
            # queue; the messages taken so far stay unacked, hence uncommitted.
            try:
                item = await queue.get()
                deadline = loop.time() + within_s
                now = time.monotonic()
                while True:
                    if type(item) is list:
                        assert slices is not None
                        slices.taken(len(item))
                        messages = item
                    else:
                        messages = [item.message]
                    if flow_active():
                        generation = app.consumer_generation_id
                        for message in messages:
                            if message.generation_id != generation:
                                continue
                            if message.topic in acking_topics and not message.tracked:
                                message.tracked = True
                                track(message)
                            inbound_time[message.tp] = now
                            batch.append(message)
                    if len(batch) >= max_records:
                        break
                    try:
                        item = queue.get_nowait()
                        continue
                    except asyncio.QueueEmpty:
                        remaining = deadline - loop.time()
                    if remaining <= 0:
                        break
                    try:
                        item = await asyncio.wait_for(queue.get(), remaining)
                    except TimeoutError:
                        break
                    now = time.monotonic()
            except StopAsyncIteration:
                return
            # A slice may carry a batch past its size: the rest goes out next, at once.
            for start in range(0, len(batch), max_records):
                yield batch[start : start + max_records]
    finally:
        if slices is not None:
            cast(BatchGuardConsumer, consumer).stop_slices(slices)


def _claim_slices(stream: faust.StreamT[Any], queue: Any) -> SliceChannel | None:
    """Have the consumer put the stream's topics' records into ``queue`` in slices, if it can.

    Only where this stream's channel is the only one on those topics:
    another channel (a second agent, a table) needs the Conductor's
    events, so the topics stay with it.
    """
    consumer = stream.app.consumer
    topics = set(getattr(stream.channel, "topics", ()))
    if not topics or not isinstance(consumer, BatchGuardConsumer):
        return None
    if any(
        channel is not stream.channel and topics & set(getattr(channel, "topics", ()))
        for channel in stream.app.topics
    ):
        return None
    slices = SliceChannel(queue, queue.maxsize or DEFAULT_QUEUE_MESSAGES)
    consumer.deliver_slices(sorted(topics), slices)
    return slices


def ack_messages(app: faust.App, messages: Iterable[Message]) -> None:
    """Ack ``messages`` as ``Stream.ack`` does; a partition's messages must come in offset order."""
    consumer = app.consumer
    on_message_out = app.sensors.on_message_out
    for message in messages:
        if message.ack(consumer):
            on_message_out(message.tp, message.offset, message)
