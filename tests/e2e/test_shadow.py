"""A shadow version end to end on the real stack: its stored answers and /stats' agreement rate."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from models.repository import ModelRepository
from serving.model import ModelIdentity, load_model
from stack.launch import riskstream_argv, spawn
from tests.e2e.harness import (
    DRAIN_TIMEOUT_S,
    Pipeline,
    get_json,
    produced_by,
    wait_until,
)

pytestmark = pytest.mark.slow

MODEL = "breast-cancer"


def _run(argv: list[str], log: Path) -> str:
    child = spawn(argv[1] if len(argv) > 1 else "riskstream", argv, {}, log)
    assert child.process.wait(300) == 0, child.log_tail()
    return log.read_text()


@pytest.fixture
def shadowed(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Pipeline]]:
    """A repository with a decision tree current and a logistic regression as its shadow."""
    root = tmp_path_factory.mktemp("shadow-models")
    logs = root.parent
    _run(riskstream_argv("train", "--repository", str(root)), logs / "train-1.log")
    _run(
        riskstream_argv(
            "train",
            "--algorithm",
            "logistic",
            "--no-promote",
            "--repository",
            str(root),
        ),
        logs / "train-2.log",
    )
    said = _run(
        riskstream_argv("models", "--repository", str(root), "shadow", f"{MODEL}:2"),
        logs / "shadow.log",
    )
    assert f"{MODEL}: shadow version is now 2 (current version 1)" in said
    run = Pipeline(stack, root, tmp_path_factory.mktemp("shadow-run"))
    try:
        yield root, run
    finally:
        run.stop_all()
        run.drop_databases()


def _offline_labels(pmml: Path, rows: list[tuple[Any, ...]]) -> list[str | None]:
    """Each stored row's label from ``pmml`` with the project's evaluator (None: not scored)."""

    async def score() -> list[str | None]:
        model = await load_model(ModelIdentity(MODEL, "offline", pmml))
        instances = [
            {n: v for n, v in zip(names, values, strict=True) if not math.isnan(v)}
            for names, values, *_ in rows
        ]
        result = await model.score(instances)
        labels: list[str | None] = [None] * len(rows)
        assert result.scores is not None
        for index, row in enumerate(result.scored.tolist()):
            if row not in result.errors:
                labels[row] = model.classes[int(result.scores.labels[index])]
        return labels

    return asyncio.run(score())


def test_the_shadows_agreement_rate_in_stats_is_the_offline_agreement_of_the_two_pmml_files(
    shadowed: tuple[Path, Pipeline],
) -> None:
    root, pipeline = shadowed
    server = pipeline.start_model_server()
    status = get_json(f"{server.url}/v1/models/m")
    assert status["version"] == "1"
    assert status["shadow"]["version"] == "2"
    assert status["shadow"]["state"] == "AVAILABLE"
    pipeline.declare_feature_topic()
    worker = pipeline.start_worker()
    produced = produced_by(pipeline.generate("--replay"))
    assert produced == 699
    wait_until(lambda: pipeline.count() >= 699, DRAIN_TIMEOUT_S, "699 predictions")

    rows = pipeline.rows(
        [
            "feature_names",
            "feature_values",
            "model_version",
            "predicted_label",
            "shadow_version",
            "shadow_label",
            "shadow_probabilities",
            "probability_labels",
        ]
    )
    assert len(rows) == 699
    assert {(row[2], row[4]) for row in rows} == {("1", "2")}
    repository = ModelRepository(root)
    current = _offline_labels(repository.version(MODEL, 1).pmml_path, rows)
    shadow = _offline_labels(repository.version(MODEL, 2).pmml_path, rows)
    # the stored answers are the two files' answers
    assert [row[3] for row in rows] == current
    assert [row[5] or None for row in rows] == shadow
    for row in rows:
        if row[5]:
            assert len(row[6]) == len(row[7]) == 2
            assert row[7][max(range(2), key=lambda i: row[6][i])] == row[5]

    compared = [(c, s) for c, s in zip(current, shadow, strict=True) if c and s]
    offline = sum(c == s for c, s in compared) / len(compared)
    assert 0.5 < offline < 1.0  # two different models: some disagreement
    print(
        f"shadow agreement offline: {sum(c == s for c, s in compared)} of "
        f"{len(compared)} records = {offline:.4f}"
    )
    (entry,) = worker.stats()["shadow"]["versions"]
    assert entry["model"] == MODEL
    assert (entry["version"], entry["shadow_version"]) == ("1", "2")
    assert entry["records"] == 699
    assert entry["compared_records"] == len(compared)
    assert entry["agreement_rate"] == offline
    pipeline.account(produced)
