"""The model server's one exception family, each failure with its HTTP status.

Handlers raise these and the error middleware turns them into
``{"error": "<reason>"}`` with the status they carry, so a client always
learns what was wrong with its request and nothing internal leaks out.
"""

from __future__ import annotations

__all__ = [
    "BadRequest",
    "ModelLoadError",
    "ModelNotFound",
    "PayloadTooLarge",
    "ServingError",
    "Unauthorized",
    "UnsupportedModel",
]


class ServingError(Exception):
    """Base of every error the model server reports to a client or an operator."""

    status = 500
    #: label of the ``riskstream_model_errors_total`` counter.
    kind = "internal"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(ServingError):
    """Malformed JSON, or a body whose shape is not one the endpoint accepts."""

    status = 400
    kind = "bad_request"


class Unauthorized(ServingError):
    """A model endpoint was called without the configured token, or with another one."""

    status = 401
    kind = "unauthorized"


class ModelNotFound(ServingError):
    """No model (or no loaded version of it) is served under the requested name."""

    status = 404
    kind = "not_found"


class PayloadTooLarge(ServingError):
    """The request body exceeds ``RISKSTREAM_MODEL_MAX_BODY_BYTES``."""

    status = 413
    kind = "too_large"


class ModelLoadError(ServingError):
    """A model version could not be read or prepared; the previous version keeps serving."""

    status = 422
    kind = "load_failed"


class UnsupportedModel(ServingError):
    """The fast evaluator cannot reproduce this PMML exactly (the server then uses pypmml)."""

    status = 422
    kind = "unsupported_model"
