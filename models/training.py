"""Estimators and the PMML-convertible pipelines that wrap them.

The pipeline starts with one sklearn2pmml domain decorator per input: a
``ContinuousDomain`` for a numeric input declares its valid interval and
replaces a missing value by the median seen in training; a
``CategoricalDomain`` for a categorical one declares its valid values (the
strings the PMML lists) and replaces a missing value by the most frequent
training value, and is followed by a ``OneHotEncoder`` (what sklearn2pmml
recommends for trees, forests and linear models alike). Both treat an
invalid value (outside the interval, or not one of the values) as
``--invalid-values`` says. Because the same decorators run in scikit-learn
and are written into the PMML's DataDictionary and MiningSchema, a served
model handles a missing or invalid field exactly as training did, with no
ad-hoc Python in the server.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier
from sklearn2pmml.decoration import CategoricalDomain, ContinuousDomain, Domain
from sklearn2pmml.pipeline import PMMLPipeline

from models.dataset import Dataset, Feature

__all__ = [
    "ALGORITHMS",
    "CLASSIFIER_STEP",
    "DOMAINS_STEP",
    "INVALID_VALUES",
    "InvalidValues",
    "TrainingParams",
    "domain_of",
    "fit_pipeline",
    "missing_value_replacements",
    "model_columns",
]


#: Pipeline step names the PMML export and the report look up. The domains
#: step is a ColumnTransformer with one entry per input, named after it: the
#: input's domain decorator, or a pipeline that starts with it (then encoder).
DOMAINS_STEP = "domains"
CLASSIFIER_STEP = "classifier"

#: ``--algorithm`` choice -> what it means, for --help and the report.
ALGORITHMS: dict[str, str] = {
    "tree": "decision tree (CART, Gini)",
    "forest": "random forest",
    "logistic": "logistic regression on standardised inputs",
}


@dataclass(frozen=True)
class InvalidValues:
    """One treatment of a value outside an input's valid interval or values."""

    treatment: str  #: sklearn2pmml's spelling (PMML: returnInvalid, asIs, asMissing)
    meaning: str  #: what it means for a scored record, for the card and the report


#: ``--invalid-values`` choice -> its treatment, written into every input.
INVALID_VALUES: dict[str, InvalidValues] = {
    "reject": InvalidValues(
        "return_invalid",
        "a record with a value outside an input's valid range or values gets no "
        "prediction: the model server refuses it and the worker dead-letters it",
    ),
    "as-is": InvalidValues(
        "as_is",
        "such a value is scored as it is, by a model that never saw one like it",
    ),
    "as-missing": InvalidValues(
        "as_missing",
        "such a value is scored as if it were unknown: the input's missing-value "
        "replacement (training median, or most frequent value) stands in for it",
    ),
}


@dataclass(frozen=True)
class TrainingParams:
    """Everything besides the data that decides the trained model.

    The defaults are the decision tree that meets the project's targets on
    the original data (10-fold CV ROC AUC >= 0.97, accuracy >= 0.94): a
    depth limit and a minimum leaf size keep leaf probabilities graded
    instead of 0/1, which is what lifts ROC AUC above the fully grown tree's.
    """

    algorithm: str = "tree"
    seed: int = 42
    max_depth: int | None = 5
    min_samples_leaf: int = 6
    n_estimators: int = 100
    C: float = 1.0
    #: an ``INVALID_VALUES`` choice; None = the data set's own default
    invalid_values: str | None = None

    def invalid_values_for(self, dataset: Dataset) -> str:
        """The ``INVALID_VALUES`` choice that applies to every input of ``dataset``."""
        choice = self.invalid_values or dataset.invalid_values
        if choice not in INVALID_VALUES:
            raise ValueError(
                f"unknown invalid-value treatment {choice!r}; "
                f"choose one of {list(INVALID_VALUES)}"
            )
        return choice

    def estimator_params(self) -> dict[str, Any]:
        """Only the hyper-parameters the chosen algorithm uses (for the model card)."""
        if self.algorithm == "tree":
            return {
                "max_depth": self.max_depth,
                "min_samples_leaf": self.min_samples_leaf,
                "random_state": self.seed,
            }
        if self.algorithm == "forest":
            return {
                "n_estimators": self.n_estimators,
                "max_depth": self.max_depth,
                "min_samples_leaf": self.min_samples_leaf,
                "random_state": self.seed,
            }
        if self.algorithm == "logistic":
            return {"C": self.C, "max_iter": 1000, "random_state": self.seed}
        raise ValueError(
            f"unknown algorithm {self.algorithm!r}; choose one of {list(ALGORITHMS)}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _estimator(params: TrainingParams) -> ClassifierMixin:
    if params.algorithm == "tree":
        return DecisionTreeClassifier(**params.estimator_params())
    if params.algorithm == "forest":
        # One job: a forest built in parallel is still deterministic, but a
        # shared 2-core machine gains nothing from it.
        return RandomForestClassifier(n_jobs=1, **params.estimator_params())
    return LogisticRegression(**params.estimator_params())


def _most_frequent(column: pd.Series, values: tuple[str, ...]) -> str:
    """The most frequent declared value of ``column``; a tie goes to the first declared."""
    counts = column.value_counts()
    return max(values, key=lambda value: int(counts.get(value, 0)))


def missing_value_replacements(
    dataset: Dataset, X: pd.DataFrame
) -> dict[str, float | str]:
    """Per-input replacement of a missing value, from the rows a model is fitted on.

    The median of a numeric input, the most frequent value of a categorical
    one. A numeric input with no value at all in ``X`` falls back to 0.0 (a
    categorical one to its first declared value) so that the PMML always has
    a replacement to declare.
    """
    replacements: dict[str, float | str] = {}
    for feature in dataset.features:
        if feature.categorical:
            replacements[feature.name] = _most_frequent(X[feature.name], feature.values)
        else:
            median = X[feature.name].median(skipna=True)
            replacements[feature.name] = float(median) if pd.notna(median) else 0.0
    return replacements


def _input_transformer(
    feature: Feature, replacement: float | str, invalid_value_treatment: str
) -> Domain | Pipeline:
    """The domain decorator of one input, followed by a one-hot encoder if it is categorical."""
    if not feature.categorical:
        return ContinuousDomain(
            missing_value_treatment="as_median",
            missing_value_replacement=replacement,
            invalid_value_treatment=invalid_value_treatment,
            data_min=feature.valid_min,
            data_max=feature.valid_max,
        )
    values = list(feature.values)
    return Pipeline(
        [
            (
                "domain",
                CategoricalDomain(
                    missing_value_treatment="as_mode",
                    missing_value_replacement=replacement,
                    invalid_value_treatment=invalid_value_treatment,
                    data_values=[values],
                ),
            ),
            # The declared values, not the ones a training fold happens to
            # hold, so every fold encodes the same columns. "ignore" only
            # matters under as_is, where an undeclared value reaches the
            # encoder: all its columns are 0, as the PMML's
            # equality tests against each declared value are all false.
            (
                "encoder",
                OneHotEncoder(
                    categories=[values], handle_unknown="ignore", sparse_output=False
                ),
            ),
        ]
    )


def _domains(
    dataset: Dataset, replacements: dict[str, float | str], invalid_value_treatment: str
) -> ColumnTransformer:
    return ColumnTransformer(
        [
            (
                feature.name,
                _input_transformer(
                    feature, replacements[feature.name], invalid_value_treatment
                ),
                [feature.name],
            )
            for feature in dataset.features
        ],
        remainder="drop",
    )


def domain_of(transformer: Domain | Pipeline) -> Domain:
    """The domain decorator of one entry of the fitted domains step."""
    return transformer[0] if isinstance(transformer, Pipeline) else transformer


def model_columns(pipeline: PMMLPipeline) -> list[str]:
    """Names of the columns the estimator sees, in its order.

    A numeric input is one column named after it; a categorical one a
    column per declared value, named ``input=value``.
    """
    columns: list[str] = []
    for name, transformer, _ in pipeline.named_steps[DOMAINS_STEP].transformers_:
        if name == "remainder":
            continue
        if isinstance(transformer, Pipeline):
            (categories,) = transformer.named_steps["encoder"].categories_
            columns.extend(f"{name}={value}" for value in categories)
        else:
            columns.append(name)
    return columns


def fit_pipeline(
    dataset: Dataset, params: TrainingParams, X: pd.DataFrame, y: pd.Series
) -> PMMLPipeline:
    """A fitted pipeline (domains [+ encoders] -> [scaler] -> estimator) ready for sklearn2pmml.

    The missing-value replacements come from ``X`` itself, so a
    cross-validation fold never sees its test rows' values.
    """
    steps: list[tuple[str, Any]] = [
        (
            DOMAINS_STEP,
            _domains(
                dataset,
                missing_value_replacements(dataset, X),
                INVALID_VALUES[params.invalid_values_for(dataset)].treatment,
            ),
        )
    ]
    if params.algorithm == "logistic":
        steps.append(("scaler", StandardScaler()))
    steps.append((CLASSIFIER_STEP, _estimator(params)))
    pipeline = PMMLPipeline(steps)
    pipeline.fit(X[dataset.feature_names], y)
    return pipeline
