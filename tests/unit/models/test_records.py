"""The feature records' wire formats: fast codec == faust.Record, clear reasons for bad input."""

from __future__ import annotations

import base64
import math
from typing import Any, Optional

import faust
import orjson
import pytest

from models.pmml_schema import read_schema
from models.protocol import ModelStatus
from models.records import (
    DeadLetter,
    DecodeError,
    FeatureField,
    FeatureSchema,
    RecordKeys,
    decode_features,
    encode_csv,
    encode_json,
)

SCHEMA = FeatureSchema(
    "breast-cancer",
    "3",
    tuple(
        FeatureField(name, 1.0, 10.0)
        for name in ("clump_thickness", "bare_nuclei", "mitoses")
    ),
)


def is_nan(value: object) -> bool:
    """Whether a decoded value is a missing number."""
    return isinstance(value, float) and math.isnan(value)


def test_reference_csv_line_decodes_in_schema_order() -> None:
    record = decode_features(b"5,1,3\n", SCHEMA)
    assert record.values == [5.0, 1.0, 3.0]
    assert (
        record.record_id is None and record.event_time_ms is None and record.label == ""
    )


def test_empty_csv_field_is_a_missing_value() -> None:
    values = decode_features(b"5,,3", SCHEMA).values
    assert values[0] == 5.0 and is_nan(values[1]) and values[2] == 3.0


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"5,1", "CSV record has 2 fields, the model breast-cancer expects 3"),
        (b"5,1,3,4", "has 4 fields"),
        (b"5,x,3", "CSV field 2 (bare_nuclei) is not a number: 'x'"),
        (b"5,nan,3", "CSV field 2 (bare_nuclei) is not a finite number"),
        (b"5,inf,3", "not a finite number"),
        (b"", "empty record"),
        (b"{not json", "invalid JSON"),
        (b"[1, 2, 3]", "JSON record must be an object"),
        (b'{"record_id": "", "event_time": 1.5}', "record_id must be a non-empty"),
        (b'{"record_id": 1.5, "event_time": 1.5}', "record_id must be a non-empty"),
        (b'{"record_id": "a", "event_time": true}', "event_time must be epoch"),
        (
            b'{"record_id": "a", "event_time": "yesterday"}',
            "event_time is not ISO 8601",
        ),
        (b'{"record_id": "a", "event_time": 99999999999}', "outside 1970-2100"),
        (
            b'{"record_id": "a", "event_time": 1.5, "mitoses": "2"}',
            "JSON field mitoses is not a number",
        ),
        (
            b'{"record_id": "a", "event_time": 1.5, "mitoses": true}',
            "JSON field mitoses is not a number",
        ),
        (b'{"record_id": "a", "event_time": 1.5, "age": 3}', "does not take: age"),
        (
            b'{"record_id": "a", "event_time": 1.5, "label": [1]}',
            "label must be a string",
        ),
    ],
)
def test_malformed_records_are_refused_with_a_reason(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=None) as refused:
        decode_features(raw, SCHEMA)
    assert reason in str(refused.value)


def test_json_record_carries_id_event_time_and_ground_truth() -> None:
    raw = encode_json(SCHEMA, "run-7", 1_700_000_000.25, [5, None, 3.5], "1")
    record = decode_features(raw, SCHEMA)
    assert record.record_id == "run-7"
    assert record.event_time_ms == 1_700_000_000_250
    assert record.label == "1"
    assert (
        record.values[0] == 5.0 and is_nan(record.values[1]) and record.values[2] == 3.5
    )


def test_a_json_record_without_id_or_event_time_leaves_them_to_kafka() -> None:
    record = decode_features(b'{"mitoses": 2}', SCHEMA)
    assert record.record_id is None and record.event_time_ms is None
    assert record.values[2] == 2.0


def test_the_id_and_event_time_keys_are_the_streams_own() -> None:
    keys = RecordKeys(record_id="patient", event_time="ts")
    raw = b'{"patient": 42, "ts": "2026-01-02T03:04:05+00:00", "mitoses": 1}'
    record = decode_features(raw, SCHEMA, keys)
    assert record.record_id == "42" and record.event_time_ms == 1_767_323_045_000
    with pytest.raises(DecodeError, match="does not take: record_id"):
        decode_features(b'{"record_id": "a", "mitoses": 1}', SCHEMA, keys)


def test_keys_that_are_model_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="mitoses clash"):
        RecordKeys(record_id="mitoses").check(SCHEMA)


MIXED = FeatureSchema(
    "audit",
    "1",
    (
        FeatureField("age", 17.0, 90.0),
        FeatureField("employment", None, None, "string", "categorical", ("Private",)),
        FeatureField("married", None, None, "boolean", "categorical"),
    ),
)


def test_string_and_boolean_inputs_decode_as_text_from_csv_and_json() -> None:
    assert decode_features(b"38,Private,true", MIXED).values == [
        38.0,
        "Private",
        "true",
    ]
    assert decode_features(b"38, Consultant ,0", MIXED).values == [
        38.0,
        "Consultant",
        "false",
    ]
    csv_missing = decode_features(b"38,,", MIXED).values
    assert csv_missing[1:] == [None, None]
    raw = b'{"age": 38, "employment": "Private", "married": false}'
    assert decode_features(raw, MIXED).values == [38.0, "Private", "false"]
    coded = decode_features(b'{"employment": 3, "married": "TRUE"}', MIXED).values
    assert coded[1:] == ["3", "true"] and is_nan(coded[0])


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (
            b"38,Private,maybe",
            "CSV field 3 (married) is a boolean (true or false), not 'maybe'",
        ),
        (b"x,Private,true", "CSV field 1 (age) is not a number: 'x'"),
        (b'{"employment": 2.5}', "JSON field employment must be text, got 2.5"),
        (b'{"employment": true}', "JSON field employment is string, not a boolean"),
        (
            b'{"married": "yes"}',
            "JSON field married is a boolean (true or false), not 'yes'",
        ),
        (b'{"age": "38"}', "JSON field age is not a number: '38'"),
    ],
)
def test_a_value_the_schema_cannot_take_is_refused_naming_field_and_value(
    raw: bytes, reason: str
) -> None:
    with pytest.raises(DecodeError) as refused:
        decode_features(raw, MIXED)
    assert reason in str(refused.value)


def test_text_inputs_round_trip_through_both_encodings() -> None:
    values: list[float | str | None] = [38.0, "Self-emp", "true"]
    assert decode_features(encode_csv(values), MIXED).values == values
    raw = encode_json(MIXED, "a-1", 1.5e9, [38, "Self-emp", True], "0")
    assert decode_features(raw, MIXED).values == values
    with pytest.raises(ValueError, match="holds a comma"):
        encode_csv([1.0, "a,b", None])


def test_iso_event_time_is_accepted() -> None:
    raw = (
        b'{"record_id": "a", "event_time": "2026-01-02T03:04:05.5+00:00", "mitoses": 1}'
    )
    assert decode_features(raw, SCHEMA).event_time_ms == 1_767_323_045_500


class FeatureRecord(
    faust.Record,
    serializer="json",
    include_metadata=False,
    coerce=True,
    validation=True,
):
    """The JSON feature record as Faust would declare it, the yardstick of the fast codecs."""

    record_id: Optional[str] = None  # noqa: UP045  (faust reads the annotation at runtime)
    event_time: Optional[float] = None  # noqa: UP045
    label: Optional[str] = None  # noqa: UP045


def feature_record_type(schema: FeatureSchema) -> type[FeatureRecord]:
    """``FeatureRecord`` with one optional value per model input of ``schema``."""
    annotations = {
        field.name: Optional[float] if field.numeric else Optional[str]  # noqa: UP045
        for field in schema.fields
    }
    namespace: dict[str, Any] = {"__annotations__": annotations, "__module__": __name__}
    namespace.update(dict.fromkeys(schema.names))
    return type(f"FeatureRecord_{schema.model_name}", (FeatureRecord,), namespace)


def test_fast_json_codec_and_the_faust_record_agree() -> None:
    record_type = feature_record_type(SCHEMA)
    fast = encode_json(SCHEMA, "r-1", 1.5e9, [5, None, 3], "0")
    parsed = record_type.loads(fast)
    assert parsed == record_type(
        record_id="r-1",
        event_time=1.5e9,
        label="0",
        clump_thickness=5,
        bare_nuclei=None,
        mitoses=3,
    )
    assert decode_features(parsed.dumps(), SCHEMA) == decode_features(fast, SCHEMA)


def test_json_record_has_no_faust_metadata_for_other_readers() -> None:
    record = feature_record_type(SCHEMA)(
        record_id="r", event_time=2.0, clump_thickness=1
    )
    assert "__faust" not in orjson.loads(record.dumps())


def test_csv_encoding_is_the_references() -> None:
    assert encode_csv([5.0, 1, 3.0]) == b"5,1,3"
    assert encode_csv([5.5, None, float("nan")]) == b"5.5,,"


def test_dead_letter_keeps_the_raw_bytes_and_the_source() -> None:
    letter = DeadLetter.of(
        reason="bad",
        stage="decode",
        topic="t",
        partition=2,
        offset=41,
        key=b"k",
        value=b"\xff,1",
    )
    restored = DeadLetter.loads(letter.dumps())
    assert restored.source_topic == "t" and restored.source_partition == 2
    assert restored.source_offset == 41
    assert base64.b64decode(restored.raw_value_base64) == b"\xff,1"
    assert base64.b64decode(restored.raw_key_base64) == b"k"


def test_schema_from_a_model_servers_status() -> None:
    status = {
        "name": "m",
        "model": "breast-cancer",
        "version": "4",
        "schema": {
            "inputFields": [
                {
                    "id": "clump_thickness",
                    "name": "clump_thickness",
                    "position": 0,
                    "positionalName": "_c0",
                    "values": ["[1.0, 10.0]"],
                    "valid_min": 1.0,
                    "valid_max": 10.0,
                },
                {
                    "id": "size",
                    "name": "size",
                    "position": 1,
                    "positionalName": "_c1",
                    "valid_min": None,
                    "valid_max": None,
                },
                {
                    "id": "smoker",
                    "name": "smoker",
                    "position": 2,
                    "positionalName": "_c2",
                    "dataType": "string",
                    "opType": "categorical",
                    "values": ["no", "yes"],
                },
            ]
        },
    }
    schema = FeatureSchema.from_model_status(ModelStatus.model_validate(status), "m")
    assert schema.model_name == "breast-cancer" and schema.model_version == "4"
    assert schema.function_name == "classification"
    assert schema.fields == (
        FeatureField("clump_thickness", 1.0, 10.0),
        FeatureField("size"),
        FeatureField("smoker", None, None, "string", "categorical", ("no", "yes")),
    )
    assert [field.numeric for field in schema.fields] == [True, True, False]


def test_status_without_inputs_is_refused() -> None:
    empty = {"name": "m", "model": "x", "version": "1", "schema": {"inputFields": []}}
    with pytest.raises(ValueError, match="no input schema"):
        FeatureSchema.from_model_status(ModelStatus.model_validate(empty), "m")


def test_schema_from_a_trained_pmml_follows_its_mining_schema(pmml: bytes) -> None:
    pmml_schema = read_schema(pmml)
    schema = FeatureSchema.from_pmml(pmml_schema, "breast-cancer", "1")
    assert list(schema.names) == pmml_schema.input_names
    assert all(
        field.valid_min == 1.0 and field.valid_max == 10.0 for field in schema.fields
    )
