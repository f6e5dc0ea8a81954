"""The figures of a ``riskstream bench`` run: a printed table, ``bench.json`` and PNG plots.

The JSON holds every figure with its unit in its key and the environment
it was measured in (:mod:`bench.environment`), so two runs can be compared
without the console output. The plots are drawn with matplotlib's Agg
backend (no display needed).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

__all__ = [
    "TARGET_P99_MS",
    "TARGET_RATIO",
    "TARGET_RECORDS_PER_S",
    "TARGET_TWO_WORKERS_RECORDS_PER_S",
    "TARGET_WORKER_CPU_US",
    "environment_lines",
    "peer_lines",
    "peer_ratios",
    "plot",
    "save_figure",
    "summary_lines",
    "target_lines",
    "targets",
    "topology_lines",
    "write_json",
]


#: The first throughput target (records/s of the best configuration).
TARGET_RECORDS_PER_S = 20_000
#: The targets of "measured against the real thing", judged on one run:
#: p99 event time -> stored at 2,000 records/s, riskstream over the
#: reference's own Flink job at its settings (the headline ratio), worker
#: CPU per stored record in every run, records/s with two workers.
TARGET_P99_MS = 100.0
TARGET_P99_AT_RATE = 2_000.0
TARGET_RATIO = 30.0
TARGET_WORKER_CPU_US = 20.0
TARGET_TWO_WORKERS_RECORDS_PER_S = 60_000
#: The peer the headline ratio is over: the reference's job as it ran it.
HEADLINE_PEER = "flink_reference_p1"


def _verdict(ok: bool) -> str:
    return "meets the target" if ok else "MISSES the target"


def environment_lines(environment: dict[str, Any]) -> list[str]:
    libraries = ", ".join(f"{k} {v}" for k, v in environment["libraries"].items())
    load = " ".join(f"{v:.2f}" for v in environment["load_average_at_start"])
    return [
        (
            f"machine: {environment['cores']} cores ({environment['cpu']}), load average "
            f"{load} at start (1/5/15 min; other work on the machine counts against the figures)"
        ),
        (
            f"Kafka {environment['kafka']}, ClickHouse {environment['clickhouse']}, "
            f"Python {environment['python']}; {libraries}"
        ),
    ]


def _ratio(results: dict[str, Any]) -> dict[str, float] | None:
    """riskstream over the reference: like for like (1 process, 1 model server) and best."""
    reference = results.get("reference")
    runs = results.get("throughput")
    if not reference or not runs or not reference["records_per_s"]:
        return None
    base = reference["records_per_s"]
    runs = [r for r in runs if r.get("sinks", "clickhouse") == "clickhouse"]
    same = next(
        (r for r in runs if r["workers"] == 1 and r["model_servers"] == 1), None
    )
    best = max(runs, key=lambda r: r["records_per_s"])
    ratio = {"best": round(best["records_per_s"] / base, 1)}
    if same is not None:
        ratio["same_resources"] = round(same["records_per_s"] / base, 1)
    return ratio


def summary_lines(results: dict[str, Any]) -> list[str]:
    """The table printed at the end of a run."""
    lines = ["", "=" * 78, "riskstream bench: results", "=" * 78]
    lines += environment_lines(results["environment"])
    runs = results.get("throughput")
    if runs:
        lines += [
            "",
            (
                f"sustained throughput: {results['records_preloaded']:,} records preloaded, "
                "records/s from Kafka into the sinks (counted in each; with two, the slower), "
                "CPU per stored record"
            ),
            (
                f"  {'sinks':<21}  {'workers':>7}  {'servers':>7}  {'records/s':>10}  "
                f"{'worker CPU':>14}  {'database CPU':<40}  {'rows counted':>12}  {'load':>5}"
            ),
        ]
        for run in runs:
            database_cpu = ", ".join(
                f"{name} {us:,.1f} us"
                for name, us in run.get("database_cpu_us_per_record", {}).items()
            )
            lines.append(
                f"  {run.get('sinks', 'clickhouse'):<21}  {run['workers']:>7}  "
                f"{run['model_servers']:>7}  {run['records_per_s']:>10,.0f}  "
                f"{run['worker_cpu_us_per_record']:>8,.1f} us/rec  {database_cpu:<40}  "
                f"{run['rows_measured']:>12,}  {run['load_average'][0]:>5.2f}"
            )
        best = max(run["records_per_s"] for run in runs)
        lines.append(
            f"  best {best:,.0f} records/s ({_verdict(best >= TARGET_RECORDS_PER_S)} "
            f"of {TARGET_RECORDS_PER_S:,} records/s)"
        )
    lines += topology_lines(results)
    reference = results.get("reference")
    if reference:
        lines += [
            "",
            (
                "the reference's design (one synchronous HTTP call per record, a new "
                "client per call, 1 model server):"
            ),
            (
                f"  {reference['records_per_s']:,.0f} records/s "
                f"({reference['rows_measured']:,} rows in {reference['measured_s']:.1f} s, "
                f"load {reference['load_average'][0]:.2f})"
            ),
        ]
    ratio = _ratio(results)
    if ratio:
        same = ratio.get("same_resources")
        lines.append(
            f"  riskstream / reference: {ratio['best']:,.1f} x best configuration"
            + (
                f", {same:,.1f} x with the same resources (1 process, 1 model server)"
                if same is not None
                else ""
            )
            + " (a cross-check of the Python port; the headline ratio is over the "
            "reference's Flink job, below)"
        )
    lines += peer_lines(results)
    latency = results.get("latency")
    if latency:
        lines += [
            "",
            (
                "latency, event time -> row stored (1 worker, 3 model servers, "
                "generator at a fixed rate):"
            ),
            (
                f"  {'offered/s':>9}  {'achieved/s':>10}  {'p50 ms':>8}  {'p95 ms':>8}  "
                f"{'p99 ms':>8}  {'max ms':>8}  {'records':>8}"
            ),
        ]
        for phase in latency:
            lines.append(
                f"  {phase['offered_records_per_s']:>9,.0f}  "
                f"{phase['achieved_records_per_s']:>10,.0f}  {phase['p50_ms']:>8,.0f}  "
                f"{phase['p95_ms']:>8,.0f}  {phase['p99_ms']:>8,.0f}  "
                f"{phase['max_ms']:>8,.0f}  {phase['records']:>8,}"
            )
        at_target = [
            p for p in latency if p["offered_records_per_s"] == TARGET_P99_AT_RATE
        ]
        if at_target:
            p99 = at_target[0]["p99_ms"]
            lines.append(
                f"  p99 at {TARGET_P99_AT_RATE:,.0f} records/s: {p99:,.0f} ms "
                f"({_verdict(p99 <= TARGET_P99_MS)} of {TARGET_P99_MS:.0f} ms)"
            )
    lines += target_lines(results)
    serving = results.get("serving")
    if serving:
        rates = serving["evaluators_rows_per_s"]
        lines += [
            "",
            f"model servers alone ({serving['model']}):",
            (
                f"  evaluators: fast {rates['fast']:,.0f} rows/s, pypmml {rates['pypmml']:,.0f} "
                f"rows/s ({serving['evaluator_speedup']:,.1f} x)"
            ),
        ]
        if "throughput" in serving:
            t = serving["throughput"]
            lines.append(
                f"  {t['rows_per_request']}-row requests: {t['rows_per_s']:,.0f} rows/s, "
                f"p50 {t['p50_ms']:.2f} ms, p99 {t['p99_ms']:.2f} ms"
            )
        if "latency" in serving:
            t = serving["latency"]
            lines.append(
                f"  1-row requests at {t['offered_requests_per_s']:,.0f}/s: "
                f"p50 {t['p50_ms']:.2f} ms, p99 {t['p99_ms']:.2f} ms"
            )
    lines.append("")
    return lines


def topology_lines(results: dict[str, Any]) -> list[str]:
    """The single and the cluster topology's runs side by side, with each server process's CPU."""
    cluster = results.get("throughput_cluster")
    if not cluster:
        return []
    single = [
        run for run in results.get("throughput", []) if run.get("sinks") == "clickhouse"
    ]
    lines = [
        "",
        (
            "the same runs on both topologies (ClickHouse sink), CPU per stored record of "
            "each process (us/record; all on this machine's cores):"
        ),
        (
            f"  {'topology':<8}  {'workers':>7}  {'servers':>7}  {'records/s':>10}  "
            f"{'worker':>7}  per server process"
        ),
    ]
    for run in [*single, *cluster]:
        processes = ", ".join(
            f"{name} {us:,.1f}"
            for name, us in run.get("stack_cpu_us_per_record", {}).items()
        )
        lines.append(
            f"  {run.get('topology', 'single'):<8}  {run['workers']:>7}  "
            f"{run['model_servers']:>7}  {run['records_per_s']:>10,.0f}  "
            f"{run['worker_cpu_us_per_record']:>7,.1f}  {processes}"
        )
    return lines


def _riskstream_runs(results: dict[str, Any]) -> list[dict[str, Any]]:
    """riskstream's ClickHouse throughput runs, to stand beside the peers."""
    return [
        r
        for r in results.get("throughput") or []
        if r.get("sinks", "clickhouse") == "clickhouse"
    ]


def peer_ratios(results: dict[str, Any]) -> dict[str, float] | None:
    """riskstream over each peer at the same resources: 1 worker vs parallelism 1, 2 vs 2.

    The riskstream side is its fastest ClickHouse run with as many workers
    as the peer has parallel subtasks (any number of model servers).
    """
    runs = _riskstream_runs(results)
    peers = (results.get("peers") or {}).get("runs") or []
    ratios: dict[str, float] = {}
    for peer in peers:
        same = [r for r in runs if r["workers"] == peer["parallelism"]]
        if same and peer["records_per_s"]:
            best = max(r["records_per_s"] for r in same)
            ratios[peer["peer"]] = round(best / peer["records_per_s"], 1)
    return ratios or None


def peer_lines(results: dict[str, Any]) -> list[str]:
    """The peers' table: records/s and CPU per stored record of each process."""
    peers = results.get("peers")
    if not peers:
        return []
    versions = peers["versions"]
    lines = [
        "",
        (
            f"peers on the same topic, counted in ClickHouse the same way (Flink "
            f"{versions['flink']}, Kafka connector {versions['flink_connector_kafka']}, "
            f"Quix Streams {versions['quixstreams']}, Java {versions['java']}):"
        ),
        (
            f"  {'system':<40}  {'p':>2}  {'servers':>7}  {'records/s':>10}  "
            f"{'CPU us/record: peer':>19}  {'model srv':>9}  {'kafka':>7}  "
            f"{'clickhouse':>10}  {'rows':>8}  {'dup':>4}"
        ),
    ]
    for run in peers["runs"]:
        cpu = run["cpu_us_per_record"]
        lines.append(
            f"  {run['title']:<40}  {run['parallelism']:>2}  {run['model_servers']:>7}  "
            f"{run['records_per_s']:>10,.0f}  {cpu['peer']:>19,.1f}  "
            f"{cpu['model_servers']:>9,.1f}  {cpu.get('kafka', 0.0):>7,.1f}  "
            f"{cpu.get('clickhouse', 0.0):>10,.1f}  {run['records']:>8,}  "
            f"{run['duplicates']:>4}"
        )
    for run in _riskstream_runs(results):
        lines.append(
            f"  {'riskstream, ' + str(run['workers']) + ' worker(s)':<40}  "
            f"{run['workers']:>2}  {run['model_servers']:>7}  "
            f"{run['records_per_s']:>10,.0f}  {run['worker_cpu_us_per_record']:>19,.1f}  "
            f"{'':>9}  {'':>7}  "
            f"{run['database_cpu_us_per_record'].get('clickhouse', 0.0):>10,.1f}  "
            f"{run['records']:>8,}  {'':>4}"
        )
    ratios = peer_ratios(results)
    if ratios:
        titles = {run["peer"]: run["title"] for run in peers["runs"]}
        lines.append(
            "  riskstream / peer, as many workers as the peer's parallelism: "
            + ", ".join(f"{titles[k]} {v:,.1f} x" for k, v in ratios.items())
        )
    for phase in peers.get("latency") or []:
        lines.append(
            f"  {phase['title']} at {phase['offered_records_per_s']:,.0f} records/s, "
            f"event time -> stored: p50 {phase['p50_ms']:,.0f} ms, p95 "
            f"{phase['p95_ms']:,.0f} ms, p99 {phase['p99_ms']:,.0f} ms "
            f"({phase['records']:,} records)"
        )
    if "latency" in peers:
        measured = {phase["peer"] for phase in peers["latency"]}
        slow = [run["title"] for run in peers["runs"] if run["peer"] not in measured]
        if slow:
            lines.append(
                "  no latency phase (below 1.2 x 2,000 records/s): " + ", ".join(slow)
            )
    return lines


def targets(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target this run can judge: the measured value, the target, its unit, met or not."""
    judged: dict[str, dict[str, Any]] = {}

    def judge(name: str, value: float, target: float, unit: str, met: bool) -> None:
        judged[name] = {"value": value, "target": target, "unit": unit, "met": met}

    ratios = peer_ratios(results) or {}
    if HEADLINE_PEER in ratios:
        judge(
            "ratio_to_reference_flink_job",
            ratios[HEADLINE_PEER],
            TARGET_RATIO,
            "x",
            ratios[HEADLINE_PEER] >= TARGET_RATIO,
        )
    if ratios:
        slowest = min(ratios.values())
        judge("ratio_to_every_peer_min", slowest, 1.0, "x", slowest > 1.0)
    runs = _riskstream_runs(results)
    if runs:
        worst = max(r["worker_cpu_us_per_record"] for r in runs)
        judge(
            "worker_cpu_us_per_record_max",
            worst,
            TARGET_WORKER_CPU_US,
            "us/record",
            worst <= TARGET_WORKER_CPU_US,
        )
    two = [r["records_per_s"] for r in runs if r["workers"] == 2]
    if two:
        judge(
            "two_workers_records_per_s",
            max(two),
            TARGET_TWO_WORKERS_RECORDS_PER_S,
            "records/s",
            max(two) >= TARGET_TWO_WORKERS_RECORDS_PER_S,
        )
    at_rate = [
        p
        for p in results.get("latency") or []
        if p["offered_records_per_s"] == TARGET_P99_AT_RATE
    ]
    if at_rate:
        p99 = at_rate[0]["p99_ms"]
        judge(
            "p99_ms_at_2000_records_per_s",
            p99,
            TARGET_P99_MS,
            "ms",
            p99 < TARGET_P99_MS,
        )
    return judged


def target_lines(results: dict[str, Any]) -> list[str]:
    """The targets, one line each, with the figure that decides."""
    judged = targets(results)
    if not judged:
        return []
    runs = _riskstream_runs(results)
    words = {
        "ratio_to_reference_flink_job": "riskstream / the reference's Flink job at its "
        "settings (1 worker vs parallelism 1): {value:,.1f} x, target >= {target:,.0f} x",
        "ratio_to_every_peer_min": "ahead of every peer at the same resources: slowest "
        "ratio {value:,.1f} x, target > 1 x",
        "worker_cpu_us_per_record_max": "worker CPU per stored record: at most {value:,.1f} "
        "us over the runs, target <= {target:,.0f} us in each",
        "two_workers_records_per_s": "two workers: {value:,.0f} records/s, target >= "
        "{target:,.0f}",
        "p99_ms_at_2000_records_per_s": "p99 event time -> stored at 2,000 records/s: "
        "{value:,.0f} ms, target < {target:,.0f} ms",
    }
    lines = ["", "targets (judged on this run):"]
    for name, figure in judged.items():
        line = words[name].format(**figure)
        if name == "worker_cpu_us_per_record_max":
            met = sum(r["worker_cpu_us_per_record"] <= figure["target"] for r in runs)
            line += f" ({met} of {len(runs)} runs within it)"
        lines.append(f"  {_verdict(figure['met'])}: {line}")
    return lines


def write_json(results: dict[str, Any], folder: Path) -> Path:
    path = folder / "bench.json"
    results = {
        **results,
        "ratio_to_reference": _ratio(results),
        "ratio_to_peers": peer_ratios(results),
        "targets": targets(results),
    }
    path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    return path


def plot(results: dict[str, Any], folder: Path) -> list[Path]:
    """throughput.png, peers.png and latency.png for what the run measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    environment = results["environment"]
    subtitle = (
        f"{environment['cores']} cores, Kafka {environment['kafka']}, "
        f"ClickHouse {environment['clickhouse']}, "
        f"faust-streaming {environment['libraries']['faust-streaming']}"
    )
    written: list[Path] = []
    runs = results.get("throughput") or []
    reference = results.get("reference")
    if runs or reference:
        labels = [
            f"{r['workers']} worker(s)\n{r['model_servers']} server(s)\n"
            + "\n+ ".join(r.get("sinks", "clickhouse").split(","))
            for r in runs
        ]
        values = [r["records_per_s"] for r in runs]
        colors = ["tab:blue"] * len(runs)
        if reference:
            labels.append("reference\ndesign")
            values.append(reference["records_per_s"])
            colors.append("tab:gray")
        figure, axis = plt.subplots(figsize=(max(8, len(labels) * 1.1), 4.5))
        bars = axis.bar(labels, values, color=colors)
        axis.bar_label(bars, labels=[f"{v:,.0f}" for v in values])
        axis.axhline(
            TARGET_RECORDS_PER_S, color="tab:red", linestyle="--", label="target"
        )
        axis.set_ylabel("records/s, Kafka -> the sinks")
        axis.set_title(f"Sustained throughput\n{subtitle}", fontsize=10)
        axis.legend()
        written.append(save_figure(figure, folder / "throughput.png"))
    peers = (results.get("peers") or {}).get("runs") or []
    if peers:
        ours = _riskstream_runs(results)
        labels = [run["title"].replace(", ", "\n") for run in peers] + [
            f"riskstream\n{r['workers']} worker(s)\n{r['model_servers']} server(s)"
            for r in ours
        ]
        values = [run["records_per_s"] for run in peers] + [
            r["records_per_s"] for r in ours
        ]
        colors = ["tab:gray"] * len(peers) + ["tab:blue"] * len(ours)
        figure, axis = plt.subplots(figsize=(max(8, len(labels) * 1.3), 4.8))
        bars = axis.bar(labels, values, color=colors)
        axis.bar_label(bars, labels=[f"{v:,.0f}" for v in values])
        axis.set_yscale("log")
        axis.set_ylim(bottom=10)
        axis.set_ylabel("records/s, Kafka -> ClickHouse (log scale)")
        versions = results["peers"]["versions"]
        axis.set_title(
            f"riskstream and its peers on the same topic\n{subtitle}, Flink "
            f"{versions['flink']}, Quix Streams {versions['quixstreams']}",
            fontsize=10,
        )
        axis.tick_params(axis="x", labelsize=8)
        written.append(save_figure(figure, folder / "peers.png"))
    latency = results.get("latency") or []
    if latency:
        figure, axis = plt.subplots(figsize=(8, 4.5))
        width = 0.25
        positions = range(len(latency))
        for shift, key in ((-1, "p50_ms"), (0, "p95_ms"), (1, "p99_ms")):
            xs = [p + shift * width for p in positions]
            bars = axis.bar(xs, [phase[key] for phase in latency], width, label=key[:3])
            axis.bar_label(bars, fmt="%.0f", fontsize=8)
        axis.axhline(TARGET_P99_MS, color="tab:red", linestyle="--", label="p99 target")
        axis.set_xticks(
            list(positions),
            [f"{phase['offered_records_per_s']:,.0f} records/s" for phase in latency],
        )
        axis.set_ylabel("event time -> stored, ms")
        axis.set_title(f"Latency (1 worker, 3 model servers)\n{subtitle}", fontsize=10)
        axis.legend()
        written.append(save_figure(figure, folder / "latency.png"))
    return written


def save_figure(figure: Any, path: Path) -> Path:
    """Write ``figure`` as a PNG at ``path`` and free it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path
