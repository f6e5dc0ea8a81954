"""The parity gate passes a faithful PMML and refuses one that scores differently."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sklearn2pmml.pipeline import PMMLPipeline

from models import workflow
from models.dataset import Dataset
from models.errors import ParityError
from models.parity import PROBABILITY_TOLERANCE, check_parity
from models.repository import ModelRepository
from models.training import TrainingParams
from models.workflow import TrainingResult


def test_saved_model_passed_the_gate_on_every_row_including_missing(
    trained: TrainingResult,
) -> None:
    assert trained.parity.rows == 699
    assert trained.parity.rows_with_missing_values == 16
    assert trained.parity.max_probability_difference <= PROBABILITY_TOLERANCE


def test_gate_passes_the_saved_pmml_against_a_refit_pipeline(
    pmml: bytes, pipeline: PMMLPipeline, original: Dataset
) -> None:
    assert check_parity(pmml, pipeline, original.X).rows == 699


def test_moved_split_threshold_is_refused_naming_the_rows(
    pmml: bytes, pipeline: PMMLPipeline, original: Dataset
) -> None:
    # the root split on uniformity_of_cell_size (<= 2.5) becomes <= 6.5
    text = pmml.decode()
    first_split = re.search(
        r'field="uniformity_of_cell_size" operator="lessOrEqual" value="2.5"', text
    )
    assert first_split is not None
    broken = (
        text[: first_split.start()]
        + first_split.group(0).replace("2.5", "6.5")
        + text[first_split.end() :]
    ).encode()
    with pytest.raises(
        ParityError, match=r"disagrees with scikit-learn on \d+ of 699 rows"
    ) as err:
        check_parity(broken, pipeline, original.X)
    assert "first differing rows: row " in err.value.message


def test_slightly_wrong_probability_is_refused(
    pmml: bytes, pipeline: PMMLPipeline, original: Dataset
) -> None:
    # a leaf's class share off by 1e-6: same labels, probabilities beyond 1e-9
    text = pmml.decode()
    share = re.search(r'<ScoreDistribution value="0" recordCount="(0\.\d+)"', text)
    assert share is not None
    wrong = repr(float(share.group(1)) + 1e-6)
    broken = (text[: share.start(1)] + wrong + text[share.end(1) :]).encode()
    with pytest.raises(ParityError, match="off by more than 1e-09"):
        check_parity(broken, pipeline, original.X)


def test_pmml_without_label_output_is_refused(
    pmml: bytes, pipeline: PMMLPipeline, original: Dataset
) -> None:
    broken = re.sub(rb'<OutputField name="label"[^>]*/>', b"", pmml)
    with pytest.raises(ParityError, match="a predicted label"):
        check_parity(broken, pipeline, original.X)


def test_refused_model_is_not_saved(
    tmp_path: Path, pmml: bytes, original: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = pmml.replace(b'value="2.5"', b'value="6.5"', 1)
    monkeypatch.setattr(workflow, "export_pmml", lambda *_: broken)
    repository = ModelRepository(tmp_path)
    with pytest.raises(ParityError):
        workflow.train_model(original, TrainingParams(), repository)
    assert repository.names() == []
