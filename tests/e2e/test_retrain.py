"""``riskstream retrain`` on the real stack: stored labelled rows in, a version saved, compared, promoted or not.

The live world has moved away from the training data: the records are
uniform random cytology scores whose true diagnosis follows a rule the
Wisconsin data never showed (malignant when clump thickness and bare
nuclei are both 6 or more). The current decision tree scores them badly;
the same recipe retrained with them scores them well. The training data
replayed beside them must add nothing (every row is already in it).
"""

from __future__ import annotations

import csv
import json
import random
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.settings import Settings
from models.dataset import ORIGINAL_FEATURES
from models.repository import ModelRepository
from stack.launch import riskstream_argv, spawn
from tests.e2e.harness import (
    DRAIN_TIMEOUT_S,
    ModelServer,
    Pipeline,
    get_json,
    produced_by,
    wait_until,
)

pytestmark = pytest.mark.slow

MODEL = "breast-cancer"
LIVE_ROWS = 600


def _shifted_world(path: Path) -> int:
    """Write LIVE_ROWS labelled records of the moved world; returns how many are malignant."""
    draw = random.Random(7)
    malignant = 0
    with path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(["record_id", *ORIGINAL_FEATURES, "malignant"])
        for index in range(LIVE_ROWS):
            scores = [draw.randint(1, 10) for _ in ORIGINAL_FEATURES]
            label = int(scores[0] >= 6 and scores[5] >= 6)
            malignant += label
            writer.writerow([f"live-{index}", *scores, label])
    return malignant


def _retrain(root: Path, pipeline: Pipeline, log: Path, *args: str) -> str:
    """``riskstream retrain breast-cancer ARGS`` against the pipeline's database; its output."""
    child = spawn(
        "retrain",
        riskstream_argv("retrain", MODEL, "--repository", str(root), *args),
        pipeline.env(),
        log,
    )
    assert child.process.wait(300) == 0, child.log_tail()
    return log.read_text()


def _served_version(server: ModelServer) -> str:
    """The version that answers a prediction (not only the status page)."""
    body = json.dumps(
        {
            "inputs": [
                {"name": name, "shape": [1], "datatype": "FP64", "data": [5.0]}
                for name in ORIGINAL_FEATURES
            ]
        }
    ).encode()
    request = urllib.request.Request(
        f"{server.url}/v2/models/m/infer",
        data=body,
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = json.load(answer)
    return str(result["model_version"])


@pytest.fixture
def labelled(
    stack: Settings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Path, Pipeline, ModelServer]]:
    """A repository with the default tree current, and its stored, labelled live traffic."""
    root = tmp_path_factory.mktemp("retrain-models")
    logs = root.parent
    trainer = spawn(
        "trainer",
        riskstream_argv("train", "--repository", str(root)),
        {},
        logs / "train.log",
    )
    assert trainer.process.wait(300) == 0, trainer.log_tail()
    pipeline = Pipeline(stack, root, tmp_path_factory.mktemp("retrain-run"))
    try:
        server = pipeline.start_model_server()
        pipeline.declare_feature_topic()
        pipeline.start_worker()
        live = logs / "live.csv"
        malignant = _shifted_world(live)
        print(f"live rows: {LIVE_ROWS}, {malignant} malignant")
        produced = produced_by(
            pipeline.generate(
                "--from-csv",
                str(live),
                "--label-column",
                "malignant",
                "--id-column",
                "record_id",
                "--labels-delay",
                "1",
            )
        )
        produced += produced_by(pipeline.generate("--replay", "--labels-delay", "1"))
        assert produced == LIVE_ROWS + 699
        wait_until(
            lambda: len(pipeline.labelled()) >= produced,
            DRAIN_TIMEOUT_S,
            f"{produced} labelled predictions",
        )
        yield root, pipeline, server
    finally:
        pipeline.stop_all()
        pipeline.drop_databases()


def test_retrain_saves_compares_and_promotes_only_a_winner_that_servers_then_serve(
    labelled: tuple[Path, Pipeline, ModelServer],
) -> None:
    root, pipeline, server = labelled
    repository = ModelRepository(root)
    logs = root.parent

    # too little new data: nothing is trained
    said = _retrain(root, pipeline, logs / "retrain-0.log", "--min-labelled", "601")
    assert (
        f"{LIVE_ROWS + 699} labelled rows read, {LIVE_ROWS} new "
        "(699 already in the training data)" in said
    )
    assert f"not trained: {LIVE_ROWS} new labelled rows < --min-labelled 601" in said
    assert [v.version for v in repository.versions(MODEL)] == [1]

    # a gain below --min-gain: saved, compared, not promoted
    said = _retrain(root, pipeline, logs / "retrain-1.log", "--min-gain", "0.9")
    assert f"saved {MODEL}:2, not promoted (roc_auc " in said, said
    assert f"{MODEL}:1 stays current" in said
    assert repository.current_version(MODEL) == 1
    refused = repository.version(MODEL, 2).card["retraining"]
    assert refused["decision"]["action"] == "keep current"
    assert refused["rows"]["added"] == LIVE_ROWS
    assert refused["rows"]["already_in_training_data"] == 699
    assert _served_version(server) == "1"

    # the winner: promoted, and the running server answers with it
    said = _retrain(root, pipeline, logs / "retrain-2.log")
    assert f"promoted {MODEL}:3 over {MODEL}:1: roc_auc " in said, said
    assert repository.current_version(MODEL) == 3
    card = repository.version(MODEL, 3).card
    section = card["retraining"]
    comparison = section["comparison"]
    current = comparison["cross_validation_mean"]["current"]["roc_auc"]
    candidate = comparison["cross_validation_mean"]["candidate"]["roc_auc"]
    assert comparison["gain"] == pytest.approx(candidate - current)
    assert candidate > current + 0.005
    assert section["from_version"] == f"{MODEL}:1"
    assert (
        section["rows"]["added_class_counts"]["1"]
        + section["rows"]["added_class_counts"]["0"]
        == LIVE_ROWS
    )
    assert card["data"]["rows"] == 699 + LIVE_ROWS
    print(
        f"retrain: current {MODEL}:1 ROC AUC {current:.4f}, candidate {MODEL}:3 "
        f"{candidate:.4f} ({comparison['folds']}-fold CV over the {LIVE_ROWS} live rows); "
        f"hold-out accuracy {comparison['holdout']['current']['accuracy']:.4f} -> "
        f"{comparison['holdout']['candidate']['accuracy']:.4f}"
    )
    wait_until(
        lambda: get_json(f"{server.url}/v1/models/m")["version"] == "3",
        30,
        "the server to hot-reload version 3",
    )
    assert _served_version(server) == "3"
