"""A stop is bounded whatever is down: SIGTERM with Kafka, ClickHouse or every model server gone.

Each test streams records through a real worker, takes one dependency away,
sends SIGTERM and times the exit: it must come within
``RISKSTREAM_WORKER_SHUTDOWN_TIMEOUT_S`` plus a few seconds of Faust's own
stop, with nothing committed that is not stored. The dependency then comes
back and a second worker stores every record once.
"""

from __future__ import annotations

import time

import pytest

from tests.e2e.harness import DRAIN_TIMEOUT_S, Pipeline, produced_by, wait_until

pytestmark = pytest.mark.slow

#: The worker's shutdown timeout in these tests.
SHUTDOWN_TIMEOUT_S = 5.0

#: What Faust's stop may add to it (services, consumer, producer, web server).
STOP_SLACK_S = 7.0


@pytest.mark.parametrize("down", ["kafka", "clickhouse", "model servers"])
def test_sigterm_exits_in_bounded_time_whatever_is_down(
    pipeline: Pipeline, down: str
) -> None:
    server = pipeline.start_model_server()
    pipeline.declare_feature_topic()
    settings = {
        "RISKSTREAM_WORKER_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_TIMEOUT_S),
        "RISKSTREAM_COMMIT_INTERVAL_S": "1",
    }
    worker = pipeline.start_worker("worker", **settings)
    generator = pipeline.generate("--count", "6000", "--rate", "1000")
    wait_until(lambda: pipeline.count() >= 1000, DRAIN_TIMEOUT_S, "1,000 stored")
    if down == "model servers":
        server.child.stop()
    else:
        if down == "kafka":
            produced_by(generator)  # the generator finishes before its broker goes
        pipeline.stop_service(down)
    try:
        time.sleep(3)  # requests, inserts or fetches in flight have failed by now
        commits = pipeline.committed_offsets() if down != "kafka" else None
        stopping_at = time.monotonic()
        code = worker.child.stop(timeout_s=120)
        took_s = time.monotonic() - stopping_at
    finally:
        if down == "model servers":
            pipeline.restart_model_server(server)
        else:
            pipeline.start_service(down)
    assert code == 0, f"exit code {code}:\n{worker.child.log_tail()}"
    print(
        f"\n[{pipeline.run_id}] SIGTERM with {down} down: exited {code} after "
        f"{took_s:.1f} s (shutdown timeout {SHUTDOWN_TIMEOUT_S:.0f} s)"
    )
    assert took_s < SHUTDOWN_TIMEOUT_S + STOP_SLACK_S, (
        f"the worker took {took_s:.1f} s to stop with {down} down:\n"
        f"{worker.child.log_tail()}"
    )
    if commits is not None:
        assert pipeline.committed_but_not_stored(commits) == 0
    assert pipeline.committed_but_not_stored(pipeline.committed_offsets()) == 0
    produced = pipeline.store_the_rest_with_a_new_worker(generator, **settings)
    pipeline.account(produced)
