"""The readable evaluation report: one HTML page and its PNG pictures.

Kept apart from the figures (``evaluation``) because how a report looks
changes for other reasons than what is measured. Pictures are drawn on
bare matplotlib ``Figure`` objects (Agg canvas), never through pyplot, so no
display and no global figure state are involved.
"""

from __future__ import annotations

import html
import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from sklearn.metrics import roc_curve

from models.evaluation import METRICS, Evaluation, Scores
from models.training import CLASSIFIER_STEP, INVALID_VALUES, model_columns

__all__ = ["REPORT_FILE", "feature_importances", "render_report"]


REPORT_FILE = "report.html"


def feature_importances(pipeline: Any) -> tuple[dict[str, float], str]:
    """Model column -> importance, and what "importance" means for this estimator.

    Per column the estimator sees, so a categorical input shows one bar per
    value (``race=black``): a coefficient belongs to one value, and a tree's
    importance of an input is the sum of its values' bars.
    """
    names = model_columns(pipeline)
    classifier = pipeline.named_steps[CLASSIFIER_STEP]
    if hasattr(classifier, "feature_importances_"):
        values = classifier.feature_importances_
        meaning = "mean decrease in Gini impurity"
    else:
        values = np.abs(classifier.coef_[0])
        meaning = "|coefficient| on standardised inputs"
    return {
        name: float(value) for name, value in zip(names, values, strict=True)
    }, meaning


def _png(figure: Figure) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, metadata={"Software": None})
    return buffer.getvalue()


def _roc_png(curves: dict[str, Scores]) -> bytes:
    figure = Figure(figsize=(5, 5))
    axes = figure.subplots()
    for label, scores in curves.items():
        fpr, tpr, _ = roc_curve(scores.y_true, scores.p_positive)
        auc = scores.metrics()["roc_auc"]
        axes.plot(fpr, tpr, label=f"{label} (AUC {auc:.3f})")
    axes.plot([0, 1], [0, 1], linestyle=":", color="grey", label="chance")
    axes.set(
        xlabel="false positive rate",
        ylabel="true positive rate (recall)",
        title="ROC curve",
    )
    axes.legend(loc="lower right")
    figure.tight_layout()
    return _png(figure)


def _confusion_png(matrices: dict[str, list[list[int]]], classes: list[str]) -> bytes:
    figure = Figure(figsize=(4.5 * len(matrices), 4))
    all_axes = figure.subplots(1, len(matrices))
    for axes, (label, matrix) in zip(
        np.atleast_1d(all_axes), matrices.items(), strict=True
    ):
        axes.imshow(matrix, cmap="Blues")
        counts = np.asarray(matrix)
        for (row, column), count in np.ndenumerate(counts):
            colour = "white" if count > counts.max() / 2 else "black"
            axes.text(
                column, row, f"{count} rows", ha="center", va="center", color=colour
            )
        axes.set(
            xticks=[0, 1],
            yticks=[0, 1],
            xticklabels=classes,
            yticklabels=classes,
            xlabel="predicted",
            ylabel="true",
            title=label,
        )
    figure.tight_layout()
    return _png(figure)


def _importances_png(importances: dict[str, float], meaning: str) -> bytes:
    ordered = sorted(importances.items(), key=lambda item: item[1])
    figure = Figure(figsize=(6, 0.3 * len(ordered) + 1.2))
    axes = figure.subplots()
    axes.barh([name for name, _ in ordered], [value for _, value in ordered])
    axes.set(xlabel=meaning, title="feature importances")
    figure.tight_layout()
    return _png(figure)


def _table(rows: list[list[str]], header: list[str]) -> str:
    head = "".join(f"<th>{html.escape(cell)}</th>" for cell in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def render_report(
    title: str,
    evaluation: Evaluation,
    importances: dict[str, float],
    importance_meaning: str,
    card: dict[str, Any],
) -> dict[str, bytes]:
    """File name -> content: report.html and the PNGs it shows."""
    metrics = evaluation.as_dict()
    cv = metrics["cross_validation"]
    holdout = metrics["holdout"]
    assert evaluation.out_of_fold is not None
    files = {
        "roc.png": _roc_png(
            {
                "hold-out": evaluation.holdout,
                "10-fold CV, out of fold, pooled": evaluation.out_of_fold,
            }
        ),
        "confusion_matrix.png": _confusion_png(
            {
                f"hold-out ({holdout['test_rows']} rows)": holdout["confusion_matrix"],
                f"{cv['folds']}-fold CV, out of fold": cv[
                    "confusion_matrix_out_of_fold"
                ],
            },
            card["data"]["classes"],
        ),
        "feature_importances.png": _importances_png(importances, importance_meaning),
    }
    metric_rows = [
        [
            name,
            f"{holdout['metrics'][name]:.4f}",
            f"{cv['mean'][name]:.4f} ± {cv['std'][name]:.4f}",
            meaning,
        ]
        for name, meaning in METRICS.items()
    ]
    schema_rows = [
        [
            field["name"],
            field["type"],
            " | ".join(field["values"])
            if field["values"]
            else f"{field['valid_min']:g} to {field['valid_max']:g}",
            f"{field['missing_value_treatment']} ({field['missing_value_replacement']})",
            field["invalid_value_treatment"],
        ]
        for field in card["input_schema"]
    ]
    params = ", ".join(f"{k}={v}" for k, v in card["params"].items())
    data = card["data"]
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body {{ font-family: sans-serif; max-width: 60em; margin: 2em auto; line-height: 1.4; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }}
img {{ max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }}
</style></head><body>
<h1>{html.escape(title)}</h1>
<p>{html.escape(card["algorithm_description"])} ({html.escape(params)}), seed {card["seed"]},
trained on <b>{html.escape(data["title"])}</b>: {data["rows"]} rows,
{data["cells_missing"]} missing cells, sha256 <code>{data["sha256"]}</code>.
Created {html.escape(card["created_at"])}.</p>
<h2>Evaluation</h2>
<p>Positive class: 1 = {html.escape(data["classes"][1])} ({html.escape(data["target"])}). Stratified hold-out ({holdout["test_size"]:.0%} of rows,
{holdout["test_rows"]} rows) and stratified {cv["folds"]}-fold cross-validation (mean ± standard
deviation over folds). Each figure comes from a pipeline fitted on training rows only; the exported
model is the same recipe fitted on all rows.</p>
{_table(metric_rows, ["metric", "hold-out", f"{cv['folds']}-fold CV", "meaning"])}
<img src="roc.png" alt="ROC curves">
<img src="confusion_matrix.png" alt="confusion matrices">
<img src="feature_importances.png" alt="feature importances">
<h2>Input schema (as declared in the PMML)</h2>
{_table(schema_rows, ["input", "type", "valid range or values", "missing value", "invalid value"])}
<p>Invalid values (<code>--invalid-values {html.escape(card["invalid_values"])}</code>):
{html.escape(INVALID_VALUES[card["invalid_values"]].meaning)}.</p>
<h2>Parity gate</h2>
<p>PMML (pypmml) and scikit-learn agreed on all {card["parity"]["rows"]} rows
({card["parity"]["rows_with_missing_values"]} with a missing value): same label, largest
probability difference {card["parity"]["max_probability_difference"]:.2e}
(tolerance {card["parity"]["tolerance"]:g}).</p>
</body></html>
"""
    files[REPORT_FILE] = page.encode("utf-8")
    return files
