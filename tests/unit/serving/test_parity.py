"""The fast evaluator answers exactly as pypmml, the reference evaluator.

For every model `riskstream train` makes, on every row of its data set and
on 100,000 random rows weighted towards the hard cases: values on, just
above and just below every split threshold (also at float32 rounding
distance, where scikit-learn's float32 trees would differ from pypmml's
float64 comparisons), the valid interval's margins, values outside it,
and missing values. pypmml sees the raw rows and applies the PMML's own
missing- and invalid-value treatment; our encoder must reach the same
decisions: a row pypmml returns no prediction for is a row we reject.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from models.dataset import load_dataset
from models.pmml_schema import PmmlSchema, read_schema
from models.repository import ModelRepository
from serving.fast_evaluator import build_fast_evaluator
from serving.features import FeatureEncoder
from serving.reference_evaluator import ReferenceEvaluator

from .conftest import MODEL_NAMES

RANDOM_ROWS = 100_000


def split_values(document: bytes, field: str) -> list[float]:
    pattern = (
        rb'<SimplePredicate field="'
        + re.escape(field.encode())
        + rb'" operator="\w+" value="([^"]+)"'
    )
    return sorted({float(v) for v in re.findall(pattern, document)})


def hard_cases(document: bytes, schema: PmmlSchema, rows: int, seed: int) -> np.ndarray:
    """Random rows, each cell drawn from the cases where evaluators tend to differ."""
    rng = np.random.default_rng(seed)
    columns = []
    for field in schema.inputs:
        low, high = field.valid_min, field.valid_max
        assert low is not None and high is not None
        splits = np.array(split_values(document, field.name))
        near_splits = np.concatenate(
            [
                splits,
                np.nextafter(splits, np.inf),
                np.nextafter(splits, -np.inf),
                splits.astype(np.float32).astype(np.float64),
                np.nextafter(splits.astype(np.float32), np.float32(np.inf)).astype(
                    np.float64
                ),
                np.nextafter(splits.astype(np.float32), np.float32(-np.inf)).astype(
                    np.float64
                ),
            ]
        )
        margins = np.array(
            [low, high, np.nextafter(low, np.inf), np.nextafter(high, -np.inf)]
        )
        outside = np.array(
            [np.nextafter(low, -np.inf), np.nextafter(high, np.inf), low - 1, high * 2]
        )
        kind = rng.random(rows)
        column = low + rng.random(rows) * (high - low)
        short = np.round(column, 1)  # the data sets hold short decimals (scores 1..10)
        column = np.where(kind < 0.2, short, column)
        if near_splits.size:
            column = np.where(
                (kind >= 0.2) & (kind < 0.5), rng.choice(near_splits, rows), column
            )
        column = np.where(
            (kind >= 0.5) & (kind < 0.58), rng.choice(margins, rows), column
        )
        column = np.where(
            (kind >= 0.58) & (kind < 0.6), rng.choice(outside, rows), column
        )
        column = np.where((kind >= 0.6) & (kind < 0.68), np.nan, column)
        columns.append(column)
    return np.column_stack(columns)


def data_set_rows(
    repository: ModelRepository, name: str, schema: PmmlSchema
) -> np.ndarray:
    dataset = load_dataset(repository.current(name).card["data"]["dataset"])
    return dataset.X[schema.input_names].to_numpy(dtype=float)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_fast_evaluator_agrees_with_pypmml(
    name: str, pmml_paths: dict[str, Path], repository: ModelRepository
) -> None:
    document = pmml_paths[name].read_bytes()
    schema = read_schema(document)
    fast = build_fast_evaluator(
        document, schema
    )  # every trained model is fast-evaluated
    reference = ReferenceEvaluator.load(document, schema)
    encoder = FeatureEncoder(schema)
    known = data_set_rows(repository, name, schema)
    raw = np.vstack([known, hard_cases(document, schema, RANDOM_ROWS, seed=len(name))])
    assert (
        np.isnan(raw).any() or name == "breast-cancer-diagnostic"
    )  # missing values tried

    instances = [
        {
            field: value
            for field, value in zip(schema.input_names, row)
            if not math.isnan(value)
        }
        for row in raw.tolist()
    ]
    batch = encoder.encode(instances)
    valid = np.ones(len(raw), dtype=bool)
    valid[list(batch.errors)] = False
    ours = fast.score(batch.values[valid])
    theirs = reference.score(raw)

    refused = (
        theirs.no_result if theirs.no_result is not None else np.zeros(len(raw), bool)
    )
    assert np.array_equal(~valid, refused), (
        "we reject exactly the rows pypmml cannot score"
    )
    assert valid[: len(known)].all(), "every data-set row is valid"
    assert (ours.labels == theirs.labels[valid]).all()
    difference = np.abs(ours.probabilities - theirs.probabilities[valid])
    assert difference.max() <= 1e-9, (
        f"largest probability difference {difference.max()}"
    )


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_a_record_scores_the_same_alone_and_in_any_batch(
    name: str, pmml_paths: dict[str, Path], repository: ModelRepository
) -> None:
    """Bit for bit: a patient's probability must not depend on who else was in the request."""
    document = pmml_paths[name].read_bytes()
    schema = read_schema(document)
    fast = build_fast_evaluator(document, schema)
    rows = data_set_rows(repository, name, schema)[:64]
    together = fast.score(rows).probabilities
    for size in (1, 2, 3, 7, 64):
        for start in range(0, len(rows), size):
            part = fast.score(rows[start : start + size]).probabilities
            assert np.array_equal(
                part, together[start : start + size], equal_nan=True
            ), f"rows {start}..{start + size - 1} score otherwise in a batch of {size}"
