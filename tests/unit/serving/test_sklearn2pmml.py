"""Pipelines with categorical encoders, exported by sklearn2pmml, answer as scikit-learn does.

Each test fits a scikit-learn pipeline on string and numeric columns
(``CategoricalDomain`` + ``OneHotEncoder`` or ``OrdinalEncoder``,
``ContinuousDomain``), exports it with sklearn2pmml (JPMML-SkLearn, a Java
tool this project did not write), serves the PMML through the real app and
compares every answer with scikit-learn's own ``predict``/``predict_proba``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder
from sklearn.tree import DecisionTreeClassifier
from sklearn2pmml import sklearn2pmml
from sklearn2pmml.decoration import CategoricalDomain, ContinuousDomain
from sklearn2pmml.pipeline import PMMLPipeline

from serving.loader import FileSource, ModelRegistry, ServedModel

from .conftest import Serve

COLORS = ["red", "green", "blue", "dark red"]
SHAPES = ["round", "square", "flat"]


def frame(rows: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "color": rng.choice(COLORS, rows),
            "shape": rng.choice(SHAPES, rows),
            "size": np.round(rng.normal(10, 3, rows), 2),
        }
    )


def target(data: pd.DataFrame, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    score = (
        data["color"].map({"red": 2.0, "green": -1.0, "blue": 0.5, "dark red": 1.5})
        + data["shape"].map({"round": 1.0, "square": -0.5, "flat": 0.0})
        + 0.2 * (data["size"] - 10)
    )
    return np.asarray(score + rng.normal(0, 0.5, len(data)))


def encoders(ordinal: bool) -> ColumnTransformer:
    shape = OrdinalEncoder() if ordinal else OneHotEncoder()
    return ColumnTransformer(
        [
            (
                "color",
                PMMLPipeline([("d", CategoricalDomain()), ("e", OneHotEncoder())]),
                ["color"],
            ),
            (
                "shape",
                PMMLPipeline([("d", CategoricalDomain()), ("e", shape)]),
                ["shape"],
            ),
            ("size", ContinuousDomain(invalid_value_treatment="as_is"), ["size"]),
        ]
    )


async def serve_pipeline(serve: Serve, tmp_path: Path, pipeline: PMMLPipeline) -> Any:
    path = tmp_path / "pipeline.pmml"
    sklearn2pmml(pipeline, str(path))
    registry = ModelRegistry([ServedModel("m", FileSource(path))])
    await registry.load_all()
    return await serve(registry)


async def predict(client: Any, data: pd.DataFrame) -> list[dict[str, Any]]:
    response = await client.post(
        "/v1/models/m:predict",
        data=orjson.dumps({"instances": data.to_dict(orient="records")}),
    )
    assert response.status == 200, await response.text()
    predictions: list[dict[str, Any]] = (await response.json())["predictions"]
    return predictions


@pytest.mark.parametrize(
    ("estimator", "ordinal"),
    [
        (LogisticRegression(), False),
        (DecisionTreeClassifier(max_depth=4, random_state=0), True),
    ],
    ids=["logistic-onehot", "tree-ordinal"],
)
async def test_classifier_with_categorical_encoders(
    serve: Serve, tmp_path: Path, estimator: Any, ordinal: bool
) -> None:
    train = frame(400, seed=1)
    labels = np.where(target(train, seed=2) > 1.0, "yes", "no")
    pipeline = PMMLPipeline([("encode", encoders(ordinal)), ("model", estimator)])
    pipeline.fit(train, labels)
    client = await serve_pipeline(serve, tmp_path, pipeline)

    test = frame(200, seed=3)
    answers = await predict(client, test)
    expected = pipeline.predict_proba(test)
    classes = [str(c) for c in pipeline.classes_]
    for answer, probabilities, label in zip(
        answers, expected, pipeline.predict(test), strict=True
    ):
        assert answer["label"] == label
        for category, probability in zip(classes, probabilities, strict=True):
            assert abs(float(answer[f"probability({category})"]) - probability) <= 1e-9

    # a colour the training data never had is invalid under CategoricalDomain's default
    (unseen,) = await predict(client, test.head(1).assign(color="purple"))
    assert unseen["error"].startswith(
        "field 'color': 'purple' is not one of the valid values"
    )


async def test_regression_with_one_hot_inputs(serve: Serve, tmp_path: Path) -> None:
    train = frame(300, seed=4)
    pipeline = PMMLPipeline(
        [("encode", encoders(ordinal=False)), ("model", LinearRegression())]
    )
    pipeline.fit(train, target(train, seed=5))
    client = await serve_pipeline(serve, tmp_path, pipeline)

    test = frame(100, seed=6)
    answers = await predict(client, test)
    for answer, value in zip(answers, pipeline.predict(test), strict=True):
        assert set(answer) == {"pmml(prediction)", "prediction", "model_version"}
        assert abs(float(answer["prediction"]) - value) <= 1e-9
