"""The binary tensor data codec (models.v2_binary) and the server's refusals of bodies that do not add up.

Round trips go through the same functions a client and the server use;
every malformed body must be a 400 whose reason names the tensor and the
sizes, and no body at all, however garbled, may reach a 500.
"""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.dataset import ORIGINAL_FEATURES
from models.protocol import InferenceRequest, InferenceResponse
from models.v2_binary import (
    INFERENCE_HEADER_LENGTH,
    BinaryTensorError,
    binary_outputs,
    decode_tensor,
    encode_tensor,
    pack_body,
    read_tensors,
    split_body,
)

from .conftest import TOKEN

#: datatype -> values that survive its binary form exactly
VALUES: dict[str, st.SearchStrategy[Any]] = {
    "BOOL": st.booleans(),
    "UINT8": st.integers(0, 2**8 - 1),
    "UINT16": st.integers(0, 2**16 - 1),
    "UINT32": st.integers(0, 2**32 - 1),
    "UINT64": st.integers(0, 2**64 - 1),
    "INT8": st.integers(-(2**7), 2**7 - 1),
    "INT16": st.integers(-(2**15), 2**15 - 1),
    "INT32": st.integers(-(2**31), 2**31 - 1),
    "INT64": st.integers(-(2**63), 2**63 - 1),
    "FP16": st.floats(width=16, allow_nan=False),
    "FP32": st.floats(width=32, allow_nan=False),
    "FP64": st.floats(allow_nan=False),
    "BYTES": st.text(),
}

#: the extension's layout of each fixed-size datatype: little-endian, native size
LAYOUT = {
    "BOOL": "u1",
    "UINT8": "u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "UINT64": "<u8",
    "INT8": "i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "FP16": "<f2",
    "FP32": "<f4",
    "FP64": "<f8",
}


@given(data=st.data(), datatype=st.sampled_from(sorted(VALUES)))
def test_every_datatype_round_trips(data: st.DataObject, datatype: str) -> None:
    values = data.draw(st.lists(VALUES[datatype], max_size=20))
    raw = encode_tensor(datatype, values)
    assert decode_tensor("x", datatype, [len(values)], raw) == values
    if datatype == "BYTES":
        assert len(raw) == sum(4 + len(str(v).encode()) for v in values)
    else:
        # the layout as numpy writes it (asarray of mixed-size Python ints would go via float)
        assert raw == np.array(values, dtype=LAYOUT[datatype]).tobytes()


def test_floats_take_none_as_nan_and_integers_refuse_it() -> None:
    raw = encode_tensor("FP64", [None, 0.5])
    assert np.isnan(np.frombuffer(raw, "<f8")[0])
    with pytest.raises(BinaryTensorError, match="do not fit a INT64 tensor"):
        encode_tensor("INT64", [None, 1])


def test_a_response_packed_by_the_server_reads_back_on_the_client() -> None:
    labels = ["0", "1", "déjà"]
    probabilities = np.array([0.25, 0.5, 1 / 3])
    document: dict[str, Any] = {
        "model_name": "m",
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [3], "data": labels},
            {"name": "p", "datatype": "FP64", "shape": [3], "data": None},
            {"name": "json", "datatype": "INT64", "shape": [3], "data": [1, 2, 3]},
        ],
    }
    raw = {
        "label": encode_tensor("BYTES", labels),
        "p": encode_tensor("FP64", probabilities),
    }
    body, header_length = pack_body(document, "outputs", raw)
    assert header_length is not None
    header, tensors = split_body(body, str(header_length))
    response = InferenceResponse.model_validate_json(header)
    sizes = [(o.parameters or {}).get("binary_data_size") for o in response.outputs]
    assert sizes == [len(raw["label"]), 24, None]
    read_tensors(response.outputs, tensors)
    assert [o.data for o in response.outputs] == [
        labels,
        probabilities.tolist(),
        [1, 2, 3],
    ]
    assert pack_body({"outputs": []}, "outputs", {}) == (b'{"outputs":[]}', None)


def test_an_output_choice_overrides_the_request_default() -> None:
    names = ["a", "b", "c"]
    assert binary_outputs(None, [], names) == frozenset()
    assert binary_outputs({"binary_data_output": True}, [], names) == set(names)
    assert binary_outputs(
        {"binary_data_output": True},
        [("a", {"binary_data": False}), ("b", None)],
        names,
    ) == {"b", "c"}
    assert binary_outputs(None, [("c", {"binary_data": True})], names) == {"c"}
    with pytest.raises(BinaryTensorError, match="binary_data must be true or false"):
        binary_outputs(None, [("a", {"binary_data": "yes"})], names)


def _request(*inputs: dict[str, Any]) -> InferenceRequest:
    return InferenceRequest.model_validate({"inputs": list(inputs)})


def _binary(name: str, datatype: str, shape: list[int], size: int) -> dict[str, Any]:
    return {
        "name": name,
        "datatype": datatype,
        "shape": shape,
        "parameters": {"binary_data_size": size},
    }


@pytest.mark.parametrize(
    ("inputs", "tail", "reason"),
    [
        (
            [_binary("a", "FP64", [3], 16)],
            bytes(16),
            "tensor 'a': 16 bytes, but shape [3] of FP64 takes 24",
        ),
        (
            [_binary("a", "FP64", [1], 16)],
            bytes(8),
            "tensor 'a': binary_data_size 16 runs past the 8 bytes left",
        ),
        (
            [_binary("a", "FP64", [1], 8)],
            bytes(12),
            "4 bytes after the JSON header that no tensor's binary_data_size claims",
        ),
        (
            [_binary("a", "INT32", [-1, 2], 4)],
            bytes(4),
            "tensor 'a': shape [-1, 2] has a negative dimension",
        ),
        (
            [_binary("a", "BOOL", [2], 2)],
            b"\x01\x02",
            "tensor 'a': a BOOL element is a byte 0 or 1",
        ),
        (
            [_binary("s", "BYTES", [1], 3)],
            b"\x05\x00\x00",
            "tensor 's': element 0 has a truncated length prefix",
        ),
        (
            [_binary("s", "BYTES", [1], 6)],
            struct.pack("<I", 5) + b"ab",
            "tensor 's': element 0 of 5 bytes runs past the tensor's 6 bytes",
        ),
        (
            [_binary("s", "BYTES", [2], 6)],
            struct.pack("<I", 2) + b"ab",
            "tensor 's': 1 BYTES elements, but its shape holds 2",
        ),
        (
            [_binary("s", "BYTES", [1], 12)],
            struct.pack("<I", 2) + b"ab" + struct.pack("<I", 2) + b"cd",
            "tensor 's': 6 bytes after its 1 BYTES elements",
        ),
        (
            [_binary("s", "BYTES", [1], 6)],
            struct.pack("<I", 2) + b"\xff\xfe",
            "tensor 's': element 0 is not UTF-8 text",
        ),
        (
            [_binary("x", "BF16", [1], 2)],
            bytes(2),
            "tensor 'x': datatype 'BF16' has no binary form",
        ),
    ],
)
def test_a_body_that_does_not_add_up_is_refused_with_its_sizes(
    inputs: list[dict[str, Any]], tail: bytes, reason: str
) -> None:
    with pytest.raises(BinaryTensorError) as refused:
        read_tensors(_request(*inputs).inputs, memoryview(tail))
    assert reason in str(refused.value)


#: the inputs of the 9-input models, in order
INPUTS = ORIGINAL_FEATURES
FIRST = INPUTS[0]


def _post_binary(
    client: TestClient, document: Any, tail: bytes, header_length: str | None = None
) -> Any:
    header = orjson.dumps(document)
    return client.post(
        "/v2/models/bc-logistic/infer",
        data=header + tail,
        headers={
            "X-Auth-Token": TOKEN,
            INFERENCE_HEADER_LENGTH: header_length or str(len(header)),
        },
    )


def _nine(raw: dict[str, Any]) -> dict[str, Any]:
    """A request whose first input is ``raw`` and whose other eight are JSON."""
    others = [
        {"name": name, "datatype": "FP64", "shape": [1], "data": [1.0]}
        for name in INPUTS[1:]
    ]
    return {"inputs": [raw, *others]}


@pytest.mark.parametrize(
    ("document", "tail", "header_length", "reason"),
    [
        (
            _nine(_binary(FIRST, "FP64", [1], 8)),
            bytes(8),
            "eight",
            "must be a byte count",
        ),
        (
            _nine(_binary(FIRST, "FP64", [1], 8)),
            bytes(8),
            "99999",
            "Inference-Header-Content-Length of 99999 bytes does not fit",
        ),
        (
            _nine(_binary(FIRST, "FP64", [2], 8)),
            bytes(8),
            None,
            "tensor 'clump_thickness': 8 bytes, but shape [2] of FP64 takes 16",
        ),
        (
            _nine({**_binary(FIRST, "FP64", [1], 8), "data": [1.0]}),
            bytes(8),
            None,
            "tensor 'clump_thickness' has both data and parameters.binary_data_size",
        ),
        (
            _nine(_binary(FIRST, "FP64", [1], -8)),
            b"",
            None,
            "binary_data_size must be a byte count, got -8",
        ),
        (
            {
                **_nine(_binary(FIRST, "FP64", [1], 8)),
                "outputs": [{"name": "label", "parameters": {"binary_data": 1}}],
            },
            encode_tensor("FP64", [1.0]),
            None,
            "parameter binary_data must be true or false, got 1",
        ),
    ],
)
async def test_the_server_refuses_a_bad_binary_body_with_the_reason(
    client: TestClient,
    document: Any,
    tail: bytes,
    header_length: str | None,
    reason: str,
) -> None:
    response = await _post_binary(client, document, tail, header_length)
    assert response.status == 400 and response.content_type == "application/json"
    assert reason in (await response.json())["error"]


async def test_raw_tensors_without_the_header_are_refused(client: TestClient) -> None:
    body = orjson.dumps(_nine(_binary(FIRST, "FP64", [1], 8))) + bytes(8)
    response = await client.post(
        "/v2/models/bc-logistic/infer", data=body, headers={"X-Auth-Token": TOKEN}
    )
    assert response.status == 400
    assert "malformed JSON" in (await response.json())["error"]
    header_only = orjson.dumps(_nine(_binary(FIRST, "FP64", [1], 8)))
    response = await client.post(
        "/v2/models/bc-logistic/infer",
        data=header_only,
        headers={"X-Auth-Token": TOKEN},
    )
    assert (
        "binary_data_size 8 runs past the 0 bytes" in (await response.json())["error"]
    )


async def test_a_binary_answer_carries_its_header_length_and_type(
    client: TestClient,
) -> None:
    document = {
        **_nine(_binary(FIRST, "FP64", [1], 8)),
        "parameters": {"binary_data_output": True},
        "outputs": [{"name": "probability(1)"}, {"name": "label"}],
    }
    response = await _post_binary(client, document, encode_tensor("FP64", [3.0]))
    assert response.status == 200, await response.text()
    assert response.content_type == "application/octet-stream"
    body = await response.read()
    header, tensors = split_body(body, response.headers[INFERENCE_HEADER_LENGTH])
    answer = InferenceResponse.model_validate_json(header)
    read_tensors(answer.outputs, tensors)
    assert [o.name for o in answer.outputs] == ["label", "probability(1)"]
    assert answer.outputs[0].values[0] in {"0", "1"}
    assert 0 <= answer.outputs[1].values[0] <= 1
    server = await (await client.get("/v2")).json()
    assert "binary_tensor_data" in server["extensions"]


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    size=st.integers(-2, 40) | st.sampled_from(["8", None, True, 1.5]),
    datatype=st.sampled_from(["FP64", "FP32", "BYTES", "BOOL", "INT8", "x"]),
    shape=st.lists(st.integers(-1, 5), max_size=3),
    tail=st.binary(max_size=48),
    header_length=st.none()
    | st.integers(-5, 400).map(str)
    | st.text(alphabet="0123456789 x-", max_size=4),
)
async def test_no_binary_body_yields_a_server_error(
    client: TestClient,
    size: Any,
    datatype: str,
    shape: list[int],
    tail: bytes,
    header_length: str | None,
) -> None:
    tensor = {
        "name": FIRST,
        "datatype": datatype,
        "shape": shape,
        "parameters": {"binary_data_size": size},
    }
    response = await _post_binary(client, _nine(tensor), tail, header_length)
    assert response.status in {200, 400}, await response.text()
    if response.status == 400:
        assert set(orjson.loads(await response.read())) == {"error"}
