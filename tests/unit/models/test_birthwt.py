"""birthwt trains end to end: string categories in the PMML, the gate fed the real words."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import numpy as np
import pandas as pd
import pytest

from models.dataset import BIRTHWT_INPUTS, Dataset
from models.parity import PROBABILITY_TOLERANCE, score_pmml
from models.pmml_schema import read_schema
from models.repository import ModelRepository
from models.training import model_columns
from models.workflow import TrainingResult

_NS = {"p": "http://www.dmg.org/PMML-4_4"}
_PROBABILITIES = ["probability(0)", "probability(1)"]


def _pmml(trained_birthwt: TrainingResult) -> bytes:
    return trained_birthwt.saved.pmml_path.read_bytes()


def test_saved_as_the_data_sets_model_and_made_current(
    trained_birthwt: TrainingResult,
) -> None:
    saved = trained_birthwt.saved
    assert saved.ref == "birthwt:1"
    assert ModelRepository(saved.path.parent.parent).current("birthwt") == saved
    files = {path.name for path in saved.path.iterdir()}
    assert {"model.pmml", "metrics.json", "report.html", "card.json"} <= files


def test_gate_scored_every_row_with_the_real_strings(
    trained_birthwt: TrainingResult, birthwt: Dataset
) -> None:
    assert trained_birthwt.parity.rows == 189
    assert trained_birthwt.parity.max_probability_difference <= PROBABILITY_TOLERANCE
    assert set(birthwt.X["race"]) == {"white", "black", "other"}  # what it was fed


def test_data_dictionary_carries_the_string_categories_as_values(
    trained_birthwt: TrainingResult,
) -> None:
    root = ET.fromstring(_pmml(trained_birthwt))
    fields = {
        field.get("name"): field
        for field in root.findall("p:DataDictionary/p:DataField", _NS)
    }
    for name, values in BIRTHWT_INPUTS.items():
        field = fields[name]
        declared = [v.get("value") for v in field.findall("p:Value", _NS)]
        if values:
            assert (field.get("optype"), field.get("dataType")) == (
                "categorical",
                "string",
            )
            assert declared == list(values)
            assert field.find("p:Interval", _NS) is None
        else:
            assert field.get("optype") == "continuous"
            assert declared == []
            assert field.find("p:Interval", _NS) is not None


def test_mining_schema_declares_each_inputs_treatments_in_data_set_order(
    trained_birthwt: TrainingResult, birthwt: Dataset
) -> None:
    schema = read_schema(_pmml(trained_birthwt))
    assert schema.input_names == list(BIRTHWT_INPUTS)
    inputs = {field.name: field for field in schema.inputs}
    assert inputs["race"].missing_value_treatment == "asMode"
    assert inputs["race"].missing_value_replacement == "white"  # 96 of 189
    assert inputs["smoke"].missing_value_replacement == "no"
    assert inputs["age"].missing_value_treatment == "asMedian"
    assert float(inputs["age"].missing_value_replacement or "nan") == float(
        birthwt.X["age"].median()
    )
    assert {field.invalid_value_treatment for field in schema.inputs} == {
        "returnInvalid"
    }
    assert (inputs["lwt"].valid_min, inputs["lwt"].valid_max) == (80.0, 250.0)


def test_an_input_the_tree_does_not_split_on_is_still_declared_and_checked(
    trained_birthwt: TrainingResult, birthwt: Dataset
) -> None:
    pmml = _pmml(trained_birthwt)
    text = pmml.decode()
    unused = [name for name in BIRTHWT_INPUTS if f'field="{name}"' not in text]
    assert unused, "the test needs a tree that skips an input"
    row = birthwt.X.iloc[[0]].reset_index(drop=True)
    assert not score_pmml(pmml, row)[_PROBABILITIES].isna().any(axis=None)
    for name in unused:
        bad = row.copy()
        bad[name] = "unheard-of" if name in ("race", "smoke", "ht", "ui") else 1e6
        assert score_pmml(pmml, bad)[_PROBABILITIES].isna().all(axis=None), name


def test_a_missing_category_is_scored_as_the_most_frequent_one(
    trained_birthwt: TrainingResult, birthwt: Dataset
) -> None:
    pmml = _pmml(trained_birthwt)
    rows = birthwt.X.iloc[:30].reset_index(drop=True)
    gap, mode = rows.copy(), rows.copy()
    gap["race"], mode["race"] = None, "white"
    np.testing.assert_allclose(
        score_pmml(pmml, gap)[_PROBABILITIES].to_numpy(),
        score_pmml(pmml, mode)[_PROBABILITIES].to_numpy(),
        rtol=0,
        atol=1e-12,
    )


def test_card_and_report_describe_categories_and_the_invalid_value_choice(
    trained_birthwt: TrainingResult,
) -> None:
    card = trained_birthwt.saved.card
    assert card["data"]["dataset"] == "birthwt"
    assert card["data"]["target"] == "low: 1 = below 2.5 kg, 0 = 2.5 kg or more"
    assert card["invalid_values"] == "reject"
    assert "dead-letters" in card["invalid_values_meaning"]
    race = next(field for field in card["input_schema"] if field["name"] == "race")
    assert race["values"] == ["white", "black", "other"]
    assert race["type"] == "string" and race["optype"] == "categorical"
    importances = card["feature_importances"]["values"]
    assert {"race=white", "race=black", "race=other", "age"} <= set(importances)
    # drift is measured on the numeric inputs: the card keeps their training bins
    drift = card["drift_reference"]
    assert set(drift["features"]) == {"age", "lwt", "ptl", "ftv"}
    assert sum(drift["class_mix"].values()) == pytest.approx(1.0)
    report = (trained_birthwt.saved.path / "report.html").read_text("utf-8")
    assert "white | black | other" in report
    assert "Positive class: 1 = below 2.5 kg" in report


def test_model_columns_name_a_column_per_category(birthwt: Dataset) -> None:
    from models.training import TrainingParams, fit_pipeline

    pipeline = fit_pipeline(birthwt, TrainingParams(), birthwt.X, birthwt.y)
    assert model_columns(pipeline) == [
        "age",
        "lwt",
        "race=white",
        "race=black",
        "race=other",
        "smoke=no",
        "smoke=yes",
        "ptl",
        "ht=no",
        "ht=yes",
        "ui=no",
        "ui=yes",
        "ftv",
    ]


@pytest.mark.parametrize("column", ["race", "smoke"])
def test_scikit_learn_refuses_an_undeclared_category_under_reject(
    birthwt: Dataset, column: str
) -> None:
    from models.training import TrainingParams, fit_pipeline

    pipeline = fit_pipeline(birthwt, TrainingParams(), birthwt.X, birthwt.y)
    bad = birthwt.X.iloc[:3].copy()
    bad[column] = "unheard-of"
    with pytest.raises(ValueError, match="invalid values"):
        pipeline.predict_proba(pd.DataFrame(bad))
