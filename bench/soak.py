"""``riskstream bench soak``: the pipeline at a steady rate for a long time, its resources every minute.

A leak that costs a megabyte a minute is invisible to the throughput and
latency benches and fatal to a worker that runs for weeks. The soak runs
the same processes the other benches run (:class:`bench.stream.Rig`:
``riskstream serve``, ``faust -A app worker``, ``riskstream datagen
--rate``) on the local stack and, every minute, prints and records:

- the resident memory (``VmRSS`` of ``/proc/<pid>/status``) and the open
  file descriptors (``/proc/<pid>/fd``) of each worker, each model server,
  Kafka and ClickHouse (their pids from the stack's pid files);
- the consumer lag: the feature topic's end offsets minus the offsets the
  workers' group committed (aiokafka);
- p99 latency (event time -> stored) of the rows stored during that minute
  and the records stored per second, from ClickHouse.

At the end: a table, ``soak.json`` and ``soak.png`` in the results folder,
with each process's slope over the last :data:`SLOPE_WINDOW_MIN` minutes:
memory that levels off has a slope near zero there. The workers run with
the user's settings apart from the bench's names (topic, group, database),
Faust's Prometheus sensor included (the rig's other benches turn it off),
since it is the worker as deployed that must not grow. With
``--tracemalloc`` they also write what grew (:mod:`app.allocations`).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench.environment import describe_environment, load_average
from bench.report import environment_lines, save_figure
from bench.stream import MODEL_SERVERS, Rig, say
from core.progress import Progress
from core.security import kafka_client_options
from core.settings import Settings, get_settings
from datagen.generator import unread_records
from stack import control
from stack.launch import Child

__all__ = [
    "MODEL_SERVERS",
    "Sample",
    "SoakOptions",
    "fd_count",
    "rss_mib",
    "run_soak",
    "slope_per_min",
    "summarize",
]

#: Minutes at the end of a run over which each process's memory slope is fitted.
SLOPE_WINDOW_MIN = 30

#: Minutes at which the summary shows each process's memory.
MILESTONES_MIN = (30, 60, 90)

#: Seconds a row may take from its stored-at stamp to being visible (the insert in flight).
SETTLE_S = 5.0

#: Seconds between two checks that the children are alive while a minute passes.
TICK_S = 1.0


@dataclass(frozen=True)
class SoakOptions:
    """The ``riskstream bench soak`` options."""

    minutes: int
    rate: float
    results: Path | None
    workers: int
    servers: int
    tracemalloc: bool

    def folder(self) -> Path:
        return self.results or Path("bench/results") / time.strftime(
            "soak-%Y%m%d-%H%M%S"
        )


@dataclass(frozen=True)
class Sample:
    """One minute's figures (units in the names)."""

    minute: int
    rss_mib: dict[str, float]
    open_fds: dict[str, int]
    lag_records: int
    p99_ms: float | None
    stored_records_per_s: float
    load_average: list[float]


# --- pure parts ---------------------------------------------------------------------


def parse_vm_rss_kib(status: str) -> int:
    """The ``VmRSS`` line of a ``/proc/<pid>/status`` text, in KiB."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise ValueError("no VmRSS line (a kernel thread, or a process that has exited)")


def slope_per_min(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(minute, value)`` points, per minute; None under two points."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    if spread == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread


def _at_minute(samples: Sequence[Sample], minute: int) -> Sample | None:
    return next((s for s in samples if s.minute == minute), None)


def summarize(samples: Sequence[Sample]) -> dict[str, Any]:
    """Per process: memory at start, at the milestones, peak, slope over the last minutes; lag, p99.

    The slope is fitted over the last :data:`SLOPE_WINDOW_MIN` minutes, or
    from minute 1 in a shorter run.
    """
    if not samples:
        return {}
    last = samples[-1].minute
    # Minute 0 is taken before the load starts: a fit through it measures the warm-up.
    window = [s for s in samples if s.minute >= max(1, last - SLOPE_WINDOW_MIN)]
    window = window or list(samples)
    processes: dict[str, Any] = {}
    for name in samples[0].rss_mib:
        series = [(s.minute, s.rss_mib[name]) for s in samples if name in s.rss_mib]
        fds = [s.open_fds[name] for s in samples if name in s.open_fds]
        slope = slope_per_min([(m, v) for m, v in series if m >= window[0].minute])
        milestones = {}
        for minute in (0, *MILESTONES_MIN, last):
            sample = _at_minute(samples, minute)
            if sample is not None and name in sample.rss_mib:
                milestones[str(minute)] = sample.rss_mib[name]
        processes[name] = {
            "rss_mib_at_minute": milestones,
            "rss_peak_mib": max(v for _, v in series),
            "rss_slope_mib_per_min": None if slope is None else round(slope, 3),
            "slope_window_min": [window[0].minute, last],
            "open_fds_min": min(fds),
            "open_fds_max": max(fds),
        }
    measured = [s for s in samples if s.minute > 0]
    p99s = [s.p99_ms for s in measured if s.p99_ms is not None]
    return {
        "minutes": last,
        "processes": processes,
        "lag_records_max": max(s.lag_records for s in measured) if measured else None,
        "lag_records_last": samples[-1].lag_records,
        "p99_ms_median_of_minutes": sorted(p99s)[len(p99s) // 2] if p99s else None,
        "p99_ms_max_of_minutes": max(p99s) if p99s else None,
        "stored_records_per_s_mean": (
            round(sum(s.stored_records_per_s for s in measured) / len(measured), 1)
            if measured
            else None
        ),
    }


# --- /proc ------------------------------------------------------------------------


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` in MiB."""
    text = Path(f"/proc/{pid}/status").read_text()
    return round(parse_vm_rss_kib(text) / 1024, 1)


def fd_count(pid: int) -> int:
    """Open file descriptors of ``pid`` (sockets, files, pipes)."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def _children_of(pid: int) -> list[int]:
    """Pids whose parent is ``pid`` (a model-server supervisor's replicas)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return sorted(found)


def watched_processes(
    settings: Settings, workers: Sequence[Child], servers: Child, replicas: int
) -> dict[str, int]:
    """Name -> pid of every process the soak watches.

    ``riskstream serve`` is the one replica itself, or a supervisor whose
    children are the replicas (the supervisor holds no model: not watched).
    """
    pids = {f"worker {i + 1}": child.pid for i, child in enumerate(workers)}
    serving = [servers.pid] if replicas == 1 else _children_of(servers.pid)
    for index, pid in enumerate(serving):
        pids[f"model server {index + 1}"] = pid
    for service in control.services(settings):
        owned = service.pid_file.owned_pid()
        if owned is not None:
            pids[service.name] = owned
    return pids


# --- Kafka and ClickHouse -----------------------------------------------------------


def _minute_figures(
    rig: Rig, database: str, since_ms: int, until_ms: int
) -> tuple[float | None, float]:
    """p99 (ms) and records/s of the rows stored in ``[since_ms, until_ms)``."""
    row = rig.clickhouse_row(
        f"SELECT count() AS rows, quantileExact(0.99)(stored_at_ms - event_time_ms) AS p99 "
        f"FROM {database}.predictions "
        f"WHERE stored_at_ms >= {since_ms} AND stored_at_ms < {until_ms}"
    )
    rows = int(row.get("rows", 0))
    p99 = float(row["p99"]) if rows else None
    return p99, round(rows / max((until_ms - since_ms) / 1000.0, 1e-3), 1)


# --- the run --------------------------------------------------------------------------


@contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run as Ctrl-C does: through the rig's clean-up."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_soak(options: SoakOptions) -> dict[str, Any]:
    """Run the soak, print a line a minute and the table; write soak.json and soak.png."""
    settings = get_settings()
    folder = options.folder()
    folder.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": " ".join(["riskstream", "bench", *sys.argv[2:]]),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "options": {
            "minutes": options.minutes,
            "rate_records_per_s": options.rate,
            "workers": options.workers,
            "model_servers": options.servers,
            "tracemalloc": options.tracemalloc,
        },
    }
    samples: list[Sample] = []
    with _stop_on_sigterm(), Rig(settings, folder / "work") as rig:
        results["environment"] = describe_environment(
            settings, rig.clickhouse_version()
        )
        for line in environment_lines(results["environment"]):
            say(line)
        try:
            _soak(rig, options, folder, samples)
        except KeyboardInterrupt:
            say(
                f"interrupted after {len(samples)} sample(s); stopping what the soak started"
            )
            results["interrupted"] = True
        finally:
            results["samples"] = [asdict(sample) for sample in samples]
            results["summary"] = summarize(samples)
    results["load_average_at_end"] = load_average()
    for line in summary_lines(results):
        say(line)
    path = folder / "soak.json"
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    say(f"figures: {path}")
    if len(samples) > 1:
        say(f"plot:    {plot(results, folder / 'soak.png')}")
    if options.tracemalloc:
        say(
            f"allocation growth: {folder / 'tracemalloc'} (the highest minute is the latest)"
        )
    return results


def _soak(rig: Rig, options: SoakOptions, folder: Path, samples: list[Sample]) -> None:
    topic = rig.topic("soak")
    database = rig.database("soak")
    group = f"bench-{rig.run_id}-soak"
    rig.declare(topic)
    with rig.model_servers(options.servers) as urls:
        env = rig.env(group, topic, database, urls)
        # The worker as deployed: Faust's own sensor as the user's settings say.
        del env["RISKSTREAM_FAUST_METRICS"]
        if options.tracemalloc:
            env["RISKSTREAM_TRACEMALLOC_DIR"] = str((folder / "tracemalloc").resolve())
        with rig.workers(options.workers, env, "soak") as workers:
            assert rig.serving is not None
            pids = watched_processes(
                rig.settings, workers, rig.serving, options.servers
            )
            generator = rig.generate(topic, "--rate", f"{options.rate:g}")
            say(
                f"soak: {options.minutes} min at {options.rate:,.0f} records/s, "
                f"{options.workers} worker(s), {options.servers} model server(s); "
                f"watching {', '.join(f'{n} (pid {p})' for n, p in pids.items())}"
            )
            say(_header(pids))
            try:
                _sample_minutes(
                    rig,
                    options,
                    database,
                    group,
                    topic,
                    pids,
                    [*workers, generator],
                    samples,
                )
            finally:
                generator.stop(timeout_s=30)


def _sample_minutes(
    rig: Rig,
    options: SoakOptions,
    database: str,
    group: str,
    topic: str,
    pids: Mapping[str, int],
    watched: Sequence[Child],
    samples: list[Sample],
) -> None:
    """One sample at the start, then one a minute: /proc, Kafka's lag, ClickHouse's minute."""
    started = time.monotonic()
    since_ms = int(time.time() * 1000)
    for minute in range(options.minutes + 1):
        if minute:
            _wait_until(started + minute * 60, minute, options.minutes, watched)
        until_ms = int((time.time() - SETTLE_S) * 1000)
        p99, per_s = (
            _minute_figures(rig, database, since_ms, until_ms)
            if minute
            else (None, 0.0)
        )
        since_ms = until_ms
        sample = Sample(
            minute=minute,
            rss_mib={name: rss_mib(pid) for name, pid in pids.items()},
            open_fds={name: fd_count(pid) for name, pid in pids.items()},
            lag_records=asyncio.run(
                unread_records(
                    rig.settings.kafka_bootstrap,
                    topic,
                    group,
                    kafka_client_options(rig.settings),
                )
            ),
            p99_ms=p99,
            stored_records_per_s=per_s,
            load_average=load_average(),
        )
        samples.append(sample)
        say(_line(sample))


def _wait_until(
    deadline: float, minute: int, minutes: int, watched: Sequence[Child]
) -> None:
    """Sleep to ``deadline``, failing at once (with its log's end) if a watched child exits."""
    progress = Progress()
    try:
        while (left := deadline - time.monotonic()) > 0:
            for child in watched:
                if not child.alive():
                    raise SystemExit(
                        f"{child.name} exited during the soak (code "
                        f"{child.process.returncode}):\n{child.log_tail()}"
                    )
            progress.update(f"  minute {minute} of {minutes} in {left:.0f} s")
            time.sleep(min(TICK_S, left))
    finally:
        progress.done()


def _header(pids: Mapping[str, int]) -> str:
    memory = "  ".join(f"{name[:14]:>14}" for name in pids)
    return f"{'min':>4}  RSS MiB: {memory}  | fds: {'  '.join(f'{n[:8]:>8}' for n in pids)}  | lag records  p99 ms  stored/s"


def _line(sample: Sample) -> str:
    memory = "  ".join(f"{value:>14.1f}" for value in sample.rss_mib.values())
    fds = "  ".join(f"{value:>8d}" for value in sample.open_fds.values())
    p99 = "-" if sample.p99_ms is None else f"{sample.p99_ms:,.0f}"
    return (
        f"{sample.minute:>4}           {memory}  |      {fds}  | "
        f"{sample.lag_records:>11,}  {p99:>6}  {sample.stored_records_per_s:>8,.0f}"
    )


def summary_lines(results: Mapping[str, Any]) -> list[str]:
    """The table printed at the end: memory per process at the milestones, its slope; lag, p99."""
    summary = results.get("summary") or {}
    if not summary:
        return ["", "no sample taken"]
    options = results["options"]
    last = summary["minutes"]
    minutes = [m for m in (0, *MILESTONES_MIN, last) if m <= last]
    minutes = sorted(set(minutes))
    lines = [
        "",
        "=" * 78,
        (
            f"riskstream bench soak: {last} min at {options['rate_records_per_s']:,.0f} "
            f"records/s, {options['workers']} worker(s), {options['model_servers']} model server(s)"
        ),
        "=" * 78,
        (
            f"  {'process':<16}"
            + "".join(f"{f'{m} min':>10}" for m in minutes)
            + f"{'peak':>10}{'slope':>16}{'fds':>10}"
        ),
    ]
    for name, figures in summary["processes"].items():
        at = figures["rss_mib_at_minute"]
        slope = figures["rss_slope_mib_per_min"]
        first, end = figures["slope_window_min"]
        lines.append(
            f"  {name:<16}"
            + "".join(
                f"{at[str(m)]:>6.1f} MiB" if str(m) in at else f"{'-':>10}"
                for m in minutes
            )
            + f"{figures['rss_peak_mib']:>6.1f} MiB"
            + (f"{slope:>+9.3f} MiB/min" if slope is not None else f"{'-':>16}")
            + f"{figures['open_fds_min']:>5}-{figures['open_fds_max']}"
        )
    lines.append(f"  (slope: least squares over minutes {first}-{end})")
    p99 = summary["p99_ms_median_of_minutes"]
    lines += [
        (
            f"  consumer lag: {summary['lag_records_last']:,} records at the end, "
            f"at most {summary['lag_records_max']:,} records at a minute's sample"
        ),
        (
            f"  p99 event time -> stored: median of the minutes {p99:,.0f} ms, worst minute "
            f"{summary['p99_ms_max_of_minutes']:,.0f} ms; stored "
            f"{summary['stored_records_per_s_mean']:,.0f} records/s on average"
            if p99 is not None
            else "  no rows stored"
        ),
        "",
    ]
    return lines


def plot(results: Mapping[str, Any], path: Path) -> Path:
    """One panel per process (resident memory, MiB), then lag (records) and p99 (ms).

    Each process has its own scale: on a shared axis a worker's 90 MiB
    sits flat under Kafka's 500 and its megabyte a minute cannot be seen.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    samples = results["samples"]
    minutes = [s["minute"] for s in samples]
    names = list(samples[0]["rss_mib"])
    figure, axes = plt.subplots(
        len(names) + 1, 1, figsize=(9, 1.7 * (len(names) + 1) + 0.8), sharex=True
    )
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, (axis, name) in enumerate(zip(axes, names, strict=False)):
        axis.plot(
            minutes,
            [s["rss_mib"].get(name) for s in samples],
            color=colors[index % len(colors)],
        )
        axis.set_ylabel("RSS, MiB")
        axis.set_title(f"{name}: resident memory", fontsize=9, loc="left")
    options = results["options"]
    figure.suptitle(
        f"Soak: {options['rate_records_per_s']:,.0f} records/s, {options['workers']} "
        f"worker(s), {options['model_servers']} model server(s); "
        f"{results['environment']['cores']} cores (shared)",
        fontsize=10,
    )
    stream = axes[-1]
    stream.set_title("consumer lag and p99 latency", fontsize=9, loc="left")
    stream.plot(minutes, [s["lag_records"] for s in samples], color="tab:purple")
    stream.set_ylabel("consumer lag, records", color="tab:purple")
    stream.set_xlabel("minute")
    latency = stream.twinx()
    latency.plot(
        minutes,
        [s["p99_ms"] for s in samples],
        color="tab:red",
        linestyle="--",
        marker=".",
    )
    latency.set_ylabel("p99 event time -> stored, ms", color="tab:red")
    return save_figure(figure, path)
