"""The topics of the stream, each declared by name.

All are declared by the app (``internal=True`` makes Faust create them if
missing, with the configured partition count, replication factor and
``min.insync.replicas``) because the broker does not
auto-create topics. Keys and values of the feature and labels topics stay raw bytes
(:class:`~transport.stream.RawSchema`, not even a serializer look-up): the
pipeline decodes whole batches itself (see :mod:`models.records`) rather
than paying for one Faust model per message.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import faust

from core.settings import Settings
from models.records import DeadLetter
from transport.stream import RawSchema

__all__ = ["StreamTopics"]


@dataclass(frozen=True)
class StreamTopics:
    """The topics the agents read (features, labels) and the dead-letter topic they write."""

    features: faust.TopicT
    dead_letters: faust.TopicT
    labels: faust.TopicT

    @classmethod
    def from_settings(cls, app: faust.App, settings: Settings) -> StreamTopics:
        # Replicated as RISKSTREAM_TOPIC_REPLICATION_FACTOR says, a majority in sync
        # for a write to count; Faust's own topics follow the app's settings.
        declare = functools.partial(
            app.topic,
            partitions=settings.topic_partitions,
            replicas=settings.replication_factor,
            config=settings.topic_config,
            internal=True,
        )
        return cls(
            features=declare(
                settings.feature_topic,
                schema=RawSchema(key_type=bytes, value_type=bytes),
            ),
            dead_letters=declare(
                settings.dlq_topic,
                key_type=bytes,
                value_type=DeadLetter,
                key_serializer="raw",
            ),
            labels=declare(
                settings.labels_topic,
                schema=RawSchema(key_type=bytes, value_type=bytes),
            ),
        )
