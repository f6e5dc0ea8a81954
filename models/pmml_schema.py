"""What a PMML document promises its callers: inputs in order and outputs.

The stream's record schema and the model server's request validation come
from the PMML, not from code, so a model with other inputs needs no code
change. This module reads that promise: each input's name, type, valid
interval and missing/invalid value treatment (DataDictionary + the model's
MiningSchema, in MiningSchema order), the target and the output fields.
"""

from __future__ import annotations

import io
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from models.errors import ExportError

__all__ = [
    "MODEL_ELEMENTS",
    "NUMERIC_TYPES",
    "InputField",
    "OutputField",
    "PmmlSchema",
    "array_items",
    "model_element",
    "parse_document",
    "qualifier",
    "read_schema",
]


#: Top-level elements that hold a model (PMML 4.x); the first one present is read.
MODEL_ELEMENTS = (
    "TreeModel",
    "MiningModel",
    "RegressionModel",
    "GeneralRegressionModel",
    "NeuralNetwork",
    "SupportVectorMachineModel",
    "NaiveBayesModel",
    "Scorecard",
    "RuleSetModel",
    "NearestNeighborModel",
)


#: PMML dataTypes whose values are numbers (a categorical one may still be numeric).
NUMERIC_TYPES = frozenset({"double", "float", "integer"})


@dataclass(frozen=True)
class InputField:
    """One active input of the model.

    A non-numeric input (dataType string or boolean) travels through the
    model server as a number: its index in :attr:`categories`, or
    ``len(categories)`` for a value the document never mentions (every such
    value means the same to the model: no predicate, encoder or table names
    it). ``categories`` therefore starts with the declared valid
    :attr:`values` and goes on with every other constant the document
    compares the field with, so an ``asIs`` value outside the declared ones
    that a predicate does test keeps its own code.
    """

    name: str
    data_type: str  #: PMML dataType: "double", "float", "integer", "string", ...
    optype: str  #: "continuous", "categorical" or "ordinal"
    valid_min: float | None  #: lower bound of the declared Interval, None if none
    valid_max: float | None  #: upper bound of the declared Interval, None if none
    missing_value_treatment: str | None  #: PMML spelling, e.g. "asMedian"; None = as is
    missing_value_replacement: str | None  #: the value a missing input becomes
    invalid_value_treatment: (
        str  #: "returnInvalid" (PMML's default), "asIs", "asMissing", ...
    )
    #: the DataField's declared valid ``Value``s, in document order (empty: any value)
    values: tuple[str, ...] = ()
    #: values the DataField declares as meaning "missing" (``property="missing"``)
    missing_values: tuple[str, ...] = ()
    #: :attr:`values`, then every other constant the document compares the field with
    categories: tuple[str, ...] = ()

    @property
    def numeric(self) -> bool:
        """Whether the input's values are numbers (continuous, or a numeric category)."""
        return self.data_type in NUMERIC_TYPES


@dataclass(frozen=True)
class OutputField:
    """One field of the model's answer, e.g. ``probability(1)`` or the predicted label."""

    name: str
    feature: str  #: PMML feature: "probability", "predictedValue", ...
    value: str | None  #: the class a probability is of; None for other features
    data_type: str | None


@dataclass(frozen=True)
class PmmlSchema:
    """Inputs (in MiningSchema order), target and outputs of one PMML model."""

    version: str
    model_element: str
    function_name: str
    inputs: tuple[InputField, ...]
    target: str | None
    target_values: tuple[str, ...]
    outputs: tuple[OutputField, ...]

    @property
    def input_names(self) -> list[str]:
        return [field.name for field in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [field.name for field in self.outputs]

    def probability_fields(self) -> dict[str, str]:
        """Class value -> name of the output field holding its probability."""
        return {
            field.value: field.name
            for field in self.outputs
            if field.feature == "probability" and field.value is not None
        }

    def label_field(self) -> str | None:
        """Name of the output field holding the predicted label, if the PMML has one."""
        for field in self.outputs:
            if field.feature == "predictedValue":
                return field.name
        return None

    def other_outputs(self) -> tuple[OutputField, ...]:
        """Output fields besides the predicted value and the class probabilities.

        Entity ids, reason codes, ranks, transformed values...: a server
        answers them under their own names, as the evaluator gives them.
        """
        label = self.label_field()
        return tuple(
            field
            for field in self.outputs
            if field.name != label
            and not (field.feature == "probability" and field.value is not None)
        )


def qualifier(root: ET.Element) -> Callable[[str], str]:
    """Element name -> the tag ElementTree gives it in ``root``'s document.

    PMML documents come with a version's namespace
    (``http://www.dmg.org/PMML-4_4``), or none; readers and writers of the
    document name elements through this, whichever it is.
    """
    namespace = root.tag[1:].partition("}")[0] if root.tag.startswith("{") else ""
    if not namespace:
        return lambda name: name
    return lambda name: f"{{{namespace}}}{name}"


def parse_document(document: bytes) -> ET.Element:
    """The PMML document's root element, every tag without its namespace.

    Readers of a document care about element names only; the namespace
    (``http://www.dmg.org/PMML-4_4``, another version's, or none) is
    dropped once here, so they write plain ``find("TreeModel")``. A writer
    of the document keeps it instead (:func:`qualifier`).
    """
    try:
        root: ET.Element | None = None
        for _, element in ET.iterparse(io.BytesIO(document), events=("start",)):
            if root is None:
                root = element
            element.tag = element.tag.rpartition("}")[2]
    except ET.ParseError as exc:
        raise ExportError(f"the PMML is not well-formed XML: {exc}") from exc
    if root is None or root.tag != "PMML":
        raise ExportError(
            f"not a PMML document (root element {'none' if root is None else root.tag})"
        )
    return root


def model_element(root: ET.Element) -> ET.Element:
    """The document's (first) top-level model element."""
    for element in root:
        if element.tag in MODEL_ELEMENTS:
            return element
    raise ExportError("the PMML holds no model element")


def _float_or_none(text: str | None) -> float | None:
    return None if text is None else float(text)


def _declared_values(data_field: ET.Element) -> dict[str, list[str]]:
    """The DataField's ``Value`` elements by property (valid, invalid, missing)."""
    declared: dict[str, list[str]] = {}
    for item in data_field.findall("Value"):
        declared.setdefault(item.get("property", "valid"), []).append(
            item.get("value", "")
        )
    return declared


def array_items(array: ET.Element) -> list[str]:
    """The items of a PMML ``Array`` (space-separated, double quotes around items with spaces)."""
    text = array.text or ""
    return [
        quoted.replace('\\"', '"') if quoted else bare
        for quoted, bare in re.findall(r'"((?:[^"\\]|\\.)*)"|(\S+)', text)
    ]


def _compared_constants(root: ET.Element) -> dict[str, list[str]]:
    """Field name -> the constants the document compares it with, first seen first.

    Read from every place PMML tests a field against a value: predicates
    (``SimplePredicate``, ``SimpleSetPredicate``), ``CategoricalPredictor``,
    ``NormDiscrete`` and ``MapValues`` tables, anywhere in the document
    (models, ``LocalTransformations``, ``TransformationDictionary``).
    """
    root_constants: dict[str, list[str]] = {}

    def note(field: str | None, value: str | None) -> None:
        if field and value is not None:
            seen = root_constants.setdefault(field, [])
            if value not in seen:
                seen.append(value)

    for element in root.iter():
        tag = element.tag.rpartition("}")[2]
        if tag in ("SimplePredicate", "NormDiscrete"):
            note(element.get("field"), element.get("value"))
        elif tag == "CategoricalPredictor":
            note(element.get("name"), element.get("value"))
        elif tag == "SimpleSetPredicate":
            array = element.find("Array")
            for item in [] if array is None else array_items(array):
                note(element.get("field"), item)
        elif tag == "MapValues":
            table = element.find("InlineTable")
            for pair in element.findall("FieldColumnPair"):
                column = pair.get("column", "").rpartition(":")[2]
                for row in [] if table is None else table.findall("row"):
                    cell = row.find(column)
                    note(pair.get("field"), None if cell is None else cell.text)
    return root_constants


def _categories(
    valid: tuple[str, ...], compared: Sequence[str], data_type: str | None
) -> tuple[str, ...]:
    """A non-numeric input's codes: declared values, then the other compared constants."""
    if (data_type or "double") in NUMERIC_TYPES:
        return ()
    if data_type == "boolean" and not valid:
        valid = ("false", "true")
    extra = [value for value in compared if value not in valid]
    return (*valid, *extra)


def read_schema(source: Path | bytes | str) -> PmmlSchema:
    """Read the schema of the PMML at ``source`` (a path, or the document's bytes/text)."""
    if isinstance(source, Path):
        try:
            document = source.read_bytes()
        except OSError as exc:
            raise ExportError(f"cannot read PMML {source}: {exc}") from exc
    else:
        document = source.encode() if isinstance(source, str) else source
    root = parse_document(document)
    data_fields = {field.get("name"): field for field in root.iter("DataField")}
    model = model_element(root)
    mining_schema = model.find("MiningSchema")
    if mining_schema is None:
        raise ExportError("the PMML model has no MiningSchema")

    compared = _compared_constants(root)
    inputs: list[InputField] = []
    target: str | None = None
    for mining_field in mining_schema.findall("MiningField"):
        name = mining_field.get("name", "")
        usage = mining_field.get("usageType", "active")
        if usage in {"target", "predicted"}:
            target = name
            continue
        if usage != "active":
            continue
        data_field = data_fields.get(name)
        if data_field is None:
            raise ExportError(f"MiningField {name!r} has no DataField")
        interval = data_field.find("Interval")
        declared = _declared_values(data_field)
        valid = tuple(declared.get("valid", ()))
        inputs.append(
            InputField(
                name=name,
                data_type=data_field.get("dataType", "double"),
                optype=data_field.get("optype", "continuous"),
                valid_min=_float_or_none(
                    None if interval is None else interval.get("leftMargin")
                ),
                valid_max=_float_or_none(
                    None if interval is None else interval.get("rightMargin")
                ),
                missing_value_treatment=mining_field.get("missingValueTreatment"),
                missing_value_replacement=mining_field.get("missingValueReplacement"),
                invalid_value_treatment=mining_field.get(
                    "invalidValueTreatment", "returnInvalid"
                ),
                values=valid,
                missing_values=tuple(declared.get("missing", ())),
                categories=_categories(
                    valid, compared.get(name, ()), data_field.get("dataType")
                ),
            )
        )

    target_values: tuple[str, ...] = ()
    if target is not None and target in data_fields:
        target_values = tuple(
            v.get("value", "") for v in data_fields[target].findall("Value")
        )

    output = model.find("Output")
    outputs = tuple(
        OutputField(
            name=field.get("name", ""),
            feature=field.get("feature", "predictedValue"),
            value=field.get("value"),
            data_type=field.get("dataType"),
        )
        for field in ([] if output is None else output.findall("OutputField"))
    )
    return PmmlSchema(
        version=root.get("version", ""),
        model_element=model.tag,
        function_name=model.get("functionName", ""),
        inputs=tuple(inputs),
        target=target,
        target_values=target_values,
        outputs=outputs,
    )
