"""One loaded model version: schema, encoder, evaluator, and its answers in the reference's shape.

A :class:`LoadedModel` is immutable once built, so a request that started
on it finishes on it even if a newer version is swapped in meanwhile, and
every prediction can say which version answered.

A classification answers the reference's keys (``pmml(prediction)``, one
``probability(<class>)`` per class, ``prediction``, ``label``); a
regression answers its predicted value as ``pmml(prediction)`` and
``prediction``. Both add the PMML's other output fields under their own
names and ``model_version``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from models.errors import ModelsError
from models.pmml_schema import PmmlSchema, read_schema
from models.protocol import (
    ERROR_KEY,
    EXPLANATION_KEY,
    LABEL_KEY,
    PREDICTION_KEY,
    PREDICTION_TEXT_KEY,
    SHADOW_ERROR_KEY,
    SHADOW_LABEL_KEY,
    SHADOW_PROBABILITIES_KEY,
    SHADOW_VERSION_KEY,
    VERSION_KEY,
    probability_key,
)
from serving.errors import ModelLoadError, UnsupportedModel
from serving.evaluator import Evaluator, Scores
from serving.fast_evaluator import build_fast_evaluator
from serving.features import EncodedBatch, FeatureEncoder
from serving.formatting import java_doubles, output_text, prediction_text
from serving.reference_evaluator import ReferenceEvaluator, reference_executor

__all__ = [
    "SERVED_FUNCTIONS",
    "BatchResult",
    "LoadedModel",
    "ModelIdentity",
    "load_model",
]

logger = logging.getLogger(__name__)

#: PMML functionNames the server answers (the reference's answer has no shape for others).
SERVED_FUNCTIONS = ("classification", "regression")


@dataclass(frozen=True)
class ModelIdentity:
    """Which model file a version is: repository name + version, or a stand-alone file."""

    name: str
    version: str
    pmml_path: Path


@dataclass
class BatchResult:
    """A scored batch: the probabilities per valid row and a reason per invalid row."""

    batch: EncodedBatch
    scores: Scores | None
    #: row -> reason, for rows that were not scored (input errors and model refusals)
    errors: dict[int, str]
    #: positions of the scored rows in the batch, ascending, aligned with ``scores``
    scored: np.ndarray

    @property
    def invalid_rows(self) -> int:
        return len(self.errors)


class LoadedModel:
    """A model version ready to score; never changed after construction."""

    def __init__(
        self,
        identity: ModelIdentity,
        schema: PmmlSchema,
        encoder: FeatureEncoder,
        evaluator: Evaluator,
    ) -> None:
        self.identity = identity
        self.version = identity.version
        self.schema = schema
        self.encoder = encoder
        self.evaluator = evaluator
        self.classes = evaluator.classes
        self.regression = schema.function_name == "regression"
        self.loaded_at = time.time()
        # strings every answer reuses
        self._predictions = tuple(prediction_text(c) for c in self.classes)
        self._probability_keys = tuple(probability_key(c) for c in self.classes)

    def __repr__(self) -> str:
        return (
            f"<LoadedModel {self.identity.name}:{self.version} ({self.evaluator.kind})>"
        )

    # --- scoring ---------------------------------------------------------------
    async def score(self, instances: list[Any], explain: bool = False) -> BatchResult:
        """Encode and score a batch; invalid rows get a reason instead of a score.

        With ``explain`` every scored row's answer also says why.
        """
        batch = self.encoder.encode(instances)
        errors = dict(batch.errors)
        valid = np.ones(batch.rows, dtype=bool)
        if errors:
            valid[list(errors)] = False
        scored = np.flatnonzero(valid)
        if scored.size == 0:
            return BatchResult(batch, None, errors, scored)
        values = batch.values if scored.size == batch.rows else batch.values[scored]
        scores = await self.evaluator.evaluate(values, explain)
        self._note_refusals(scores, scored, errors)
        return BatchResult(batch, scores, errors, scored)

    @staticmethod
    def _note_refusals(
        scores: Scores, scored: np.ndarray, errors: dict[int, str]
    ) -> None:
        if scores.no_result is not None:
            for row in scored[scores.no_result].tolist():
                errors[row] = "the model gives no prediction for this row"

    # --- the reference's answer --------------------------------------------------
    def predictions(self, result: BatchResult) -> list[dict[str, str | None]]:
        """One object per instance, in order: the reference's keys, or ``{"error": ...}``.

        This is the hot path's last step, hence the literal dicts and the
        column-wise number formatting.
        """
        version = self.version
        scores = result.scores
        scored: list[dict[str, str | None]] = []
        if scores is not None:
            scored = (
                self._regression_answers(scores, version)
                if self.regression
                else self._classification_answers(scores, version)
            )
            if scores.outputs:
                extras = [
                    [output_text(value) for value in column]
                    for column in scores.outputs.values()
                ]
                names = list(scores.outputs)
                for answer, *values in zip(scored, *extras, strict=True):
                    answer.update(zip(names, values, strict=True))
            if scores.explanations is not None:
                for answer, explanation in zip(
                    scored, scores.explanations, strict=True
                ):
                    answer[EXPLANATION_KEY] = explanation
        if not result.errors:
            return scored
        answers: list[dict[str, str | None]] = [{}] * result.batch.rows
        for row, answer in zip(result.scored.tolist(), scored, strict=True):
            answers[row] = answer
        for row, reason in result.errors.items():  # also rows the model refused
            answers[row] = {ERROR_KEY: reason, VERSION_KEY: version}
        return answers

    def _classification_answers(
        self, scores: Scores, version: str
    ) -> list[dict[str, str | None]]:
        labels = scores.labels.tolist()
        categories = [self.classes[i] for i in labels]
        predictions = [self._predictions[i] for i in labels]
        columns = [java_doubles(column) for column in scores.probabilities.T]
        if len(columns) == 2:
            first, second = self._probability_keys
            return [
                {
                    PREDICTION_TEXT_KEY: category,
                    first: p0,
                    second: p1,
                    PREDICTION_KEY: prediction,
                    LABEL_KEY: category,
                    VERSION_KEY: version,
                }
                for category, prediction, p0, p1 in zip(
                    categories, predictions, *columns, strict=True
                )
            ]
        keys = self._probability_keys
        return [
            {
                PREDICTION_TEXT_KEY: category,
                **dict(zip(keys, probabilities, strict=True)),
                PREDICTION_KEY: prediction,
                LABEL_KEY: category,
                VERSION_KEY: version,
            }
            for category, prediction, *probabilities in zip(
                categories, predictions, *columns, strict=True
            )
        ]

    def shadow_predictions(self, result: BatchResult) -> list[dict[str, Any]]:
        """This version's answer as a shadow: per instance its version, label and probabilities.

        Probabilities are numbers by class (NaN, written null, where the
        model gives none); a row it did not score has ``shadow_error``.
        Classifications only (the loader refuses a regression shadow).
        """
        version = self.version
        answers: list[dict[str, Any]] = [{}] * result.batch.rows
        scores = result.scores
        if scores is not None:
            classes = self.classes
            labels = scores.labels.tolist()
            for row, label, probabilities in zip(
                result.scored.tolist(),
                labels,
                scores.probabilities.tolist(),
                strict=True,
            ):
                answers[row] = {
                    SHADOW_VERSION_KEY: version,
                    SHADOW_LABEL_KEY: classes[label],
                    SHADOW_PROBABILITIES_KEY: dict(
                        zip(classes, probabilities, strict=True)
                    ),
                }
        for row, reason in result.errors.items():  # also rows the model refused
            answers[row] = {SHADOW_VERSION_KEY: version, SHADOW_ERROR_KEY: reason}
        return answers

    @staticmethod
    def _regression_answers(
        scores: Scores, version: str
    ) -> list[dict[str, str | None]]:
        assert scores.values is not None, "a regression answers values"
        return [
            {PREDICTION_TEXT_KEY: value, PREDICTION_KEY: value, VERSION_KEY: version}
            for value in java_doubles(scores.values)
        ]


# --- loading -------------------------------------------------------------------
def _prepare(
    identity: ModelIdentity,
) -> tuple[bytes, PmmlSchema, FeatureEncoder, Evaluator | None, str]:
    """Read, check and compile a PMML (CPU and disk: runs on a loader thread)."""
    try:
        document = identity.pmml_path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(
            f"cannot read {identity.pmml_path}: {exc.strerror or exc}"
        ) from exc
    try:
        schema = read_schema(document)
    except ModelsError as exc:
        raise ModelLoadError(f"{identity.pmml_path}: {exc.message}") from exc
    if schema.function_name not in SERVED_FUNCTIONS:
        raise ModelLoadError(
            f"{identity.pmml_path}: a {schema.function_name or 'unnamed'} model "
            f"({schema.model_element}): only {' and '.join(SERVED_FUNCTIONS)} "
            "models are served"
        )
    encoder = FeatureEncoder(schema)
    others = schema.other_outputs()
    if others:
        return (
            document,
            schema,
            encoder,
            None,
            "it does not compute the output fields "
            + ", ".join(repr(field.name) for field in others),
        )
    try:
        return document, schema, encoder, build_fast_evaluator(document, schema), ""
    except UnsupportedModel as exc:
        return document, schema, encoder, None, exc.message


async def load_model(
    identity: ModelIdentity, loader: Executor | None = None
) -> LoadedModel:
    """Load ``identity`` off the event loop; pypmml only if the fast evaluator cannot serve it."""
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    document, schema, encoder, fast, why_not = await loop.run_in_executor(
        loader, _prepare, identity
    )
    evaluator: Evaluator
    if fast is not None:
        evaluator = fast
    else:
        logger.info(
            "model %s version %s: served by pypmml (fast evaluator: %s)",
            identity.name,
            identity.version,
            why_not,
        )
        evaluator = await loop.run_in_executor(
            reference_executor(), ReferenceEvaluator.load, document, schema
        )
    model = LoadedModel(
        identity=identity, schema=schema, encoder=encoder, evaluator=evaluator
    )
    logger.debug(
        "model %s version %s loaded in %.3f s (%s)",
        identity.name,
        identity.version,
        time.perf_counter() - started,
        evaluator.kind,
    )
    return model
