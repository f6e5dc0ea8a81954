"""PMML derived fields (TransformationDictionary, LocalTransformations) as numpy.

sklearn2pmml writes a scaler as derived fields, e.g. ``(x - mean) / std``
for ``StandardScaler``; sklearn-pmml-model does not read those. The subset
JPMML-SkLearn emits for numeric pipelines (arithmetic ``Apply`` over
``FieldRef`` and ``Constant``, plus a few unary functions) is compiled here
into vectorised functions, computed in float64 exactly as a Java evaluator
computes them, one IEEE operation at a time. Anything else raises
:class:`~serving.errors.UnsupportedModel`, and the model is served by pypmml.
"""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping

import numpy as np

from serving.errors import UnsupportedModel

__all__ = ["Column", "compile_derived_fields"]

logger = logging.getLogger(__name__)

#: A column of a batch, computed from the columns already known.
Column = Callable[[Mapping[str, np.ndarray]], np.ndarray]

_BINARY: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
}

_UNARY: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "exp": np.exp,
    "ln": np.log,
    "sqrt": np.sqrt,
    "abs": np.abs,
}


def _compile(expression: ET.Element, known: set[str]) -> Column:
    tag = expression.tag
    if tag == "FieldRef":
        name = expression.get("field", "")
        if name not in known or expression.get("mapMissingTo") is not None:
            raise UnsupportedModel(
                f"FieldRef to {name!r} cannot be computed in advance"
            )
        return lambda columns: columns[name]
    if tag == "Constant":
        if expression.get("missing") == "true" or expression.text is None:
            raise UnsupportedModel("a missing Constant is not supported")
        constant = np.array(
            float(expression.text)
        )  # a 0-d array broadcasts like a column
        return lambda columns: constant
    if tag == "Apply":
        function = expression.get("function", "")
        if expression.get("mapMissingTo") is not None or expression.get("defaultValue"):
            raise UnsupportedModel(f"Apply {function!r} with missing/default values")
        arguments = [
            _compile(child, known) for child in expression if child.tag != "Extension"
        ]
        if function in _BINARY and len(arguments) == 2:
            operation, left, right = _BINARY[function], arguments[0], arguments[1]
            return lambda columns: operation(left(columns), right(columns))
        if function in _UNARY and len(arguments) == 1:
            unary, argument = _UNARY[function], arguments[0]
            return lambda columns: unary(argument(columns))
        raise UnsupportedModel(
            f"Apply function {function!r} with {len(arguments)} arguments"
        )
    raise UnsupportedModel(f"derived field expression <{tag}>")


def compile_derived_fields(
    containers: list[ET.Element], inputs: list[str]
) -> list[tuple[str, Column]]:
    """``(name, column)`` for every DerivedField in ``containers``, in dependency order.

    PMML requires a derived field to be defined after the fields it uses
    (within a container, and global before local), which is the order here.
    """
    known = set(inputs)
    compiled: list[tuple[str, Column]] = []
    for container in containers:
        for field in container.findall("DerivedField"):
            expressions = [child for child in field if child.tag != "Extension"]
            if len(expressions) != 1:
                raise UnsupportedModel(
                    f"DerivedField {field.get('name')!r} has no expression"
                )
            name = field.get("name", "")
            compiled.append((name, _compile(expressions[0], known)))
            known.add(name)
    return compiled
