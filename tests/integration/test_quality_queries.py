"""Live quality and drift queries on ClickHouse 18.16 (the local stack): the figures equal sklearn's and numpy's."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from core.settings import Settings
from models.dataset import load_dataset
from models.drift import (
    DriftReference,
    bin_counts,
    drift_reference,
    psi,
    reference_from_card,
)
from stack.warehouse import ADMIN_USER
from tables.clickhouse import ClickHouseSink
from tables.monitor import drift_report, quality_report
from tables.predictions import LABELLED_VIEW, LabelRow
from tables.sinks import build_sink
from tests.private_clickhouse import admin_query
from tests.unit.tables.test_quality import FEATURES, T0_S, WINDOWS, _check, _row


@pytest.fixture
def sink(stack: Settings) -> Iterator[ClickHouseSink]:
    database = f"it_{secrets.token_hex(4)}"
    store = build_sink(
        "clickhouse", stack, password="", database=database, user=ADMIN_USER
    )
    assert isinstance(store, ClickHouseSink)
    yield store
    admin_query(stack, f"DROP DATABASE IF EXISTS {database}")


def test_quality_and_drift_on_clickhouse_18_16_equal_the_offline_figures(
    sink: ClickHouseSink,
) -> None:
    rng = np.random.default_rng(11)
    rows = [_row(i, rng, "1") for i in range(300)]
    labels = [
        LabelRow(
            "labels", 0, i, f"r{i}", str(int(rng.random() < 0.4)), T0_S, T0_S * 1000
        )
        for i in range(300)
        if i % 7
    ]
    reference = reference_from_card(
        {"drift_reference": drift_reference(load_dataset("wisconsin-original"))}
    )
    assert isinstance(reference, DriftReference)

    async def run() -> tuple[Any, Any, Any, Any]:
        await sink.start()
        try:
            await sink.ensure_schema()
            await sink.write(rows)
            await sink.write(rows[:40])  # a replay
            await sink.write_labels(labels)
        finally:
            await sink.stop()
        db = sink.database
        quality = await quality_report(sink.query, db, WINDOWS)
        drift = await drift_report(sink.query, db, WINDOWS, lambda m, v: reference)
        stored = await sink.query(
            f"SELECT intDiv(event_time_ms, 10000) * 10, label, predicted_label, "
            f"probabilities[2] FROM {db}.{LABELLED_VIEW}"
        )
        values = await sink.query(f"SELECT feature_values FROM {db}.predictions FINAL")
        return quality, drift, stored, values

    quality, drift, stored, values = asyncio.run(run())
    (model,) = quality
    _check(model["totals"], [(label, pred, p) for _, label, pred, p in stored])
    for window in model["windows"]:
        _check(
            window,
            [(l, pr, p) for s, l, pr, p in stored if s == window["start_epoch_s"]],
        )
    (entry,) = drift
    matrix = np.array([row[0] for row in values], dtype=float)
    for k, name in enumerate(FEATURES):
        bins = reference.features[name]
        counts, _ = bin_counts(matrix[:, k], bins.cuts)
        expected = psi(bins.proportions, [c / sum(counts) for c in counts])
        assert entry["totals"]["features"][name]["psi"] == pytest.approx(
            expected, abs=1e-12
        )
