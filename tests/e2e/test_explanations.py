"""Explanations end to end: a worker with RISKSTREAM_EXPLAIN=true stores why, one without stores ''."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from tests.e2e.harness import DRAIN_TIMEOUT_S, Pipeline, produced_by, wait_until

pytestmark = pytest.mark.slow

COLUMNS = ["predicted_label", "probability_labels", "probabilities", "explanation"]


def _replay(pipeline: Pipeline, **worker: str) -> list[tuple[Any, ...]]:
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    pipeline.start_worker(**worker)
    produced = produced_by(pipeline.generate("--replay"))
    assert produced == 699
    wait_until(
        lambda: pipeline.count() >= 699, DRAIN_TIMEOUT_S, "699 predictions stored"
    )
    pipeline.account(produced)
    return pipeline.rows(COLUMNS)


@pytest.mark.parametrize("pipeline", ["clickhouse", "postgresql"], indirect=True)
def test_with_explain_on_every_row_stores_the_path_to_its_label(
    pipeline: Pipeline,
) -> None:
    rows = _replay(pipeline, RISKSTREAM_EXPLAIN="true")
    assert len(rows) == 699
    for label, classes, probabilities, text in rows:
        assert text, "an empty explanation"
        explanation = orjson.loads(str(text))
        assert explanation["kind"] == "tree" and explanation["path"]
        leaf = explanation["leaf"]
        assert leaf["score"] == label
        distribution = leaf["score_distribution"]
        total = sum(distribution.values())
        assert [distribution[c] / total for c in classes] == pytest.approx(  # type: ignore[attr-defined]
            list(probabilities),
            abs=1e-12,  # type: ignore[call-overload]
        )


def test_with_explain_off_the_column_is_empty(pipeline: Pipeline) -> None:
    rows = _replay(pipeline)
    assert len(rows) == 699
    assert {text for *_, text in rows} == {""}
