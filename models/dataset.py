"""The data sets the trainer knows, with their schema.

A data set here is more than a table: it also carries each input's valid
range (numeric inputs) or valid values (categorical inputs) and the default
treatment of values outside them, because those end up in the PMML and from
there in the stream's schema. Everything downstream reads the feature list
from a ``Dataset`` (and later from the PMML), never from a constant, which is
why the 30-feature diagnostic set and the birth-weight set with its string
categories go through the same code as the 9-feature original.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from models.errors import DatasetError

__all__ = [
    "BIRTHWT_INPUTS",
    "BIRTHWT_PATH",
    "DATASETS",
    "ORIGINAL_FEATURES",
    "ORIGINAL_PATH",
    "TARGET",
    "Dataset",
    "Feature",
    "load_dataset",
]


#: The vendored UCI file (see models/datasets/README.md for its provenance).
ORIGINAL_PATH = Path(__file__).with_name("datasets") / "breast-cancer-wisconsin.data"

#: The vendored MASS birthwt file (see models/datasets/README.md for its provenance).
BIRTHWT_PATH = Path(__file__).with_name("datasets") / "birthwt.data"

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

#: Name of the label in both breast-cancer data sets: 1 = malignant, 0 = benign.
TARGET = "malignant"
_MALIGNANT_CLASSES = ("benign", "malignant")

_UCI_BENIGN, _UCI_MALIGNANT = 2, 4


@dataclass(frozen=True)
class Feature:
    """One model input and the values the model accepts for it.

    A numeric input declares an interval (``valid_min``-``valid_max``); a
    categorical one its valid ``values``, the strings its PMML lists as the
    DataField's ``Value``s.
    """

    name: str
    valid_min: float | None = None
    valid_max: float | None = None
    values: tuple[str, ...] = ()

    @property
    def categorical(self) -> bool:
        return bool(self.values)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A labelled table plus the schema its PMML will declare."""

    key: str
    title: str
    default_model_name: str
    features: tuple[Feature, ...]
    #: The default treatment of a value outside the valid range or values, a
    #: ``--invalid-values`` choice (which overrides it): "reject" where the
    #: bounds are the measurement's own, "as-is" where they are only the
    #: observed minimum-maximum of many unbounded measurements.
    invalid_values: str
    X: pd.DataFrame
    y: pd.Series
    sha256: str
    source: str
    #: short names of classes 0 and 1 of ``y`` (1 is the positive class, the
    #: risk), for the card and the report's pictures
    classes: tuple[str, str] = _MALIGNANT_CLASSES

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
        invalid_values="reject",
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
        invalid_values="as-is",
        X=X,
        y=y,
        sha256=_sha256(csv),
        source=f"sklearn.datasets.load_breast_cancer ({csv.name})",
    )


#: birthwt's inputs in file order: numeric ones with no declared values,
#: categorical ones with the words models/datasets/README.md maps MASS's codes to.
_NO_YES = ("no", "yes")
BIRTHWT_INPUTS: dict[str, tuple[str, ...]] = {
    "age": (),
    "lwt": (),
    "race": ("white", "black", "other"),
    "smoke": _NO_YES,
    "ptl": (),
    "ht": _NO_YES,
    "ui": _NO_YES,
    "ftv": (),
}
BIRTHWT_TARGET = "low"


def load_birthwt(path: Path = BIRTHWT_PATH) -> Dataset:
    """MASS's 189 births, target ``low`` (birth weight below 2.5 kg); ``bwt`` is dropped.

    ``bwt`` is the birth weight itself, which defines ``low``: an input that
    gives the answer away. The numeric inputs are declared with the observed
    minimum-maximum as their interval (like the diagnostic set's, they have
    no natural bounds); the categorical ones with their words as strings, so
    that the PMML carries string categories and the stream sends the words.
    """
    categorical = [name for name, values in BIRTHWT_INPUTS.items() if values]
    try:
        frame = pd.read_csv(path, dtype=dict.fromkeys(categorical, "str"))
    except (OSError, ValueError) as exc:
        raise DatasetError(f"cannot read the birthwt data at {path}: {exc}") from exc
    missing = [c for c in (*BIRTHWT_INPUTS, BIRTHWT_TARGET) if c not in frame.columns]
    if missing or frame.empty:
        raise DatasetError(
            f"{path} is not the birthwt layout: no rows, or no column {missing}"
        )
    for name in categorical:
        unknown = set(frame[name].dropna()) - set(BIRTHWT_INPUTS[name])
        if unknown:
            raise DatasetError(
                f"{path}: {name} must be one of {list(BIRTHWT_INPUTS[name])}, "
                f"found {sorted(unknown)}"
            )
    if not set(frame[BIRTHWT_TARGET].unique()) <= {0, 1}:
        raise DatasetError(f"{path}: {BIRTHWT_TARGET} must be 0 or 1")
    X = frame[list(BIRTHWT_INPUTS)].copy()
    numeric = [name for name in BIRTHWT_INPUTS if name not in categorical]
    X[numeric] = X[numeric].astype("float64")
    X[categorical] = X[categorical].astype(object)
    return Dataset(
        key="birthwt",
        title="Low infant birth weight (MASS birthwt; Hosmer & Lemeshow, 1989)",
        default_model_name="birthwt",
        features=tuple(
            Feature(name, values=values)
            if values
            else Feature(name, float(X[name].min()), float(X[name].max()))
            for name, values in BIRTHWT_INPUTS.items()
        ),
        invalid_values="reject",
        X=X,
        y=frame[BIRTHWT_TARGET].astype("int64").rename(BIRTHWT_TARGET),
        sha256=_sha256(path),
        source=str(path),
        classes=("2.5 kg or more", "below 2.5 kg"),
    )


#: data-set key (the ``--dataset`` choice) -> loader.
DATASETS: dict[str, Callable[[], Dataset]] = {
    "wisconsin-original": load_wisconsin_original,
    "wisconsin-diagnostic": load_wisconsin_diagnostic,
    "birthwt": load_birthwt,
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
