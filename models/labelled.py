"""A labelled record as the warehouse holds it and retraining reads it.

Its own module, free of pandas and scikit-learn, because the stores
(:mod:`tables`) build it and the worker imports the stores.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

__all__ = ["LabelledExample"]


class LabelledExample(NamedTuple):
    """One stored prediction's inputs (as stored) and its record's latest true label."""

    record_id: str
    numbers: Mapping[str, float]
    texts: Mapping[str, str]
    label: str
    event_time_ms: int
