"""JSON instances -> the model's feature matrix, following the PMML's own rules.

Everything a request may get wrong about a single row is decided here, from
the PMML's MiningSchema and DataDictionary rather than from code: the field
names (or the reference's positional ``_c0``..``_cN``, i.e. the PMML's inputs
in order), the value's type (a number for a numeric input, a string for a
string one, true/false for a boolean one), its validity (the declared
``Interval`` and integrality of a number, the declared ``Value``s of a
categorical input) and what to do with an invalid one
(``invalidValueTreatment``), the values declared to mean "missing"
(``Value property="missing"``), and what a missing value becomes
(``missingValueTreatment`` + ``missingValueReplacement``). A bad row gets a
reason and the other rows are scored, as in Openscoring's batch mode.

The answer is one float64 matrix. A numeric input holds its number; a
string or boolean input holds a code (the contract of
:class:`models.pmml_schema.InputField`): the value's index in the field's
``categories``, ``len(categories)`` for a present value the document never
mentions, NaN for a missing value.

The whole batch is converted column by column: the common case (every row a
dict of plain numbers, all inputs numeric) costs one list comprehension and
one array conversion; a code column is one dictionary look-up per value;
only values that need an explanation take the slow path.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter
from typing import Any

import numpy as np

from models.pmml_schema import NUMERIC_TYPES, InputField, PmmlSchema
from serving.errors import ModelLoadError

__all__ = ["EncodedBatch", "FeatureEncoder", "positional_name"]


#: Value types that numpy converts to float64 exactly as Python's float() does.
_PLAIN_NUMBER_TYPES = frozenset({int, float, type(None)})

#: A number written as a string ("3", " 2.5 ", "-1e3"); not "nan", "inf" or "1_000".
_NUMERIC_TEXT = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*")

#: invalidValueTreatment -> what the encoder does with an invalid value.
_ON_INVALID = {"returnInvalid": "reject", "asIs": "keep", "asMissing": "missing"}


def positional_name(index: int) -> str:
    """The reference's name for the ``index``-th input (Spark's default column names)."""
    return f"_c{index}"


@dataclass
class EncodedBatch:
    """A request's rows as model inputs.

    ``values`` holds one row per instance in the PMML's input order, with
    missing values replaced where the PMML gives a replacement (NaN where it
    gives none: the model itself decides what that means); rows listed in
    ``errors`` must not be scored.
    """

    values: np.ndarray
    errors: dict[int, str]

    @property
    def rows(self) -> int:
        return int(self.values.shape[0])


def _interval(field: InputField) -> str:
    low = "-inf" if field.valid_min is None else repr(field.valid_min)
    high = "inf" if field.valid_max is None else repr(field.valid_max)
    return f"[{low}, {high}]"


def _parse_value(value: Any) -> float | str:
    """One JSON value -> a float (NaN = missing), or the reason it is not a number."""
    if value is None:
        return math.nan
    kind = type(value)
    if kind is float:
        return value  # type: ignore[no-any-return]
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            return f"{value} is too large"
    if kind is str:
        if not value.strip():
            return math.nan
        if _NUMERIC_TEXT.fullmatch(value):
            number = float(value)
            return number if math.isfinite(number) else f"{value!r} is too large"
        return f"{_shorten(value)!r} is not a number"
    if kind is bool:
        return f"{str(value).lower()} is not a number"
    return f"a JSON {_json_kind(value)} is not a number"


_JSON_KINDS: dict[type, str] = {dict: "object", list: "array"}


def _json_kind(value: Any) -> str:
    return _JSON_KINDS.get(type(value), type(value).__name__)


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _listing(values: tuple[str, ...], limit: int = 8) -> str:
    """Declared values for an error message: the first few, quoted."""
    shown = ", ".join(repr(_shorten(value, 20)) for value in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _number(text: str) -> float | None:
    """A declared value as a number, or None when it is not one (e.g. "NA")."""
    if _NUMERIC_TEXT.fullmatch(text):
        number = float(text)
        return number if math.isfinite(number) else None
    return None


class _BadCell(ValueError):
    """A JSON value that cannot stand for the input at all (its reason is the message)."""


@dataclass(frozen=True)
class _Codes:
    """How the values of one non-numeric input become codes (see the module docstring).

    ``table`` maps each text the document names to its code: NaN for a
    declared missing-value marker, or for a constant that is not a declared
    value when invalid values count as missing; constants invalid under
    ``returnInvalid`` are left out. Any other text gets ``unknown``: the
    "other" code, NaN (``asMissing``), or None, which rejects the row.
    """

    field: InputField
    table: dict[str, float]
    unknown: float | None
    #: a numeric-looking category's number -> its text, so that JSON 1 finds "1"
    numbers: dict[float, str]

    @classmethod
    def of(cls, field: InputField) -> _Codes:
        action = _ON_INVALID[field.invalid_value_treatment]
        declared = frozenset(field.values)
        table: dict[str, float] = {}
        for index, category in enumerate(field.categories):
            if not declared or category in declared or action == "keep":
                table[category] = float(index)
            elif action == "missing":
                table[category] = math.nan
        for marker in field.missing_values:
            table[marker] = math.nan
        other = float(len(field.categories))
        unknown: float | None
        if not declared or action == "keep":
            unknown = other
        else:
            unknown = math.nan if action == "missing" else None
        numbers = {
            number: category
            for category in reversed(field.categories)
            if (number := _number(category)) is not None
        }
        return cls(field, table, unknown, numbers)

    @property
    def boolean(self) -> bool:
        return self.field.data_type == "boolean"

    def text(self, cell: Any) -> str | None:
        """What a non-string JSON value stands for (None: missing); raises :class:`_BadCell`.

        A JSON boolean is "true"/"false"; a JSON number is the category it
        equals as a number (1 and 1.0 find "1"), else its decimal text.
        """
        if cell is None:
            return None
        kind = type(cell)
        if kind is bool:
            return "true" if cell else "false"
        if kind is int or kind is float:
            try:
                match = self.numbers.get(float(cell))
            except OverflowError:
                match = None
            if match is not None:
                return match
            if self.boolean:
                raise _BadCell(f"{cell!r} is not a boolean (true or false)")
            return str(cell) if kind is int else repr(cell)
        expected = "a boolean" if self.boolean else "a string"
        raise _BadCell(f"a JSON {_json_kind(cell)} is not {expected}")

    def code(self, text: str) -> float | str:
        """The code of a present value, or the reason the row is rejected."""
        code = self.table.get(text)
        if code is not None:
            return code
        if not text.strip():
            return math.nan  # blank is missing, as for numbers
        if self.boolean:
            return f"{_shorten(text)!r} is not a boolean (true or false)"
        if self.unknown is None:
            return (
                f"{_shorten(text)!r} is not one of the valid values "
                f"{_listing(self.field.values)}"
            )
        return self.unknown


def _replacement(field: InputField, codes: _Codes | None) -> float:
    """A field's missingValueReplacement as its matrix value (a number, or a code)."""
    text = field.missing_value_replacement
    if text is None:
        return math.nan
    if codes is not None:
        return codes.table.get(text, float(len(field.categories)))
    number = _number(text.strip())
    if number is None:
        raise ModelLoadError(
            f"input {field.name!r}: missingValueReplacement={text!r} is not a number"
        )
    return number


class FeatureEncoder:
    """Turns a batch of JSON instances into a validated float matrix for one PMML."""

    def __init__(self, schema: PmmlSchema) -> None:
        fields = schema.inputs
        if not fields:
            raise ModelLoadError("the PMML declares no active input field")
        for field in fields:
            if field.data_type not in NUMERIC_TYPES | {"string", "boolean"}:
                raise ModelLoadError(
                    f"input {field.name!r}: dataType={field.data_type!r} is not supported "
                    "(numbers, strings and booleans are)"
                )
            if field.invalid_value_treatment not in _ON_INVALID:
                raise ModelLoadError(
                    f"input {field.name!r}: invalidValueTreatment="
                    f"{field.invalid_value_treatment!r} is not supported"
                )
        self.fields = fields
        self.names: tuple[str, ...] = tuple(field.name for field in fields)
        self.positional_names: tuple[str, ...] = tuple(
            positional_name(i) for i in range(len(fields))
        )
        self._column_of: dict[str, int] = {
            name: i for i, name in enumerate(self.positional_names)
        }
        # A PMML whose inputs are themselves called _c<i> keeps its own meaning.
        self._column_of.update({name: i for i, name in enumerate(self.names)})
        self._named = frozenset(self.names)
        self._positional = frozenset(self.positional_names)
        #: per input, how its values become codes; None for a numeric input
        self._codes = [None if f.numeric else _Codes.of(f) for f in fields]
        self._row_getters = (
            (itemgetter(*self.names), itemgetter(*self.positional_names))
            if len(fields) > 1 and all(f.numeric for f in fields)
            else ()
        )

        self._low = np.array(
            [
                -np.inf if f.valid_min is None or not f.numeric else f.valid_min
                for f in fields
            ]
        )
        self._high = np.array(
            [
                np.inf if f.valid_max is None or not f.numeric else f.valid_max
                for f in fields
            ]
        )
        self._integer = np.array([f.data_type == "integer" for f in fields])
        self._on_invalid = [_ON_INVALID[f.invalid_value_treatment] for f in fields]
        # numeric inputs with declared valid values, or values that mean "missing"
        self._declared = _numeric_values(fields, lambda f: f.values)
        self._markers = _numeric_values(fields, lambda f: f.missing_values)
        self._replacement = np.array(
            [
                _replacement(f, codes)
                for f, codes in zip(fields, self._codes, strict=True)
            ]
        )
        self._missing_rejected = np.array(
            [f.missing_value_treatment == "returnInvalid" for f in fields]
        )
        self._has_replacement = bool(np.isfinite(self._replacement).any())

    # --- the batch -----------------------------------------------------------
    def encode(self, instances: list[Any]) -> EncodedBatch:
        """Encode ``instances`` (a JSON array of objects); never raises for bad rows."""
        errors: dict[int, str] = {}
        values = self._complete_rows(instances)
        if values is None:
            rows, keys = self._uniform_rows(instances, errors)
            values = np.empty((len(rows), len(self.names)))
            for column, key in enumerate(keys):
                cells = [row.get(key) for row in rows]
                self._fill_column(values, column, cells, errors)
        self._apply_validity(values, errors)
        return self._apply_missing(values, errors)

    def _complete_rows(self, instances: list[Any]) -> np.ndarray | None:
        """The common case in one conversion, or None to take the general path.

        It applies when every row is an object with exactly the model's
        inputs, all by name or all by position, each a number or null.
        """
        width = len(self.names)
        if (
            not instances
            or not self._row_getters
            or set(map(type, instances)) != {dict}
            or sum(map(len, instances)) != width * len(instances)
        ):
            return None
        for getter in self._row_getters:
            try:
                cells = list(chain.from_iterable(map(getter, instances)))
            except KeyError:
                continue
            if not _PLAIN_NUMBER_TYPES.issuperset(map(type, cells)):
                return None
            try:
                return np.array(cells, dtype=np.float64).reshape(len(instances), width)
            except OverflowError:
                return None
        return None

    def _uniform_rows(
        self, instances: list[Any], errors: dict[int, str]
    ) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
        """Rows keyed one way (names or positions) and the keys of each column."""
        named, positional = self._named, self._positional
        if all(type(row) is dict and named.issuperset(row) for row in instances):
            return instances, self.names
        if all(type(row) is dict and positional.issuperset(row) for row in instances):
            return instances, self.positional_names
        return [
            self._by_name(i, row, errors) for i, row in enumerate(instances)
        ], self.names

    def _by_name(self, index: int, row: Any, errors: dict[int, str]) -> dict[str, Any]:
        """One row with mixed or unknown keys, re-keyed by input name (or rejected)."""
        if type(row) is not dict:
            errors[index] = (
                f"an instance must be a JSON object, not a JSON {_json_kind(row)}"
            )
            return {}
        keyed: dict[str, Any] = {}
        for key, value in row.items():
            column = self._column_of.get(key)
            if column is None:
                errors[index] = (
                    f"unknown field {_shorten(key)!r}; the model's inputs are "
                    f"{', '.join(self.names)} (or {self.positional_names[0]}.."
                    f"{self.positional_names[-1]} in that order)"
                )
                return {}
            name = self.names[column]
            if name in keyed:
                errors[index] = (
                    f"field {name!r} is given twice (by name and by position)"
                )
                return {}
            keyed[name] = value
        return keyed

    def _fill_column(
        self, values: np.ndarray, column: int, cells: list[Any], errors: dict[int, str]
    ) -> None:
        codes = self._codes[column]
        if codes is not None:
            self._fill_codes(values, column, cells, codes, errors)
            return
        if _PLAIN_NUMBER_TYPES.issuperset(map(type, cells)):
            try:
                values[:, column] = cells
                return
            except OverflowError:
                pass  # an integer beyond float range: explained per value below
        name = self.names[column]
        for row, cell in enumerate(cells):
            parsed = _parse_value(cell)
            if type(parsed) is str:
                values[row, column] = np.nan
                errors.setdefault(row, f"field {name!r}: {parsed}")
            else:
                values[row, column] = parsed

    def _fill_codes(
        self,
        values: np.ndarray,
        column: int,
        cells: list[Any],
        codes: _Codes,
        errors: dict[int, str],
    ) -> None:
        """A string or boolean input's column: each value's code, or the row's error."""
        table = codes.table
        name = self.names[column]
        target = values[:, column]
        for row, cell in enumerate(cells):
            text: str | None
            if type(cell) is str:
                code = table.get(cell)
                if code is not None:  # the common case: a value the document names
                    target[row] = code
                    continue
                text = cell
            else:
                try:
                    text = codes.text(cell)
                except _BadCell as exc:
                    target[row] = np.nan
                    errors.setdefault(row, f"field {name!r}: {exc}")
                    continue
            found = math.nan if text is None else codes.code(text)
            if type(found) is str:
                target[row] = np.nan
                errors.setdefault(row, f"field {name!r}: {found}")
            else:
                target[row] = found

    def _apply_validity(self, values: np.ndarray, errors: dict[int, str]) -> None:
        """Apply each numeric input's valid interval, integrality and declared values.

        Values declared as "missing" become NaN first; an invalid value is
        then treated as its ``invalidValueTreatment`` says. (Code columns
        were validated while they were filled.)
        """
        for at, markers in self._markers:
            values[np.isin(values[:, at], markers), at] = np.nan
        with np.errstate(invalid="ignore"):
            invalid = (values < self._low) | (values > self._high)
            if self._integer.any():
                invalid |= (
                    self._integer & (values != np.floor(values)) & ~np.isnan(values)
                )
        for at, declared in self._declared:
            cells = values[:, at]
            invalid[:, at] |= ~np.isin(cells, declared) & ~np.isnan(cells)
        if not invalid.any():
            return
        for column in np.flatnonzero(invalid.any(axis=0)):
            rows = np.flatnonzero(invalid[:, column])
            action = self._on_invalid[column]
            if action == "missing":
                values[rows, column] = np.nan
            elif action == "reject":
                field = self.fields[column]
                if field.values:
                    expected = f"one of the valid values {_listing(field.values)}"
                elif self._integer[column]:
                    expected = f"an integer in {_interval(field)}"
                else:
                    expected = f"in the valid range {_interval(field)}"
                for row in rows.tolist():
                    errors.setdefault(
                        row,
                        f"field {field.name!r}: {float(values[row, column])!r} is not "
                        + expected,
                    )

    def _apply_missing(
        self, values: np.ndarray, errors: dict[int, str]
    ) -> EncodedBatch:
        missing = np.isnan(values)
        if not missing.any():
            return EncodedBatch(values, errors)
        rejected = missing & self._missing_rejected
        for row, column in zip(*np.nonzero(rejected), strict=True):
            errors.setdefault(int(row), f"field {self.names[column]!r} is missing")
        if self._has_replacement:
            values = np.where(missing, self._replacement, values)
        return EncodedBatch(values, errors)


def _numeric_values(
    fields: tuple[InputField, ...], declared: Callable[[InputField], tuple[str, ...]]
) -> list[tuple[int, np.ndarray]]:
    """(column, the numbers it declares) for each numeric input declaring some."""
    found: list[tuple[int, np.ndarray]] = []
    for column, field in enumerate(fields):
        numbers = [n for text in declared(field) if (n := _number(text)) is not None]
        if field.numeric and numbers:
            found.append((column, np.array(numbers)))
    return found
