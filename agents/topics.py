"""The topics of the stream, each declared by name.

Both are declared by the app (``internal=True`` makes Faust create them if
missing, with the configured partition count) because the broker does not
auto-create topics. Keys and values of the feature topic stay raw bytes
(:class:`~app.transport.RawSchema`, not even a serializer look-up): the
pipeline decodes whole batches itself (see :mod:`models.records`) rather
than paying for one Faust model per message.
"""

from __future__ import annotations

from app.application import app
from app.settings import get_settings
from app.transport import RawSchema
from models.records import DeadLetter

__all__ = ["dead_letter_topic", "feature_topic"]


settings = get_settings()

feature_topic = app.topic(
    settings.feature_topic,
    schema=RawSchema(key_type=bytes, value_type=bytes),
    partitions=settings.topic_partitions,
    internal=True,
)

dead_letter_topic = app.topic(
    settings.dlq_topic,
    key_type=bytes,
    value_type=DeadLetter,
    key_serializer="raw",
    partitions=settings.topic_partitions,
    internal=True,
)
