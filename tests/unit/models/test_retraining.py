"""Retraining offline: which rows count, the fair comparison, and what gets promoted."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from models.dataset import ORIGINAL_FEATURES, Dataset
from models.errors import ModelsError
from models.labelled import LabelledExample
from models.parity import score_pmml
from models.pmml_schema import read_schema
from models.repository import ModelRepository
from models.retraining import (
    RetrainingError,
    RetrainOptions,
    compare,
    harvest,
    parse_duration,
    recipe_of,
    retrain,
)
from models.training import TrainingParams
from models.workflow import TrainingResult

MODEL = "breast-cancer"


def _example(index: int, scores: list[float], label: int | str) -> LabelledExample:
    return LabelledExample(
        f"r{index}",
        dict(zip(ORIGINAL_FEATURES, scores, strict=True)),
        {},
        str(label),
        index,
    )


def _training_rows(dataset: Dataset) -> list[LabelledExample]:
    """The training data as the replay stores it (a missing score is not stored)."""
    return [
        LabelledExample(
            f"t{index}",
            {
                n: v
                for n, v in zip(ORIGINAL_FEATURES, row, strict=True)
                if not math.isnan(v)
            },
            {},
            str(label),
            index,
        )
        for index, (row, label) in enumerate(
            zip(dataset.X.to_numpy(), dataset.y, strict=True)
        )
    ]


def _moved_world(count: int, seed: int = 7) -> list[LabelledExample]:
    """Uniform scores, malignant when clump thickness and bare nuclei are both >= 6."""
    rng = np.random.default_rng(seed)
    scores = rng.integers(1, 11, size=(count, 9)).astype(float)
    labels = ((scores[:, 0] >= 6) & (scores[:, 5] >= 6)).astype(int)
    return [
        _example(i, list(row), int(y)) for i, (row, y) in enumerate(zip(scores, labels))
    ]


@pytest.fixture
def repository(trained: TrainingResult, tmp_path: Path) -> ModelRepository:
    """A copy of the session's repository (version 1 current), free to write to."""
    root = tmp_path / "models"
    shutil.copytree(trained.saved.path.parent.parent, root)
    return ModelRepository(root)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("90m", 5400),
        ("12h", 43200),
        ("30d", 2_592_000),
        ("2w", 1_209_600),
        ("1.5h", 5400),
    ],
)
def test_durations_read_with_their_unit(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "30", "3x", "-1d", "0h", "d"])
def test_a_bad_duration_says_what_is_expected(text: str) -> None:
    with pytest.raises(
        RetrainingError, match="a positive number and a unit s, m, h, d or w"
    ):
        parse_duration(text)


def test_the_replayed_training_data_adds_nothing_and_live_twins_are_kept(
    original: Dataset,
) -> None:
    replay = _training_rows(original)
    first = original.X.iloc[0].tolist()
    twins = [
        _example(900, first, int(original.y.iloc[0])),
        _example(901, first, int(original.y.iloc[0])),
    ]
    bad = [_example(902, first, "malignant"), LabelledExample("r903", {}, {}, "1", 0)]
    got = harvest(original, [*replay, *twins, *bad])
    assert got.read == 699 + 4
    assert got.already_in_training_data == 699
    # the training data holds that row as often as it holds it: both live twins are new
    copies = int((original.X == original.X.iloc[0]).all(axis=1).sum())
    assert len(got.y) == 2 and copies >= 1
    assert got.unusable == {
        "label 'malignant' is not 0 or 1": 1,
        "no input of the model's stored": 1,
    }
    assert list(got.X.columns) == original.feature_names
    assert got.X.dtypes.tolist() == original.X.dtypes.tolist()


def test_a_missing_stored_input_stays_missing(original: Dataset) -> None:
    scores = {n: 3.0 for n in ORIGINAL_FEATURES if n != "bare_nuclei"}
    got = harvest(original, [LabelledExample("r", scores, {}, "1", 0)])
    assert math.isnan(got.X["bare_nuclei"].iloc[0])


def test_the_recipe_is_read_back_from_the_card(repository: ModelRepository) -> None:
    dataset, params = recipe_of(repository.current(MODEL))
    assert dataset.key == "wisconsin-original"
    assert params == TrainingParams(invalid_values="reject")


def test_a_model_without_a_recipe_or_with_changed_data_is_refused(
    repository: ModelRepository,
) -> None:
    card_path = repository.current(MODEL).path / "card.json"
    card = json.loads(card_path.read_text())
    card_path.write_text(
        json.dumps({**card, "data": {**card["data"], "sha256": "0" * 64}})
    )
    with pytest.raises(RetrainingError, match="the recipe cannot be repeated"):
        recipe_of(repository.current(MODEL))
    card_path.write_text(json.dumps({"name": MODEL, "version": 1}))
    with pytest.raises(RetrainingError, match="no recipe to retrain"):
        recipe_of(repository.current(MODEL))


def test_current_and_candidate_are_scored_on_the_same_live_rows(
    repository: ModelRepository, original: Dataset
) -> None:
    current = repository.current(MODEL)
    new = harvest(original, _moved_world(200))
    comparison = compare(
        original, TrainingParams(), current.pmml_path.read_bytes(), new, "accuracy"
    )
    assert comparison.holdout_rows == 50
    assert comparison.folds == 10
    # the current version's hold-out figure is its PMML's own answers on those rows
    _, holdout = train_test_split(
        np.arange(200), test_size=0.25, stratify=new.y, random_state=42
    )
    pmml = current.pmml_path.read_bytes()
    scored = score_pmml(pmml, new.X.iloc[holdout])
    answered = scored[read_schema(pmml).label_field()].astype(int).to_numpy()
    assert comparison.holdout["current"]["accuracy"] == pytest.approx(
        float((answered == new.y.iloc[holdout].to_numpy()).mean()), abs=1e-12
    )
    assert comparison.gain == comparison.candidate - comparison.current
    assert comparison.candidate > comparison.current


def test_one_class_cannot_be_compared(
    original: Dataset, repository: ModelRepository
) -> None:
    new = harvest(original, [e for e in _moved_world(300) if e.label == "0"])
    with pytest.raises(RetrainingError, match="at least 2 of each"):
        compare(
            original,
            TrainingParams(),
            repository.current(MODEL).pmml_path.read_bytes(),
            new,
            "roc_auc",
        )


def test_too_few_new_rows_train_nothing(
    repository: ModelRepository, original: Dataset
) -> None:
    result = retrain(
        repository,
        MODEL,
        [*_training_rows(original), *_moved_world(50)],
        RetrainOptions(min_labelled=51),
        window={},
    )
    assert result.outcome == "not trained: 50 new labelled rows < --min-labelled 51"
    assert result.saved is None
    assert [v.version for v in repository.versions(MODEL)] == [1]


def test_a_winner_is_promoted_with_a_card_naming_its_rows(
    repository: ModelRepository,
) -> None:
    result = retrain(
        repository,
        MODEL,
        _moved_world(300),
        RetrainOptions(),
        window={"since_s": 86400},
    )
    assert result.promoted and result.saved is not None
    assert repository.current_version(MODEL) == result.saved.version == 2
    section = result.saved.card["retraining"]
    assert section["window"] == {
        "since_s": 86400,
        "first_event_ms": 0,
        "last_event_ms": 299,
    }
    assert section["rows"]["added"] == 300
    assert section["rows"]["training_data"] == 699
    assert section["decision"]["action"] == "promote"
    assert result.saved.card["data"]["rows"] == 999


def test_a_small_gain_is_saved_but_not_promoted(repository: ModelRepository) -> None:
    result = retrain(
        repository, MODEL, _moved_world(300), RetrainOptions(min_gain=0.99), window={}
    )
    assert not result.promoted and result.saved is not None
    assert repository.current_version(MODEL) == 1
    assert "< min gain 0.9900" in result.outcome
    assert result.saved.card["retraining"]["decision"]["action"] == "keep current"


def test_a_winner_can_become_the_shadow_first(repository: ModelRepository) -> None:
    result = retrain(
        repository, MODEL, _moved_world(300), RetrainOptions(shadow=True), window={}
    )
    assert result.shadowed and not result.promoted
    assert repository.current_version(MODEL) == 1
    assert repository.shadow_version(MODEL) == 2


def test_an_imbalanced_window_is_not_promoted_unless_allowed_and_always_said(
    repository: ModelRepository,
) -> None:
    rows = _moved_world(1200)
    positives = [e for e in rows if e.label == "1"][:20]
    window = [
        *[e for e in rows if e.label == "0"][:600],
        *positives,
    ]  # 20 of 620: 3.2 %
    refused = retrain(
        repository, MODEL, window, RetrainOptions(min_gain=0.0), window={}
    )
    assert not refused.promoted
    assert "class-imbalanced window" in refused.outcome
    assert "--allow-imbalanced overrides" in refused.outcome
    allowed = retrain(
        repository,
        MODEL,
        window,
        RetrainOptions(min_gain=0.0, allow_imbalanced=True),
        window={},
    )
    assert allowed.promoted
    assert any("class-imbalanced window" in note for note in allowed.notes)
    assert allowed.saved is not None
    assert allowed.saved.card["retraining"]["decision"]["notes"] == allowed.notes


def test_errors_are_models_errors() -> None:
    assert issubclass(RetrainingError, ModelsError)


def test_a_missing_text_input_stored_as_empty_is_missing_again(
    birthwt: Dataset,
) -> None:
    texts = {"race": "", "smoke": "yes", "ht": "no", "ui": "no"}
    numbers = {"age": 30.0, "lwt": 120.0, "ptl": 0.0, "ftv": 1.0}
    got = harvest(birthwt, [LabelledExample("b", numbers, texts, "1", 0)])
    assert got.X["race"].iloc[0] is None
    assert got.X["smoke"].iloc[0] == "yes"
    assert got.X["age"].iloc[0] == 30.0


def test_the_replayed_birthwt_data_with_its_text_inputs_adds_nothing(
    birthwt: Dataset,
) -> None:
    stored = []
    for index, (row, label) in enumerate(
        zip(birthwt.X.itertuples(index=False), birthwt.y, strict=True)
    ):
        values = row._asdict()
        stored.append(
            LabelledExample(
                f"b{index}",
                {f.name: values[f.name] for f in birthwt.features if not f.categorical},
                {
                    f.name: values[f.name] or ""
                    for f in birthwt.features
                    if f.categorical
                },
                str(label),
                index,
            )
        )
    got = harvest(birthwt, stored)
    assert (got.read, got.already_in_training_data, len(got.y)) == (189, 189, 0)
