"""The fast evaluator: a whole batch in a few vectorised calls, same answers as pypmml.

Trees and tree ensembles are parsed by sklearn-pmml-model (its
``construct_tree``) into scikit-learn ``Tree`` objects, which walk a batch
in C. One subtlety makes them differ from a PMML evaluator as they come:
scikit-learn compares float32 inputs with float64 thresholds, while pypmml
compares float64 with float64, so a value within a float32 rounding step of
a threshold can take the other branch. We therefore never feed raw values:
each input is replaced by its rank among the split values the model uses on
it and each split value by its own rank (:func:`_rank_splits`). Ranks are
small integers, exact in float32, and every comparison keeps its outcome:
the trees then decide exactly as a float64 evaluator does.

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
#: Batches up to this many rows go through the combined tree, larger ones tree by tree.
_ROUTED_ROWS = 32
#: Rows scored per step of a large batch (bounds the per-tree working memory).
_ROWS_PER_STEP = 4096

#: A scikit-learn ``Tree`` and the class probabilities of each of its nodes (leaves).
_Tree = tuple[Any, np.ndarray]


class _TreeEnsemble(FastEvaluator):
    """One decision tree, or several combined by averaging or majority vote.

    Calling a scikit-learn ``Tree`` has a fixed cost (tens of microseconds
    for a 100-tree forest's worth of calls) that dominates small batches. So
    the trees also exist merged into one ``Tree`` behind a "router": splits
    on an extra tree-id input send a row to tree ``t``'s root when that input
    is ``t``, and ``n`` rows become ``n x trees`` virtual rows scored in one
    call. The merged tree walks more nodes per row, so large batches go tree
    by tree. Both ways produce the same leaves, combined by the same code.
    """

    def __init__(
        self,
        classes: tuple[str, ...],
        trees: list[_Tree],
        merged: _Tree | None,
        method: str,
        features: list[tuple[int, int, np.ndarray]],
        width: int,
    ) -> None:
        kind = (
            "decision tree"
            if len(trees) == 1
            else f"{len(trees)}-tree {method} ensemble"
        )
        super().__init__(classes, kind)
        self._trees = trees
        self._merged = merged
        self._tree_ids = np.arange(len(trees), dtype=np.float32)
        self._method = method
        # (model feature, our input column, the feature's sorted split values)
        self._features = features
        self._width = (
            width  # the model's inputs; the merged tree's tree id comes after them
        )

    def _ranks(self, values: np.ndarray) -> np.ndarray:
        """Each input's rank among its split values (see :func:`_rank_splits`)."""
        ranks = np.zeros((values.shape[0], self._width + 1), dtype=np.float32)
        for feature, column, split_values in self._features:
            x = values[:, column]
            ranks[:, feature] = np.searchsorted(
                split_values, x, side="left"
            ) + np.searchsorted(split_values, x, side="right")
        return ranks

    def _leaf_probabilities(self, ranks: np.ndarray) -> np.ndarray:
        """Rows x trees x classes: the probabilities of the leaf each row reaches in each tree."""
        rows, trees = ranks.shape[0], len(self._trees)
        if self._merged is not None and rows <= _ROUTED_ROWS:
            virtual = np.repeat(ranks, trees, axis=0)
            virtual[:, self._width] = np.tile(self._tree_ids, rows)
            tree, probabilities = self._merged
            merged: np.ndarray = probabilities[tree.apply(virtual)]
            return merged.reshape(rows, trees, len(self.classes))
        leaves = np.empty((rows, trees, len(self.classes)))
        for t, (tree, probabilities) in enumerate(self._trees):
            leaves[:, t] = probabilities[tree.apply(ranks)]
        return leaves

    def _probabilities(self, values: np.ndarray) -> np.ndarray:
        probabilities = np.empty((values.shape[0], len(self.classes)))
        for start in range(0, values.shape[0], _ROWS_PER_STEP):
            block = self._leaf_probabilities(
                self._ranks(values[start : start + _ROWS_PER_STEP])
            )
            if self._method == "majorityVote":
                votes = np.zeros_like(block)
                np.put_along_axis(votes, block.argmax(axis=2)[:, :, None], 1.0, axis=2)
                block = votes
            probabilities[start : start + block.shape[0]] = block.sum(axis=1) / len(
                self._trees
            )
        return probabilities


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


def _binary_root(tree_model: ET.Element) -> ET.Element:
    """The tree's root node, multi-way splits rewritten as binary ones (by the library)."""
    from sklearn_pmml_model.tree.tree import unflatten

    root = tree_model.find("Node")
    assert root is not None  # checked by _check_tree
    if tree_model.get("splitCharacteristic") == "binarySplit":
        return root
    return unflatten(root)  # type: ignore[no-any-return]


def _combined_tree(
    roots: list[ET.Element], classes: Any, field_mapping: Any, width: int
) -> tuple[Any, np.ndarray]:
    """The trees under ``roots`` as one ``Tree`` (behind a router on input ``width``, the
    tree id, if there are several; see :class:`_TreeEnsemble`).

    Each tree's nodes come from sklearn-pmml-model's own ``construct_tree``.
    Returns the ``Tree`` and every node's class probabilities (leaves only).
    """
    from sklearn_pmml_model.tree._tree import NODE_DTYPE, Tree
    from sklearn_pmml_model.tree.tree import construct_tree

    nodes: list[tuple[Any, ...]] = []
    values: list[list[list[float]]] = []

    def add(first: int, last: int) -> int:
        index = len(nodes)
        if first == last:
            tree_nodes, tree_values = construct_tree(
                roots[first], classes, field_mapping, i=index
            )
            nodes.extend(tree_nodes)
            values.extend(tree_values)
            return index
        nodes.append(())
        values.append([[0.0] * len(classes)])
        middle = (first + last) // 2
        left, right = add(first, middle), add(middle + 1, last)
        nodes[index] = (left, right, width, np.float64(middle + 0.5), 0.0, 0, 0.0)
        return index

    add(0, len(roots) - 1)
    leaf = np.array([node[0] == -1 for node in nodes])
    counts = np.array([value[0] for value in values], dtype=np.float64)
    probabilities = np.zeros_like(counts)
    probabilities[leaf] = counts[leaf] / counts[leaf].sum(axis=1, keepdims=True)
    tree = Tree(
        width + 1,
        np.array([len(classes)], dtype=np.intp),
        1,
        np.array([], dtype=np.int32),
    )
    tree.__setstate__(
        {
            "max_depth": 2**31 - 1,
            "node_count": len(nodes),
            "nodes": np.ascontiguousarray(nodes, dtype=NODE_DTYPE),
            "values": np.ascontiguousarray(probabilities[:, None, :]),
        }
    )
    tree.set_n_categories(np.full(width + 1, -1, dtype=np.int32))
    return tree, probabilities


def _tree_ensemble(
    root: ET.Element, model: ET.Element, schema: PmmlSchema
) -> _TreeEnsemble:
    from sklearn_pmml_model.base import PMMLBaseClassifier

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
    # the library's reading of the DataDictionary: classes and field columns
    base = PMMLBaseClassifier(io.BytesIO(ET.tostring(root)))
    if tuple(str(c) for c in base.classes_) != schema.target_values:
        raise UnsupportedModel("the tree's classes differ from the target's values")
    width = sum(1 for element in base.fields.values() if element.tag == "DataField") - 1
    roots = [_binary_root(tree) for tree in tree_models]
    trees = [
        _combined_tree([r], base.classes_, base.field_mapping, width) for r in roots
    ]
    merged = (
        _combined_tree(roots, base.classes_, base.field_mapping, width)
        if len(roots) > 1
        else None
    )
    position = {name: i for i, name in enumerate(schema.input_names)}
    features = [
        (base.field_mapping[name][0], position[name], values)
        for name, values in split_values.items()
    ]
    return _TreeEnsemble(schema.target_values, trees, merged, method, features, width)


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
        by_class: np.ndarray = probabilities[:, self._class_tables]
        return by_class


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
