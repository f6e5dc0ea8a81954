"""The two Wisconsin breast-cancer data sets the trainer knows, with their schema.

A data set here is more than a table: it also carries each input's valid
range and the treatment of values outside it, because those end up in the
PMML and from there in the stream's schema. Everything downstream reads the
feature list from a ``Dataset`` (and later from the PMML), never from a
constant, which is why the 30-feature diagnostic set can go through the same
code as the 9-feature original.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from models.errors import DatasetError

__all__ = [
    "DATASETS",
    "ORIGINAL_FEATURES",
    "ORIGINAL_PATH",
    "TARGET",
    "Dataset",
    "Feature",
    "load_dataset",
]

logger = logging.getLogger(__name__)

#: The vendored UCI file (see models/datasets/README.md for its provenance).
ORIGINAL_PATH = Path(__file__).with_name("datasets") / "breast-cancer-wisconsin.data"

#: The original set's inputs in file order; the reference's _c0.._c8 are these.
ORIGINAL_FEATURES: tuple[str, ...] = (
    "clump_thickness",
    "uniformity_of_cell_size",
    "uniformity_of_cell_shape",
    "marginal_adhesion",
    "single_epithelial_cell_size",
    "bare_nuclei",
    "bland_chromatin",
    "normal_nucleoli",
    "mitoses",
)

#: Name of the label in both data sets: 1 = malignant, 0 = benign.
TARGET = "malignant"

_UCI_BENIGN, _UCI_MALIGNANT = 2, 4


@dataclass(frozen=True)
class Feature:
    """One model input and the interval of values the model accepts for it."""

    name: str
    valid_min: float
    valid_max: float


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled table plus the schema its PMML will declare."""

    key: str
    title: str
    default_model_name: str
    features: tuple[Feature, ...]
    #: sklearn2pmml's spelling: "return_invalid" rejects a value outside the
    #: valid range, "as_is" scores it anyway (the range is then informative).
    invalid_value_treatment: str
    X: pd.DataFrame
    y: pd.Series
    sha256: str
    source: str

    @property
    def feature_names(self) -> list[str]:
        return [feature.name for feature in self.features]

    @property
    def missing_cells(self) -> int:
        return int(self.X.isna().sum().sum())


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_wisconsin_original(path: Path = ORIGINAL_PATH) -> Dataset:
    """UCI's 699 samples with cytology scores 1-10; 16 miss bare_nuclei and are kept."""
    columns = ["sample_code", *ORIGINAL_FEATURES, "class"]
    try:
        frame = pd.read_csv(path, header=None, names=columns, na_values="?")
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read the Wisconsin data at {path}: {exc}") from exc
    if frame.shape[1] != len(columns) or frame.empty:
        raise DatasetError(
            f"{path} is not in the UCI layout (11 comma-separated columns)"
        )
    unknown_classes = set(frame["class"].unique()) - {_UCI_BENIGN, _UCI_MALIGNANT}
    if unknown_classes:
        raise DatasetError(
            f"{path}: class must be 2 or 4, found {sorted(unknown_classes)}"
        )
    X = frame[list(ORIGINAL_FEATURES)].astype("float64")
    out_of_range = (X < 1) | (X > 10)
    if out_of_range.any().any():
        raise DatasetError(
            f"{path}: {int(out_of_range.sum().sum())} scores outside 1-10"
        )
    y = (frame["class"] == _UCI_MALIGNANT).astype("int64").rename(TARGET)
    return Dataset(
        key="wisconsin-original",
        title="Breast Cancer Wisconsin (Original), UCI",
        default_model_name="breast-cancer",
        features=tuple(Feature(name, 1.0, 10.0) for name in ORIGINAL_FEATURES),
        invalid_value_treatment="return_invalid",
        X=X,
        y=y,
        sha256=_sha256(path),
        source=str(path),
    )


def _snake_case(name: str) -> str:
    return re.sub(r"[^0-9a-z]+", "_", name.lower()).strip("_")


def load_wisconsin_diagnostic() -> Dataset:
    """scikit-learn's bundled 569 x 30 diagnostic set, relabelled so 1 = malignant.

    scikit-learn codes malignant as 0; it is flipped here so that both models
    mean the same thing by probability(1). Its inputs are unbounded
    measurements, so the declared interval is the observed minimum-maximum
    and a value outside it is scored as it is, not rejected.
    """
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    X = bunch.data.astype("float64")
    X.columns = [_snake_case(str(name)) for name in X.columns]
    y = (bunch.target == 0).astype("int64").rename(TARGET)
    csv = Path(
        str(importlib.resources.files("sklearn.datasets.data") / "breast_cancer.csv")
    )
    return Dataset(
        key="wisconsin-diagnostic",
        title="Breast Cancer Wisconsin (Diagnostic), scikit-learn load_breast_cancer",
        default_model_name="breast-cancer-diagnostic",
        features=tuple(
            Feature(name, float(X[name].min()), float(X[name].max()))
            for name in X.columns
        ),
        invalid_value_treatment="as_is",
        X=X,
        y=y,
        sha256=_sha256(csv),
        source=f"sklearn.datasets.load_breast_cancer ({csv.name})",
    )


#: data-set key (the ``--dataset`` choice) -> loader.
DATASETS: dict[str, Callable[[], Dataset]] = {
    "wisconsin-original": load_wisconsin_original,
    "wisconsin-diagnostic": load_wisconsin_diagnostic,
}


def load_dataset(key: str) -> Dataset:
    """The data set registered under ``key``."""
    try:
        loader = DATASETS[key]
    except KeyError:
        raise DatasetError(
            f"unknown data set {key!r}; choose one of {sorted(DATASETS)}"
        ) from None
    return loader()
