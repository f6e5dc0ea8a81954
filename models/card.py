"""The model card: what a saved model is, where it came from, how good it is.

A card answers, months later and without the training machine, "can I
reproduce and trust this model?": the data's sha256, algorithm and
parameters, the evaluation figures, the input schema the PMML declares,
when it was made and with which library versions.
"""

from __future__ import annotations

import datetime as dt
import platform
import re
import subprocess
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from models.dataset import Dataset
from models.drift import drift_reference
from models.parity import ParityReport
from models.pmml_schema import PmmlSchema
from models.training import ALGORITHMS, INVALID_VALUES, TrainingParams

__all__ = ["build_card", "library_versions"]


_LIBRARIES = ("scikit-learn", "sklearn2pmml", "pypmml", "numpy", "pandas", "matplotlib")


def _java_version() -> str | None:
    try:
        completed = subprocess.run(
            ["java", "-version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r'version "([^"]+)"', completed.stderr)
    return match.group(1) if match else None


def library_versions() -> dict[str, str | None]:
    """Versions of Python, Java (sklearn2pmml and pypmml run on it) and the ML libraries."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for library in _LIBRARIES:
        try:
            versions[library] = version(library)
        except PackageNotFoundError:
            versions[library] = None
    versions["java"] = _java_version()
    return versions


def build_card(
    dataset: Dataset,
    params: TrainingParams,
    metrics: dict[str, Any],
    schema: PmmlSchema,
    parity: ParityReport,
) -> dict[str, Any]:
    """The card.json content (the repository adds name and version)."""
    invalid_values = params.invalid_values_for(dataset)
    return {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data": {
            "dataset": dataset.key,
            "title": dataset.title,
            "source": dataset.source,
            "sha256": dataset.sha256,
            "rows": len(dataset.X),
            "cells_missing": dataset.missing_cells,
            "class_counts": {
                str(k): int(v) for k, v in dataset.y.value_counts().sort_index().items()
            },
            "target": f"{dataset.y.name}: 1 = {dataset.classes[1]}, 0 = {dataset.classes[0]}",
            "classes": list(dataset.classes),
        },
        "algorithm": params.algorithm,
        "algorithm_description": ALGORITHMS[params.algorithm],
        "seed": params.seed,
        "params": params.estimator_params(),
        "invalid_values": invalid_values,
        "invalid_values_meaning": INVALID_VALUES[invalid_values].meaning,
        "fitted_on": "all rows (the evaluation fitted separate pipelines on its training parts)",
        "metrics": {
            "holdout": metrics["holdout"]["metrics"],
            "cross_validation_mean": metrics["cross_validation"]["mean"],
            "cross_validation_folds": metrics["cross_validation"]["folds"],
        },
        "input_schema": [
            {
                "name": field.name,
                "type": field.data_type,
                "optype": field.optype,
                "valid_min": field.valid_min,
                "valid_max": field.valid_max,
                "values": list(field.values),
                "missing_value_treatment": field.missing_value_treatment,
                "missing_value_replacement": field.missing_value_replacement,
                "invalid_value_treatment": field.invalid_value_treatment,
            }
            for field in schema.inputs
        ],
        "outputs": schema.output_names,
        "parity": {
            "rows": parity.rows,
            "rows_with_missing_values": parity.rows_with_missing_values,
            "max_probability_difference": parity.max_probability_difference,
            "tolerance": parity.tolerance,
        },
        "library_versions": library_versions(),
        # what live data is compared with (tables/drift.py): bins and class mix
        "drift_reference": drift_reference(dataset),
    }
