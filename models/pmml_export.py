"""Pipeline -> PMML bytes, with the complete input schema serving relies on.

sklearn2pmml (JPMML-SkLearn) prunes every input the model does not use
(by design, see jpmml/sklearn2pmml#314) and omits attributes equal to the
PMML default. But the stream takes its record schema from the PMML, so the
document must declare *all* inputs, in data-set order, each with its valid
interval (numeric) or valid values (categorical) and an explicit missing-
and invalid-value treatment, and it must
answer with a predicted label besides the class probabilities. This module
restores that after conversion; the parity gate then proves the result
still scores like scikit-learn.
"""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from sklearn2pmml import sklearn2pmml
from sklearn2pmml.decoration import Domain
from sklearn2pmml.pipeline import PMMLPipeline

from models.dataset import Dataset, Feature
from models.errors import ExportError
from models.pmml_schema import MODEL_ELEMENTS
from models.training import DOMAINS_STEP, domain_of

__all__ = ["LABEL_OUTPUT", "complete_schema", "export_pmml"]

logger = logging.getLogger(__name__)

#: Name of the output field holding the predicted class (like the reference's "label").
LABEL_OUTPUT = "label"

#: sklearn2pmml's treatment names -> PMML's attribute values.
_PMML_TREATMENT = {
    "as_is": "asIs",
    "as_mean": "asMean",
    "as_median": "asMedian",
    "as_mode": "asMode",
    "as_value": "asValue",
    "as_missing": "asMissing",
    "return_invalid": "returnInvalid",
}


def _domains(pipeline: PMMLPipeline) -> dict[str, Domain]:
    """Input name -> its fitted domain decorator (the source of the declared treatments)."""
    columns = pipeline.named_steps[DOMAINS_STEP]
    return {
        name: domain_of(transformer)
        for name, transformer, _ in columns.transformers_
        if name != "remainder"
    }


def _convert(pipeline: PMMLPipeline) -> bytes:
    """Run JPMML-SkLearn (a Java process), keeping its chatter out of the user's terminal."""
    chatter = io.StringIO()
    with tempfile.TemporaryDirectory(prefix="riskstream-pmml-") as tmp:
        target = Path(tmp) / "model.pmml"
        try:
            with (
                contextlib.redirect_stdout(chatter),
                contextlib.redirect_stderr(chatter),
            ):
                sklearn2pmml(pipeline, str(target))
        except (RuntimeError, OSError, TypeError) as exc:
            raise ExportError(
                f"sklearn2pmml could not convert the pipeline: {exc}\n{chatter.getvalue()}"
            ) from exc
        logger.debug("sklearn2pmml said: %s", chatter.getvalue().strip())
        return target.read_bytes()


def _number(value: float) -> str:
    return repr(float(value))


def _replacement(feature: Feature, value: float | str) -> str:
    """A missing-value replacement as the MiningField writes it."""
    return str(value) if feature.categorical else _number(float(value))


def complete_schema(pmml: bytes, dataset: Dataset, pipeline: PMMLPipeline) -> bytes:
    """Re-declare pruned inputs, make treatments explicit, add the label output."""
    root = ET.fromstring(pmml)
    ns = root.tag[1:].split("}", 1)[0] if root.tag.startswith("{") else ""
    ET.register_namespace("", ns)

    def q(tag: str) -> str:
        return f"{{{ns}}}{tag}" if ns else tag

    domains = _domains(pipeline)
    input_names = dataset.feature_names
    dictionary = root.find(q("DataDictionary"))
    model = next(
        (el for el in root if el.tag in {q(name) for name in MODEL_ELEMENTS}), None
    )
    if dictionary is None or model is None:
        raise ExportError(
            "sklearn2pmml wrote a PMML without DataDictionary or model element"
        )
    mining_schema = model.find(q("MiningSchema"))
    if mining_schema is None:
        raise ExportError("sklearn2pmml wrote a model without MiningSchema")

    data_fields = {
        field.get("name"): field for field in dictionary.findall(q("DataField"))
    }
    features = {feature.name: feature for feature in dataset.features}
    numeric_types = {
        data_fields[n].get("dataType", "double")
        for n in input_names
        if n in data_fields and not features[n].categorical
    }
    numeric_type = numeric_types.pop() if len(numeric_types) == 1 else "double"
    for name in input_names:
        feature = features[name]
        field = data_fields.get(name)
        if field is None:
            field = ET.Element(
                q("DataField"),
                name=name,
                optype="categorical" if feature.categorical else "continuous",
                dataType="string" if feature.categorical else numeric_type,
            )
            data_fields[name] = field
        if feature.categorical:
            if field.find(q("Value")) is None:
                for value in feature.values:
                    ET.SubElement(field, q("Value"), value=value)
        elif (
            field.find(q("Interval")) is None
            and feature.valid_min is not None
            and feature.valid_max is not None
        ):
            ET.SubElement(
                field,
                q("Interval"),
                closure="closedClosed",
                leftMargin=_number(feature.valid_min),
                rightMargin=_number(feature.valid_max),
            )
    others = [
        f
        for f in dictionary.findall(q("DataField"))
        if f.get("name") not in input_names
    ]
    for field in dictionary.findall(q("DataField")):
        dictionary.remove(field)
    position = 0
    for position, field in enumerate([*others, *(data_fields[n] for n in input_names)]):
        dictionary.insert(position, field)
    if dictionary.get("numberOfFields") is not None:
        dictionary.set("numberOfFields", str(position + 1))

    mining_fields = {f.get("name"): f for f in mining_schema.findall(q("MiningField"))}
    for name in input_names:
        domain = domains[name]
        field = mining_fields.get(name)
        if field is None:
            field = ET.Element(q("MiningField"), name=name)
            mining_fields[name] = field
        if field.get("missingValueReplacement") is None:
            field.set(
                "missingValueReplacement",
                _replacement(features[name], domain.missing_value_replacement),
            )
            field.set(
                "missingValueTreatment", _PMML_TREATMENT[domain.missing_value_treatment]
            )
        field.set(
            "invalidValueTreatment", _PMML_TREATMENT[domain.invalid_value_treatment]
        )
    other_mining = [
        f
        for f in mining_schema.findall(q("MiningField"))
        if f.get("name") not in input_names
    ]
    for field in mining_schema.findall(q("MiningField")):
        mining_schema.remove(field)
    for position, field in enumerate(
        [*other_mining, *(mining_fields[n] for n in input_names)]
    ):
        mining_schema.insert(position, field)

    _add_label_output(model, mining_schema, data_fields, q)
    ET.indent(root, space="\t")
    return ET.tostring(root, encoding="UTF-8", xml_declaration=True)


def _add_label_output(
    model: ET.Element,
    mining_schema: ET.Element,
    data_fields: dict[str | None, ET.Element],
    q: Callable[[str], str],
) -> None:
    output = model.find(q("Output"))
    if output is None:
        output = ET.Element(q("Output"))
        model.insert(list(model).index(mining_schema) + 1, output)
    if any(
        f.get("feature") == "predictedValue" for f in output.findall(q("OutputField"))
    ):
        return
    target = next(
        (
            f.get("name")
            for f in mining_schema.findall(q("MiningField"))
            if f.get("usageType") in {"target", "predicted"}
        ),
        None,
    )
    target_field = data_fields.get(target)
    label = ET.Element(
        q("OutputField"),
        name=LABEL_OUTPUT,
        optype="categorical",
        dataType=target_field.get("dataType", "string")
        if target_field is not None
        else "string",
        feature="predictedValue",
    )
    output.insert(0, label)


def export_pmml(pipeline: PMMLPipeline, dataset: Dataset) -> bytes:
    """The PMML document of a fitted pipeline, with its complete input schema."""
    return complete_schema(_convert(pipeline), dataset, pipeline)
