"""Explanations: what each model kind says about its answer, checked against the PMML by hand.

The trained models score the data set's complete rows; a hand walk of each
PMML tree (children in order, the first true predicate taken) must give
the same conditions and leaf as the explanation, a logistic regression's
contributions must add up to the log-odds it answered, and an ensemble's
counts must be the hand walk's.
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestClient

from models.dataset import load_wisconsin_original
from models.pmml_schema import read_schema
from models.protocol import InferenceResponse
from models.v2_binary import INFERENCE_HEADER_LENGTH, read_tensors, split_body
from serving.evaluator import Scores
from serving.explanations import condition
from serving.fast_evaluator import build_fast_evaluator
from serving.features import FeatureEncoder
from serving.reference_evaluator import ReferenceEvaluator

from .conftest import REFERENCE_INSTANCE

_COMPARE = {
    "lessOrEqual": float.__le__,
    "lessThan": float.__lt__,
    "greaterThan": float.__gt__,
    "greaterOrEqual": float.__ge__,
}


def _local(element: ET.Element) -> None:
    """Drop the PMML namespace so that the walk below reads plain tags."""
    for node in element.iter():
        node.tag = node.tag.rsplit("}", 1)[-1]


def _walk(node: ET.Element, row: dict[str, float]) -> tuple[list[str], ET.Element]:
    """The conditions a row meets from ``node`` to its leaf, read straight off the PMML."""
    said: list[str] = []
    while node.find("Node") is not None:
        for child in node.findall("Node"):
            predicate = next(
                c for c in child if c.tag.endswith("Predicate") or c.tag == "True"
            )
            if predicate.tag == "True":
                node = child
                break
            field, operator = predicate.get("field", ""), predicate.get("operator", "")
            met = _COMPARE[operator](row[field], float(predicate.get("value", "")))
            wording = condition(predicate)
            said.append(wording.true if met else wording.false)
            if met:
                node = child
                break
    return said, node


def _rows(count: int = 120) -> list[dict[str, float]]:
    data = load_wisconsin_original().X.dropna()
    return data.head(count).to_dict(orient="records")


def _explained(pmml: Path, rows: list[dict[str, float]]) -> tuple[Scores, list[Any]]:
    document = pmml.read_bytes()
    schema = read_schema(document)
    values = FeatureEncoder(schema).encode(rows).values
    scores = build_fast_evaluator(document, schema).score(values, explain=True)
    assert scores.explanations is not None
    return scores, [orjson.loads(e) for e in scores.explanations]


def _trees(pmml: Path) -> list[ET.Element]:
    root = ET.fromstring(pmml.read_bytes())
    _local(root)
    return [tree.find("Node") for tree in root.iter("TreeModel")]  # type: ignore[misc]


def test_a_tree_path_re_evaluated_by_hand_reaches_the_same_leaf(
    pmml_paths: dict[str, Path],
) -> None:
    rows = _rows()
    scores, explanations = _explained(pmml_paths["breast-cancer"], rows)
    (root,) = _trees(pmml_paths["breast-cancer"])
    for row, explanation, probabilities in zip(
        rows, explanations, scores.probabilities, strict=True
    ):
        path, leaf = _walk(root, row)
        assert explanation["kind"] == "tree"
        assert explanation["path"] == path and path
        assert explanation["leaf"]["score"] == leaf.get("score")
        written = {
            d.get("value"): float(d.get("recordCount", "nan"))
            for d in leaf.findall("ScoreDistribution")
        }
        assert explanation["leaf"]["score_distribution"] == pytest.approx(written)
        total = sum(written.values())
        assert probabilities.tolist() == pytest.approx(
            [written["0"] / total, written["1"] / total], abs=1e-12
        )


def test_a_missing_value_says_what_the_tree_did_with_it() -> None:
    pmml = (
        Path(__file__).parents[2]
        / "fixtures/pmml/fast/default-child-regression-tree.pmml"
    )
    scores, (explanation,) = _explained(pmml, [{"dose": 1.0}])
    # route is missing: node 1's "route == oral" is unknown, node 2's set test too,
    # so the tree takes node 0's defaultChild 2, where "dose >= 2.5" is false
    # and returnLastPrediction answers node 2's own score
    assert explanation["path"] == [
        "route == oral is unknown (route missing) → next child, else defaultChild 2",
        "dose < 2.5",
    ]
    assert explanation["leaf"]["id"] == "2"
    assert scores.values is not None
    assert float(explanation["leaf"]["score"]) == scores.values[0] == 2.0625


def test_an_ensemble_counts_the_trees_whose_paths_use_each_field(
    pmml_paths: dict[str, Path],
) -> None:
    rows = _rows(40)
    _, explanations = _explained(pmml_paths["bc-forest"], rows)
    trees = _trees(pmml_paths["bc-forest"])
    for row, explanation in zip(rows, explanations, strict=True):
        counts: Counter[str] = Counter()
        for tree in trees:
            path, _ = _walk(tree, row)
            counts.update({wording.split(" ")[0] for wording in path})
        assert explanation["kind"] == "ensemble" and explanation["trees"] == len(trees)
        assert dict(explanation["features"]) == dict(counts)
        ranked = [count for _, count in explanation["features"]]
        assert ranked == sorted(ranked, reverse=True)


def test_logistic_contributions_add_up_to_the_log_odds_it_answered(
    pmml_paths: dict[str, Path],
) -> None:
    rows = _rows()
    scores, explanations = _explained(pmml_paths["bc-logistic"], rows)
    for explanation, probabilities in zip(
        explanations, scores.probabilities, strict=True
    ):
        assert explanation["kind"] == "regression" and explanation["target"] == "1"
        contributions = [value for _, value in explanation["contributions"]]
        magnitudes = [abs(value) for value in contributions]
        assert magnitudes == sorted(magnitudes, reverse=True)
        assert len(contributions) == 9
        log_odds = explanation["intercept"] + math.fsum(contributions)
        assert log_odds == pytest.approx(
            math.log(probabilities[1] / probabilities[0]), rel=1e-9, abs=1e-9
        )


def test_explanations_off_leave_the_scores_as_they_were(
    pmml_paths: dict[str, Path],
) -> None:
    rows = _rows(50)
    document = pmml_paths["bc-forest"].read_bytes()
    schema = read_schema(document)
    values = FeatureEncoder(schema).encode(rows).values
    evaluator = build_fast_evaluator(document, schema)
    plain, explained = evaluator.score(values), evaluator.score(values, explain=True)
    assert plain.explanations is None
    np.testing.assert_array_equal(plain.probabilities, explained.probabilities)


async def test_a_pypmml_model_says_explanations_are_unavailable(
    pmml_paths: dict[str, Path],
) -> None:
    document = pmml_paths["breast-cancer"].read_bytes()
    schema = read_schema(document)
    evaluator = ReferenceEvaluator.load(document, schema)
    values = FeatureEncoder(schema).encode(_rows(3)).values
    scores = await evaluator.evaluate(values, explain=True)
    assert scores.explanations is not None and len(scores.explanations) == 3
    statement = orjson.loads(scores.explanations[0])
    assert statement["kind"] == "unavailable"
    assert "TreeModel" in statement["reason"] and "pypmml" in statement["reason"]


# --- the server's two APIs ----------------------------------------------------------
async def test_the_predict_body_asks_for_explanations(
    client: TestClient, auth: dict[str, str]
) -> None:
    body = {"instances": [REFERENCE_INSTANCE, REFERENCE_INSTANCE], "explain": True}
    response = await client.post(
        "/v1/models/m:predict", data=orjson.dumps(body), headers=auth
    )
    predictions = (await response.json())["predictions"]
    assert response.status == 200 and len(predictions) == 2
    explanation = orjson.loads(predictions[0]["explanation"])
    assert explanation["kind"] == "tree" and explanation["path"]
    assert explanation["leaf"]["score"] == predictions[0]["label"]

    plain = {"instances": [REFERENCE_INSTANCE], "explain": False}
    response = await client.post(
        "/v1/models/m:predict", data=orjson.dumps(plain), headers=auth
    )
    assert "explanation" not in (await response.json())["predictions"][0]
    bad = {"instances": [REFERENCE_INSTANCE], "explain": "yes"}
    response = await client.post(
        "/v1/models/m:predict", data=orjson.dumps(bad), headers=auth
    )
    assert response.status == 400
    assert (await response.json())[
        "error"
    ] == '"explain" must be true or false, not "yes"'


def _v2_body(parameters: dict[str, Any]) -> dict[str, Any]:
    rows = [list(REFERENCE_INSTANCE.values()), [8] * 9]
    return {
        "parameters": parameters,
        "inputs": [{"name": "x", "shape": [2, 9], "datatype": "FP64", "data": rows}],
    }


async def test_the_v2_parameter_adds_an_explanation_output(
    client: TestClient, auth: dict[str, str]
) -> None:
    path = "/v2/models/bc-logistic/infer"
    answer = await (
        await client.post(path, json=_v2_body({"explain": True}), headers=auth)
    ).json()
    outputs = {tensor["name"]: tensor for tensor in answer["outputs"]}
    explanation = outputs["explanation"]
    assert explanation["datatype"] == "BYTES" and explanation["shape"] == [2]
    assert orjson.loads(explanation["data"][1])["kind"] == "regression"

    plain = await (await client.post(path, json=_v2_body({}), headers=auth)).json()
    assert "explanation" not in {tensor["name"] for tensor in plain["outputs"]}
    response = await client.post(path, json=_v2_body({"explain": 1}), headers=auth)
    assert response.status == 400
    assert (
        "parameters.explain must be true or false" in (await response.json())["error"]
    )


async def test_the_explanation_output_travels_as_binary_tensor_data(
    client: TestClient, auth: dict[str, str]
) -> None:
    body = _v2_body({"explain": True, "binary_data_output": True})
    response = await client.post("/v2/models/bc-forest/infer", json=body, headers=auth)
    assert response.status == 200
    header, raw = split_body(
        await response.read(), response.headers[INFERENCE_HEADER_LENGTH]
    )
    answer = InferenceResponse.model_validate_json(header)
    read_tensors(answer.outputs, raw)
    (explanation,) = [o for o in answer.outputs if o.name == "explanation"]
    decoded = [orjson.loads(text) for text in explanation.values]
    assert [e["kind"] for e in decoded] == ["ensemble", "ensemble"]
    assert decoded[0]["trees"] == 100
