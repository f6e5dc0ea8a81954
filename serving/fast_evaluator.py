"""The fast evaluator: a whole batch in a few vectorised calls, same answers as pypmml.

Trees and tree ensembles are parsed by sklearn-pmml-model into
scikit-learn ``Tree`` objects, which walk a batch in C. One subtlety makes
them differ from a PMML evaluator as they come: scikit-learn compares
float32 inputs with float64 thresholds, while pypmml compares float64 with
float64, so a value within a float32 rounding step of a threshold can take
the other branch. We therefore never feed raw values: each input is
replaced by its rank among the thresholds the model uses on it
(``searchsorted``) and each threshold by its own rank. Ranks are small
integers, exact in float32, and ``x <= t`` holds exactly when
``rank(x) <= rank(t)``: the trees then decide as a float64 evaluator does.

Logistic (and softmax) regression is a matrix product; sklearn-pmml-model
cannot read the derived fields sklearn2pmml writes for its scaler, so the
regression tables are read directly and the derived fields computed by
:mod:`serving.transformations`.

Only PMML constructs whose meaning is reproduced exactly are accepted; the
checks below raise :class:`~serving.errors.UnsupportedModel` for anything
else and the server falls back to pypmml for that model.
"""

from __future__ import annotations

import io
import logging
import warnings
import xml.etree.ElementTree as ET
from typing import Any

import numpy as np

from models.pmml_schema import PmmlSchema
from serving.errors import UnsupportedModel
from serving.evaluator import Evaluator, Scores
from serving.pmml_document import model_element, parse_document
from serving.transformations import Column, compile_derived_fields

__all__ = ["FastEvaluator", "build_fast_evaluator"]

logger = logging.getLogger(__name__)

_COMPARISONS = {"lessOrEqual", "lessThan", "greaterThan", "greaterOrEqual"}
_COMPLEMENT = {
    "lessOrEqual": "greaterThan",
    "lessThan": "greaterOrEqual",
    "greaterThan": "lessOrEqual",
    "greaterOrEqual": "lessThan",
}


class FastEvaluator(Evaluator):
    """A model scored in-process with numpy; see the module docstring for why it is exact."""

    kind = "fast"

    def __init__(self, classes: tuple[str, ...], description: str) -> None:
        self.classes = classes
        self.description = description

    async def evaluate(self, values: np.ndarray) -> Scores:
        return self.score(values)

    def score(self, values: np.ndarray) -> Scores:
        """Score synchronously (CPU-bound and short: called on the event loop)."""
        if np.isnan(values).any():
            raise ValueError("the fast evaluator needs rows without missing values")
        probabilities = self._probabilities(values)
        return Scores(labels=probabilities.argmax(axis=1), probabilities=probabilities)

    def _probabilities(self, values: np.ndarray) -> np.ndarray:
        raise NotImplementedError


# --- trees and tree ensembles ---------------------------------------------------
class _TreeEnsemble(FastEvaluator):
    """One decision tree, or several combined by averaging or majority vote."""

    def __init__(
        self,
        classes: tuple[str, ...],
        trees: list[Any],
        method: str,
        width: int,
        features: list[tuple[int, int, np.ndarray]],
    ) -> None:
        kind = (
            "decision tree"
            if len(trees) == 1
            else f"{len(trees)}-tree {method} ensemble"
        )
        super().__init__(classes, kind)
        self._trees = trees
        self._method = method
        self._width = width
        # (model feature, our input column, the feature's sorted split values)
        self._features = features

    def _ranks(self, values: np.ndarray) -> np.ndarray:
        ranks = np.zeros((values.shape[0], self._width), dtype=np.float32)
        for feature, column, split_values in self._features:
            x = values[:, column]
            ranks[:, feature] = np.searchsorted(
                split_values, x, side="left"
            ) + np.searchsorted(split_values, x, side="right")
        return ranks

    def _probabilities(self, values: np.ndarray) -> np.ndarray:
        ranks = self._ranks(values)
        if self._method == "majorityVote":
            votes = np.zeros((values.shape[0], len(self.classes)))
            rows = np.arange(values.shape[0])
            for tree in self._trees:
                votes[rows, tree.predict(ranks).argmax(axis=1)] += 1.0
            return votes / len(self._trees)
        total = self._trees[0].predict(ranks)
        for tree in self._trees[1:]:
            total = total + tree.predict(ranks)
        return total / len(self._trees) if len(self._trees) > 1 else total


def _predicate(node: ET.Element) -> ET.Element | None:
    for child in node:
        if child.tag in {
            "True",
            "False",
            "SimplePredicate",
            "CompoundPredicate",
            "SimpleSetPredicate",
        }:
            return child
    return None


def _check_tree(tree_model: ET.Element, inputs: set[str]) -> None:
    """Accept only trees whose every split sklearn-pmml-model reproduces exactly."""
    if tree_model.get("functionName") != "classification":
        raise UnsupportedModel(
            "only classification trees are served by the fast evaluator"
        )
    if tree_model.find("LocalTransformations") is not None:
        raise UnsupportedModel("a tree over derived fields")
    root = tree_model.find("Node")
    if root is None or _predicate(root) is None or _predicate(root).tag != "True":  # type: ignore[union-attr]
        raise UnsupportedModel("a tree whose root predicate is not <True/>")
    stack = [root]
    while stack:
        node = stack.pop()
        children = node.findall("Node")
        if not children:
            distributions = node.findall("ScoreDistribution")
            if node.get("recordCount") is None or not distributions:
                raise UnsupportedModel(
                    "a leaf without recordCount and ScoreDistribution"
                )
            if any(d.get("probability") is not None for d in distributions):
                raise UnsupportedModel("ScoreDistribution probabilities")
            continue
        predicates = [_predicate(child) for child in children]
        for predicate in predicates[:-1]:
            if (
                predicate is None
                or predicate.tag != "SimplePredicate"
                or predicate.get("operator") not in _COMPARISONS
                or predicate.get("field") not in inputs
            ):
                raise UnsupportedModel(
                    "a split that is not a numeric comparison of an input"
                )
        last, previous = predicates[-1], predicates[-2] if len(predicates) > 1 else None
        complement = (
            last is not None
            and previous is not None
            and last.tag == "SimplePredicate"
            and len(predicates) == 2
            and last.get("field") == previous.get("field")
            and last.get("value") == previous.get("value")
            and last.get("operator") == _COMPLEMENT.get(previous.get("operator", ""))
        )
        if len(children) < 2 or not (
            last is not None and last.tag == "True" or complement
        ):
            raise UnsupportedModel("a node whose children do not cover every value")
        stack.extend(children)


def _rank_splits(tree_models: list[ET.Element]) -> dict[str, np.ndarray]:
    """Replace every split value by its rank; returns each field's sorted split values.

    A value ``x`` becomes ``#{t < x} + #{t <= x}`` over the field's split values
    ``t``: split value ``t_k`` itself becomes ``2k + 1``, anything between two
    split values an even number in between. Every comparison of a value with
    a split value (``<``, ``<=``, ``>``, ``>=``) keeps its outcome, and ranks
    are small integers, exact in the float32 that scikit-learn's trees use.
    """
    predicates = [
        predicate
        for tree_model in tree_models
        for predicate in tree_model.iter("SimplePredicate")
    ]
    per_field: dict[str, set[float]] = {}
    for predicate in predicates:
        per_field.setdefault(predicate.get("field", ""), set()).add(
            float(predicate.get("value", "nan"))
        )
    thresholds = {
        field: np.array(sorted(values)) for field, values in per_field.items()
    }
    for predicate in predicates:
        split_values = thresholds[predicate.get("field", "")]
        rank = (
            2 * int(np.searchsorted(split_values, float(predicate.get("value", "nan"))))
            + 1
        )
        predicate.set("value", str(rank))
    return thresholds


def _tree_ensemble(
    root: ET.Element, model: ET.Element, schema: PmmlSchema
) -> _TreeEnsemble:
    from sklearn_pmml_model.ensemble import PMMLForestClassifier
    from sklearn_pmml_model.tree import PMMLTreeClassifier

    inputs = set(schema.input_names)
    if model.tag == "TreeModel":
        method = "average"
        tree_models = [model]
    else:
        segmentation = model.find("Segmentation")
        if segmentation is None or model.find("LocalTransformations") is not None:
            raise UnsupportedModel("a MiningModel without a plain Segmentation")
        method = segmentation.get("multipleModelMethod", "")
        if method not in {"average", "majorityVote"}:
            raise UnsupportedModel(f"multipleModelMethod={method!r}")
        tree_models = []
        for segment in segmentation.findall("Segment"):
            tree = segment.find("TreeModel")
            if (
                tree is None
                or segment.find("True") is None
                or segment.get("weight", "1") != "1"
            ):
                raise UnsupportedModel(
                    "a segment that is not an unweighted, unconditional tree"
                )
            tree_models.append(tree)
    for tree in tree_models:
        _check_tree(tree, inputs)
    split_values = _rank_splits(tree_models)
    ranked = io.BytesIO(ET.tostring(root))
    if model.tag == "TreeModel":
        estimator: Any = PMMLTreeClassifier(ranked)
        trees = [estimator]
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            estimator = PMMLForestClassifier(ranked)
        trees = list(estimator.estimators_)
    if tuple(str(c) for c in estimator.classes_) != schema.target_values:
        raise UnsupportedModel("the tree's classes differ from the target's values")
    position = {name: i for i, name in enumerate(schema.input_names)}
    features = [
        (j, position[name], split_values[name])
        for j, name in enumerate(
            name
            for name, element in estimator.fields.items()
            if element.tag == "DataField" and name != schema.target
        )
        if name in split_values
    ]
    width = trees[0].tree_.n_features
    return _TreeEnsemble(
        schema.target_values, [t.tree_ for t in trees], method, width, features
    )


# --- regression ------------------------------------------------------------------
class _Regression(FastEvaluator):
    """Regression tables over inputs and derived fields, normalised to probabilities."""

    def __init__(
        self,
        table_classes: tuple[str, ...],
        class_tables: list[int],
        inputs: list[str],
        derived: list[tuple[str, Column]],
        predictors: list[str],
        coefficients: np.ndarray,
        intercepts: np.ndarray,
        normalization: str,
    ) -> None:
        super().__init__(
            tuple(table_classes[t] for t in class_tables),
            f"regression ({normalization})",
        )
        self._class_tables = (
            class_tables  # class j's probability is table class_tables[j]'s
        )
        self._inputs = inputs
        self._derived = derived
        self._predictors = predictors
        self._coefficients = coefficients  # predictors x classes
        self._intercepts = intercepts
        self._normalization = normalization

    def _probabilities(self, values: np.ndarray) -> np.ndarray:
        columns: dict[str, np.ndarray] = {
            name: values[:, i] for i, name in enumerate(self._inputs)
        }
        for name, column in self._derived:
            columns[name] = column(columns)
        design = np.column_stack([columns[name] for name in self._predictors])
        scores = self._intercepts + design @ self._coefficients
        if self._normalization == "softmax":
            exponentials = np.exp(scores - scores.max(axis=1, keepdims=True))
            probabilities = exponentials / exponentials.sum(axis=1, keepdims=True)
        else:  # logit: every table but the last on its own, the last the remainder
            probabilities = np.empty_like(scores)
            probabilities[:, :-1] = 1.0 / (1.0 + np.exp(-scores[:, :-1]))
            probabilities[:, -1] = 1.0 - probabilities[:, :-1].sum(axis=1)
        return probabilities[:, self._class_tables]


def _regression(root: ET.Element, model: ET.Element, schema: PmmlSchema) -> _Regression:
    if model.get("functionName") != "classification":
        raise UnsupportedModel(
            "only classification regression models are fast-evaluated"
        )
    normalization = model.get("normalizationMethod", "none")
    if normalization not in {"logit", "softmax"}:
        raise UnsupportedModel(f"normalizationMethod={normalization!r}")
    containers = [
        c
        for c in (
            root.find("TransformationDictionary"),
            model.find("LocalTransformations"),
        )
        if c is not None
    ]
    derived = compile_derived_fields(containers, schema.input_names)
    # Document order matters: under "logit" the last table's class gets 1 - the others.
    tables = model.findall("RegressionTable")
    categories = tuple(table.get("targetCategory", "") for table in tables)
    if sorted(categories) != sorted(schema.target_values) or len(categories) < 2:
        raise UnsupportedModel("regression tables do not match the target's values")
    known = set(schema.input_names) | {name for name, _ in derived}
    predictors: list[str] = []
    for table in tables:
        for element in table:
            if element.tag != "NumericPredictor" or element.get(
                "exponent", "1"
            ) not in {"1", "1.0"}:
                raise UnsupportedModel(f"regression term <{element.tag}>")
            name = element.get("name", "")
            if name not in known:
                raise UnsupportedModel(
                    f"predictor {name!r} is neither an input nor derived"
                )
            if name not in predictors:
                predictors.append(name)
    coefficients = np.zeros((len(predictors), len(tables)))
    for j, table in enumerate(tables):
        for element in table:
            coefficients[predictors.index(element.get("name", "")), j] = float(
                element.get("coefficient", "0")
            )
    intercepts = np.array([float(table.get("intercept", "0")) for table in tables])
    return _Regression(
        categories,
        [categories.index(c) for c in schema.target_values],
        schema.input_names,
        derived,
        predictors,
        coefficients,
        intercepts,
        normalization,
    )


def build_fast_evaluator(document: bytes, schema: PmmlSchema) -> FastEvaluator:
    """The fast evaluator for this PMML, or :class:`UnsupportedModel` saying why not."""
    root = parse_document(document)
    if schema.function_name != "classification" or len(schema.target_values) < 2:
        raise UnsupportedModel("only classification models with declared classes")
    if root.find("TransformationDictionary") is not None and not _regression_model(
        root
    ):
        raise UnsupportedModel("a TransformationDictionary outside a regression model")
    model = model_element(root)
    try:
        if model.tag in {"TreeModel", "MiningModel"}:
            return _tree_ensemble(root, model, schema)
        if model.tag == "RegressionModel":
            return _regression(root, model, schema)
    except UnsupportedModel:
        raise
    except (
        Exception
    ) as exc:  # sklearn-pmml-model raises bare Exceptions on what it cannot read
        raise UnsupportedModel(f"sklearn-pmml-model cannot read it: {exc}") from exc
    raise UnsupportedModel(f"model type {model.tag}")


def _regression_model(root: ET.Element) -> bool:
    return model_element(root).tag == "RegressionModel"
