"""What the fast evaluator does not reproduce, pypmml scores: whole models, or single rows."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from models.pmml_schema import read_schema
from serving.reference_evaluator import ReferenceEvaluator

from .conftest import REFERENCE_INSTANCE, Serve, predict, served_file


async def test_a_model_type_the_fast_evaluator_refuses_is_served_by_pypmml(
    serve: Serve, tmp_path: Path, pmml_paths: dict[str, Path]
) -> None:
    # weights of 1 make "weightedAverage" the same forest; the fast evaluator only knows "average"
    forest = pmml_paths["bc-forest"].read_text()
    weighted = forest.replace(
        'multipleModelMethod="average"', 'multipleModelMethod="weightedAverage"'
    )
    assert weighted != forest
    path = tmp_path / "weighted.pmml"
    path.write_text(weighted)
    served, client = await served_file(serve, path)
    assert served.current.evaluator.kind == "pypmml"
    status = await (await client.get("/v1/models/m")).json()
    assert status["evaluator"]["kind"] == "pypmml"

    _, original = await served_file(serve, pmml_paths["bc-forest"])
    rows = [REFERENCE_INSTANCE, {"_c0": 10, "_c5": 10}, {"_c0": 0}, {}]
    by_pypmml, by_fast = await predict(client, rows), await predict(original, rows)
    assert "error" in by_pypmml[2]
    for mine, theirs in zip(by_pypmml, by_fast, strict=True):
        assert mine.keys() == theirs.keys()
        if "error" not in mine:
            assert mine["label"] == theirs["label"]
            assert (
                abs(float(mine["probability(1)"]) - float(theirs["probability(1)"]))
                <= 1e-9
            )


async def test_a_missing_value_without_replacement_is_left_to_the_model(
    serve: Serve, tmp_path: Path, pmml_paths: dict[str, Path]
) -> None:
    # no replacement declared for bare_nuclei: its missing values mean what the tree says
    tree = pmml_paths["breast-cancer"].read_text()
    stripped = re.sub(
        r'(<MiningField name="bare_nuclei") missingValueReplacement="[^"]+" missingValueTreatment="\w+"',
        r"\1",
        tree,
    )
    assert stripped != tree
    path = tmp_path / "no-replacement.pmml"
    path.write_text(stripped)
    served, client = await served_file(serve, path)
    assert served.current.evaluator.kind == "fast"

    rng = np.random.default_rng(5)
    rows = rng.integers(1, 11, (60, 9)).astype(float)
    rows[::2, 5] = np.nan  # every other row lacks bare_nuclei
    instances = [
        {f"_c{i}": v for i, v in enumerate(row) if not np.isnan(v)}
        for row in rows.tolist()
    ]
    answers = await predict(client, instances)

    document = path.read_bytes()
    reference = ReferenceEvaluator.load(document, read_schema(document))
    expected = reference.score(rows)
    for i, answer in enumerate(answers):
        if expected.no_result is not None and expected.no_result[i]:
            assert answer["error"] == "the model gives no prediction for this row"
            continue
        assert answer["label"] == reference.classes[expected.labels[i]]
        assert (
            abs(float(answer["probability(1)"]) - expected.probabilities[i, 1]) <= 1e-9
        )
