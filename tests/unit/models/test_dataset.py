"""The two data sets load with the documented shape, labels and provenance."""

from __future__ import annotations

import pytest

from models.dataset import ORIGINAL_FEATURES, TARGET, Dataset, load_dataset
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
    assert diagnostic.invalid_value_treatment == "as_is"


def test_unknown_dataset_is_a_clear_error() -> None:
    with pytest.raises(DatasetError, match="unknown data set 'iris'"):
        load_dataset("iris")
