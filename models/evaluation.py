"""How good a training recipe is: stratified hold-out and stratified k-fold CV.

Evaluation fits fresh pipelines on training parts only (missing-value
medians included), so no figure has seen its own test rows. The figures
describe the recipe (data + algorithm + parameters + seed); the exported
model is the same recipe fitted on all rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    accuracy_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold, train_test_split

from models.dataset import Dataset
from models.training import TrainingParams, fit_pipeline

__all__ = ["METRICS", "Evaluation", "Scores", "evaluate", "score"]


#: metric -> what it measures (positive: class 1, the risk), for the report.
METRICS: dict[str, str] = {
    "accuracy": "share of correct labels",
    "precision": "share of predicted positives that are positive",
    "recall": "share of positives found (sensitivity)",
    "f1": "harmonic mean of precision and recall",
    "roc_auc": "area under the ROC curve of P(class 1)",
    "brier": "mean squared error of P(class 1); lower is better",
}


@dataclass(frozen=True)
class Scores:
    """True labels and predictions on some test rows."""

    y_true: np.ndarray
    y_pred: np.ndarray
    p_positive: np.ndarray

    def metrics(self) -> dict[str, float]:
        return {
            "accuracy": float(accuracy_score(self.y_true, self.y_pred)),
            "precision": float(
                precision_score(self.y_true, self.y_pred, zero_division=0)
            ),
            "recall": float(recall_score(self.y_true, self.y_pred, zero_division=0)),
            "f1": float(f1_score(self.y_true, self.y_pred, zero_division=0)),
            "roc_auc": float(roc_auc_score(self.y_true, self.p_positive)),
            "brier": float(brier_score_loss(self.y_true, self.p_positive)),
        }

    def confusion(self) -> list[list[int]]:
        """[[TN, FP], [FN, TP]] (rows: true class 0, 1; columns: predicted)."""
        matrix = confusion_matrix(self.y_true, self.y_pred, labels=[0, 1])
        return [[int(v) for v in row] for row in matrix]


def score(pipeline: Any, X: pd.DataFrame, y: pd.Series) -> Scores:
    """Predictions of a fitted pipeline on ``X``."""
    return Scores(
        y_true=y.to_numpy(),
        y_pred=np.asarray(pipeline.predict(X)),
        p_positive=np.asarray(pipeline.predict_proba(X))[
            :, list(pipeline.classes_).index(1)
        ],
    )


@dataclass
class Evaluation:
    """Hold-out and cross-validation results of one recipe."""

    holdout: Scores
    holdout_test_size: float
    #: what class 1 means, e.g. "malignant"
    positive_class: str
    folds: list[Scores] = field(default_factory=list)
    #: out-of-fold predictions of every row, for the CV confusion matrix and ROC
    out_of_fold: Scores | None = None

    def cv_metrics(self) -> dict[str, dict[str, float]]:
        per_fold = [fold.metrics() for fold in self.folds]
        return {
            "mean": {m: float(np.mean([f[m] for f in per_fold])) for m in METRICS},
            "std": {m: float(np.std([f[m] for f in per_fold])) for m in METRICS},
        }

    def as_dict(self) -> dict[str, Any]:
        """The JSON form written to metrics.json."""
        cv = self.cv_metrics()
        return {
            "positive_class": f"1 ({self.positive_class})",
            "holdout": {
                "test_size": self.holdout_test_size,
                "test_rows": len(self.holdout.y_true),
                "metrics": self.holdout.metrics(),
                "confusion_matrix": self.holdout.confusion(),
            },
            "cross_validation": {
                "folds": len(self.folds),
                "stratified": True,
                "mean": cv["mean"],
                "std": cv["std"],
                "per_fold": [fold.metrics() for fold in self.folds],
                "confusion_matrix_out_of_fold": (
                    self.out_of_fold.confusion() if self.out_of_fold else None
                ),
            },
            "confusion_matrix_layout": "[[TN, FP], [FN, TP]]",
        }


def evaluate(
    dataset: Dataset,
    params: TrainingParams,
    *,
    test_size: float = 0.25,
    folds: int = 10,
    on_step: Callable[[], None] = lambda: None,
) -> Evaluation:
    """Hold-out then ``folds``-fold CV, both stratified and seeded by ``params.seed``.

    ``on_step`` is called after the hold-out fit and after each fold (progress).
    """
    X, y = dataset.X, dataset.y
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=test_size, stratify=y, random_state=params.seed
    )
    holdout = score(fit_pipeline(dataset, params, X_train, y_train), X_test, y_test)
    on_step()

    evaluation = Evaluation(
        holdout=holdout,
        holdout_test_size=test_size,
        positive_class=dataset.classes[1],
    )
    y_pred = np.zeros(len(y), dtype="int64")
    p_positive = np.zeros(len(y), dtype="float64")
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=params.seed)
    for train_rows, test_rows in splitter.split(X, y):
        pipeline = fit_pipeline(dataset, params, X.iloc[train_rows], y.iloc[train_rows])
        fold = score(pipeline, X.iloc[test_rows], y.iloc[test_rows])
        evaluation.folds.append(fold)
        y_pred[test_rows] = fold.y_pred
        p_positive[test_rows] = fold.p_positive
        on_step()
    evaluation.out_of_fold = Scores(y.to_numpy(), y_pred, p_positive)
    return evaluation
