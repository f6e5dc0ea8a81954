"""The messages on riskstream's topics and their wire formats.

Two formats reach the feature topic:

* **CSV**, the reference's: the model's inputs in PMML order, one line,
  e.g. ``5,1,1,1,2,1,3,1,1`` or ``30,white,yes,...`` for a model with
  string inputs; an empty field is a missing value.
* **JSON**: ``{"record_id", "event_time" (epoch seconds or ISO 8601),
  <inputs>..., "label" (optional ground truth)}``, the :class:`FeatureRecord`
  of the served model's schema; the id and event-time keys are settings
  (:class:`RecordKeys`), and both may be absent. ``include_metadata`` is
  off: systems other than Faust read and write this topic, so no
  ``__faust`` key is added.

Either way a record's id is its id field, else its Kafka key, else its
Kafka coordinates, and its event time is its event-time field, else its
Kafka timestamp (the pipeline fills in what the record lacks).

The inputs are not constants: :class:`FeatureSchema` is read from the served
model (its PMML). The generator and the agents do not create one
``faust.Record`` per message: at tens of thousands of records per second
that costs more than the rest of the pipeline, so :func:`encode_json`,
:func:`encode_csv` and :func:`decode_features` implement the wire format
directly, for both sides; a unit test proves them equal to a Faust Record
of the same fields (``tests/unit/models/test_records.py``).

Labels (the ground truth, which arrives late) travel on their own topic as
JSON ``{"record_id", "label", "observed_at" (epoch seconds or ISO 8601)}``
keyed by the record id: :func:`encode_label` and :func:`decode_label`, for
the generator and the labels agent alike.

Dead letters are :class:`DeadLetter` records (few, so built one by one).
"""

from __future__ import annotations

import base64
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, Optional

import faust
import orjson

from models.pmml_schema import NUMERIC_TYPES
from models.protocol import ModelStatus

if TYPE_CHECKING:
    from models.pmml_schema import PmmlSchema

__all__ = [
    "DEFAULT_KEYS",
    "MAX_EVENT_TIME_S",
    "DeadLetter",
    "DecodeError",
    "DecodedRecord",
    "FeatureField",
    "FeatureSchema",
    "Label",
    "RecordKeys",
    "Value",
    "decode_features",
    "decode_label",
    "encode_csv",
    "encode_json",
    "encode_label",
    "parse_text",
]


@dataclass(frozen=True)
class RecordKeys:
    """The keys of a JSON feature record that are not model inputs.

    Other systems name their id and event time their own way; the worker
    takes the names from ``RISKSTREAM_RECORD_ID_FIELD`` and
    ``RISKSTREAM_EVENT_TIME_FIELD``.
    """

    record_id: str = "record_id"
    event_time: str = "event_time"
    label: str = "label"

    def check(self, schema: FeatureSchema) -> None:
        """Refuse keys that are also model inputs: a record could not say which it means."""
        clash = {self.record_id, self.event_time, self.label} & set(schema.names)
        if clash:
            raise ValueError(
                f"model input(s) {', '.join(sorted(clash))} clash with the record's id, "
                "event-time or label key (RISKSTREAM_RECORD_ID_FIELD, "
                "RISKSTREAM_EVENT_TIME_FIELD)"
            )


#: The keys riskstream's own generator writes.
DEFAULT_KEYS = RecordKeys()

#: ClickHouse's DateTime ends in 2106; refuse event times it cannot store.
MAX_EVENT_TIME_S = 4_102_444_800.0  # 2100-01-01T00:00:00Z

NAN = math.nan

#: Bytes of a CSV line of plain numbers (the fast parse takes only those).
_PLAIN_NUMBERS = b"0123456789.,-+eE "


@dataclass(frozen=True)
class FeatureField:
    """One model input: its name, PMML types and what the model declares valid.

    ``valid_min``/``valid_max`` bound a numeric input (None = open);
    ``values`` lists a categorical input's declared values (empty = any).
    """

    name: str
    valid_min: float | None = None
    valid_max: float | None = None
    data_type: str = "double"  #: PMML dataType: double, float, integer, string, boolean
    optype: str = "continuous"  #: PMML optype: continuous, categorical, ordinal
    values: tuple[str, ...] = ()

    @property
    def numeric(self) -> bool:
        """Whether the input's values are numbers (a categorical one may be numeric too)."""
        return self.data_type in NUMERIC_TYPES


@dataclass(frozen=True)
class FeatureSchema:
    """The served model's inputs in PMML order: the layout of every feature record."""

    model_name: str
    model_version: str
    fields: tuple[FeatureField, ...]
    #: PMML functionName: "classification" (a label and probabilities) or "regression"
    function_name: str = "classification"

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(field.name for field in self.fields)

    @cached_property
    def all_numeric(self) -> bool:
        """Whether every input is a number (the pipeline's cheap path)."""
        return all(field.numeric for field in self.fields)

    @classmethod
    def from_pmml(
        cls, schema: PmmlSchema, model_name: str, model_version: str
    ) -> FeatureSchema:
        """The record layout a PMML document declares (MiningSchema order)."""
        return cls(
            model_name=model_name,
            model_version=model_version,
            fields=tuple(
                FeatureField(
                    field.name,
                    field.valid_min,
                    field.valid_max,
                    field.data_type,
                    field.optype,
                    field.values,
                )
                for field in schema.inputs
            ),
            function_name=schema.function_name,
        )

    @classmethod
    def from_model_status(cls, status: ModelStatus, served_name: str) -> FeatureSchema:
        """The layout a model server announces in ``GET /v1/models/{name}``.

        Raises ValueError when the status lists no input.
        """
        inputs = status.schema_.inputFields
        if not inputs:
            raise ValueError("model status has no input schema (schema.inputFields)")
        return cls(
            model_name=status.model or served_name,
            model_version=status.version,
            fields=tuple(
                FeatureField(
                    item.name,
                    item.valid_min,
                    item.valid_max,
                    item.dataType,
                    item.opType,
                    () if item.opType == "continuous" else tuple(item.values),
                )
                for item in inputs
            ),
            function_name=status.schema_.functionName,
        )


class DeadLetter(
    faust.Record,
    serializer="json",
    include_metadata=False,
    coerce=True,
    validation=True,
):
    """A record the pipeline could not score, with why and where it came from.

    The raw key and value are base64 so that any bytes survive the JSON
    round trip; ``stage`` says whether decoding or the model rejected it.
    """

    reason: str
    stage: str
    source_topic: str
    source_partition: int
    source_offset: int
    raw_key_base64: Optional[str]  # noqa: UP045
    raw_value_base64: str
    failed_at: float

    @classmethod
    def of(
        cls,
        *,
        reason: str,
        stage: str,
        topic: str,
        partition: int,
        offset: int,
        key: bytes | None,
        value: bytes | None,
    ) -> DeadLetter:
        return cls(
            reason=reason,
            stage=stage,
            source_topic=topic,
            source_partition=partition,
            source_offset=offset,
            raw_key_base64=None
            if key is None
            else base64.b64encode(key).decode("ascii"),
            raw_value_base64=base64.b64encode(value or b"").decode("ascii"),
            failed_at=time.time(),
        )


class DecodeError(ValueError):
    """A feature record that is malformed; the message is the dead letter's reason."""


#: One input's value on its way to the model: a number (NaN = missing), a string
#: (a category, or "true"/"false" for a boolean) or None (a missing non-numeric input).
Value = float | str | None


@dataclass(slots=True)
class DecodedRecord:
    """One well-formed feature record, ready to be scored.

    ``values`` follow the schema's order: a float for a numeric input (NaN
    when missing), a string or None (missing) for the others.
    ``record_id`` and ``event_time_ms`` are None when the record carries
    none (always for CSV): the Kafka key or coordinates and the Kafka
    timestamp stand in. ``label`` is "" without ground truth.
    """

    record_id: str | None
    event_time_ms: int | None
    values: list[Value]
    label: str


def encode_csv(values: Sequence[float | str | bool | None]) -> bytes:
    """The reference's CSV line: inputs in schema order, empty field = missing."""
    return ",".join(
        "" if value is None or _missing(value) else _text(value) for value in values
    ).encode("utf-8")


def encode_json(
    schema: FeatureSchema,
    record_id: str,
    event_time: float,
    values: Sequence[float | str | bool | None],
    label: str | None = None,
) -> bytes:
    """A JSON feature record: the ids, then the inputs by name (None for a missing value)."""
    keys = DEFAULT_KEYS
    body: dict[str, Any] = {
        keys.record_id: record_id,
        keys.event_time: event_time,
        keys.label: label,
    }
    for name, value in zip(schema.names, values, strict=True):
        body[name] = None if _missing(value) else value
    return orjson.dumps(body)


def decode_features(
    value: bytes | None, schema: FeatureSchema, keys: RecordKeys = DEFAULT_KEYS
) -> DecodedRecord:
    """Parse one feature record (CSV or JSON, told apart by the first byte).

    Checks the record's shape and each value's type against the schema
    (a number for a numeric input, text for a string, true/false for a
    boolean): the values' validity (ranges, declared categories) is the
    model's to judge, since its PMML decides whether an invalid input is
    rejected or scored.
    """
    if not value:
        raise DecodeError("empty record")
    if value[:1] in (b"{", b"["):
        return _decode_json(value, schema, keys)
    return _decode_csv(value, schema)


def _decode_csv(value: bytes, schema: FeatureSchema) -> DecodedRecord:
    line = value.rstrip(b"\r\n")
    names = schema.names
    if schema.all_numeric and not line.translate(None, _PLAIN_NUMBERS):
        # The common case, parsed in C: only digits, signs, points and
        # exponents, so the line in brackets is a JSON array of numbers if
        # every field is a well-formed number (ints stay ints: same value).
        try:
            numbers: list[Value] = orjson.loads(b"[" + line + b"]")
        except orjson.JSONDecodeError:
            pass  # an empty or malformed field: the field-by-field loop tells which
        else:
            total = sum(numbers)  # type: ignore[arg-type]
            # every value finite (an inf anywhere makes the difference NaN)
            if len(numbers) == len(names) and total - total == 0.0:
                return DecodedRecord(None, None, numbers, "")
    parts = line.split(b",")
    if len(parts) != len(names):
        raise DecodeError(
            f"CSV record has {len(parts)} fields, the model {schema.model_name} "
            f"expects {len(names)} ({','.join(names)})"
        )
    values: list[Value] = []
    append = values.append
    for index, (part, field) in enumerate(zip(parts, schema.fields, strict=True)):
        try:
            append(parse_text(part.decode("utf-8"), field))
        except (DecodeError, UnicodeDecodeError) as error:
            reason = (
                f"is not UTF-8 text: {_show(part)}"
                if isinstance(error, UnicodeDecodeError)
                else str(error)
            )
            raise DecodeError(
                f"CSV field {index + 1} ({field.name}) {reason}"
            ) from None
    return DecodedRecord(None, None, values, "")


def parse_text(text: str, field: FeatureField) -> Value:
    """One input written as text (a CSV cell) as the value its schema types it.

    A number for a numeric input (NaN when blank), the text (None when
    blank) or "true"/"false" for a boolean. Raises :class:`DecodeError`
    saying what the text is not, for the caller to say where it was.
    """
    text = text.strip()
    if not field.numeric:
        return _category(text, field)
    if not text:
        return NAN
    try:
        number = float(text)
    except ValueError:
        raise DecodeError(f"is not a number: {_show(text)}") from None
    if not math.isfinite(number):
        raise DecodeError(f"is not a finite number: {_show(text)}")
    return number


def _decode_json(
    value: bytes, schema: FeatureSchema, keys: RecordKeys
) -> DecodedRecord:
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise DecodeError(f"JSON record must be an object, got {type(body).__name__}")
    record_id = body.get(keys.record_id)
    if isinstance(record_id, int) and not isinstance(record_id, bool):
        record_id = str(record_id)
    if record_id is not None and (not isinstance(record_id, str) or not record_id):
        raise DecodeError(
            f"JSON {keys.record_id} must be a non-empty string or an integer, "
            f"got {_show(record_id)}"
        )
    raw_time = body.get(keys.event_time)
    event_time_ms = None if raw_time is None else _event_time_ms(raw_time, keys)
    label = body.get(keys.label)
    if label is None:
        label = ""
    elif isinstance(label, (str, int)) and not isinstance(label, bool):
        label = str(label)
    else:
        raise DecodeError(
            f"JSON {keys.label} must be a string or an integer, got {_show(label)}"
        )
    values: list[Value] = []
    append = values.append
    for field in schema.fields:
        item = body.get(field.name)
        if field.numeric:
            if item is None:
                append(NAN)
            elif type(item) is int or (type(item) is float and math.isfinite(item)):
                append(float(item))
            else:
                raise DecodeError(
                    f"JSON field {field.name} is not a number: {_show(item)}"
                )
        else:
            append(_json_category(item, field))
    unknown = (
        body.keys()
        - set(schema.names)
        - {
            keys.record_id,
            keys.event_time,
            keys.label,
        }
    )
    if unknown:
        raise DecodeError(
            f"JSON record has fields the model {schema.model_name} does not take: "
            f"{', '.join(sorted(unknown))}"
        )
    return DecodedRecord(record_id, event_time_ms, values, label)


#: How a boolean input may be written (compared case-insensitively).
_BOOLEAN_TEXT = {"true": "true", "false": "false", "1": "true", "0": "false"}


def _json_category(item: object, field: FeatureField) -> str | None:
    """A non-numeric input from JSON: text, an integer code, or true/false."""
    where = f"JSON field {field.name}"
    if item is None:
        return None
    if type(item) is bool:
        if field.data_type == "boolean":
            return "true" if item else "false"
        raise DecodeError(f"{where} is {field.data_type}, not a boolean: {_show(item)}")
    if type(item) is int or type(item) is str:
        try:
            return _category(str(item), field)
        except DecodeError as error:
            raise DecodeError(f"{where} {error}") from None
    raise DecodeError(f"{where} must be text, got {_show(item)}")


def _category(text: str, field: FeatureField) -> str | None:
    """A non-numeric input as text ("" = missing); a boolean as "true" or "false"."""
    if not text:
        return None
    if field.data_type != "boolean":
        return text
    canonical = _BOOLEAN_TEXT.get(text.lower())
    if canonical is None:
        raise DecodeError(f"is a boolean (true or false), not {_show(text)}")
    return canonical


@dataclass(frozen=True, slots=True)
class Label:
    """One record's ground truth, as the labels topic carries it.

    ``observed_at_ms`` orders the labels of one record: the latest wins
    (a biopsy result corrects a first reading).
    """

    record_id: str
    label: str
    observed_at_ms: int


def encode_label(record_id: str, label: str, observed_at: float) -> bytes:
    """A label message: ``observed_at`` in epoch seconds; send it keyed by ``record_id``."""
    return orjson.dumps(
        {"record_id": record_id, "label": label, "observed_at": observed_at}
    )


def decode_label(value: bytes | None, key: bytes | None, timestamp_ms: int) -> Label:
    """Parse one label message; raises :class:`DecodeError` saying what is wrong.

    The record id is the JSON ``record_id``, else the Kafka key (labels are
    keyed by it); ``observed_at`` defaults to the Kafka timestamp
    (``timestamp_ms``), as a feature record's event time does.
    """
    if not value:
        raise DecodeError("empty label")
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"label is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise DecodeError(f"label must be a JSON object, got {type(body).__name__}")
    unknown = body.keys() - {"record_id", "label", "observed_at"}
    if unknown:
        raise DecodeError(f"label has unknown fields: {', '.join(sorted(unknown))}")
    record_id = body.get("record_id")
    if record_id is None and key:
        try:
            record_id = key.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(
                f"label has no record_id and its Kafka key is not UTF-8: {_show(key)}"
            ) from None
    if isinstance(record_id, int) and not isinstance(record_id, bool):
        record_id = str(record_id)
    if record_id is None:
        raise DecodeError(
            "label has no record_id (neither in the JSON nor as Kafka key)"
        )
    if not isinstance(record_id, str) or not record_id:
        raise DecodeError(
            f"label record_id must be a non-empty string or an integer, got {_show(record_id)}"
        )
    label = body.get("label")
    if isinstance(label, (str, int)) and not isinstance(label, bool):
        label = str(label)
    else:
        raise DecodeError(
            f"label of {record_id} must be a string or an integer, got {_show(label)}"
        )
    if not label:
        raise DecodeError(f"label of {record_id} is empty")
    raw_time = body.get("observed_at")
    observed_at_ms = (
        timestamp_ms if raw_time is None else _epoch_ms(raw_time, "label observed_at")
    )
    return Label(record_id, label, observed_at_ms)


def _event_time_ms(raw: object, keys: RecordKeys) -> int:
    return _epoch_ms(raw, f"JSON {keys.event_time}")


def _epoch_ms(raw: object, name: str) -> int:
    """Epoch seconds or ISO 8601 as epoch ms; ``name`` says which field in the error."""
    if isinstance(raw, bool):
        raise DecodeError(f"{name} must be epoch seconds or ISO 8601, got {_show(raw)}")
    if isinstance(raw, (int, float)):
        seconds = float(raw)
    elif isinstance(raw, str):
        try:
            seconds = datetime.fromisoformat(raw).timestamp()
        except ValueError:
            raise DecodeError(f"{name} is not ISO 8601: {_show(raw)}") from None
    else:
        raise DecodeError(f"{name} must be epoch seconds or ISO 8601, got {_show(raw)}")
    if not 0.0 < seconds < MAX_EVENT_TIME_S:
        raise DecodeError(
            f"{name} {raw!r} is outside 1970-2100 (epoch seconds expected)"
        )
    return round(seconds * 1000.0)


def _missing(value: float | str | bool | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _text(value: float | str | bool) -> str:
    """A CSV field: integral numbers as integers, like the reference's ``5,1,1``."""
    if isinstance(value, str):
        if "," in value or "\n" in value or "\r" in value:
            raise ValueError(
                f"{value!r} holds a comma or a line break, which a CSV field cannot "
                "carry (the format has no quoting)"
            )
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _show(value: object, limit: int = 40) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
