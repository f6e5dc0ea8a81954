"""The model server's wire protocol: the one module the server, the workers and the generator import.

Everything one side writes and the other reads lives here, typed, so that
neither parses the other's JSON by hand:

* the routes (:func:`status_path`, :func:`predict_path`, ...) and the token
  header;
* the status document ``GET /v1/models/{name}`` (:class:`ModelStatus`): TF
  Serving's ``model_version_status`` plus the PMML's schema in Openscoring's
  shape (:class:`ModelSchema`), from which a worker learns the inputs' names,
  order and types;
* the keys of a prediction in the reference's answer
  (``{"predictions": [{"pmml(prediction)": ..., "probability(1)": ...}]}``),
  and the shadow version's answer beside it (``shadow_version``,
  ``shadow_label``, ``shadow_probabilities``, or ``shadow_error``);
* the Open Inference Protocol (KServe V2) request, response and metadata
  (:class:`InferenceRequest`, :class:`InferenceResponse`,
  :class:`MetadataModelResponse`), in MLServer's shape; a tensor's data is
  either JSON or raw bytes after the JSON (the binary tensor data
  extension, whose codec is :mod:`models.v2_binary`).

The predict request and answer themselves stay plain JSON written and read
with orjson: they are the hot path (hundreds of thousands of rows a second),
where a validating model per row would cost more than the scoring.
"""

from __future__ import annotations

from typing import Any, Literal

import aiohttp
import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from models.v2_binary import BINARY_DATA_SIZE, binary_size

__all__ = [
    "ERROR_KEY",
    "EXPLAIN_KEY",
    "EXPLANATION_KEY",
    "LABEL_KEY",
    "PREDICTION_KEY",
    "PREDICTION_TEXT_KEY",
    "READY_PATH",
    "SHADOW_ERROR_KEY",
    "SHADOW_LABEL_KEY",
    "SHADOW_PROBABILITIES_KEY",
    "SHADOW_VERSION_KEY",
    "TOKEN_HEADER",
    "VERSION_KEY",
    "EvaluatorInfo",
    "InferenceRequest",
    "InferenceResponse",
    "InputFieldDoc",
    "MetadataModelResponse",
    "MetadataTensor",
    "ModelSchema",
    "ModelStatus",
    "OutputFieldDoc",
    "RepositoryEntry",
    "RepositoryIndex",
    "RequestInput",
    "RequestOutput",
    "ResponseOutput",
    "ShadowStatus",
    "StatusUnavailable",
    "TargetFieldDoc",
    "VersionStatus",
    "error_reason",
    "fetch_status",
    "infer_path",
    "metadata_path",
    "predict_path",
    "probability_key",
    "repository_index_path",
    "shadow_probability_output",
    "status_path",
]

#: The reference's authentication header; health and metrics routes need none.
TOKEN_HEADER = "X-Auth-Token"

#: Readiness probe of a server (Open Inference Protocol); the pool client polls it.
READY_PATH = "/v2/health/ready"


def repository_index_path() -> str:
    """``POST``: the :data:`RepositoryIndex` of what a server serves."""
    return "/v2/repository/index"


def status_path(served_name: str) -> str:
    """``GET``: the :class:`ModelStatus` of a served model."""
    return f"/v1/models/{served_name}"


def predict_path(served_name: str) -> str:
    """``POST`` ``{"instances": [...]}``: the reference's predict call."""
    return f"/v1/models/{served_name}:predict"


def metadata_path(served_name: str) -> str:
    """``GET``: the :class:`MetadataModelResponse` of a served model."""
    return f"/v2/models/{served_name}"


def infer_path(served_name: str) -> str:
    """``POST`` an :class:`InferenceRequest`."""
    return f"/v2/models/{served_name}/infer"


# --- the reference's answer ------------------------------------------------------
#: The predicted value as PMML writes it: the label of a classifier, the number of a regression.
PREDICTION_TEXT_KEY = "pmml(prediction)"
#: The predicted value as a number (a classifier's label as a double, as the reference does).
PREDICTION_KEY = "prediction"
#: A classifier's predicted label (absent for a regression).
LABEL_KEY = "label"
#: Which model version answered the row.
VERSION_KEY = "model_version"
#: In place of a prediction: why the row was not scored.
ERROR_KEY = "error"
#: Request flag (a top-level key of the predict body, a V2 request parameter):
#: ``true`` asks for an explanation of every row's answer.
EXPLAIN_KEY = "explain"
#: The answer key (and V2 BYTES output) holding a row's explanation: a compact
#: JSON text, ``{"kind": "tree" | "ensemble" | "regression" | "unavailable", ...}``.
EXPLANATION_KEY = "explanation"

# A server with a shadow version adds its answer to every row; the answer
# above stays the current version's. A row the shadow did not score (it
# refused the row, or failed on the request) has the version and the error.
#: Which version shadowed the row.
SHADOW_VERSION_KEY = "shadow_version"
#: The shadow's predicted label (classifications only: a shadow is compared by label).
SHADOW_LABEL_KEY = "shadow_label"
#: The shadow's probabilities as a JSON object, class -> probability (a number).
SHADOW_PROBABILITIES_KEY = "shadow_probabilities"
#: In place of the shadow's label and probabilities: why it did not score the row.
SHADOW_ERROR_KEY = "shadow_error"


def shadow_probability_output(category: str) -> str:
    """The V2 output tensor of the shadow's probability of ``category`` (``shadow_label`` is the label's)."""
    return f"shadow_{probability_key(category)}"


def probability_key(category: str) -> str:
    """The answer key holding the probability of ``category``, e.g. ``probability(1)``."""
    return f"probability({category})"


# --- the status document -------------------------------------------------------------
class _Document(BaseModel):
    """Readers keep what they know and ignore the rest (newer servers may add fields)."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class InputFieldDoc(_Document):
    """One model input, in Openscoring's shape plus the bounds as numbers.

    ``values`` is Openscoring's too: the declared values of a categorical
    input, or the valid interval of a continuous one as text (``"[1.0, 10.0]"``).
    """

    id: str
    name: str
    position: int
    positionalName: str
    dataType: str = "double"
    opType: str = "continuous"
    values: list[str] = Field(default_factory=list)
    valid_min: float | None = None
    valid_max: float | None = None
    invalidValueTreatment: str = "returnInvalid"
    missingValueTreatment: str = "asIs"
    missingValueReplacement: float | str | None = None


class TargetFieldDoc(_Document):
    """The model's target: categorical with its classes, or continuous for a regression."""

    id: str | None
    opType: str
    values: list[str] = Field(default_factory=list)


class OutputFieldDoc(_Document):
    """One key of a prediction in the reference's answer."""

    id: str
    dataType: str


class ModelSchema(_Document):
    """What a model takes and answers: inputs in PMML order, target, answer keys."""

    functionName: Literal["classification", "regression"] = "classification"
    inputFields: list[InputFieldDoc]
    targetFields: list[TargetFieldDoc] = Field(default_factory=list)
    outputFields: list[OutputFieldDoc] = Field(default_factory=list)


class VersionStatus(_Document):
    """TF Serving's entry for one version: AVAILABLE, LOADING or END (a failed load)."""

    version: str
    state: str
    status: dict[str, str]


class EvaluatorInfo(_Document):
    """Which engine scores the model: ``fast`` or ``pypmml``, and what it runs."""

    kind: str
    description: str = ""


class ShadowStatus(_Document):
    """The shadow version beside the current one: whether it scores, and why not.

    ``state`` is ``AVAILABLE`` (scoring every request), ``LOADING`` or
    ``FAILED`` (it did not load: ``reason`` says why; the server scores
    without it until the ``SHADOW`` pointer moves). ``scoring_failures``
    counts requests the shadow failed on (answered without it),
    ``last_scoring_error`` is the latest such failure.
    """

    version: str
    state: Literal["AVAILABLE", "LOADING", "FAILED"]
    reason: str = ""
    scoring_failures: int = 0
    last_scoring_error: str = ""


class ModelStatus(_Document):
    """``GET /v1/models/{name}``: TF Serving's status plus which model answers and its schema.

    ``shadow`` is present while a shadow version is configured.
    """

    model_version_status: list[VersionStatus] = Field(default_factory=list)
    name: str
    model: str
    version: str
    source: str = ""
    pmml: str = ""
    evaluator: EvaluatorInfo | None = None
    shadow: ShadowStatus | None = None
    schema_: ModelSchema = Field(alias="schema")

    def document(self) -> dict[str, Any]:
        """The JSON object the server sends (with the schema under ``schema``)."""
        return self.model_dump(by_alias=True)


# --- the Open Inference Protocol (KServe V2) ---------------------------------------------
#: Tensor datatypes riskstream reads and writes.
Datatype = Literal["BOOL", "INT32", "INT64", "FP32", "FP64", "BYTES"]


class RepositoryEntry(_Document):
    """One served model in the repository index: its served name and state."""

    name: str
    version: str | None = None
    state: str
    reason: str = ""


#: ``POST /v2/repository/index``: every model the server serves.
RepositoryIndex = TypeAdapter(list[RepositoryEntry])


class MetadataTensor(_Document):
    """One input or output tensor of a model's metadata."""

    name: str
    datatype: str
    shape: list[int]


class MetadataModelResponse(_Document):
    """``GET /v2/models/{name}``."""

    name: str
    versions: list[str] = Field(default_factory=list)
    platform: str = "pmml"
    inputs: list[MetadataTensor] = Field(default_factory=list)
    outputs: list[MetadataTensor] = Field(default_factory=list)


class _Tensor(_Document):
    """A tensor's row-major values: JSON ``data``, or ``binary_data_size`` raw bytes after the JSON.

    Exactly one of the two, so that a header read before its raw bytes
    already says where each tensor's values are.
    """

    name: str
    shape: list[int]
    datatype: str
    data: list[Any] | None = None
    parameters: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _data_or_binary(self) -> _Tensor:
        binary = binary_size(self.parameters) is not None
        if binary == (self.data is not None):
            raise ValueError(
                f"tensor {self.name!r} needs either data or parameters.{BINARY_DATA_SIZE}"
                if not binary
                else f"tensor {self.name!r} has both data and parameters.{BINARY_DATA_SIZE}"
            )
        return self

    @property
    def values(self) -> list[Any]:
        """The data, once raw bytes were read into it (:func:`models.v2_binary.read_tensors`)."""
        if self.data is None:
            raise ValueError(f"tensor {self.name!r}: its binary data was not read")
        return self.data


class RequestInput(_Tensor):
    """One input tensor of an inference request."""


class RequestOutput(_Document):
    """An output the client asks for (all of them when the request names none)."""

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(_Document):
    """``POST /v2/models/{name}/infer``."""

    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = None


class ResponseOutput(_Tensor):
    """One output tensor of an inference response."""


class InferenceResponse(_Document):
    """The answer to an :class:`InferenceRequest`."""

    model_name: str
    model_version: str | None = None
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[ResponseOutput]


# --- reading a server's status, for the worker and the generator alike -----------
class StatusUnavailable(Exception):
    """A server that gave no :class:`ModelStatus`: its HTTP status (0: no answer) and why."""

    def __init__(self, http_status: int, reason: str) -> None:
        super().__init__(reason)
        self.http_status = http_status
        self.reason = reason


def error_reason(payload: bytes) -> str:
    """The ``{"error": ...}`` of an error answer, else the start of its body."""
    try:
        body = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return payload[:200].decode("utf-8", "replace")
    if isinstance(body, dict) and ERROR_KEY in body:
        return str(body[ERROR_KEY])[:500]
    return payload[:200].decode("utf-8", "replace")


async def fetch_status(
    session: aiohttp.ClientSession, base_url: str, served_name: str
) -> ModelStatus:
    """``GET`` the status of ``served_name`` on the server at ``base_url``.

    ``session`` carries the token header and TLS settings. Raises
    :class:`StatusUnavailable` for no answer, an error answer or a document
    of another shape.
    """
    try:
        async with session.get(f"{base_url}{status_path(served_name)}") as response:
            payload = await response.read()
            http_status = response.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise StatusUnavailable(0, f"{type(exc).__name__}: {exc}") from None
    if http_status != 200:
        raise StatusUnavailable(
            http_status, f"HTTP {http_status}: {error_reason(payload)}"
        )
    try:
        return ModelStatus.model_validate_json(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "the document"
        raise StatusUnavailable(
            http_status,
            f"model status is not the documented shape: {where}: {first['msg']}",
        ) from None
