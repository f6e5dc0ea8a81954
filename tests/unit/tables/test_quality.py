"""Live quality and drift: the math against scikit-learn and numpy, the queries on current ClickHouse (chdb).

ClickHouse 18.16 runs the same queries in the end-to-end tests.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from chdb import session
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    recall_score,
    roc_auc_score,
)

from core.settings import Settings
from models.dataset import load_dataset
from models.drift import (
    EPSILON,
    DriftReference,
    bin_counts,
    cut_points,
    drift_reference,
    psi,
    reference_from_card,
)
from models.repository import ModelRepository
from tables.monitor import (
    LiveMonitor,
    drift_report,
    quality_report,
    repository_references,
)
from tables.predictions import (
    LABELLED_VIEW,
    PredictionRow,
    create_statements,
    insert_statement,
    labelled_examples_query,
)
from tables.quality import (
    CALIBRATION_EDGES,
    CURRENT,
    CURRENT_BESIDE_SHADOW,
    SHADOW,
    ScoreColumns,
    Windows,
    roc_auc_from_counts,
)
from tables.sinks import build_sink
from tests.ports import free_port

DB = "rs_quality"
FEATURES = ["clump_thickness", "bare_nuclei"]
T0_S = 1_767_323_040  # a multiple of the 10 s windows below


def test_roc_auc_from_counts_is_sklearns_with_ties() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        n = int(rng.integers(2, 300))
        y = rng.integers(0, 2, n)
        if y.min() == y.max():
            continue
        # few distinct scores: many ties, as a tree's leaves give
        scores = np.round(rng.random(n) * rng.integers(1, 12), 0) / 11
        counts: dict[float, list[int]] = {}
        for score, label in zip(scores, y, strict=True):
            counts.setdefault(float(score), [0, 0])[1 - int(label)] += 1
        ours = roc_auc_from_counts((s, p, q) for s, (p, q) in counts.items())
        assert ours == pytest.approx(roc_auc_score(y, scores), abs=1e-12)
    assert roc_auc_from_counts([(0.5, 3, 0)]) is None


def test_psi_is_the_documented_formula_with_an_epsilon_floor() -> None:
    rng = np.random.default_rng(3)
    expected = rng.dirichlet(np.ones(8))
    actual = rng.dirichlet(np.ones(8))
    actual[2] = 0.0
    e, a = np.maximum(expected, EPSILON), np.maximum(actual, EPSILON)
    assert psi(list(expected), list(actual)) == pytest.approx(
        float(np.sum((a - e) * np.log(a / e))), rel=1e-12
    )
    assert psi([0.5, 0.5], [0.5, 0.5]) == 0.0


def test_training_bins_all_hold_training_values_and_put_each_value_below_its_upper_cut() -> (
    None
):
    rng = np.random.default_rng(5)
    for values in (
        rng.normal(size=500),
        rng.integers(1, 4, 200).astype(float),  # a few integer scores
        np.concatenate([np.ones(90), [2.0] * 10]),
        np.array([3.0, np.nan, 3.0]),
    ):
        cuts = cut_points(values)
        counts, missing = bin_counts(values, cuts)
        assert missing == int(np.isnan(values).sum())
        assert sum(counts) + missing == len(values)
        assert all(counts), f"an empty training bin: {counts} for cuts {cuts}"
        present = values[~np.isnan(values)]
        for value in present[:20]:
            k = sum(cut < value for cut in cuts)
            assert k == 0 or cuts[k - 1] < value
            assert k == len(cuts) or value <= cuts[k]


def test_the_card_keeps_bins_of_every_numeric_input_and_the_class_mix() -> None:
    dataset = load_dataset("wisconsin-original")
    saved = json.loads(json.dumps(drift_reference(dataset)))  # as card.json holds it
    reference = reference_from_card({"drift_reference": saved})
    assert isinstance(reference, DriftReference)
    assert list(reference.features) == dataset.feature_names
    for name, bins in reference.features.items():
        counts, missing = bin_counts(dataset.X[name].to_numpy(float), bins.cuts)
        # shares of the values present; the missing ones apart
        assert bins.proportions == pytest.approx([c / sum(counts) for c in counts])
        assert bins.missing_ratio == missing / len(dataset.X)
    assert reference.features["bare_nuclei"].missing_ratio == pytest.approx(16 / 699)
    assert reference.class_mix == pytest.approx({"0": 458 / 699, "1": 241 / 699})
    # an older card, or a PMML trained elsewhere: a reason, not an error
    assert "no training bins" in str(reference_from_card({"name": "x"}))


def _row(offset: int, rng: np.random.Generator, version: str) -> PredictionRow:
    p1 = float(round(rng.random() * 8) / 8)  # ties, and some exact bin edges
    return PredictionRow(
        source_topic="features",
        source_partition=0,
        source_offset=offset,
        record_id=f"r{offset}",
        event_time=T0_S + offset % 30,
        event_time_ms=(T0_S + offset % 30) * 1000,
        scored_at_ms=0,
        feature_names=FEATURES,
        feature_values=[
            float(rng.integers(1, 11)),
            math.nan if offset % 9 == 0 else float(rng.integers(1, 11)),
        ],
        predicted_label="1" if p1 >= 0.5 else "0",
        probability_labels=["0", "1"],
        probabilities=[1 - p1, p1],
        true_label="",
        model_name="breast-cancer",
        model_version=version,
        model_server="s",
        scoring_latency_ms=1.0,
        text_feature_names=[],
        text_feature_values=[],
        predicted_value=math.nan,
    )


def _literal(values: tuple[Any, ...]) -> str:
    return "(" + ", ".join(repr(v) for v in values) + ")"


@pytest.fixture
def clickhouse() -> Iterator[session.Session]:
    chs = session.Session()
    for statement in create_statements(DB):
        chs.query(statement)
    rng = np.random.default_rng(11)
    rows = [_row(i, rng, "1" if i % 4 else "2") for i in range(400)]
    stamp = (T0_S + 60, (T0_S + 60) * 1000)
    chs.query(
        f"{insert_statement(DB)} " + ", ".join(_literal(row + stamp) for row in rows)
    )
    chs.query(  # a replay of some rows: they count once
        f"{insert_statement(DB)} "
        + ", ".join(_literal(row + stamp) for row in rows[:50])
    )
    labels = ", ".join(
        _literal(
            ("labels", 0, i, f"r{i}", str(int(rng.random() < 0.4)), T0_S, T0_S * 1000)
        )
        for i in range(0, 400, 1)
        if i % 7  # some records have no label yet
    )
    chs.query(f"INSERT INTO {DB}.labels VALUES {labels}")
    yield chs
    chs.close()


def _query(chs: session.Session) -> Any:
    async def run(sql: str) -> list[tuple[Any, ...]]:
        answer = json.loads(chs.query(sql, "JSONCompact").bytes())
        return [tuple(row) for row in answer["data"]]

    return run


WINDOWS = Windows(10, T0_S)


def _offline(
    chs: session.Session, columns: ScoreColumns = CURRENT, where: str = "1"
) -> dict[Any, Any]:
    """(window, version) -> rows (label, predicted label, P(1)) read back from the view."""
    answer = json.loads(
        chs.query(
            f"SELECT intDiv(event_time_ms, 10000) * 10, {columns.version}, label, "
            f"{columns.label}, {columns.probabilities}[2] FROM {DB}.{LABELLED_VIEW} "
            f"WHERE {where}",
            "JSONCompact",
        ).bytes()
    )
    rows: dict[Any, Any] = {}
    for start, version, label, predicted, p in answer["data"]:
        for key in ((int(start), version), ("total", version)):
            rows.setdefault(key, []).append((label, predicted, float(p)))
    return rows


def _check(figures: dict[str, Any], rows: list[tuple[str, str, float]]) -> None:
    y = np.array([int(label) for label, _, _ in rows])
    yhat = np.array([int(predicted) for _, predicted, _ in rows])
    p = np.array([prob for _, _, prob in rows])
    assert figures["labelled_records"] == len(rows)
    assert figures["accuracy"] == pytest.approx(accuracy_score(y, yhat), abs=1e-9)
    assert figures["sensitivity"] == pytest.approx(recall_score(y, yhat), abs=1e-9)
    assert figures["specificity"] == pytest.approx(
        recall_score(y, yhat, pos_label=0), abs=1e-9
    )
    assert figures["roc_auc"] == pytest.approx(roc_auc_score(y, p), abs=1e-9)
    assert figures["brier_score"] == pytest.approx(brier_score_loss(y, p), abs=1e-9)
    bins = np.searchsorted(np.array(CALIBRATION_EDGES), p, side="right")
    for k, entry in enumerate(figures["calibration"]):
        inside = bins == k
        assert entry["records"] == int(inside.sum())
        if inside.any():
            assert entry["mean_predicted"] == pytest.approx(p[inside].mean(), abs=1e-9)
            assert entry["observed_rate"] == pytest.approx(y[inside].mean(), abs=1e-9)
        else:
            assert entry["mean_predicted"] is None


def test_quality_per_window_and_version_equals_sklearn_over_the_stored_rows(
    clickhouse: session.Session,
) -> None:
    report = asyncio.run(quality_report(_query(clickhouse), DB, WINDOWS))
    offline = _offline(clickhouse)
    assert [(m["model"], m["version"]) for m in report] == [
        ("breast-cancer", "1"),
        ("breast-cancer", "2"),
    ]
    for model in report:
        _check(model["totals"], offline[("total", model["version"])])
        assert [w["start_epoch_s"] for w in model["windows"]] == [
            T0_S,
            T0_S + 10,
            T0_S + 20,
        ]
        for window in model["windows"]:
            _check(window, offline[(window["start_epoch_s"], model["version"])])
    # windows before the first one kept are left out
    later = asyncio.run(quality_report(_query(clickhouse), DB, Windows(10, T0_S + 20)))
    assert {w["start_epoch_s"] for m in later for w in m["windows"]} == {T0_S + 20}


def test_shadow_and_current_quality_side_by_side_on_the_records_both_scored() -> None:
    """The shadow's figures from its own columns, the current's over the same records."""
    chs = session.Session()
    try:
        for statement in create_statements(DB):
            chs.query(statement)
        rng = np.random.default_rng(5)
        rows = []
        for i in range(300):
            row = _row(i, rng, "1")
            if i % 3:  # the shadow scored two records in three
                q1 = float(round(rng.random() * 8) / 8)
                row = row._replace(
                    shadow_version="2",
                    shadow_label="1" if q1 >= 0.5 else "0",
                    shadow_probabilities=[1 - q1, q1],
                )
            rows.append(row)
        stamp = (T0_S + 60, (T0_S + 60) * 1000)
        chs.query(
            f"{insert_statement(DB)} " + ", ".join(_literal(r + stamp) for r in rows)
        )
        labels = ", ".join(
            _literal(
                (
                    "labels",
                    0,
                    i,
                    f"r{i}",
                    str(int(rng.random() < 0.4)),
                    T0_S,
                    T0_S * 1000,
                )
            )
            for i in range(300)
        )
        chs.query(f"INSERT INTO {DB}.labels VALUES {labels}")
        shadow = asyncio.run(quality_report(_query(chs), DB, WINDOWS, SHADOW))
        current = asyncio.run(
            quality_report(_query(chs), DB, WINDOWS, CURRENT_BESIDE_SHADOW)
        )
        assert [(m["model"], m["version"]) for m in shadow] == [("breast-cancer", "2")]
        assert [(m["model"], m["version"]) for m in current] == [("breast-cancer", "1")]
        both_scored = SHADOW.label
        _check(
            shadow[0]["totals"],
            _offline(chs, SHADOW, where=f"{both_scored} != ''")[("total", "2")],
        )
        _check(
            current[0]["totals"],
            _offline(chs, CURRENT, where=f"{both_scored} != ''")[("total", "1")],
        )
        assert current[0]["totals"]["labelled_records"] == 200
    finally:
        chs.close()


def test_the_quality_query_reads_the_columns_it_is_given() -> None:
    with pytest.raises(ValueError, match="no such prediction column"):
        ScoreColumns(label="no_such_label")


def test_drift_per_window_equals_numpy_over_the_stored_rows(
    clickhouse: session.Session,
) -> None:
    dataset = load_dataset("wisconsin-original")
    card = {"drift_reference": drift_reference(dataset)}
    reference = reference_from_card(card)
    assert isinstance(reference, DriftReference)

    def references(model: str, version: str) -> DriftReference | str:
        return reference if version == "1" else "no card for version 2"

    report = asyncio.run(drift_report(_query(clickhouse), DB, WINDOWS, references))
    first, second = report
    assert second == {
        "model": "breast-cancer",
        "version": "2",
        "available": False,
        "reason": "no card for version 2",
    }
    answer = json.loads(
        clickhouse.query(
            f"SELECT feature_values, predicted_label FROM {DB}.predictions FINAL "
            "WHERE model_version = '1'",
            "JSONCompact",
        ).bytes()
    )["data"]
    values = np.array(
        [[math.nan if v is None else float(v) for v in row[0]] for row in answer]
    )
    labels = [row[1] for row in answer]
    totals = first["totals"]
    assert totals["records"] == len(answer)
    for k, name in enumerate(FEATURES):
        bins = reference.features[name]
        counts, missing = bin_counts(values[:, k], bins.cuts)
        expected = psi(bins.proportions, [c / sum(counts) for c in counts])
        assert totals["features"][name]["psi"] == pytest.approx(expected, abs=1e-12)
        assert totals["features"][name]["missing_ratio"] == missing / len(answer)
    mix = [labels.count(c) / len(labels) for c in ("0", "1")]
    assert totals["prediction_mix_psi"] == pytest.approx(
        psi([reference.class_mix["0"], reference.class_mix["1"]], mix), abs=1e-12
    )
    assert [w["start_epoch_s"] for w in first["windows"]] == [
        T0_S,
        T0_S + 10,
        T0_S + 20,
    ]
    assert sum(w["records"] for w in first["windows"]) == totals["records"]


def test_a_version_without_training_bins_gets_drift_unavailable_with_the_reason(
    tmp_path: Path,
) -> None:
    repository = ModelRepository(tmp_path)
    repository.save("old", {"model.pmml": b"<PMML/>"}, {"algorithm": "tree"})
    bins = {"drift_reference": drift_reference(load_dataset("wisconsin-original"))}
    repository.save("old", {"model.pmml": b"<PMML/>"}, bins)
    references = repository_references(tmp_path)
    assert "no training bins" in str(references("old", "1"))
    assert isinstance(references("old", "2"), DriftReference)
    assert "unknown version 3" in str(references("old", "3"))
    assert "not a repository version" in str(references("imported", "pmml"))


def test_the_monitor_queries_clickhouse_once_per_refresh(
    clickhouse: session.Session,
) -> None:
    queries: list[str] = []
    run = _query(clickhouse)

    async def counted(sql: str) -> list[tuple[Any, ...]]:
        queries.append(sql)
        return await run(sql)

    monitor = LiveMonitor(
        counted,
        DB,
        lambda model, version: "no card",
        window_s=10,
        retention_s=10**10,  # the test rows' event times are in the past
        refresh_s=3600,
    )

    async def twice() -> tuple[dict[str, Any], dict[str, Any]]:
        return await monitor.report(), await monitor.report()

    first, second = asyncio.run(twice())
    assert first is second and first["error"] is None
    # quality x3, label mix, the shadow's and the current's beside it x3 each; no card: no bins query
    assert len(queries) == 10
    assert [m["version"] for m in first["quality"]] == ["1", "2"]
    assert first["drift"][0]["reason"] == "no card"

    unavailable = LiveMonitor(
        None,
        DB,
        lambda model, version: "no card",
        window_s=10,
        retention_s=60,
        refresh_s=1,
        unavailable="no ClickHouse sink",
    )
    report = asyncio.run(unavailable.report())
    assert report["error"] == "no ClickHouse sink" and report["quality"] == []


def test_the_monitor_reports_a_clickhouse_that_does_not_answer_as_an_error() -> None:
    settings = Settings(clickhouse_port=free_port(), sinks="clickhouse")
    sinks = [build_sink("clickhouse", settings)]
    monitor = LiveMonitor.from_settings(settings, sinks)
    report = asyncio.run(monitor.report())
    assert report["error"].startswith("ClickHouse query failed: ")
    assert report["quality"] == [] and report["drift"] == []


def test_retraining_reads_each_labelled_record_once_with_its_inputs(
    clickhouse: session.Session,
) -> None:
    rows = asyncio.run(
        _query(clickhouse)(labelled_examples_query("breast-cancer", DB, None))
    )
    labelled = [i for i in range(400) if i % 7]
    # the 50 replayed records come once; the unlabelled ones not at all
    assert sorted(row[0] for row in rows) == sorted(f"r{i}" for i in labelled)
    record_id, names, values, text_names, text_values, label, event_time_ms = rows[0]
    offset = int(record_id[1:])
    assert names == FEATURES and len(values) == 2 and text_names == text_values == []
    assert label in ("0", "1")
    assert event_time_ms == (T0_S + offset % 30) * 1000
    recent = asyncio.run(
        _query(clickhouse)(
            labelled_examples_query("breast-cancer", DB, (T0_S + 20) * 1000)
        )
    )
    assert len(recent) == sum(offset % 30 >= 20 for offset in labelled)
    assert (
        asyncio.run(_query(clickhouse)(labelled_examples_query("o'ther", DB, None)))
        == []
    )
