"""What one batch did, per source partition: the counts the stats table and the metrics add up.

The pipeline fills one :class:`BatchOutcome` per batch; its listeners (the
stats table, the Prometheus counters) each add it to their own totals.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from tables.histogram import LATENCY_BUCKETS_MS

__all__ = ["BatchOutcome", "PartitionTally"]


@dataclass
class PartitionTally:
    """What one batch did to the records of one source partition."""

    received: int = 0
    stored: int = 0
    dead_lettered: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    latency_counts: list[int] = field(
        default_factory=lambda: [0] * (len(LATENCY_BUCKETS_MS) + 1)
    )
    latency_sum_ms: float = 0.0


@dataclass
class BatchOutcome:
    """The result of one batch: tallies per source partition and dead letters by stage."""

    partitions: dict[int, PartitionTally] = field(default_factory=dict)
    dead_letters_by_stage: Counter[str] = field(default_factory=Counter)
    stored_at_ms: int = 0

    def total(self, attribute: str) -> int:
        return sum(getattr(tally, attribute) for tally in self.partitions.values())
