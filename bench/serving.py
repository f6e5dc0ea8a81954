"""Model-server benchmark: evaluators side by side, then one server process under load.

Four measurements, printed with the machine's core count and the library
versions that produced them:

1. the fast evaluator and pypmml's DataFrame scoring on the same rows, in
   this process, one after the other (the ratio is the point);
2. throughput: ``--concurrency`` requests of ``--batch`` rows kept in
   flight for ``--duration`` seconds;
3. the V2 wire: the same load as V2 infer requests, JSON tensors and then
   the binary tensor data extension (tritonclient's default), one after the
   other against the same server, for requests/s and server CPU per row;
4. latency: single-row requests sent open-loop at ``--rate`` per second
   (each at its scheduled time, whether or not earlier ones were answered,
   so a slow server cannot slow the load down and hide its queueing).

The server is a real ``riskstream serve`` process (one replica, token on),
and the load comes from a separate process, so the server's CPU time
(read from ``/proc``) is its own.
"""

from __future__ import annotations

import asyncio
import os
import platform
import re
import secrets
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib.metadata import version
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from bench.environment import cpu_seconds
from core.settings import get_settings
from models.pmml_schema import PmmlSchema, read_schema
from models.protocol import EXPLAIN_KEY, TOKEN_HEADER, infer_path
from models.repository import ModelRepository
from models.v2_binary import (
    BINARY_DATA_OUTPUT,
    INFERENCE_HEADER_LENGTH,
    encode_tensor,
    pack_body,
)

__all__ = ["ServingBenchmark", "run"]


_LIBRARIES = (
    "aiohttp",
    "orjson",
    "numpy",
    "scikit-learn",
    "sklearn-pmml-model",
    "pypmml",
)
_SERVED_NAME = "m"

#: the issue's targets, for the verdict lines
TARGET_ROWS_PER_S = 100_000
TARGET_P50_MS = 1.0
TARGET_P99_MS = 5.0
TARGET_SPEEDUP = 50.0


@dataclass(frozen=True)
class ServingBenchmark:
    """What to measure and how hard (the ``riskstream bench serving`` options)."""

    model_ref: str | None
    pmml: Path | None
    repository: Path | None
    port: int
    duration_s: float
    batch_rows: int
    concurrency: int
    rate: float
    evaluator_rows: int


def _say(line: str = "") -> None:
    print(line, flush=True)


# --- what is measured ----------------------------------------------------------------
def _model_file(config: ServingBenchmark) -> tuple[list[str], Path, str]:
    """``riskstream serve`` arguments, the PMML path, and a description of the model."""
    if config.pmml is not None:
        return ["--pmml", str(config.pmml)], config.pmml, str(config.pmml)
    root = (
        config.repository
        if config.repository is not None
        else get_settings().repository_path
    )
    repository = ModelRepository(root)
    found = repository.resolve(config.model_ref or repository.default_name())
    card = found.card
    description = (
        f"{found.ref} ({card.get('algorithm_description', card.get('algorithm', '?'))})"
    )
    return (
        ["--repository", str(root), "--model", found.ref],
        found.pmml_path,
        description,
    )


@dataclass(frozen=True)
class _Rows:
    """The same random rows as a client sends them and as the fast evaluator gets them."""

    #: per input, in schema order: numbers, or the category's text
    values: list[list[float | str]]
    #: the encoding contract: numbers, or the category's index in ``field.categories``
    coded: np.ndarray

    def v2_bodies(
        self, schema: PmmlSchema, count: int
    ) -> dict[str, tuple[bytes, dict[str, str]]]:
        """The first ``count`` rows as V2 requests, one tensor per input: JSON, and binary both ways.

        Each is ``(body, headers)``; the binary one asks for every output
        raw, as tritonclient does by default.
        """
        tensors = [
            (field.name, "FP64" if field.numeric else "BYTES", column[:count])
            for field, column in zip(schema.inputs, self.values, strict=True)
        ]
        inputs: list[dict[str, Any]] = [
            {"name": name, "datatype": datatype, "shape": [count], "data": data}
            for name, datatype, data in tensors
        ]
        plain = orjson.dumps({"inputs": inputs})
        raw = {name: encode_tensor(datatype, data) for name, datatype, data in tensors}
        binary, header_length = pack_body(
            {"inputs": inputs, "parameters": {BINARY_DATA_OUTPUT: True}}, "inputs", raw
        )
        return {
            "JSON": (plain, {"Content-Type": "application/json"}),
            "binary": (
                binary,
                {
                    "Content-Type": "application/octet-stream",
                    INFERENCE_HEADER_LENGTH: str(header_length),
                },
            ),
        }

    def instances(self, count: int) -> list[dict[str, float | str]]:
        """The first ``count`` rows as the reference's positional instances."""
        return [
            {f"_c{i}": column[row] for i, column in enumerate(self.values)}
            for row in range(count)
        ]


def _random_rows(schema: PmmlSchema, count: int, seed: int = 7) -> _Rows:
    """Rows drawn by the schema: numbers inside each valid interval with one decimal
    (like the data sets), and a declared value of each categorical input."""
    rng = np.random.default_rng(seed)
    values: list[list[float | str]] = []
    coded = np.empty((count, len(schema.inputs)))
    for i, field in enumerate(schema.inputs):
        if field.numeric:
            low = field.valid_min if field.valid_min is not None else 0.0
            high = field.valid_max if field.valid_max is not None else 1.0
            column = np.clip(
                np.round(low + rng.random(count) * (high - low), 1), low, high
            )
            coded[:, i] = column
            values.append(column.tolist())
        else:
            declared = field.values or field.categories
            codes = rng.integers(0, len(declared), count)
            coded[:, i] = codes  # the declared values come first in field.categories
            values.append([declared[c] for c in codes.tolist()])
    return _Rows(values, coded)


def _machine() -> list[str]:
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    libraries = ", ".join(f"{name} {version(name)}" for name in _LIBRARIES)
    return [
        (
            f"machine: {cores} cores ({usable} usable), {platform.processor() or platform.machine()}, "
            f"load average {load} (other work on the machine counts against the figures)"
        ),
        f"python {platform.python_version()}; {libraries}",
    ]


# --- 1. evaluators side by side ----------------------------------------------------------
def _rate(score: Any, rows: int, minimum_s: float = 1.0) -> float:
    """Rows per second of ``score()``, repeated for at least ``minimum_s`` seconds."""
    calls = 0
    started = time.perf_counter()
    while True:
        score()
        calls += 1
        elapsed = time.perf_counter() - started
        if elapsed >= minimum_s:
            return calls * rows / elapsed


def compare_evaluators(pmml: Path, rows: int) -> dict[str, float]:
    """Rows/s of the fast evaluator and of pypmml (DataFrame, as documented) on the same rows."""
    import pandas as pd
    from pypmml import Model

    from serving.fast_evaluator import build_fast_evaluator

    document = pmml.read_bytes()
    schema = read_schema(document)
    drawn = _random_rows(schema, rows)
    fast = build_fast_evaluator(document, schema)
    reference = Model.fromFile(str(pmml))
    frame = pd.DataFrame(dict(zip(schema.input_names, drawn.values, strict=True)))
    reference.predict(frame.head(100))  # JVM warm-up
    return {
        "fast": _rate(lambda: fast.score(drawn.coded), rows),
        "pypmml": _rate(lambda: reference.predict(frame), rows, minimum_s=3.0),
    }


# --- 2./3. the server under load (runs in the load-generator process) ---------------------
def _percentiles(latencies: list[float]) -> dict[str, float]:
    if not latencies:
        return {}
    ms = np.array(latencies) * 1000.0
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
    }


async def _throughput(
    url: str,
    token: str,
    body: bytes,
    concurrency: int,
    duration_s: float,
    wire: Wire,
) -> dict[str, Any]:
    import aiohttp

    rows = requests = failures = 0
    latencies: list[float] = []
    deadline = time.perf_counter() + duration_s
    headers = {TOKEN_HEADER: token, **wire.headers}
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency)
    ) as session:

        async def worker() -> None:
            nonlocal rows, requests, failures
            while time.perf_counter() < deadline:
                sent = time.perf_counter()
                async with session.post(url, data=body, headers=headers) as response:
                    payload = await response.read()
                latencies.append(time.perf_counter() - sent)
                requests += 1
                if response.status == 200:
                    rows += wire.rows or payload.count(b'"label"')
                else:
                    failures += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
        "rows": rows,
        "requests": requests,
        "failures": failures,
        "elapsed_s": elapsed,
        **_percentiles(latencies),
    }


async def _latency(
    url: str, token: str, body: bytes, rate: float, duration_s: float
) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    lateness: list[float] = []
    failures = 0
    headers = {TOKEN_HEADER: token, **_V1_WIRE.headers}
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0)
    ) as session:

        async def one() -> None:
            nonlocal failures
            sent = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
            latencies.append(time.perf_counter() - sent)
            if response.status != 200:
                failures += 1

        # warm the connection pool so that the first requests do not pay for connecting
        await asyncio.gather(*(one() for _ in range(8)))
        latencies.clear()
        count = int(rate * duration_s)
        started = time.perf_counter()
        tasks = []
        for i in range(count):
            scheduled = started + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            lateness.append(max(0.0, time.perf_counter() - scheduled))
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return {
        "requests": count,
        "failures": failures,
        "elapsed_s": elapsed,
        "send_lateness_p99_ms": float(np.percentile(np.array(lateness) * 1000, 99)),
        **_percentiles(latencies),
    }


@dataclass(frozen=True)
class Wire:
    """How a throughput phase's requests go: their headers besides the token, rows per answer.

    ``rows`` 0 counts the reference's answers' labels (a row in error has
    none); a V2 answer is all rows or a 400, so it counts as its batch.
    """

    headers: dict[str, str]
    rows: int = 0


_V1_WIRE = Wire({"Content-Type": "application/json"})


def load_phase(
    kind: str,
    url: str,
    token: str,
    body: bytes,
    parameter: float,
    duration_s: float,
    wire: Wire = _V1_WIRE,
) -> dict[str, Any]:
    """Entry point of the load-generator process (one phase)."""
    if kind == "throughput":
        return asyncio.run(
            _throughput(url, token, body, int(parameter), duration_s, wire)
        )
    return asyncio.run(_latency(url, token, body, parameter, duration_s))


# --- the server process --------------------------------------------------------------------
class _Server:
    def __init__(self, arguments: list[str], port: int, token: str) -> None:
        self.log = Path(
            tempfile.mkstemp(prefix="riskstream-bench-serve-", suffix=".log")[1]
        )
        executable = Path(sys.executable).with_name("riskstream")
        self.process = subprocess.Popen(
            [
                str(executable),
                "serve",
                "--port",
                str(port),
                "--served-name",
                _SERVED_NAME,
                *arguments,
            ],
            stdout=self.log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, "RISKSTREAM_MODEL_TOKEN": token},
        )
        deadline = time.monotonic() + 120
        while not re.search("listening on", self.log.read_text()):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(
                    f"the model server did not start:\n{self.log.read_text()}"
                )
            time.sleep(0.1)
        self.started_line = next(
            line for line in self.log.read_text().splitlines() if "listening on" in line
        )

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)
        self.log.unlink(missing_ok=True)


def _phase(
    executor: ProcessPoolExecutor, server: _Server, *arguments: Any
) -> tuple[dict[str, Any], float]:
    """Run one load phase; returns its figures and the server's CPU seconds during it."""
    before = cpu_seconds(server.process.pid)
    figures = executor.submit(load_phase, *arguments).result()
    return figures, cpu_seconds(server.process.pid) - before


def _v2_wire(
    load: ProcessPoolExecutor,
    server: _Server,
    config: ServingBenchmark,
    schema: PmmlSchema,
    rows: _Rows,
    token: str,
) -> dict[str, dict[str, float]]:
    """Phase 3: the throughput load as V2 JSON, then as V2 binary, on the same server."""
    _say(
        f"[3/5] the V2 wire: {config.concurrency} requests of {config.batch_rows} rows "
        f"in flight, JSON then binary tensors, {config.duration_s:.0f} s each ..."
    )
    url = f"http://127.0.0.1:{config.port}{infer_path(_SERVED_NAME)}"
    figures: dict[str, dict[str, float]] = {}
    bodies = rows.v2_bodies(schema, config.batch_rows)
    for wire, (body, headers) in bodies.items():
        measured, cpu = _phase(
            load,
            server,
            "throughput",
            url,
            token,
            body,
            config.concurrency,
            config.duration_s,
            Wire(headers, config.batch_rows),
        )
        elapsed = measured["elapsed_s"]
        figures[wire] = {
            "request_bytes": len(body),
            "requests_per_s": round(measured["requests"] / elapsed, 1),
            "rows_per_s": round(measured["rows"] / elapsed, 1),
            "failures": measured["failures"],
            "p50_ms": measured["p50_ms"],
            "p99_ms": measured["p99_ms"],
            "server_cpu_us_per_row": round(cpu / max(measured["rows"], 1) * 1e6, 3),
        }
    _say(
        f"  {'':<8}{'body bytes':>12}{'requests/s':>13}{'rows/s':>12}"
        f"{'p50 ms':>9}{'p99 ms':>9}{'server CPU us/row':>19}{'failed':>8}"
    )
    for wire, f in figures.items():
        _say(
            f"  {wire:<8}{f['request_bytes']:>12,.0f}{f['requests_per_s']:>13,.0f}"
            f"{f['rows_per_s']:>12,.0f}{f['p50_ms']:>9.2f}{f['p99_ms']:>9.2f}"
            f"{f['server_cpu_us_per_row']:>19.2f}{f['failures']:>8.0f}"
        )
    return figures


def _explanation_cost(
    load: ProcessPoolExecutor,
    server: _Server,
    config: ServingBenchmark,
    url: str,
    token: str,
    plain_body: bytes,
    rows: _Rows,
) -> dict[str, float]:
    """Server CPU per row of the throughput load without and with ``"explain": true``, back to back."""
    _say(
        f"[4/5] explanations: the throughput load without and with explain, "
        f"{config.duration_s:.0f} s each ..."
    )
    explained_body = orjson.dumps(
        {"instances": rows.instances(config.batch_rows), EXPLAIN_KEY: True}
    )
    cost: dict[str, float] = {}
    for name, body in (("off", plain_body), ("on", explained_body)):
        figures, cpu = _phase(
            load,
            server,
            "throughput",
            url,
            token,
            body,
            config.concurrency,
            config.duration_s,
        )
        cost[f"server_cpu_us_per_row_{name}"] = round(
            cpu / max(figures["rows"], 1) * 1e6, 2
        )
        cost[f"rows_per_s_{name}"] = round(figures["rows"] / figures["elapsed_s"], 1)
    _say(
        f"  server CPU per row      off {cost['server_cpu_us_per_row_off']:,.2f} us, "
        f"on {cost['server_cpu_us_per_row_on']:,.2f} us"
    )
    _say(
        f"  rows scored             off {cost['rows_per_s_off']:,.0f} rows/s, "
        f"on {cost['rows_per_s_on']:,.0f} rows/s"
    )
    return cost


def _verdict(ok: bool) -> str:
    return "meets the target" if ok else "MISSES the target"


def run(config: ServingBenchmark) -> dict[str, Any]:
    """Measure and print; nothing is asserted. Returns the figures (``riskstream bench`` saves them)."""
    arguments, pmml, description = _model_file(config)
    schema = read_schema(pmml)
    for line in _machine():
        _say(line)
    _say(f"model: {description}, {len(schema.inputs)} inputs")
    _say()

    _say(
        f"[1/5] evaluators side by side, {config.evaluator_rows:,} rows in this process ..."
    )
    rates = compare_evaluators(pmml, config.evaluator_rows)
    speedup = rates["fast"] / rates["pypmml"]
    results: dict[str, Any] = {
        "model": description,
        "evaluators_rows_per_s": {name: round(rate, 1) for name, rate in rates.items()},
        "evaluator_speedup": round(speedup, 1),
    }
    _say(f"  fast evaluator          {rates['fast']:>14,.0f} rows/s")
    _say(f"  pypmml (DataFrame)      {rates['pypmml']:>14,.0f} rows/s")
    _say(
        f"  speed-up                {speedup:>14,.1f} x   ({_verdict(speedup >= TARGET_SPEEDUP)} of {TARGET_SPEEDUP:.0f} x)"
    )
    _say()

    token = secrets.token_hex(16)
    url = f"http://127.0.0.1:{config.port}/v1/models/{_SERVED_NAME}:predict"
    rows = _random_rows(schema, config.batch_rows, seed=11)
    batch_body = orjson.dumps({"instances": rows.instances(config.batch_rows)})
    single_body = orjson.dumps({"instances": rows.instances(1)})
    server = _Server(arguments, config.port, token)
    try:
        _say(f"server: {server.started_line.split(': ', 1)[-1]}")
        with ProcessPoolExecutor(
            max_workers=1, mp_context=get_context("spawn")
        ) as load:
            load.submit(
                time.sleep, 0
            ).result()  # start the load generator before measuring
            _say(
                f"[2/5] throughput: {config.concurrency} requests of {config.batch_rows} rows in flight, "
                f"{config.duration_s:.0f} s ..."
            )
            figures, cpu = _phase(
                load,
                server,
                "throughput",
                url,
                token,
                batch_body,
                config.concurrency,
                config.duration_s,
            )
            throughput = figures["rows"] / figures["elapsed_s"]
            results["throughput"] = {
                "rows_per_request": config.batch_rows,
                "requests_in_flight": config.concurrency,
                "rows_per_s": round(throughput, 1),
                "p50_ms": figures["p50_ms"],
                "p99_ms": figures["p99_ms"],
                "server_cpu_percent": round(cpu / figures["elapsed_s"] * 100, 1),
            }
            _say(
                f"  rows scored             {throughput:>14,.0f} rows/s   ({_verdict(throughput >= TARGET_ROWS_PER_S)} of {TARGET_ROWS_PER_S:,} rows/s)"
            )
            _say(
                f"  requests                {figures['requests'] / figures['elapsed_s']:>14,.0f} requests/s, {figures['failures']} failed"
            )
            _say(
                f"  request latency         p50 {figures['p50_ms']:.2f} ms, p99 {figures['p99_ms']:.2f} ms"
            )
            _say(
                f"  server CPU              {cpu / figures['elapsed_s'] * 100:>14,.0f} % of one core "
                f"({figures['rows'] / max(cpu, 1e-9):,.0f} rows per CPU-second)"
            )
            _say()
            results["v2_wire"] = _v2_wire(load, server, config, schema, rows, token)
            _say()
            results["explanations"] = _explanation_cost(
                load, server, config, url, token, batch_body, rows
            )
            _say()
            _say(
                f"[5/5] latency: single-row requests at {config.rate:,.0f} requests/s, {config.duration_s:.0f} s ..."
            )
            figures, cpu = _phase(
                load,
                server,
                "latency",
                url,
                token,
                single_body,
                config.rate,
                config.duration_s,
            )
            achieved = figures["requests"] / figures["elapsed_s"]
            results["latency"] = {
                "rows_per_request": 1,
                "offered_requests_per_s": config.rate,
                "achieved_requests_per_s": round(achieved, 1),
                **{
                    key: figures[key]
                    for key in ("p50_ms", "p90_ms", "p99_ms", "max_ms")
                },
            }
            ok = (
                figures["p50_ms"] <= TARGET_P50_MS
                and figures["p99_ms"] <= TARGET_P99_MS
            )
            _say(
                f"  achieved rate           {achieved:>14,.0f} requests/s, {figures['failures']} failed "
                f"(sender lateness p99 {figures['send_lateness_p99_ms']:.2f} ms)"
            )
            _say(
                f"  latency                 p50 {figures['p50_ms']:.3f} ms, p90 {figures['p90_ms']:.3f} ms, "
                f"p99 {figures['p99_ms']:.3f} ms, max {figures['max_ms']:.3f} ms"
            )
            _say(
                f"                          ({_verdict(ok)}: p50 <= {TARGET_P50_MS:g} ms, p99 <= {TARGET_P99_MS:g} ms)"
            )
            _say(
                f"  server CPU              {cpu / figures['elapsed_s'] * 100:>14,.0f} % of one core"
            )
    finally:
        server.stop()
    return results
