"""Same data + parameters + seed -> the same PMML, byte for byte apart from the timestamp."""

from __future__ import annotations

import re
from pathlib import Path

from models.dataset import Dataset
from models.repository import ModelRepository
from models.training import TrainingParams
from models.workflow import TrainingResult, train_model

_TIMESTAMP = re.compile(rb"<Timestamp>[^<]*</Timestamp>")


def _without_timestamp(pmml: bytes) -> bytes:
    assert len(_TIMESTAMP.findall(pmml)) == 1
    return _TIMESTAMP.sub(b"", pmml)


def test_a_second_run_writes_the_same_pmml(
    tmp_path: Path, original: Dataset, trained: TrainingResult, pmml: bytes
) -> None:
    again = train_model(original, TrainingParams(), ModelRepository(tmp_path))
    assert _without_timestamp(again.saved.pmml_path.read_bytes()) == _without_timestamp(
        pmml
    )
    assert again.saved.card["metrics"] == trained.saved.card["metrics"]


def test_another_seed_changes_the_forest(tmp_path: Path, original: Dataset) -> None:
    runs = [
        train_model(
            original,
            TrainingParams(algorithm="forest", n_estimators=5, seed=seed),
            ModelRepository(tmp_path / str(seed)),
        )
        for seed in (1, 2)
    ]
    first, second = (_without_timestamp(r.saved.pmml_path.read_bytes()) for r in runs)
    assert first != second
