"""A team's own PMML, end to end: a tree from another tool with string inputs, and a regression.

Each test serves a PMML document riskstream did not write (``riskstream
serve --pmml``), replays a CSV file with ``riskstream datagen --from-csv``
through Kafka and a real worker into ClickHouse, and checks every stored
answer against pypmml's for the same row, read straight from the file.
"""

from __future__ import annotations

import csv
import json
import math
import random
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tests.e2e.harness import Pipeline, produced_by, wait_until

pytestmark = pytest.mark.slow

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "pmml"
AUDIT_TREE = FIXTURES / "jpmml-evaluator" / "DecisionTreeAudit.pmml"
AUDIT_ROWS = FIXTURES / "jpmml-evaluator" / "Audit.csv"
CLAIMS_REGRESSION = FIXTURES / "handwritten" / "regression_claims.pmml"

DRAIN_TIMEOUT_S = 120.0


def stored_rows(pipeline: Pipeline) -> dict[str, dict[str, Any]]:
    """Every stored prediction by record id (the dedup view)."""
    text = pipeline.clickhouse(
        "SELECT record_id, predicted_label, probability_labels, probabilities, "
        "predicted_value, true_label, feature_names, feature_values, "
        "text_feature_names, text_feature_values "
        f"FROM {pipeline.database}.predictions FINAL FORMAT JSONEachRow"
    )
    rows = [json.loads(line) for line in text.splitlines()]
    return {row["record_id"]: row for row in rows}


def offline(pmml: Path, frame: pd.DataFrame) -> pd.DataFrame:
    """pypmml's answers for ``frame``'s rows, the reference the stream must equal."""
    from pypmml import Model

    return Model.fromFile(str(pmml)).predict(frame)


def stream_csv(pipeline: Pipeline, pmml: Path, rows: Path, *options: str) -> int:
    """Serve ``pmml``, replay ``rows`` through a worker, wait until every record is stored."""
    pipeline.start_model_server(pmml=pmml)
    pipeline.declare_feature_topic()
    pipeline.start_worker()
    generator = pipeline.generate(
        "--from-csv", str(rows), *options, schema_from="server"
    )
    produced = produced_by(generator)
    wait_until(
        lambda: pipeline.count() >= produced, DRAIN_TIMEOUT_S, "every record stored"
    )
    return produced


def test_a_tree_from_another_tool_with_string_inputs_streams_into_clickhouse(
    pipeline: Pipeline,
) -> None:
    frame = pd.read_csv(AUDIT_ROWS, dtype={"ID": str})
    produced = stream_csv(
        pipeline,
        AUDIT_TREE,
        AUDIT_ROWS,
        "--id-column",
        "ID",
        "--label-column",
        "Adjusted",
    )
    assert produced == len(frame)
    expected = offline(AUDIT_TREE, frame)
    stored = stored_rows(pipeline)
    assert sorted(stored) == sorted(frame["ID"])
    for index, record_id in enumerate(frame["ID"]):
        row, answer = stored[record_id], expected.iloc[index]
        # pandas gives the label "0" back as the number 0.0
        assert row["predicted_label"] == str(int(answer["Predicted_Adjusted"])), (
            record_id
        )
        probabilities = dict(
            zip(row["probability_labels"], row["probabilities"], strict=True)
        )
        for label in ("0", "1"):
            assert math.isclose(
                probabilities[label], answer[f"Probability_{label}"], abs_tol=1e-12
            ), record_id
        assert row["true_label"] == str(frame["Adjusted"].iloc[index])
        texts = dict(
            zip(row["text_feature_names"], row["text_feature_values"], strict=True)
        )
        assert texts["Employment"] == frame["Employment"].iloc[index]
        assert set(texts) == {
            "Employment",
            "Education",
            "Marital",
            "Occupation",
            "Gender",
        }
        assert row["feature_names"] == ["Income", "Deductions", "Hours"]
    print(
        f"\n[{pipeline.run_id}] Audit tree (5 string + 3 numeric inputs): {produced} "
        "records from --from-csv stored, each equal to pypmml's answer"
    )
    pipeline.account(produced)


def claims_rows(path: Path, count: int) -> pd.DataFrame:
    """Rows for the claims regression: valid, missing, declared-missing and invalid locations."""
    rng = random.Random(7)
    locations = ["carpark", "street", "", "unknown", "bus"]
    rows = [
        {
            "policy": f"p-{i}",
            "age": rng.randint(18, 90),
            "salary": rng.randint(0, 200_000),
            "car_location": rng.choice(locations),
            "note": "ignored column",
        }
        for i in range(count)
    ]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return pd.read_csv(path, dtype={"car_location": str}, keep_default_na=False)


def test_a_regression_streams_its_predicted_values_into_clickhouse(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    path = tmp_path / "claims.csv"
    frame = claims_rows(path, 300)
    produced = stream_csv(pipeline, CLAIMS_REGRESSION, path, "--id-column", "policy")
    assert produced == len(frame)
    inputs = frame[["age", "salary", "car_location"]].replace(
        {"car_location": {"": None}}
    )
    expected = offline(CLAIMS_REGRESSION, inputs)["predicted_number_of_claims"]
    stored = stored_rows(pipeline)
    assert len(stored) == produced
    for index, record_id in enumerate(frame["policy"]):
        row = stored[record_id]
        assert math.isclose(
            row["predicted_value"], expected.iloc[index], rel_tol=1e-12
        ), (record_id, row, expected.iloc[index])
        assert row["predicted_label"] == "" and row["probabilities"] == []
        location = frame["car_location"].iloc[index]
        assert row["text_feature_values"] == [location]
    print(
        f"\n[{pipeline.run_id}] claims regression: {produced} records from --from-csv "
        "stored with pypmml's predicted value (missing, declared-missing and invalid "
        "locations included)"
    )
    pipeline.account(produced)
