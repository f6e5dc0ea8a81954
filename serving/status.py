"""What the server says about its models: TF Serving status, Openscoring schema, KServe metadata.

All of it comes from the loaded PMML, so a client (the stream worker reads
the inputs' names and order from ``GET /v1/models/{name}``) never hard-codes
a feature list.
"""

from __future__ import annotations

import logging
from typing import Any

from models.pmml_schema import InputField
from serving.features import positional_name
from serving.loader import ServedModel
from serving.model import LoadedModel

__all__ = ["openscoring_schema", "tf_serving_status", "v2_metadata"]

logger = logging.getLogger(__name__)

#: PMML dataType -> Open Inference Protocol tensor datatype.
_V2_DATATYPES = {"double": "FP64", "float": "FP32", "integer": "INT64"}


def _number(text: str | None) -> float | None:
    return None if text is None else float(text)


def _input_field(position: int, field: InputField) -> dict[str, Any]:
    low = "-inf" if field.valid_min is None else repr(field.valid_min)
    high = "inf" if field.valid_max is None else repr(field.valid_max)
    return {
        "id": field.name,
        "name": field.name,
        "position": position,
        "positionalName": positional_name(position),
        "dataType": field.data_type,
        "opType": field.optype,
        "values": [f"[{low}, {high}]"],
        "valid_min": field.valid_min,
        "valid_max": field.valid_max,
        "invalidValueTreatment": field.invalid_value_treatment,
        "missingValueTreatment": field.missing_value_treatment or "asIs",
        "missingValueReplacement": _number(field.missing_value_replacement),
    }


def openscoring_schema(model: LoadedModel) -> dict[str, Any]:
    """Inputs in order (names, types, valid ranges, treatments), target and answer fields."""
    schema = model.schema
    return {
        "inputFields": [_input_field(i, f) for i, f in enumerate(schema.inputs)],
        "targetFields": [
            {
                "id": schema.target,
                "opType": "categorical",
                "values": list(model.classes),
            }
        ],
        "outputFields": [
            {"id": "pmml(prediction)", "dataType": "string"},
            *({"id": f"probability({c})", "dataType": "double"} for c in model.classes),
            {"id": "prediction", "dataType": "double"},
            {"id": "label", "dataType": "string"},
            {"id": "model_version", "dataType": "string"},
        ],
    }


def _version_entry(
    version: str, state: str, code: str = "OK", message: str = ""
) -> dict[str, Any]:
    return {
        "version": version,
        "state": state,
        "status": {"error_code": code, "error_message": message},
    }


def tf_serving_status(
    served: ServedModel, version: str | None = None
) -> dict[str, Any]:
    """TF Serving's ``model_version_status`` plus which model, evaluator and schema answer."""
    model = served.current
    entries = [_version_entry(model.version, "AVAILABLE")]
    if served.loading is not None:
        entries.append(_version_entry(served.loading, "LOADING"))
    if served.failure is not None:
        entries.append(
            _version_entry(
                served.failure.version, "END", "UNKNOWN", served.failure.reason
            )
        )
    if version is not None:
        entries = [entry for entry in entries if entry["version"] == version]
    return {
        "model_version_status": entries,
        "name": served.served_name,
        "model": model.identity.name,
        "version": model.version,
        "source": served.source.describe(),
        "pmml": str(model.identity.pmml_path),
        "evaluator": {
            "kind": model.evaluator.kind,
            "description": getattr(model.evaluator, "description", ""),
        },
        "schema": openscoring_schema(model),
    }


def v2_metadata(served: ServedModel) -> dict[str, Any]:
    """Open Inference Protocol model metadata: one 1-D tensor per PMML input."""
    model = served.current
    rows = -1
    return {
        "name": served.served_name,
        "versions": [model.version],
        "platform": "pmml",
        "inputs": [
            {
                "name": f.name,
                "datatype": _V2_DATATYPES.get(f.data_type, "FP64"),
                "shape": [rows],
            }
            for f in model.schema.inputs
        ],
        "outputs": [
            {"name": "label", "datatype": "BYTES", "shape": [rows]},
            *(
                {"name": f"probability({c})", "datatype": "FP64", "shape": [rows]}
                for c in model.classes
            ),
        ],
    }
