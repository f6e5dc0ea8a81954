"""Run each peer on the bench's preloaded topic and count what it stored, as riskstream is counted.

Each peer reads the topic with a consumer group of its own, scores on
model servers the rig starts for it (``riskstream serve``) and inserts into
a ``predictions`` table of its own bench database, created with riskstream's
DDL (:func:`tables.predictions.create_statements`). The figures:

- **records/s**: rows stored after the first insert over the time from the
  first insert to the last (:func:`bench.stream._insert_rate`, riskstream's
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
"""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from typing import Any

from bench.environment import load_average
from bench.peers.build import (
    FLINK_PROJECT,
    QUIX_JOB,
    QUIX_REQUIREMENTS,
    Built,
    build_all,
)
from bench.reference_job import ServedModel
from bench.stream import (
    START_TIMEOUT_S,
    Rig,
    _insert_rate,
    _process_tree_cpu_seconds,
    say,
)
from stack.launch import spawn
from tables.predictions import create_statements

__all__ = ["PEERS", "Peer", "measure_peer", "measure_peers", "peer_versions"]

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


def measure_peer(
    rig: Rig, topic: str, records: int, peer: Peer, built: Built, seconds: float
) -> dict[str, Any]:
    """Run ``peer`` on the preloaded ``topic`` until it stored ``records`` or for ``seconds``."""
    settings = rig.settings
    database = rig.database(f"peer_{peer.key}")
    for statement in create_statements(database):
        rig.clickhouse(statement)
    with rig.model_servers(peer.model_servers) as servers:
        model = ServedModel.ask(
            servers[0], settings.model_name, settings.model_client_token
        )
        common = {
            "bootstrap": settings.kafka_bootstrap,
            "topic": topic,
            "group": f"bench-{rig.run_id}-{peer.key}",
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
            rig.workdir / f"peer-{peer.key}.log",
        )
        rig.adopt(job)
        try:
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
            cpu_before = {n: _process_tree_cpu_seconds(p) for n, p in pids.items()}
            rows_before = rig.rows(database)
            deadline = time.monotonic() + seconds
            rig.wait(
                lambda: rig.rows(database) >= records or time.monotonic() >= deadline,
                seconds + START_TIMEOUT_S,
                f"{peer.title} to store {records:,} records",
                [job],
                describe,
            )
            cpu = {
                n: _process_tree_cpu_seconds(p) - cpu_before[n] for n, p in pids.items()
            }
            rows_between = max(rig.rows(database) - rows_before, 1)
        finally:
            job.stop(timeout_s=30)
    rows = rig.rows(database)
    return {
        "peer": peer.key,
        "title": peer.title,
        "parallelism": peer.parallelism,
        "model_servers": peer.model_servers,
        "options": " ".join(peer.options),
        **_insert_rate(rig, database),
        "drained": rows >= records,
        "duplicates": rows - rig.count(database),
        "cpu_us_per_record": {
            name: round(seconds_ / rows_between * 1e6, 1)
            for name, seconds_ in cpu.items()
        },
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
    return results
