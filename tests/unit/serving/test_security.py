"""The model server's defences: several tokens during a rotation, a row limit per request, TLS."""

from __future__ import annotations

import ssl
from collections.abc import Callable
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient

from agents.scoring_client import ModelServerPool
from core.security import model_client_ssl
from core.settings import Settings
from serving.loader import ModelRegistry
from tests.certificates import make_certificates

from .conftest import REFERENCE_INSTANCE, Serve, Served

TLS_PORT = 28519


async def test_every_token_of_a_rotation_is_accepted_and_no_other(
    serve: Serve, model_registry: ModelRegistry
) -> None:
    client = await serve(model_registry, token="new-token, old-token")
    body = {"instances": [REFERENCE_INSTANCE]}
    for token, status in (("new-token", 200), ("old-token", 200), ("other", 401)):
        response = await client.post(
            "/v1/models/m:predict", json=body, headers={"X-Auth-Token": token}
        )
        assert response.status == status, token
    assert (await client.post("/v1/models/m:predict", json=body)).status == 401


async def test_a_request_over_the_row_limit_is_413_with_the_reason(
    serve: Serve, model_registry: ModelRegistry
) -> None:
    client: TestClient = await serve(model_registry, max_instances=5)
    within = await client.post(
        "/v1/models/m:predict", json={"instances": [REFERENCE_INSTANCE] * 5}
    )
    assert within.status == 200
    over = await client.post(
        "/v1/models/m:predict", json={"instances": [{}] * 6}
    )  # a tiny body, many rows
    assert over.status == 413
    assert (await over.json())[
        "error"
    ] == "6 instances exceed the limit of 5 per request"
    tensor = {
        "name": "rows",
        "shape": [6, 9],
        "datatype": "FP64",
        "data": [list(REFERENCE_INSTANCE.values())] * 6,
    }
    v2 = await client.post("/v2/models/m/infer", json={"inputs": [tensor]})
    assert v2.status == 413
    assert "6 instances exceed the limit of 5" in (await v2.json())["error"]


async def test_with_a_certificate_the_server_speaks_https_only_and_the_pool_trusts_its_ca(
    start_serving: Callable[..., Served], tmp_path: Path
) -> None:
    certificates = make_certificates(tmp_path / "tls")
    token_file = tmp_path / "token"
    token_file.write_text("tls-token-from-a-file\n")
    served = start_serving(
        "--port", str(TLS_PORT), "--served-name", "m",
        RISKSTREAM_MODEL_TOKEN="",
        RISKSTREAM_MODEL_TOKEN_FILE=str(token_file),
        RISKSTREAM_MODEL_TLS_CERT=str(certificates.cert),
        RISKSTREAM_MODEL_TLS_KEY=str(certificates.key),
    )  # fmt: skip
    served.wait_for(rf"listening on https://127\.0\.0\.1:{TLS_PORT}: .* auth on")
    url = f"https://127.0.0.1:{TLS_PORT}"
    trusted = ssl.create_default_context(cafile=str(certificates.ca))
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/v2/health/ready", ssl=trusted) as response:
            assert response.status == 200
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await session.get(
                f"{url}/v2/health/ready"
            )  # the system's CAs do not know it
        with pytest.raises(aiohttp.ClientError):
            await session.get(f"http://127.0.0.1:{TLS_PORT}/v2/health/ready")
        async with session.post(
            f"{url}/v1/models/m:predict",
            data=orjson.dumps({"instances": [REFERENCE_INSTANCE]}),
            ssl=trusted,
        ) as response:
            assert response.status == 401
    settings = Settings(
        model_servers=url,
        model_token_file=token_file,
        model_tls_ca=certificates.ca,
    )
    assert isinstance(model_client_ssl(settings), ssl.SSLContext)
    pool = ModelServerPool.from_settings(settings)
    await pool.start()
    try:
        answer = await pool.score([REFERENCE_INSTANCE])  # sends the token from the file
    finally:
        await pool.stop()
    assert answer.predictions[0]["label"] == "0"
    assert served.stop() == 0
    assert "tls-token-from-a-file" not in served.log


def test_a_certificate_that_does_not_load_stops_the_server_with_the_reason(
    start_serving: Callable[..., Served], tmp_path: Path
) -> None:
    served = start_serving(
        "--port", str(TLS_PORT), "--served-name", "m",
        RISKSTREAM_MODEL_TLS_CERT=str(tmp_path / "missing.pem"),
        RISKSTREAM_MODEL_TLS_KEY=str(tmp_path / "missing-key.pem"),
    )  # fmt: skip
    assert served.process.wait(60) == 3
    assert "cannot load the TLS certificate" in served.log
