"""Drift: the training distribution a model card keeps, and the population stability index.

At training time each numeric input's values are cut at their deciles
(:func:`cut_points`) and the card keeps the cut points, the share of the
training values in each bin and the share of missing values, plus the
training class mix (:func:`drift_reference`). Live, the same bins are
counted over a window's stored values and compared with :func:`psi`.

Bins: with cut points ``c1 < c2 < ... < ck`` the bins are ``(-inf, c1]``,
``(c1, c2]``, ..., ``(ck, +inf)``: a value's bin is the number of cut
points below it (``numpy.searchsorted(cuts, x, side="left")``, in SQL
``arrayCount(e -> e < x, cuts)``). The cut points are training values
(the ``inverted_cdf`` deciles, duplicates dropped, the maximum dropped),
so every bin holds training values, even for inputs of a few integer
scores. Missing values are not binned: their share is kept apart
(``missing_ratio``), so a change in how often a value is missing does not
swamp the PSI of the values present.

PSI = sum over bins of ``(a - e) * ln(a / e)``, ``a`` the live share and
``e`` the training share of a bin, each at least :data:`EPSILON` (an empty
bin would make the logarithm infinite). 0 means the same distribution;
the usual reading is < 0.1 stable, 0.1-0.25 a moderate shift, > 0.25 a
major shift.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from models.dataset import Dataset

__all__ = [
    "DECILES",
    "EPSILON",
    "DriftReference",
    "FeatureBins",
    "bin_counts",
    "cut_points",
    "drift_reference",
    "psi",
    "reference_from_card",
]

#: The floor of a bin's share in the PSI: an empty bin counts as this share.
EPSILON = 1e-4

#: Where the training values are cut (deciles).
DECILES = tuple(k / 10 for k in range(1, 10))

#: The card's key of the drift reference.
CARD_KEY = "drift_reference"


def cut_points(values: Sequence[float] | np.ndarray) -> list[float]:
    """The training deciles of the values present, each a training value, without duplicates or the maximum."""
    present = np.asarray(values, dtype=float)
    present = present[~np.isnan(present)]
    if not len(present):
        return []
    quantiles = np.quantile(present, DECILES, method="inverted_cdf")
    top = float(present.max())
    return sorted({float(q) for q in quantiles if float(q) < top})


def bin_counts(
    values: Sequence[float] | np.ndarray, cuts: Sequence[float]
) -> tuple[list[int], int]:
    """(records per bin, missing records) of ``values`` cut at ``cuts``."""
    array = np.asarray(values, dtype=float)
    missing = np.isnan(array)
    bins = np.searchsorted(np.asarray(cuts, dtype=float), array[~missing], "left")
    counts = np.bincount(bins, minlength=len(cuts) + 1)
    return [int(c) for c in counts], int(missing.sum())


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """The population stability index of shares ``actual`` against ``expected`` (same bins)."""
    if len(expected) != len(actual):
        raise ValueError(f"{len(expected)} expected bins, {len(actual)} actual")
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        e, a = max(e, EPSILON), max(a, EPSILON)
        total += (a - e) * math.log(a / e)
    return total


@dataclass(frozen=True)
class FeatureBins:
    """One numeric input's training bins: cut points, share per bin, share missing."""

    cuts: tuple[float, ...]
    proportions: tuple[float, ...]
    missing_ratio: float


@dataclass(frozen=True)
class DriftReference:
    """What live data is compared with: per numeric input its bins, and the class mix."""

    features: Mapping[str, FeatureBins]
    class_mix: Mapping[str, float]


def _shares(counts: Sequence[int]) -> list[float]:
    total = sum(counts)
    return [c / total if total else 0.0 for c in counts]


def drift_reference(dataset: Dataset) -> dict[str, Any]:
    """The card's ``drift_reference``: bins of every numeric input over all training rows, and the class mix."""
    features: dict[str, Any] = {}
    for feature in dataset.features:
        if feature.categorical:
            continue
        values = dataset.X[feature.name].to_numpy(dtype=float)
        cuts = cut_points(values)
        counts, missing = bin_counts(values, cuts)
        features[feature.name] = {
            "cut_points": cuts,
            "proportions": _shares(counts),
            "missing_ratio": missing / len(values) if len(values) else 0.0,
        }
    classes = dataset.y.astype(str).value_counts().sort_index()
    total = int(classes.sum())
    return {
        "bins": "per numeric input, cut at its training deciles c1 < ... < ck: "
        "(-inf, c1], (c1, c2], ..., (ck, +inf); missing values apart (missing_ratio)",
        "rows": len(dataset.X),
        "features": features,
        "class_mix": {str(k): int(v) / total for k, v in classes.items()},
    }


def reference_from_card(card: Mapping[str, Any]) -> DriftReference | str:
    """The card's reference, or why there is none (an older card, a PMML from another tool)."""
    saved = card.get(CARD_KEY)
    if not isinstance(saved, Mapping) or not saved.get("features"):
        return (
            "the model card has no training bins (a card older than drift, or a "
            "model trained elsewhere): retrain with riskstream to get them"
        )
    try:
        return DriftReference(
            features={
                name: FeatureBins(
                    tuple(map(float, entry["cut_points"])),
                    tuple(map(float, entry["proportions"])),
                    float(entry["missing_ratio"]),
                )
                for name, entry in saved["features"].items()
            },
            class_mix={str(k): float(v) for k, v in saved["class_mix"].items()},
        )
    except (KeyError, TypeError, ValueError) as exc:
        return f"the model card's training bins are malformed: {exc!r}"
