"""pypmml, the reference evaluator, for models the fast evaluator does not reproduce.

pypmml runs PMML4S in a JVM inside this process and must not be called from
several threads, so every call (load and score) goes through one
single-thread executor per process: the event loop never waits for the JVM,
and the JVM never sees two callers. The JVM starts on first use only, so a
server whose models are all fast-evaluated never starts one.

Batches travel as one JSON document in pandas' "split" layout, written by
orjson: pypmml's DataFrame path goes through ``DataFrame.to_json``, which
rounds every number to 10 significant digits and so changes the answer near
a split threshold.
"""

from __future__ import annotations

import asyncio
import logging
import math
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import orjson

from models.pmml_schema import PmmlSchema
from serving.errors import ModelLoadError
from serving.evaluator import Evaluator, Scores

__all__ = ["ReferenceEvaluator", "reference_executor"]

logger = logging.getLogger(__name__)

_LABEL_OUTPUT = "riskstream(label)"

_executor: ThreadPoolExecutor | None = None


def reference_executor() -> ThreadPoolExecutor:
    """The process's one pypmml thread."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pypmml")
    return _executor


def _with_answers(
    document: bytes, schema: PmmlSchema
) -> tuple[str, str, dict[str, str]]:
    """The document text asking for a label and every class probability.

    pypmml answers with the PMML's output fields only; a model that does not
    declare them gets them added to its top-level Output element.
    """
    label = schema.label_field()
    probabilities = schema.probability_fields()
    missing = [c for c in schema.target_values if c not in probabilities]
    text = document.decode("utf-8")
    if label is not None and not missing:
        return text, label, probabilities
    root = ET.fromstring(document)
    namespace = root.tag[1:].partition("}")[0] if root.tag.startswith("{") else ""
    if namespace:
        ET.register_namespace("", namespace)

    def tag(name: str) -> str:
        return f"{{{namespace}}}{name}" if namespace else name

    model = next(child for child in root if child.tag.endswith(schema.model_element))
    output = model.find(tag("Output"))
    if output is None:
        output = ET.Element(tag("Output"))
        mining_schema = model.find(tag("MiningSchema"))
        model.insert(
            list(model).index(mining_schema) + 1 if mining_schema is not None else 0,
            output,
        )
    if label is None:
        label = _LABEL_OUTPUT
        ET.SubElement(
            output,
            tag("OutputField"),
            name=label,
            optype="categorical",
            dataType="string",
            feature="predictedValue",
        )
    for category in missing:
        probabilities[category] = f"riskstream(probability({category}))"
        ET.SubElement(
            output,
            tag("OutputField"),
            name=probabilities[category],
            optype="continuous",
            dataType="double",
            feature="probability",
            value=category,
        )
    return ET.tostring(root, encoding="unicode"), label, probabilities


class ReferenceEvaluator(Evaluator):
    """A PMML scored by pypmml on the process's pypmml thread."""

    kind = "pypmml"

    def __init__(
        self, model: Any, schema: PmmlSchema, label: str, probabilities: dict[str, str]
    ) -> None:
        self._model = model
        self.classes = schema.target_values
        self.description = f"pypmml ({schema.model_element})"
        self._columns = schema.input_names
        self._label = label
        self._probability_names = [probabilities[c] for c in self.classes]
        self._class_index = {c: i for i, c in enumerate(self.classes)}

    @classmethod
    def load(cls, document: bytes, schema: PmmlSchema) -> ReferenceEvaluator:
        """Load ``document`` into pypmml; call it on :func:`reference_executor`'s thread."""
        from pypmml import Model

        text, label, probabilities = _with_answers(document, schema)
        try:
            model = Model.fromString(text)
        except Exception as exc:  # pypmml wraps every Java failure in its own types
            raise ModelLoadError(f"pypmml cannot load the PMML: {exc}") from exc
        return cls(model, schema, label, probabilities)

    async def evaluate(self, values: np.ndarray) -> Scores:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(reference_executor(), self.score, values)

    def score(self, values: np.ndarray) -> Scores:
        """Score synchronously; call it on :func:`reference_executor`'s thread."""
        request = orjson.dumps(
            {"columns": self._columns, "data": values},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )
        answer = orjson.loads(self._model.predict(request.decode("utf-8")))
        columns: list[str] = answer["columns"]
        rows: list[list[Any]] = answer["data"]
        label_at = columns.index(self._label)
        probability_at = [columns.index(name) for name in self._probability_names]
        count = len(rows)
        labels = np.zeros(count, dtype=np.intp)
        probabilities = np.full((count, len(self.classes)), np.nan)
        no_result = np.zeros(count, dtype=bool)
        for i, row in enumerate(rows):
            label = self._label_index(row[label_at])
            cells = [row[j] for j in probability_at]
            if label is None or any(c is None or math.isnan(c) for c in cells):
                no_result[i] = True
                continue
            labels[i] = label
            probabilities[i] = cells
        return Scores(labels, probabilities, no_result if no_result.any() else None)

    def _label_index(self, value: Any) -> int | None:
        """Index of pypmml's label among the classes (it answers 1 for the class "1")."""
        if value is None:
            return None
        index = self._class_index.get(str(value))
        if index is None and isinstance(value, int | float):
            for position, category in enumerate(self.classes):
                try:
                    if float(category) == float(value):
                        return position
                except ValueError:
                    continue
        return index
