"""The worker's allocation reports name the line whose memory grows."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

from app.allocations import AllocationTracer

HELD: list[bytes] = []


def _grow() -> None:
    HELD.extend(bytes(1000) + bytes([i % 256]) for i in range(2000))  # the growing line


def test_the_report_names_the_growing_line_with_its_size(tmp_path: Path) -> None:
    was_tracing = tracemalloc.is_tracing()
    tracer = AllocationTracer(tmp_path)
    tracer.start()
    try:
        assert tracer.record() is None  # the first snapshot is the baseline
        _grow()
        path = tracer.record()
    finally:
        if not was_tracing:
            tracemalloc.stop()
        HELD.clear()
    assert path is not None and path.parent == tmp_path
    text = path.read_text()
    top = text.split("growth since minute 1", 1)[1].splitlines()[1]
    assert f"test_allocations.py:{_grow.__code__.co_firstlineno + 1}" in top
    size_kib = float(top.split("KiB")[0])
    assert size_kib > 1900  # 2,000 blocks of about 1 KiB
