"""No request, however malformed, makes the server answer 500 (or anything but JSON).

Hypothesis generates bodies at three levels: arbitrary bytes, arbitrary
JSON documents, and well-formed requests whose instances carry arbitrary
field names and values (numbers of every size, strings, nulls, booleans,
nested containers), against both the reference's predict endpoint and
KServe V2 infer, with and without the token.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from aiohttp.test_utils import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .conftest import TOKEN

EXPECTED = {200, 400, 401, 404, 413}

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
field_names = st.sampled_from(
    [
        "_c0",
        "_c5",
        "_c8",
        "_c9",
        "_c29",
        "clump_thickness",
        "bare_nuclei",
        "mean_radius",
        "",
    ]
) | st.text(max_size=12)
field_values = (
    st.integers(min_value=-20, max_value=20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(
        [1, 10, 0, 11, 1.0, 10.0, 5.5, "3", " 4 ", "", "abc", "1e999", "nan", None]
    )
    | json_values
)
instances = st.lists(
    st.dictionaries(field_names, field_values, max_size=10) | json_values, max_size=8
)
predict_bodies = st.fixed_dictionaries({"instances": instances}) | st.dictionaries(
    st.sampled_from(["instances", "signature_name", "inputs", "x"]),
    json_values,
    max_size=3,
)
v2_bodies = st.fixed_dictionaries(
    {
        "inputs": st.lists(
            st.fixed_dictionaries(
                {
                    "name": field_names | st.just("input-0"),
                    "data": st.lists(
                        field_values | st.lists(field_values, max_size=10), max_size=6
                    ),
                },
                optional={"shape": json_values, "datatype": json_values},
            ),
            max_size=4,
        )
    },
    optional={"outputs": json_values, "id": json_values},
)
paths = st.sampled_from(
    [
        "/v1/models/m:predict",
        "/v1/models/breast-cancer-diagnostic:predict",
        "/v1/models/m/versions/1:predict",
        "/v1/models/m/versions/x:predict",
        "/v1/models/m:",
        "/v1/models/:predict",
        "/v2/models/m/infer",
        "/v2/models/bc-forest/versions/1/infer",
        "/v2/repository/models/m/load",
    ]
)


def _dumps(document: Any) -> bytes:
    """JSON text; the standard library writes integers of any size (orjson stops at 64 bits)."""
    return json.dumps(document).encode()


bodies = (
    st.binary(max_size=200)
    | json_values.map(_dumps)
    | predict_bodies.map(_dumps)
    | v2_bodies.map(_dumps)
    | st.sampled_from(
        [
            b'{"instances": [{"_c0": 1' + b"0" * 400 + b"}]}",
            b'{"instances": [{"_c0": 1e400}]}',
            b'{"instances": [{"_c0": NaN}]}',
            b'{"instances": ' + b"[" * 5000 + b"]" * 5000 + b"}",
            b'{"instances": [{"_c0": "\\ud800"}]}',
        ]
    )
)


async def _check(
    client: TestClient, path: str, body: bytes, headers: dict[str, str]
) -> None:
    response = await client.post(path, data=body, headers=headers)
    assert response.status in EXPECTED, (response.status, await response.text())
    answer: Any = orjson.loads(await response.read())
    if response.status == 200:
        assert isinstance(answer, (dict, list))
    else:
        assert set(answer) == {"error"} and answer["error"]


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(path=paths, body=bodies, token=st.sampled_from([TOKEN, TOKEN, "", "wrong"]))
async def test_no_input_yields_a_server_error(
    client: TestClient, path: str, body: bytes, token: str
) -> None:
    await _check(client, path, body, {"X-Auth-Token": token} if token else {})


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=instances)
async def test_every_instance_gets_a_prediction_or_an_error(
    client: TestClient, rows: list[Any]
) -> None:
    response = await client.post(
        "/v1/models/m:predict",
        data=_dumps({"instances": rows}),
        headers={"X-Auth-Token": TOKEN},
    )
    assert response.status == 200
    predictions = (await response.json())["predictions"]
    assert len(predictions) == len(rows)
    for prediction in predictions:
        assert ("error" in prediction) != ("label" in prediction)
        assert prediction["model_version"] == "1"
