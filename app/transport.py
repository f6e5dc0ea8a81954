"""How records cross Faust in a riskstream worker: Faust's machinery without its per-record toll.

Stock Faust spends about three quarters of a riskstream worker's CPU moving
records from its consumer to the agent: every record is guarded by its own
``wait_first`` (four tasks and an ``asyncio.wait``), goes through the
Stream iterator (a ``sleep(0)``, sensors, context variables), a settings
lookup to build its event and another to size the producer buffer. This
module keeps everything that makes Faust worth having (the consumer group
and its rebalances, the fetcher, the Conductor and its flow control, read
offsets and gap tracking, pending-ack tracking, in-order commits, waiting
for unacked records before a rebalance or a stop) and removes that toll:

1. :class:`BatchGuardConsumer` guards a slice of up to ``YIELD_EVERY``
   fetched records with one ``wait_first`` instead of one per record; the
   per-record work (read-offset filter, gaps, ``commit_every``, the
   Conductor's callback, the read offset) is Faust's, in Faust's order.
2. :func:`take_batches` reads the agent's channel queue in bulk instead of
   iterating the Stream, doing per record exactly what the Stream does
   before handing an event out: drop events of an older consumer
   generation or taken while the flow is suspended (the partition is
   sought back to its committed offset after every rebalance, so they are
   read again), and mark the others as pending ack (``track_message``), so
   a rebalance waits for them (``stream_wait_empty``).
   Where stock Faust can commit past records that were never processed
   (a seek racing records already fetched, events emptied from the queue
   after the seek), the consumer and the reader here drop only what is
   read again (see :class:`BatchGuardConsumer` and :func:`take_batches`).
3. :func:`ack_events` acks like ``Stream.ack``: ``Message.ack`` ->
   ``Consumer.ack``; an offset is committed once it and every offset before
   it in its partition are acked. Callers must ack a partition's events in
   offset order (the pipeline does): Faust's ``Consumer._new_offset``
   commits past a single unacked offset right after the committed one
   (faust-streaming #606).
4. :class:`RiskstreamApp` bounds a stop (``RISKSTREAM_WORKER_SHUTDOWN_TIMEOUT_S``)
   whatever is down: the wait for unacked records, the producer's flush
   and the consumer's last commit each give up at the stop's deadline, and
   the consumer thread survives aiokafka's fetcher re-raising a
   cancellation when Kafka is unreachable. It also builds events
   with a cached event class, sizes the producer buffer without a settings
   lookup (:class:`CachedSizeProducerBuffer`), gives Faust's Monitor no per-
   record work (:class:`BatchMonitor`; its clock for the livelock detector
   is set once per batch by :func:`take_batches`) and, in a worker, collects
   garbage less often.
5. :class:`RawSchema` hands key and value bytes over as they are.

Everything here relies on faust-streaming internals, pinned at 0.15.3
(``constraints.txt``). ``tests/unit/app/test_transport.py`` fails when one
of them changes (it fingerprints their source), and the integration and
end-to-end tests prove the guarantees on the real Kafka. The internals:

- ``Consumer._drain_messages`` (replaced), and what it uses:
  ``Consumer.getmany``, ``callback``, ``_read_offset``, ``_add_gap``,
  ``_commit_every``, ``_n_acked``, ``commit``, ``suspend_flow``,
  ``flow_active``, ``wait_first``, ``diag``, ``consumer_stopped_errors``;
- ``AIOKafkaConsumerThread.seek_to_committed`` (replaced: one-step
  seek, counted) and ``_fetch_records`` (wrapped to tag fetches),
  ``Consumer._new_consumer_thread``, ``Consumer._read_offset``,
  aiokafka's ``committed``, ``seek`` and ``assignment``;
- ``Channel.queue`` (a ``ThrowableQueue``: ``get``, ``get_nowait``;
  ``Stream.stop`` throws ``StopAsyncIteration`` into it), a
  ``FlowControlQueue`` made with ``clear_on_resume`` and so registered in
  ``App.flow_control._queues``, which :func:`take_batches` leaves;
- ``Message.generation_id``, ``Message.tracked``, ``App.consumer_generation_id``,
  ``App.flow_control.is_active``, ``Consumer.track_message``,
  ``TopicConductor.acking_topics``, ``Message.ack``, ``Consumer.ack``,
  ``SensorDelegate.on_message_out`` (what ``Stream.__aiter__`` and
  ``Stream.ack`` do per event);
- ``Monitor.stream_inbound_time`` (read by ``verify_event_path``);
- ``App._consumer_wait_empty`` (called by ``App._stop_consumer`` on a stop),
  ``App.create_event``, ``conf.Event``, ``App._new_transport``,
  ``App._new_producer_transport``, ``App.worker_init``, the ``Monitor``
  setting and ``Monitor.on_message_in``/``on_message_out``;
- ``ProducerBuffer.size`` (``pending``, ``queue``, ``producer_threaded``);
- for the bounded stop: ``App.on_stop``, ``App._producer_flush``,
  ``Consumer.on_stop`` (its last commit), ``AIOKafkaConsumerThread.on_thread_stop``
  and, under it, aiokafka's ``AIOKafkaConsumer.stop`` and ``Fetcher.close``
  and the consumer's ``_client``.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any

import faust
from faust.sensors import Monitor
from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers import aiokafka as kafka_driver
from faust.transport.producer import ProducerBuffer
from faust.types import TP, Message

__all__ = [
    "FAUST_VERSION",
    "BatchGuardConsumer",
    "BatchMonitor",
    "CachedSizeProducerBuffer",
    "RawSchema",
    "RiskstreamApp",
    "SeekCountingConsumerThread",
    "ack_events",
    "take_batches",
]

logger = logging.getLogger(__name__)

#: The faust-streaming release whose internals this module was written against.
FAUST_VERSION = "0.15.3"

#: Records delivered between two returns to the event loop (Faust's own figure).
YIELD_EVERY = 100

#: Least time a stop gives each of its bounded waits, even past its deadline.
MIN_STOP_WAIT_S = 0.5

#: Allocations between two young-generation collections in a worker. Python's
#: default (700) collects every few dozen records; each batch allocates about
#: ten objects per record, all freed by reference counting, none in cycles.
GC_GENERATION0_THRESHOLD = 50_000


class SeekCountingConsumerThread(kafka_driver.AIOKafkaConsumerThread):
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

    async def on_thread_stop(self) -> None:
        """Stop the consumer even when Kafka is unreachable.

        aiokafka 0.14's ``Fetcher.close`` cancels its pending fetch requests
        and awaits each: one caught in its retry pause (the broker is down)
        re-raises the cancellation, ``AIOKafkaConsumer.stop`` ends there
        without closing its client, and the thread dies without saying it
        has stopped, so the worker waited out mode's 60 s stop timeout.
        The cancellation is taken as what it is, the end of that request,
        and the client is closed as ``stop`` would have.
        """
        try:
            await super().on_thread_stop()
        except asyncio.CancelledError:
            logger.info(
                "consumer stopped with a fetch request pending (Kafka unreachable?)"
            )
            if self._consumer is not None:
                await self._consumer._client.close()


class BatchGuardConsumer(kafka_driver.Consumer):
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

    async def on_stop(self) -> None:
        """Commit what is acked one last time; with Kafka unreachable, give up within the stop's budget.

        aiokafka retries a commit until the group coordinator answers, so
        a broker that is down would hold the stop forever. What stays
        uncommitted was stored: the next owner of the partitions replays
        it and the store absorbs the repeat.
        """
        app = self.app
        budget_s = app.stop_budget_s() if isinstance(app, RiskstreamApp) else None
        if budget_s is None:
            await super().on_stop()
            return
        try:
            await asyncio.wait_for(super().on_stop(), budget_s)
        except TimeoutError:
            self.log.warning(
                "last offset commit not done within the shutdown timeout (Kafka "
                "unreachable?): records stored since the last commit will be replayed"
            )

    _thread: SeekCountingConsumerThread

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: partition -> (last offset delivered, the thread's seek count then)
        self._last_delivered: dict[TP, tuple[int, int]] = {}

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
        """Hand ``records[start:]`` to the Conductor; return where it stopped.

        Stops early when a commit is due (the caller commits outside the
        guard, as stock Faust does between records) or when the flow was
        suspended at a yield point (the rest would be dropped anyway).
        ``fetch_tag`` is the thread's seek count when ``records`` came.
        """
        read_offset = self._read_offset
        last_delivered = self._last_delivered
        callback = self.callback
        thread = self._thread
        for index in range(start, len(records)):
            if index != start and not (index - start) % YIELD_EVERY:
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
                return index
            await callback(message)
            if thread.seeks == fetch_tag:
                read_offset[tp] = offset
                last_delivered[tp] = (offset, fetch_tag)
        return len(records)


class CachedSizeProducerBuffer(ProducerBuffer):
    """Faust's producer buffer, sized without a settings lookup.

    The Conductor asks for ``size`` before every record it delivers; the
    stock property reads ``app.conf.producer_threaded`` each time, which
    cannot change once the producer exists.
    """

    _threaded: bool | None = None

    @property
    def size(self) -> int:
        if self._threaded is None:
            assert self.app is not None
            self._threaded = bool(self.app.conf.producer_threaded)
        if self._threaded:
            return len(self.queue._queue) if self.queue else 0  # type: ignore[attr-defined]
        return len(self.pending._queue)  # type: ignore[attr-defined]


class _Producer(kafka_driver.Producer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Same fields, cheaper size: the buffer was built (and wired to the
        # threaded producer) by the base class, so its class is swapped in place.
        self.buffer.__class__ = CachedSizeProducerBuffer


class _Transport(kafka_driver.Transport):
    Consumer = BatchGuardConsumer
    Producer = _Producer


class RiskstreamApp(faust.App):
    """The Faust App with riskstream's transport and fewer per-record costs (see the module doc)."""

    _event_class: Any = None

    def _new_transport(self) -> Any:
        return _Transport(self.conf.broker_consumer, self)

    def _new_producer_transport(self) -> Any:
        return _Transport(self.conf.broker_producer, self)

    def create_event(self, key: Any, value: Any, headers: Any, message: Any) -> Any:
        if self._event_class is None:
            self._event_class = self.conf.Event
        return self._event_class(self, key, value, headers, message)

    def __init__(
        self, *args: Any, shutdown_timeout_s: float | None = None, **kwargs: Any
    ) -> None:
        kwargs.setdefault("Monitor", BatchMonitor)
        super().__init__(*args, **kwargs)
        self.shutdown_timeout_s = shutdown_timeout_s
        #: When a stop must be done with the waits it controls (monotonic clock).
        self._stop_deadline: float | None = None

    async def on_stop(self) -> None:
        """Stop as Faust does, within ``shutdown_timeout_s`` for the waits a dead dependency stalls."""
        if self.shutdown_timeout_s is not None:
            self._stop_deadline = time.monotonic() + self.shutdown_timeout_s
        await super().on_stop()

    def stop_budget_s(self) -> float | None:
        """Seconds left of a stop's budget (None: no bound, e.g. during a rebalance)."""
        if not self.should_stop or self._stop_deadline is None:
            return None
        return max(self._stop_deadline - time.monotonic(), MIN_STOP_WAIT_S)

    async def _consumer_wait_empty(self, consumer: Any, logger: Any) -> None:
        """Wait for every taken record to be acked; when stopping, within the stop's budget.

        A rebalance waits as long as it takes (part of the delivery
        guarantee). A stop would wait forever for records stuck in flight
        (ClickHouse or every model server down); after the timeout they are
        left unacked, hence uncommitted (whoever reads their partition next
        replays them), the pipeline abandons them when it stops, and the
        worker exits. Whatever was acked meanwhile is committed.
        """
        budget_s = self.stop_budget_s()
        if budget_s is None:
            await super()._consumer_wait_empty(consumer, logger)
            return
        waiting = asyncio.ensure_future(super()._consumer_wait_empty(consumer, logger))
        try:
            await asyncio.wait_for(asyncio.shield(waiting), budget_s)
        except TimeoutError:
            logger.warning(
                "records still in flight after %.1f s of shutdown: leaving them unacked "
                "(not committed; replayed by the next owner of their partitions)",
                self.shutdown_timeout_s,
            )
            # Faust's wait swallows cancellation (Consumer._wait_for_ack); it
            # ends by itself once the consumer stops, which it checks each second.
            waiting.add_done_callback(_forget)

    async def _producer_flush(self, logger: Any) -> None:
        """Flush the producer; when stopping, give up on an unreachable Kafka within the budget.

        What can be left unsent then is no record of truth: the stats
        table's changelog (rebuilt from later windows) and dead letters of
        batches that were never acked (their records are replayed, and
        dead-lettered again, by the next owner of their partitions).
        """
        budget_s = self.stop_budget_s()
        if budget_s is None:
            await super()._producer_flush(logger)
            return
        try:
            await asyncio.wait_for(super()._producer_flush(logger), budget_s)
        except TimeoutError:
            logger.warning(
                "producer buffer not flushed within the shutdown timeout (Kafka "
                "unreachable?): unsent stats changelog and dead letters of unacked "
                "batches are dropped; the batches are replayed"
            )

    def worker_init(self) -> None:
        super().worker_init()
        _, generation1, generation2 = gc.get_threshold()
        gc.set_threshold(GC_GENERATION0_THRESHOLD, generation1, generation2)


def _forget(task: asyncio.Future[Any]) -> None:
    """Collect the outcome of a wait abandoned at shutdown (it may fail on the stopped consumer)."""
    if not task.cancelled() and task.exception() is not None:
        logger.debug("abandoned wait for unacked records ended: %r", task.exception())


class BatchMonitor(Monitor):
    """Faust's Monitor without its per-record statistics (nobody reads them here).

    It stays the App's sensor for rebalances, commits and sends, and its
    ``stream_inbound_time``, which the livelock detector reads, is set once
    per batch by :func:`take_batches`.
    """

    def on_message_in(self, tp: TP, offset: int, message: Message) -> None:
        """Nothing per record."""

    def on_message_out(self, tp: TP, offset: int, message: Message) -> None:
        """Nothing per record."""


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
