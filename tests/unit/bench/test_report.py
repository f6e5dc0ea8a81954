"""The bench report's target verdicts, from a run's figures."""

from __future__ import annotations

from typing import Any

from bench.report import target_lines, targets


def _run(
    workers: int, servers: int, records_per_s: float, cpu_us: float
) -> dict[str, Any]:
    return {
        "sinks": "clickhouse",
        "workers": workers,
        "model_servers": servers,
        "records_per_s": records_per_s,
        "worker_cpu_us_per_record": cpu_us,
    }


def _results(
    worker_cpu: tuple[float, float], two_workers: float, p99_ms: float
) -> dict[str, Any]:
    return {
        "throughput": [
            _run(1, 1, 30_000, worker_cpu[0]),
            _run(2, 3, two_workers, worker_cpu[1]),
        ],
        "peers": {
            "runs": [
                {
                    "peer": "flink_reference_p1",
                    "title": "ref p1",
                    "parallelism": 1,
                    "records_per_s": 1_000,
                },
                {
                    "peer": "flink_async_p2",
                    "title": "async p2",
                    "parallelism": 2,
                    "records_per_s": 40_000,
                },
            ]
        },
        "latency": [{"offered_records_per_s": 2_000.0, "p99_ms": p99_ms}],
    }


def test_every_target_is_judged_on_the_runs_figures() -> None:
    judged = targets(_results((18.0, 19.5), 61_000, 99.0))
    assert judged["ratio_to_reference_flink_job"] == {
        "value": 30.0,
        "target": 30.0,
        "unit": "x",
        "met": True,
    }
    assert judged["ratio_to_every_peer_min"]["value"] == 1.5
    assert judged["worker_cpu_us_per_record_max"]["value"] == 19.5
    assert all(figure["met"] for figure in judged.values())


def test_one_run_over_the_cpu_budget_and_a_slower_peer_lost_are_misses() -> None:
    judged = targets(_results((18.0, 24.0), 30_000, 100.0))
    assert not judged["worker_cpu_us_per_record_max"]["met"]
    assert not judged["two_workers_records_per_s"]["met"]
    assert not judged["ratio_to_every_peer_min"][
        "met"
    ]  # 30,000 < the async peer's 40,000
    assert not judged["p99_ms_at_2000_records_per_s"][
        "met"
    ]  # the target is strictly under
    lines = "\n".join(target_lines(_results((18.0, 24.0), 30_000, 100.0)))
    assert "MISSES the target: worker CPU per stored record: at most 24.0 us" in lines
    assert "(1 of 2 runs within it)" in lines


def test_a_run_without_peers_or_latency_judges_what_it_has() -> None:
    results = {"throughput": [_run(2, 1, 70_000, 15.0)]}
    assert set(targets(results)) == {
        "worker_cpu_us_per_record_max",
        "two_workers_records_per_s",
    }
    assert target_lines({}) == []
