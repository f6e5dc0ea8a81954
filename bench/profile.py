"""``riskstream bench profile``: where a worker's CPU goes, per stored record.

The figures of the throughput runs say how much CPU a worker spends per
record; this says on what. It drains a preloaded topic like a throughput
run, with py-spy sampling every worker (``py-spy record --format raw``,
its collapsed stacks, kept in the results folder), and prints the
worker's CPU per stored record split into the parts of the pipeline
(:data:`PARTS`: each sample goes to the innermost frame that names a
part) and the functions with the most samples of their own. A sample's
share of the worker's CPU is its share of the samples, which holds while
py-spy samples an on-CPU process (``--idle`` is off: waiting in the
event loop's ``select`` counts only while it spins).
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.environment import cpu_seconds, describe_environment
from bench.report import environment_lines
from bench.stream import Rig, say
from core.settings import get_settings

__all__ = [
    "OTHER",
    "PARTS",
    "ProfileOptions",
    "breakdown",
    "profile_lines",
    "read_collapsed",
    "run_profile",
]

#: The pipeline's parts, each named by frames (substrings of py-spy's
#: ``function (file:line)``) that only its code runs.
PARTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "ClickHouse insert (asynch and its Cython column writers)",
        ("ClickHouseSink._insert",),
    ),
    ("the sinks' merging and flush loop", ("Sink._flush_loop", "Sink._write_merged")),
    (
        "stored rows built from the answers",
        ("BatchProcessor._row", "BatchProcessor._read_answer"),
    ),
    (
        "model-server requests: built, sent, answers parsed",
        (
            "BatchProcessor._instances",
            "BatchProcessor._score",
            "ModelServerPool",
            "aiohttp/",
        ),
    ),
    ("records decoded (CSV, JSON)", ("decode_features",)),
    (
        "acks and offset commits",
        ("ack_messages", "Consumer.commit", "Consumer.force_commit"),
    ),
    (
        "Kafka fetch and Faust's delivery (messages, events, the agent's channel)",
        (
            "_deliver",
            "_hand_over",
            "SliceChannel",
            "_drain_messages",
            "Fetcher",
            "fetcher.py",
            "take_batches",
            "Conductor",
        ),
    ),
    (
        "stats table and metrics",
        (
            "StreamStats",
            "StreamMetrics",
            "publish_message",
            "ProducerBuffer",
            "Sender._send",
        ),
    ),
    ("the rest of a batch (tallies, latency histogram)", ("BatchProcessor.process",)),
    ("the event loop: select and scheduling", ("select (", "_run_once", "Handle._run")),
)
OTHER = "other (garbage collection, logging, Faust's services, threads)"

#: This checkout's root, cut from the paths of its own files' frames.
ROOT = f"{Path(__file__).resolve().parents[1]}/"

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*):\d+\)$")


def read_collapsed(lines: Iterable[str]) -> Iterator[tuple[list[str], int]]:
    """(frames from the outermost, samples) of each line of py-spy's raw output."""
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if stack and count.isdigit():
            yield stack.split(";"), int(count)


def _short(frame: str) -> str:
    """``function (file)``, the file from the package on (no site-packages path, no line)."""
    match = _FRAME.match(frame)
    if match is None:
        return frame
    path = match.group("file").removeprefix(ROOT)
    for marker in ("site-packages/", "/lib/python3.11/"):
        path = path.split(marker)[-1]
    return f"{match.group('function')} ({path})"


def _part_of(frames: list[str]) -> str:
    for frame in reversed(frames):
        for name, markers in PARTS:
            if any(marker in frame for marker in markers):
                return name
    return OTHER


@dataclass(frozen=True)
class Breakdown:
    """Samples per part and per function (self time), and their total."""

    parts: Counter[str]
    functions: Counter[str]
    samples: int

    def share(self, samples: int) -> float:
        return samples / self.samples if self.samples else 0.0


def breakdown(stacks: Iterable[tuple[list[str], int]]) -> Breakdown:
    parts: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for frames, count in stacks:
        total += count
        parts[_part_of(frames)] += count
        functions[_short(frames[-1])] += count
    return Breakdown(parts, functions, total)


@dataclass(frozen=True)
class ProfileOptions:
    records: int
    workers: int
    servers: int
    rate_hz: int
    results: Path | None

    def folder(self) -> Path:
        return self.results or Path("bench/results") / time.strftime(
            "profile-%Y%m%d-%H%M%S"
        )


def _py_spy() -> str:
    return str(Path(sys.executable).with_name("py-spy"))


def run_profile(options: ProfileOptions) -> dict[str, Any]:
    """Drain ``options.records`` with py-spy on every worker; print and return the breakdown."""
    settings = get_settings()
    folder = options.folder()
    folder.mkdir(parents=True, exist_ok=True)
    with Rig(settings, folder / "work") as rig:
        environment = describe_environment(settings, rig.clickhouse_version())
        for line in environment_lines(environment):
            say(line)
        topic = rig.topic("profile")
        rig.declare(topic)
        rig.preload(topic, options.records)
        database = rig.database("profile")
        env = rig.env(
            f"bench-{rig.run_id}-profile",
            topic,
            database,
            rig.server_urls[: options.servers],
            ("clickhouse",),
        )
        outputs = [folder / f"worker-{n + 1}.txt" for n in range(options.workers)]
        with rig.workers(options.workers, env, "profile", ready=False) as workers:
            spies = [
                subprocess.Popen(
                    [
                        _py_spy(),
                        "record",
                        "--pid",
                        str(child.pid),
                        "--rate",
                        str(options.rate_hz),
                        "--format",
                        "raw",
                        "--nonblocking",
                        "--output",
                        str(output),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                for child, output in zip(workers, outputs, strict=True)
            ]
            try:
                cpu_before = sum(cpu_seconds(child.pid) for child in workers)
                with rig.model_servers(options.servers):
                    started = time.monotonic()
                    rig.wait(
                        lambda: rig.all_stored(
                            database, options.records, ("clickhouse",)
                        ),
                        120 + options.records / 2000,
                        f"{options.records:,} stored predictions",
                        workers,
                    )
                    drain_s = time.monotonic() - started
                    cpu_s = (
                        sum(cpu_seconds(child.pid) for child in workers) - cpu_before
                    )
            finally:
                for spy in spies:  # SIGINT: py-spy writes what it sampled, then exits
                    spy.send_signal(signal.SIGINT)
                for spy in spies:
                    try:
                        spy.wait(30)
                    except subprocess.TimeoutExpired:
                        spy.kill()
    stacks: list[tuple[list[str], int]] = []
    for output in outputs:
        if output.exists():
            stacks += read_collapsed(output.read_text().splitlines())
    found = breakdown(stacks)
    us_per_record = cpu_s / options.records * 1e6
    result: dict[str, Any] = {
        "environment": environment,
        "records": options.records,
        "workers": options.workers,
        "model_servers": options.servers,
        "drain_s": round(drain_s, 3),
        "records_per_s": round(options.records / drain_s, 1),
        "worker_cpu_us_per_record": round(us_per_record, 2),
        "samples": found.samples,
        "parts_us_per_record": {
            name: round(found.share(count) * us_per_record, 2)
            for name, count in found.parts.most_common()
        },
        "functions_self_share": {
            name: round(found.share(count), 4)
            for name, count in found.functions.most_common(20)
        },
        "stacks": [str(output) for output in outputs],
    }
    (folder / "profile.json").write_bytes(
        orjson.dumps(result, option=orjson.OPT_INDENT_2)
    )
    for line in profile_lines(result):
        say(line)
    say(
        f"figures: {folder / 'profile.json'}; py-spy stacks: {', '.join(result['stacks'])}"
    )
    return result


def profile_lines(result: dict[str, Any]) -> list[str]:
    """The printed breakdown: the parts in us per stored record, then the top functions."""
    us = result["worker_cpu_us_per_record"]
    lines = [
        "",
        (
            f"{result['workers']} worker(s), {result['model_servers']} model server(s): "
            f"{result['records']:,} records in {result['drain_s']:.1f} s = "
            f"{result['records_per_s']:,.0f} records/s; worker CPU {us:.1f} us per stored "
            f"record ({result['samples']:,} samples)"
        ),
        "  where it goes (us per stored record, share of the worker's samples):",
    ]
    for name, part_us in result["parts_us_per_record"].items():
        lines.append(f"  {part_us:>6.2f} us  {part_us / us if us else 0:>6.1%}  {name}")
    lines.append("  most samples of their own:")
    for name, share in list(result["functions_self_share"].items())[:12]:
        lines.append(f"  {share:>14.1%}  {name}")
    return lines
