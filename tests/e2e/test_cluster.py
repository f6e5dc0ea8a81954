"""Node loss on the cluster topology, done for real: three brokers, ZooKeeper, 2 shards x 2 replicas.

The cluster runs beside the single stack (:meth:`Settings.cluster_beside`:
its own folder, every port + 20), brought up by the stack's own code. Each
test kills or stops a node with the stack's pid files (``kill -9``, or
``riskstream stack stop NAME``), prints produced / stored (each once) /
dead-lettered and the time each step took, and must lose and duplicate
nothing: every record id stored exactly once through the ``Distributed``
table's ``FINAL``.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from core.settings import Settings
from stack import control as stack_control
from stack.launch import Child
from stack.processes import is_alive
from tests.e2e.harness import (
    DRAIN_TIMEOUT_S,
    CommitWatch,
    Pipeline,
    Worker,
    generator_run_id,
    produced_by,
    wait_until,
)
from tests.private_clickhouse import admin_query

pytestmark = [pytest.mark.slow, pytest.mark.cluster]

#: How long ZooKeeper stays down.
OUTAGE_S = 30.0


@pytest.fixture(scope="module")
def cluster(stack: Settings) -> Iterator[Settings]:
    """The cluster topology's settings, every node answering; stopped after the module."""
    settings = stack.cluster_beside()
    started_at = time.monotonic()
    started = asyncio.run(stack_control.up(settings))
    print(
        f"\ncluster topology: {len(started)} services started in "
        f"{time.monotonic() - started_at:.0f} s ({', '.join(started) or 'already up'})"
    )
    try:
        yield settings
    finally:
        asyncio.run(stack_control.down(settings, started))


@pytest.fixture
def pipeline(
    cluster: Settings, model_repository: Path, tmp_path: Path
) -> Iterator[Pipeline]:
    run = Pipeline(cluster, model_repository, tmp_path)
    try:
        yield run
    finally:
        run.stop_all()
        run.drop_databases()


def kill_service(settings: Settings, name: str) -> int:
    """``kill -9`` the stack's process ``name`` (a crash, no goodbye); returns its pid once gone."""
    [service] = stack_control.services(settings, [name])
    pid = service.pid_file.owned_pid()
    assert pid is not None, f"{name} is not running"
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not is_alive(pid), 30, f"{name} (pid {pid}) to be gone")
    return pid


def leader_of(settings: Settings, topic: str, partition: int = 0) -> int:
    """The node id of the broker leading ``topic``'s ``partition``."""

    async def describe() -> int:
        admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
        await admin.start()
        try:
            [described] = await admin.describe_topics([topic])
        finally:
            await admin.close()
        [found] = [p for p in described["partitions"] if p["partition"] == partition]
        return int(found["leader"])

    return asyncio.run(describe())


def replica_rows(settings: Settings, database: str, node: int) -> int:
    """Rows (replays included) in ``predictions_local`` of the ``node``-th ClickHouse server."""
    http_port = settings.topology.clickhouse[node].http_port
    at_node = settings.model_copy(update={"clickhouse_http_port": http_port})
    return int(
        admin_query(at_node, f"SELECT count() FROM {database}.predictions_local")
    )


def assert_each_record_once(
    pipeline: Pipeline, generator_run: str, produced: int
) -> None:
    stored = pipeline.wait_for_record_ids(generator_run, produced)
    assert len(stored) == len(set(stored)), "a record stored twice after FINAL"
    pipeline.account(produced)


def start_streaming(
    pipeline: Pipeline, count: int, rate: int, stored_first: int
) -> tuple[Worker, Child, str]:
    """A model server, a worker and a generator of ``count`` records at ``rate``; back once ``stored_first`` are stored."""
    pipeline.start_model_server()
    pipeline.declare_feature_topic()
    worker = pipeline.start_worker()
    generator = pipeline.generate("--count", str(count), "--rate", str(rate))
    wait_until(
        lambda: pipeline.count(final=False) >= stored_first,
        DRAIN_TIMEOUT_S,
        f"{stored_first:,} stored predictions",
    )
    return worker, generator, generator_run_id(generator)


def test_the_broker_leading_a_feature_partition_killed_mid_stream_loses_nothing(
    pipeline: Pipeline,
) -> None:
    started_at = time.monotonic()
    worker, generator, run = start_streaming(pipeline, 50000, 2000, 15000)
    leader = f"kafka-{leader_of(pipeline.settings, pipeline.feature_topic)}"
    kill_service(pipeline.settings, leader)
    killed_at = time.monotonic()
    stored_at_kill = pipeline.count(final=False)
    wait_until(
        lambda: pipeline.count(final=False) >= stored_at_kill + 10000,
        DRAIN_TIMEOUT_S,
        "10,000 more records stored with the broker dead",
    )
    down_s = time.monotonic() - killed_at
    pipeline.start_service(leader)
    produced = produced_by(generator)
    assert produced == 50000, "the generator lost records it was asked to produce"
    assert worker.child.alive(), f"the worker died:\n{worker.child.log_tail()}"
    assert_each_record_once(pipeline, run, produced)
    print(
        f"\n[{pipeline.run_id}] {leader} (leader of partition 0) killed at "
        f"{stored_at_kill:,} stored; 10,000 more stored in {down_s:.1f} s with it dead; "
        f"whole test {time.monotonic() - started_at:.0f} s"
    )


def test_a_clickhouse_replica_killed_mid_stream_the_other_takes_over_and_it_catches_up(
    pipeline: Pipeline,
) -> None:
    """The writer's first server (s1r1) dies: its connection moves on, its shard's peer keeps the rows."""
    started_at = time.monotonic()
    first, peer = pipeline.settings.topology.clickhouse[:2]
    worker, generator, run = start_streaming(pipeline, 30000, 1500, 5000)
    kill_service(pipeline.settings, first.name)
    killed_at = time.monotonic()
    # Counted through the peer: the first server is gone.
    at_peer = pipeline.settings.model_copy(
        update={"clickhouse_http_port": peer.http_port}
    )
    stored_at_kill = int(
        admin_query(at_peer, f"SELECT count() FROM {pipeline.database}.predictions")
    )
    wait_until(
        lambda: (
            int(
                admin_query(
                    at_peer, f"SELECT count() FROM {pipeline.database}.predictions"
                )
            )
            >= stored_at_kill + 5000
        ),
        DRAIN_TIMEOUT_S,
        "5,000 more records stored with a replica dead",
    )
    down_s = time.monotonic() - killed_at
    pipeline.start_service(first.name)
    produced = produced_by(generator)
    assert worker.child.alive(), f"the worker died:\n{worker.child.log_tail()}"
    assert_each_record_once(pipeline, run, produced)
    caught_up_at = time.monotonic()
    rows = wait_until(
        lambda: (
            (
                counts := (
                    replica_rows(pipeline.settings, pipeline.database, 0),
                    replica_rows(pipeline.settings, pipeline.database, 1),
                )
            )[0]
            == counts[1]
            and counts
        ),
        DRAIN_TIMEOUT_S,
        f"{first.name} to hold as many rows as {peer.name}",
    )
    failovers = len(
        re.findall(r": cannot insert \d+ rows", worker.child.log_path.read_text())
    )
    print(
        f"\n[{pipeline.run_id}] {first.name} killed at {stored_at_kill:,} stored; "
        f"5,000 more stored through {peer.name} in {down_s:.1f} s ({failovers} insert "
        f"retries); after its restart both replicas of shard 1 hold {rows[0]:,} rows "
        f"({time.monotonic() - caught_up_at:.1f} s after the last record); whole test "
        f"{time.monotonic() - started_at:.0f} s"
    )


def test_zookeeper_down_for_30_s_inserts_wait_nothing_is_committed_past_a_stored_row(
    pipeline: Pipeline,
) -> None:
    started_at = time.monotonic()
    worker, generator, run = start_streaming(pipeline, 20000, 500, 2000)
    with CommitWatch(pipeline) as watch:
        pipeline.stop_service("zookeeper")
        down_at = time.monotonic()
        try:
            time.sleep(5)  # inserts in flight have failed by now
            stored_early = pipeline.count(final=False)
            while time.monotonic() - down_at < OUTAGE_S:
                assert worker.child.alive(), (
                    f"the worker died:\n{worker.child.log_tail()}"
                )
                time.sleep(2)
            stored_late = pipeline.count(final=False)
        finally:
            pipeline.start_service("zookeeper")
        up_at = time.monotonic()
        produced = produced_by(generator)
        assert_each_record_once(pipeline, run, produced)
        caught_up_s = time.monotonic() - up_at
    log = worker.child.log_path.read_text()
    retries = len(re.findall(r": cannot insert \d+ rows", log))
    assert retries >= 3, "the writer did not retry the read-only tables"
    assert stored_late == stored_early, "rows stored while ZooKeeper was down"
    assert watch.samples > 0 and not watch.errors, watch.errors
    assert not watch.violations, (
        f"offsets committed past unstored rows: {watch.violations[:3]}"
    )
    print(
        f"\n[{pipeline.run_id}] ZooKeeper down {up_at - down_at:.0f} s: {retries} insert "
        f"retries, nothing stored meanwhile ({stored_late:,} rows before and after), "
        f"{watch.samples} commit samples, none past an unstored row; every record stored "
        f"{caught_up_s:.1f} s after it was back; whole test "
        f"{time.monotonic() - started_at:.0f} s"
    )


def test_a_worker_killed_while_a_broker_is_down_its_successor_stores_the_rest(
    pipeline: Pipeline,
) -> None:
    started_at = time.monotonic()
    worker, generator, run = start_streaming(pipeline, 20000, 1000, 4000)
    broker = pipeline.settings.topology.kafka[1].name
    kill_service(pipeline.settings, broker)
    time.sleep(3)
    worker.child.kill()
    stored_at_kill = pipeline.count(final=False)
    pipeline.start_worker("worker-after-the-crash")
    wait_until(
        lambda: pipeline.count(final=False) >= stored_at_kill + 3000,
        DRAIN_TIMEOUT_S,
        "the new worker storing with the broker still dead",
    )
    pipeline.start_service(broker)
    produced = produced_by(generator)
    assert_each_record_once(pipeline, run, produced)
    raw = pipeline.count(final=False)
    print(
        f"\n[{pipeline.run_id}] {broker} killed, then the worker (at {stored_at_kill:,} "
        f"rows); its successor stored on with the broker dead; {raw - produced:,} rows "
        f"replayed from the last commit, merged away by FINAL; whole test "
        f"{time.monotonic() - started_at:.0f} s"
    )
