"""PMML documents this project did not train, served through the real aiohttp app.

* ``tests/fixtures/pmml/jpmml-evaluator/``: Rattle's decision tree on the
  Audit data (5 string and 3 numeric inputs) with the inputs and the
  outputs JPMML-Evaluator publishes for it: the server must give the same
  labels and probabilities.
* ``tests/fixtures/pmml/handwritten/``: one document per construct (every
  tree predicate kind, a regression with categorical predictors and
  missing/invalid value treatments), whose answers follow from the
  document by hand.

See ``tests/fixtures/pmml/PROVENANCE.md`` for where each came from.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path
from typing import Any

import pytest

from serving.errors import ModelLoadError
from serving.loader import FileSource, ServedModel

from .conftest import Serve, predict, served_file

FIXTURES = Path(__file__).parents[2] / "fixtures" / "pmml"
JPMML = FIXTURES / "jpmml-evaluator"
HANDWRITTEN = FIXTURES / "handwritten"


def audit_rows() -> list[dict[str, Any]]:
    """The published Audit inputs, numbers as JSON numbers, strings as strings."""
    numeric = {"Income", "Deductions", "Hours"}
    names = ["Employment", "Education", "Marital", "Occupation", "Gender", *numeric]
    with (JPMML / "Audit.csv").open() as file:
        return [
            {n: float(row[n]) if n in numeric else row[n] for n in names}
            for row in csv.DictReader(file)
        ]


def published(name: str) -> list[dict[str, str]]:
    with (JPMML / f"{name}.csv").open() as file:
        return list(csv.DictReader(file))


async def test_rattle_audit_tree_answers_as_jpmml_publishes(serve: Serve) -> None:
    served, client = await served_file(serve, JPMML / "DecisionTreeAudit.pmml")
    assert served.current.evaluator.kind == "pypmml"
    rows = audit_rows()
    expected = published("DecisionTreeAudit")
    assert len(rows) == len(expected) == 100
    answers = await predict(client, rows)
    for answer, row in zip(answers, expected, strict=True):
        assert answer["label"] == answer["pmml(prediction)"] == row["Adjusted"]
        assert answer["prediction"] == f"{row['Adjusted']}.0"
        # the document declares its probabilities as Probability_0/1: answered under the reference's keys
        for category in ("0", "1"):
            assert math.isclose(
                float(answer[f"probability({category})"]),
                float(row[f"Probability_{category}"]),
                abs_tol=1e-12,
            )
        assert answer["Node_Id"].isdigit()  # the entityId output, as it is
        assert answer["model_version"] == "1"
    assert {answer["label"] for answer in answers} == {"0", "1"}


async def test_audit_tree_over_v2_with_bytes_tensors(serve: Serve) -> None:
    _, client = await served_file(serve, JPMML / "DecisionTreeAudit.pmml")
    metadata = await (await client.get("/v2/models/m")).json()
    datatypes = {tensor["name"]: tensor["datatype"] for tensor in metadata["inputs"]}
    assert datatypes["Employment"] == "BYTES" and datatypes["Income"] == "FP64"
    assert [t["name"] for t in metadata["outputs"]] == [
        "label",
        "probability(0)",
        "probability(1)",
        "Node_Id",
    ]
    rows = audit_rows()[:20]
    body = {
        "inputs": [
            {
                "name": name,
                "shape": [len(rows)],
                "datatype": datatype,
                "data": [row[name] for row in rows],
            }
            for name, datatype in datatypes.items()
        ]
    }
    response = await client.post("/v2/models/m/infer", json=body)
    assert response.status == 200, await response.text()
    outputs = {t["name"]: t for t in (await response.json())["outputs"]}
    expected = published("DecisionTreeAudit")[:20]
    assert outputs["label"]["data"] == [row["Adjusted"] for row in expected]
    assert outputs["label"]["datatype"] == "BYTES"
    for got, row in zip(outputs["probability(1)"]["data"], expected, strict=True):
        assert math.isclose(got, float(row["Probability_1"]), abs_tol=1e-12)

    bad = {**body, "inputs": [{**body["inputs"][0], "datatype": "STRING"}]}
    refused = await client.post("/v2/models/m/infer", json=bad)
    assert refused.status == 400
    assert "unknown datatype 'STRING'" in (await refused.json())["error"]
    shapeless = {"inputs": [{"name": "Employment", "data": ["Private"]}]}
    refused = await client.post("/v2/models/m/infer", json=shapeless)
    assert refused.status == 400 and "inputs.0.shape" in (await refused.json())["error"]


async def test_audit_status_describes_string_inputs(serve: Serve) -> None:
    _, client = await served_file(serve, JPMML / "DecisionTreeAudit.pmml")
    status = await (await client.get("/v1/models/m")).json()
    schema = status["schema"]
    assert schema["functionName"] == "classification"
    fields = {field["name"]: field for field in schema["inputFields"]}
    assert list(fields) == [
        "Employment",
        "Education",
        "Marital",
        "Occupation",
        "Income",
        "Gender",
        "Deductions",
        "Hours",
    ]
    assert fields["Gender"]["dataType"] == "string"
    assert fields["Gender"]["opType"] == "categorical"
    assert fields["Gender"]["values"] == ["Female", "Male"]
    assert fields["Income"]["values"] == ["[-inf, inf]"]
    assert schema["targetFields"] == [
        {"id": "Adjusted", "opType": "categorical", "values": ["0", "1"]}
    ]
    assert {"id": "Node_Id", "dataType": "string"} in schema["outputFields"]


async def test_audit_tree_rejects_undeclared_categories_and_wrong_types(
    serve: Serve,
) -> None:
    _, client = await served_file(serve, JPMML / "DecisionTreeAudit.pmml")
    row = audit_rows()[0]
    answers = await predict(
        client,
        [
            {**row, "Employment": "Astronaut"},
            {**row, "Gender": 1},
            {**row, "Marital": True},
            {**row, "Occupation": ["Service"]},
            {**row, "Income": "lots"},
            {**row, "Employment": None},  # missing: the tree's defaultChild decides
            row,
        ],
    )
    assert answers[0]["error"] == (
        "field 'Employment': 'Astronaut' is not one of the valid values 'Consultant', "
        "'Private', 'PSFederal', 'PSLocal', 'PSState', 'SelfEmp', 'Volunteer'"
    )
    assert answers[1]["error"].startswith("field 'Gender': '1' is not one of")
    assert answers[2]["error"].startswith("field 'Marital': 'true' is not one of")
    assert answers[3]["error"] == "field 'Occupation': a JSON array is not a string"
    assert answers[4]["error"] == "field 'Income': 'lots' is not a number"
    assert "label" in answers[5] and "label" in answers[6]


# --- hand-written documents ------------------------------------------------------------
#: (row, the leaf the document sends it to)
TREE_ROUTES: list[tuple[dict[str, Any], str]] = [
    ({"size": 1}, "missing"),  # isMissing: absent
    ({"color": "NA", "size": 1}, "missing"),  # a value declared property="missing"
    ({"color": "red", "member": True, "size": 1}, "and"),
    ({"color": "red", "member": "true", "size": 1}, "and"),  # "true" is true
    ({"color": "blue", "member": False}, "or"),
    ({"color": "dark red"}, "in"),  # an Array item with a space
    ({"color": "green", "member": False}, "in"),
    ({"color": "red", "member": False, "size": 3}, "surrogate"),
    (
        {"color": "red", "member": False},
        "surrogate",
    ),  # size missing: the surrogate decides
    ({"color": "red", "member": False, "size": 50}, "notEqual"),  # and isNotMissing
    ({"color": "red", "member": True, "size": 150}, "and"),
    # pypmml (PMML4S 1.5) departs from the PMML specification on these three; the
    # server answers what its reference evaluator answers:
    # xor(false, true) is true by the specification ("xor"), PMML4S answers false
    ({"color": "red", "member": False, "size": 150}, "notEqual"),
    # an undeclared value under asIs matches no "equal"/isIn but is not missing by the
    # specification ("notin"); PMML4S treats it as missing
    ({"color": "purple", "member": False, "size": 50}, "missing"),
    # notEqual on a missing value is UNKNOWN by the specification ("rest"); PMML4S: true
    ({"color": "red", "size": 50}, "notEqual"),
]


async def test_every_tree_predicate_kind(serve: Serve) -> None:
    served, client = await served_file(serve, HANDWRITTEN / "tree_predicates.pmml")
    assert served.current.evaluator.kind == "pypmml"
    answers = await predict(client, [row for row, _ in TREE_ROUTES])
    for answer, (row, leaf) in zip(answers, TREE_ROUTES, strict=True):
        assert answer["label"] == leaf, (row, answer)
        assert answer["prediction"] == leaf  # a label that is no number stays as it is
        assert answer["node"].startswith("n")
        # leaves without ScoreDistribution give no probabilities: Java writes NaN
        assert answer["probability(and)"] == "NaN"


async def test_an_undeclared_value_and_its_sentinel_mean_the_same(
    serve: Serve,
) -> None:
    _, client = await served_file(serve, HANDWRITTEN / "tree_predicates.pmml")
    rows = [
        {"color": color, "member": False, "size": 50}
        for color in ("purple", "mauve", "riskstream(other value)", "")
    ]
    answers = await predict(client, rows)
    assert {a["label"] for a in answers} == {"missing"}
    bad = await predict(client, [{"color": "red", "member": "yes"}, {"member": 2}])
    assert bad[0]["error"] == "field 'member': 'yes' is not a boolean (true or false)"
    assert bad[1]["error"] == "field 'member': 2 is not a boolean (true or false)"


def claims(age: float, salary: float, location: str) -> float:
    """The DMG specification's formula for its number_of_claims example."""
    return (
        132.37
        + 7.1 * age
        + 0.01 * salary
        + {"carpark": 41.1, "street": 325.03}[location]
    )


async def test_regression_with_categorical_predictors(serve: Serve) -> None:
    served, client = await served_file(serve, HANDWRITTEN / "regression_claims.pmml")
    assert served.current.evaluator.kind == "fast"
    rows: list[tuple[dict[str, Any], str]] = [
        ({"age": 20, "salary": 1000, "car_location": "street"}, "street"),
        ({"age": 45, "salary": 52000, "car_location": "carpark"}, "carpark"),
        # missing, declared missing ("unknown") and invalid under asMissing: the replacement
        ({"age": 20, "salary": 1000}, "carpark"),
        ({"age": 20, "salary": 1000, "car_location": "unknown"}, "carpark"),
        ({"age": 20, "salary": 1000, "car_location": "bus"}, "carpark"),
    ]
    answers = await predict(client, [row for row, _ in rows])
    for answer, (row, location) in zip(answers, rows, strict=True):
        assert set(answer) == {"pmml(prediction)", "prediction", "model_version"}
        assert answer["pmml(prediction)"] == answer["prediction"]
        assert math.isclose(
            float(answer["prediction"]),
            claims(float(row["age"]), float(row["salary"]), location),
            rel_tol=1e-12,
        )

    status = await (await client.get("/v1/models/m")).json()
    schema = status["schema"]
    assert schema["functionName"] == "regression"
    assert schema["targetFields"] == [
        {"id": "number_of_claims", "opType": "continuous", "values": []}
    ]
    assert [f["id"] for f in schema["outputFields"]] == [
        "pmml(prediction)",
        "prediction",
        "model_version",
    ]
    location = schema["inputFields"][2]
    assert location["values"] == ["carpark", "street"]
    assert location["missingValueReplacement"] == "carpark"

    metadata = await (await client.get("/v2/models/m")).json()
    assert metadata["outputs"] == [
        {"name": "prediction", "datatype": "FP64", "shape": [-1]}
    ]
    body = {
        "inputs": [
            {"name": "age", "shape": [2], "datatype": "FP64", "data": [20, 45]},
            {"name": "salary", "shape": [2], "datatype": "FP64", "data": [1000, 52000]},
            {
                "name": "car_location",
                "shape": [2],
                "datatype": "BYTES",
                "data": ["street", "carpark"],
            },
        ]
    }
    response = await client.post("/v2/models/m/infer", json=body)
    assert response.status == 200, await response.text()
    (output,) = (await response.json())["outputs"]
    assert output["name"] == "prediction" and output["datatype"] == "FP64"
    assert [float(a["prediction"]) for a in answers[:2]] == output["data"]


async def test_a_model_that_is_neither_classification_nor_regression_is_refused(
    tmp_path: Path,
) -> None:
    document = (HANDWRITTEN / "regression_claims.pmml").read_text()
    path = tmp_path / "clustering.pmml"
    path.write_text(
        document.replace('functionName="regression"', 'functionName="clustering"')
    )
    served = ServedModel("m", FileSource(path))
    with pytest.raises(ModelLoadError, match="a clustering model"):
        await served.load()
