"""Live drift per window and model version, counted in ClickHouse over the stored predictions.

Every stored prediction counts (labelled or not), each record once
(``FINAL``), in the windows of :class:`tables.quality.Windows` (event time).
SQL counts the predicted labels (:func:`label_mix_query`) and, for a model
version whose card holds training bins, the records per input and bin
(:func:`feature_bins_query`, the bins of :mod:`models.drift`); Python
turns the counts into shares and PSI against the card
(:func:`drift_figures`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from models.drift import DriftReference, psi
from tables.predictions import TABLE, quote_identifier, sql_string
from tables.quality import Windows

__all__ = ["MISSING_BIN", "drift_figures", "feature_bins_query", "label_mix_query"]

#: The bin number the query gives a missing value (NaN).
MISSING_BIN = -1


def label_mix_query(
    database: str, windows: Windows, label: str = "predicted_label"
) -> str:
    """Per window, model, version and predicted label: records."""
    return (
        f"SELECT {windows.start_expression()} AS window_start, model_name,\n"
        f"    model_version, {label} AS label, count() AS records\n"
        f"FROM {quote_identifier(database)}.{TABLE} FINAL\n"
        f"WHERE {windows.condition()} AND {label} != ''\n"
        "GROUP BY window_start, model_name, model_version, label\n"
        "ORDER BY window_start, model_name, model_version, label"
    )


def feature_bins_query(
    database: str,
    windows: Windows,
    model: str,
    version: str,
    reference: DriftReference,
) -> str:
    """Per window, input and bin: records of one model version (bin -1: missing)."""
    cases = ", ".join(
        f"feature = {sql_string(name)}, "
        f"arrayCount(e -> e < value, [{', '.join(repr(c) for c in bins.cuts)}])"
        if bins.cuts
        else f"feature = {sql_string(name)}, 0"
        for name, bins in reference.features.items()
    )
    names = ", ".join(sql_string(name) for name in reference.features)
    return (
        "SELECT window_start, feature, bin, count() AS records FROM (\n"
        f"    SELECT {windows.start_expression()} AS window_start, feature,\n"
        f"        multiIf(isNaN(value), {MISSING_BIN}, {cases}, {MISSING_BIN}) AS bin\n"
        f"    FROM {quote_identifier(database)}.{TABLE} FINAL\n"
        "    ARRAY JOIN feature_names AS feature, feature_values AS value\n"
        f"    WHERE {windows.condition()} AND model_name = {sql_string(model)}\n"
        f"        AND model_version = {sql_string(version)} AND feature IN ({names})\n"
        ")\n"
        "GROUP BY window_start, feature, bin ORDER BY window_start, feature, bin"
    )


def _shares(counts: Mapping[Any, int], keys: Iterable[Any]) -> list[float]:
    total = sum(counts.values())
    return [counts.get(key, 0) / total if total else 0.0 for key in keys]


def drift_figures(
    labels: Mapping[str, int],
    bins: Mapping[str, Mapping[int, int]],
    reference: DriftReference,
) -> dict[str, Any]:
    """One window's drift: predicted-label mix PSI and per input PSI and missing ratio.

    ``labels``: predicted label -> records; ``bins``: input -> bin -> records.
    A PSI is None where the window has no record for it.
    """
    classes = sorted(set(reference.class_mix) | set(labels))
    records = sum(labels.values())
    features: dict[str, Any] = {}
    for name, feature in reference.features.items():
        counts = bins.get(name, {})
        present = {b: n for b, n in counts.items() if b != MISSING_BIN}
        seen = sum(counts.values())
        features[name] = {
            "psi": psi(
                feature.proportions, _shares(present, range(len(feature.cuts) + 1))
            )
            if present
            else None,
            "records": seen,
            "missing_ratio": counts.get(MISSING_BIN, 0) / seen if seen else None,
            "training_missing_ratio": feature.missing_ratio,
        }
    return {
        "records": records,
        "predicted_label_records": dict(sorted(labels.items())),
        "prediction_mix_psi": psi(
            [reference.class_mix.get(c, 0.0) for c in classes],
            _shares(labels, classes),
        )
        if records
        else None,
        "features": features,
    }


def add_counts(target: dict[Any, int], counts: Mapping[Any, int]) -> None:
    for key, value in counts.items():
        target[key] = target.get(key, 0) + value


def gather_bins(rows: Iterable[Sequence[Any]]) -> dict[int, dict[str, dict[int, int]]]:
    """window start -> input -> bin -> records, from :func:`feature_bins_query`'s rows."""
    windows: dict[int, dict[str, dict[int, int]]] = {}
    for window_start, feature, bin_, records in rows:
        features = windows.setdefault(int(window_start), {})
        features.setdefault(str(feature), {})[int(bin_)] = int(records)
    return windows
