"""The label wire format: what the generator writes the labels agent reads, bad labels say why."""

from __future__ import annotations

import pytest

from models.records import DecodeError, Label, decode_label, encode_label

KAFKA_TIMESTAMP_MS = 1_767_323_045_000


def test_an_encoded_label_decodes_to_the_same_label() -> None:
    value = encode_label("run-7", "1", 1_767_323_046.25)
    assert decode_label(value, b"run-7", KAFKA_TIMESTAMP_MS) == Label(
        "run-7", "1", 1_767_323_046_250
    )


@pytest.mark.parametrize(
    ("value", "key", "expected"),
    [
        # the Kafka key stands in for a missing record_id, the Kafka timestamp for observed_at
        (b'{"label": "0"}', b"k", Label("k", "0", KAFKA_TIMESTAMP_MS)),
        # an integer label or id, an ISO 8601 time
        (
            b'{"record_id": 12, "label": 1, "observed_at": "2026-01-02T03:04:05+00:00"}',
            None,
            Label("12", "1", 1_767_323_045_000),
        ),
    ],
)
def test_what_a_label_may_leave_out_or_write_otherwise(
    value: bytes, key: bytes | None, expected: Label
) -> None:
    assert decode_label(value, key, KAFKA_TIMESTAMP_MS) == expected


@pytest.mark.parametrize(
    ("value", "key", "reason"),
    [
        (b"", b"k", "empty label"),
        (b"{not json", b"k", "label is not valid JSON"),
        (b'["r", "1"]', b"k", "label must be a JSON object, got list"),
        (b'{"label": "1"}', None, "label has no record_id"),
        (b'{"label": "1"}', b"\xff", "Kafka key is not UTF-8"),
        (b'{"record_id": "", "label": "1"}', b"k", "record_id must be a non-empty"),
        (
            b'{"record_id": "r"}',
            b"r",
            "label of r must be a string or an integer, got None",
        ),
        (b'{"record_id": "r", "label": true}', b"r", "got True"),
        (b'{"record_id": "r", "label": [1]}', b"r", "got [1]"),
        (b'{"record_id": "r", "label": ""}', b"r", "label of r is empty"),
        (
            b'{"record_id": "r", "label": "1", "observed_at": "yesterday"}',
            b"r",
            "label observed_at is not ISO 8601: 'yesterday'",
        ),
        (
            b'{"record_id": "r", "label": "1", "observed_at": 99999999999}',
            b"r",
            "outside 1970-2100",
        ),
        (
            b'{"record_id": "r", "label": "1", "diagnosis": "M"}',
            b"r",
            "label has unknown fields: diagnosis",
        ),
    ],
)
def test_a_malformed_label_says_what_is_wrong(
    value: bytes, key: bytes | None, reason: str
) -> None:
    with pytest.raises(DecodeError) as caught:
        decode_label(value, key, KAFKA_TIMESTAMP_MS)
    assert reason in str(caught.value)
