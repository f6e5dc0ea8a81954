"""tritonclient, the common Open Inference Protocol client, against a real server on a real port.

Its default request carries the inputs raw after the JSON header and asks
for every output raw (the binary tensor data extension); each case here
must answer exactly what the plain JSON request answers. The synchronous
client (geventhttpclient) runs all of one case's calls on one worker
thread, while the server runs on the test's event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import tritonclient.http as triton
import tritonclient.http.aio as triton_aio
from aiohttp.test_utils import TestClient
from tritonclient.utils import InferenceServerException

from models.repository import ModelRepository
from serving.loader import ModelRegistry, RepositorySource, ServedModel

from .conftest import TOKEN, Serve, served_file
from .test_pmml_documents import HANDWRITTEN, JPMML, audit_rows

HEADERS = {"X-Auth-Token": TOKEN}
MODEL = "bc-logistic"


def _url(client: TestClient) -> str:
    """Where tritonclient finds the test's server (host:port, no scheme)."""
    return f"127.0.0.1:{client.port}"


def _rows(count: int) -> np.ndarray:
    """Valid rows of the 9-input models (every input takes 1 to 10)."""
    return np.random.default_rng(7).integers(1, 11, size=(count, 9)).astype(float)


async def _metadata(client: TestClient, name: str) -> list[tuple[str, str]]:
    metadata = await (await client.get(f"/v2/models/{name}", headers=HEADERS)).json()
    return [(tensor["name"], tensor["datatype"]) for tensor in metadata["inputs"]]


async def _json_answer(
    client: TestClient, name: str, columns: dict[str, tuple[str, list[Any]]]
) -> dict[str, list[Any]]:
    """The outputs of the same inputs sent as plain JSON, by name."""
    body = {
        "inputs": [
            {"name": n, "datatype": t, "shape": [len(data)], "data": data}
            for n, (t, data) in columns.items()
        ]
    }
    response = await client.post(f"/v2/models/{name}/infer", json=body, headers=HEADERS)
    assert response.status == 200, await response.text()
    assert response.content_type == "application/json"
    return {o["name"]: o["data"] for o in (await response.json())["outputs"]}


def _input(name: str, datatype: str, values: np.ndarray, binary: bool) -> Any:
    tensor = triton.InferInput(name, list(values.shape), datatype)
    tensor.set_data_from_numpy(values, binary_data=binary)
    return tensor


def _plain(values: np.ndarray) -> list[Any]:
    """tritonclient's numpy answer as the JSON wire carries it (raw BYTES as text)."""
    return [
        value.decode() if isinstance(value, bytes) else value
        for value in values.tolist()
    ]


def _infer(
    url: str,
    name: str,
    inputs: Callable[[], list[Any]],
    outputs: Callable[[], list[Any] | None] = lambda: None,
    compression: str | None = None,
) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """One synchronous tritonclient call: the JSON header it read and each output's values."""
    client = triton.InferenceServerClient(url)
    try:
        # tritonclient adds its own headers to the dict it is given: a copy
        result = client.infer(
            name,
            inputs(),
            outputs=outputs(),
            headers=dict(HEADERS),
            request_compression_algorithm=compression,
        )
    finally:
        client.close()
    header = result.get_response()
    return header, {
        o["name"]: _plain(result.as_numpy(o["name"])) for o in header["outputs"]
    }


def _raw(header: dict[str, Any]) -> dict[str, bool]:
    """Which outputs came back raw."""
    return {
        o["name"]: "binary_data_size" in (o.get("parameters") or {})
        for o in header["outputs"]
    }


@pytest.mark.parametrize(
    ("datatype", "compression"), [("FP64", None), ("FP32", None), ("FP64", "gzip")]
)
async def test_default_request_is_binary_both_ways_and_answers_as_json(
    client: TestClient, datatype: str, compression: str | None
) -> None:
    names = [n for n, _ in await _metadata(client, MODEL)]
    rows = _rows(50)
    dtype = np.float64 if datatype == "FP64" else np.float32

    def inputs() -> list[Any]:
        return [
            _input(n, datatype, rows[:, i].astype(dtype), True)
            for i, n in enumerate(names)
        ]

    header, got = await asyncio.to_thread(
        _infer, _url(client), MODEL, inputs, lambda: None, compression
    )
    assert all(_raw(header).values()) and list(got) == [
        "label",
        "probability(0)",
        "probability(1)",
    ]
    expected = await _json_answer(
        client,
        MODEL,
        {n: (datatype, rows[:, i].tolist()) for i, n in enumerate(names)},
    )
    assert got == expected
    assert set(got["label"]) <= {"0", "1"} and len(got["label"]) == 50


async def test_json_only_and_mixed_requests_answer_alike(client: TestClient) -> None:
    names = [n for n, _ in await _metadata(client, MODEL)]
    rows = _rows(20)

    def inputs_of(binary: Callable[[int], bool]) -> Callable[[], list[Any]]:
        return lambda: [
            _input(n, "FP64", rows[:, i].copy(), binary(i)) for i, n in enumerate(names)
        ]

    def outputs_of(binary: dict[str, bool]) -> Callable[[], list[Any]]:
        return lambda: [
            triton.InferRequestedOutput(n, binary_data=b) for n, b in binary.items()
        ]

    none_raw = {"label": False, "probability(0)": False, "probability(1)": False}
    mixed = {"label": True, "probability(0)": False, "probability(1)": True}
    plain_header, plain = await asyncio.to_thread(
        _infer, _url(client), MODEL, inputs_of(lambda i: False), outputs_of(none_raw)
    )
    mixed_header, mixed_got = await asyncio.to_thread(
        _infer, _url(client), MODEL, inputs_of(lambda i: i % 2 == 0), outputs_of(mixed)
    )
    assert _raw(plain_header) == none_raw and _raw(mixed_header) == mixed
    expected = await _json_answer(
        client, MODEL, {n: ("FP64", rows[:, i].tolist()) for i, n in enumerate(names)}
    )
    assert plain == mixed_got == expected


async def test_one_rows_by_inputs_tensor_and_the_asyncio_client(
    client: TestClient,
) -> None:
    rows = _rows(30)
    tensor = triton_aio.InferInput("input-0", [30, 9], "FP64")
    tensor.set_data_from_numpy(rows)
    async with triton_aio.InferenceServerClient(_url(client)) as aio:
        assert await aio.is_server_ready(headers=HEADERS)
        result = await aio.infer(
            MODEL,
            [tensor],
            outputs=[triton_aio.InferRequestedOutput("probability(1)")],
            headers=dict(HEADERS),
        )
    (output,) = result.get_response()["outputs"]
    assert output["parameters"] == {"binary_data_size": 30 * 8}
    names = [n for n, _ in await _metadata(client, MODEL)]
    expected = await _json_answer(
        client, MODEL, {n: ("FP64", rows[:, i].tolist()) for i, n in enumerate(names)}
    )
    assert result.as_numpy("probability(1)").tolist() == expected["probability(1)"]


async def test_bytes_inputs_and_a_bytes_extra_output(serve: Serve) -> None:
    """Rattle's Audit tree: five BYTES inputs in, a BYTES label and entity id out."""
    _, client = await served_file(serve, JPMML / "DecisionTreeAudit.pmml")
    metadata = await (await client.get("/v2/models/m")).json()
    declared = [(t["name"], t["datatype"]) for t in metadata["inputs"]]
    rows = audit_rows()[:20]

    def column(name: str, datatype: str) -> np.ndarray:
        values = [row[name] for row in rows]
        if datatype == "BYTES":
            return np.array([v.encode() for v in values], dtype=np.object_)
        return np.array(values, dtype=np.float64)

    def inputs() -> list[Any]:
        return [_input(n, t, column(n, t), True) for n, t in declared]

    header, got = await asyncio.to_thread(_infer, _url(client), "m", inputs)
    assert all(_raw(header).values()) and "Node_Id" in got
    expected = await _json_answer(
        client, "m", {n: (t, [row[n] for row in rows]) for n, t in declared}
    )
    assert got == expected


async def test_a_regression_answers_fp64_raw(serve: Serve) -> None:
    _, client = await served_file(serve, HANDWRITTEN / "regression_claims.pmml")
    columns: dict[str, tuple[str, list[Any]]] = {
        "age": ("FP64", [20.0, 45.0, 61.0]),
        "salary": ("FP64", [1000.0, 52000.0, 30000.0]),
        "car_location": ("BYTES", ["street", "carpark", "street"]),
    }

    def inputs() -> list[Any]:
        return [
            _input(
                n,
                t,
                np.array([v.encode() for v in data], dtype=np.object_)
                if t == "BYTES"
                else np.array(data),
                True,
            )
            for n, (t, data) in columns.items()
        ]

    header, got = await asyncio.to_thread(_infer, _url(client), "m", inputs)
    (output,) = header["outputs"]
    assert output["datatype"] == "FP64" and output["parameters"] == {
        "binary_data_size": 3 * 8
    }
    assert got == await _json_answer(client, "m", columns)


def _refused(
    url: str, inputs: Sequence[Any], headers: dict[str, str] | None = HEADERS
) -> InferenceServerException:
    """The error tritonclient raises for a request the server must refuse."""
    client = triton.InferenceServerClient(url)
    try:
        client.infer(MODEL, list(inputs), headers=dict(headers or {}))
    except InferenceServerException as exc:
        return exc
    finally:
        client.close()
    raise AssertionError("the server answered a request it should refuse")


async def test_a_size_that_does_not_match_the_shape_is_a_400_with_the_reason(
    client: TestClient,
) -> None:
    names = [n for n, _ in await _metadata(client, MODEL)]

    def inputs() -> list[Any]:
        tensors = [_input(n, "FP64", np.full(2, 3.0), True) for n in names]
        tensors[0].set_shape([3])  # 16 bytes said to hold 3 doubles
        return tensors

    refused = await asyncio.to_thread(lambda: _refused(_url(client), inputs()))
    assert refused.status() == "400"
    assert f"tensor {names[0]!r}: 16 bytes, but shape [3] of FP64 takes 24" in str(
        refused.message()
    )
    tokenless = await asyncio.to_thread(
        lambda: _refused(_url(client), inputs()[1:], headers=None)
    )
    assert tokenless.status() == "401"


async def test_the_body_limit_holds_for_binary_bodies(
    serve: Serve, repository: ModelRepository
) -> None:
    registry = ModelRegistry([ServedModel(MODEL, RepositorySource(repository, MODEL))])
    await registry.load_all()
    client = await serve(registry, token=TOKEN, max_body_bytes=4096)

    def inputs() -> list[Any]:
        return [_input("input-0", "FP64", _rows(1000), True)]

    refused = await asyncio.to_thread(lambda: _refused(_url(client), inputs()))
    assert refused.status() == "413" and "exceeds 4096 bytes" in str(refused.message())
