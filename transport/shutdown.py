"""A worker's stop, bounded whatever is down (``RISKSTREAM_WORKER_SHUTDOWN_TIMEOUT_S``).

Stock Faust waits for unacked records, flushes the producer and commits
one last time, each as long as it takes: with Kafka, ClickHouse or every
model server down, a stop could take minutes or forever. Here each of
those waits gives up at the stop's deadline; what is left is unacked,
hence uncommitted, and replayed by the next owner of the partitions.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from typing import Any

import faust
from faust.transport.consumer import Consumer
from faust.transport.drivers import aiokafka as kafka_driver

__all__ = [
    "BoundedStopApp",
    "BoundedStopConsumer",
    "BoundedStopConsumerThread",
    "BoundedStopProducer",
]

logger = logging.getLogger(__name__)

#: Least time a stop gives each of its bounded waits, even past its deadline.
MIN_STOP_WAIT_S = 0.5


async def _within_stop_budget(app: Any, step: Awaitable[None]) -> bool:
    """Await ``step``; while ``app`` stops, only until its stop's deadline. False if it gave up.

    Outside a stop (or for an App without a bounded stop) the step takes
    as long as it takes.
    """
    budget_s = app.stop_budget_s() if isinstance(app, BoundedStopApp) else None
    if budget_s is None:
        await step
        return True
    try:
        await asyncio.wait_for(step, budget_s)
    except TimeoutError:
        return False
    return True


class BoundedStopApp(faust.App):
    """Faust's App whose stop gives up on dead dependencies after ``shutdown_timeout_s``."""

    def __init__(
        self, *args: Any, shutdown_timeout_s: float | None = None, **kwargs: Any
    ) -> None:
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
        if not await _within_stop_budget(self, super()._producer_flush(logger)):
            logger.warning(
                "producer buffer not flushed within the shutdown timeout (Kafka "
                "unreachable?): unsent stats changelog and dead letters of unacked "
                "batches are dropped; the batches are replayed"
            )


def _forget(task: asyncio.Future[Any]) -> None:
    """Collect the outcome of a wait abandoned at shutdown (it may fail on the stopped consumer)."""
    if not task.cancelled() and task.exception() is not None:
        logger.debug("abandoned wait for unacked records ended: %r", task.exception())


class BoundedStopConsumer(Consumer):
    """A consumer whose last commit gives up within the stop's budget."""

    async def on_stop(self) -> None:
        """Commit what is acked one last time; with Kafka unreachable, give up within the stop's budget.

        aiokafka retries a commit until the group coordinator answers, so
        a broker that is down would hold the stop forever. What stays
        uncommitted was stored: the next owner of the partitions replays
        it and the store absorbs the repeat.
        """
        if not await _within_stop_budget(self.app, super().on_stop()):
            self.log.warning(
                "last offset commit not done within the shutdown timeout (Kafka "
                "unreachable?): records stored since the last commit will be replayed"
            )


class BoundedStopProducer(kafka_driver.Producer):
    """A producer whose stop gives up on an unreachable Kafka within the stop's budget."""

    async def on_stop(self) -> None:
        """Stop the aiokafka producer; with Kafka unreachable, drop what it could not send.

        aiokafka's ``stop`` waits until every message it holds is delivered,
        and retries a broker that is down every 100 ms for as long as it
        takes: a stats write or a dead letter taken just before Kafka went
        away held the worker's stop for good. What is dropped at the
        deadline is what :meth:`BoundedStopApp._producer_flush` may drop:
        no record of truth.
        """
        producer = self._producer
        if not await _within_stop_budget(self.transport.app, super().on_stop()):
            self.log.warning(
                "producer not stopped within the shutdown timeout (Kafka unreachable?): "
                "its unsent messages (stats changelog, dead letters of unacked batches) "
                "are dropped"
            )
            assert producer is not None  # the stop that gave up was stopping it
            # What aiokafka's stop does after its flush (its sender and client
            # are not public): the sender stops retrying, the connections close.
            await producer._sender.close()
            await producer.client.close()


class BoundedStopConsumerThread(kafka_driver.AIOKafkaConsumerThread):
    """An aiokafka consumer thread that stops even when Kafka is unreachable."""

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
