"""PMML fields as batch columns: inputs, derived fields (TransformationDictionary,
LocalTransformations) and what a scope of the document can see.

A batch travels as one float64 column per field. A numeric field holds its
numbers (NaN = missing). A categorical (string) field holds codes: the index
of the value among the field's declared values, NaN when missing, and the
count of declared values for any other value (the encoder's "other").
pypmml (PMML4S) gives such an undeclared value three meanings, each
reproduced by a per-code table with an "other" row and a "missing" row
(:func:`lookup_index`) and pinned by the parity tests: to a predicate it is
missing (unknown, and ``isMissing``), to ``NormDiscrete`` and a
``CategoricalPredictor`` it is a value equal to none (0), to ``MapValues``
it is a value the table does not list (``defaultValue``).

Derived fields are compiled into vectorised functions, computed in float64
exactly as PMML4S computes them, one IEEE operation at a time (in double
even for a ``dataType="float"`` field, as it does):
the arithmetic ``Apply`` sklearn2pmml writes for scalers, ``NormDiscrete``
(one-hot indicators) and ``MapValues`` (ordinal and label encoders) over a
categorical field. Anything else raises
:class:`~serving.errors.UnsupportedModel`, and the model is served by pypmml.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from models.pmml_schema import NUMERIC_TYPES, InputField
from serving.errors import UnsupportedModel

__all__ = [
    "Column",
    "DerivedColumn",
    "FieldInfo",
    "Scope",
    "input_field_info",
    "lookup_index",
]


#: A column of a batch, computed from the columns already known (by key).
Column = Callable[[Mapping[str, np.ndarray]], np.ndarray]


@dataclass(frozen=True)
class FieldInfo:
    """What a name in the document stands for in a batch."""

    #: where the column lives in the batch (names can be redefined per scope)
    key: str
    #: None for numbers; else the values the codes index
    categories: tuple[str, ...] | None
    #: whether the column can hold NaN (a missing value, or an undeclared category)
    maybe_missing: bool = True

    def code(self, value: str) -> int:
        """The code of ``value``; a constant the field does not declare is refused.

        PMML4S encodes such a constant as a missing number and lets it match
        nothing; rather than rely on that corner, such documents go to pypmml.
        """
        assert self.categories is not None
        if value not in self.categories:
            raise UnsupportedModel(
                f"{self.key!r} is compared with {value!r}, which it does not declare"
            )
        return self.categories.index(value)


@dataclass(frozen=True)
class DerivedColumn:
    """A derived field to compute (once per batch) before the part that sees it."""

    key: str
    column: Column


def input_field_info(field: InputField) -> FieldInfo:
    """How an input travels: a number, or a code among its declared values."""
    can_be_missing = field.missing_value_replacement is None
    if field.numeric:
        return FieldInfo(field.name, None, can_be_missing)
    if not field.values:
        raise UnsupportedModel(
            f"categorical input {field.name!r} declares no values (PMML4S's "
            "encoding of its values is then not known here)"
        )
    # an undeclared value is missing to a predicate (see the module docstring)
    return FieldInfo(field.name, field.values, True)


def lookup_index(codes: np.ndarray, count: int) -> np.ndarray:
    """Row index into a per-code table: ``count`` declared codes, "other", then missing."""
    return np.where(np.isnan(codes), count + 1, np.minimum(codes, count)).astype(
        np.intp
    )


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


def _number(text: str | None, what: str) -> float:
    try:
        return float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise UnsupportedModel(f"{what} {text!r} is not a number") from None


def _local_name(qualified: str) -> str:
    """``data:input`` -> ``input``: the document's tags lost their namespaces on parsing."""
    return qualified.rpartition(":")[2]


class Scope:
    """The fields one level of the document sees: its parent's, then its own derived ones."""

    def __init__(
        self, fields: dict[str, FieldInfo], derived: list[DerivedColumn]
    ) -> None:
        self._fields = fields
        #: every derived field this scope sees, in dependency order
        self.derived = derived

    @classmethod
    def of_inputs(cls, inputs: list[FieldInfo]) -> Scope:
        return cls({info.key: info for info in inputs}, [])

    def field(self, name: str) -> FieldInfo:
        info = self._fields.get(name)
        if info is None:
            raise UnsupportedModel(f"field {name!r} is neither an input nor derived")
        return info

    def with_field(self, name: str, info: FieldInfo) -> Scope:
        """This scope plus one more field (a chained model's output)."""
        return Scope({**self._fields, name: info}, list(self.derived))

    def extended(self, container: ET.Element | None) -> Scope:
        """A child scope adding ``container``'s DerivedFields (none: the same fields).

        :attr:`derived` lists the parent's derived fields, then these: PMML
        requires a field to be defined after the fields it uses, which is
        the order they are computed in. Each definition gets its own key, so
        a name redefined in a nested model does not clobber its parent's.
        """
        scope = Scope(dict(self._fields), list(self.derived))
        if container is None:
            return scope
        for element in container.findall("DerivedField"):
            name = element.get("name", "")
            expressions = [child for child in element if child.tag != "Extension"]
            if len(expressions) != 1:
                raise UnsupportedModel(f"DerivedField {name!r} has no expression")
            key = f"{name}@{id(element)}"
            data_type = element.get("dataType", "double")
            column, info = scope._compile(expressions[0], key, data_type)
            if info.categories is None and data_type not in NUMERIC_TYPES:
                raise UnsupportedModel(f"DerivedField {name!r} turns numbers into text")
            if info.categories is not None and data_type in NUMERIC_TYPES:
                raise UnsupportedModel(
                    f"DerivedField {name!r} of categories as numbers"
                )
            scope._fields[name] = info
            scope.derived.append(DerivedColumn(key, column))
        return scope

    # --- expressions ---------------------------------------------------------------
    def _compile(
        self, expression: ET.Element, key: str, data_type: str
    ) -> tuple[Column, FieldInfo]:
        """The column of ``expression`` and what it holds (stored under ``key``)."""
        tag = expression.tag
        if tag == "FieldRef":
            source = self.field(expression.get("field", ""))
            return _field_ref(source, expression.get("mapMissingTo")), FieldInfo(
                key,
                source.categories,
                source.maybe_missing and expression.get("mapMissingTo") is None,
            )
        if tag in {"Constant", "Apply"}:
            return self._arithmetic(expression), FieldInfo(key, None)
        if tag == "NormDiscrete":
            return self._norm_discrete(expression), FieldInfo(key, None)
        if tag == "MapValues":
            return self._map_values(expression, key, data_type)
        raise UnsupportedModel(f"derived field expression <{tag}>")

    def _arithmetic(self, expression: ET.Element) -> Column:
        tag = expression.tag
        if tag == "FieldRef":
            info = self.field(expression.get("field", ""))
            if info.categories is not None or expression.get("mapMissingTo"):
                raise UnsupportedModel(f"arithmetic over {info.key!r}")
            return _field_ref(info, None)
        if tag == "Constant":
            if expression.get("missing") == "true" or expression.text is None:
                raise UnsupportedModel("a missing Constant is not supported")
            constant = np.array(_number(expression.text, "Constant"))
            return lambda columns: constant  # a 0-d array broadcasts like a column
        if tag != "Apply":
            raise UnsupportedModel(f"arithmetic over <{tag}>")
        function = expression.get("function", "")
        if expression.get("mapMissingTo") is not None or expression.get("defaultValue"):
            raise UnsupportedModel(f"Apply {function!r} with missing/default values")
        arguments = [
            self._arithmetic(child) for child in expression if child.tag != "Extension"
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

    def _norm_discrete(self, expression: ET.Element) -> Column:
        """1.0 where the field equals the value, 0.0 elsewhere, mapMissingTo (or NaN) if missing."""
        info = self.field(expression.get("field", ""))
        value = expression.get("value", "")
        missing = np.nan
        if expression.get("mapMissingTo") is not None:
            missing = _number(expression.get("mapMissingTo"), "mapMissingTo")
        if info.categories is None:
            number = _number(value, "NormDiscrete value")
            key = info.key

            def numeric(columns: Mapping[str, np.ndarray]) -> np.ndarray:
                x = columns[key]
                return np.where(np.isnan(x), missing, (x == number).astype(np.float64))

            return numeric
        table = np.zeros(len(info.categories) + 2)  # "other" equals no value: 0
        table[info.code(value)] = 1.0
        table[-1] = missing
        return _lookup(info, table)

    def _map_values(
        self, expression: ET.Element, key: str, data_type: str
    ) -> tuple[Column, FieldInfo]:
        """A one-column MapValues over a categorical field, as a per-code table."""
        pairs = expression.findall("FieldColumnPair")
        table_element = expression.find("InlineTable")
        if len(pairs) != 1 or table_element is None:
            raise UnsupportedModel("MapValues other than one column of an InlineTable")
        info = self.field(pairs[0].get("field", ""))
        if info.categories is None:
            raise UnsupportedModel("MapValues over numbers")
        column = _local_name(pairs[0].get("column", ""))
        output = _local_name(expression.get("outputColumn", ""))
        outputs: dict[int, str] = {}
        for row in table_element.findall("row"):
            cells = {child.tag: (child.text or "") for child in row}
            if column not in cells or output not in cells:
                raise UnsupportedModel("a MapValues row without its columns")
            outputs.setdefault(info.code(cells[column]), cells[output])
        count = len(info.categories)
        default, missing = (
            expression.get("defaultValue"),
            expression.get("mapMissingTo"),
        )
        texts = [outputs.get(code, default) for code in range(count)]
        texts += [default, missing]  # "other" is a value the table does not list
        if expression.get("dataType", data_type) in NUMERIC_TYPES:
            table = np.array(
                [np.nan if t is None else _number(t, "MapValues output") for t in texts]
            )
            return _lookup(info, table), FieldInfo(
                key, None, bool(np.isnan(table).any())
            )
        categories = tuple(dict.fromkeys(t for t in texts if t is not None))
        codes = np.array(
            [np.nan if t is None else categories.index(t) for t in texts], dtype=float
        )
        return _lookup(info, codes), FieldInfo(
            key, categories, bool(np.isnan(codes).any())
        )


def _field_ref(info: FieldInfo, map_missing_to: str | None) -> Column:
    key = info.key
    if map_missing_to is None:
        return lambda columns: columns[key]
    replacement = (
        _number(map_missing_to, "mapMissingTo")
        if info.categories is None
        else float(info.code(map_missing_to))
    )
    return lambda columns: np.where(np.isnan(columns[key]), replacement, columns[key])


def _lookup(info: FieldInfo, table: np.ndarray) -> Column:
    """``table[code]`` per row (see :func:`lookup_index` for its last two rows)."""
    key, count = info.key, len(info.categories or ())
    return lambda columns: table[lookup_index(columns[key], count)]
