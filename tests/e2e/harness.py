"""The whole pipeline for real: model servers, Faust workers and the generator as processes.

The helpers the end-to-end tests drive it with; the fixtures are in conftest.py.

Every test gets its own topics, consumer group and database in each sink (a
fresh run id), so tests neither see nor disturb each other's records; the
processes are the commands the README runs (``riskstream serve``, ``faust -A
app worker``, ``riskstream datagen``), configured through ``RISKSTREAM_*``
variables, on free ports. Every test ends with the account that must
balance: records produced = predictions stored (each once) + dead letters.
What is stored is read through the sinks' own queries
(:class:`tables.sink.Sink`), so a test runs unchanged on ClickHouse,
PostgreSQL or both (``Pipeline.sinks``).
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from asynch import errors as asynch_errors

from core.settings import Settings
from stack import control as stack_control
from stack.errors import StackError
from stack.launch import Child
from stack.rig import RunRig, get_json
from tables.sink import Sink
from tests.ports import free_port, restartable_port

#: What a query of a table the worker has not created yet raises.
NO_TABLE_YET = (
    asynch_errors.ServerException,
    asyncpg.UndefinedTableError,
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidSchemaNameError,
)

#: Seconds a model server or a worker may take to come up on this 2-core machine.
START_TIMEOUT_S = 90.0

#: Partitions of the feature topic in these tests (two workers get two each).
PARTITIONS = 4


#: Seconds a pipeline may take to store what was produced.
DRAIN_TIMEOUT_S = 180.0


def wait_until(
    check: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.5
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every_s)
    raise AssertionError(
        f"timed out after {timeout_s:.0f} s waiting for {what} (last: {last!r})"
    )


def produced_by(generator: Child, timeout_s: float = 300.0) -> int:
    """Wait for ``riskstream datagen`` to finish; the records Kafka acknowledged, from its last line."""
    assert generator.process.wait(timeout_s) == 0, (
        f"generator failed:\n{generator.log_tail()}"
    )
    match = re.search(r"produced ([\d,]+) records to", generator.log_path.read_text())
    assert match, f"generator did not report its count:\n{generator.log_tail()}"
    return int(match.group(1).replace(",", ""))


def generator_run_id(generator: Child) -> str:
    """The run id in the generator's record ids (``<run id>-<sequence>``), from its start line."""
    found = wait_until(
        lambda: re.search(r"generator (\w+) started", generator.log_path.read_text()),
        60,
        "the generator's start line",
    )
    return str(found.group(1))


@dataclass
class ModelServer:
    url: str
    child: Child


@dataclass
class Pipeline:
    """One test's pipeline: its names, its processes and ways to look at the result.

    The names, the children and the commands are a :class:`stack.rig.RunRig`
    (``rig``), shared with the bench; this class adds what the tests look
    at. Composition, not a subclass: the tests' ``database`` is one name
    (a property), the rig's a name per purpose (a method).
    """

    settings: Settings
    repository: Path
    workdir: Path
    run_id: str = field(default_factory=lambda: secrets.token_hex(4))
    children: list[Child] = field(default_factory=list)
    servers: list[ModelServer] = field(default_factory=list)
    #: The stores the workers write to (``RISKSTREAM_SINKS``); queries ask the first.
    sinks: tuple[str, ...] = ("clickhouse",)
    rig: RunRig = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rig = RunRig(
            self.settings,
            self.workdir,
            self.repository,
            "e2e",
            self.run_id,
            PARTITIONS,
            START_TIMEOUT_S,
        )
        # one list: a test may adopt a child of its own (pipeline.children.append)
        self.rig.children = self.children

    def use_settings(self, settings: Settings) -> None:
        """Look at (and start processes against) another stack from now on, the rig too."""
        self.settings = self.rig.settings = settings

    @property
    def app_id(self) -> str:
        return f"e2e-{self.run_id}"

    @property
    def feature_topic(self) -> str:
        return self.rig.topic("features")

    @property
    def dlq_topic(self) -> str:
        return self.rig.topic("dlq")

    @property
    def labels_topic(self) -> str:
        return self.rig.topic("labels")

    @property
    def database(self) -> str:
        return self.rig.database()

    # --- processes --------------------------------------------------------
    def start_model_server(
        self, port: int | None = None, pmml: Path | None = None, **env: str
    ) -> ModelServer:
        """``riskstream serve`` on ``port`` (a free one by default), with extra ``RISKSTREAM_*`` ``env``.

        It serves the repository's model, or the PMML file ``pmml``.
        """
        port = port if port is not None else restartable_port()
        child, urls = self.rig.serve(port, served_name="m", pmml=pmml, env=env)
        server = ModelServer(urls[0], child)
        if all(known.url != server.url for known in self.servers):
            self.servers.append(server)
        return server

    def restart_model_server(self, server: ModelServer) -> ModelServer:
        """Start a stopped server again on its own port (the workers know it by its URL)."""
        port = int(server.url.rsplit(":", 1)[1])
        restarted = self.start_model_server(port)
        self.servers = [restarted if s.url == server.url else s for s in self.servers]
        return restarted

    def stop_service(self, name: str) -> None:
        """Stop one service of the local stack (``riskstream stack stop NAME``)."""
        asyncio.run(stack_control.down(self.settings, [name]))

    def start_service(self, name: str, timeout_s: float = 120.0) -> None:
        """Start it again and wait until it answers (``riskstream stack start NAME``).

        Retried: with the stack's port inside the kernel's ephemeral range
        (as in a run with moved ports), a client that retried meanwhile may
        hold the port for up to a minute (see :func:`restartable_port`).
        """
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                asyncio.run(stack_control.up(self.settings, [name]))
                return
            except StackError as error:
                if time.monotonic() > deadline:
                    raise
                print(
                    f"{name} did not start ({error.message.splitlines()[0]}); retrying"
                )
                time.sleep(5)

    def env(self, **extra: str) -> dict[str, str]:
        return {
            **self.rig.worker_env(
                self.app_id,
                self.feature_topic,
                self.database,
                [server.url for server in self.servers],
                self.sinks,
            ),
            "RISKSTREAM_DLQ_TOPIC": self.dlq_topic,
            "RISKSTREAM_LABELS_TOPIC": self.labels_topic,
            "RISKSTREAM_STATS_WINDOW_S": "10",
            "RISKSTREAM_PROBE_INTERVAL_S": "0.5",
            **extra,
        }

    def declare_feature_topic(self) -> None:
        """Create the topic before a worker joins, as the generator does."""
        self.rig.declare(self.feature_topic)

    def start_worker(self, name: str = "worker", **settings: str) -> Worker:
        port = free_port()
        (child,) = self.rig.start_workers([name], [port], self.env(**settings))
        worker = Worker(name, f"http://127.0.0.1:{port}", child)
        wait_until(
            worker.ready, START_TIMEOUT_S, f"{name} to own partitions and be ready"
        )
        return worker

    def generate(self, *args: str, schema_from: str = "repository") -> Child:
        """``riskstream datagen ARGS`` in the background, the schema from ``schema_from``."""
        return self.rig.generator(
            args, self.env(), f"generator-{len(self.children)}.log", schema_from
        )

    def produce(
        self, records: Sequence[tuple[bytes, bytes]], topic: str | None = None
    ) -> int:
        """Send (key, value) records to ``topic`` (default: the feature topic); returns how many Kafka acknowledged."""
        topic = topic or self.feature_topic

        self.rig.declare(topic)

        async def send() -> int:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.settings.kafka_bootstrap, acks="all"
            )
            await producer.start()
            try:
                futures = [await producer.send(topic, v, key=k) for k, v in records]
                results = await asyncio.gather(*futures)
            finally:
                await producer.stop()
            return len(results)

        return asyncio.run(send())

    def stop_all(self) -> None:
        self.rig.stop_all(timeout_s=20)

    # --- looking at the result -------------------------------------------
    def clickhouse(self, query: str) -> str:
        return self.rig.clickhouse(query)

    def sink(self, name: str | None = None) -> Sink:
        """The sink ``name`` (default: the first of :attr:`sinks`) on this test's database, for queries."""
        return self.rig.sink(name or self.sinks[0], self.database)

    def count(self, final: bool = True, sink: str | None = None) -> int:
        """Records stored once each (``final``), or rows, replays included, in one sink."""
        store = self.sink(sink)
        try:
            return asyncio.run(store.count_records() if final else store.count_rows())
        except NO_TABLE_YET:
            return 0  # the worker has not created the table yet

    def count_labels(self, sink: str | None = None) -> int:
        """Label messages stored, each once, in one sink."""
        try:
            return asyncio.run(self.sink(sink).count_labels())
        except NO_TABLE_YET:
            return 0

    def labelled(self, sink: str | None = None) -> list[tuple[str, str]]:
        """(record id, latest label) of every labelled prediction, from the sink's view."""
        try:
            return asyncio.run(self.sink(sink).labelled())
        except NO_TABLE_YET:
            return []

    def rows(
        self, columns: Sequence[str], sink: str | None = None
    ) -> list[tuple[Any, ...]]:
        """``columns`` of every stored record, each once."""
        try:
            return asyncio.run(self.sink(sink).rows(columns))
        except NO_TABLE_YET:
            return []

    def store_the_rest_with_a_new_worker(
        self, generator: Child, name: str = "worker-restarted", **settings: str
    ) -> int:
        """After a fault: a new worker, then every record ``generator`` produced stored once.

        Returns how many it produced.
        """
        self.start_worker(name, **settings)
        produced = produced_by(generator)
        wait_until(
            lambda: self.count() >= produced, DRAIN_TIMEOUT_S, "every record stored"
        )
        rows, distinct = self.distinct_record_ids()
        assert rows == distinct == produced
        return produced

    def wait_for_record_ids(self, generator_run: str, produced: int) -> list[str]:
        """Every id of a generator run's ``produced`` records stored; returns the ids stored (repeats kept)."""
        expected = {f"{generator_run}-{sequence}" for sequence in range(produced)}
        stored: list[str] = wait_until(
            lambda: (
                (ids := self.stored_record_ids())
                and len(set(ids) & expected) == produced
                and ids
            ),
            DRAIN_TIMEOUT_S,
            "every record id stored",
        )
        assert set(stored) == expected
        return stored

    def distinct_record_ids(self, sink: str | None = None) -> tuple[int, int]:
        """(records stored once each, distinct record ids among them)."""
        ids = [record_id for (record_id,) in self.rows(["record_id"], sink)]
        return self.count(sink=sink), len(set(ids))

    def committed_offsets(self) -> dict[int, int]:
        """The consumer group's committed offset per feature partition (the next to read)."""

        async def committed() -> dict[int, int]:
            admin = AIOKafkaAdminClient(bootstrap_servers=self.settings.kafka_bootstrap)
            await admin.start()
            try:
                offsets = await admin.list_consumer_group_offsets(self.app_id)
            finally:
                await admin.close()
            return {
                tp.partition: meta.offset
                for tp, meta in offsets.items()
                if tp.topic == self.feature_topic and meta.offset >= 0
            }

        return asyncio.run(committed())

    def committed_but_not_stored(
        self,
        commits: dict[int, int],
        stored_before_ms: int | None = None,
        count_dead_letters: bool = True,
        sink: str | None = None,
    ) -> int:
        """Committed offsets with neither a row (stored before ``stored_before_ms``) nor a dead letter.

        Zero means every commit covered only records already in ClickHouse
        or in the dead-letter topic: nothing was acked ahead of its store.
        ``count_dead_letters=False`` skips reading the dead-letter topic
        (seconds) where a test produces no bad record.
        """
        if not commits:
            return 0
        stored: dict[int, int] = {}
        for topic, partition, offset, stored_at_ms in self.rows(
            ["source_topic", "source_partition", "source_offset", "stored_at_ms"], sink
        ):
            if (
                topic == self.feature_topic
                and offset < commits.get(partition, 0)
                and (stored_before_ms is None or stored_at_ms < stored_before_ms)
            ):
                stored[partition] = stored.get(partition, 0) + 1
        dead: dict[int, int] = {}
        for letter in self.dead_letters() if count_dead_letters else []:
            partition = letter["source_partition"]
            if letter["source_offset"] < commits.get(partition, 0):
                dead[partition] = dead.get(partition, 0) + 1
        return sum(
            offset - stored.get(partition, 0) - dead.get(partition, 0)
            for partition, offset in commits.items()
        )

    def produced_so_far(self) -> int:
        """Records in the feature topic right now (the sum of its partitions' end offsets)."""

        async def end_offsets() -> int:
            consumer = AIOKafkaConsumer(bootstrap_servers=self.settings.kafka_bootstrap)
            await consumer.start()
            try:
                partitions = [
                    TopicPartition(self.feature_topic, p) for p in range(PARTITIONS)
                ]
                ends = await consumer.end_offsets(partitions)
            finally:
                await consumer.stop()
            return sum(ends.values())

        return asyncio.run(end_offsets())

    def stored_record_ids(self, sink: str | None = None) -> list[str]:
        """The record id of every stored record (one per Kafka record)."""
        return [record_id for (record_id,) in self.rows(["record_id"], sink)]

    def stored_beyond_commit(self) -> int:
        """Records stored whose offsets the consumer group has not committed (to be replayed)."""
        commits = self.committed_offsets()
        return sum(
            1
            for partition, offset in self.rows(["source_partition", "source_offset"])
            if offset >= commits.get(partition, 0)
        )

    def dead_letters(
        self, stages: Sequence[str] = ("decode", "score")
    ) -> list[dict[str, Any]]:
        """Every dead letter of ``stages`` (default: the feature records'), once per source record.

        The topic is at-least-once; the labels' letters (stage ``label``) are
        not feature records, so the account leaves them out.
        """

        async def read() -> list[dict[str, Any]]:
            consumer = AIOKafkaConsumer(
                self.dlq_topic,
                bootstrap_servers=self.settings.kafka_bootstrap,
                auto_offset_reset="earliest",
                enable_auto_commit=False,
                group_id=None,
            )
            await consumer.start()
            letters: dict[tuple[str, int, int], dict[str, Any]] = {}
            try:
                while True:
                    batch = await consumer.getmany(timeout_ms=3000)
                    if not batch:
                        break
                    for messages in batch.values():
                        for message in messages:
                            letter = json.loads(message.value)
                            if letter["stage"] not in stages:
                                continue
                            key = (
                                letter["source_topic"],
                                letter["source_partition"],
                                letter["source_offset"],
                            )
                            letters[key] = letter
            finally:
                await consumer.stop()
            return list(letters.values())

        return asyncio.run(read())

    def account(self, produced: int) -> tuple[int, int]:
        """Print and check the balance in every sink: produced = stored once + dead-lettered."""
        dead = len(self.dead_letters())
        stored = 0
        for name in self.sinks:
            stored = self.count(sink=name)
            print(
                f"\n[{self.run_id}] {name}: produced {produced}, stored once {stored}, "
                f"dead-lettered {dead}"
            )
            assert produced == stored + dead, (
                f"{name}: records do not add up: produced {produced} != "
                f"stored {stored} + dead-lettered {dead}"
            )
        return stored, dead

    def drop_databases(self) -> None:
        """Drop this test's database in each sink it used (best effort: the figures are taken)."""
        self.rig.drop_database(self.database, self.sinks)


class CommitWatch:
    """Samples the group's committed offsets while a test runs; each must cover stored records only.

    A sample reads the commits first, then the clock: every record below
    a commit must have a row stamped before that moment (the writer stamps
    rows before it inserts them, and a record is acked, hence committable,
    only after its insert returned). Runs in a thread next to the test.
    """

    def __init__(self, pipeline: Pipeline, every_s: float = 0.2) -> None:
        self._pipeline = pipeline
        self._every_s = every_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.samples = 0
        self.committed_records = 0
        #: (committed offsets, records among them not stored by then), for each bad sample
        self.violations: list[tuple[dict[int, int], int]] = []
        self.errors: list[str] = []

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(60)

    def _run(self) -> None:
        while not self._stop.wait(self._every_s):
            try:
                commits = self._pipeline.committed_offsets()
                sampled_at_ms = int(time.time() * 1000)
                unstored = self._pipeline.committed_but_not_stored(
                    commits, stored_before_ms=sampled_at_ms, count_dead_letters=False
                )
            except (OSError, urllib.error.URLError, KafkaError) as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
                continue
            self.samples += 1
            self.committed_records = max(self.committed_records, sum(commits.values()))
            if unstored:
                self.violations.append((commits, unstored))


@dataclass
class Worker:
    name: str
    url: str
    child: Child

    def local(self) -> dict[str, Any]:
        body: dict[str, Any] = get_json(f"{self.url}/stats/local")
        return body

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = get_json(f"{self.url}/stats")
        return body

    def ready(self) -> bool:
        try:
            local = self.local()
        except (urllib.error.URLError, OSError, ValueError):
            return False
        return bool(local["partitions"]) and bool(local["pipeline"]["ready"])
