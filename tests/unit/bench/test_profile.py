"""The profile's breakdown of py-spy's collapsed stacks into the pipeline's parts."""

from __future__ import annotations

from typing import Any

import pytest

from bench.profile import OTHER, ROOT, breakdown, profile_lines, read_collapsed

RAW = """\
<module> (faust/__main__.py:3);_run_once (asyncio/base_events.py:1922);Handle._run (asyncio/events.py:80);Sink._store.<locals>.connected_insert (tables/sink.py:317);ClickHouseSink._insert ({root}tables/clickhouse.py:117) 30
<module> (faust/__main__.py:3);Handle._run (asyncio/events.py:80);BatchProcessor.process (agents/pipeline.py:189);BatchProcessor._row (agents/pipeline.py:339) 20
<module> (faust/__main__.py:3);Handle._run (asyncio/events.py:80);BatchProcessor.process (agents/pipeline.py:226);bucket_counts (tables/histogram.py:30) 10
<module> (faust/__main__.py:3);Handle._run (asyncio/events.py:80);BatchGuardConsumer._deliver (transport/consumer.py:180);Event.__init__ (/venv/lib/python3.11/site-packages/faust/events.py:99) 25
<module> (faust/__main__.py:3);EpollSelector.select (selectors.py:468) 10
collect (gc) 5
not a line
""".replace("{root}", ROOT)


def test_each_sample_goes_to_the_innermost_part_that_names_it() -> None:
    found = breakdown(read_collapsed(RAW.splitlines()))
    assert found.samples == 100
    assert found.parts["ClickHouse insert (asynch and its Cython column writers)"] == 30
    assert found.parts["stored rows built from the answers"] == 20
    # a frame under BatchProcessor.process that no inner part names stays with the batch
    assert found.parts["the rest of a batch (tallies, latency histogram)"] == 10
    assert (
        found.parts[
            "Kafka fetch and Faust's delivery (messages, events, the agent's channel)"
        ]
        == 25
    )
    assert found.parts["the event loop: select and scheduling"] == 10
    assert found.parts[OTHER] == 5
    assert found.functions["Event.__init__ (faust/events.py)"] == 25
    assert found.functions["ClickHouseSink._insert (tables/clickhouse.py)"] == 30


def test_the_printed_parts_add_up_to_the_worker_cpu_per_record() -> None:
    found = breakdown(read_collapsed(RAW.splitlines()))
    us = 25.0
    parts = {n: found.share(c) * us for n, c in found.parts.most_common()}
    result: dict[str, Any] = {
        "workers": 1,
        "model_servers": 3,
        "records": 200_000,
        "drain_s": 8.0,
        "records_per_s": 25_000.0,
        "worker_cpu_us_per_record": us,
        "samples": found.samples,
        "parts_us_per_record": parts,
        "functions_self_share": {
            n: found.share(c) for n, c in found.functions.most_common()
        },
    }
    assert sum(parts.values()) == pytest.approx(us)
    lines = profile_lines(result)
    assert "worker CPU 25.0 us per stored record (100 samples)" in lines[1]
    assert lines[3].split()[:2] == ["7.50", "us"]  # the insert: 30 % of 25 us
