"""What ``riskstream bench`` runs, in which order, and where it writes the figures.

Order: the stack comes up and a model is trained; the topic is preloaded once;
the four throughput runs (1 and 2 workers x 1 and 3 model servers, for each
set of sinks: ClickHouse, then those ``--sinks`` adds),
the reference's job and the peers (:mod:`bench.peers`: Quix Streams, the
reference's job on Flink, Flink with Async I/O) read it; then the latency phases run on a topic of
their own; the pipeline's processes stop, and the model-server benchmark
(:mod:`bench.serving`) runs last, alone. Results go to
``<results>/bench.json`` with ``throughput.png`` and ``latency.png``;
children's logs to ``<results>/work/``.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.environment import describe_environment, load_average
from bench.peers.run import measure_peers
from bench.report import plot, summary_lines, write_json
from bench.stream import (
    Rig,
    StreamBenchmark,
    ensure_model,
    measure_latency,
    measure_reference,
    measure_throughput,
    say,
)
from core.settings import Settings, get_settings

__all__ = ["PARTS", "SuiteOptions", "run_suite"]


#: The parts of a full run, in the order they run.
PARTS = ("throughput", "reference", "peers", "latency", "serving")

#: Workers x model servers of the throughput runs.
THROUGHPUT_RUNS = ((1, 1), (1, 3), (2, 1), (2, 3))

LATENCY_RATES = (500.0, 2_000.0, 5_000.0)


@dataclass(frozen=True)
class SuiteOptions:
    """The ``riskstream bench`` group options."""

    records: int | None
    quick: bool
    results: Path | None
    #: The sink sets the throughput runs write to, ClickHouse alone first (``--sinks``).
    sink_sets: tuple[tuple[str, ...], ...] = (("clickhouse",),)
    #: The stack topologies the throughput runs are measured on (``--topology``).
    topologies: tuple[str, ...] = ("single",)

    def stream(self) -> StreamBenchmark:
        return StreamBenchmark(
            records=self.records or (50_000 if self.quick else 200_000),
            latency_rates=LATENCY_RATES,
            latency_seconds=8.0 if self.quick else 20.0,
            reference_seconds=8.0 if self.quick else 20.0,
            peer_seconds=10.0 if self.quick else 30.0,
        )

    def folder(self) -> Path:
        return self.results or Path("bench/results") / time.strftime("%Y%m%d-%H%M%S")


def run_suite(options: SuiteOptions, parts: tuple[str, ...]) -> dict[str, Any]:
    """Run ``parts`` (a subset of :data:`PARTS`), print the table, write JSON and plots."""
    settings = get_settings()
    config = options.stream()
    folder = options.folder()
    folder.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    results: dict[str, Any] = {
        "command": " ".join(["riskstream", "bench", *sys.argv[2:]]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quick": options.quick,
    }
    stream_parts = [part for part in parts if part != "serving"]
    if "single" not in options.topologies:
        stream_parts = [part for part in stream_parts if part != "throughput"]
    if stream_parts:
        rig = Rig(settings, folder / "work")
        rig.sink_names.update(name for sinks in options.sink_sets for name in sinks)
        with rig:
            results["environment"] = describe_environment(
                settings, rig.clickhouse_version()
            )
            _run_stream(rig, config, stream_parts, results, options.sink_sets)
    if "cluster" in options.topologies and "throughput" in parts:
        results["throughput_cluster"] = _run_cluster_throughput(
            settings, config, folder
        )
        results.setdefault(
            "environment", describe_environment(settings, "see the cluster runs")
        )
    if "serving" in parts:
        repository = folder / "work" / "models"
        ensure_model(repository, folder / "work")
        results.update(
            _run_serving(options, repository, settings.model_server_port + 10)
        )
        if "environment" not in results:
            results["environment"] = describe_environment(settings, "not used")
    results["load_average_at_end"] = load_average()
    results["took_s"] = round(time.monotonic() - started, 1)
    for line in summary_lines(results):
        say(line)
    say(f"figures: {write_json(results, folder)}")
    for path in plot(results, folder):
        say(f"plot:    {path}")
    say(f"took {results['took_s'] / 60:.1f} min")
    return results


def _run_stream(
    rig: Rig,
    config: StreamBenchmark,
    parts: list[str],
    results: dict[str, Any],
    sink_sets: tuple[tuple[str, ...], ...],
) -> None:
    steps = (
        (["preload"] if {"throughput", "reference", "peers"} & set(parts) else [])
        + (
            [
                f"throughput {w}x{s} {','.join(sinks)}"
                for sinks in sink_sets
                for w, s in THROUGHPUT_RUNS
            ]
            if "throughput" in parts
            else []
        )
        + [part for part in ("reference", "peers", "latency") if part in parts]
    )
    step = iter(range(1, len(steps) + 1))

    def header(text: str) -> None:
        say(f"[{next(step)}/{len(steps)}] {text}")

    topic = rig.topic("features")
    if "preload" in steps:
        header(f"preloading {config.records:,} records (generator unthrottled)")
        rig.preload(topic, config.records)
        results["records_preloaded"] = config.records
    if "throughput" in parts:
        runs = results["throughput"] = []
        for sinks in sink_sets:
            for workers, servers in THROUGHPUT_RUNS:
                header(
                    f"throughput into {','.join(sinks)}: {workers} worker(s), "
                    f"{servers} model server(s), draining {config.records:,} records"
                )
                run = measure_throughput(
                    rig, topic, config.records, workers, servers, sinks
                )
                runs.append(run)
                database_cpu = ", ".join(
                    f"{name} {us:.1f}"
                    for name, us in run["database_cpu_us_per_record"].items()
                )
                say(
                    f"  {run['records_per_s']:,.0f} records/s ({run['rows_measured']:,} "
                    f"rows in {run['measured_s']:.1f} s, worker CPU "
                    f"{run['worker_cpu_us_per_record']:.1f} us/record, database CPU "
                    f"{database_cpu} us/record, load {run['load_average'][0]:.2f})"
                )
    if "reference" in parts:
        header(f"the reference's design for {config.reference_seconds:.0f} s")
        reference = results["reference"] = measure_reference(
            rig, topic, config.reference_seconds
        )
        say(f"  {reference['records_per_s']:,.0f} records/s")
    if "peers" in parts:
        header(
            f"the peers on the same topic, each up to {config.records:,} records or "
            f"{config.peer_seconds:.0f} s after its first insert"
        )
        results["peers"] = measure_peers(
            rig, topic, config.records, config.peer_seconds
        )
    if "latency" in parts:
        header(
            "latency at "
            + ", ".join(f"{rate:,.0f}" for rate in config.latency_rates)
            + f" records/s, {config.latency_seconds:.0f} s each"
        )
        phases = results["latency"] = measure_latency(
            rig, config.latency_rates, config.latency_seconds
        )
        for phase in phases:
            say(
                f"  {phase['offered_records_per_s']:,.0f} records/s: p50 "
                f"{phase['p50_ms']:,.0f} ms, p95 {phase['p95_ms']:,.0f} ms, "
                f"p99 {phase['p99_ms']:,.0f} ms"
            )


def _run_cluster_throughput(
    settings: Settings, config: StreamBenchmark, folder: Path
) -> list[dict[str, Any]]:
    """The same throughput runs on the cluster topology, beside the single stack (its own ports and folder)."""
    cluster = settings.cluster_beside()
    say(
        "[cluster] the throughput runs on the cluster topology: three brokers, "
        "ZooKeeper, ClickHouse 2 shards x 2 replicas, topics with 3 replicas"
    )
    runs: list[dict[str, Any]] = []
    with Rig(cluster, folder / "work" / "cluster") as rig:
        topic = rig.topic("features")
        say(f"  preloading {config.records:,} records (generator unthrottled)")
        rig.preload(topic, config.records)
        for workers, servers in THROUGHPUT_RUNS:
            say(
                f"  cluster: {workers} worker(s), {servers} model server(s), "
                f"draining {config.records:,} records"
            )
            run = measure_throughput(rig, topic, config.records, workers, servers)
            runs.append(run)
            stack_cpu = ", ".join(
                f"{name} {us:.1f}"
                for name, us in run["stack_cpu_us_per_record"].items()
            )
            say(
                f"    {run['records_per_s']:,.0f} records/s, worker CPU "
                f"{run['worker_cpu_us_per_record']:.1f} us/record; per server process "
                f"(us/record): {stack_cpu}"
            )
    return runs


def _run_serving(options: SuiteOptions, repository: Path, port: int) -> dict[str, Any]:
    from bench.serving import ServingBenchmark, run

    say("[serving] the model servers alone (riskstream bench serving)")
    return {
        "serving": run(
            ServingBenchmark(
                model_ref=None,
                pmml=None,
                repository=repository,
                port=port,
                duration_s=3.0 if options.quick else 10.0,
                batch_rows=256,
                concurrency=4,
                rate=500.0,
                evaluator_rows=5_000 if options.quick else 20_000,
            )
        )
    }
