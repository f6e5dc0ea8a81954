"""The model-server pool client against in-process HTTP servers speaking the predict API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from agents.scoring_client import ModelServerPool, RequestRejected
from models.protocol import InputFieldDoc, ModelSchema, ModelStatus

ROW = {"clump_thickness": 5.0, "mitoses": 1.0}


class FakeModelServer:
    """Speaks the predict API; can fail, refuse, stall or be down on demand."""

    def __init__(self) -> None:
        self.mode = "ok"  # ok | fail | refuse | slow | poison (500 on mitoses 9)
        self.ready = True
        self.delay_s = 0.0  # before every answer, readiness included (a lagging host)
        self.requests = 0
        self.in_flight = 0
        self.most_in_flight = 0
        self.tokens: list[str | None] = []
        self.url = ""
        self.served_name = "m"
        self._runner: web.AppRunner | None = None

    async def predict(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay_s)
        self.requests += 1
        self.tokens.append(request.headers.get("X-Auth-Token"))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            body = await request.json()
            if self.mode == "fail":
                return web.json_response({"error": "boom"}, status=500)
            if self.mode == "poison" and any(
                r.get("mitoses") == 9 for r in body["instances"]
            ):
                return web.json_response({"error": "evaluator crashed"}, status=500)
            if self.mode == "refuse":
                return web.json_response(
                    {"error": "instances must be a list"}, status=400
                )
            if self.mode == "slow":
                await asyncio.sleep(0.2)
            predictions = [
                {"label": "1", "probability(1)": "0.9"} for _ in body["instances"]
            ]
            return web.json_response({"predictions": predictions})
        finally:
            self.in_flight -= 1

    async def health(self, request: web.Request) -> web.Response:
        await asyncio.sleep(self.delay_s)
        return web.json_response({}, status=200 if self.ready else 503)

    async def status(self, request: web.Request) -> web.Response:
        if request.match_info["name"] != self.served_name:
            return web.json_response({"error": "no such model"}, status=404)
        field = InputFieldDoc(
            id="clump_thickness",
            name="clump_thickness",
            position=0,
            positionalName="_c0",
            valid_min=1,
            valid_max=10,
        )
        status = ModelStatus(
            name=self.served_name,
            model="breast-cancer",
            version="7",
            schema=ModelSchema(inputFields=[field]),
        )
        return web.json_response(status.document())

    async def index(self, request: web.Request) -> web.Response:
        return web.json_response(
            [{"name": self.served_name, "version": "7", "state": "READY"}]
        )

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/models/{name}:predict", self.predict)
        app.router.add_get("/v1/models/{name}", self.status)
        app.router.add_post("/v2/repository/index", self.index)
        app.router.add_get("/v2/health/ready", self.health)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


@pytest.fixture
async def servers() -> AsyncIterator[list[FakeModelServer]]:
    fakes = [FakeModelServer(), FakeModelServer()]
    for fake in fakes:
        await fake.start()
    yield fakes
    for fake in fakes:
        await fake.stop()


async def started_pool(urls: list[str], **overrides: Any) -> ModelServerPool:
    options: dict[str, Any] = {
        "model_name": "m",
        "token": "s3cret",
        "requests_per_server": 2,
        "timeout_s": 2.0,
        "probe_interval_s": 0.05,
    }
    options.update(overrides)
    pool = ModelServerPool(urls=urls, **options)
    await pool.start()
    return pool


async def test_requests_alternate_between_servers_and_carry_the_token(
    servers: list[FakeModelServer],
) -> None:
    pool = await started_pool([s.url for s in servers])
    try:
        for _ in range(6):
            answer = await pool.score([ROW, ROW])
            assert len(answer.predictions) == 2
    finally:
        await pool.stop()
    assert [s.requests for s in servers] == [3, 3]
    assert {token for s in servers for token in s.tokens} == {"s3cret"}


async def test_a_failing_server_leaves_rotation_its_request_is_retried_and_it_comes_back(
    servers: list[FakeModelServer],
) -> None:
    good, bad = servers
    bad.mode, bad.ready = "fail", False
    pool = await started_pool([good.url, bad.url])
    try:
        answers = [await pool.score([ROW]) for _ in range(5)]
        assert {answer.server for answer in answers} == {good.url}
        state = {s["url"]: s for s in pool.snapshot()}
        assert state[bad.url]["in_rotation"] is False
        assert (
            state[bad.url]["ejections"] == 1
            and "HTTP 500" in state[bad.url]["last_error"]
        )
        bad.mode, bad.ready = "ok", True
        for _ in range(100):
            if pool.in_rotation == 2:
                break
            await asyncio.sleep(0.02)
        assert pool.in_rotation == 2
        answers = [await pool.score([ROW]) for _ in range(4)]
        assert {answer.server for answer in answers} == {good.url, bad.url}
    finally:
        await pool.stop()


async def test_with_every_server_down_scoring_waits_instead_of_failing(
    servers: list[FakeModelServer],
) -> None:
    for server in servers:
        server.mode, server.ready = "fail", False
    pool = await started_pool([s.url for s in servers])
    try:
        waiting = asyncio.ensure_future(pool.score([ROW]))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        assert pool.in_rotation == 0
        servers[1].mode, servers[1].ready = "ok", True
        answer = await asyncio.wait_for(waiting, 5)
        assert answer.server == servers[1].url
    finally:
        await pool.stop()


async def test_requests_in_flight_per_server_are_bounded(
    servers: list[FakeModelServer],
) -> None:
    for server in servers:
        server.mode = "slow"
    pool = await started_pool([s.url for s in servers], requests_per_server=2)
    try:
        await asyncio.gather(*(pool.score([ROW]) for _ in range(12)))
    finally:
        await pool.stop()
    assert [s.most_in_flight for s in servers] == [2, 2]
    assert sum(s.requests for s in servers) == 12


async def test_a_server_slower_than_the_timeout_leaves_rotation(
    servers: list[FakeModelServer],
) -> None:
    slow, fast = servers
    slow.mode = "slow"
    pool = await started_pool([slow.url, fast.url], timeout_s=0.05)
    try:
        answers = [await pool.score([ROW]) for _ in range(3)]
    finally:
        await pool.stop()
    assert {answer.server for answer in answers} == {fast.url}
    assert "Timeout" in {s["url"]: s for s in pool.snapshot()}[slow.url]["last_error"]


async def test_a_request_refused_as_a_whole_is_reported_not_retried(
    servers: list[FakeModelServer],
) -> None:
    for server in servers:
        server.mode = "refuse"
    pool = await started_pool([s.url for s in servers])
    try:
        with pytest.raises(RequestRejected, match="instances must be a list"):
            await pool.score([ROW])
    finally:
        await pool.stop()
    assert sum(s.requests for s in servers) == 1
    assert pool.in_rotation == 2


async def test_the_schema_comes_from_the_served_model(
    servers: list[FakeModelServer],
) -> None:
    await servers[0].stop()
    pool = await started_pool([servers[0].url, servers[1].url])
    try:
        schema = await asyncio.wait_for(pool.fetch_schema(), 5)
    finally:
        await pool.stop()
    assert schema.model_name == "breast-cancer" and schema.model_version == "7"
    assert schema.names == ("clump_thickness",)


async def test_a_server_serving_another_name_is_an_error_naming_what_it_serves(
    servers: list[FakeModelServer], caplog: pytest.LogCaptureFixture
) -> None:
    servers[0].served_name = "breast-cancer"
    pool = await started_pool([servers[0].url])
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.fetch_schema(), 0.5)
    finally:
        await pool.stop()
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors, "no error logged"
    assert "serves no model named 'm'" in errors[0]
    assert "it serves: breast-cancer" in errors[0]


async def test_a_request_failing_everywhere_while_others_succeed_is_reported_as_poison(
    servers: list[FakeModelServer],
) -> None:
    for server in servers:
        server.mode = "poison"
    pool = await started_pool([s.url for s in servers])
    stop = asyncio.Event()

    async def steady_traffic() -> None:
        while not stop.is_set():
            await pool.score([ROW])

    traffic = asyncio.ensure_future(steady_traffic())
    try:
        with pytest.raises(RequestRejected, match="failed 3 times on this request"):
            await asyncio.wait_for(pool.score([{**ROW, "mitoses": 9.0}]), 10)
    finally:
        stop.set()
        await traffic
        await pool.stop()


async def test_when_every_request_fails_it_is_an_outage_not_poison(
    servers: list[FakeModelServer],
) -> None:
    for server in servers:
        server.mode = "fail"  # answers 500 to everything, yet says it is ready
    pool = await started_pool([s.url for s in servers])
    try:
        waiting = asyncio.ensure_future(pool.score([ROW]))
        await asyncio.sleep(0.5)
        assert not waiting.done(), "an outage was taken for a poison request"
        for server in servers:
            server.mode = "ok"
        answer = await asyncio.wait_for(waiting, 5)
        assert len(answer.predictions) == 1
    finally:
        await pool.stop()


async def wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_a_server_much_slower_than_the_others_leaves_rotation_and_returns_once_fast(
    servers: list[FakeModelServer],
) -> None:
    fast, lagging = servers
    lagging.delay_s = 0.3  # slow, yet far within the timeout: no request fails
    pool = await started_pool(
        [fast.url, lagging.url], slow_factor=5.0, slow_min_s=0.1, timeout_s=2.0
    )
    try:
        for _ in range(30):
            await pool.score([ROW])
        state = {s["url"]: s for s in pool.snapshot()}[lagging.url]
        assert state["in_rotation"] is False
        assert state["slow_ejections"] == 1 and state["failures"] == 0
        assert state["last_error"].startswith("slow: mean latency")
        await asyncio.sleep(0.5)  # its probes answer in 0.3 s: still too slow
        assert pool.in_rotation == 1
        lagging.delay_s = 0.0
        await wait_for(lambda: pool.in_rotation == 2)
        state = {s["url"]: s for s in pool.snapshot()}[lagging.url]
        assert state["mean_latency_ms"] == 0.0, "it comes back with a fresh mean"
        assert pool.availability()["outages"] == 0
    finally:
        await pool.stop()


async def test_servers_slow_alike_stay_in_rotation(
    servers: list[FakeModelServer],
) -> None:
    for server in servers:
        server.delay_s = 0.15
    pool = await started_pool(
        [s.url for s in servers], slow_factor=2.0, slow_min_s=0.05, timeout_s=2.0
    )
    try:
        await asyncio.gather(*(pool.score([ROW]) for _ in range(24)))
    finally:
        await pool.stop()
    assert pool.in_rotation == 2
    assert all(s["slow_ejections"] == 0 for s in pool.snapshot())


async def test_an_outage_is_counted_and_timed_for_the_stats(
    servers: list[FakeModelServer],
) -> None:
    for server in servers:
        server.mode, server.ready = "fail", False
    pool = await started_pool([s.url for s in servers])
    try:
        waiting = asyncio.ensure_future(pool.score([ROW]))
        await wait_for(lambda: pool.availability()["in_outage"])
        await asyncio.sleep(0.3)
        during = pool.availability()
        assert during["servers_in_rotation"] == 0 and during["outages"] == 1
        assert during["outage_s"] >= 0.3
        servers[0].mode, servers[0].ready = "ok", True
        await asyncio.wait_for(waiting, 5)
        after = pool.availability()
        assert not after["in_outage"] and after["outages"] == 1
        assert after["outage_s"] >= during["outage_s"]
    finally:
        await pool.stop()
