"""Live quality and drift end to end: the figures /stats shows equal scikit-learn's over the stored rows."""

from __future__ import annotations

import asyncio
import time
import urllib.request
from typing import Any

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    recall_score,
    roc_auc_score,
)

from tables.clickhouse import ClickHouseSink
from tables.monitor import quality_report
from tables.quality import CALIBRATION_EDGES, Windows
from tests.e2e.harness import (
    DRAIN_TIMEOUT_S,
    Pipeline,
    Worker,
    produced_by,
    wait_until,
)

pytestmark = pytest.mark.slow

#: The worker's windows in these tests (s), and how long it keeps a report (s).
WINDOW_S, RETENTION_S = 10, 3600
SETTINGS = {
    "RISKSTREAM_STATS_WINDOW_S": str(WINDOW_S),
    "RISKSTREAM_QUALITY_REFRESH_S": "1",
}


def live(worker: Worker) -> dict[str, Any]:
    body: dict[str, Any] = worker.stats()["live_quality"]
    assert body["error"] is None, body["error"]
    return body


def offline_figures(rows: list[tuple[str, str, float]]) -> dict[str, Any]:
    """scikit-learn's figures (and the calibration table by the same bins) over (label, predicted, P(1)) rows."""
    y = np.array([int(label) for label, _, _ in rows])
    yhat = np.array([int(predicted) for _, predicted, _ in rows])
    p = np.array([prob for _, _, prob in rows])
    bins = np.searchsorted(np.array(CALIBRATION_EDGES), p, side="right")
    return {
        "labelled_records": len(rows),
        "accuracy": accuracy_score(y, yhat),
        "sensitivity": recall_score(y, yhat, pos_label=1),
        "specificity": recall_score(y, yhat, pos_label=0),
        "roc_auc": roc_auc_score(y, p) if len(set(y)) == 2 else None,
        "brier_score": brier_score_loss(y, p),
        "calibration": [
            (
                int((bins == k).sum()),
                float(p[bins == k].mean()) if (bins == k).any() else None,
                float(y[bins == k].mean()) if (bins == k).any() else None,
            )
            for k in range(len(CALIBRATION_EDGES) + 1)
        ],
    }


def assert_equal(
    figures: dict[str, Any], expected: dict[str, Any], tolerance: float
) -> None:
    for metric in ("accuracy", "sensitivity", "specificity", "roc_auc", "brier_score"):
        if expected[metric] is None:
            assert figures[metric] is None, metric
        else:
            assert figures[metric] == pytest.approx(expected[metric], abs=tolerance), (
                metric
            )
    assert figures["labelled_records"] == expected["labelled_records"]
    for entry, (records, mean_predicted, observed) in zip(
        figures["calibration"], expected["calibration"], strict=True
    ):
        assert entry["records"] == records
        for key, value in (
            ("mean_predicted", mean_predicted),
            ("observed_rate", observed),
        ):
            if value is None:
                assert entry[key] is None
            else:
                assert entry[key] == pytest.approx(value, abs=tolerance), key


def test_live_quality_with_labels_five_seconds_late_equals_sklearn_on_both_workers_and_drift_is_near_zero(
    pipeline: Pipeline,
) -> None:
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    worker = pipeline.start_worker(**SETTINGS)
    # two workers share the partitions; each answers from ClickHouse alike
    second = pipeline.start_worker("worker-2", **SETTINGS)
    produced = produced_by(pipeline.generate("--replay", "--labels-delay", "5"))
    assert produced == 699
    wait_until(
        lambda: pipeline.count() >= 699 and pipeline.count_labels() >= 699,
        DRAIN_TIMEOUT_S,
        "699 predictions and 699 labels stored",
    )
    body = wait_until(
        lambda: (
            (b := live(worker))["quality"]
            and b["quality"][0]["totals"]["labelled_records"] == 699
            and b
        ),
        60,
        "/stats to count 699 labelled records",
    )
    (model,) = body["quality"]
    other = wait_until(
        lambda: (
            (b := live(second))["quality"]
            and b["quality"][0]["totals"]["labelled_records"] == 699
            and b
        ),
        60,
        "worker-2's /stats to count 699 labelled records",
    )
    assert other["quality"] == body["quality"]
    assert other["drift"] == body["drift"]
    # The same stored rows, read back from ClickHouse, scored offline.
    stored = pipeline.rows(["record_id", "event_time_ms", "model_version"])
    assert len(stored) == 699 and {v for _, _, v in stored} == {model["version"]}
    labelled = pipeline.clickhouse(
        "SELECT intDiv(event_time_ms, 10000) * 10, label, predicted_label, "
        "probabilities[indexOf(probability_labels, '1')] "
        f"FROM {pipeline.database}.labelled_predictions FORMAT TSV"
    )
    rows: dict[Any, list[tuple[str, str, float]]] = {}
    for line in labelled.splitlines():
        start, label, predicted, p = line.split("\t")
        for key in ("totals", int(start)):
            rows.setdefault(key, []).append((label, predicted, float(p)))
    assert len(rows["totals"]) == 699

    # /stats: the figures rounded to 6 decimals
    assert_equal(model["totals"], offline_figures(rows["totals"]), 1e-6)
    assert [w["start_epoch_s"] for w in model["windows"]] == sorted(
        k for k in rows if k != "totals"
    )
    for window in model["windows"]:
        assert_equal(window, offline_figures(rows[window["start_epoch_s"]]), 1e-6)

    # the computation itself, unrounded, on the same rows
    sink = pipeline.sink()
    assert isinstance(sink, ClickHouseSink)
    exact = asyncio.run(
        quality_report(
            sink.query,
            pipeline.database,
            Windows.retained(WINDOW_S, RETENTION_S, time.time()),
        )
    )
    assert_equal(exact[0]["totals"], offline_figures(rows["totals"]), 1e-9)
    for window in exact[0]["windows"]:
        assert_equal(window, offline_figures(rows[window["start_epoch_s"]]), 1e-9)
    print(
        f"\n[{pipeline.run_id}] live quality of {model['model']}:{model['version']} over "
        f"699 records: accuracy {model['totals']['accuracy']:.4f}, sensitivity "
        f"{model['totals']['sensitivity']:.4f}, ROC AUC {model['totals']['roc_auc']:.4f}"
    )

    # the replay is the training data: its drift is near 0
    (drift,) = body["drift"]
    assert drift["available"], drift["reason"]
    assert drift["totals"]["records"] == 699
    feature_psi = {
        name: figures["psi"] for name, figures in drift["totals"]["features"].items()
    }
    assert len(feature_psi) == 9
    assert all(value < 0.1 for value in feature_psi.values()), feature_psi
    assert drift["totals"]["prediction_mix_psi"] < 0.1
    assert drift["totals"]["features"]["bare_nuclei"]["missing_ratio"] == pytest.approx(
        16 / 699, abs=1e-6
    )

    # the gauges
    with urllib.request.urlopen(f"{worker.url}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    ref = f'model="{model["model"]}",version="{model["version"]}"'
    assert (
        f'riskstream_live_quality{{metric="labelled_records",{ref}}} 699.0' in metrics
    )
    assert f'riskstream_feature_psi{{feature="mitoses",{ref}}}' in metrics
    assert f"riskstream_prediction_mix_psi{{{ref}}}" in metrics
    pipeline.account(produced)


def test_drift_of_uniform_random_rows_is_clearly_high(pipeline: Pipeline) -> None:
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    worker = pipeline.start_worker(**SETTINGS)
    produced = produced_by(pipeline.generate("--count", "500", "--seed", "7"))
    wait_until(lambda: pipeline.count() >= produced, DRAIN_TIMEOUT_S, "500 stored")
    body = wait_until(
        lambda: (
            (b := live(worker))["drift"]
            and b["drift"][0].get("totals", {}).get("records") == produced
            and b
        ),
        60,
        "/stats to count the 500 records' drift",
    )
    (drift,) = body["drift"]
    feature_psi = {
        name: figures["psi"] for name, figures in drift["totals"]["features"].items()
    }
    print(f"\n[{pipeline.run_id}] PSI of uniform random rows: {feature_psi}")
    assert sum(value > 0.25 for value in feature_psi.values()) >= 7, feature_psi
    # nothing is labelled: no quality figures, and no error either
    assert body["quality"] == []
    pipeline.account(produced)
