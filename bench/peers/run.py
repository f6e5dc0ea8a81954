"""Run each peer on the bench's preloaded topic and count what it stored, as riskstream is counted.

Each peer reads the topic with a consumer group of its own, scores on
model servers the rig starts for it (``riskstream serve``) and inserts into
a ``predictions`` table of its own bench database, created with riskstream's
DDL (:func:`tables.predictions.create_statements`). The figures:

- **records/s**: rows stored after the first insert over the time from the
  first insert to the last (:func:`bench.stream.insert_rate`, riskstream's
  own measure). A peer runs until it has stored every preloaded record or
  for ``seconds`` after its first insert, whichever comes first (the
  reference's job would take minutes to drain the topic).
- **CPU per record**, per process: the peer's process (the JVM holding the
  Flink MiniCluster, or the Quix application), the model servers, Kafka and
  ClickHouse, read from ``/proc`` at the first insert and at the end, over
  the rows stored in between (JVM start-up and JIT warm-up before the first
  insert are left out, as riskstream's workers' start is).
- **duplicates**: rows stored minus distinct records (``FINAL``): a peer
  stopped mid-run may replay, a finished one should show 0.
- **latency** (the peers that sustain 1.2 x 2,000 records/s): event time to
  stored, p50/p95/p99 over the records of ``seconds`` with the generator at
  2,000 records/s on a topic of its own, after a warm-up.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.environment import load_average, process_tree_cpu_seconds
from bench.peers.build import (
    FLINK_PROJECT,
    QUIX_JOB,
    QUIX_REQUIREMENTS,
    Built,
    build_all,
)
from bench.reference_job import ServedModel
from bench.stream import START_TIMEOUT_S, Rig, insert_rate, say
from stack.launch import Child, spawn
from tables.predictions import create_statements

__all__ = [
    "PEERS",
    "Peer",
    "measure_peer",
    "measure_peer_latency",
    "measure_peers",
    "peer_versions",
]

#: What the Flink distribution passes to Java 17 (``env.java.opts.all``), trimmed to
#: what the MiniCluster touches, and a heap like a small task manager's.
JVM_OPTIONS = (
    "-Xms256m",
    "-Xmx768m",
    "--add-opens=java.base/java.lang=ALL-UNNAMED",
    "--add-opens=java.base/java.util=ALL-UNNAMED",
    "--add-opens=java.base/java.nio=ALL-UNNAMED",
    "--add-opens=java.base/sun.nio.ch=ALL-UNNAMED",
    "--add-opens=java.base/java.net=ALL-UNNAMED",
    "--add-opens=java.base/java.io=ALL-UNNAMED",
)


#: The offered rate of the latency phase, for the peers that sustain 1.2 times it.
LATENCY_RATE = 2_000.0

#: Seconds of load before the measured latency phase (JVM start, consumer join).
LATENCY_WARMUP_S = 15.0


@dataclass(frozen=True)
class Peer:
    """One system under test: how to start it and with how many model servers."""

    key: str
    title: str
    #: ``quix``, or the Flink job's class in ``riskstream.peers``
    job: str
    parallelism: int
    model_servers: int
    options: tuple[str, ...] = ()


PEERS: tuple[Peer, ...] = (
    Peer("quix", "Quix Streams", "quix", 1, 1),
    Peer(
        "flink_reference_p1", "Flink, the reference's job, p=1", "OnlinePredict", 1, 1
    ),
    Peer(
        "flink_reference_p2", "Flink, the reference's job, p=2", "OnlinePredict", 2, 1
    ),
    Peer(
        "flink_async_p2",
        "Flink Async I/O, 256-row requests, p=2",
        "AsyncPredict",
        2,
        3,
        ("--batch", "256", "--capacity", "1024", "--linger-ms", "5"),
    ),
)


def _argv(
    peer: Peer, built: Built, common: dict[str, str], servers: list[str]
) -> list[str]:
    if peer.job == "quix":
        options = {**common, "server": servers[0]}
        return [
            str(built.quix_python),
            str(QUIX_JOB),
            *(part for name, value in options.items() for part in (f"--{name}", value)),
        ]
    options = {
        **common,
        "servers": ",".join(servers),
        "parallelism": str(peer.parallelism),
    }
    return [
        "java",
        *JVM_OPTIONS,
        "-cp",
        built.flink_classpath,
        f"riskstream.peers.{peer.job}",
        *(part for name, value in options.items() for part in (f"--{name}", value)),
        *peer.options,
    ]


@contextmanager
def _started(
    rig: Rig,
    peer: Peer,
    built: Built,
    topic: str,
    database: str,
    servers: list[str],
) -> Iterator[Child]:
    """``peer`` reading ``topic`` into ``database`` with its own consumer group; stopped after."""
    settings = rig.settings
    model = ServedModel.ask(
        servers[0], settings.model_name, settings.model_client_token
    )
    common = {
        "bootstrap": settings.kafka_bootstrap,
        "topic": topic,
        "group": f"bench-{rig.run_id}-{peer.key}-{database}",
        "model": settings.model_name,
        "token": settings.model_client_token,
        "inputs": ",".join(model.inputs),
        "clickhouse": f"http://{settings.clickhouse_host}:{settings.clickhouse_http_port}",
        "database": database,
        "user": "default",
        "password": "",
    }
    if peer.job != "quix":
        common["model-version"] = model.version
    job = spawn(
        peer.title,
        _argv(peer, built, common, servers),
        {},
        rig.workdir / f"peer-{peer.key}-{database}.log",
    )
    rig.adopt(job)
    try:
        yield job
    finally:
        job.stop(timeout_s=30)


def _table(rig: Rig, purpose: str) -> str:
    """A bench database with riskstream's ``predictions`` table (riskstream's own DDL)."""
    database = rig.database(purpose)
    for statement in create_statements(database):
        rig.clickhouse(statement)
    return database


def measure_peer(
    rig: Rig, topic: str, records: int, peer: Peer, built: Built, seconds: float
) -> dict[str, Any]:
    """Run ``peer`` on the preloaded ``topic`` until it stored ``records`` or for ``seconds``."""
    database = _table(rig, f"peer_{peer.key}")
    with (
        rig.model_servers(peer.model_servers) as servers,
        _started(rig, peer, built, topic, database, servers) as job,
    ):
        started = time.monotonic()

        def describe() -> str:
            return (
                f"  {peer.title}: stored {rig.rows(database):,} of {records:,}, "
                f"{time.monotonic() - started:.0f} s"
            )

        rig.wait(
            lambda: rig.rows(database) > 0,
            START_TIMEOUT_S,
            f"{peer.title}'s first insert",
            [job],
            describe,
        )
        assert rig.serving is not None
        pids = {
            "peer": job.pid,
            "model_servers": rig.serving.pid,
            **rig.server_pids(["kafka", "clickhouse"]),
        }
        cpu_before = {n: process_tree_cpu_seconds(p) for n, p in pids.items()}
        rows_before = rig.rows(database)
        deadline = time.monotonic() + seconds
        rig.wait(
            lambda: rig.rows(database) >= records or time.monotonic() >= deadline,
            seconds + START_TIMEOUT_S,
            f"{peer.title} to store {records:,} records",
            [job],
            describe,
        )
        cpu = {n: process_tree_cpu_seconds(p) - cpu_before[n] for n, p in pids.items()}
        rows_between = max(rig.rows(database) - rows_before, 1)
    rows = rig.rows(database)
    return {
        "peer": peer.key,
        "title": peer.title,
        "parallelism": peer.parallelism,
        "model_servers": peer.model_servers,
        "options": " ".join(peer.options),
        **insert_rate(rig, database),
        "drained": rows >= records,
        "duplicates": rows - rig.count(database),
        "cpu_us_per_record": {
            name: round(seconds_ / rows_between * 1e6, 1)
            for name, seconds_ in cpu.items()
        },
        "load_average": load_average(),
    }


def measure_peer_latency(
    rig: Rig, peer: Peer, built: Built, seconds: float
) -> dict[str, Any]:
    """Event time -> stored, p50/p95/p99, with the generator at :data:`LATENCY_RATE` on a new topic.

    The peer starts first; the generator runs for :data:`LATENCY_WARMUP_S`
    (the JVM's start, the consumer's join) plus ``seconds``, and only the
    records of the last ``seconds`` are measured.
    """
    topic = rig.topic(f"latency-{peer.key}")
    database = _table(rig, f"peer_latency_{peer.key}")
    rig.declare(topic)
    count = int(LATENCY_RATE * (LATENCY_WARMUP_S + seconds))
    with (
        rig.model_servers(peer.model_servers) as servers,
        _started(rig, peer, built, topic, database, servers) as job,
    ):
        phase_start_ms = int((time.time() + LATENCY_WARMUP_S) * 1000)
        generator = rig.generate(
            topic, "--rate", f"{LATENCY_RATE:g}", "--count", str(count)
        )
        rig.wait(
            lambda: not generator.alive(),
            LATENCY_WARMUP_S + seconds + START_TIMEOUT_S,
            "the generator",
            [job],
            lambda: (
                f"  {peer.title} at {LATENCY_RATE:,.0f} records/s: stored "
                f"{rig.rows(database):,} of {count:,}"
            ),
        )
        rig.finish(generator, 10)
        rig.wait(
            lambda: rig.rows(database) >= count,
            START_TIMEOUT_S,
            f"{peer.title} to store {count:,} records",
            [job],
        )
    row = rig.clickhouse_row(
        f"SELECT count() AS records, "
        f"quantilesExact(0.5, 0.95, 0.99)(stored_at_ms - event_time_ms) AS q "
        f"FROM {database}.predictions WHERE event_time_ms >= {phase_start_ms}"
    )
    p50, p95, p99 = (float(v) for v in row["q"])
    return {
        "peer": peer.key,
        "title": peer.title,
        "offered_records_per_s": LATENCY_RATE,
        "records": int(row["records"]),
        "p50_ms": p50,
        "p95_ms": p95,
        "p99_ms": p99,
        "load_average": load_average(),
    }


def _java_version() -> str:
    shown = subprocess.run(
        ["java", "-version"], capture_output=True, text=True, check=False
    ).stderr
    match = re.search(r'version "([^"]+)"', shown)
    runtime = re.search(
        r"^(OpenJDK|Java).*?Runtime Environment[^\n]*", shown, re.MULTILINE
    )
    return (match.group(1) if match else "unknown") + (
        f" ({runtime.group(0)})" if runtime else ""
    )


def peer_versions() -> dict[str, str]:
    """Flink and its Kafka connector (from the POM), Quix Streams (its pin) and the JVM."""
    pom = (FLINK_PROJECT / "pom.xml").read_text()
    quix = re.search(
        r"^quixstreams==(\S+)", QUIX_REQUIREMENTS.read_text(), re.MULTILINE
    )
    return {
        "flink": re.findall(r"<flink.version>([^<]+)<", pom)[0],
        "flink_connector_kafka": re.findall(r"<flink.kafka.version>([^<]+)<", pom)[0],
        "quixstreams": quix.group(1) if quix else "unknown",
        "java": _java_version(),
    }


def measure_peers(
    rig: Rig,
    topic: str,
    records: int,
    seconds: float,
    peers: tuple[Peer, ...] = PEERS,
) -> dict[str, Any]:
    """Build the peers (once, cached in the stack folder), then run each in turn."""
    started = time.monotonic()
    built = build_all(rig.settings)
    results: dict[str, Any] = {
        "versions": peer_versions(),
        "build_s": round(time.monotonic() - started, 1),
        "seconds_limit": seconds,
        "runs": [],
    }
    for peer in peers:
        say(
            f"  {peer.title} ({peer.model_servers} model server(s)), up to "
            f"{records:,} records or {seconds:.0f} s ..."
        )
        run = measure_peer(rig, topic, records, peer, built, seconds)
        results["runs"].append(run)
        cpu = ", ".join(f"{n} {us:,.1f}" for n, us in run["cpu_us_per_record"].items())
        say(
            f"  {run['records_per_s']:,.0f} records/s ({run['rows_measured']:,} rows in "
            f"{run['measured_s']:.1f} s; CPU us/record: {cpu})"
        )
    sustained = [
        peer
        for peer, run in zip(peers, results["runs"], strict=True)
        if run["records_per_s"] >= LATENCY_RATE * 1.2
    ]
    results["latency"] = []
    for peer in sustained:
        say(
            f"  {peer.title}: latency at {LATENCY_RATE:,.0f} records/s for "
            f"{seconds:.0f} s (after {LATENCY_WARMUP_S:.0f} s of warm-up) ..."
        )
        phase = measure_peer_latency(rig, peer, built, seconds)
        results["latency"].append(phase)
        say(
            f"  p50 {phase['p50_ms']:,.0f} ms, p95 {phase['p95_ms']:,.0f} ms, "
            f"p99 {phase['p99_ms']:,.0f} ms ({phase['records']:,} records)"
        )
    return results
