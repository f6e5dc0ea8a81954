"""The fast evaluator answers exactly as pypmml on models with categorical inputs.

Every PMML under tests/fixtures/pmml/fast/ (sklearn2pmml pipelines made by
its generate.py, and hand-written documents for the predicates and
missing-value strategies sklearn2pmml does not write) is scored on 100,000
random rows twice: by pypmml fed the real values (strings for the
categorical inputs, None for a missing value) and by the fast evaluator fed
the coded matrix of the encoding contract (the index in
``field.categories``, ``len(categories)`` for an unseen value, NaN for
missing, the replacement's code where the MiningField has one). Rows mix
declared values, unseen values, missing values, and numbers on and beside
every split value. The same rows get no prediction, labels are equal and
probabilities (or predicted values) agree within 1e-9.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from models.errors import ExportError
from models.pmml_schema import InputField, PmmlSchema, read_schema
from serving.errors import UnsupportedModel
from serving.fast_evaluator import build_fast_evaluator
from serving.reference_evaluator import answering_document

FIXTURES = Path(__file__).parents[2] / "fixtures" / "pmml" / "fast"
DOCUMENTS = sorted(FIXTURES.glob("*.pmml"))
RANDOM_ROWS = 100_000
UNSEEN = ["unseen", "R", "Oslo "]  # never declared: the encoder's "other" code


def split_values(document: bytes, field: str) -> np.ndarray:
    pattern = (
        rb'field="' + re.escape(field.encode()) + rb'" operator="\w+" value="([^"]+)"'
    )
    return np.array(sorted({float(v) for v in re.findall(pattern, document)}))


def random_values(
    document: bytes, field: InputField, rows: int, rng: np.random.Generator
) -> list[Any]:
    """One input's values as a client sends them: numbers or strings, None = missing."""
    kind = rng.random(rows)
    if not field.numeric:
        values = rng.choice(np.array(field.values, dtype=object), rows)
        values[kind < 0.1] = rng.choice(np.array(UNSEEN, dtype=object), rows)[
            kind < 0.1
        ]
        values[kind < 0.05] = None
        return list(values)
    splits = split_values(document, field.name)
    low = field.valid_min if field.valid_min is not None else -3.0
    high = field.valid_max if field.valid_max is not None else 3.0
    column = np.round(
        low + rng.random(rows) * (high - low) * 1.2 - 0.1 * (high - low), 3
    )
    if splits.size:
        near = np.concatenate(
            [splits, np.nextafter(splits, np.inf), np.nextafter(splits, -np.inf)]
        )
        column = np.where(kind < 0.4, rng.choice(near, rows), column)
    return [None if k >= 0.95 else float(v) for k, v in zip(kind, column, strict=True)]


def coded(field: InputField, values: list[Any]) -> np.ndarray:
    """The encoding contract: what the encoder hands the evaluator for ``values``."""
    replacement = field.missing_value_replacement
    if field.numeric:
        missing = np.nan if replacement is None else float(replacement)
        return np.array([missing if v is None else v for v in values], dtype=float)
    codes: dict[Any, float] = {v: float(i) for i, v in enumerate(field.categories)}
    codes[None] = np.nan if replacement is None else codes[replacement]
    other = float(len(field.categories))
    return np.array([codes.get(v, other) for v in values])


def pypmml_model(
    document: bytes, schema: PmmlSchema
) -> tuple[Any, str, dict[str, str]]:
    """pypmml over the document, asked for a label and every probability (as the server asks)."""
    from pypmml import Model

    text, answers = answering_document(document, schema, schema.target_values)
    return Model.fromString(text), answers.label, answers.probabilities


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.stem)
def test_fast_evaluator_agrees_with_pypmml_on_categorical_models(path: Path) -> None:
    document = path.read_bytes()
    schema = read_schema(document)
    fast = build_fast_evaluator(document, schema)
    rng = np.random.default_rng(len(path.stem))
    raw = [random_values(document, field, RANDOM_ROWS, rng) for field in schema.inputs]
    coded_rows = np.column_stack(
        [coded(field, values) for field, values in zip(schema.inputs, raw, strict=True)]
    )
    assert np.isnan(coded_rows).any(), "missing values are tried"
    for i, field in enumerate(schema.inputs):
        if not field.numeric:
            assert (coded_rows[:, i] == len(field.categories)).any(), (
                "unseen values are tried"
            )

    ours = fast.score(coded_rows)
    model, label, probabilities = pypmml_model(document, schema)
    answer = orjson.loads(
        model.predict(
            orjson.dumps(
                {
                    "columns": schema.input_names,
                    "data": [list(row) for row in zip(*raw)],
                }
            ).decode()
        )
    )
    columns, data = answer["columns"], answer["data"]
    their_labels = [row[columns.index(label)] for row in data]
    # pypmml answers a regression it cannot score with "NaN", a classification with null
    theirs_missing = np.array([value in (None, "NaN") for value in their_labels])
    ours_missing = (
        ours.no_result if ours.no_result is not None else np.zeros(RANDOM_ROWS, bool)
    )
    assert np.array_equal(ours_missing, theirs_missing), (
        "the same rows get no prediction"
    )
    scored = ~ours_missing
    assert scored.mean() > 0.2, "many rows are scored"

    if fast.regression:
        assert ours.values is not None
        theirs = np.array(
            [float(v) for v, s in zip(their_labels, scored, strict=True) if s]
        )
        difference = np.abs(ours.values[scored] - theirs)
    else:
        mine = [fast.classes[i] for i in ours.labels[scored]]
        expected = [str(v) for v, s in zip(their_labels, scored, strict=True) if s]
        bad = [i for i, (a, b) in enumerate(zip(mine, expected)) if a != b]
        assert not bad, (bad[:3], ours.probabilities[scored][bad[:3]])
        at = [columns.index(probabilities[c]) for c in fast.classes]
        theirs = np.array([[row[j] for j in at] for row in data])[scored].astype(float)
        difference = np.abs(ours.probabilities[scored] - theirs)
    assert difference.max() <= 1e-9, f"largest difference {difference.max()}"


# --- what the fast evaluator leaves to pypmml ----------------------------------------
def fixture(name: str) -> str:
    return (FIXTURES / f"{name}.pmml").read_text()


UNSUPPORTED = {
    "xor (pypmml answers false for one true operand)": (
        "compound-sets-tree",
        'booleanOperator="and">\n            <SimplePredicate field="x"',
        'booleanOperator="xor">\n            <SimplePredicate field="x"',
    ),
    "weightedConfidence": (
        "compound-sets-tree",
        'classification" missingValueStrategy="lastPrediction"',
        'classification" missingValueStrategy="weightedConfidence"',
    ),
    "an order comparison of a string": (
        "multisplit-none-tree",
        'field="city" operator="notEqual"',
        'field="city" operator="lessThan"',
    ),
    "a comparison with an undeclared value": (
        "multisplit-none-tree",
        'operator="notEqual" value="Oslo"',
        'operator="notEqual" value="Trondheim"',
    ),
    "a categorical input without declared values": (
        "default-child-regression-tree",
        '<Value value="oral"/><Value value="iv"/><Value value="im"/>',
        "",
    ),
    "a surrogate with a compound alternative": (
        "compound-sets-tree",
        '<SimplePredicate field="x" operator="lessOrEqual" value="-0.5"/>',
        (
            '<CompoundPredicate booleanOperator="and"><True/>'
            '<SimplePredicate field="x" operator="lessOrEqual" value="-0.5"/>'
            "</CompoundPredicate>"
        ),
    ),
    "a weighted average": (
        "sk-forest-onehot",
        'multipleModelMethod="average"',
        'multipleModelMethod="weightedAverage"',
    ),
    "a Target with bounds": (
        "sk-gbm-onehot",
        "<Target rescaleConstant=",
        '<Target min="-1" rescaleConstant=',
    ),
    "a regression with an exponent": (
        "sk-linear-onehot",
        '<NumericPredictor name="num0"',
        '<NumericPredictor exponent="2" name="num0"',
    ),
    "a probit classification": (
        "sk-logistic-onehot",
        'normalizationMethod="logit"',
        'normalizationMethod="probit"',
    ),
    "an unknown model element": (
        "sk-logistic-onehot",
        "RegressionModel ",
        "NaiveBayesModel ",
    ),
    "MapValues over two columns": (
        "sk-tree-ordinal",
        '<FieldColumnPair field="color" column="data:input"/>',
        '<FieldColumnPair field="color" column="data:input"/><FieldColumnPair field="size" column="data:input"/>',
    ),
}


@pytest.mark.parametrize("case", list(UNSUPPORTED), ids=list(UNSUPPORTED))
def test_what_is_not_reproduced_exactly_is_refused(case: str) -> None:
    name, old, new = UNSUPPORTED[case]
    text = fixture(name)
    assert old in text
    document = (
        text.replace(old, new, 1)
        .replace(
            "</RegressionModel>",
            "</NaiveBayesModel>" if "Naive" in new else "</RegressionModel>",
        )
        .encode()
    )
    with pytest.raises(UnsupportedModel):
        build_fast_evaluator(document, read_schema(document))


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda path: path.stem)
def test_a_damaged_document_is_refused_as_unsupported_never_crashes(path: Path) -> None:
    # remove or rename elements and attributes at random: compiling either
    # succeeds or says UnsupportedModel, whatever the damage
    original = path.read_text()
    generator = random.Random(path.stem)
    for _ in range(40):
        text = original
        for _ in range(3):
            tags = re.findall(r"<(\w+)[ />]", text)
            tag = generator.choice(tags)
            choice = generator.random()
            if choice < 0.4:
                text = re.sub(
                    rf'<{tag}\b([^>]*?) \w+="[^"]*"', rf"<{tag}\1", text, count=1
                )
            elif choice < 0.7:
                text = re.sub(rf"<{tag}\b[^>]*/>", "", text, count=1)
            else:
                text = text.replace(f"<{tag} ", f"<{tag}X ", 1)
        try:
            schema = read_schema(text.encode())
        except (ExportError, ValueError):  # the damage breaks the schema already
            continue
        try:
            build_fast_evaluator(text.encode(), schema)
        except UnsupportedModel:
            pass
