"""The parity gate: a PMML is saved only if it scores exactly like its pipeline.

The served model is the PMML, evaluated by a Java engine; the metrics were
measured on the scikit-learn pipeline. The gate scores every row of the
data set (the rows with a missing value included) with pypmml and with
scikit-learn and refuses the model unless each row gets the same label and
class probabilities within ``PROBABILITY_TOLERANCE``, so the report's
numbers are the served model's numbers.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn2pmml.pipeline import PMMLPipeline

from models.errors import ParityError
from models.pmml_schema import read_schema

__all__ = ["PROBABILITY_TOLERANCE", "ParityReport", "check_parity", "score_pmml"]


PROBABILITY_TOLERANCE = 1e-9

#: How many differing rows a refusal names (enough to debug, short enough to read).
_ROWS_SHOWN = 5


@dataclass(frozen=True)
class ParityReport:
    """What the gate checked, for the model card."""

    rows: int
    rows_with_missing_values: int
    max_probability_difference: float
    tolerance: float
    seconds: float


def score_pmml(pmml: bytes, X: pd.DataFrame) -> pd.DataFrame:
    """Score ``X`` with pypmml (the PMML4S engine in a JVM); one output column per field.

    The JVM gateway is left running: it is shared by the process and starting
    it again costs seconds.
    """
    from pypmml import Model

    result: pd.DataFrame = Model.fromBytes(pmml).predict(X)
    return result.reset_index(drop=True)


def _same_label(pmml_label: object, sklearn_label: object) -> bool:
    if pmml_label is None or (isinstance(pmml_label, float) and math.isnan(pmml_label)):
        return False
    try:
        return float(pmml_label) == float(sklearn_label)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(pmml_label) == str(sklearn_label)


def check_parity(pmml: bytes, pipeline: PMMLPipeline, X: pd.DataFrame) -> ParityReport:
    """Raise ``ParityError`` naming the first differing rows unless PMML == scikit-learn."""
    started = time.perf_counter()
    schema = read_schema(pmml)
    label_field = schema.label_field()
    probability_fields = schema.probability_fields()
    classes = [str(c) for c in pipeline.classes_]
    missing_outputs = [c for c in classes if c not in probability_fields]
    if label_field is None or missing_outputs:
        raise ParityError(
            "the PMML lacks output fields the server needs: "
            + ("a predicted label; " if label_field is None else "")
            + (f"probabilities of classes {missing_outputs}" if missing_outputs else "")
        )
    X = X.reset_index(drop=True)
    try:
        scored = score_pmml(pmml, X)
    except Exception as exc:  # pypmml raises py4j errors of many kinds
        raise ParityError(f"pypmml could not score the PMML: {exc}") from exc
    if len(scored) != len(X):
        raise ParityError(f"pypmml returned {len(scored)} rows for {len(X)} inputs")

    expected_labels = pipeline.predict(X)
    expected = pipeline.predict_proba(X)
    got = np.column_stack(
        [pd.to_numeric(scored[probability_fields[c]], errors="coerce") for c in classes]
    ).astype("float64")
    difference = np.abs(got - expected)
    difference[np.isnan(difference)] = np.inf
    worst_per_row = difference.max(axis=1)
    label_ok = np.array(
        [
            _same_label(g, e)
            for g, e in zip(scored[label_field], expected_labels, strict=True)
        ]
    )
    bad_rows = np.flatnonzero(~label_ok | (worst_per_row > PROBABILITY_TOLERANCE))
    if bad_rows.size:
        details = "; ".join(
            f"row {row}: PMML label {scored[label_field].iloc[row]!r} "
            f"p={[round(float(v), 12) for v in got[row]]}, scikit-learn label "
            f"{expected_labels[row]!r} p={[round(float(v), 12) for v in expected[row]]}"
            for row in bad_rows[:_ROWS_SHOWN]
        )
        raise ParityError(
            f"the PMML disagrees with scikit-learn on {bad_rows.size} of {len(X)} rows "
            f"(label, or a probability off by more than {PROBABILITY_TOLERANCE:g}); "
            f"first differing rows: {details}"
        )
    return ParityReport(
        rows=len(X),
        rows_with_missing_values=int(X.isna().any(axis=1).sum()),
        max_probability_difference=float(worst_per_row.max()) if len(X) else 0.0,
        tolerance=PROBABILITY_TOLERANCE,
        seconds=time.perf_counter() - started,
    )
