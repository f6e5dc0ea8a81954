"""A record over RISKSTREAM_MAX_RECORD_BYTES is dead-lettered with the reason, not decoded."""

from __future__ import annotations

import base64

from .test_pipeline import Letters, Message, Rows, RuleScorer, processor


async def test_a_record_over_the_limit_is_dead_lettered_with_its_first_bytes() -> None:
    scorer, rows, letters = RuleScorer(), Rows(), Letters()
    handler = processor(scorer, rows, letters, request_rows=10, max_record_bytes=16)
    huge = b"7," + b"1" * 100
    outcome = await handler.process(
        [
            Message("features", 0, 1, b"ok", b"7,1"),
            Message("features", 0, 2, b"huge", huge),
            Message("features", 0, 3, b"edge", b"7," + b"1" * 14),  # exactly 16 bytes
        ]
    )
    assert [row[2] for row in rows.rows] == [1, 3]  # at the limit is within it
    assert outcome.dead_letters_by_stage == {"decode": 1}
    letter = next(letter for letter in letters.letters if letter.source_offset == 2)
    assert letter.reason == (
        "record of 102 bytes exceeds the limit of 16 bytes (RISKSTREAM_MAX_RECORD_BYTES); "
        "the letter keeps its first 16 bytes"
    )
    assert base64.b64decode(letter.raw_value_base64) == huge[:16]
    assert base64.b64decode(letter.raw_key_base64 or "") == b"huge"
    assert scorer.requests == [2], "the oversized record never reached the model"
