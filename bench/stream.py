"""The pipeline end to end on the real local stack: sustained throughput, latency, the reference's design.

Every figure is counted in the stores, from the rows the pipeline stored,
through the sinks' own queries (:class:`tables.sink.Sink`):

- **Sustained throughput**: the feature topic is preloaded with ``records``
  CSV records (the generator unthrottled), then 1 or 2 worker processes
  (``faust -A app worker``) drain it with 1 or 3 model servers. The
  workers start and split the partitions before their model servers
  are up (a worker takes no record before it has the model's schema), so
  they all start draining together; the rate is the rows stored after the
  first insert over the time from the first insert to the last (stored-at
  stamps), the same measure as the reference's. A run writes to one set
  of sinks (``RISKSTREAM_SINKS``: ClickHouse, PostgreSQL or both); with
  two, its rate is the slower sink's. The CPU time of the workers and of
  each store's server processes (PostgreSQL's postmaster and its
  backends) is read from ``/proc`` before and after the drain.
- **Latency**: one worker and three model servers, the generator at a
  fixed rate for ``latency_seconds``; event time (the Kafka timestamp the
  generator's producer set) to stored-at (stamped just before the insert),
  p50/p95/p99 with ``quantilesExact`` over every record of the phase.
- **The reference's design**: :mod:`bench.reference_job` reads the same
  preloaded topic (its own consumer group and database) for
  ``reference_seconds`` against one model server; its rate is the rows
  after its first insert over the time to its last insert.

The bench brings the local stack up (``riskstream stack up``; what it
started it stops at the end), trains a model into its work folder, and
starts model servers (``riskstream serve --replicas N``, from
``RISKSTREAM_MODEL_SERVER_PORT``) for each phase; workers listen from
``RISKSTREAM_WEB_PORT``. The databases and topics it creates carry the
run's id and are dropped at the end.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import asyncpg
import orjson
from aiokafka.errors import KafkaError
from asynch import errors as asynch_errors

from bench.environment import cpu_seconds, load_average, process_tree_cpu_seconds
from core.progress import Progress
from core.settings import Settings
from stack import control
from stack.launch import Child, riskstream_argv, spawn
from stack.rig import RunRig, partitions_split
from stack.service import LocalService

__all__ = [
    "Rig",
    "StreamBenchmark",
    "ensure_model",
    "insert_rate",
    "measure_latency",
    "measure_reference",
    "measure_throughput",
]

logger = logging.getLogger(__name__)

#: Model server processes the rig starts (the 3-server runs use them all).
MODEL_SERVERS = 3

#: Partitions of the bench topics (two workers get two each).
PARTITIONS = 4

#: Seconds a worker or a model server may take to come up.
START_TIMEOUT_S = 120.0

#: Seconds between two looks at ClickHouse while waiting.
POLL_S = 0.5


@dataclass(frozen=True)
class StreamBenchmark:
    """How much to measure (the ``riskstream bench`` options)."""

    records: int
    latency_rates: tuple[float, ...]
    latency_seconds: float
    reference_seconds: float
    #: The longest a peer runs after its first insert (:mod:`bench.peers.run`).
    peer_seconds: float = 30.0


def say(line: str = "") -> None:
    print(line, flush=True)


def ensure_model(repository: Path, workdir: Path) -> None:
    """Train the default model into ``repository`` unless it holds one (seeded: same PMML each time)."""
    if repository.is_dir() and any(repository.iterdir()):
        return
    say(f"training a model into {repository} ...")
    trainer = spawn(
        "trainer",
        riskstream_argv("train", "--repository", str(repository)),
        {},
        workdir / "train.log",
    )
    if trainer.process.wait(300) != 0:
        raise SystemExit(f"riskstream train failed:\n{trainer.log_tail()}")


class Rig(RunRig):
    """The stack, a trained model, model servers on demand; names and processes of one bench run.

    A :class:`stack.rig.RunRig` (names, children, commands, admin queries,
    shared with the end-to-end harness) plus what only the bench does:
    bringing the stack up and down, timing waits, per-process CPU. A
    subclass: the bench's names and calls are the rig's own.
    """

    def __init__(self, settings: Settings, workdir: Path) -> None:
        super().__init__(
            settings,
            workdir,
            workdir / "models",
            "bench",
            time.strftime("%Y%m%d%H%M%S") + secrets.token_hex(2),
            PARTITIONS,
            START_TIMEOUT_S,
        )
        first = settings.model_server_port
        self.server_urls = [
            f"http://127.0.0.1:{first + i}" for i in range(MODEL_SERVERS)
        ]
        #: the ``riskstream serve`` process while :meth:`model_servers` runs
        self.serving: Child | None = None
        self._stack_started: list[str] = []
        self._databases: list[str] = []
        #: Stores some run writes to: PostgreSQL comes up with the stack if named.
        self.sink_names: set[str] = {"clickhouse"}

    # --- set-up and tear-down --------------------------------------------------------
    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        names = control.chosen_names(
            self.settings, self.sink_names & set(control.EXTRA_SERVICES)
        )
        self._stack_started = asyncio.run(control.up(self.settings, names))
        say(
            "stack: "
            + (
                f"started {', '.join(self._stack_started)}"
                if self._stack_started
                else "already running"
            )
            + f" ({self.settings.stack_topology} topology: Kafka "
            f"{self.settings.kafka_bootstrap}, ClickHouse {self.settings.clickhouse_hosts})"
        )
        ensure_model(self.repository, self.workdir)

    @contextmanager
    def model_servers(self, count: int) -> Iterator[list[str]]:
        """``riskstream serve --replicas count`` from the first port; their URLs once all are ready."""
        servers, urls = self.serve(self.settings.model_server_port, count)
        self.serving = servers
        try:
            yield urls
        finally:
            self.serving = None
            self.release(servers)

    def close(self) -> None:
        self.stop_all()
        for database in self._databases:
            self.drop_database(database, sorted(self.sink_names))
        try:
            asyncio.run(self.delete_topics())
        except (KafkaError, OSError) as exc:  # best effort: the figures are taken
            logger.warning("cannot delete the bench topics: %s", exc)
        self._databases.clear()
        if self._stack_started:
            asyncio.run(control.down(self.settings, self._stack_started))
            self._stack_started = []

    # --- names -----------------------------------------------------------------------
    def database(self, purpose: str = "") -> str:
        """The run's database for ``purpose``, dropped at the end."""
        name = super().database(purpose)
        self._databases.append(name)
        return name

    # --- ClickHouse ----------------------------------------------------------------
    def clickhouse_row(self, query: str) -> dict[str, Any]:
        """One row as a dict (64-bit integers come as strings: convert them)."""
        text = self.clickhouse(query + " FORMAT JSONEachRow").strip()
        row: dict[str, Any] = orjson.loads(text) if text else {}
        return row

    # --- the stores, through the sink interface -------------------------------------
    def count(self, database: str, sink: str = "clickhouse") -> int:
        """Distinct records stored (a replay stores a record twice); a scan, so not for polling."""
        return self._counted(self.sink(sink, database).count_records)

    def rows(self, database: str, sink: str = "clickhouse") -> int:
        """Rows stored, replays included: cheap enough to poll while the pipeline runs.

        Polling the distinct count instead hashed every stored row twice a
        second, CPU taken from the pipeline being measured.
        """
        return self._counted(self.sink(sink, database).count_rows)

    def all_stored(self, database: str, records: int, sinks: Sequence[str]) -> bool:
        """``records`` distinct records stored in each sink (the scan runs once the rows are there)."""
        return all(
            self.rows(database, sink) >= records
            and self.count(database, sink) >= records
            for sink in sinks
        )

    @staticmethod
    def _counted(query: Callable[[], Any]) -> int:
        try:
            return int(asyncio.run(query()))
        except (
            asynch_errors.ServerException,
            asyncpg.UndefinedTableError,
            asyncpg.InvalidCatalogNameError,
            asyncpg.InvalidSchemaNameError,
        ):
            return 0  # the table does not exist yet

    def server_pids(self, kinds: Sequence[str] | None = None) -> dict[str, int]:
        """The pid of each running server process of the stack, by service name.

        ``kinds`` (e.g. ``["kafka", "clickhouse"]``) keeps those services and,
        on the cluster topology, their nodes (``kafka-2``, ``clickhouse-s1r2``);
        None keeps every one (ZooKeeper too).
        """
        names = [
            name
            for name in control.service_names(self.settings)
            if kinds is None
            or any(name == kind or name.startswith(f"{kind}-") for kind in kinds)
        ]
        found: dict[str, int] = {}
        service: LocalService
        for service in control.services(self.settings, names):
            pid = service.pid_file.owned_pid()
            if pid is not None:
                found[service.name] = pid
        return found

    def clickhouse_version(self) -> str:
        return self.clickhouse("SELECT version()").strip()

    # --- processes ---------------------------------------------------------------------
    def env(
        self,
        app_id: str,
        topic: str,
        database: str,
        servers: Sequence[str],
        sinks: Sequence[str] = ("clickhouse",),
    ) -> dict[str, str]:
        """A worker's (or the reference job's) configuration for one run."""
        return {
            **self.worker_env(app_id, topic, database, servers, sinks),
            "RISKSTREAM_DLQ_TOPIC": f"{topic}-dlq",
            # Faust's per-record Prometheus sensor off: riskstream's metrics only.
            "RISKSTREAM_FAUST_METRICS": "false",
            # Workers waiting for their model servers notice them quickly.
            "RISKSTREAM_PROBE_INTERVAL_S": "0.2",
        }

    def generate(self, topic: str, *args: str) -> Child:
        """``riskstream datagen ARGS`` into ``topic`` (schema from the repository's model)."""
        return self.generator(
            args,
            {
                **self.settings.stack_env(),
                "RISKSTREAM_FEATURE_TOPIC": topic,
                "RISKSTREAM_TOPIC_PARTITIONS": str(PARTITIONS),
                "RISKSTREAM_MODEL_REPOSITORY": str(self.repository),
            },
            f"generator-{topic}.log",
        )

    def adopt(self, child: Child) -> None:
        """Stop ``child`` with the rig if it is still running then."""
        self.children.append(child)

    def finish(self, child: Child, timeout_s: float) -> None:
        """Wait for a child that ends by itself; fail with its log's end if it fails."""
        code = child.process.wait(timeout_s)
        self.children.remove(child)
        if code != 0:
            raise SystemExit(
                f"{child.name} failed (exit code {code}):\n{child.log_tail()}"
            )

    def preload(self, topic: str, records: int) -> None:
        progress = Progress()
        started = time.monotonic()
        generator = self.generate(topic, "--count", str(records))
        while generator.alive():
            progress.update(
                f"  preloading {records:,} records: {time.monotonic() - started:.0f} s"
            )
            time.sleep(POLL_S)
        progress.done()
        self.finish(generator, 10)
        say(
            f"  topic {topic}: {records:,} records preloaded in {time.monotonic() - started:.1f} s"
        )

    @contextmanager
    def workers(
        self, count: int, env: dict[str, str], name: str, ready: bool = True
    ) -> Iterator[list[Child]]:
        """``count`` worker processes, yielded once they own every partition between them; stopped after.

        With ``ready`` their pipelines must be ready too (their model servers
        answer); without, they may still be waiting for the model servers,
        which keeps them from taking any record.
        """
        ports = [self.settings.web_port + index for index in range(count)]
        started: list[Child] = []
        try:
            started = self.start_workers(
                [f"worker {index + 1}" for index in range(count)],
                ports,
                env,
                "warn",
                [f"{name}-worker-{index + 1}.log" for index in range(count)],
            )
            self.wait(
                lambda: partitions_split(
                    [f"http://127.0.0.1:{port}" for port in ports], PARTITIONS, ready
                ),
                START_TIMEOUT_S,
                "the workers to own every partition between them",
                started,
            )
            yield started
        finally:
            for child in started:
                self.release(child)

    def wait(
        self,
        check: Callable[[], Any],
        timeout_s: float,
        what: str,
        children: Sequence[Child] = (),
        describe: Callable[[], str] | None = None,
    ) -> Any:
        progress = Progress()
        deadline = time.monotonic() + timeout_s
        try:
            while time.monotonic() < deadline:
                for child in children:
                    if not child.alive():
                        raise SystemExit(
                            f"{child.name} exited while waiting for {what}:\n{child.log_tail()}"
                        )
                result = check()
                if result:
                    return result
                if describe is not None:
                    progress.update(describe())
                time.sleep(POLL_S)
        finally:
            progress.done()
        raise SystemExit(f"timed out after {timeout_s:.0f} s waiting for {what}")


def _drain_timeout_s(records: int) -> float:
    return 120.0 + records / 2000.0


def measure_throughput(
    rig: Rig,
    topic: str,
    records: int,
    workers: int,
    servers: int,
    sinks: Sequence[str] = ("clickhouse",),
) -> dict[str, Any]:
    """Drain the preloaded ``topic`` with ``workers`` workers and ``servers`` model servers into ``sinks``.

    The workers start first and split the partitions while their model
    servers are not up yet: a worker takes no record before it has read
    the model's schema, so all of them start draining within a probe
    interval of the servers coming up, and none gets a head start.
    """
    label = f"w{workers}s{servers}_{'_'.join(sinks)}"
    database = rig.database(f"throughput_{label}")
    env = rig.env(
        f"bench-{rig.run_id}-{label}",
        topic,
        database,
        rig.server_urls[:servers],
        sinks,
    )
    servers_by_name = rig.server_pids()
    with rig.workers(workers, env, f"throughput-{label}", ready=False) as children:
        cpu_before = sum(cpu_seconds(child.pid) for child in children)
        db_before = {n: process_tree_cpu_seconds(p) for n, p in servers_by_name.items()}
        with rig.model_servers(servers):
            started = time.monotonic()
            assert rig.serving is not None
            serving_before = process_tree_cpu_seconds(rig.serving.pid)

            def progress() -> str:
                stored = min(rig.rows(database, sink) for sink in sinks)
                elapsed = time.monotonic() - started
                return f"  stored {stored:,} of {records:,} records, {elapsed:.0f} s"

            rig.wait(
                lambda: rig.all_stored(database, records, sinks),
                _drain_timeout_s(records),
                f"{records:,} stored predictions",
                children,
                progress,
            )
            drain_s = time.monotonic() - started
            serving_s = process_tree_cpu_seconds(rig.serving.pid) - serving_before
            cpu_s = sum(cpu_seconds(child.pid) for child in children) - cpu_before
            db_s = {
                n: process_tree_cpu_seconds(p) - db_before[n]
                for n, p in servers_by_name.items()
            }
    per_sink = {sink: insert_rate(rig, database, sink) for sink in sinks}
    figures = min(per_sink.values(), key=lambda f: f["records_per_s"])
    stored = max(figures["records"], 1)
    return {
        "sinks": ",".join(sinks),
        "workers": workers,
        "model_servers": servers,
        **figures,
        "records_per_s_by_sink": {s: f["records_per_s"] for s, f in per_sink.items()},
        "drain_s": round(drain_s, 3),
        "worker_cpu_us_per_record": round(cpu_s / stored * 1e6, 1),
        #: every model server process (``riskstream serve`` and its replicas)
        "model_server_cpu_us_per_record": round(serving_s / stored * 1e6, 1),
        "database_cpu_us_per_record": {
            sink: round(
                sum(
                    seconds
                    for n, seconds in db_s.items()
                    if n == sink or n.startswith(f"{sink}-")
                )
                / stored
                * 1e6,
                1,
            )
            for sink in sinks
        },
        "topology": rig.settings.stack_topology,
        #: every server process of the stack (each broker, replica, ZooKeeper)
        "stack_cpu_us_per_record": {
            n: round(seconds / stored * 1e6, 1) for n, seconds in db_s.items()
        },
        "load_average": load_average(),
    }


def insert_rate(rig: Rig, database: str, sink: str = "clickhouse") -> dict[str, Any]:
    """Rows/s from the first insert to the last, by stored-at stamps (the first insert's rows excluded)."""
    stamps = [
        stored_at_ms
        for (stored_at_ms,) in asyncio.run(
            rig.sink(sink, database).rows(["stored_at_ms"])
        )
    ]
    first_ms, last_ms = min(stamps), max(stamps)
    span_s = max((last_ms - first_ms) / 1000.0, 1e-3)
    measured = len(stamps) - stamps.count(first_ms)
    return {
        "records": len(stamps),
        "rows_measured": measured,
        "measured_s": round(span_s, 3),
        "records_per_s": round(measured / span_s, 1),
    }


def measure_latency(
    rig: Rig, rates: Sequence[float], seconds: float
) -> list[dict[str, Any]]:
    """One worker and all model servers; the generator at each fixed rate in turn."""
    topic = rig.topic("latency")
    database = rig.database("latency")
    rig.declare(topic)
    results: list[dict[str, Any]] = []
    with rig.model_servers(MODEL_SERVERS) as servers:
        env = rig.env(f"bench-{rig.run_id}-latency", topic, database, servers)
        with rig.workers(1, env, "latency") as children:
            for rate in rates:
                results.append(
                    _latency_phase(rig, topic, database, children, rate, seconds)
                )
    return results


def _latency_phase(
    rig: Rig,
    topic: str,
    database: str,
    children: Sequence[Child],
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    count = int(rate * seconds)
    stored_before = rig.rows(database)
    say(f"  {rate:,.0f} records/s for {seconds:.0f} s ({count:,} records) ...")
    phase_start_ms = int(time.time() * 1000)
    generator = rig.generate(topic, "--rate", f"{rate:g}", "--count", str(count))
    rig.wait(
        lambda: not generator.alive(),
        seconds + START_TIMEOUT_S,
        "the generator",
        children,
        lambda: (
            f"  generating at {rate:,.0f} records/s: "
            f"stored {rig.rows(database) - stored_before:,} of {count:,}"
        ),
    )
    rig.finish(generator, 10)
    rig.wait(
        lambda: rig.rows(database) >= stored_before + count,
        _drain_timeout_s(count),
        f"{count:,} stored predictions",
        children,
    )
    row = rig.clickhouse_row(
        f"SELECT count() AS records, "
        f"quantilesExact(0.5, 0.95, 0.99)(stored_at_ms - event_time_ms) AS q, "
        f"max(stored_at_ms - event_time_ms) AS max_ms, "
        f"min(event_time_ms) AS first_ms, max(event_time_ms) AS last_ms "
        f"FROM {database}.predictions WHERE event_time_ms >= {phase_start_ms}"
    )
    offered_s = max((int(row["last_ms"]) - int(row["first_ms"])) / 1000.0, 1e-3)
    p50, p95, p99 = (float(v) for v in row["q"])
    return {
        "offered_records_per_s": rate,
        "achieved_records_per_s": round(int(row["records"]) / offered_s, 1),
        "records": int(row["records"]),
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "max_ms": float(row["max_ms"]),
        "load_average": load_average(),
    }


def measure_reference(rig: Rig, topic: str, seconds: float) -> dict[str, Any]:
    """The reference's job on the preloaded topic, with one model server, for ``seconds``."""
    database = rig.database("reference")
    with rig.model_servers(1) as servers:
        env = rig.env(f"bench-{rig.run_id}-reference", topic, database, servers)
        job = spawn(
            "reference job",
            [sys.executable, "-m", "bench.reference_job", "--seconds", f"{seconds:g}"],
            env,
            rig.workdir / "reference-job.log",
        )
        rig.adopt(job)
        started = time.monotonic()
        rig.wait(
            lambda: not job.alive(),
            seconds + START_TIMEOUT_S,
            "the reference job",
            describe=lambda: (
                f"  reference job: {time.monotonic() - started:.0f} s, "
                f"stored {rig.rows(database):,}"
            ),
        )
        rig.finish(job, 10)
    return {
        "model_servers": 1,
        **insert_rate(rig, database),
        "load_average": load_average(),
    }
