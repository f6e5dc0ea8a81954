"""The fast evaluator: a whole batch in a few vectorised calls, same answers as pypmml.

**Trees** (``TreeModel``, and ``MiningModel`` segmentations of trees) are
compiled into scikit-learn-style ``Tree`` objects (sklearn-pmml-model's
``Tree`` class, which walks a batch in C) whose every split is one
``feature <= threshold`` on a float32 feature matrix built per batch:

- a numeric comparison tests the value's *rank* among the split values the
  model uses on that field (:func:`_ranks`): ranks are small integers,
  exact in float32, and keep the outcome of every comparison, so the trees
  decide exactly as pypmml's float64 comparisons do;
- any other predicate (``equal``/``notEqual``/``isIn``/``isNotIn`` on a
  category, ``isMissing``, compound predicates) tests a *truth column*:
  -1 unknown, 0 false, 1 true, read from a per-code table or computed
  with PMML's three-valued logic.

What a node does with an unknown predicate follows PMML4S (pypmml's
engine) to the letter: it skips an unknown child like a false one and
tries the next; only when no child fires does ``missingValueStrategy``
(then ``noTrueChildStrategy``) decide. The compiled tree therefore carries,
along a node's chain of children, whether an unknown was seen. Shared
continuations are shared nodes (the ``Tree`` walks any DAG), so nothing
is copied.

**Regression** (``RegressionModel``: logistic, softmax or plain regression)
is a matrix product over numeric predictors, category indicators and the
derived fields sklearn2pmml writes (:mod:`serving.transformations`).

**Gradient boosting** as sklearn2pmml writes it is a ``modelChain``: sums of
regression trees (rescaled by ``Targets``) feeding a logistic or softmax
``RegressionModel``; each piece above composes into it.

Only constructs whose meaning is reproduced exactly are accepted; anything
else raises :class:`~serving.errors.UnsupportedModel` and the server falls
back to pypmml for that model.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, ClassVar

import numpy as np

from models.pmml_schema import PmmlSchema, array_items, model_element, parse_document
from serving.errors import UnsupportedModel
from serving.evaluator import Evaluator, Scores
from serving.explanations import Condition, condition, ranked, text
from serving.transformations import (
    DerivedColumn,
    FieldInfo,
    Scope,
    input_field_info,
    lookup_index,
)

__all__ = ["FastEvaluator", "build_fast_evaluator"]


# --- what a compiled model part answers ---------------------------------------------
@dataclass
class _Result:
    """One part's answer for a batch.

    ``values`` is rows x classes (probabilities, in the target's order) for
    classification, rows for regression; ``labels`` indexes the classes
    (None for regression); ``no_result`` marks rows without a prediction;
    ``explanations``, when asked for, one explanation per row.
    """

    values: np.ndarray
    labels: np.ndarray | None
    no_result: np.ndarray
    explanations: list[dict[str, Any]] | None = None


class _Part(ABC):
    """A compiled model element, evaluated over a batch's columns (by key)."""

    def __init__(self, derived: list[DerivedColumn]) -> None:
        self._derived = derived

    def evaluate(
        self, columns: dict[str, np.ndarray], rows: int, explain: bool = False
    ) -> _Result:
        """Score ``rows`` rows; derived fields are computed once and kept in ``columns``."""
        for field in self._derived:
            if field.key not in columns:
                columns[field.key] = field.column(columns)
        return self._evaluate(columns, rows, explain)

    @abstractmethod
    def _evaluate(
        self, columns: dict[str, np.ndarray], rows: int, explain: bool
    ) -> _Result: ...


class FastEvaluator(Evaluator):
    """A model scored in-process with numpy; see the module docstring for why it is exact."""

    kind = "fast"

    def __init__(
        self, part: _Part, schema: PmmlSchema, inputs: list[FieldInfo], description: str
    ) -> None:
        self.regression = schema.function_name == "regression"
        self.classes = () if self.regression else schema.target_values
        self.description = description
        self._part = part
        self._keys = [info.key for info in inputs]

    async def evaluate(self, values: np.ndarray, explain: bool = False) -> Scores:
        return self.score(values, explain)

    def score(self, values: np.ndarray, explain: bool = False) -> Scores:
        """Score synchronously (CPU-bound and short: called on the event loop)."""
        columns = {key: values[:, i] for i, key in enumerate(self._keys)}
        rows = values.shape[0]
        result = self._part.evaluate(columns, rows, explain)
        no_result = result.no_result if result.no_result.any() else None
        if self.regression:
            scores = Scores.regression(result.values, no_result)
        else:
            assert result.labels is not None
            scores = Scores(result.labels, result.values, no_result)
        if explain:
            assert result.explanations is not None
            scores.explanations = [text(e) for e in result.explanations]
        return scores


# --- tree predicates as feature tests --------------------------------------------------
_PREDICATES = {
    "True",
    "False",
    "SimplePredicate",
    "SimpleSetPredicate",
    "CompoundPredicate",
}
_COMPARISONS = {"lessOrEqual", "lessThan", "greaterThan", "greaterOrEqual"}
_UNKNOWN, _FALSE, _TRUE = -1.0, 0.0, 1.0

#: A predicate's truth per row: -1 unknown, 0 false, 1 true.
_Truth = Callable[[Mapping[str, np.ndarray]], np.ndarray]


def _predicate(node: ET.Element) -> ET.Element:
    for child in node:
        if child.tag in _PREDICATES:
            return child
    raise UnsupportedModel("a Node without a predicate")


def _array_items(predicate: ET.Element) -> list[str]:
    """The set's items, split as the schema splits them (so codes agree with it)."""
    array = predicate.find("Array")
    if array is None:
        raise UnsupportedModel("a SimpleSetPredicate without an Array")
    return array_items(array)


class _Features:
    """The float32 feature matrix one tree ensemble splits on, and how to build it.

    Columns: for each numeric field it compares, its rank with a missing
    value below every rank ("low") and, if it can be missing, also above
    ("high"), so that one split sends a missing value to a comparison's
    false side; per categorical field, one truth column per distinct
    membership test (one table lookup per field and batch); one column per
    other predicate. The last column is the tree id for the merged tree.
    """

    def __init__(self) -> None:
        self.width = 0
        self._splits: dict[str, set[float]] = {}
        self._sorted: dict[str, list[float]] = {}
        self._ranks: dict[str, tuple[int, int]] = {}  # key -> (low, high) columns
        # field key -> its tables (truth per code) -> their columns
        self._tables: dict[str, dict[tuple[float, ...], int]] = {}
        self._counts: dict[str, int] = {}
        self._truths: dict[str, tuple[int, _Truth]] = {}
        self._rank_plan: list[tuple[str, np.ndarray, int, int]] = []
        self._table_plan: list[tuple[str, int, np.ndarray, np.ndarray]] = []

    def _column(self) -> int:
        self.width += 1
        return self.width - 1

    # --- declaring what the trees test (while compiling) -----------------------------
    def note_split(self, info: FieldInfo, value: float) -> None:
        self._splits.setdefault(info.key, set()).add(value)

    def rank_columns(self, info: FieldInfo) -> tuple[int, int]:
        if info.key not in self._ranks:
            low = self._column()
            self._ranks[info.key] = (low, self._column() if info.maybe_missing else low)
        return self._ranks[info.key]

    def split_rank(self, info: FieldInfo, value: float) -> int:
        """The rank of split value ``value``: ``2k + 1`` for the k-th smallest."""
        # every split value is noted before the first test
        if info.key not in self._sorted:
            self._sorted[info.key] = sorted(self._splits[info.key])
        return 2 * self._sorted[info.key].index(value) + 1

    def table_column(self, info: FieldInfo, table: tuple[float, ...]) -> int:
        """The truth column of a membership test given per code, then other and missing."""
        tables = self._tables.setdefault(info.key, {})
        self._counts[info.key] = len(info.categories or ())
        if table not in tables:
            tables[table] = self._column()
        return tables[table]

    def truth_column(self, identity: str, truth: _Truth) -> int:
        if identity not in self._truths:
            self._truths[identity] = (self._column(), truth)
        return self._truths[identity][0]

    def freeze(self) -> None:
        """Fix the plan once every tree is compiled."""
        self._rank_plan = [
            (key, np.array(sorted(self._splits[key])), low, high)
            for key, (low, high) in self._ranks.items()
        ]
        self._table_plan = []
        for key, tables in self._tables.items():
            ordered = sorted(tables.items(), key=lambda item: item[1])
            matrix = np.array([table for table, _ in ordered], dtype=np.float32).T
            columns = np.array([column for _, column in ordered], dtype=np.intp)
            self._table_plan.append((key, self._counts[key], columns, matrix))

    # --- building it (per batch) ---------------------------------------------------
    def build(self, columns: Mapping[str, np.ndarray], rows: int) -> np.ndarray:
        features = np.zeros((rows, self.width + 1), dtype=np.float32)
        for key, split_values, low, high in self._rank_plan:
            low_ranks, high_ranks = _ranks(columns[key], split_values)
            features[:, low] = low_ranks
            if high != low:
                features[:, high] = high_ranks
        for key, count, where, table in self._table_plan:
            features[:, where] = table[lookup_index(columns[key], count)]
        for column, truth in self._truths.values():
            features[:, column] = truth(columns)
        return features


def _ranks(x: np.ndarray, split_values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``#{t < x} + #{t <= x}`` over the split values ``t``, missing as -1 and as the top.

    Split value ``t_k`` itself becomes ``2k + 1``, anything between two split
    values an even number in between: every comparison with a split value
    keeps its outcome, on small integers exact in float32.
    """
    ranks = np.searchsorted(split_values, x, side="left") + np.searchsorted(
        split_values, x, side="right"
    )
    missing = np.isnan(x)
    return np.where(missing, -1, ranks), np.where(
        missing, 2 * split_values.size + 2, ranks
    )


@dataclass(frozen=True)
class _Test:
    """How to branch on one predicate: a column, threshold, and which side is true."""

    column: int
    threshold: float
    true_on_left: bool
    #: the column and threshold that isolate an unknown outcome on the left (if possible)
    unknown: tuple[int, float] | None


class _PredicateCompiler:
    """Turns predicates into feature tests (and three-valued truth functions)."""

    def __init__(self, features: _Features) -> None:
        self.features = features

    def notes(self, predicate: ET.Element, scope: Scope) -> None:
        """First pass: collect the split values of numeric comparisons."""
        if (
            predicate.tag == "SimplePredicate"
            and predicate.get("operator") in _COMPARISONS
        ):
            info = scope.field(predicate.get("field", ""))
            if info.categories is not None:
                raise UnsupportedModel("an order comparison of a categorical field")
            self.features.note_split(info, _value(predicate))

    def test(self, predicate: ET.Element, scope: Scope) -> _Test:
        operator = predicate.get("operator", predicate.get("booleanOperator", ""))
        if predicate.tag == "SimplePredicate" and operator in _COMPARISONS:
            info = scope.field(predicate.get("field", ""))
            low, high = self.features.rank_columns(info)
            rank = self.features.split_rank(info, _value(predicate))
            unknown = (low, -0.5) if info.maybe_missing else None
            # lessOrEqual: true iff rank <= 2k + 1, a missing (high) value false
            if operator == "lessOrEqual":
                return _Test(high, rank, True, unknown)
            if operator == "lessThan":
                return _Test(high, rank - 1, True, unknown)
            if operator == "greaterThan":  # missing low: false
                return _Test(low, rank, False, unknown)
            return _Test(low, rank - 1, False, unknown)  # greaterOrEqual
        column = self._truth_test_column(predicate, scope)
        return _Test(column, 0.5, False, (column, -0.5))

    def _truth_test_column(self, predicate: ET.Element, scope: Scope) -> int:
        table = self._membership(predicate, scope)
        if table is not None:
            info, values = table
            return self.features.table_column(info, values)
        identity = f"{ET.tostring(predicate)!r}@{id(scope)}"
        return self.features.truth_column(identity, self.truth(predicate, scope))

    def _membership(
        self, predicate: ET.Element, scope: Scope
    ) -> tuple[FieldInfo, tuple[float, ...]] | None:
        """A simple predicate on a categorical field, as its truth per code, other, missing.

        To a predicate, a value the field does not declare is missing (PMML4S).
        """
        if predicate.tag not in {"SimplePredicate", "SimpleSetPredicate"}:
            return None
        info = scope.field(predicate.get("field", ""))
        if info.categories is None:
            return None
        count = len(info.categories)
        operator = predicate.get("operator", predicate.get("booleanOperator", ""))
        if operator in {"isMissing", "isNotMissing"}:
            present = _FALSE if operator == "isMissing" else _TRUE
            return info, (present,) * count + (_TRUE - present,) * 2
        if predicate.tag == "SimplePredicate":
            members = {info.code(predicate.get("value", ""))}
            positive = {"equal": True, "notEqual": False}.get(operator)
        else:
            members = {info.code(item) for item in _array_items(predicate)}
            positive = {"isIn": True, "isNotIn": False}.get(operator)
        if positive is None:
            raise UnsupportedModel(f"operator {operator!r} on a categorical field")
        return info, tuple(
            _TRUE if (code in members) == positive else _FALSE for code in range(count)
        ) + (_UNKNOWN, _UNKNOWN)

    def truth(self, predicate: ET.Element, scope: Scope) -> _Truth:
        """The predicate's three-valued truth per row, as PMML4S evaluates it."""
        tag = predicate.tag
        if tag in {"True", "False"}:
            constant = _TRUE if tag == "True" else _FALSE
            return lambda columns: np.array(constant)
        table = self._membership(predicate, scope)
        if table is not None:
            info, values = table
            lookup = np.array(values)
            key, count = info.key, len(values) - 2
            return lambda columns: lookup[lookup_index(columns[key], count)]
        if tag == "SimplePredicate":
            return _numeric_truth(predicate, scope.field(predicate.get("field", "")))
        if tag == "SimpleSetPredicate":
            info = scope.field(predicate.get("field", ""))
            members = np.array([float(item) for item in _array_items(predicate)])
            inside = predicate.get("booleanOperator") == "isIn"
            key = info.key
            return lambda columns: _known(
                columns[key], np.isin(columns[key], members) == inside
            )
        if tag == "CompoundPredicate":
            return self._compound(predicate, scope)
        raise UnsupportedModel(f"predicate <{tag}>")

    def _compound(self, predicate: ET.Element, scope: Scope) -> _Truth:
        operator = predicate.get("booleanOperator", "")
        operands = [child for child in predicate if child.tag in _PREDICATES]
        if operator == "surrogate" and any(
            operand.tag == "CompoundPredicate" for operand in operands
        ):
            # PMML4S' and/or do not count a nested surrogate's answer as true
            raise UnsupportedModel("a surrogate with compound alternatives")
        if any(
            operand.tag == "CompoundPredicate"
            and operand.get("booleanOperator") == "surrogate"
            for operand in operands
        ):
            raise UnsupportedModel("a surrogate nested in a compound predicate")
        truths = [self.truth(operand, scope) for operand in operands]
        # "xor" is left out: pypmml 1.5.8 answers false even for one true operand
        combine = _COMBINE.get(operator)
        if combine is None or len(truths) < 2:
            raise UnsupportedModel(f"CompoundPredicate {operator!r}")
        return lambda columns: combine([truth(columns) for truth in truths])


def _value(predicate: ET.Element) -> float:
    try:
        return float(predicate.get("value", ""))
    except ValueError:
        raise UnsupportedModel(
            f"split value {predicate.get('value')!r} is not a number"
        ) from None


def _known(x: np.ndarray, outcome: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(x), _UNKNOWN, outcome.astype(np.float64))


def _numeric_truth(predicate: ET.Element, info: FieldInfo) -> _Truth:
    operator, key = predicate.get("operator", ""), info.key
    if operator in {"isMissing", "isNotMissing"}:
        missing_is = operator == "isMissing"
        return lambda columns: (np.isnan(columns[key]) == missing_is).astype(np.float64)
    compare = _NUMERIC_OPERATORS.get(operator)
    if compare is None:
        raise UnsupportedModel(f"operator {operator!r}")
    value = _value(predicate)
    return lambda columns: _known(columns[key], compare(columns[key], value))


_NUMERIC_OPERATORS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "equal": np.equal,
    "notEqual": np.not_equal,
    "lessOrEqual": np.less_equal,
    "lessThan": np.less,
    "greaterThan": np.greater,
    "greaterOrEqual": np.greater_equal,
}


def _and(truths: list[np.ndarray]) -> np.ndarray:
    """False if any is false, else unknown if any is unknown, else true."""
    stacked = np.broadcast_arrays(*truths)
    anyfalse = np.logical_or.reduce([t == _FALSE for t in stacked])
    anyunknown = np.logical_or.reduce([t == _UNKNOWN for t in stacked])
    return np.where(anyfalse, _FALSE, np.where(anyunknown, _UNKNOWN, _TRUE))


def _or(truths: list[np.ndarray]) -> np.ndarray:
    """True if any is true, else unknown if any is unknown, else false."""
    stacked = np.broadcast_arrays(*truths)
    anytrue = np.logical_or.reduce([t == _TRUE for t in stacked])
    anyunknown = np.logical_or.reduce([t == _UNKNOWN for t in stacked])
    return np.where(anytrue, _TRUE, np.where(anyunknown, _UNKNOWN, _FALSE))


def _surrogate(truths: list[np.ndarray]) -> np.ndarray:
    """The first operand that is not unknown (a surrogate's true fires like true)."""
    result = np.broadcast_arrays(*truths)[-1]
    for truth in reversed(truths[:-1]):
        result = np.where(truth == _UNKNOWN, result, truth)
    return np.asarray(result, dtype=np.float64)


_COMBINE: dict[str, Callable[[list[np.ndarray]], np.ndarray]] = {
    "and": _and,
    "or": _or,
    "surrogate": _surrogate,
}


# --- trees as node arrays -----------------------------------------------------------------
class _Nodes:
    """The nodes of one compiled tree (or of several behind a router)."""

    def __init__(self, width: int) -> None:
        self.width = width  # leaf payload width: classes, or 1 for a regression score
        self.left: list[int] = []
        self.right: list[int] = []
        self.feature: list[int] = []
        self.threshold: list[float] = []
        self.payload: list[np.ndarray] = []
        self.label: list[int] = []
        self.null: list[bool] = []
        #: per node, for explanations: a split's wording (left, right, fields), a leaf's PMML facts
        self.notes: list[_Note | None] = []
        self.leaves: list[dict[str, Any] | None] = []
        self.root = -1
        self._null_leaf: int | None = None

    def _add(
        self,
        left: int,
        right: int,
        feature: int,
        threshold: float,
        note: _Note | None = None,
        leaf: dict[str, Any] | None = None,
    ) -> int:
        self.left.append(left)
        self.right.append(right)
        self.feature.append(feature)
        self.threshold.append(threshold)
        self.notes.append(note)
        self.leaves.append(leaf)
        return len(self.left) - 1

    def leaf(self, payload: np.ndarray, label: int, facts: dict[str, Any]) -> int:
        self.payload.append(payload)
        self.label.append(label)
        self.null.append(False)
        return self._add(-1, -1, -2, -2.0, leaf=facts)

    def null_leaf(self) -> int:
        """The one leaf meaning "no prediction"."""
        if self._null_leaf is None:
            self.payload.append(np.zeros(self.width))
            self.label.append(0)
            self.null.append(True)
            self._null_leaf = self._add(
                -1, -1, -2, -2.0, leaf={"null_prediction": True}
            )
        return self._null_leaf

    def split(
        self,
        feature: int,
        threshold: float,
        left: int,
        right: int,
        note: _Note | None = None,
    ) -> int:
        if left == right:
            return left
        self.payload.append(np.zeros(self.width))
        self.label.append(0)
        self.null.append(False)
        return self._add(left, right, feature, threshold, note)

    def branch(
        self,
        test: _Test,
        targets: tuple[int, int, int],
        wording: Condition,
        after_unknown: str,
    ) -> int:
        """The split(s) of one predicate: to ``true``, ``false``, or ``unknown`` when undecided."""
        true, false, unknown = targets
        fields = frozenset(wording.fields)
        if test.true_on_left:
            node = self.split(
                test.column,
                test.threshold,
                true,
                false,
                (wording.true, wording.false, fields),
            )
        else:
            node = self.split(
                test.column,
                test.threshold,
                false,
                true,
                (wording.false, wording.true, fields),
            )
        if unknown == false or test.unknown is None:
            return node
        column, threshold = test.unknown
        note = (wording.unknown(after_unknown), None, fields)
        return self.split(column, threshold, unknown, node, note)


#: A split's wording on a path: going left, going right (None: nothing to say), its fields.
_Note = tuple[str, str | None, frozenset[str]]


@dataclass
class _CompiledTree:
    """A ``Tree`` and, per node, its payload, label and whether it means no prediction."""

    tree: Any
    payload: np.ndarray
    label: np.ndarray
    null: np.ndarray
    #: per node: a split's wording, a leaf's facts (see :class:`_Nodes`)
    notes: list[_Note | None]
    leaves: list[dict[str, Any] | None]
    left: list[int]

    def paths(self, features: np.ndarray) -> list[tuple[list[str], int]]:
        """Per row: the wording of the splits it took, and its leaf.

        Read off the rows' decision paths through this very ``Tree``: each
        split node on a path says what it tested and which side the row took.
        """
        indicator = self.tree.decision_path(features)  # nodes in walk order
        left = self.left
        answers = []
        for row in range(features.shape[0]):
            visited = indicator.indices[
                indicator.indptr[row] : indicator.indptr[row + 1]
            ].tolist()
            words: list[str] = []
            for node, following in pairwise(visited):
                note = self.notes[node]
                if note is None:  # the router of a merged tree
                    continue
                went_left = following == left[node]
                said = note[0] if went_left else note[1]
                if said:
                    words.append(said)
            answers.append((words, visited[-1]))
        return answers

    def can_return_null(self) -> bool:
        """Whether some row can reach a "no prediction" leaf (walked from the root)."""
        nodes = self.tree.__getstate__()["nodes"]
        stack, seen = [0], set()
        while stack:
            node = stack.pop()
            if node in seen:
                continue
            seen.add(node)
            left, right = (
                int(nodes["left_child"][node]),
                int(nodes["right_child"][node]),
            )
            if left == -1:
                if self.null[node]:
                    return True
                continue
            stack.extend((left, right))
        return False


def _as_tree(nodes: _Nodes, features: int) -> _CompiledTree:
    from sklearn_pmml_model.tree._tree import NODE_DTYPE, Tree

    count = len(nodes.left)
    records = np.zeros(count, dtype=NODE_DTYPE)
    records["left_child"] = nodes.left
    records["right_child"] = nodes.right
    records["feature"] = nodes.feature
    # the library's split value is a union (a threshold, or a category bitset)
    records["split_value"] = np.array(nodes.threshold, dtype=np.float64).view("V8")
    tree = Tree(features, np.array([1], dtype=np.intp), 1, np.array([], dtype=np.int32))
    tree.__setstate__(
        {
            # decision_path sizes its buffer by it: the longest walk, not a bound
            "max_depth": _depth(nodes.left, nodes.right),
            "node_count": count,
            "nodes": records,
            "values": np.zeros((count, 1, 1)),
        }
    )
    tree.set_n_categories(np.full(features, -1, dtype=np.int32))
    return _CompiledTree(
        tree,
        np.array(nodes.payload).reshape(count, nodes.width),
        np.array(nodes.label, dtype=np.intp),
        np.array(nodes.null, dtype=bool),
        nodes.notes,
        nodes.leaves,
        nodes.left,
    )


def _depth(left: list[int], right: list[int]) -> int:
    """Splits on the longest walk from node 0 (a DAG: each node measured once)."""
    depth = [0] * len(left)
    # children come before their parents except node 0 (the root, see _reroot):
    # relax until nothing changes, at most the depth's number of passes
    changed = True
    while changed:
        changed = False
        for node in range(len(left)):
            if left[node] != -1:
                deeper = 1 + max(depth[left[node]], depth[right[node]])
                if deeper > depth[node]:
                    depth[node], changed = deeper, True
    return depth[0] if left else 0


class _TreeCompiler:
    """PMML TreeModels -> :class:`_Nodes`, with PMML4S' reading of missing values."""

    _STRATEGIES: ClassVar = {"nullPrediction", "lastPrediction", "none", "defaultChild"}

    def __init__(
        self,
        predicates: _PredicateCompiler,
        classes: tuple[str, ...] | None,
    ) -> None:
        self._predicates = predicates
        self._classes = classes

    def compile(self, tree_model: ET.Element, scope: Scope, nodes: _Nodes) -> int:
        strategy = tree_model.get("missingValueStrategy", "none")
        if strategy not in self._STRATEGIES:
            raise UnsupportedModel(f"missingValueStrategy={strategy!r}")
        no_true_child = tree_model.get("noTrueChildStrategy", "returnNullPrediction")
        root = tree_model.find("Node")
        if root is None:
            raise UnsupportedModel("a TreeModel without a Node")
        if _predicate(root).tag != "True":
            raise UnsupportedModel("a tree whose root predicate is not <True/>")
        return self._node(root, scope, nodes, strategy, no_true_child)

    def _node(
        self,
        node: ET.Element,
        scope: Scope,
        nodes: _Nodes,
        strategy: str,
        no_true_child: str,
    ) -> int:
        children = node.findall("Node")
        if not children:
            return self._leaf(node, nodes)
        # children after one that is always true are never tried
        predicates = [_predicate(child) for child in children]
        tags = [predicate.tag for predicate in predicates]
        reached = tags.index("True") + 1 if "True" in tags else len(children)
        tests = {
            i: self._predicates.test(predicates[i], scope)
            for i in range(reached)
            if tags[i] not in {"True", "False"}
        }
        compiled = [
            self._node(children[i], scope, nodes, strategy, no_true_child)
            for i in range(reached)
        ]
        # where the chain ends when no child fires: without / after an unknown
        last = after_unknown = -1  # never reached when the chain ends with <True/>
        if reached == len(children) and tags[-1] != "True":
            last = (
                self._leaf(node, nodes)
                if no_true_child == "returnLastPrediction"
                else nodes.null_leaf()
            )
            after_unknown = last
        if any(test.unknown is not None for test in tests.values()):
            if strategy == "lastPrediction":
                after_unknown = self._leaf(node, nodes)
            elif strategy == "defaultChild" and node.get("defaultChild") is not None:
                ids = [child.get("id") for child in children[:reached]]
                if node.get("defaultChild") not in ids:
                    raise UnsupportedModel("a defaultChild that is not a tried child")
                after_unknown = compiled[ids.index(node.get("defaultChild"))]
            # nullPrediction and none end like no true child (see the module docstring)
        then = _after_unknown(strategy, node, no_true_child)
        # the chain of children, built from its end: (no unknown seen, an unknown seen)
        plain, unknown = last, after_unknown
        for i in reversed(range(reached)):
            if tags[i] == "True":
                plain = unknown = compiled[i]
            elif tags[i] != "False":
                test, target = tests[i], compiled[i]
                wording = condition(predicates[i])
                plain, unknown = (
                    nodes.branch(test, (target, plain, unknown), wording, then),
                    nodes.branch(test, (target, unknown, unknown), wording, then),
                )
        return plain

    def _leaf(self, node: ET.Element, nodes: _Nodes) -> int:
        """A node's own prediction: its class distribution and score, or its score."""
        score = node.get("score")
        facts = _leaf_facts(node)
        if self._classes is None:
            if score is None:
                raise UnsupportedModel("a regression tree node without a score")
            try:
                return nodes.leaf(np.array([float(score)]), 0, facts)
            except ValueError:
                raise UnsupportedModel(f"node score {score!r}") from None
        distributions = node.findall("ScoreDistribution")
        if score not in self._classes or not distributions:
            raise UnsupportedModel(
                "a classification node without a known score and its distribution"
            )
        counts = [float(d.get("recordCount", "nan")) for d in distributions]
        total = 0.0
        for count in counts:  # summed in document order, as PMML4S does
            total += count
        probabilities = np.zeros(len(self._classes))
        seen = set()
        for distribution, count in zip(distributions, counts, strict=True):
            value = distribution.get("value")
            if value not in self._classes or value in seen:
                raise UnsupportedModel(f"a ScoreDistribution for class {value!r}")
            seen.add(value)
            probability = distribution.get("probability")
            if probability is None and not total > 0.0:
                raise UnsupportedModel("a ScoreDistribution without counts")
            probabilities[self._classes.index(value)] = (
                float(probability) if probability is not None else count / total
            )
        if len(seen) != len(self._classes):
            raise UnsupportedModel("a node whose distribution misses a class")
        return nodes.leaf(probabilities, self._classes.index(score), facts)


def _after_unknown(strategy: str, node: ET.Element, no_true_child: str) -> str:
    """What a tree does after an undecidable child, for the path's wording (PMML4S' order)."""
    if strategy == "defaultChild" and node.get("defaultChild") is not None:
        return f"next child, else defaultChild {node.get('defaultChild')}"
    if strategy == "lastPrediction":
        return "next child, else lastPrediction"
    return f"next child, else {no_true_child}"


def _leaf_facts(node: ET.Element) -> dict[str, Any]:
    """What the PMML says of a leaf: id, score, recordCount and its distribution, as written."""

    def number(value: str | None) -> float | int | None:
        if value is None:
            return None
        number = float(value)
        return int(number) if number.is_integer() else number

    return {
        "id": node.get("id"),
        "score": node.get("score"),
        "record_count": number(node.get("recordCount")),
        "score_distribution": {
            d.get("value", ""): number(d.get("recordCount"))
            for d in node.findall("ScoreDistribution")
        },
    }


#: Batches up to this many rows go through the merged tree, larger ones tree by tree.
_ROUTED_ROWS = 32
#: Rows scored per step of a large batch (bounds the per-tree working memory).
_ROWS_PER_STEP = 4096


class _TreeEnsemble(_Part):
    """One tree, or trees combined by ``average``, ``majorityVote`` or ``sum``.

    Calling a ``Tree`` has a fixed cost (tens of microseconds for a 100-tree
    forest's worth of calls) that dominates small batches. So the trees also
    exist merged behind a "router": splits on an extra tree-id feature send
    a row to tree ``t``'s root when that feature is ``t``, and ``n`` rows
    become ``n x trees`` virtual rows scored in one call. The merged tree
    walks more nodes per row, so large batches go tree by tree. Both ways
    reach the same leaves, combined by the same code.
    """

    def __init__(
        self,
        derived: list[DerivedColumn],
        features: _Features,
        trees: list[_CompiledTree],
        merged: _CompiledTree | None,
        method: str,
        regression: bool,
        rescale: tuple[float, float] | None,
    ) -> None:
        super().__init__(derived)
        self._regression = regression
        self._features = features
        self._trees = trees
        self._merged = merged
        self._tree_ids = np.arange(len(trees), dtype=np.float32)
        self._method = method
        self._rescale = rescale
        # for explanations: the fields the trees test, and per tree which node tests which
        self._fields = sorted(
            {f for tree in trees for note in tree.notes if note for f in note[2]}
        )
        self._uses = [_field_use(tree.notes, self._fields) for tree in trees]

    def can_return_null(self) -> bool:
        return any(tree.can_return_null() for tree in self._trees)

    def _reach(
        self, features: np.ndarray, block: slice, found: tuple[np.ndarray, ...]
    ) -> None:
        """Fill rows ``block`` of (payload, label, null), rows x trees, from the leaves reached."""
        payload, labels, null = found
        rows, trees = features.shape[0], len(self._trees)
        if self._merged is not None and rows <= _ROUTED_ROWS:
            virtual = np.repeat(features, trees, axis=0)
            virtual[:, -1] = np.tile(self._tree_ids, rows)
            leaves = self._merged.tree.apply(virtual).reshape(rows, trees)
            payload[block] = self._merged.payload[leaves]
            labels[block] = self._merged.label[leaves]
            null[block] = self._merged.null[leaves]
            return
        for t, compiled in enumerate(self._trees):
            leaves = compiled.tree.apply(features)
            payload[block, t] = compiled.payload[leaves]
            labels[block, t] = compiled.label[leaves]
            null[block, t] = compiled.null[leaves]

    def _evaluate(
        self, columns: dict[str, np.ndarray], rows: int, explain: bool
    ) -> _Result:
        features = self._features.build(columns, rows)
        result = self._combined(features, rows)
        if explain:
            result.explanations = self._explain(features)
        return result

    def _explain(self, features: np.ndarray) -> list[dict[str, Any]]:
        """A single tree's path and leaf per row; for several trees, the fields that decided them."""
        if len(self._trees) == 1:
            leaves = self._trees[0].leaves
            return [
                {"kind": "tree", "path": words, "leaf": leaves[leaf]}
                for words, leaf in self._trees[0].paths(features)
            ]
        # trees whose path tests each field: (path nodes x node-tests-field) > 0, summed
        counts = np.zeros((features.shape[0], len(self._fields)), dtype=np.intp)
        for compiled, uses in zip(self._trees, self._uses, strict=True):
            counts += (compiled.tree.decision_path(features) @ uses) > 0
        trees = len(self._trees)
        return [
            ranked(
                Counter(
                    {self._fields[i]: int(row[i]) for i in np.flatnonzero(row).tolist()}
                ),
                trees,
            )
            for row in counts
        ]

    def _combined(self, features: np.ndarray, rows: int) -> _Result:
        """Every tree's leaf for every row, combined by the segmentation's method."""
        trees = len(self._trees)
        width = self._trees[0].payload.shape[1]
        payload = np.empty((rows, trees, width))
        labels = np.empty((rows, trees), dtype=np.intp)
        null = np.empty((rows, trees), dtype=bool)
        for start in range(0, rows, _ROWS_PER_STEP):
            block = slice(start, start + _ROWS_PER_STEP)
            self._reach(features[block], block, (payload, labels, null))
        no_result = np.asarray(null.any(axis=1))
        if self._method == "sum":
            total = np.zeros(rows)
            for t in range(trees):  # in segment order, as PMML4S adds them
                total = total + payload[:, t, 0]
            if self._rescale is not None:
                total = total * self._rescale[0] + self._rescale[1]
            return _Result(total, None, no_result)
        if self._method == "single":
            if self._regression:
                return _Result(payload[:, 0, 0], None, no_result)
            return _Result(payload[:, 0], labels[:, 0], no_result)
        if self._method == "majorityVote":
            votes = np.zeros((rows, width))
            np.add.at(votes, (np.arange(rows)[:, None], labels), 1.0)
            probabilities = votes / trees
        else:
            probabilities = payload.sum(axis=1) / trees
        return _Result(probabilities, probabilities.argmax(axis=1), no_result)


def _field_use(notes: list[_Note | None], fields: list[str]) -> np.ndarray:
    """Nodes x fields: 1 where the node's split tests the field."""
    uses = np.zeros((len(notes), len(fields)))
    index = {field: i for i, field in enumerate(fields)}
    for node, note in enumerate(notes):
        for field in note[2] if note else ():
            uses[node, index[field]] = 1.0
    return uses


def _merged_tree(parts: list[_Nodes], width: int, features: int) -> _CompiledTree:
    """The trees behind a router on feature ``features - 1`` (the tree id)."""
    merged = _Nodes(width)
    roots: list[int] = []
    for part in parts:
        offset = len(merged.left)
        shift = [(-1 if child == -1 else child + offset) for child in part.left]
        merged.left.extend(shift)
        merged.right.extend(
            -1 if child == -1 else child + offset for child in part.right
        )
        merged.feature.extend(part.feature)
        merged.threshold.extend(part.threshold)
        merged.payload.extend(part.payload)
        merged.label.extend(part.label)
        merged.null.extend(part.null)
        merged.notes.extend(part.notes)
        merged.leaves.extend(part.leaves)
        roots.append(part.root + offset)

    def route(first: int, last: int) -> int:
        if first == last:
            return roots[first]
        middle = (first + last) // 2
        return merged.split(
            features - 1, middle + 0.5, route(first, middle), route(middle + 1, last)
        )

    root = route(0, len(parts) - 1)
    return _reroot(merged, root, features)


def _reroot(nodes: _Nodes, root: int, features: int) -> _CompiledTree:
    """``nodes`` as a ``Tree`` whose walk starts at ``root`` (a ``Tree`` starts at node 0)."""
    order = [root] + [i for i in range(len(nodes.left)) if i != root]
    position = {old: new for new, old in enumerate(order)}
    renumbered = _Nodes(nodes.width)
    for old in order:
        left, right = nodes.left[old], nodes.right[old]
        renumbered.left.append(-1 if left == -1 else position[left])
        renumbered.right.append(-1 if right == -1 else position[right])
        renumbered.feature.append(nodes.feature[old])
        renumbered.threshold.append(nodes.threshold[old])
        renumbered.payload.append(nodes.payload[old])
        renumbered.label.append(nodes.label[old])
        renumbered.null.append(nodes.null[old])
        renumbered.notes.append(nodes.notes[old])
        renumbered.leaves.append(nodes.leaves[old])
    return _as_tree(renumbered, features)


def _tree_ensemble(
    tree_models: list[tuple[ET.Element, Scope]],
    method: str,
    classes: tuple[str, ...] | None,
    rescale: tuple[float, float] | None,
) -> _TreeEnsemble:
    features = _Features()
    predicates = _PredicateCompiler(features)
    for tree_model, tree_scope in tree_models:
        expected = "regression" if classes is None else "classification"
        if tree_model.get("functionName") != expected:
            raise UnsupportedModel(f"a {tree_model.get('functionName')} tree here")
        for predicate in tree_model.iter("SimplePredicate"):
            predicates.notes(predicate, tree_scope)
    compiler = _TreeCompiler(predicates, classes)
    width = 1 if classes is None else len(classes)
    parts = []
    for tree_model, tree_scope in tree_models:
        nodes = _Nodes(width)
        nodes.root = compiler.compile(tree_model, tree_scope, nodes)
        parts.append(nodes)
    features.freeze()
    count = features.width + 1  # the tree id comes last
    trees = [_reroot(part, part.root, count) for part in parts]
    merged = _merged_tree(parts, width, count) if len(parts) > 1 else None
    # each tree's scope sees its parents' derived fields too: keep each once, in order
    derived = list(
        {field.key: field for _, s in tree_models for field in s.derived}.values()
    )
    return _TreeEnsemble(
        derived, features, trees, merged, method, classes is None, rescale
    )


# --- regression ------------------------------------------------------------------
class _Regression(_Part):
    """Regression tables over numbers, category indicators and derived fields."""

    def __init__(
        self,
        derived: list[DerivedColumn],
        terms: list[tuple[str, int | None]],
        names: list[str],
        table_targets: list[str],
        coefficients: np.ndarray,
        intercepts: np.ndarray,
        normalization: str,
        class_tables: list[int] | None,
        rescale: tuple[float, float] | None,
    ) -> None:
        super().__init__(derived)
        self._terms = terms  # (column key, the category's code or None for a number)
        self._names = names  # each term as the PMML names it, for explanations
        self._table_targets = table_targets  # each table's targetCategory
        self._coefficients = coefficients  # terms x tables
        self._intercepts = intercepts
        self._normalization = normalization
        # class j's probability is table class_tables[j]'s
        self._class_tables = class_tables
        # table t's class (the inverse of class_tables)
        self._table_classes = np.argsort(class_tables or [])
        self._rescale = rescale

    def _scores(self, columns: Mapping[str, np.ndarray], rows: int) -> np.ndarray:
        """Intercept plus each term in the PMML's order, row by row.

        Summed term by term rather than with a matrix product, whose BLAS
        kernel (and so the last bit of every score) depends on how many
        rows came together: a record scores the same alone or in a batch.
        A missing category contributes nothing (PMML4S); a missing number
        makes the row missing.
        """
        scores = np.tile(self._intercepts, (rows, 1))
        for (key, code), weights in zip(self._terms, self._coefficients, strict=True):
            column = columns[key]
            values = column if code is None else (column == code).astype(np.float64)
            scores += values[:, np.newaxis] * weights
        return scores

    def _evaluate(
        self, columns: dict[str, np.ndarray], rows: int, explain: bool
    ) -> _Result:
        result = self._normalized(self._scores(columns, rows))
        if explain:
            result.explanations = self._explain(columns, rows, result.labels)
        return result

    def _explain(
        self, columns: Mapping[str, np.ndarray], rows: int, labels: np.ndarray | None
    ) -> list[dict[str, Any]]:
        """Each term's coefficient x value in one table, largest ``|c|`` first.

        The table is the first one under ``logit`` (its score is the log-odds
        of its class), the predicted class's under ``softmax``, the only one
        of a plain regression; its terms are summed as :meth:`_scores` sums
        them, so intercept plus contributions is the score the model used.
        """
        if self._class_tables is None or self._normalization == "logit":
            tables = np.zeros(rows, dtype=np.intp)
        else:
            assert labels is not None
            tables = np.asarray(self._class_tables)[labels]
        contributions = np.empty((rows, len(self._terms)))
        for i, ((key, code), weights) in enumerate(
            zip(self._terms, self._coefficients, strict=True)
        ):
            column = columns[key]
            values = column if code is None else (column == code).astype(np.float64)
            contributions[:, i] = values * weights[tables]
        intercepts = self._intercepts[tables]
        answers = []
        for row in range(rows):
            table = int(tables[row])
            order = np.argsort(-np.abs(contributions[row]), kind="stable")
            answer: dict[str, Any] = {
                "kind": "regression",
                "intercept": float(intercepts[row]),
                "contributions": [
                    [self._names[i], float(contributions[row, i])] for i in order
                ],
            }
            if self._table_targets:
                answer["target"] = self._table_targets[table]
            answers.append(answer)
        return answers

    def _normalized(self, scores: np.ndarray) -> _Result:
        """The answer from the tables' scores: a value, or probabilities and labels."""
        no_result = np.isnan(scores).any(axis=1)
        if self._class_tables is None:
            predicted = scores[:, 0]
            if self._rescale is not None:
                predicted = predicted * self._rescale[0] + self._rescale[1]
            return _Result(predicted, None, no_result)
        if self._normalization == "softmax":
            exponentials = np.exp(scores - scores.max(axis=1, keepdims=True))
            probabilities = exponentials / exponentials.sum(axis=1, keepdims=True)
        else:  # logit: every table but the last on its own, the last the remainder
            probabilities = np.empty_like(scores)
            probabilities[:, :-1] = 1.0 / (1.0 + np.exp(-scores[:, :-1]))
            probabilities[:, -1] = 1.0 - probabilities[:, :-1].sum(axis=1)
        by_class: np.ndarray = probabilities[:, self._class_tables]
        # a tie goes to the first table in document order, as in PMML4S
        labels = self._table_classes[probabilities.argmax(axis=1)]
        return _Result(by_class, labels, no_result)


def _regression(
    model: ET.Element, scope: Scope, classes: tuple[str, ...] | None
) -> _Regression:
    normalization = model.get("normalizationMethod", "none")
    if classes is not None and normalization not in {"logit", "softmax"}:
        raise UnsupportedModel(
            f"classification with normalizationMethod={normalization!r}"
        )
    if classes is None and normalization != "none":
        raise UnsupportedModel(f"regression with normalizationMethod={normalization!r}")
    if classes is not None and model.find("Targets") is not None:
        raise UnsupportedModel("a classification RegressionModel with Targets")
    tables = model.findall("RegressionTable")
    if classes is None:
        if len(tables) != 1:
            raise UnsupportedModel("a regression with other than one RegressionTable")
        class_tables = None
    else:
        categories = [table.get("targetCategory", "") for table in tables]
        if sorted(categories) != sorted(classes) or len(categories) < 2:
            raise UnsupportedModel("regression tables do not match the target's values")
        # document order matters: under "logit" the last table's class gets 1 - the others
        class_tables = [categories.index(c) for c in classes]
    terms: list[tuple[str, int | None]] = []
    for table in tables:
        for element in table:
            terms.append(_term(element, scope))
    names = {
        _term(element, scope): _term_name(element)
        for table in tables
        for element in table
    }
    terms = list(dict.fromkeys(terms))
    coefficients = np.zeros((len(terms), len(tables)))
    for j, table in enumerate(tables):
        for element in table:
            coefficients[terms.index(_term(element, scope)), j] = float(
                element.get("coefficient", "0")
            )
    intercepts = np.array([float(table.get("intercept", "0")) for table in tables])
    return _Regression(
        scope.derived,
        terms,
        [names[term] for term in terms],
        [] if classes is None else [t.get("targetCategory", "") for t in tables],
        coefficients,
        intercepts,
        normalization,
        class_tables,
        _targets(model),
    )


def _term_name(element: ET.Element) -> str:
    """A term as the PMML names it: the field, or ``field=value`` for a category."""
    name = element.get("name", "")
    if element.tag == "CategoricalPredictor":
        return f"{name}={element.get('value', '')}"
    return name


def _term(element: ET.Element, scope: Scope) -> tuple[str, int | None]:
    """A regression term: a number's key, or a category's key and code."""
    info = scope.field(element.get("name", ""))
    if element.tag == "NumericPredictor":
        if element.get("exponent", "1") not in {"1", "1.0"} or info.categories:
            raise UnsupportedModel("a NumericPredictor with an exponent or over text")
        return info.key, None
    if element.tag == "CategoricalPredictor" and info.categories is not None:
        return info.key, info.code(element.get("value", ""))
    raise UnsupportedModel(f"regression term <{element.tag}>")


# --- composition -------------------------------------------------------------------
class _Chain(_Part):
    """``modelChain``: each segment's output becomes a field of the next ones."""

    def __init__(self, steps: list[tuple[_Part, str]], last: _Part) -> None:
        super().__init__([])
        self._steps = steps
        self._last = last

    def _evaluate(
        self, columns: dict[str, np.ndarray], rows: int, explain: bool
    ) -> _Result:
        no_result: np.ndarray | None = None
        steps: list[list[dict[str, Any]]] = []
        for part, key in self._steps:
            result = part.evaluate(columns, rows, explain)
            if result.explanations is not None:
                steps.append(result.explanations)
            columns[key] = np.where(result.no_result, np.nan, result.values)
            no_result = (
                result.no_result if no_result is None else no_result | result.no_result
            )
        result = self._last.evaluate(columns, rows, explain)
        if no_result is not None:
            result.no_result = result.no_result | no_result  # returnMissing
        if explain:
            result.explanations = _chained(steps, result.explanations or [])
        return result


def _chained(
    steps: list[list[dict[str, Any]]], last: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """A chain's explanation: its tree steps' (gradient boosting: the boosted trees), counts summed.

    The last step of sklearn2pmml's boosting only rescales the trees' sum
    into probabilities, so what decided the row is in the trees. A chain
    whose steps are not tree ensembles answers the last step's explanation.
    """
    trees = [step for step in steps if step and step[0]["kind"] == "ensemble"]
    if not trees:
        return last
    answers = []
    for row in zip(*trees, strict=True):
        counts: Counter[str] = Counter()
        for explanation in row:
            counts.update(dict(explanation["features"]))
        answers.append(ranked(counts, sum(e["trees"] for e in row)))
    return answers


def _targets(model: ET.Element) -> tuple[float, float] | None:
    """``Targets``' rescaling (factor, constant), the one kind of Target accepted."""
    targets = model.find("Targets")
    if targets is None:
        return None
    found = targets.findall("Target")
    if len(found) != 1 or set(found[0].attrib) - {
        "field",
        "rescaleFactor",
        "rescaleConstant",
    }:
        raise UnsupportedModel("a Target other than a rescaling")
    return (
        float(found[0].get("rescaleFactor", "1")),
        float(found[0].get("rescaleConstant", "0")),
    )


_TREATMENTS = {
    "missingValueTreatment",
    "missingValueReplacement",
    "invalidValueTreatment",
    "outliers",
}


def _check_nested(model: ET.Element) -> None:
    """A nested model must not apply treatments of its own (the encoder applies the top's)."""
    schema = model.find("MiningSchema")
    for field in [] if schema is None else schema.findall("MiningField"):
        treatments = {name: field.get(name) for name in _TREATMENTS & set(field.attrib)}
        if treatments and treatments != {"missingValueTreatment": "asIs"}:
            raise UnsupportedModel("a nested model with its own value treatments")


def _segments(segmentation: ET.Element) -> list[ET.Element]:
    models = []
    for segment in segmentation.findall("Segment"):
        if segment.find("True") is None or segment.get("weight", "1") not in {
            "1",
            "1.0",
        }:
            raise UnsupportedModel("a segment that is not unweighted and unconditional")
        model = next((child for child in segment if child.tag.endswith("Model")), None)
        if model is None:
            raise UnsupportedModel("a segment without a model")
        _check_nested(model)
        models.append(model)
    if not models:
        raise UnsupportedModel("an empty Segmentation")
    return models


def _part(model: ET.Element, scope: Scope, classes: tuple[str, ...] | None) -> _Part:
    """Compile one model element (recursively for a MiningModel)."""
    expected = "regression" if classes is None else "classification"
    if model.get("functionName") != expected:
        raise UnsupportedModel(f"a {model.get('functionName')} {model.tag} here")
    scope = scope.extended(model.find("LocalTransformations"))
    if model.tag == "TreeModel":
        if model.find("Targets") is not None:
            raise UnsupportedModel("a TreeModel with Targets")
        return _tree_ensemble([(model, scope)], "single", classes, None)
    if model.tag == "RegressionModel":
        return _regression(model, scope, classes)
    if model.tag != "MiningModel":
        raise UnsupportedModel(f"model type {model.tag}")
    segmentation = model.find("Segmentation")
    if segmentation is None:
        raise UnsupportedModel("a MiningModel without a Segmentation")
    method = segmentation.get("multipleModelMethod", "")
    models = _segments(segmentation)
    if method == "modelChain":
        if model.find("Targets") is not None:
            raise UnsupportedModel("a model chain with Targets")
        return _chain(models, scope, classes)
    if method not in {"average", "majorityVote", "sum"}:
        raise UnsupportedModel(f"multipleModelMethod={method!r}")
    if (method == "sum") != (classes is None):
        raise UnsupportedModel(f"multipleModelMethod={method!r} for {expected}")
    if any(m.tag != "TreeModel" for m in models):
        raise UnsupportedModel(f"a {method} of models that are not all trees")
    treatment = segmentation.get("missingPredictionTreatment", "continue")
    trees = [(m, scope.extended(m.find("LocalTransformations"))) for m in models]
    ensemble = _tree_ensemble(trees, method, classes, _targets(model))
    if treatment != "returnMissing" and len(trees) > 1 and ensemble.can_return_null():
        raise UnsupportedModel(f"missingPredictionTreatment={treatment!r}")
    if method != "sum" and model.find("Targets") is not None:
        raise UnsupportedModel("a classification MiningModel with Targets")
    return ensemble


def _chain(
    models: list[ET.Element], scope: Scope, classes: tuple[str, ...] | None
) -> _Chain:
    steps: list[tuple[_Part, str]] = []
    for model in models[:-1]:
        output = model.find("Output")
        fields = [] if output is None else output.findall("OutputField")
        if (
            len(fields) != 1
            or fields[0].get("feature", "predictedValue") != "predictedValue"
        ):
            raise UnsupportedModel("a chained segment other than one predicted value")
        name = fields[0].get("name", "")
        key = f"{name}@{id(fields[0])}"
        steps.append((_part(model, scope, None), key))
        scope = scope.with_field(name, FieldInfo(key, None))
    return _Chain(steps, _part(models[-1], scope, classes))


def build_fast_evaluator(document: bytes, schema: PmmlSchema) -> FastEvaluator:
    """The fast evaluator for this PMML, or :class:`UnsupportedModel` saying why not.

    Whatever goes wrong while compiling (a document shape this module does
    not expect) means "not reproduced here": it is reported as
    UnsupportedModel, never as another exception, so the server falls back
    to pypmml.
    """
    try:
        root = parse_document(document)
        model = model_element(root)
        if schema.function_name == "classification":
            if len(schema.target_values) < 2:
                raise UnsupportedModel("a classification without declared classes")
            classes: tuple[str, ...] | None = schema.target_values
        elif schema.function_name == "regression":
            classes = None
        else:
            raise UnsupportedModel(f"functionName={schema.function_name!r}")
        inputs = [input_field_info(field) for field in schema.inputs]
        scope = Scope.of_inputs(inputs).extended(root.find("TransformationDictionary"))
        part = _part(model, scope, classes)
        return FastEvaluator(part, schema, inputs, _describe(model))
    except UnsupportedModel:
        raise
    except Exception as exc:  # see the docstring
        raise UnsupportedModel(
            f"cannot compile it: {type(exc).__name__}: {exc}"
        ) from exc


def _describe(model: ET.Element) -> str:
    segmentation = model.find("Segmentation")
    if model.tag == "TreeModel":
        return "decision tree"
    if model.tag == "RegressionModel":
        return f"regression ({model.get('normalizationMethod', 'none')})"
    assert segmentation is not None
    method = segmentation.get("multipleModelMethod", "")
    return f"{len(segmentation.findall('Segment'))}-segment {method} ensemble"
