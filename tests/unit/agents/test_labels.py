"""The labels agent's decoding: a row per good label, a dead letter naming the bad one's source."""

from __future__ import annotations

import base64

from faust.types.tuples import Message

from agents.labels import decode_labels
from models.records import encode_label
from tables.predictions import LabelRow


def message(offset: int, key: bytes | None, value: bytes) -> Message:
    return Message("labels", 2, offset, 1_767_323_045.5, 0, None, key, value, None)


def test_good_labels_become_rows_at_their_coordinates_and_bad_ones_dead_letters() -> (
    None
):
    rows, letters = decode_labels(
        [
            message(7, b"r-1", encode_label("r-1", "1", 1_767_323_050.0)),
            message(
                8, b"r-2", b'{"label": "0"}'
            ),  # the key and Kafka timestamp stand in
            message(9, b"r-3", b'{"record_id": "r-3", "label": null}'),
        ]
    )
    assert rows == [
        LabelRow("labels", 2, 7, "r-1", "1", 1_767_323_050, 1_767_323_050_000),
        LabelRow("labels", 2, 8, "r-2", "0", 1_767_323_045, 1_767_323_045_500),
    ]
    (letter,) = letters
    assert (letter.stage, letter.source_topic, letter.source_partition) == (
        "label",
        "labels",
        2,
    )
    assert letter.source_offset == 9
    assert letter.reason == "label of r-3 must be a string or an integer, got None"
    assert base64.b64decode(letter.raw_key_base64 or "") == b"r-3"
