"""pypmml, the reference evaluator, for every model the fast evaluator does not reproduce.

pypmml runs PMML4S in a JVM inside this process and must not be called from
several threads, so every call (load and score) goes through one
single-thread executor per process: the event loop never waits for the JVM,
and the JVM never sees two callers. The JVM starts on first use only, so a
server whose models are all fast-evaluated never starts one.

Batches travel as one JSON document in pandas' "split" layout, written by
orjson: pypmml's DataFrame path goes through ``DataFrame.to_json``, which
rounds every number to 10 significant digits and so changes the answer near
a split threshold. A string or boolean input arrives as a code (see
:mod:`serving.features`) and is sent as the text it stands for; the code of
a value the document never mentions is sent as a text the document does
not mention either, which pypmml treats exactly as the original value.

Classification answers the predicted class and every class's probability
(output fields the document declares under other names, e.g.
``P (Adjusted=1)``, included); regression answers the predicted value. The
document's other output fields (entity ids, reason codes, ...) come back
as pypmml gives them.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from models.pmml_schema import PmmlSchema, qualifier
from serving.errors import ModelLoadError
from serving.evaluator import Evaluator, Scores
from serving.explanations import text, unavailable

__all__ = ["Answers", "ReferenceEvaluator", "answering_document", "reference_executor"]


#: Names of the output fields added to a document that does not declare them.
_LABEL_OUTPUT = "riskstream(label)"
_PROBABILITY_OUTPUT = "riskstream(probability({}))"

#: What an "other" code (a value the document never mentions) is sent to pypmml as.
_OTHER_VALUE = "riskstream(other value)"

_executor: ThreadPoolExecutor | None = None


def reference_executor() -> ThreadPoolExecutor:
    """The process's one pypmml thread."""
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pypmml")
    return _executor


@dataclass(frozen=True)
class Answers:
    """Which of pypmml's output columns hold what the server answers."""

    #: the predicted value (a class, or a regression's number)
    label: str
    #: class -> the output field holding its probability
    probabilities: dict[str, str]
    #: the document's other output fields, answered as they are
    extras: tuple[str, ...]


def answering_document(
    document: bytes, schema: PmmlSchema, classes: tuple[str, ...]
) -> tuple[str, Answers]:
    """The document text asking for the predicted value and every class probability.

    pypmml answers with the PMML's output fields only; a model that does not
    declare them gets them added to its top-level Output element. Output
    fields declared under other names (``P (Adjusted=1)``) are used as they
    are; the document's remaining output fields are answered as extras.
    """
    label = schema.label_field()
    declared = schema.probability_fields()
    probabilities = {c: declared[c] for c in classes if c in declared}
    extras = tuple(field.name for field in schema.other_outputs())
    missing = [c for c in classes if c not in probabilities]
    answers = Answers(label or _LABEL_OUTPUT, probabilities, extras)
    text = document.decode("utf-8")
    if label is not None and not missing:
        return text, answers
    root = ET.fromstring(document)
    tag = qualifier(root)
    _keep_prefixes(document)

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
        ET.SubElement(
            output,
            tag("OutputField"),
            name=_LABEL_OUTPUT,
            optype="categorical" if classes else "continuous",
            dataType="string" if classes else "double",
            feature="predictedValue",
        )
    for category in missing:
        probabilities[category] = _PROBABILITY_OUTPUT.format(category)
        ET.SubElement(
            output,
            tag("OutputField"),
            name=probabilities[category],
            optype="continuous",
            dataType="double",
            feature="probability",
            value=category,
        )
    return ET.tostring(root, encoding="unicode"), answers


def _keep_prefixes(document: bytes) -> None:
    """Make ElementTree write the document's namespace prefixes as the document does.

    Attribute values may name prefixed elements (sklearn2pmml's
    ``<FieldColumnPair column="data:input"/>`` names the InlineTable's
    ``<data:input>`` cells): renamed to ``ns0:input``, the table would no
    longer be found. ElementTree's prefix registry is global, which is safe
    here because every document is rewritten on the one pypmml thread.
    """
    for _, (prefix, uri) in ET.iterparse(io.BytesIO(document), events=("start-ns",)):
        with contextlib.suppress(
            ValueError
        ):  # "ns<N>" is ElementTree's own: it renames
            ET.register_namespace(prefix, uri)


def _load(text: str) -> Any:
    from pypmml import Model

    try:
        return Model.fromString(text)
    except Exception as exc:  # pypmml wraps every Java failure in its own types
        raise ModelLoadError(f"pypmml cannot load the PMML: {exc}") from exc


def _other_value(categories: tuple[str, ...]) -> str:
    """A text the document does not mention, standing for every such value."""
    value = _OTHER_VALUE
    while value in categories:
        value += "'"
    return value


class ReferenceEvaluator(Evaluator):
    """A PMML scored by pypmml on the process's pypmml thread."""

    kind = "pypmml"

    def __init__(
        self,
        model: Any,
        schema: PmmlSchema,
        classes: tuple[str, ...],
        answers: Answers,
    ) -> None:
        self._model = model
        self.classes = classes
        self.description = f"pypmml ({schema.model_element})"
        self._unexplained = text(
            unavailable(
                f"explanations are not available for a {schema.model_element} "
                "scored by pypmml: only the fast evaluator's trees, tree "
                "ensembles and regressions are explained"
            )
        )
        self._regression = schema.function_name == "regression"
        self._columns = schema.input_names
        self._answers = answers
        self._class_index = {c: i for i, c in enumerate(self.classes)}
        #: (column, the texts its codes stand for, "other" last) per non-numeric input
        self._decoded = [
            (i, (*f.categories, _other_value(f.categories)))
            for i, f in enumerate(schema.inputs)
            if not f.numeric
        ]

    @classmethod
    def load(cls, document: bytes, schema: PmmlSchema) -> ReferenceEvaluator:
        """Load ``document`` into pypmml; call it on :func:`reference_executor`'s thread.

        A classification's classes are the target's declared values; a
        target that declares none takes pypmml's (which reads them from the
        model: score distributions, regression tables, ...), at the cost of
        a second load with their probabilities asked for.
        """
        classes = (
            () if schema.function_name == "regression" else tuple(schema.target_values)
        )
        text, answers = answering_document(document, schema, classes)
        model = _load(text)
        if schema.function_name != "regression" and not classes:
            classes = tuple(str(c) for c in (model.classes or ()))
            if classes:
                text, answers = answering_document(document, schema, classes)
                model = _load(text)
        if schema.function_name != "regression" and not classes:
            raise ModelLoadError(
                f"the PMML's {schema.function_name or 'unnamed'} model declares no "
                "target classes and pypmml finds none: only classification and "
                "regression models are served"
            )
        return cls(model, schema, classes, answers)

    async def evaluate(self, values: np.ndarray, explain: bool = False) -> Scores:
        loop = asyncio.get_running_loop()
        scores = await loop.run_in_executor(reference_executor(), self.score, values)
        if explain:  # pypmml says what it scored, never why: say so, per row
            scores.explanations = [self._unexplained] * values.shape[0]
        return scores

    def _request(self, values: np.ndarray) -> bytes:
        """The batch as pandas' "split" JSON, code columns as the texts they stand for."""
        data: Any = values
        if self._decoded:
            data = values.tolist()
            for row in data:
                for column, texts in self._decoded:
                    code = row[column]
                    row[column] = None if math.isnan(code) else texts[int(code)]
        return orjson.dumps(
            {"columns": self._columns, "data": data},
            option=orjson.OPT_SERIALIZE_NUMPY,
        )

    def score(self, values: np.ndarray) -> Scores:
        """Score synchronously; call it on :func:`reference_executor`'s thread."""
        request = self._request(values)
        answer = orjson.loads(self._model.predict(request.decode("utf-8")))
        columns: list[str] = answer["columns"]
        rows: list[list[Any]] = answer["data"]
        label_at = columns.index(self._answers.label)
        outputs = {
            name: [row[at] for row in rows]
            for name, at in ((n, columns.index(n)) for n in self._answers.extras)
        }
        count = len(rows)
        no_result = np.zeros(count, dtype=bool)
        if self._regression:
            predicted = np.full(count, np.nan)
            for i, row in enumerate(rows):
                value = row[label_at]
                if isinstance(value, int | float) and not isinstance(value, bool):
                    predicted[i] = value
            no_result = np.isnan(predicted)
            return Scores.regression(
                predicted, no_result if no_result.any() else None, outputs
            )
        probability_at = [
            columns.index(self._answers.probabilities[c]) for c in self.classes
        ]
        labels = np.zeros(count, dtype=np.intp)
        probabilities = np.full((count, len(self.classes)), np.nan)
        for i, row in enumerate(rows):
            label = self._label_index(row[label_at])
            if label is None:
                no_result[i] = True
                continue
            labels[i] = label
            probabilities[i] = [
                math.nan if row[j] is None else row[j] for j in probability_at
            ]
        return Scores(
            labels,
            probabilities,
            no_result if no_result.any() else None,
            outputs=outputs,
        )

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
