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
   read offset) is Faust's, in Faust's order. A topic that one
   :func:`take_batches` reader alone reads skips the Conductor: the slice
   goes into that reader's queue as one item (:class:`SliceChannel`,
   bounded in messages, taking the reference the Conductor would), where
   the Conductor would make an event of each record; any other topic's
   records go through the Conductor's callback one by one, as in Faust.
2. :func:`take_batches` reads the agent's channel queue in bulk instead of
   iterating the Stream, doing per record exactly what the Stream does
   before handing an event out: drop messages of an older consumer
   generation or taken while the flow is suspended (the partition is
   sought back to its committed offset after every rebalance, so they are
   read again), and mark the others as pending ack (``track_message``), so
   a rebalance waits for them (``stream_wait_empty``). It hands out Faust's
   messages, not events: the agents need only their bytes and coordinates.
   Where stock Faust can commit past records that were never processed
   (a seek racing records already fetched, events emptied from the queue
   after the seek), the consumer and the reader here drop only what is
   read again (see :class:`BatchGuardConsumer` and :func:`take_batches`).
3. :func:`ack_messages` acks like ``Stream.ack``: ``Message.ack`` ->
   ``Consumer.ack``; an offset is committed once it and every offset before
   it in its partition are acked. Callers must ack a partition's messages in
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
(``constraints.txt``). ``tests/unit/transport/test_transport.py`` fails when one
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
- ``Message.incref`` (the reference the Conductor's handler takes per
  channel, ``ConductorCompiler.build``), ``Channel.topics`` and the
  Conductor's iteration over its channels (to see that one reader alone
  reads a topic);
- ``Channel.queue`` (a ``ThrowableQueue``: ``get``, ``get_nowait``,
  ``put_nowait``, ``maxsize``; ``Stream.stop`` throws ``StopAsyncIteration`` into it), a
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

The modules, one reason to change each:

- :mod:`transport.consumer`: what the consumer delivers (slices, seeks,
  gaps, slice channels): delivery correctness, and the per-slice guard;
- :mod:`transport.stream`: the agent's end (:func:`take_batches`,
  :func:`ack_messages`, :class:`RawSchema`);
- :mod:`transport.shutdown`: the bounded stop;
- :mod:`transport.overhead`: per-record costs of stock Faust removed
  (producer buffer size, Monitor, event class, garbage collection);
- :mod:`transport.driver`: the wiring: the transport Faust finds by the
  broker URL's scheme ``riskstream://`` (registered under Faust's
  ``faust.transports`` entry point in ``setup.cfg``, Faust's own plug-in
  mechanism) and the App class that carries the App-side hooks.
"""

__all__ = ["FAUST_VERSION"]

#: The faust-streaming release whose internals this package was written against.
FAUST_VERSION = "0.15.3"
