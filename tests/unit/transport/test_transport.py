"""The fast record path's contract with Faust: the internals it relies on, and what it does per event.

The delivery guarantees themselves are proven on the real Kafka and
ClickHouse (tests/e2e/test_stream.py: kill -9, rebalances with commits
sampled throughout); these tests fail first, and loudly, when a Faust or
mode upgrade changes code that ``transport/`` copies or relies on.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import inspect
from dataclasses import dataclass, field
from importlib.metadata import version
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from faust.sensors.prometheus import FaustMetrics, PrometheusMonitor
from faust.types import TP
from faust.types.tuples import ConsumerMessage
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from core.settings import get_settings
from transport import FAUST_VERSION
from transport.consumer import BatchGuardConsumer, SliceChannel
from transport.driver import RiskstreamApp, RiskstreamProducer, Transport
from transport.overhead import (
    BatchMonitor,
    BatchPrometheusMonitor,
    CachedSizeProducerBuffer,
    LeanProducer,
)
from transport.stream import RawSchema, ack_messages, take_batches

#: Source fingerprints of what the transport package replaces, copies or relies on
#: (sha256 of ``inspect.getsource``, first 16 hex digits), for
#: faust-streaming 0.15.3, mode-streaming 0.7.1 and aiokafka 0.14.0. A mismatch means the
#: upgrade changed that code: re-read it against the transport package (and its
#: module docstring's list), fix what needs fixing, then update the value.
FINGERPRINTS = {
    "faust.transport.consumer:Consumer._drain_messages": "44a2500309e83c63",
    "faust.transport.consumer:Consumer.getmany": "4b168d84882a70d6",
    "faust.transport.consumer:Consumer.track_message": "217d7f1399a4cd8e",
    "faust.transport.consumer:Consumer.ack": "5fcf41cf45153475",
    "faust.transport.consumer:Consumer._new_offset": "1d2c7ea89a7ad4f1",
    "faust.transport.consumer:Consumer._add_gap": "4df2573ded7c1c2c",
    "faust.transport.consumer:Consumer.wait_empty": "e4662fe24f094819",
    "faust.transport.consumer:Consumer.perform_seek": "0e8c130ff4b0afd8",
    "faust.transport.consumer:Consumer.seek": "b86a9fe05f956b30",
    "faust.transport.consumer:Consumer.on_stop": "45b1d2210ce2b526",
    "faust.transport.conductor:ConductorCompiler.build": "837cf521368c1ee4",
    "faust.types.tuples:Message.ack": "4751b72c4ed84153",
    "faust.types.tuples:Message.decref": "f23396189d0e5592",
    "faust.types.tuples:Message.incref": "78d34df830d3089b",
    "faust.transport.conductor:Conductor.__iter__": "5af605a108c097fa",
    "faust.types.tuples:ConsumerMessage.on_final_ack": "45d670b6a8ac4bd0",
    "faust.streams:Stream._py_aiter": "3a48ee257a65435b",
    "faust.streams:Stream.ack": "32d7171a89b0931d",
    "faust.app.base:App.create_event": "15fea3d1e95e6625",
    "faust.app.base:App._new_transport": "42db531312dd776f",
    "faust.app.base:App._new_producer_transport": "eb3b4aa6a8961275",
    "faust.app.base:App.worker_init": "b10847ca36a898ca",
    "faust.app.base:App._on_partitions_revoked": "d5c895bbe57dc73a",
    "faust.app.base:App._consumer_wait_empty": "6bc313c48c064b16",
    "faust.app.base:App._stop_consumer": "55854a5de12c3f52",
    "faust.app.base:App.on_init_dependencies": "7621a70a9b01f93f",
    "faust.transport.producer:ProducerBuffer.size": "b543a978fdece62e",
    "faust.transport.producer:Producer.__init__": "5c53a4b47aa1372b",
    "faust.sensors.monitor:Monitor.on_message_in": "b2a9a9045b2f456c",
    "faust.sensors.monitor:Monitor.on_message_out": "7c4054247cde96c3",
    "faust.sensors.monitor:Monitor.on_stream_event_in": "df6d2e5f6397ce44",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.verify_event_path": "b983e7735f647cb3",
    "faust.serializers.schemas:Schema.compile": "d46eec5ce3195b2c",
    "faust.tables.recovery:Recovery._resume_streams": "d986a6710c1aca98",
    "mode.utils.queues:ThrowableQueue.get": "57490d393d4147ff",
    "mode.utils.queues:ThrowableQueue.get_nowait": "d42b1be9219a0e6e",
    "mode.utils.queues:FlowControlQueue.get_nowait": "57cb9b5c12e7ebd9",
    "mode.services:Service.wait_first": "feade6a31f8a6789",
    "mode.utils.queues:FlowControlEvent.clear": "dda5e40d80288a8f",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.seek_to_committed": "775ab0adc4b052ab",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread._fetch_records": "39a2c6c79fc1455a",
    "faust.transport.drivers.aiokafka:Consumer._new_consumer_thread": "0870ec53dea75083",
    "aiokafka.consumer.consumer:AIOKafkaConsumer.seek_to_committed": "f6cd85c8b70a4ccf",
    "faust.channels:Channel.queue": "549dd774f3e314a7",
    "mode.utils.queues:FlowControlEvent.resume": "4dcdc1253fd0dcb4",
    "mode.utils.queues:FlowControlQueue.__init__": "965b0ca0d6c29c88",
    # the bounded stop
    "faust.app.base:App.on_stop": "bfe5a933defb2324",
    "faust.app.base:App._producer_flush": "35c92baa028d57bd",
    "faust.transport.drivers.aiokafka:AIOKafkaConsumerThread.on_thread_stop": "8dfc004e258b6c25",
    "aiokafka.consumer.consumer:AIOKafkaConsumer.stop": "bc5da9c98595299a",
    "aiokafka.consumer.fetcher:Fetcher.close": "1cd24bc1c442149e",
    "faust.transport.drivers.aiokafka:Producer.on_stop": "86799c5ab7b662f7",
    "aiokafka.producer.producer:AIOKafkaProducer.stop": "43ef97147111893b",
}


def fingerprint(qualified_name: str) -> str:
    module_name, attribute = qualified_name.split(":")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    if isinstance(target, property):
        target = target.fget
    source = inspect.getsource(target)
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def test_the_pinned_faust_and_mode_releases_are_installed() -> None:
    assert version("faust-streaming") == FAUST_VERSION
    assert version("mode-streaming") == "0.7.1"
    assert version("aiokafka") == "0.14.0"


def test_the_faust_internals_the_fast_path_relies_on_are_unchanged() -> None:
    changed = [
        name for name, expected in FINGERPRINTS.items() if fingerprint(name) != expected
    ]
    assert not changed, (
        "faust/mode changed code that the transport package replaces or relies on: "
        f"{', '.join(changed)}; re-check the transport package against it"
    )


def test_the_app_runs_on_the_transport_faust_finds_by_its_name() -> None:
    from app import app

    assert isinstance(app, RiskstreamApp)
    assert app.conf.stream_wait_empty is True
    assert app.conf.Monitor is BatchMonitor
    # Faust's own factories, through its registry (the setup.cfg entry point).
    assert type(app.transport) is Transport
    assert type(app.producer_transport) is Transport
    assert app.transport.Consumer is BatchGuardConsumer
    assert app.producer_transport.Producer is RiskstreamProducer
    assert issubclass(RiskstreamProducer, LeanProducer)


def test_the_feature_topic_hands_over_raw_bytes() -> None:
    from agents.topics import StreamTopics

    topics = StreamTopics.from_settings(faust.App("topics-test"), get_settings())
    feature_topic = topics.features
    assert isinstance(feature_topic.schema, RawSchema)
    message = make_message(0)
    assert feature_topic.schema.loads_value(None, message) == b"5,1,1"
    assert feature_topic.schema.loads_key(None, message) == b"k0"


def test_the_producer_buffer_size_counts_pending_messages_like_faust() -> None:
    buffer = CachedSizeProducerBuffer()

    class Conf:
        producer_threaded = False

    class App:
        conf = Conf()

    buffer.app = App()  # type: ignore[assignment]
    assert buffer.size == 0
    buffer.pending.put_nowait(object())  # type: ignore[arg-type]
    buffer.pending.put_nowait(object())  # type: ignore[arg-type]
    assert buffer.size == 2


# --- take_batches and ack_messages, on Faust's own message and queue types -------


def make_message(offset: int, generation: int = 1, partition: int = 0) -> Any:
    return ConsumerMessage(
        "features",
        partition,
        offset,
        1_767_323_045.0,
        0,
        None,
        f"k{offset}".encode(),
        b"5,1,1",
        None,
        generation_id=generation,
    )


@dataclass
class Event:
    message: Any


@dataclass
class FlowControl:
    active: bool = True
    _queues: set[Any] = field(default_factory=set)  # what a resume empties

    def is_active(self) -> bool:
        return self.active


@dataclass
class Consumer:
    """Records what Faust's consumer is told: tracked messages and acks in order."""

    tracked: list[int] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)

    def track_message(self, message: Any) -> None:
        self.tracked.append(message.offset)

    def ack(self, message: Any) -> bool:
        message.acked = True
        self.acked.append(message.offset)
        return True


@dataclass
class Topics:
    """The Conductor as the reader sees it: the acking topics and its channels."""

    acking_topics: set[str] = field(default_factory=lambda: {"features"})
    channels: list[Any] = field(default_factory=list)

    def __iter__(self) -> Any:
        return iter(self.channels)


@dataclass
class Monitor:
    stream_inbound_time: dict[TP, float] = field(default_factory=dict)


@dataclass
class Sensors:
    out: list[int] = field(default_factory=list)

    def on_message_out(self, tp: TP, offset: int, message: Any) -> None:
        self.out.append(offset)


@dataclass
class App:
    consumer: Consumer = field(default_factory=Consumer)
    topics: Topics = field(default_factory=Topics)
    flow_control: FlowControl = field(default_factory=FlowControl)
    monitor: Monitor = field(default_factory=Monitor)
    sensors: Sensors = field(default_factory=Sensors)
    consumer_generation_id: int = 1


def channel_queue() -> ThrowableQueue[Any]:
    """An agent channel's queue as Faust makes it (flow control of its own here)."""
    return ThrowableQueue(flow_control=FlowControlEvent(initially_suspended=False))


@dataclass(eq=False)
class Channel:
    queue: ThrowableQueue[Any] = field(default_factory=channel_queue)
    topics: tuple[str, ...] = ("features",)


@dataclass
class Stream:
    app: App = field(default_factory=App)
    channel: Channel = field(default_factory=Channel)


async def test_batches_are_cut_at_the_size_limit_and_every_event_is_tracked_once() -> (
    None
):
    stream = Stream()
    events = [Event(make_message(offset)) for offset in range(25)]
    for event in events:
        stream.channel.queue.put_nowait(event)
    batches = take_batches(stream, 10, 5.0)  # type: ignore[arg-type]
    sizes = [len(await anext(batches)) for _ in range(2)]
    assert sizes == [10, 10]
    last = await asyncio.wait_for(anext(batches), 10)
    assert [m.offset for m in last] == list(range(20, 25))
    assert stream.app.consumer.tracked == list(range(25))
    assert all(e.message.tracked for e in events)
    assert stream.app.consumer.acked == []  # taking acks nothing
    assert TP("features", 0) in stream.app.monitor.stream_inbound_time


async def test_a_batch_is_handed_out_when_the_wait_is_over_with_what_came() -> None:
    stream = Stream()
    stream.channel.queue.put_nowait(Event(make_message(0)))
    batches = take_batches(stream, 1000, 0.05)  # type: ignore[arg-type]
    started = asyncio.get_running_loop().time()
    batch = await asyncio.wait_for(anext(batches), 5)
    waited = asyncio.get_running_loop().time() - started
    assert [m.offset for m in batch] == [0]
    assert 0.04 <= waited < 1.0


async def test_events_of_an_older_generation_or_taken_during_a_rebalance_are_dropped_untracked() -> (
    None
):
    stream = Stream()
    app = stream.app
    app.consumer_generation_id = 2
    queue = stream.channel.queue
    queue.put_nowait(
        Event(make_message(0, generation=1))
    )  # fetched before the rebalance
    queue.put_nowait(Event(make_message(1, generation=2)))
    batches = take_batches(stream, 2, 0.05)  # type: ignore[arg-type]
    batch = await asyncio.wait_for(anext(batches), 5)
    assert [m.offset for m in batch] == [1]
    app.flow_control.active = (
        False  # a rebalance began: the partition will be sought back
    )
    queue.put_nowait(Event(make_message(2, generation=2)))
    queue.put_nowait(Event(make_message(3, generation=2)))
    waiting = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.2)
    assert not waiting.done()  # nothing kept: no batch
    app.flow_control.active = True
    queue.put_nowait(Event(make_message(4, generation=2)))
    batch = await asyncio.wait_for(waiting, 5)
    assert [m.offset for m in batch] == [4]
    assert app.consumer.tracked == [1, 4]


@pytest.mark.parametrize("taken_before_stop", [0, 3])
async def test_stopping_the_stream_ends_the_batches_and_acks_nothing(
    taken_before_stop: int,
) -> None:
    stream = Stream()
    for offset in range(taken_before_stop):
        stream.channel.queue.put_nowait(Event(make_message(offset)))
    batches = take_batches(stream, 100, 5.0)  # type: ignore[arg-type]
    reading = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.05)
    await stream.channel.queue.throw(StopAsyncIteration())
    with pytest.raises(StopAsyncIteration):
        await asyncio.wait_for(reading, 5)
    assert stream.app.consumer.acked == []


def test_acks_go_through_message_ack_in_the_order_given_once_each() -> None:
    app = App()
    messages = [make_message(offset) for offset in (7, 8, 9)]
    for message in messages:
        message.incref()  # the reference of the one reader
    ack_messages(app, messages)  # type: ignore[arg-type]
    ack_messages(app, messages)  # type: ignore[arg-type]
    assert app.consumer.acked == [7, 8, 9]
    assert app.sensors.out == [7, 8, 9]


# --- the consumer's delivery around seeks -------------------------------------------


@dataclass
class Thread:
    """The seek count of :class:`SeekCountingConsumerThread`, moved by the tests."""

    seeks: int = 0


class SeekingConsumer(BatchGuardConsumer):
    """BatchGuardConsumer's delivery alone: no Kafka, the Conductor replaced by a list.

    At offset ``seek_during`` the callback plays what happens meanwhile at
    the end of a rebalance: the thread seeks (``thread_seeks``) and/or
    Faust resets the read offsets to the committed ones (``reset``).
    """

    def __init__(
        self,
        seek_during: int | None = None,
        thread_seeks: bool = True,
        reset: bool = True,
    ) -> None:
        self._read_offset: dict[TP, int | None] = {}
        self._last_delivered: dict[TP, tuple[int, int]] = {}
        self._slice_channels = {}
        self._thread = Thread()  # type: ignore[assignment]
        self._commit_every = None
        self._n_acked = 0
        self.flow_active = True
        self.delivered: list[tuple[int, int]] = []
        self.gaps: list[tuple[int, int, int]] = []
        self.seek_during = seek_during
        self._thread_seeks = thread_seeks
        self._reset = reset
        self.committed = 100

    async def callback(self, message: Any) -> None:  # type: ignore[override]
        self.delivered.append((message.partition, message.offset))
        if message.offset == self.seek_during:
            if self._thread_seeks:
                self._thread.seeks += 1
            if self._reset:
                for tp in list(self._read_offset):
                    self._read_offset[tp] = self.committed

    async def _add_gap(self, tp: TP, offset_from: int, offset_to: int) -> None:
        self.gaps.append((tp.partition, offset_from, offset_to))

    async def deliver(self, records: list[tuple[TP, Any]]) -> int:
        return await self._deliver(records, 0, self._thread.seeks, lambda topic: True)


def fetched(partition: int, offsets: range) -> list[tuple[TP, Any]]:
    return [
        (TP("features", partition), make_message(o, partition=partition))
        for o in offsets
    ]


async def test_records_fetched_before_a_seek_are_not_delivered_after_it_and_leave_no_gap() -> (
    None
):
    consumer = SeekingConsumer(seek_during=110)
    tp = TP("features", 0)
    consumer._read_offset[tp] = 99
    records = fetched(0, range(100, 150))
    assert await consumer.deliver(records) == len(records)
    # Delivered up to the seek; the rest comes again from offset 100.
    assert consumer.delivered == [(0, o) for o in range(100, 111)]
    assert consumer._read_offset[tp] == 100  # the seek's, not the stale 110
    consumer.seek_during = None
    await consumer.deliver(fetched(0, range(100, 150)))  # fetched after the seek
    assert consumer.gaps == []  # no offset counted as done without its record
    assert consumer.delivered[-40:] == [(0, o) for o in range(110, 150)]


async def test_records_fetched_after_the_seek_are_all_delivered_while_faust_resets_the_read_offsets() -> (
    None
):
    # The thread sought before this fetch; Faust resets the read offsets meanwhile.
    consumer = SeekingConsumer(seek_during=105, thread_seeks=False)
    consumer._read_offset[TP("features", 0)] = None
    await consumer.deliver(fetched(0, range(100, 130)))
    assert consumer.delivered == [(0, o) for o in range(100, 130)]
    assert consumer.gaps == []  # the reset to 100 is no gap from 105 to 106


async def test_a_real_gap_in_the_partition_is_still_reported_to_faust() -> None:
    consumer = SeekingConsumer()
    consumer._read_offset[TP("features", 0)] = 99
    await consumer.deliver(fetched(0, range(100, 103)) + fetched(0, range(110, 112)))
    assert consumer.gaps == [
        (0, 103, 110)
    ]  # offsets 103..109 do not exist (compaction)


async def test_the_agent_queue_is_not_emptied_when_the_flow_resumes_but_other_queues_are() -> (
    None
):
    flow_control = FlowControlEvent(initially_suspended=False)
    agent_queue: ThrowableQueue[Any] = ThrowableQueue(
        10, flow_control=flow_control, clear_on_resume=True
    )
    changelog_queue: ThrowableQueue[Any] = ThrowableQueue(
        10, flow_control=flow_control, clear_on_resume=True
    )
    stream = Stream(App(flow_control=flow_control), Channel(agent_queue))  # type: ignore[arg-type]
    batches = take_batches(stream, 10, 0.01)  # type: ignore[arg-type]
    agent_queue.put_nowait(Event(make_message(1)))
    assert len(await asyncio.wait_for(anext(batches), 5)) == 1  # the reader runs
    agent_queue.put_nowait(Event(make_message(2)))
    changelog_queue.put_nowait("changelog event")
    flow_control.suspend()
    flow_control.resume()  # the end of a rebalance
    assert agent_queue.qsize() == 1  # left for the reader to judge
    assert changelog_queue.qsize() == 0  # Faust's own behaviour for its queues


# --- slices past the Conductor --------------------------------------------------


class SliceConsumer(SeekingConsumer):
    """The delivery with a reader taking the feature topic in slices; tracks like Faust's."""

    def __init__(self, max_messages: int = 4096, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.tracked: list[int] = []
        self.queue = channel_queue()
        self.slices = SliceChannel(self.queue, max_messages)
        self.deliver_slices(["features"], self.slices)

    def track_message(self, message: Any) -> None:
        self.tracked.append(message.offset)

    def queued(self) -> list[list[int]]:
        items = []
        while not self.queue.empty():
            items.append([m.offset for m in self.queue.get_nowait()])
        return items


async def test_a_slice_reader_gets_each_fresh_record_once_in_slices_and_none_through_the_conductor() -> (
    None
):
    consumer = SliceConsumer()
    tp = TP("features", 0)
    consumer._read_offset[tp] = 99
    records = fetched(0, range(100, 350))
    assert await consumer.deliver(records) == len(records)
    assert consumer.delivered == []  # the Conductor's callback saw none
    assert consumer.queued() == [
        list(range(100, 200)),
        list(range(200, 300)),
        list(range(300, 350)),
    ]
    assert consumer.slices.messages == 250  # put, not taken yet
    assert consumer._read_offset[tp] == 349
    assert all(message.refcount == 1 for _, message in records)  # the reader's
    # A re-fetch of what was handed over is not handed over again.
    await consumer.deliver(fetched(0, range(250, 340)))
    assert consumer.queued() == []


async def test_a_slice_caught_by_a_seek_before_its_hand_over_is_dropped_and_comes_again() -> (
    None
):
    consumer = SliceConsumer()
    tp = TP("features", 0)
    consumer._read_offset[tp] = 99

    async def seek_meanwhile(tp: TP, offset_from: int, offset_to: int) -> None:
        consumer._thread.seeks += 1  # the thread seeks while the slice is pending

    consumer._add_gap = seek_meanwhile  # type: ignore[method-assign]
    records = fetched(0, range(100, 105)) + fetched(0, range(110, 130))
    await consumer.deliver(records)
    assert consumer.queued() == []  # nothing of the stale fetch reaches the reader
    assert consumer._read_offset[tp] == 99  # nothing counted as read
    assert consumer.slices.messages == 0


async def test_the_consumer_waits_while_a_slice_reader_holds_its_limit() -> None:
    consumer = SliceConsumer(max_messages=150)
    delivering = asyncio.ensure_future(consumer.deliver(fetched(0, range(300))))
    await asyncio.sleep(0.05)
    assert not delivering.done()
    assert consumer.queue.qsize() == 2  # 200 messages: the limit reached, none more
    consumer.queue.get_nowait()
    consumer.slices.taken(100)
    assert await asyncio.wait_for(delivering, 5) == 300
    assert consumer.queue.qsize() == 2


async def test_the_reader_claims_its_topic_cuts_slices_into_batches_and_gives_it_back() -> (
    None
):
    consumer = SliceConsumer()
    channel = Channel()
    stream = Stream(App(consumer=consumer), channel)  # type: ignore[arg-type]
    stream.app.topics.channels.append(channel)
    consumer._slice_channels.clear()
    batches = take_batches(stream, 150, 0.05)  # type: ignore[arg-type]
    reading = asyncio.ensure_future(anext(batches))
    await asyncio.sleep(0.01)
    claimed = consumer._slice_channels["features"]
    assert claimed.queue is channel.queue
    await consumer.deliver(fetched(0, range(200)))
    first = await asyncio.wait_for(reading, 5)
    second = await asyncio.wait_for(anext(batches), 5)
    assert [m.offset for m in first] == list(range(150))
    assert [m.offset for m in second] == list(range(150, 200))  # at once, not held
    assert consumer.tracked == list(range(200))
    assert claimed.messages == 0
    await batches.aclose()
    assert consumer._slice_channels == {}  # back to the Conductor


async def test_a_topic_another_channel_reads_stays_with_the_conductor() -> None:
    consumer = SliceConsumer()
    consumer._slice_channels.clear()
    channel, table = Channel(), Channel()
    stream = Stream(App(consumer=consumer), channel)  # type: ignore[arg-type]
    stream.app.topics.channels.extend([channel, table])
    channel.queue.put_nowait(Event(make_message(0)))
    batches = take_batches(stream, 10, 0.01)  # type: ignore[arg-type]
    assert [m.offset for m in await asyncio.wait_for(anext(batches), 5)] == [0]
    assert consumer._slice_channels == {}


def test_the_batched_prometheus_sensor_publishes_what_faust_s_own_would_at_each_commit() -> (
    None
):
    from prometheus_client import CollectorRegistry

    def sensor(registry: CollectorRegistry) -> PrometheusMonitor:
        return PrometheusMonitor(metrics=FaustMetrics.create(registry, "rs"))

    stock_registry, batched_registry = CollectorRegistry(), CollectorRegistry()
    stock, batched = sensor(stock_registry), sensor(batched_registry)
    BatchPrometheusMonitor.adopt(batched)
    calls: list[tuple[str, TP, int]] = []
    for partition in range(3):
        tp = TP("features", partition)
        calls.append(("end", tp, 1_000 + partition))
        calls += [
            ("in", tp, offset) for offset in range(10 * partition, 10 * partition + 7)
        ]
        calls += [
            ("out", tp, offset) for offset in range(10 * partition, 10 * partition + 5)
        ]
    calls.append(("in", TP("labels", 0), 42))
    for monitor in (stock, batched):
        for kind, tp, offset in calls:
            message = SimpleNamespace(time_in=None)
            if kind == "in":
                monitor.on_message_in(tp, offset, message)  # type: ignore[arg-type]
            elif kind == "out":
                monitor.on_message_out(tp, offset, message)  # type: ignore[arg-type]
            else:
                monitor.track_tp_end_offset(tp, offset)

    def samples(
        registry: CollectorRegistry,
    ) -> dict[tuple[str, tuple[Any, ...]], float]:
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for metric in registry.collect()
            for sample in metric.samples
            if not sample.name.endswith("_created")
        }

    assert samples(batched_registry) != samples(stock_registry)  # nothing yet
    batched.on_tp_commit({TP("features", 0): 5})
    stock.on_tp_commit({TP("features", 0): 5})
    published = samples(batched_registry)
    assert published == samples(stock_registry)
    assert published[("rs_messages_received_total", ())] == 22
    assert published[("rs_active_messages", ())] == 22 - 15
