"""What the server says about its models: TF Serving status, Openscoring schema, KServe metadata.

All of it comes from the loaded PMML and is built through the wire types of
:mod:`models.protocol`, so a client (the stream worker reads the inputs'
names, order and types from ``GET /v1/models/{name}``) never hard-codes a
feature list and both sides agree on the document's shape.
"""

from __future__ import annotations

from typing import Any, Literal

from models.pmml_schema import InputField, OutputField
from models.protocol import (
    LABEL_KEY,
    PREDICTION_KEY,
    PREDICTION_TEXT_KEY,
    VERSION_KEY,
    EvaluatorInfo,
    InputFieldDoc,
    MetadataModelResponse,
    MetadataTensor,
    ModelSchema,
    ModelStatus,
    OutputFieldDoc,
    ShadowStatus,
    TargetFieldDoc,
    VersionStatus,
    probability_key,
)
from serving.features import positional_name
from serving.loader import ServedModel, ShadowState
from serving.model import LoadedModel

__all__ = ["openscoring_schema", "tf_serving_status", "v2_metadata", "v2_outputs"]


#: PMML dataType -> Open Inference Protocol tensor datatype.
_V2_DATATYPES = {
    "double": "FP64",
    "float": "FP32",
    "integer": "INT64",
    "string": "BYTES",
    "boolean": "BOOL",
}

#: An extra output field's PMML dataType -> the tensor datatype it is answered in
#: (numbers as doubles: pypmml gives every number as one).
_V2_OUTPUT_DATATYPES = {
    "double": "FP64",
    "float": "FP64",
    "real": "FP64",
    "integer": "INT64",
    "boolean": "BOOL",
}


def _declared_values(field: InputField) -> list[str]:
    """Openscoring's ``values``: the declared values, else a number's valid interval."""
    if field.values:
        return list(field.values)
    if field.data_type == "boolean":
        return ["false", "true"]
    if not field.numeric:
        return []  # a string input that declares no values takes any
    low = "-inf" if field.valid_min is None else repr(field.valid_min)
    high = "inf" if field.valid_max is None else repr(field.valid_max)
    return [f"[{low}, {high}]"]


def _replacement(field: InputField) -> float | str | None:
    text = field.missing_value_replacement
    if text is None or not field.numeric:
        return text
    return float(text)


def _input_field(position: int, field: InputField) -> InputFieldDoc:
    return InputFieldDoc(
        id=field.name,
        name=field.name,
        position=position,
        positionalName=positional_name(position),
        dataType=field.data_type,
        opType=field.optype,
        values=_declared_values(field),
        valid_min=field.valid_min,
        valid_max=field.valid_max,
        invalidValueTreatment=field.invalid_value_treatment,
        missingValueTreatment=field.missing_value_treatment or "asIs",
        missingValueReplacement=_replacement(field),
    )


def _numeric_classes(classes: tuple[str, ...]) -> bool:
    """Whether every class is a number (the answer's ``prediction`` is then a double)."""
    try:
        for category in classes:
            float(category)
    except ValueError:
        return False
    return True


def _extra_output(field: OutputField) -> OutputFieldDoc:
    return OutputFieldDoc(id=field.name, dataType=field.data_type or "string")


def openscoring_schema(model: LoadedModel) -> ModelSchema:
    """Inputs in order (names, types, valid values, treatments), target and answer keys."""
    schema = model.schema
    extras = [_extra_output(field) for field in schema.other_outputs()]
    version = OutputFieldDoc(id=VERSION_KEY, dataType="string")
    if model.regression:
        return ModelSchema(
            functionName="regression",
            inputFields=[_input_field(i, f) for i, f in enumerate(schema.inputs)],
            targetFields=[TargetFieldDoc(id=schema.target, opType="continuous")],
            outputFields=[
                OutputFieldDoc(id=PREDICTION_TEXT_KEY, dataType="double"),
                OutputFieldDoc(id=PREDICTION_KEY, dataType="double"),
                *extras,
                version,
            ],
        )
    return ModelSchema(
        functionName="classification",
        inputFields=[_input_field(i, f) for i, f in enumerate(schema.inputs)],
        targetFields=[
            TargetFieldDoc(
                id=schema.target, opType="categorical", values=list(model.classes)
            )
        ],
        outputFields=[
            OutputFieldDoc(id=PREDICTION_TEXT_KEY, dataType="string"),
            *(
                OutputFieldDoc(id=probability_key(c), dataType="double")
                for c in model.classes
            ),
            OutputFieldDoc(
                id=PREDICTION_KEY,
                dataType="double" if _numeric_classes(model.classes) else "string",
            ),
            OutputFieldDoc(id=LABEL_KEY, dataType="string"),
            *extras,
            version,
        ],
    )


def _version_entry(
    version: str, state: str, code: str = "OK", message: str = ""
) -> VersionStatus:
    return VersionStatus(
        version=version,
        state=state,
        status={"error_code": code, "error_message": message},
    )


def _shadow_status(state: ShadowState | None) -> ShadowStatus | None:
    """The shadow's part of the status: loaded, loading, or why it failed."""
    if state is None:
        return None
    state_name: Literal["AVAILABLE", "LOADING", "FAILED"] = "AVAILABLE"
    if state.failure is not None:
        state_name = "FAILED"
    elif state.loading:
        state_name = "LOADING"
    return ShadowStatus(
        version=state.version,
        state=state_name,
        reason=state.failure.reason if state.failure else "",
        scoring_failures=state.scoring_failures,
        last_scoring_error=state.last_scoring_error,
    )


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
        entries = [entry for entry in entries if entry.version == version]
    return ModelStatus(
        model_version_status=entries,
        name=served.served_name,
        model=model.identity.name,
        version=model.version,
        source=served.source.describe(),
        pmml=str(model.identity.pmml_path),
        evaluator=EvaluatorInfo(
            kind=model.evaluator.kind,
            description=getattr(model.evaluator, "description", ""),
        ),
        shadow=_shadow_status(served.shadow_state),
        schema=openscoring_schema(model),
    ).document()


def v2_outputs(model: LoadedModel) -> list[tuple[str, str]]:
    """(name, datatype) of every output tensor an inference answers, in order."""
    extras = [
        (field.name, _V2_OUTPUT_DATATYPES.get(field.data_type or "", "BYTES"))
        for field in model.schema.other_outputs()
    ]
    if model.regression:
        return [(PREDICTION_KEY, "FP64"), *extras]
    return [
        (LABEL_KEY, "BYTES"),
        *((probability_key(c), "FP64") for c in model.classes),
        *extras,
    ]


def v2_metadata(served: ServedModel) -> dict[str, Any]:
    """Open Inference Protocol model metadata: one 1-D tensor per PMML input."""
    model = served.current
    rows = -1
    return MetadataModelResponse(
        name=served.served_name,
        versions=[model.version],
        platform="pmml",
        inputs=[
            MetadataTensor(
                name=f.name,
                datatype=_V2_DATATYPES.get(f.data_type, "FP64"),
                shape=[rows],
            )
            for f in model.schema.inputs
        ],
        outputs=[
            MetadataTensor(name=name, datatype=datatype, shape=[rows])
            for name, datatype in v2_outputs(model)
        ],
    ).model_dump()
