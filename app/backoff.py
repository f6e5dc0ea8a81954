"""Capped exponential backoff: how every part of riskstream waits out a transient failure.

The worker never raises on a service being away (raising would ack the
batch, see ``agents/score.py``), and the generator never drops what Kafka
did not acknowledge: both retry until it works or they stop. One policy
keeps their logs and pauses alike: the pause starts at ``first_s`` and
doubles up to ``max_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

__all__ = ["Backoff", "retry_until_done"]


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
    retried: tuple[type[BaseException], ...],
    backoff: Backoff,
    log: logging.Logger,
    on_failure: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Run ``action`` until it returns, pausing after each failure in ``retried``.

    ``where`` and ``what`` name the service and the action in the log
    lines ("ClickHouse 127.0.0.1:9000: cannot insert 500 rows ..."); ``on_failure`` runs after each failure (e.g. drop a
    broken connection). Any other exception propagates: it is a bug, not an
    outage, and must stop the caller rather than be retried forever.
    """
    while True:
        try:
            await action()
        except retried as exc:
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
