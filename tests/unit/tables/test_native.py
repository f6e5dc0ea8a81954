"""Native blocks as the writer encodes them, read back by current ClickHouse (chdb); 18.16 reads them in integration."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import orjson
import pytest
from chdb import session

from tables.native import NativeEncoder, varint
from tables.predictions import COLUMNS, INSERT_COLUMNS, STORED_AT_COLUMNS

NAMES = ["clump_thickness", "bare_nuclei"]
LABELS = ["0", "1"]


def row(offset: int, **changes: Any) -> tuple[Any, ...]:
    values: dict[str, Any] = {
        "source_topic": "features",
        "source_partition": offset % 4,
        "source_offset": offset,
        "record_id": f"r-{offset}",
        "event_time": 1_767_323_045,
        "event_time_ms": 1_767_323_045_500 + offset,
        "scored_at_ms": 1_767_323_045_600,
        "feature_names": NAMES,
        "feature_values": [float(offset % 10), math.nan],
        "predicted_label": str(offset % 2),
        "probability_labels": LABELS,
        "probabilities": [0.25, 0.75],
        "true_label": "",
        "model_name": "breast-cancer",
        "model_version": "1",
        "model_server": "http://127.0.0.1:8501",
        "scoring_latency_ms": 1.5,
        **changes,
    }
    return tuple(values[c] for c in INSERT_COLUMNS if c not in STORED_AT_COLUMNS)


def read_back(tmp_path: Path, block: bytes) -> list[dict[str, Any]]:
    path = tmp_path / "block.native"
    path.write_bytes(block)
    chs = session.Session()
    try:
        text = chs.query(
            f"SELECT *, toTypeName(stored_at) AS stored_type FROM file('{path}', 'Native')",
            "JSONEachRow",
        ).bytes()
    finally:
        chs.close()
    return [orjson.loads(line) for line in text.splitlines()]


def test_a_block_of_rows_reads_back_column_for_column(tmp_path: Path) -> None:
    encoder = NativeEncoder(COLUMNS, unique=frozenset({"record_id"}))
    rows = [row(offset) for offset in range(300)]
    block = encoder.encode(rows, constants=(1_767_323_046, 1_767_323_046_000))
    back = read_back(tmp_path, block)
    assert len(back) == 300
    first = back[7]
    assert int(first["source_offset"]) == 7  # 64-bit integers may come quoted
    assert first["record_id"] == "r-7"
    assert first["feature_names"] == NAMES
    assert first["feature_values"][0] == 7 and first["feature_values"][1] is None  # NaN
    assert first["probability_labels"] == LABELS
    assert first["probabilities"] == [0.25, 0.75]
    assert int(first["stored_at_ms"]) == 1_767_323_046_000
    assert first["stored_type"] == "DateTime"
    assert [int(r["source_offset"]) for r in back] == list(range(300))
    assert {r["predicted_label"] for r in back} == {"0", "1"}


def test_arrays_of_different_lengths_long_and_unicode_strings_survive(
    tmp_path: Path,
) -> None:
    encoder = NativeEncoder(COLUMNS, unique=frozenset({"record_id"}))
    long_id = "x" * 300  # a length over 127 takes a two-byte varint
    rows = [
        row(0, record_id=long_id, true_label="malignant", feature_values=[]),
        row(1, record_id="Ünïcødé-😀", probability_labels=["a", "b", "c"],
            probabilities=[0.2, 0.3, 0.5], feature_names=["only"]),
        row(2, model_version="2", feature_values=[1e308, -0.0, 3]),
    ]  # fmt: skip
    back = read_back(tmp_path, encoder.encode(rows, constants=(1, 1000)))
    assert back[0]["record_id"] == long_id and back[0]["feature_values"] == []
    assert back[0]["true_label"] == "malignant"
    assert back[1]["record_id"] == "Ünïcødé-😀"
    assert back[1]["probability_labels"] == ["a", "b", "c"]
    assert back[1]["feature_names"] == ["only"]
    assert back[2]["feature_values"] == [1e308, 0, 3]
    assert [r["model_version"] for r in back] == ["1", "1", "2"]


def test_rows_of_the_wrong_width_and_unknown_types_are_refused() -> None:
    encoder = NativeEncoder(COLUMNS)
    with pytest.raises(ValueError, match="columns"):
        encoder.encode([row(0)])  # without the two stored-at columns
    with pytest.raises(ValueError, match="at least one row"):
        encoder.encode([], constants=(1, 2))
    with pytest.raises(ValueError, match="no Native encoder"):
        NativeEncoder({"x": "Nullable(String)"})


def test_varints_are_leb128() -> None:
    assert varint(0) == b"\x00"
    assert varint(127) == b"\x7f"
    assert varint(128) == b"\x80\x01"
    assert varint(300) == b"\xac\x02"
