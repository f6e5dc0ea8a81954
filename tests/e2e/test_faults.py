"""What production does to the pipeline, done for real: outages, restarts, slowness, SIGTERM, poison.

Each test runs the real processes on the real local stack (Kafka,
ClickHouse and PostgreSQL are stopped and started with the stack's own code, model
servers are real ``riskstream serve`` processes, slowness and crashes are
injected by a real HTTP hop in front of one, :mod:`tests.e2e.fault_proxy`),
prints what it measured, and ends with the account: records produced =
stored (each once) + dead-lettered.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Any

import pytest

from tests.e2e.fault_proxy import FaultProxy
from tests.e2e.harness import (
    DRAIN_TIMEOUT_S,
    Pipeline,
    Worker,
    generator_run_id,
    produced_by,
    wait_until,
)

pytestmark = pytest.mark.slow

#: How long the outages last.
OUTAGE_S = 30.0

GOOD_LINE = b"5,1,1,1,2,1,3,1,1"


def server_view(worker: Worker, url: str) -> dict[str, Any]:
    """What the worker's /stats says about one model server."""
    servers = {server["url"]: server for server in worker.local()["model_servers"]}
    return servers[url]


@pytest.mark.parametrize(
    ("pipeline", "stopped"),
    [
        ("clickhouse", "clickhouse"),
        ("postgresql", "postgresql"),
        ("clickhouse,postgresql", "postgresql"),
    ],
    indirect=["pipeline"],
    ids=["clickhouse", "postgresql", "both-postgresql-down"],
)
def test_a_sink_down_for_30_s_the_worker_waits_retries_with_backoff_and_catches_up(
    pipeline: Pipeline, stopped: str
) -> None:
    """One sink's server stopped for 30 s (with two sinks, the other stays up): nothing acked meanwhile."""
    started_at = time.monotonic()
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    worker = pipeline.start_worker()
    generator = pipeline.generate("--count", "25000", "--rate", "500")
    wait_until(
        lambda: pipeline.count(sink=stopped) >= 2000,
        DRAIN_TIMEOUT_S,
        "2,000 stored predictions",
    )
    pipeline.stop_service(stopped)
    down_at = time.monotonic()
    try:
        time.sleep(5)  # inserts already sent have failed by now
        commits_early = pipeline.committed_offsets()
        while time.monotonic() - down_at < OUTAGE_S:
            assert worker.child.alive(), f"the worker died:\n{worker.child.log_tail()}"
            in_flight = worker.local()["pipeline"]["records_in_flight"]
            assert in_flight <= 4 * 2000, "the worker kept pulling from Kafka"
            time.sleep(2)
        commits_late = pipeline.committed_offsets()
    finally:
        pipeline.start_service(stopped)
    up_at = time.monotonic()
    up_ms = int(time.time() * 1000)
    backlog = pipeline.produced_so_far()
    # Nothing was acked while nothing could be stored: the commits stood still.
    assert commits_late == commits_early, (commits_early, commits_late)
    wait_until(
        lambda: pipeline.count(sink=stopped) >= backlog,
        DRAIN_TIMEOUT_S,
        "the records produced during the outage stored",
        every_s=0.2,
    )
    catch_up_s = time.monotonic() - up_at
    produced = produced_by(generator)
    wait_until(
        lambda: all(pipeline.count(sink=name) >= produced for name in pipeline.sinks),
        DRAIN_TIMEOUT_S,
        "every record stored in every sink",
    )
    assert worker.child.alive(), "the worker did not survive the outage"
    log = worker.child.log_path.read_text()
    kind = pipeline.sink(stopped).kind
    retries = len(re.findall(rf"{kind} \S+: cannot insert .* retrying in", log))
    waits = [float(x) for x in re.findall(r"retrying in ([\d.]+) s", log)]
    assert retries >= 3, "the worker did not retry the insert"
    assert max(waits) <= 5.0, "backoff above RISKSTREAM_RETRY_MAX_BACKOFF_S"
    for name in pipeline.sinks:
        # Every offset committed by the end of the outage was stored before it began.
        assert (
            pipeline.committed_but_not_stored(
                commits_late, stored_before_ms=up_ms, sink=name
            )
            == 0
        )
        rows, distinct = pipeline.distinct_record_ids(sink=name)
        raw = pipeline.count(final=False, sink=name)
        assert rows == distinct == produced, (name, rows, distinct, produced)
        assert name == "clickhouse" or raw == produced  # no duplicate row at all
    print(
        f"\n[{pipeline.run_id}] sinks {','.join(pipeline.sinks)}, {stopped} down "
        f"{up_at - down_at:.0f} s: {retries} insert retries (longest pause "
        f"{max(waits):.1f} s), commits unchanged during the outage "
        f"({sum(commits_late.values())} records); the {backlog} records produced by then "
        f"were stored {catch_up_s:.1f} s after {stopped} was back; whole test "
        f"{time.monotonic() - started_at:.0f} s"
    )
    pipeline.account(produced)


def test_a_kafka_broker_restart_mid_stream_loses_nothing(pipeline: Pipeline) -> None:
    pipeline.start_model_server()
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    worker = pipeline.start_worker()
    generator = pipeline.generate("--count", "20000", "--rate", "1000")
    run_id = generator_run_id(generator)
    wait_until(
        lambda: pipeline.count() >= 3000, DRAIN_TIMEOUT_S, "3,000 stored predictions"
    )
    restart_started = time.monotonic()
    pipeline.stop_service("kafka")
    try:
        time.sleep(5)
    finally:
        pipeline.start_service("kafka")
    restart_s = time.monotonic() - restart_started
    produced = produced_by(generator)
    assert produced == 20000, "the generator lost records it was asked to produce"
    stored = pipeline.wait_for_record_ids(run_id, produced)
    assert worker.child.alive(), f"the worker died:\n{worker.child.log_tail()}"
    duplicates = len(stored) - len(set(stored))
    dead = len(pipeline.dead_letters())
    print(
        f"\n[{pipeline.run_id}] Kafka down and back in {restart_s:.1f} s: produced {produced}, "
        f"stored {len(set(stored))} distinct ids, dead-lettered {dead}, "
        f"{duplicates} duplicates written by producer retries"
    )
    assert dead == 0
    # The generator's producer is idempotent: its retries write no second copy.
    assert duplicates == 0
    pipeline.account(produced)


def test_all_model_servers_down_for_30_s_pause_the_worker_which_resumes_after_probing(
    pipeline: Pipeline,
) -> None:
    first = pipeline.start_model_server()
    second = pipeline.start_model_server()
    pipeline.declare_feature_topic()
    worker = pipeline.start_worker()
    generator = pipeline.generate("--count", "20000", "--rate", "500")
    wait_until(
        lambda: pipeline.count() >= 2000, DRAIN_TIMEOUT_S, "2,000 stored predictions"
    )
    first.child.stop()
    second.child.stop()
    down_at = time.monotonic()
    pool = wait_until(
        lambda: (found := worker.local()["model_pool"])["in_outage"] and found,
        30,
        "/stats to show the outage",
    )
    assert pool["servers_in_rotation"] == 0 and pool["outages"] == 1
    time.sleep(5)  # batches scored before the outage are stored and committed by now
    stored_early, commits_early = pipeline.count(), pipeline.committed_offsets()
    while time.monotonic() - down_at < OUTAGE_S:
        local = worker.local()
        assert local["pipeline"]["records_in_flight"] <= 4 * 2000
        assert not any(server["in_rotation"] for server in local["model_servers"])
        time.sleep(2)
    stored_during = pipeline.count()
    # Nothing scored, nothing stored, nothing acked: the stream waited.
    assert stored_during == stored_early
    assert pipeline.committed_offsets() == commits_early, "acked while nothing scored"
    assert pipeline.committed_but_not_stored(commits_early) == 0
    pipeline.restart_model_server(first)
    pipeline.restart_model_server(second)
    back = wait_until(
        lambda: (
            (found := worker.local())["model_pool"]["servers_in_rotation"] == 2
            and found
        ),
        30,
        "both servers back in rotation",
    )
    pool = back["model_pool"]
    assert not pool["in_outage"] and pool["outages"] == 1
    assert pool["outage_s"] >= OUTAGE_S - 5
    produced = produced_by(generator)
    wait_until(
        lambda: pipeline.count() >= produced, DRAIN_TIMEOUT_S, "every record stored"
    )
    servers = back["model_servers"]
    print(
        f"\n[{pipeline.run_id}] model servers down: outage of {pool['outage_s']:.1f} s shown "
        f"in /stats, {stored_during} stored by its end; ejections "
        f"{[s['ejections'] for s in servers]}, out of rotation "
        f"{[s['out_of_rotation_s'] for s in servers]} s"
    )
    rows, distinct = pipeline.distinct_record_ids()
    assert rows == distinct == produced
    pipeline.account(produced)


def test_a_slow_model_server_leaves_rotation_by_its_latency_and_returns_when_fast(
    pipeline: Pipeline,
) -> None:
    fast = pipeline.start_model_server()
    proxied = pipeline.start_model_server()
    proxy = FaultProxy(proxied.url).start()
    try:
        pipeline.declare_feature_topic()
        worker = pipeline.start_worker(
            RISKSTREAM_MODEL_SERVERS=f"{fast.url},{proxy.url}"
        )
        generator = pipeline.generate("--count", "15000", "--rate", "500")
        wait_until(lambda: pipeline.count() >= 1000, DRAIN_TIMEOUT_S, "1,000 stored")
        assert server_view(worker, proxy.url)["in_rotation"]
        proxy.delay_s = 1.0  # well within RISKSTREAM_SCORE_TIMEOUT_S (5 s): no timeouts
        slow = wait_until(
            lambda: (
                not (view := server_view(worker, proxy.url))["in_rotation"] and view
            ),
            30,
            "the slow server to leave rotation",
        )
        assert slow["slow_ejections"] == 1
        assert slow["failures"] == 0, "it left for errors, not for its latency"
        assert slow["last_error"].startswith("slow: ")
        assert server_view(worker, fast.url)["in_rotation"]
        time.sleep(3)  # probes answer in 1 s: still too slow to come back
        assert not server_view(worker, proxy.url)["in_rotation"]
        proxy.delay_s = 0.0
        wait_until(
            lambda: server_view(worker, proxy.url)["in_rotation"],
            30,
            "the server to come back once fast",
        )
        requests_back = server_view(worker, proxy.url)["requests"]
        wait_until(
            lambda: server_view(worker, proxy.url)["requests"] > requests_back,
            30,
            "the server to get requests again",
        )
        produced = produced_by(generator)
        wait_until(
            lambda: pipeline.count() >= produced, DRAIN_TIMEOUT_S, "every record stored"
        )
        view = server_view(worker, proxy.url)
        print(
            f"\n[{pipeline.run_id}] 1 s delay: left rotation for slowness "
            f"({slow['last_error']}), back after the delay was removed; "
            f"out of rotation {view['out_of_rotation_s']:.1f} s, failures {view['failures']}"
        )
        pipeline.account(produced)
    finally:
        proxy.stop()


def test_sigterm_abandons_stuck_batches_within_the_timeout_and_commits_only_what_is_stored(
    pipeline: Pipeline,
) -> None:
    server = pipeline.start_model_server()
    proxy = FaultProxy(server.url).start()
    try:
        pipeline.declare_feature_topic()
        settings = {
            "RISKSTREAM_MODEL_SERVERS": proxy.url,
            "RISKSTREAM_WORKER_SHUTDOWN_TIMEOUT_S": "5",
            "RISKSTREAM_COMMIT_INTERVAL_S": "1",
        }
        worker = pipeline.start_worker("worker", **settings)
        generator = pipeline.generate("--count", "10000", "--rate", "1000")
        wait_until(lambda: pipeline.count() >= 2000, DRAIN_TIMEOUT_S, "2,000 stored")
        proxy.delay_s = 3600.0  # every request hangs: the batches in flight are stuck
        stuck = wait_until(
            lambda: (
                (found := worker.local()["pipeline"])["records_in_flight"] > 0 and found
            ),
            30,
            "batches stuck in flight",
        )
        time.sleep(2)
        stopping_at = time.monotonic()
        code = worker.child.stop(timeout_s=60)
        took_s = time.monotonic() - stopping_at
        assert code == 0, f"exit code {code}:\n{worker.child.log_tail()}"
        assert took_s < 5 + 15, f"the worker took {took_s:.1f} s to stop"
        log = worker.child.log_path.read_text()
        abandoned = re.search(r"(\d+) records in flight abandoned unacked", log)
        assert abandoned and int(abandoned.group(1)) > 0, log[-3000:]
        commits = pipeline.committed_offsets()
        assert pipeline.committed_but_not_stored(commits) == 0
        proxy.delay_s = 0.0
        produced = pipeline.store_the_rest_with_a_new_worker(generator, **settings)
        print(
            f"\n[{pipeline.run_id}] SIGTERM with {stuck['records_in_flight']} records stuck "
            f"in flight: exited 0 after {took_s:.1f} s, abandoned {abandoned.group(1)} unacked, "
            f"committed {sum(commits.values())} (all stored); after the restart every "
            f"record stored once"
        )
        pipeline.account(produced)
    finally:
        proxy.stop()


def test_a_poison_record_and_an_oversized_one_are_dead_lettered_and_the_rest_is_stored(
    pipeline: Pipeline,
) -> None:
    server = pipeline.start_model_server()
    proxy = FaultProxy(server.url).start()
    proxy.fail_marker = b"9.25"  # a value within 1-10 no other record has
    try:
        pipeline.declare_feature_topic()
        worker = pipeline.start_worker(RISKSTREAM_MODEL_SERVERS=proxy.url)
        poison = {f"{pipeline.run_id}-1000", f"{pipeline.run_id}-2500"}
        oversized = (
            f"{pipeline.run_id}-3000"  # over RISKSTREAM_MAX_RECORD_BYTES (64 KiB)
        )
        values = {key: b"5,1,1,1,2,1,3,1,9.25" for key in poison}
        values[oversized] = b"5," * 40_000
        records = [
            (key.encode(), values.get(key, GOOD_LINE))
            for key in (f"{pipeline.run_id}-{i}" for i in range(4000))
        ]
        produced = pipeline.produce(records)
        letters = wait_until(
            lambda: len(found := pipeline.dead_letters()) >= 3 and found,
            DRAIN_TIMEOUT_S,
            "three dead letters",
        )
        wait_until(
            lambda: pipeline.count() >= produced - 3,
            DRAIN_TIMEOUT_S,
            "every good record stored",
        )
        by_key = {
            base64.b64decode(letter["raw_key_base64"]).decode(): letter
            for letter in letters
        }
        assert set(by_key) == poison | {oversized}
        for key in poison:
            assert by_key[key]["stage"] == "score"
            assert "failed 3 times on this request" in by_key[key]["reason"]
            assert "injected failure" in by_key[key]["reason"]
        assert by_key[oversized]["stage"] == "decode"
        assert by_key[oversized]["reason"].startswith(
            "record of 80000 bytes exceeds the limit of 65536 bytes"
        )
        assert not set(pipeline.stored_record_ids()) & (poison | {oversized})
        print(
            f"\n[{pipeline.run_id}] 2 poison records: {proxy.failed} failed requests "
            f"(bounded: 3 per split level), then dead-lettered; the 80,000-byte record "
            f"dead-lettered unscored; {server_view(worker, proxy.url)['ejections']} "
            f"ejections on the way"
        )
        pipeline.account(produced)
    finally:
        proxy.stop()
