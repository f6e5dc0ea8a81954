"""What the consumer hands out: every fresh record once, in order, one guard per slice.

Stock Faust guards each record with its own ``wait_first``, hands each to
the Conductor, which makes an event of it for the agent's queue, and can
commit past records never processed when its seek at the end of a
rebalance races records already fetched. The consumer here guards a
slice of records at a time, puts a slice of a topic that one
:func:`transport.stream.take_batches` reader alone reads into that
reader's queue as one item (a :class:`SliceChannel`), and drops only what
will be read again (see :class:`BatchGuardConsumer`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as kafka_driver
from faust.types import TP, Message
from mode.utils.queues import ThrowableQueue

from transport.shutdown import BoundedStopConsumer, BoundedStopConsumerThread

__all__ = [
    "YIELD_EVERY",
    "BatchGuardConsumer",
    "SeekCountingConsumerThread",
    "SliceChannel",
]

#: Records delivered between two returns to the event loop (Faust's own figure).
YIELD_EVERY = 100


class SliceChannel:
    """A reader's queue that takes whole slices of messages, bounded in messages.

    The Conductor's way costs about 4 us per record (an event per record,
    its flow-control, producer-buffer and decode awaits, a queue put with
    pressure callbacks), all of which a reader of raw bytes that tracks
    and acks the messages itself does without. The queue is the agent's
    own (``Channel.queue``), so a stop's ``StopAsyncIteration`` still
    reaches the reader through it. It holds at most ``max_messages``: the
    consumer waits in :meth:`put` (inside its slice guard, so a rebalance
    or a stop still cancels it) until the reader has taken enough.
    """

    def __init__(self, queue: ThrowableQueue[Any], max_messages: int) -> None:
        self.queue = queue
        self.max_messages = max_messages
        #: messages put and not taken yet
        self.messages = 0
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, messages: list[Message]) -> None:
        while self.messages >= self.max_messages:
            self._room.clear()
            await self._room.wait()
        if self.queue.full():  # events the Conductor put before the reader claimed it
            await self.queue.put(messages)
        else:
            self.queue.put_nowait(messages)
        self.messages += len(messages)  # after the put: a cancelled one counts nothing

    def taken(self, count: int) -> None:
        """The reader took ``count`` messages out of the queue."""
        self.messages -= count
        if self.messages < self.max_messages:
            self._room.set()


class SeekCountingConsumerThread(
    BoundedStopConsumerThread, kafka_driver.AIOKafkaConsumerThread
):
    """Faust's aiokafka consumer thread, counting its seeks and tagging each fetch with the count.

    Records handed out before a seek takes effect are stale once it has:
    the seek moves the partition back (to its committed offset, at the
    end of every rebalance), so they come again. Telling stale from fresh
    needs the order in which the thread ran the two, so it is recorded
    here, in the thread: the seek to the committed offsets is applied to
    every partition in one synchronous step (aiokafka's own awaits between
    partitions, so a fetch could interleave), and each fetch is tagged
    with the number of seeks before it returned.
    """

    seeks = 0
    #: ``seeks`` when the last fetch returned its records
    fetch_tag = 0

    async def seek_to_committed(self) -> Mapping[TP, int]:
        committed: dict[TP, int] = await self.call_thread(self._seek_all_to_committed)
        return committed

    async def _seek_all_to_committed(self) -> dict[TP, int]:
        consumer = self._ensure_consumer()
        committed: dict[TP, int] = {}
        for tp in consumer.assignment():
            committed[tp] = await consumer.committed(tp)
        # One step: no fetch can take records between two of these seeks.
        for tp, offset in committed.items():
            if offset and offset > 0 and tp in consumer.assignment():
                consumer.seek(tp, offset)
        self.seeks += 1
        return committed

    async def _fetch_records(self, *args: Any, **kwargs: Any) -> Any:
        records = await super()._fetch_records(*args, **kwargs)
        self.fetch_tag = self.seeks
        return records


class BatchGuardConsumer(BoundedStopConsumer, kafka_driver.Consumer):
    """Faust's aiokafka consumer with one flow guard per slice of records instead of per record.

    Stock ``_drain_messages`` runs every record's Conductor callback inside
    ``wait_first(callback, suspend_flow.wait())`` so that a rebalance can
    interrupt it. Here one such guard covers up to ``YIELD_EVERY`` records,
    and between slices the flow is checked; a rebalance that starts
    mid-slice cancels the slice, exactly as it cancels the stock per-record
    callback, and the rest of the fetched records is dropped (the
    partitions are sought back to their committed offsets after the
    rebalance, so nothing is skipped).

    Two more things keep a commit from passing a record nobody stored,
    which stock Faust allows when its seek at the end of a rebalance races
    records already fetched:

    - a record of a partition that acks (the feature topic) fetched before
      a seek of the thread (:class:`SeekCountingConsumerThread`) is not
      delivered after it: it comes again from the sought position;
    - a gap (offsets that do not exist, which Faust counts as acked) is
      inferred only between two records this consumer delivered with no
      seek in between, not from the read offset, which the seek resets
      while fresh records are on their way.
    """

    _thread: SeekCountingConsumerThread

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: partition -> (last offset delivered, the thread's seek count then)
        self._last_delivered: dict[TP, tuple[int, int]] = {}
        #: topic -> the channel of the one reader that takes its records in slices
        self._slice_channels: dict[str, SliceChannel] = {}

    def deliver_slices(self, topics: Sequence[str], channel: SliceChannel) -> None:
        """Put the records of ``topics`` into ``channel`` a slice at a time, past the Conductor."""
        for topic in topics:
            self._slice_channels[topic] = channel

    def stop_slices(self, channel: SliceChannel) -> None:
        """Back to the Conductor for the topics ``channel`` took (its reader ended)."""
        for topic, taker in list(self._slice_channels.items()):
            if taker is channel:
                del self._slice_channels[topic]

    def _new_consumer_thread(self) -> SeekCountingConsumerThread:
        return SeekCountingConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def _drain_messages(self, fetcher: Any) -> None:
        acks_enabled_for = self.app.topics.acks_enabled_for
        fetcher_stopped = fetcher._stopped.is_set
        try:
            while not (self._stopped.is_set() or fetcher_stopped()):
                self.diag.set_flag(CONSUMER_FETCHING)
                fetched = self.getmany(timeout=1.0)
                # getmany may return at once in a loop: always let others run.
                await self.sleep(0)
                if self.should_stop:
                    continue
                # getmany's iterator never awaits between records: list it at once.
                records = [item async for item in fetched]
                fetch_tag = self._thread.fetch_tag  # no await since the fetch
                start = 0
                while start < len(records) and not self.should_stop:
                    if self._commit_due():
                        self._n_acked = 0
                        await self.commit()
                    slice_task = asyncio.ensure_future(
                        self._deliver(records, start, fetch_tag, acks_enabled_for)
                    )
                    # Cancels the slice if the flow is suspended (a rebalance) or we stop.
                    await self.wait_first(slice_task, self.suspend_flow.wait())
                    if not slice_task.done() or slice_task.cancelled():
                        break
                    start = slice_task.result()
                self.diag.unset_flag(CONSUMER_FETCHING)
        except self.consumer_stopped_errors:
            if not self.transport.app.should_stop:
                raise
            self.log.info("Broker stopped consumer, shutting down...")
        except asyncio.CancelledError:
            if not self.transport.app.should_stop:
                raise
            self.log.info("Consumer shutting down for user cancel.")
        finally:
            self.diag.unset_flag(CONSUMER_FETCHING)

    def _commit_due(self) -> bool:
        return self._commit_every is not None and self._n_acked >= self._commit_every

    async def _deliver(
        self,
        records: Sequence[tuple[Any, Any]],
        start: int,
        fetch_tag: int,
        acks_enabled_for: Any,
    ) -> int:
        """Hand ``records[start:]`` to the Conductor or to slice channels; return where it stopped.

        Stops early when a commit is due (the caller commits outside the
        guard, as stock Faust does between records) or when the flow was
        suspended at a yield point (the rest would be dropped anyway).
        ``fetch_tag`` is the thread's seek count when ``records`` came.
        A slice channel gets its records at each yield point and before
        returning (:meth:`_hand_over`).
        """
        read_offset = self._read_offset
        last_delivered = self._last_delivered
        callback = self.callback
        thread = self._thread
        slice_channels = self._slice_channels
        pending: dict[SliceChannel, list[Message]] = {}
        for index in range(start, len(records)):
            if index != start and not (index - start) % YIELD_EVERY:
                await self._hand_over(pending, fetch_tag, acks_enabled_for)
                await asyncio.sleep(0)
                if not self.flow_active:
                    return len(records)
            tp, message = records[index]
            acks = acks_enabled_for(message.topic)
            if acks and thread.seeks != fetch_tag:
                continue  # fetched before a seek: it comes again from the sought position
            offset = message.offset
            last_read = read_offset.get(tp)
            if last_read is not None and offset < last_read:
                continue  # already delivered (a re-fetch after a seek)
            previous = last_delivered.get(tp)
            if (
                acks
                and previous is not None
                and previous[1] == fetch_tag
                and offset - previous[0] > 1
            ):
                await self._add_gap(tp, previous[0] + 1, offset)
            if self._commit_due():
                await self._hand_over(pending, fetch_tag, acks_enabled_for)
                return index
            channel = slice_channels.get(message.topic)
            if channel is not None:
                message.incref()  # the reader's reference, as the Conductor takes it
                taken = pending.get(channel)
                if taken is None:
                    pending[channel] = [message]
                else:
                    taken.append(message)
                last_delivered[tp] = (offset, fetch_tag)
                continue
            await callback(message)
            if thread.seeks == fetch_tag:
                read_offset[tp] = offset
                last_delivered[tp] = (offset, fetch_tag)
        await self._hand_over(pending, fetch_tag, acks_enabled_for)
        return len(records)

    async def _hand_over(
        self,
        pending: dict[SliceChannel, list[Message]],
        fetch_tag: int,
        acks_enabled_for: Any,
    ) -> None:
        """Put each channel's pending slice into it, and mark the slices' records as read.

        A slice of an acking topic fetched before a seek of the thread is
        dropped instead: its records come again from the sought position,
        as each record delivered one by one would (see :meth:`_deliver`).
        """
        if not pending:
            return
        read_offset = self._read_offset
        thread = self._thread
        for channel, messages in pending.items():
            if thread.seeks != fetch_tag and any(
                map(acks_enabled_for, {message.topic for message in messages})
            ):
                continue
            await channel.put(messages)
            if thread.seeks == fetch_tag:
                for message in messages:
                    read_offset[message.tp] = message.offset
        pending.clear()
