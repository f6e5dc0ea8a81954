"""Dead letters to Kafka, confirmed before their source records are acked.

A dead letter replaces a record in the data flow: the record's offset may
be committed only once its dead letter is durably in the dead-letter topic.
:meth:`DeadLetterPublisher.publish` therefore waits for the broker's
acknowledgement of every letter and, if Kafka cannot take them, retries the
whole set with capped backoff instead of raising. A retry can write a letter
twice: the dead-letter topic is at-least-once, like the table, and a letter
names its source (topic, partition, offset) so readers can deduplicate.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import faust

from core.backoff import Backoff, retry_until_done
from models.records import DeadLetter

__all__ = ["DeadLetterPublisher"]

logger = logging.getLogger(__name__)

FIRST_BACKOFF_S = 0.1


class DeadLetterPublisher:
    """Sends dead letters to the dead-letter topic, keyed ``topic/partition/offset`` of their source."""

    def __init__(self, topic: faust.TopicT, max_backoff_s: float) -> None:
        self._topic = topic
        self._max_backoff_s = max_backoff_s
        self.published = 0

    async def publish(self, letters: Sequence[DeadLetter]) -> None:
        """Return once Kafka has acknowledged every letter (retrying while it cannot)."""
        if not letters:
            return

        async def send_all() -> None:
            pending = [
                await self._topic.send(key=_key(letter), value=letter)
                for letter in letters
            ]
            await asyncio.gather(*pending)

        await retry_until_done(
            send_all,
            where=f"Kafka topic {self._topic.get_topic_name()}",
            what=f"publish {len(letters)} dead letters",
            backoff=Backoff(FIRST_BACKOFF_S, self._max_backoff_s),
            log=logger,
        )
        self.published += len(letters)


def _key(letter: DeadLetter) -> bytes:
    """The source record's coordinates: the same record always has the same key."""
    return f"{letter.source_topic}/{letter.source_partition}/{letter.source_offset}".encode()
