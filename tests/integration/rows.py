"""A prediction row as the pipeline builds it, and a worker's use of a sink, for the storage tests."""

from __future__ import annotations

import asyncio

from tables.predictions import PredictionRow
from tables.sink import Sink


def prediction_row(offset: int) -> PredictionRow:
    """A classifier's row for Kafka offset ``offset``, one numeric input missing."""
    return PredictionRow(
        source_topic="features",
        source_partition=offset % 4,
        source_offset=offset,
        record_id=f"r-{offset}",
        event_time=1_767_323_045,
        event_time_ms=1_767_323_045_500,
        scored_at_ms=1_767_323_045_600,
        feature_names=["clump_thickness", "bare_nuclei"],
        feature_values=[5.0, float("nan")],
        predicted_label="1",
        probability_labels=["0", "1"],
        probabilities=[0.25, 0.75],
        true_label="",
        model_name="breast-cancer",
        model_version="1",
        model_server="http://127.0.0.1:8501",
        scoring_latency_ms=1.5,
        text_feature_names=["smoker"],
        text_feature_values=["yes"],
        predicted_value=float("nan"),
    )


async def write_as_the_worker(sink: Sink, count: int = 100) -> None:
    """What a worker does with a sink: start, check the schema (the stack made it), write, stop."""
    await sink.start()
    try:
        await asyncio.wait_for(sink.ensure_schema(), 30)
        await asyncio.wait_for(
            sink.write([prediction_row(i) for i in range(count)]), 30
        )
    finally:
        await sink.stop()
