"""The messages on riskstream's topics and their wire formats.

Two formats reach the feature topic, both keyed by the record id:

* **CSV**, the reference's: the model's inputs in PMML order, one line,
  e.g. ``5,1,1,1,2,1,3,1,1``; an empty field is a missing value. The key is
  the record id and the Kafka timestamp is the event time.
* **JSON**: ``{"record_id", "event_time" (epoch seconds), <inputs>...,
  "label" (optional ground truth)}``, the :class:`FeatureRecord` of the
  served model's schema. ``include_metadata`` is off: systems other than
  Faust read and write this topic, so no ``__faust`` key is added.

The inputs are not constants: :class:`FeatureSchema` is read from the served
model (its PMML), and :func:`feature_record_type` builds the matching
``faust.Record``. The generator and the agents do not create one Record per
message, though: at tens of thousands of records per second that costs more
than the rest of the pipeline, so :func:`encode_json`, :func:`encode_csv` and
:func:`decode_features` implement the same wire format directly, and a unit
test proves them equal to the Record's own ``dumps``/``loads``.

Dead letters are :class:`DeadLetter` records (few, so built one by one).
"""

from __future__ import annotations

import base64
import logging
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

if TYPE_CHECKING:
    from models.pmml_schema import PmmlSchema

__all__ = [
    "MAX_EVENT_TIME_S",
    "DeadLetter",
    "DecodeError",
    "DecodedRecord",
    "FeatureField",
    "FeatureRecord",
    "FeatureSchema",
    "decode_features",
    "encode_csv",
    "encode_json",
    "feature_record_type",
]

logger = logging.getLogger(__name__)

#: Keys of a JSON record that are not model inputs.
RECORD_ID, EVENT_TIME, LABEL = "record_id", "event_time", "label"

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

    @cached_property
    def names(self) -> tuple[str, ...]:
        return tuple(field.name for field in self.fields)

    @cached_property
    def json_keys(self) -> frozenset[str]:
        """Every key a JSON feature record may hold."""
        return frozenset((*self.names, RECORD_ID, EVENT_TIME, LABEL))

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
        )

    @classmethod
    def from_model_status(cls, payload: Any, served_name: str) -> FeatureSchema:
        """The layout a model server announces in ``GET /v1/models/{name}``.

        That answer is TF Serving's status plus the PMML's input schema in
        Openscoring's shape (``schema.inputFields`` in PMML order, each with
        its valid range) and the real model name and version behind the
        served name. Raises ValueError when the answer lacks them.
        """
        schema = payload.get("schema") if isinstance(payload, dict) else None
        inputs = schema.get("inputFields") if isinstance(schema, dict) else None
        if not isinstance(inputs, list) or not inputs:
            raise ValueError("model status has no input schema (schema.inputFields)")
        fields: list[FeatureField] = []
        for item in inputs:
            name = item.get("name", item.get("id")) if isinstance(item, dict) else None
            if not isinstance(name, str) or not name:
                raise ValueError(f"model schema has an input without a name: {item!r}")
            fields.append(
                FeatureField(
                    name,
                    _number_or_none(item.get("valid_min")),
                    _number_or_none(item.get("valid_max")),
                )
            )
        return cls(
            model_name=str(payload.get("model") or served_name),
            model_version=str(payload.get("version") or ""),
            fields=tuple(fields),
        )


class FeatureRecord(
    faust.Record,
    serializer="json",
    include_metadata=False,
    coerce=True,
    validation=True,
):
    """A JSON feature record without its inputs; :func:`feature_record_type` adds them."""

    record_id: str
    event_time: float
    label: Optional[str] = None  # noqa: UP045  (faust reads the annotation at runtime)


def feature_record_type(schema: FeatureSchema) -> type[FeatureRecord]:
    """The JSON feature record of ``schema``: one optional float per model input.

    Built at run time because the inputs come from the served model's PMML;
    an absent or null input is a missing value, which the model's own
    missing-value treatment handles.
    """
    for name in schema.names:
        if not name.isidentifier() or name in (RECORD_ID, EVENT_TIME, LABEL):
            raise ValueError(f"model input {name!r} cannot be a JSON record field")
    annotations = {name: Optional[float] for name in schema.names}  # noqa: UP045
    namespace: dict[str, Any] = {"__annotations__": annotations}
    namespace.update(dict.fromkeys(schema.names))
    namespace["__module__"] = __name__
    name = f"FeatureRecord_{schema.model_name}_{schema.model_version}".replace("-", "_")
    return type(name, (FeatureRecord,), namespace)


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


@dataclass(slots=True)
class DecodedRecord:
    """One well-formed feature record, ready to be scored.

    ``values`` follow the schema's order with NaN for a missing input;
    ``event_time_ms`` is None when the format carries none (CSV), in which
    case the Kafka timestamp stands in; ``label`` is "" without ground truth.
    """

    record_id: str | None
    event_time_ms: int | None
    values: list[float]
    label: str


def encode_csv(values: Sequence[float | None]) -> bytes:
    """The reference's CSV line: inputs in schema order, empty field = missing."""
    return ",".join(
        "" if value is None or _missing(value) else _number_text(value)
        for value in values
    ).encode("ascii")


def encode_json(
    schema: FeatureSchema,
    record_id: str,
    event_time: float,
    values: Sequence[float | str | bool | None],
    label: str | None = None,
) -> bytes:
    """A JSON feature record, byte for byte what ``feature_record_type(schema)`` parses."""
    body: dict[str, Any] = {RECORD_ID: record_id, EVENT_TIME: event_time, LABEL: label}
    for name, value in zip(schema.names, values, strict=True):
        body[name] = None if _missing(value) else value
    return orjson.dumps(body)


def decode_features(value: bytes | None, schema: FeatureSchema) -> DecodedRecord:
    """Parse one feature record (CSV or JSON, told apart by the first byte).

    Checks only the record's shape (field count, numbers, JSON keys): the
    values' valid ranges are the model's to judge, since its PMML decides
    whether an out-of-range input is rejected or scored as it is.
    """
    if not value:
        raise DecodeError("empty record")
    if value[:1] in (b"{", b"["):
        return _decode_json(value, schema)
    return _decode_csv(value, schema)


def _decode_csv(value: bytes, schema: FeatureSchema) -> DecodedRecord:
    line = value.rstrip(b"\r\n")
    names = schema.names
    if not line.translate(None, _PLAIN_NUMBERS):
        # The common case, parsed in C: only digits, signs, points and
        # exponents, so the line in brackets is a JSON array of numbers if
        # every field is a well-formed number (ints stay ints: same value).
        try:
            numbers: list[float] = orjson.loads(b"[" + line + b"]")
        except orjson.JSONDecodeError:
            pass  # an empty or malformed field: the field-by-field loop tells which
        else:
            total = sum(numbers)
            # every value finite (an inf anywhere makes the difference NaN)
            if len(numbers) == len(names) and total - total == 0.0:
                return DecodedRecord(None, None, numbers, "")
    parts = line.split(b",")
    if len(parts) != len(names):
        raise DecodeError(
            f"CSV record has {len(parts)} fields, the model {schema.model_name} "
            f"expects {len(names)} ({','.join(names)})"
        )
    values: list[float] = []
    append = values.append
    for index, part in enumerate(parts):
        if not part or part.isspace():
            append(NAN)
            continue
        try:
            number = float(part)
        except ValueError:
            raise DecodeError(
                f"CSV field {index + 1} ({names[index]}) is not a number: {_show(part)}"
            ) from None
        if not math.isfinite(number):
            raise DecodeError(
                f"CSV field {index + 1} ({names[index]}) is not a finite number: {_show(part)}"
            )
        append(number)
    return DecodedRecord(None, None, values, "")


def _decode_json(value: bytes, schema: FeatureSchema) -> DecodedRecord:
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise DecodeError(f"JSON record must be an object, got {type(body).__name__}")
    record_id = body.get(RECORD_ID)
    if isinstance(record_id, int) and not isinstance(record_id, bool):
        record_id = str(record_id)
    if not isinstance(record_id, str) or not record_id:
        raise DecodeError("JSON record has no record_id (a non-empty string)")
    event_time_ms = _event_time_ms(body.get(EVENT_TIME))
    label = body.get(LABEL)
    if label is None:
        label = ""
    elif isinstance(label, (str, int)) and not isinstance(label, bool):
        label = str(label)
    else:
        raise DecodeError(
            f"JSON label must be a string or an integer, got {_show(label)}"
        )
    values: list[float] = []
    append = values.append
    for name in schema.names:
        item = body.get(name)
        if item is None:
            append(NAN)
        elif type(item) is int or (type(item) is float and math.isfinite(item)):
            append(float(item))
        else:
            raise DecodeError(f"JSON field {name} is not a number: {_show(item)}")
    unknown = body.keys() - schema.json_keys
    if unknown:
        raise DecodeError(
            f"JSON record has fields the model {schema.model_name} does not take: "
            f"{', '.join(sorted(unknown))}"
        )
    return DecodedRecord(record_id, event_time_ms, values, label)


def _event_time_ms(raw: object) -> int:
    if isinstance(raw, bool) or raw is None:
        raise DecodeError("JSON record has no event_time (epoch seconds or ISO 8601)")
    if isinstance(raw, (int, float)):
        seconds = float(raw)
    elif isinstance(raw, str):
        try:
            seconds = datetime.fromisoformat(raw).timestamp()
        except ValueError:
            raise DecodeError(f"event_time is not ISO 8601: {_show(raw)}") from None
    else:
        raise DecodeError(
            f"event_time must be epoch seconds or ISO 8601, got {_show(raw)}"
        )
    if not 0.0 < seconds < MAX_EVENT_TIME_S:
        raise DecodeError(
            f"event_time {raw!r} is outside 1970-2100 (epoch seconds expected)"
        )
    return round(seconds * 1000.0)


def _number_or_none(value: object) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


def _missing(value: float | str | bool | None) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number_text(value: float) -> str:
    """Integral values as integers, like the reference's ``5,1,1``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def _show(value: object, limit: int = 40) -> str:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
