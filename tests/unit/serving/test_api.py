"""The HTTP API as clients use it: the reference's call, KServe V2, status, auth, errors."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestClient

from models.pmml_schema import read_schema
from models.repository import ModelRepository
from serving.formatting import java_double
from serving.loader import ModelRegistry, RepositorySource, ServedModel
from serving.reference_evaluator import ReferenceEvaluator

from .conftest import MODEL_NAMES, REFERENCE_INSTANCE, Serve

REFERENCE_KEYS = {
    "pmml(prediction)",
    "probability(0)",
    "probability(1)",
    "prediction",
    "label",
}


async def predict(
    client: TestClient, name: str, body: object, **headers: str
) -> tuple[int, dict]:
    response = await client.post(
        f"/v1/models/{name}:predict", data=orjson.dumps(body), headers=headers
    )
    assert response.content_type == "application/json"
    return response.status, await response.json()


async def test_the_reference_call_gets_the_reference_answer(
    client: TestClient, auth: dict[str, str], pmml_paths: dict[str, Path]
) -> None:
    status, answer = await predict(
        client, "m", {"instances": [REFERENCE_INSTANCE]}, **auth
    )
    assert status == 200
    (prediction,) = answer["predictions"]
    assert set(prediction) == REFERENCE_KEYS | {"model_version"}
    assert all(isinstance(value, str) for value in prediction.values())
    assert prediction["model_version"] == "1"
    assert prediction["label"] == prediction["pmml(prediction)"] in {"0", "1"}
    assert prediction["prediction"] == f"{prediction['label']}.0"
    # the numbers are pypmml's, written as Java writes doubles
    document = pmml_paths["breast-cancer"].read_bytes()
    reference = ReferenceEvaluator.load(document, read_schema(document))
    scores = reference.score(np.array([list(REFERENCE_INSTANCE.values())], dtype=float))
    assert prediction["probability(0)"] == java_double(scores.probabilities[0, 0])
    assert prediction["probability(1)"] == java_double(scores.probabilities[0, 1])
    assert reference.classes[scores.labels[0]] == prediction["label"]


@pytest.mark.parametrize("name", MODEL_NAMES)
async def test_named_and_positional_fields_score_alike(
    client: TestClient, auth: dict[str, str], name: str
) -> None:
    status, schema = (
        0,
        (await (await client.get(f"/v1/models/{name}", headers=auth)).json()),
    )
    inputs = schema["schema"]["inputFields"]
    row = {
        field["id"]: (field["valid_min"] + field["valid_max"]) / 2 for field in inputs
    }
    positional = {f"_c{i}": row[field["id"]] for i, field in enumerate(inputs)}
    status, answer = await predict(
        client, name, {"instances": [row, positional]}, **auth
    )
    assert status == 200
    first, second = answer["predictions"]
    assert first == second and "error" not in first
    assert math.isclose(
        float(first["probability(0)"]) + float(first["probability(1)"]), 1.0
    )


async def test_bad_rows_get_errors_in_place_and_the_rest_is_scored(
    client: TestClient, auth: dict[str, str]
) -> None:
    rows = [
        REFERENCE_INSTANCE,
        {"_c0": 0},
        {"_c0": "x"},
        {"bogus": 1},
        {},
        REFERENCE_INSTANCE,
    ]
    status, answer = await predict(client, "m", {"instances": rows}, **auth)
    assert status == 200
    predictions = answer["predictions"]
    assert len(predictions) == len(rows)
    assert predictions[0] == predictions[5] and "label" in predictions[0]
    assert "not in the valid range" in predictions[1]["error"]
    assert "is not a number" in predictions[2]["error"]
    assert "unknown field 'bogus'" in predictions[3]["error"]
    assert "label" in predictions[4]  # every field missing: the PMML's replacements


async def test_a_missing_field_scores_as_its_replacement(
    client: TestClient, auth: dict[str, str], pmml_paths: dict[str, Path]
) -> None:
    fields = read_schema(pmml_paths["breast-cancer"]).inputs
    without = dict(REFERENCE_INSTANCE)
    del without["_c5"]
    replacement = fields[5].missing_value_replacement
    assert replacement is not None
    filled = {**without, "_c5": float(replacement)}
    _, answer = await predict(client, "m", {"instances": [without, filled]}, **auth)
    assert answer["predictions"][0] == answer["predictions"][1]


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b'{"instances": [', 400, "malformed JSON"),
        (b"", 400, "empty request body"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"instances": {"_c0": 1}}', 400, '"instances" must be a JSON array'),
        (b'{"instance": []}', 400, "unknown top-level key"),
        (b"\xff\xfe", 400, "malformed JSON"),
    ],
)
async def test_malformed_requests_are_400(
    client: TestClient, auth: dict[str, str], body: bytes, status: int, reason: str
) -> None:
    response = await client.post("/v1/models/m:predict", data=body, headers=auth)
    assert response.status == status
    assert reason in (await response.json())["error"]


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/v1/models/nope:predict", "no model named 'nope'"),
        ("/v1/models/m:classify", "expected <name>:predict"),
        ("/v1/models/m", "expected <name>:predict"),
        ("/v1/models/m/versions/7:predict", "version '7' is not loaded"),
        ("/v1/nothing", "Not Found"),
    ],
)
async def test_unknown_models_and_endpoints_are_404(
    client: TestClient, auth: dict[str, str], path: str, reason: str
) -> None:
    response = await client.post(path, data=b'{"instances": []}', headers=auth)
    assert response.status == 404
    assert reason in (await response.json())["error"]


async def test_the_versioned_path_answers_for_the_loaded_version(
    client: TestClient, auth: dict[str, str]
) -> None:
    response = await client.post(
        "/v1/models/m/versions/1:predict",
        json={"instances": [REFERENCE_INSTANCE]},
        headers=auth,
    )
    assert response.status == 200
    assert (await response.json())["predictions"][0]["model_version"] == "1"


async def test_a_body_over_the_limit_is_413(
    serve: Serve, model_registry: ModelRegistry
) -> None:
    small = await serve(model_registry, max_body_bytes=1000)
    body = orjson.dumps({"instances": [REFERENCE_INSTANCE] * 50})
    response = await small.post("/v1/models/m:predict", data=body)
    assert response.status == 413
    assert "exceeds 1000 bytes" in (await response.json())["error"]
    chunked = await small.post("/v1/models/m:predict", data=_chunks(body))
    assert chunked.status == 413


async def _chunks(body: bytes) -> AsyncIterator[bytes]:
    for start in range(0, len(body), 100):
        yield body[start : start + 100]


async def test_model_endpoints_need_the_token_and_health_does_not(
    client: TestClient,
) -> None:
    body = {"instances": [REFERENCE_INSTANCE]}
    assert (await predict(client, "m", body))[0] == 401
    status, answer = await predict(client, "m", body, **{"X-Auth-Token": "wrong"})
    assert status == 401 and answer == {"error": "wrong X-Auth-Token"}
    for path in ("/v1/models/m", "/v2/models/m", "/v2/models/m/ready"):
        assert (await client.get(path)).status == 401
    assert (await client.post("/v2/repository/models/m/load")).status == 401
    for path in ("/v2/health/live", "/v2/health/ready", "/v2", "/metrics"):
        assert (await client.get(path)).status == 200


async def test_status_has_tf_serving_shape_and_the_pmml_schema(
    client: TestClient, auth: dict[str, str], pmml_paths: dict[str, Path]
) -> None:
    status = await (
        await client.get("/v1/models/breast-cancer-diagnostic", headers=auth)
    ).json()
    assert status["model_version_status"] == [
        {
            "version": "1",
            "state": "AVAILABLE",
            "status": {"error_code": "OK", "error_message": ""},
        }
    ]
    assert status["name"] == "breast-cancer-diagnostic" and status["version"] == "1"
    assert status["evaluator"]["kind"] == "fast"
    pmml = read_schema(pmml_paths["breast-cancer-diagnostic"])
    inputs = status["schema"]["inputFields"]
    assert [field["id"] for field in inputs] == pmml.input_names
    assert len(inputs) == 30
    assert inputs[29]["positionalName"] == "_c29"
    assert inputs[0]["valid_min"] == pmml.inputs[0].valid_min
    assert inputs[0]["invalidValueTreatment"] == "asIs"
    assert status["schema"]["targetFields"][0]["values"] == ["0", "1"]
    versioned = await client.get(
        "/v1/models/breast-cancer-diagnostic/versions/1", headers=auth
    )
    assert (await versioned.json())["model_version_status"][0]["version"] == "1"
    missing = await client.get(
        "/v1/models/breast-cancer-diagnostic/versions/9", headers=auth
    )
    assert missing.status == 404


async def test_v2_metadata_and_infer(client: TestClient, auth: dict[str, str]) -> None:
    metadata = await (await client.get("/v2/models/bc-logistic", headers=auth)).json()
    names = [tensor["name"] for tensor in metadata["inputs"]]
    assert len(names) == 9 and {t["datatype"] for t in metadata["inputs"]} == {"FP64"}
    assert [t["name"] for t in metadata["outputs"]] == [
        "label",
        "probability(0)",
        "probability(1)",
    ]
    assert (
        await client.get("/v2/models/bc-logistic/ready", headers=auth)
    ).status == 200

    rows = [list(REFERENCE_INSTANCE.values()), [8] * 9]
    columnar = {
        "id": "request-1",
        "inputs": [
            {
                "name": name,
                "shape": [2],
                "datatype": "FP64",
                "data": [rows[0][i], rows[1][i]],
            }
            for i, name in enumerate(names)
        ],
    }
    answer = await (
        await client.post("/v2/models/bc-logistic/infer", json=columnar, headers=auth)
    ).json()
    assert answer["id"] == "request-1" and answer["model_version"] == "1"
    outputs = {tensor["name"]: tensor for tensor in answer["outputs"]}
    assert outputs["label"]["shape"] == [2]
    tensor = {
        "inputs": [
            {"name": "input-0", "shape": [2, 9], "datatype": "FP64", "data": rows}
        ]
    }
    same = await (
        await client.post("/v2/models/bc-logistic/infer", json=tensor, headers=auth)
    ).json()
    assert same["outputs"] == answer["outputs"]
    _, v1 = await predict(
        client, "bc-logistic", {"instances": [REFERENCE_INSTANCE]}, **auth
    )
    assert (
        java_double(outputs["probability(1)"]["data"][0])
        == v1["predictions"][0]["probability(1)"]
    )

    bad = {
        "inputs": [{"name": names[0], "shape": [1], "datatype": "FP64", "data": [99]}]
    }
    response = await client.post("/v2/models/bc-logistic/infer", json=bad, headers=auth)
    assert response.status == 400 and "row 0" in (await response.json())["error"]


async def test_metrics_count_requests_rows_and_errors(
    client: TestClient, auth: dict[str, str]
) -> None:
    await predict(client, "m", {"instances": [REFERENCE_INSTANCE, {"_c0": 99}]}, **auth)
    await predict(client, "m", {"instances": []})
    text = await (await client.get("/metrics")).text()
    assert (
        'riskstream_model_requests_total{model="m",outcome="partial",version="1"} 1.0'
        in text
    )
    assert (
        'riskstream_model_rows_total{model="m",outcome="scored",version="1"} 1.0'
        in text
    )
    assert (
        'riskstream_model_rows_total{model="m",outcome="invalid",version="1"} 1.0'
        in text
    )
    assert 'riskstream_model_errors_total{kind="unauthorized"} 1.0' in text
    assert 'riskstream_model_batch_rows_bucket{le="2.0"} 1.0' in text
    assert 'riskstream_model_request_seconds_count{endpoint="v1_predict"} 2.0' in text
    assert "riskstream_model_requests_in_flight 1.0" in text  # this very request
    assert 'riskstream_model_loaded_version{model="m"} 1.0' in text


async def test_a_model_served_under_another_name(
    serve: Serve, repository: ModelRepository
) -> None:
    registry = ModelRegistry(
        [ServedModel("m", RepositorySource(repository, "bc-forest"))]
    )
    await registry.load_all()
    client = await serve(registry)
    status, answer = await predict(client, "m", {"instances": [REFERENCE_INSTANCE]})
    assert status == 200 and answer["predictions"][0]["model_version"] == "1"
    assert (await predict(client, "bc-forest", {"instances": []}))[0] == 404
