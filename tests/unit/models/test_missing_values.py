"""A missing input is handled inside the PMML exactly as scikit-learn handled it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn2pmml.pipeline import PMMLPipeline

from models.dataset import ORIGINAL_FEATURES, Dataset
from models.parity import score_pmml
from models.pmml_schema import read_schema


def test_the_16_rows_without_bare_nuclei_score_the_same(
    pmml: bytes, pipeline: PMMLPipeline, original: Dataset
) -> None:
    rows = original.X[original.X["bare_nuclei"].isna()]
    assert len(rows) == 16
    scored = score_pmml(pmml, rows)
    np.testing.assert_allclose(
        scored[["probability(0)", "probability(1)"]].to_numpy(),
        pipeline.predict_proba(rows),
        rtol=0,
        atol=1e-9,
    )
    assert list(scored["label"]) == list(pipeline.predict(rows))


@pytest.mark.parametrize("feature", ORIGINAL_FEATURES)
def test_any_missing_input_is_replaced_by_the_training_median_inside_the_pmml(
    feature: str, pmml: bytes, pipeline: PMMLPipeline, original: Dataset
) -> None:
    complete = original.X.dropna().iloc[:40].reset_index(drop=True)
    with_gap = complete.copy()
    with_gap[feature] = np.nan
    median = float(original.X[feature].median())
    with_median = complete.copy()
    with_median[feature] = median

    declared = {field.name: field for field in read_schema(pmml).inputs}[feature]
    replacement = declared.missing_value_replacement
    assert replacement is not None
    assert float(replacement) == median

    pmml_gap = score_pmml(pmml, with_gap)[
        ["probability(0)", "probability(1)"]
    ].to_numpy()
    np.testing.assert_allclose(
        pmml_gap, pipeline.predict_proba(with_gap), rtol=0, atol=1e-9
    )
    np.testing.assert_allclose(
        pmml_gap, pipeline.predict_proba(with_median), rtol=0, atol=1e-9
    )


def test_a_field_absent_from_the_record_counts_as_missing(pmml: bytes) -> None:
    from pypmml import Model

    model = Model.fromBytes(pmml)
    record = {name: 1.0 for name in ORIGINAL_FEATURES}
    del record["uniformity_of_cell_size"]
    with_median = dict(record, uniformity_of_cell_size=1.0)  # the training median
    assert model.predict(record) == model.predict(with_median)


def test_out_of_range_value_is_invalid_not_scored(pmml: bytes) -> None:
    """returnInvalid: the PMML yields no probabilities, so the server must reject it."""
    scored = score_pmml(pmml, pd.DataFrame([{name: 0.0 for name in ORIGINAL_FEATURES}]))
    assert scored[["probability(0)", "probability(1)"]].isna().all(axis=None)
