"""The data sets load with the documented shape, labels and provenance."""

from __future__ import annotations

from pathlib import Path

import pytest

from models.dataset import (
    BIRTHWT_INPUTS,
    ORIGINAL_FEATURES,
    TARGET,
    Dataset,
    load_birthwt,
    load_dataset,
)
from models.errors import DatasetError


def test_original_keeps_all_699_rows_including_16_missing_bare_nuclei(
    original: Dataset,
) -> None:
    assert original.X.shape == (699, 9)
    assert list(original.X.columns) == list(ORIGINAL_FEATURES)
    assert original.X["bare_nuclei"].isna().sum() == 16
    assert original.missing_cells == 16


def test_original_labels_malignant_as_one(original: Dataset) -> None:
    assert original.y.name == TARGET
    assert original.y.value_counts().to_dict() == {0: 458, 1: 241}


def test_original_records_the_vendored_files_sha256(original: Dataset) -> None:
    assert (
        original.sha256
        == "402c585309c399237740f635ef9919dc512cca12cbeb20de5e563a4593f22b64"
    )


def test_diagnostic_has_30_snake_case_inputs_and_malignant_as_one() -> None:
    diagnostic = load_dataset("wisconsin-diagnostic")
    assert diagnostic.X.shape == (569, 30)
    assert diagnostic.feature_names[0] == "mean_radius"
    assert all(" " not in name for name in diagnostic.feature_names)
    assert diagnostic.y.value_counts().to_dict() == {0: 357, 1: 212}
    assert diagnostic.invalid_values == "as-is"


def test_unknown_dataset_is_a_clear_error() -> None:
    with pytest.raises(DatasetError, match="unknown data set 'iris'"):
        load_dataset("iris")


def test_birthwt_has_eight_inputs_with_words_for_its_categories(
    birthwt: Dataset,
) -> None:
    assert birthwt.X.shape == (189, 8)
    assert birthwt.feature_names == list(BIRTHWT_INPUTS)
    assert "bwt" not in birthwt.X.columns and "id" not in birthwt.X.columns
    assert birthwt.y.name == "low"
    assert birthwt.y.value_counts().to_dict() == {0: 130, 1: 59}
    assert birthwt.X["race"].value_counts().to_dict() == {
        "white": 96,
        "other": 67,
        "black": 26,
    }
    for name in ("smoke", "ht", "ui"):
        assert set(birthwt.X[name]) == {"no", "yes"}
    assert birthwt.X["age"].dtype == "float64"
    assert birthwt.invalid_values == "reject"
    assert (
        birthwt.sha256
        == "e9ecbe8c167a2812b320449c592f3a07c14325d4d177b7db7f53f934e63dcb7c"
    )


def test_birthwt_declares_values_for_categories_and_ranges_for_numbers(
    birthwt: Dataset,
) -> None:
    features = {feature.name: feature for feature in birthwt.features}
    assert features["race"].values == ("white", "black", "other")
    assert features["race"].categorical and not features["age"].categorical
    assert (features["age"].valid_min, features["age"].valid_max) == (14.0, 45.0)
    assert (features["ftv"].valid_min, features["ftv"].valid_max) == (0.0, 6.0)


def test_birthwt_with_an_unmapped_code_is_refused(tmp_path: Path) -> None:
    from models.dataset import BIRTHWT_PATH

    lines = BIRTHWT_PATH.read_text().splitlines()
    lines[1] = lines[1].replace(",black,", ",2,")
    broken = tmp_path / "birthwt.data"
    broken.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match=r"race must be one of .*found \['2'\]"):
        load_birthwt(broken)
