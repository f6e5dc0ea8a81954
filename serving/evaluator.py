"""What scoring a batch means, whichever engine does it.

Two engines sit behind :class:`Evaluator`: the fast in-process one
(:mod:`serving.fast_evaluator`, scikit-learn trees and numpy) for the model
types it reproduces exactly, and pypmml (:mod:`serving.reference_evaluator`),
the reference, for everything else. Both receive the matrix that
:mod:`serving.features` built (the PMML's inputs in order, missing values
already replaced, non-numeric inputs as category codes) and answer with a
:class:`Scores`, so the layers above never know which one ran.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Evaluator", "Scores"]


@dataclass
class Scores:
    """The model's answer for every row of a batch.

    A classification answers ``labels[i]`` (an index into
    ``Evaluator.classes``) and ``probabilities[i, j]``, the probability of
    class ``j`` (NaN where the model gives none, e.g. a rule set without
    score distributions). A regression answers ``values[i]``, the predicted
    number, with no classes (``labels`` zeros, ``probabilities`` of width 0).
    ``no_result`` marks rows the model itself declined to score (a PMML may
    return no prediction, e.g. for a missing value its tree cannot route);
    those rows' other entries are meaningless. ``outputs`` holds the other
    output fields the PMML declares (entity ids, reason codes, ...), by
    name, one value per row, as the evaluator gave them. ``explanations``,
    only when asked for, holds one JSON text per row saying why the model
    answered so (see :mod:`serving.explanations`).
    """

    labels: np.ndarray
    probabilities: np.ndarray
    no_result: np.ndarray | None = None
    values: np.ndarray | None = None
    outputs: dict[str, list[Any]] = field(default_factory=dict)
    explanations: list[str] | None = None

    @classmethod
    def regression(
        cls,
        values: np.ndarray,
        no_result: np.ndarray | None = None,
        outputs: dict[str, list[Any]] | None = None,
    ) -> Scores:
        """A regression's answer: the predicted value of each row."""
        rows = values.shape[0]
        return cls(
            labels=np.zeros(rows, dtype=np.intp),
            probabilities=np.empty((rows, 0)),
            no_result=no_result,
            values=values,
            outputs=outputs or {},
        )


class Evaluator(ABC):
    """Scores prepared feature matrices for one PMML model version."""

    #: short name shown in the status endpoint and the logs.
    kind: str
    #: the target's categories, as the PMML writes them, in probability-column
    #: order; empty for a regression.
    classes: tuple[str, ...]

    @abstractmethod
    async def evaluate(self, values: np.ndarray, explain: bool = False) -> Scores:
        """Score ``values`` (rows x inputs, float64, NaN = missing) without blocking the loop.

        With ``explain`` the scores also carry one explanation per row.
        """
