"""What scoring a batch means, whichever engine does it.

Two engines sit behind :class:`Evaluator`: the fast in-process one
(:mod:`serving.fast_evaluator`, scikit-learn trees and numpy) for the model
types it reproduces exactly, and pypmml (:mod:`serving.reference_evaluator`),
the reference, for everything else. Both receive the matrix that
:mod:`serving.features` built (the PMML's inputs in order, missing values
already replaced) and answer with class indices and probabilities, so the
layers above never know which one ran.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

__all__ = ["Evaluator", "Scores"]

logger = logging.getLogger(__name__)


@dataclass
class Scores:
    """The model's answer for every row of a batch.

    ``labels[i]`` indexes ``Evaluator.classes``; ``probabilities[i, j]`` is the
    probability of class ``j``. ``no_result`` marks rows the model itself
    declined to score (a PMML may return no prediction, e.g. for a missing
    value its tree cannot route); those rows' other entries are meaningless.
    A regression model (``functionName="regression"``, no classes) answers
    ``predicted[i]``, the predicted value, with empty labels/probabilities.
    """

    labels: np.ndarray
    probabilities: np.ndarray
    no_result: np.ndarray | None = None
    predicted: np.ndarray | None = None


class Evaluator(ABC):
    """Scores prepared feature matrices for one PMML model version."""

    #: short name shown in the status endpoint and the logs.
    kind: str
    #: the target's categories, as the PMML writes them, in probability-column order.
    classes: tuple[str, ...]

    @abstractmethod
    async def evaluate(self, values: np.ndarray) -> Scores:
        """Score ``values`` (rows x inputs, float64, NaN = missing) without blocking the loop."""
