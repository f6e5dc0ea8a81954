"""Capped exponential backoff: how every part of riskstream waits out a transient failure.

The worker never raises on a service being away (raising would ack the
batch, see ``agents/score.py``), and the generator never drops what Kafka
did not acknowledge: both retry until it works or they stop. One policy
keeps their logs and pauses alike: the pause starts at ``first_s`` and
doubles up to ``max_s``.

And one answer to "is this failure worth retrying", :func:`worth_retrying`:
Kafka says so itself (aiokafka marks each error ``retriable``: a broker
moving or down is, an authorization failure or a record too large is
not), the network and timeouts are, and each store names its driver's
transient errors. Anything else is permanent or a bug: retrying it would
loop forever, so it stops the caller with a line saying why.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError, KafkaTimeoutError

__all__ = ["Backoff", "retry_until_done", "worth_retrying"]

#: Failures of the network and of waiting, whichever service they come from.
TRANSIENT: tuple[type[BaseException], ...] = (OSError, EOFError, TimeoutError)


def worth_retrying(
    error: BaseException, transient: tuple[type[BaseException], ...] = ()
) -> bool:
    """Whether ``error`` may pass if the same action is tried again later.

    ``transient`` adds a service's own passing errors (a store's driver).
    aiokafka's ``KafkaTimeoutError`` (a send that found no broker in time) is
    not marked retriable but is the very outage the generator waits out.
    """
    if isinstance(error, KafkaError):
        return bool(error.retriable) or isinstance(error, KafkaTimeoutError)
    return isinstance(error, (*TRANSIENT, *transient))


class Backoff:
    """The pauses of one run of retries: ``first_s``, then doubled each time, at most ``max_s``."""

    def __init__(self, first_s: float, max_s: float) -> None:
        self.pause_s = first_s
        self._max_s = max_s
        self.failures = 0

    async def wait(self) -> None:
        """Count a failure, sleep the current pause, lengthen the next one."""
        self.failures += 1
        await asyncio.sleep(self.pause_s)
        self.pause_s = min(self.pause_s * 2, self._max_s)


async def retry_until_done(
    action: Callable[[], Awaitable[object]],
    *,
    where: str,
    what: str,
    backoff: Backoff,
    log: logging.Logger,
    transient: tuple[type[BaseException], ...] = (),
    on_failure: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run ``action`` until it returns, pausing after each failure :func:`worth_retrying`.

    ``where`` and ``what`` name the service and the action in the log
    lines ("ClickHouse 127.0.0.1:9000: cannot insert 500 rows ...");
    ``transient`` are the service's own passing errors; ``on_failure`` runs
    after each failure (e.g. drop a broken connection). Any other exception
    is logged as permanent and propagates: it must stop the caller rather
    than be retried forever.
    """
    while True:
        try:
            await action()
        except Exception as exc:
            if not worth_retrying(exc, transient):
                log.error(
                    "%s: cannot %s: %s: %s; a permanent failure, not retried",
                    where,
                    what,
                    type(exc).__name__,
                    exc,
                )
                raise
            if on_failure is not None:
                await on_failure()
            log.warning(
                "%s: cannot %s (attempt %d): %s: %s; retrying in %.1f s",
                where,
                what,
                backoff.failures + 1,
                type(exc).__name__,
                exc,
                backoff.pause_s,
            )
            await backoff.wait()
            continue
        if backoff.failures:
            log.info(
                "%s: %s succeeded after %d attempts", where, what, backoff.failures + 1
            )
        return
