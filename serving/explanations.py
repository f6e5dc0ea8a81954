"""Why a model answered as it did: the wording and JSON shape of an explanation.

An explanation is one compact JSON text per row (``EXPLANATION_KEY`` in an
answer, the ``explanation`` column of a stored prediction):

* ``{"kind": "tree", "path": [...], "leaf": {...}}``: the conditions a row
  met from the root to its leaf, in the PMML's own field names, operators
  and thresholds. A condition that was false reads as its negation (the
  row went on to the next child); a condition that could not be decided
  because an input is missing says so and what the tree did then. The leaf
  is what the PMML writes of it: ``id``, ``score``, ``record_count`` (the
  Node's ``recordCount``, null when absent) and ``score_distribution``
  (each class's ``recordCount`` as written).
* ``{"kind": "ensemble", "trees": N, "features": [[field, trees], ...]}``:
  per field, how many of the N trees *decided* the row with it, i.e. had
  a condition on that field on the row's root-to-leaf path; most first,
  ties by name.
* ``{"kind": "regression", "intercept": b, "contributions": [[term, c], ...]}``:
  each term's coefficient x its value after the model's transformations,
  largest ``|c|`` first, so ``b + sum(c)`` is the score the model computed
  (the log-odds of a logistic regression's first class table).
* ``{"kind": "unavailable", "reason": "..."}``: a model type without
  explanations (pypmml-evaluated models).

The fast evaluator builds them from the structures it scores with
(:mod:`serving.fast_evaluator`), so they describe what was evaluated.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from typing import Any

import orjson

__all__ = ["Condition", "condition", "ranked", "text", "unavailable"]

_SYMBOLS = {
    "lessOrEqual": "<=",
    "lessThan": "<",
    "greaterThan": ">",
    "greaterOrEqual": ">=",
    "equal": "==",
    "notEqual": "!=",
}
_NEGATED = {
    "lessOrEqual": "greaterThan",
    "greaterThan": "lessOrEqual",
    "lessThan": "greaterOrEqual",
    "greaterOrEqual": "lessThan",
    "equal": "notEqual",
    "notEqual": "equal",
    "isMissing": "isNotMissing",
    "isNotMissing": "isMissing",
    "isIn": "isNotIn",
    "isNotIn": "isIn",
}


@dataclass(frozen=True)
class Condition:
    """How one compiled test reads on a path: when true, when false, when unknown."""

    true: str
    false: str
    fields: tuple[str, ...]

    def unknown(self, then: str) -> str:
        missing = ", ".join(self.fields)
        return f"{self.true} is unknown ({missing} missing) → {then}"


def _simple(predicate: ET.Element, operator: str) -> str:
    field = predicate.get("field", "")
    if operator in {"isMissing", "isNotMissing"}:
        return f"{field} is {'not ' if operator == 'isNotMissing' else ''}missing"
    if predicate.tag == "SimpleSetPredicate":
        array = predicate.find("Array")
        items = "" if array is None else (array.text or "").strip()
        return f"{field} {'in' if operator == 'isIn' else 'not in'} [{items}]"
    return f"{field} {_SYMBOLS.get(operator, operator)} {predicate.get('value', '')}"


def _fields(predicate: ET.Element) -> tuple[str, ...]:
    found = [p.get("field", "") for p in predicate.iter() if p.get("field")]
    return tuple(dict.fromkeys(found))


def condition(predicate: ET.Element) -> Condition:
    """The wording of a Node's predicate, and of its negation, in the PMML's terms."""
    if predicate.tag == "CompoundPredicate":
        operator = predicate.get("booleanOperator", "")
        parts = [
            condition(child).true
            for child in predicate
            if child.tag.endswith("Predicate") or child.tag in {"True", "False"}
        ]
        true = "(" + f" {operator} ".join(parts) + ")"
        return Condition(true, f"not {true}", _fields(predicate))
    operator = predicate.get("operator", predicate.get("booleanOperator", ""))
    if predicate.tag in {"True", "False"}:
        return Condition(predicate.tag.lower(), "", ())
    return Condition(
        _simple(predicate, operator),
        _simple(predicate, _NEGATED.get(operator, operator)),
        _fields(predicate),
    )


def ranked(counts: Counter[str], trees: int) -> dict[str, Any]:
    """An ensemble's explanation from its per-field tree counts: most first, ties by name."""
    order = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return {"kind": "ensemble", "trees": trees, "features": [list(i) for i in order]}


def unavailable(reason: str) -> dict[str, Any]:
    """The statement a model without explanations answers, per row."""
    return {"kind": "unavailable", "reason": reason}


def text(explanation: dict[str, Any]) -> str:
    """The compact JSON text of an explanation."""
    return orjson.dumps(explanation, option=orjson.OPT_SERIALIZE_NUMPY).decode()
