"""--invalid-values goes into every input's invalidValueTreatment, and PMML honours it like scikit-learn."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from models.dataset import Dataset
from models.parity import score_pmml
from models.pmml_schema import read_schema
from models.repository import ModelRepository
from models.training import TrainingParams, fit_pipeline
from riskstream.cli import main

_PROBABILITIES = ["probability(0)", "probability(1)"]
_PMML_SPELLING = {"as-is": "asIs", "as-missing": "asMissing"}


def _invalid_rows(birthwt: Dataset) -> pd.DataFrame:
    """Real rows with an undeclared category, a number above and one below the range."""
    rows = birthwt.X.iloc[:20].reset_index(drop=True).copy()
    rows.loc[0:6, "race"] = "unheard-of"
    rows.loc[7:13, "age"] = 99.0
    rows.loc[14:19, "lwt"] = 10.0
    return rows


def _train(choice: str, root: Path) -> Path:
    """``riskstream train --dataset birthwt --algorithm logistic --invalid-values CHOICE``."""
    result = CliRunner().invoke(
        main,
        [
            "train",
            "--dataset",
            "birthwt",
            "--algorithm",
            "logistic",
            "--invalid-values",
            choice,
            "--repository",
            str(root),
        ],
    )
    assert result.exit_code == 0, result.output
    assert f"invalid values: {choice}" in result.output  # progress line
    return ModelRepository(root).current("birthwt").path


@pytest.fixture(scope="module")
def as_is(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train("as-is", tmp_path_factory.mktemp("as-is"))


@pytest.fixture(scope="module")
def as_missing(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train("as-missing", tmp_path_factory.mktemp("as-missing"))


_CHOICES = pytest.mark.parametrize(
    ("choice", "model"), [("as-is", "as_is"), ("as-missing", "as_missing")]
)


@_CHOICES
def test_every_input_numeric_and_categorical_gets_the_treatment(
    choice: str, model: str, request: pytest.FixtureRequest
) -> None:
    folder: Path = request.getfixturevalue(model)
    schema = read_schema(folder / "model.pmml")
    assert len(schema.inputs) == 8
    assert {f.invalid_value_treatment for f in schema.inputs} == {
        _PMML_SPELLING[choice]
    }
    assert {f.optype for f in schema.inputs} == {"continuous", "categorical"}
    card = json.loads((folder / "card.json").read_text())
    assert card["invalid_values"] == choice
    assert {f["invalid_value_treatment"] for f in card["input_schema"]} == {
        _PMML_SPELLING[choice]
    }


@_CHOICES
def test_pmml_scores_invalid_values_as_scikit_learn_does(
    choice: str, model: str, request: pytest.FixtureRequest, birthwt: Dataset
) -> None:
    folder: Path = request.getfixturevalue(model)
    pmml = (folder / "model.pmml").read_bytes()
    pipeline = fit_pipeline(
        birthwt,
        TrainingParams(algorithm="logistic", invalid_values=choice),
        birthwt.X,
        birthwt.y,
    )
    rows = _invalid_rows(birthwt)
    scored = score_pmml(pmml, rows)[_PROBABILITIES].to_numpy()
    assert not np.isnan(scored).any(), "the model must score invalid values"
    np.testing.assert_allclose(scored, pipeline.predict_proba(rows), rtol=0, atol=1e-9)


def test_as_missing_scores_an_invalid_value_as_the_missing_value_replacement(
    as_missing: Path, birthwt: Dataset
) -> None:
    pmml = (as_missing / "model.pmml").read_bytes()
    rows = _invalid_rows(birthwt)
    replaced = rows.copy()
    replaced.loc[0:6, "race"] = "white"  # the most frequent value
    replaced.loc[7:13, "age"] = float(birthwt.X["age"].median())
    replaced.loc[14:19, "lwt"] = float(birthwt.X["lwt"].median())
    np.testing.assert_allclose(
        score_pmml(pmml, rows)[_PROBABILITIES].to_numpy(),
        score_pmml(pmml, replaced)[_PROBABILITIES].to_numpy(),
        rtol=0,
        atol=1e-12,
    )


def test_as_is_lets_an_out_of_range_number_move_the_score(
    as_is: Path, birthwt: Dataset
) -> None:
    pmml = (as_is / "model.pmml").read_bytes()
    row = birthwt.X.iloc[[0]].reset_index(drop=True)
    heavy = row.assign(lwt=1000.0)
    assert not np.allclose(
        score_pmml(pmml, row)[_PROBABILITIES].to_numpy(),
        score_pmml(pmml, heavy)[_PROBABILITIES].to_numpy(),
    )


def test_an_unknown_choice_is_refused_before_any_work(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["train", "--invalid-values", "drop", "--repository", str(tmp_path)]
    )
    assert result.exit_code == 2
    assert "'drop' is not one of 'reject', 'as-is', 'as-missing'" in result.output
