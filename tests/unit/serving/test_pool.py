"""`riskstream serve` as processes: a pool of replicas, SIGTERM drains, crashes restart."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from click.testing import CliRunner

from riskstream.cli import main

from .conftest import REFERENCE_INSTANCE, TOKEN, Served


async def predict(
    port: int, instances: Sequence[Mapping[str, object]]
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(
            f"http://127.0.0.1:{port}/v1/models/m:predict",
            data=orjson.dumps({"instances": instances}),
            headers={"X-Auth-Token": TOKEN},
        ) as response,
    ):
        return response.status, orjson.loads(await response.read())


async def test_a_pool_of_two_serves_on_consecutive_ports_and_stops_on_sigterm(
    start_serving: Callable[..., Served],
) -> None:
    pool = start_serving(
        "--replicas",
        "2",
        "--port",
        "28515",
        "--served-name",
        "m",
        "--model",
        "breast-cancer",
    )
    for port in (28515, 28516):
        pool.wait_for(
            rf"model server listening on http://127\.0\.0\.1:{port}: m = model breast-cancer version 1 "
            r"\(fast evaluator"
        )
    for port in (28515, 28516):
        status, answer = await predict(port, [REFERENCE_INSTANCE])
        assert status == 200 and answer["predictions"][0]["model_version"] == "1"

    assert pool.stop() == 0
    for port in (28515, 28516):
        assert f"model server on http://127.0.0.1:{port} stopped" in pool.log
    assert "model-server pool stopped" in pool.log
    assert TOKEN not in pool.log


async def test_a_replica_that_dies_is_restarted(
    start_serving: Callable[..., Served],
) -> None:
    pool = start_serving("--replicas", "2", "--port", "28518", "--served-name", "m")
    pid = int(
        pool.wait_for(r"replica pid (\d+) started for http://127\.0\.0\.1:28519").group(
            1
        )
    )
    pool.wait_for(r"listening on http://127\.0\.0\.1:28519")
    os.kill(pid, signal.SIGKILL)
    pool.wait_for(
        r"replica pid \d+ for http://127\.0\.0\.1:28519 exited with status -9; restarting"
    )
    pool.wait_for(r"(?s)restarting.*listening on http://127\.0\.0\.1:28519")
    status, _ = await predict(28519, [REFERENCE_INSTANCE])
    assert status == 200
    assert pool.stop() == 0


async def test_sigterm_lets_the_request_in_flight_finish(
    start_serving: Callable[..., Served],
) -> None:
    server = start_serving(
        "--port", "28517", "--served-name", "m", "--model", "bc-forest",
        RISKSTREAM_MODEL_MAX_BODY_BYTES=str(64 * 1024 * 1024),
        RISKSTREAM_MODEL_MAX_INSTANCES="150000",
    )  # fmt: skip
    server.wait_for(r"listening on http://127\.0\.0\.1:28517")
    rows = [REFERENCE_INSTANCE] * 150_000  # a few seconds of work for a 100-tree forest
    request = asyncio.create_task(predict(28517, rows))
    await asyncio.sleep(0.5)
    server.process.send_signal(signal.SIGTERM)
    status, answer = await request
    assert status == 200
    assert len(answer["predictions"]) == len(rows)
    assert server.process.wait(30) == 0
    assert "stopping: draining in-flight requests" in server.log
    assert "model server on http://127.0.0.1:28517 stopped" in server.log


def test_serve_refuses_an_unknown_model(repository_root: Path) -> None:
    result = CliRunner().invoke(
        main, ["serve", "--repository", str(repository_root), "--model", "nope"]
    )
    assert result.exit_code == 1
    assert "unknown model 'nope'" in result.output


def test_serve_takes_a_model_or_a_file_not_both(
    repository_root: Path, pmml_paths: dict[str, Path]
) -> None:
    result = CliRunner().invoke(
        main,
        [
            "serve",
            "--model",
            "breast-cancer",
            "--pmml",
            str(pmml_paths["breast-cancer"]),
        ],
    )
    assert result.exit_code == 2
    assert "give --model or --pmml, not both" in result.output
