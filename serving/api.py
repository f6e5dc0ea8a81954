"""The model server's HTTP API (aiohttp): the reference's predict, KServe V2, status, metrics.

Routes (``{name}`` is the served name, e.g. ``m``):

* ``POST /v1/models/{name}:predict`` and ``/v1/models/{name}/versions/{v}:predict``:
  the reference's ``{"instances": [...]}`` -> ``{"predictions": [...]}``.
* ``GET /v1/models/{name}`` (``/versions/{v}``): TF Serving's status plus the
  PMML's input schema.
* ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}``
  (``/ready``), ``POST /v2/models/{name}/infer``, ``POST /v2/repository/index``,
  ``POST /v2/repository/models/{name}/load``: the Open Inference Protocol.
* ``GET /metrics``: Prometheus.

While a shadow version is loaded (serving.loader), every predict and infer
request is scored by it too, after the current version; the answer stays
the current version's. The reference's answer gains, per prediction,
``shadow_version``, ``shadow_label`` and ``shadow_probabilities`` (class ->
probability), or ``shadow_version`` and ``shadow_error`` for a row the
shadow did not score. A V2 answer gains the output tensors
``shadow_label`` (BYTES, "" for a row the shadow did not score) and
``shadow_probability(<class>)`` (FP64, NaN/null there), answered like the
others (asked for by name, raw on request), and the response parameter
``shadow_version``; if the shadow failed on the whole request, only the
parameters ``shadow_version`` and ``shadow_error``. A shadow's failure never
fails a request: it is counted (``riskstream_model_errors_total{kind=
"shadow_score_failed"}``), shown in the status and logged when new.

V2 infer also speaks the binary tensor data extension (the codec is
:mod:`models.v2_binary`): a body with ``Inference-Header-Content-Length``
is a JSON header and raw tensors, which are decoded into the JSON
request's shape and scored through the same path; outputs asked for raw
are answered after the JSON header with the same header.

The ``:predict`` verb is part of the last path segment, so it is matched as
``{name}`` and split on its last colon here rather than in the route
pattern. Every error is ``{"error": "<reason>"}`` with a 4xx status; the
middleware turns anything unexpected into a logged 500, which the fuzz test
proves no request can reach.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

import numpy as np
import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from models.protocol import (
    EXPLAIN_KEY,
    EXPLANATION_KEY,
    LABEL_KEY,
    PREDICTION_KEY,
    SHADOW_ERROR_KEY,
    SHADOW_LABEL_KEY,
    SHADOW_VERSION_KEY,
    InferenceRequest,
    RequestInput,
    probability_key,
    shadow_probability_output,
)
from models.v2_binary import (
    BINARY_CONTENT_TYPE,
    INFERENCE_HEADER_LENGTH,
    BinaryTensorError,
    binary_outputs,
    encode_tensor,
    pack_body,
    read_tensors,
    split_body,
)
from serving.auth import TOKEN_HEADER, TokenCheck
from serving.errors import BadRequest, ModelNotFound, PayloadTooLarge, ServingError
from serving.formatting import output_text
from serving.loader import ModelRegistry, ServedModel
from serving.metrics import ServerMetrics
from serving.model import BatchResult, LoadedModel
from serving.status import tf_serving_status, v2_metadata, v2_outputs

__all__ = ["create_app"]

logger = logging.getLogger(__name__)

REGISTRY = web.AppKey("registry", ModelRegistry)
METRICS = web.AppKey("metrics", ServerMetrics)
TOKEN = web.AppKey("token", TokenCheck)
MAX_BODY = web.AppKey("max_body_bytes", int)
MAX_INSTANCES = web.AppKey("max_instances", int)

#: Routes anyone may call (health and metrics); every other route needs the token.
OPEN_ROUTES = frozenset({"v2_server", "v2_live", "v2_ready", "metrics"})

#: HTTP status -> error kind, for errors aiohttp raises itself.
_HTTP_KINDS = {
    400: "bad_request",
    404: "not_found",
    405: "bad_request",
    413: "too_large",
}

_JSON = "application/json"
_SERVER_NAME = "riskstream"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(payload), status=status, content_type=_JSON)


def _error(status: int, reason: str) -> web.Response:
    return _json({"error": reason}, status)


@web.middleware
async def _guard(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Token check, JSON errors, latency and in-flight accounting around every route."""
    metrics = request.app[METRICS]
    route = request.match_info.route.name or "unmatched"
    started = time.perf_counter()
    metrics.in_flight.inc()
    try:
        if route not in OPEN_ROUTES and route != "unmatched":
            request.app[TOKEN].verify(request.headers.get(TOKEN_HEADER))
        return await handler(request)
    except ServingError as exc:
        metrics.errors.labels(exc.kind).inc()
        return _error(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        metrics.errors.labels(_HTTP_KINDS.get(exc.status, "bad_request")).inc()
        reason = (
            exc.reason if exc.status != 405 else f"{request.method} is not allowed here"
        )
        return _error(exc.status, f"{reason}: {request.method} {request.path}")
    except Exception:
        logger.exception("internal error on %s %s", request.method, request.path)
        metrics.errors.labels("internal").inc()
        return _error(500, "internal error (logged by the server)")
    finally:
        metrics.in_flight.dec()
        metrics.latency.labels(route).observe(time.perf_counter() - started)


# --- request bodies ----------------------------------------------------------------
async def _body(request: web.Request) -> Any:
    """The request's JSON body (413 over the size limit, 400 if it is not JSON)."""
    return _parse(await _raw_body(request))


async def _raw_body(request: web.Request) -> bytes:
    """The request's body, unless it is over the size limit (413) or empty (400)."""
    limit = request.app[MAX_BODY]
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(
            f"request body of {request.content_length} bytes exceeds {limit} bytes"
        )
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes") from exc
    if not raw:
        raise BadRequest("empty request body: expected a JSON object")
    return raw


def _parse(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from exc


def _explain(where: str, value: Any) -> bool:
    """The ``explain`` flag of a request: absent is false, anything but a boolean a 400."""
    if value is None or isinstance(value, bool):
        return bool(value)
    raise BadRequest(
        f"{where} must be true or false, not {orjson.dumps(value).decode()}"
    )


def _instances(request: web.Request, body: Any) -> list[Any]:
    if not isinstance(body, dict):
        raise BadRequest(
            'the body must be a JSON object like {"instances": [{...}, ...]}'
        )
    unknown = set(body) - {"instances", "signature_name", EXPLAIN_KEY}
    if unknown:
        raise BadRequest(
            f'unknown top-level key(s) {sorted(unknown)}: expected "instances"'
        )
    instances = body.get("instances")
    if not isinstance(instances, list):
        raise BadRequest('"instances" must be a JSON array of objects')
    return _within_limit(request, instances)


def _within_limit(request: web.Request, rows: list[Any]) -> list[Any]:
    """The rows of a request, unless there are more than ``RISKSTREAM_MODEL_MAX_INSTANCES`` (413).

    The body limit bounds the bytes; this bounds the scoring work one
    request can ask for (a small body of empty objects is many rows).
    """
    limit = request.app[MAX_INSTANCES]
    if len(rows) > limit:
        raise PayloadTooLarge(
            f"{len(rows)} instances exceed the limit of {limit} per request"
        )
    return rows


def _served(request: web.Request, name: str) -> ServedModel:
    return request.app[REGISTRY].get(name)


def _model(served: ServedModel, version: str | None) -> LoadedModel:
    model = served.current
    if version is not None and version != model.version:
        raise ModelNotFound(
            f"model {served.served_name!r} version {version!r} is not loaded "
            f"(serving version {model.version})"
        )
    return model


def _split_verb(segment: str, verb: str) -> str:
    """``"m:predict"`` -> ``"m"``; the verb is what follows the last colon."""
    name, colon, found = segment.rpartition(":")
    if not colon or found != verb:
        raise ModelNotFound(f"unknown endpoint {segment!r}: expected <name>:{verb}")
    return name


# --- the reference's predict, TF Serving status ----------------------------------------
async def _score(
    request: web.Request,
    served: ServedModel,
    model: LoadedModel,
    instances: list[Any],
    explain: bool = False,
) -> BatchResult:
    result = await model.score(instances, explain)
    request.app[METRICS].count_batch(
        served.served_name,
        model.version,
        len(result.scored) - _refused(result),
        result.invalid_rows,
    )
    return result


#: A shadow's answer to a request: its version and result, or why it failed on it.
ShadowAnswer = tuple[LoadedModel, BatchResult | str]


async def _score_shadow(
    served: ServedModel, instances: list[Any]
) -> ShadowAnswer | None:
    """The shadow's answer to the rows the current version answered, or None without a shadow.

    Anything the shadow raises is caught and reported: it must never fail
    the request that the current version already answered.
    """
    shadow = served.shadow
    if shadow is None:
        return None
    try:
        return shadow, await shadow.score(instances)
    except Exception as exc:  # noqa: BLE001  (a shadow's failure costs no availability)
        reason = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        served.shadow_scoring_failed(shadow, reason)
        return shadow, reason


def _with_shadow(
    predictions: list[dict[str, Any]], shadow: ShadowAnswer | None
) -> list[dict[str, Any]]:
    """The reference's predictions with the shadow's answer added to each."""
    if shadow is None:
        return predictions
    model, result = shadow
    if isinstance(result, str):
        extras = [{SHADOW_VERSION_KEY: model.version, SHADOW_ERROR_KEY: result}] * len(
            predictions
        )
    else:
        extras = model.shadow_predictions(result)
    for answer, extra in zip(predictions, extras, strict=True):
        answer.update(extra)
    return predictions


def _refused(result: BatchResult) -> int:
    no_result = result.scores.no_result if result.scores is not None else None
    return 0 if no_result is None else int(no_result.sum())


async def _predict(
    request: web.Request, served: ServedModel, model: LoadedModel
) -> web.Response:
    """The reference's predict: ``model``'s answers (explained on request), the shadow's beside them."""
    body = await _body(request)
    instances = _instances(request, body)
    explain = _explain(f'"{EXPLAIN_KEY}"', body.get(EXPLAIN_KEY))
    result = await _score(request, served, model, instances, explain)
    shadow = await _score_shadow(served, instances)
    return _json({"predictions": _with_shadow(model.predictions(result), shadow)})


async def v1_predict(request: web.Request) -> web.Response:
    served = _served(request, _split_verb(request.match_info["name"], "predict"))
    return await _predict(request, served, _model(served, None))


async def v1_version_predict(request: web.Request) -> web.Response:
    served = _served(request, request.match_info["name"])
    model = _model(served, _split_verb(request.match_info["version"], "predict"))
    return await _predict(request, served, model)


async def v1_status(request: web.Request) -> web.Response:
    served = _served(request, request.match_info["name"])
    return _json(tf_serving_status(served))


async def v1_version_status(request: web.Request) -> web.Response:
    served = _served(request, request.match_info["name"])
    version = request.match_info["version"]
    status = tf_serving_status(served, version)
    if not status["model_version_status"]:
        raise ModelNotFound(
            f"model {served.served_name!r} has no version {version!r} here"
        )
    return _json(status)


# --- Open Inference Protocol (KServe V2) ------------------------------------------------
async def v2_server(request: web.Request) -> web.Response:
    return _json(
        {
            "name": _SERVER_NAME,
            "version": version("riskstream"),
            "extensions": ["model_repository", "binary_tensor_data"],
        }
    )


async def v2_live(request: web.Request) -> web.Response:
    return _json({"live": True})


async def v2_ready(request: web.Request) -> web.Response:
    ready = request.app[REGISTRY].ready
    return _json({"ready": ready}, 200 if ready else 503)


async def v2_model(request: web.Request) -> web.Response:
    served = _served(request, request.match_info["name"])
    _model(served, request.match_info.get("version"))
    return _json(v2_metadata(served))


async def v2_model_ready(request: web.Request) -> web.Response:
    served = _served(request, request.match_info["name"])
    return _json(
        {"name": served.served_name, "ready": served.ready},
        200 if served.ready else 503,
    )


#: Open Inference Protocol tensor datatypes; PMML's types map onto FP32/FP64/INT64, BYTES, BOOL.
_V2_DATATYPES = frozenset(
    {
        "BOOL",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "FP16",
        "FP32",
        "FP64",
        "BYTES",
    }
)


async def _v2_request(request: web.Request) -> InferenceRequest:
    """The V2 request: a JSON body, or a JSON header and raw tensors (400 naming what is wrong)."""
    body = await _raw_body(request)
    header_length = request.headers.get(INFERENCE_HEADER_LENGTH)
    try:
        if header_length is None:
            header, tensors = body, memoryview(b"")
        else:
            header, tensors = split_body(body, header_length)
        inference = _inference_request(_parse(header))
        read_tensors(inference.inputs, tensors)
    except BinaryTensorError as exc:
        raise BadRequest(str(exc)) from None
    return inference


def _inference_request(body: Any) -> InferenceRequest:
    """The body as a V2 inference request (400 naming the first thing wrong)."""
    try:
        parsed = InferenceRequest.model_validate(body)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the body"
        raise BadRequest(
            f"not a V2 inference request: {where}: {error['msg']}"
        ) from None
    for tensor in parsed.inputs:
        if tensor.datatype not in _V2_DATATYPES:
            raise BadRequest(
                f"input {tensor.name!r}: unknown datatype {tensor.datatype!r}"
            )
    return parsed


def _v2_columns(
    tensors: list[RequestInput], names: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Columnar V2 ``inputs`` -> row instances: one tensor per input, or one [rows, inputs] tensor.

    A tensor's values reach the encoder as they are (numbers for numeric
    inputs, strings of a BYTES tensor for string inputs, true/false of a
    BOOL tensor for boolean ones), which checks each against its field.
    """
    if len(tensors) == 1 and tensors[0].name not in names:
        rows = _rows_of(tensors[0], len(names))
        return [dict(zip(names, row, strict=True)) for row in rows]
    columns: dict[str, list[Any]] = {}
    for tensor in tensors:
        if tensor.name not in names:
            raise BadRequest(
                f"unknown input {tensor.name!r}; the model's inputs are {', '.join(names)}"
            )
        columns[tensor.name] = _flat(tensor.values)
    lengths = {len(column) for column in columns.values()}
    if len(lengths) != 1:
        raise BadRequest("input tensors have different lengths")
    return [
        dict(zip(columns, row, strict=True))
        for row in zip(*columns.values(), strict=True)
    ]


def _flat(data: list[Any]) -> list[Any]:
    """A [n] or [n, 1] tensor's data as one list."""
    if data and all(isinstance(item, list) for item in data):
        if any(len(item) != 1 for item in data):
            raise BadRequest("a per-input tensor must have shape [rows] or [rows, 1]")
        return [item[0] for item in data]
    return data


def _rows_of(tensor: RequestInput, width: int) -> list[list[Any]]:
    """A [rows, inputs] tensor (nested or flat row-major data) as rows."""
    data = tensor.values
    rows: list[list[Any]]
    if data and all(isinstance(item, list) for item in data):
        rows = data
    elif len(data) % width == 0:
        rows = [data[i : i + width] for i in range(0, len(data), width)]
    else:
        raise BadRequest(f"tensor {tensor.name!r} must have shape [rows, {width}]")
    if any(len(row) != width for row in rows):
        raise BadRequest(f"tensor {tensor.name!r} must have shape [rows, {width}]")
    return rows


#: An output's values: numbers straight from the evaluator, or a list.
Column = np.ndarray | list[Any]


def _tensor_values(datatype: str, column: Column) -> Column:
    """An output's values in its tensor's type (text for BYTES, as in the v1 answer)."""
    if datatype == "BYTES":
        return [output_text(value) for value in column]
    return column


def _v2_columns_out(model: LoadedModel, result: BatchResult) -> dict[str, Column]:
    """Every answer of :func:`serving.status.v2_outputs` by name, numbers kept as arrays.

    The arrays go raw onto the binary wire as they are; the JSON wire
    lists them, NaN (no probability) becoming null as orjson writes it.
    """
    scores = result.scores
    data: dict[str, Column] = {}
    if scores is not None:
        if model.regression:
            assert scores.values is not None
            data[PREDICTION_KEY] = scores.values
        else:
            data[LABEL_KEY] = [model.classes[i] for i in scores.labels.tolist()]
            for category, column in zip(
                model.classes, scores.probabilities.T, strict=True
            ):
                data[probability_key(category)] = column
        data.update(scores.outputs)
        if scores.explanations is not None:
            data[EXPLANATION_KEY] = scores.explanations
    return data


def _v2_shadow_columns(
    shadow: LoadedModel, result: BatchResult
) -> tuple[list[tuple[str, str]], dict[str, Column]]:
    """The shadow's output tensors (name, datatype) and their values, one per row.

    A row the shadow did not score has label "" and NaN probabilities.
    """
    rows = result.batch.rows
    labels = [""] * rows
    probabilities = np.full((rows, len(shadow.classes)), np.nan)
    scores = result.scores
    if scores is not None:
        kept = [
            (row, index)
            for index, row in enumerate(result.scored.tolist())
            if row not in result.errors
        ]
        for row, index in kept:
            labels[row] = shadow.classes[int(scores.labels[index])]
            probabilities[row] = scores.probabilities[index]
    names = [shadow_probability_output(c) for c in shadow.classes]
    columns: dict[str, Column] = {SHADOW_LABEL_KEY: labels}
    columns.update(zip(names, probabilities.T, strict=True))
    return [(SHADOW_LABEL_KEY, "BYTES"), *((name, "FP64") for name in names)], columns


def _v2_answer(
    inference: InferenceRequest,
    model: LoadedModel,
    result: BatchResult,
    shadow: tuple[LoadedModel, BatchResult] | None,
) -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """The output tensors asked for, in the model's order, and the raw bytes of those asked raw.

    The shadow's tensors, when it scored the request, come after the model's.
    """
    outputs = v2_outputs(model)
    columns = _v2_columns_out(model, result)
    if shadow is not None:
        shadow_outputs, shadow_columns = _v2_shadow_columns(*shadow)
        outputs = [*outputs, *shadow_outputs]
        columns.update(shadow_columns)
    if result.scores is not None and result.scores.explanations is not None:
        outputs = [*outputs, (EXPLANATION_KEY, "BYTES")]
    requested = inference.outputs or []
    if requested:
        wanted = {output.name for output in requested}
        unknown = sorted(wanted - {name for name, _ in outputs})
        if unknown:
            raise BadRequest(f"unknown output(s) {unknown}")
        outputs = [(name, datatype) for name, datatype in outputs if name in wanted]
    try:
        raw = binary_outputs(
            inference.parameters,
            [(output.name, output.parameters) for output in requested],
            [name for name, _ in outputs],
        )
        tensors: list[dict[str, Any]] = []
        payloads: dict[str, bytes] = {}
        for name, datatype in outputs:
            values = _tensor_values(datatype, columns.get(name, []))
            tensor: dict[str, Any] = {
                "name": name,
                "datatype": datatype,
                "shape": [result.batch.rows],
            }
            if name in raw:
                payloads[name] = encode_tensor(datatype, values)
            else:
                tensor["data"] = (
                    values.tolist() if isinstance(values, np.ndarray) else values
                )
            tensors.append(tensor)
    except BinaryTensorError as exc:
        raise BadRequest(str(exc)) from None
    return tensors, payloads


async def v2_infer(request: web.Request) -> web.Response:
    served = _served(request, request.match_info["name"])
    model = _model(served, request.match_info.get("version"))
    inference = await _v2_request(request)
    instances = _within_limit(
        request, _v2_columns(inference.inputs, model.encoder.names)
    )
    asked = inference.parameters or {}
    explain = _explain(f"parameters.{EXPLAIN_KEY}", asked.get(EXPLAIN_KEY))
    result = await _score(request, served, model, instances, explain)
    if result.errors:
        shown = sorted(result.errors.items())[:5]
        raise BadRequest(
            f"{len(result.errors)} invalid row(s): "
            + "; ".join(f"row {row}: {reason}" for row, reason in shown)
        )
    shadow = await _score_shadow(served, instances)
    scored_shadow = None
    parameters: dict[str, Any] = {}
    if shadow is not None:
        shadow_model, shadow_result = shadow
        parameters[SHADOW_VERSION_KEY] = shadow_model.version
        if isinstance(shadow_result, str):
            parameters[SHADOW_ERROR_KEY] = shadow_result
        else:
            scored_shadow = (shadow_model, shadow_result)
    outputs, payloads = _v2_answer(inference, model, result, scored_shadow)
    answer: dict[str, Any] = {
        "model_name": served.served_name,
        "model_version": model.version,
        "outputs": outputs,
    }
    if parameters:
        answer["parameters"] = parameters
    if inference.id is not None:
        answer["id"] = inference.id
    body, header_length = pack_body(answer, "outputs", payloads)
    if header_length is None:
        return web.Response(body=body, content_type=_JSON)
    return web.Response(
        body=body,
        content_type=BINARY_CONTENT_TYPE,
        headers={INFERENCE_HEADER_LENGTH: str(header_length)},
    )


async def v2_repository_index(request: web.Request) -> web.Response:
    return _json(
        [
            {
                "name": served.served_name,
                "version": served.current.version if served.ready else None,
                "state": "READY" if served.ready else "UNAVAILABLE",
                "reason": served.failure.reason if served.failure else "",
            }
            for served in request.app[REGISTRY]
        ]
    )


async def v2_repository_load(request: web.Request) -> web.Response:
    """Load a version now (default: what the source wants) and answer once it serves."""
    served = _served(request, request.match_info["name"])
    identity = None
    if request.can_read_body:
        body = await _body(request)
        parameters = body.get("parameters") if isinstance(body, dict) else None
        version = parameters.get("version") if isinstance(parameters, dict) else None
        if version is not None:
            identity = served.source.version(str(version))
    model = await served.load(identity)
    return _json(
        {"name": served.served_name, "version": model.version, "state": "READY"}
    )


async def metrics(request: web.Request) -> web.Response:
    registry = request.app[REGISTRY]
    server_metrics = request.app[METRICS]
    for served in registry:
        if served.ready and served.current.version.isdigit():
            server_metrics.loaded.labels(served.served_name).set(
                int(served.current.version)
            )
        shadow = served.shadow
        server_metrics.shadow.labels(served.served_name).set(
            int(shadow.version)
            if shadow is not None and shadow.version.isdigit()
            else 0
        )
    return web.Response(
        body=generate_latest(server_metrics.registry),
        headers={"Content-Type": CONTENT_TYPE_LATEST},
    )


def create_app(
    registry: ModelRegistry,
    *,
    token: TokenCheck,
    metrics_: ServerMetrics,
    max_body_bytes: int,
    max_instances: int,
) -> web.Application:
    """The server's aiohttp application over ``registry``."""
    app = web.Application(middlewares=[_guard], client_max_size=max_body_bytes)
    app[REGISTRY] = registry
    app[METRICS] = metrics_
    app[TOKEN] = token
    app[MAX_BODY] = max_body_bytes
    app[MAX_INSTANCES] = max_instances
    for served in registry:
        served.on_load_failure(
            lambda failure: metrics_.errors.labels("load_failed").inc()
        )
        served.on_shadow_failure(
            lambda stage: metrics_.errors.labels(f"shadow_{stage}_failed").inc()
        )
        if served.shadow_state is not None and served.shadow_state.failure:
            metrics_.errors.labels("shadow_load_failed").inc()  # at the first load
    add = app.router.add_route
    add("GET", "/v1/models/{name}", v1_status, name="v1_status")
    add("POST", "/v1/models/{name}", v1_predict, name="v1_predict")
    add(
        "GET",
        "/v1/models/{name}/versions/{version}",
        v1_version_status,
        name="v1_version_status",
    )
    add(
        "POST",
        "/v1/models/{name}/versions/{version}",
        v1_version_predict,
        name="v1_version_predict",
    )
    add("GET", "/v2", v2_server, name="v2_server")
    add("GET", "/v2/health/live", v2_live, name="v2_live")
    add("GET", "/v2/health/ready", v2_ready, name="v2_ready")
    add("GET", "/v2/models/{name}", v2_model, name="v2_model")
    add("GET", "/v2/models/{name}/ready", v2_model_ready, name="v2_model_ready")
    add(
        "GET", "/v2/models/{name}/versions/{version}", v2_model, name="v2_model_version"
    )
    add("POST", "/v2/models/{name}/infer", v2_infer, name="v2_infer")
    add(
        "POST",
        "/v2/models/{name}/versions/{version}/infer",
        v2_infer,
        name="v2_infer_version",
    )
    add("POST", "/v2/repository/index", v2_repository_index, name="v2_repository_index")
    add(
        "POST",
        "/v2/repository/models/{name}/load",
        v2_repository_load,
        name="v2_repository_load",
    )
    add("GET", "/metrics", metrics, name="metrics")
    return app
