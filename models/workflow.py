"""One training run, start to end: data -> evaluation -> final fit -> PMML -> gate -> repository.

The CLI only parses flags and prints; this is the sequence it drives, usable
from tests and scripts the same way.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from models.card import build_card
from models.dataset import Dataset
from models.evaluation import Evaluation, evaluate
from models.parity import ParityReport, check_parity
from models.pmml_export import export_pmml
from models.pmml_schema import read_schema
from models.report import feature_importances, render_report
from models.repository import PMML_FILE, ModelRepository, ModelVersion, check_name
from models.training import TrainingParams, fit_pipeline

__all__ = ["CV_FOLDS", "TrainingResult", "train_model"]


CV_FOLDS = 10
HOLDOUT_TEST_SIZE = 0.25


@dataclass(frozen=True)
class TrainingResult:
    """What a run produced and measured."""

    saved: ModelVersion
    promoted: bool
    evaluation: Evaluation
    parity: ParityReport
    seconds: float


def train_model(
    dataset: Dataset,
    params: TrainingParams,
    repository: ModelRepository,
    *,
    name: str | None = None,
    promote: bool = True,
    progress: Callable[[str], None] = lambda message: None,
    card_extra: Mapping[str, Any] | None = None,
) -> TrainingResult:
    """Train, evaluate, export, check parity and save one model; ``progress`` gets a line per step.

    ``card_extra`` adds sections to the card (a retrain says where its rows came from).

    Raises ``ParityError`` (nothing saved) if the PMML scores differently
    from scikit-learn.
    """
    started = time.perf_counter()
    # fail before the work, not after
    name = check_name(name or dataset.default_model_name)
    invalid_values = params.invalid_values_for(dataset)
    categorical = sum(feature.categorical for feature in dataset.features)
    progress(
        f"data: {dataset.title}, {len(dataset.X)} rows x {len(dataset.features)} inputs "
        f"({categorical} categorical), {dataset.missing_cells} missing cells; "
        f"invalid values: {invalid_values}"
    )
    steps_done = 0

    def step() -> None:
        nonlocal steps_done
        steps_done += 1
        progress(
            "evaluation: hold-out fitted"
            if steps_done == 1
            else f"evaluation: cross-validation fold {steps_done - 1}/{CV_FOLDS}"
        )

    evaluation = evaluate(
        dataset, params, test_size=HOLDOUT_TEST_SIZE, folds=CV_FOLDS, on_step=step
    )
    metrics = evaluation.as_dict()
    cv_mean = metrics["cross_validation"]["mean"]
    progress(
        f"evaluation: {CV_FOLDS}-fold CV accuracy {cv_mean['accuracy']:.4f}, "
        f"ROC AUC {cv_mean['roc_auc']:.4f}, F1 {cv_mean['f1']:.4f}"
    )

    pipeline = fit_pipeline(dataset, params, dataset.X, dataset.y)
    progress(f"final fit: {params.algorithm} on all {len(dataset.X)} rows")
    pmml = export_pmml(pipeline, dataset)
    progress(f"export: PMML of {len(pmml)} bytes (sklearn2pmml)")
    parity = check_parity(pmml, pipeline, dataset.X)
    progress(
        f"parity: PMML == scikit-learn on all {parity.rows} rows "
        f"(max probability difference {parity.max_probability_difference:.1e})"
    )

    card = build_card(dataset, params, metrics, read_schema(pmml), parity)
    importances, meaning = feature_importances(pipeline)
    card["feature_importances"] = {"meaning": meaning, "values": importances}
    card.update(card_extra or {})
    report = render_report(
        f"{name}: {params.algorithm} on {dataset.key}",
        evaluation,
        importances,
        meaning,
        card,
    )
    files = {
        PMML_FILE: pmml,
        "metrics.json": (json.dumps(metrics, indent=2) + "\n").encode("utf-8"),
        **report,
    }
    saved = repository.save(name, files, card, promote=promote)
    seconds = time.perf_counter() - started
    progress(
        f"saved: {saved.ref} in {saved.path}{' (current)' if promote else ''}, {seconds:.1f} s"
    )
    return TrainingResult(saved, promote, evaluation, parity, seconds)
