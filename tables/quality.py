"""Live quality per window and model version, computed in ClickHouse over ``labelled_predictions``.

ClickHouse is the record of truth: the figures come from the stored rows
(each prediction once, with its record's latest label), so they are right
for labels that arrived after their window closed, with any number of
workers and after restarts. A window is the stats' tumbling window
(``RISKSTREAM_STATS_WINDOW_S``, aligned to multiples of it since the
epoch) over the prediction's **event time**; the windows kept are those
starting within ``RISKSTREAM_STATS_RETENTION_S`` of now.

ClickHouse 18.16 has no ``arrayAUC``, so SQL gives what it can, counts
and sums (:func:`confusion_query`), grouped calibration bins
(:func:`calibration_query`) and positives/negatives per distinct score
(:func:`score_counts_query`), and Python finishes: ROC AUC by the rank-sum
formula with mid-ranks for ties (:func:`roc_auc_from_counts`, equal to
scikit-learn's ``roc_auc_score``).

Every query reads the prediction columns a :class:`ScoreColumns` names, so
another model's answer stored beside the current one (a shadow's label
and probabilities) is evaluated by the same code.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tables.predictions import COLUMNS, LABELLED_VIEW, quote_identifier, sql_string

__all__ = [
    "CALIBRATION_EDGES",
    "CURRENT",
    "CURRENT_BESIDE_SHADOW",
    "SHADOW",
    "QualityCounts",
    "ScoreColumns",
    "Windows",
    "calibration_query",
    "confusion_query",
    "quality_figures",
    "roc_auc_from_counts",
    "score_counts_query",
]

#: Inner edges of the calibration table's 10 bins: [0, 0.1), [0.1, 0.2), ..., [0.9, 1].
CALIBRATION_EDGES: tuple[float, ...] = tuple(k / 10 for k in range(1, 10))


@dataclass(frozen=True)
class ScoreColumns:
    """Which stored columns hold a model's answer: version, label and class probabilities."""

    version: str = "model_version"
    label: str = "predicted_label"
    probabilities: str = "probabilities"
    probability_labels: str = "probability_labels"
    #: Only the rows where this column is not empty (e.g. ``shadow_label``: the records
    #: the shadow scored too, so both versions are judged on the same records).
    scored_by: str = ""

    def __post_init__(self) -> None:
        for column in (
            self.version,
            self.label,
            self.probabilities,
            self.probability_labels,
            *([self.scored_by] if self.scored_by else []),
        ):
            if column not in COLUMNS:
                raise ValueError(f"no such prediction column: {column!r}")


#: The current model's answer, as the pipeline stores it.
CURRENT = ScoreColumns()

#: The shadow version's answer (``riskstream models shadow``), parallel to the current's classes.
SHADOW = ScoreColumns(
    version="shadow_version", label="shadow_label", probabilities="shadow_probabilities"
)

#: The current version's answer on the records the shadow scored too: its side of the comparison.
CURRENT_BESIDE_SHADOW = ScoreColumns(scored_by=SHADOW.label)


@dataclass(frozen=True)
class Windows:
    """Which windows: their width and the first window's start (epoch seconds)."""

    width_s: int
    first_start_s: int

    @classmethod
    def retained(cls, width_s: int, retention_s: int, now_s: float) -> Windows:
        """The windows starting within ``retention_s`` of ``now_s``, as the stats keep them."""
        return cls(width_s, math.ceil((now_s - retention_s) / width_s) * width_s)

    def start_expression(self) -> str:
        """A row's window start in epoch seconds, by its event time."""
        return f"intDiv(event_time_ms, {self.width_s * 1000}) * {self.width_s}"

    def condition(self) -> str:
        return f"event_time_ms >= {self.first_start_s * 1000}"


def _rows_of(
    database: str, columns: ScoreColumns, windows: Windows, positive: str
) -> str:
    """Each labelled prediction's window, model, version, truth (1/0), prediction (1/0) and P(positive)."""
    pos = sql_string(positive)
    c = columns
    return (
        f"SELECT {windows.start_expression()} AS window_start, model_name,\n"
        f"    {c.version} AS version, toUInt8(label = {pos}) AS actual,\n"
        f"    toUInt8({c.label} = {pos}) AS predicted,\n"
        f"    toUInt8({c.label} = label) AS correct,\n"
        f"    if(has({c.probability_labels}, {pos}),\n"
        f"       {c.probabilities}[indexOf({c.probability_labels}, {pos})], nan) AS p\n"
        f"FROM {quote_identifier(database)}.{LABELLED_VIEW}\n"
        f"WHERE {windows.condition()} AND {c.label} != '' AND label != ''"
        + (f" AND {c.scored_by} != ''" if c.scored_by else "")
    )


_KEYS = "window_start, model_name, version"


def confusion_query(
    database: str, columns: ScoreColumns, windows: Windows, positive: str = "1"
) -> str:
    """Per window, model and version: labelled, correct, actual/predicted positives and negatives, Brier sum."""
    return (
        f"SELECT {_KEYS}, count() AS labelled, sum(correct) AS correct,\n"
        "    sum(actual) AS positives, sum(actual * predicted) AS true_positives,\n"
        "    sum((1 - actual) * (1 - predicted)) AS true_negatives,\n"
        "    sum(toUInt8(NOT isNaN(p))) AS scored,\n"
        "    sum(if(isNaN(p), 0, (p - actual) * (p - actual))) AS brier_sum\n"
        f"FROM ({_rows_of(database, columns, windows, positive)})\n"
        f"GROUP BY {_KEYS} ORDER BY {_KEYS}"
    )


def calibration_query(
    database: str, columns: ScoreColumns, windows: Windows, positive: str = "1"
) -> str:
    """Per window, model, version and probability bin: records, sum of P(positive), positives."""
    edges = ", ".join(repr(edge) for edge in CALIBRATION_EDGES)
    return (
        f"SELECT {_KEYS}, arrayCount(e -> e <= p, [{edges}]) AS bin,\n"
        "    count() AS records, sum(p) AS predicted_sum, sum(actual) AS positives\n"
        f"FROM ({_rows_of(database, columns, windows, positive)})\n"
        "WHERE NOT isNaN(p)\n"
        f"GROUP BY {_KEYS}, bin ORDER BY {_KEYS}, bin"
    )


def score_counts_query(
    database: str, columns: ScoreColumns, windows: Windows, positive: str = "1"
) -> str:
    """Per window, model, version and distinct P(positive): positives and negatives (for ROC AUC)."""
    return (
        f"SELECT {_KEYS}, p, sum(actual) AS positives, sum(1 - actual) AS negatives\n"
        f"FROM ({_rows_of(database, columns, windows, positive)})\n"
        "WHERE NOT isNaN(p)\n"
        f"GROUP BY {_KEYS}, p ORDER BY {_KEYS}, p"
    )


def roc_auc_from_counts(counts: Iterable[tuple[float, int, int]]) -> float | None:
    """ROC AUC from (score, positives, negatives): the rank-sum formula, ties at mid-rank.

    The share of (positive, negative) pairs the score orders right, a tie
    counting half: what ``sklearn.metrics.roc_auc_score`` gives. None
    without both classes.
    """
    pairs_right = 0.0
    negatives_below = 0
    positives = negatives = 0
    merged: dict[float, list[int]] = {}
    for score, pos, neg in counts:
        entry = merged.setdefault(float(score), [0, 0])
        entry[0] += int(pos)
        entry[1] += int(neg)
    for score in sorted(merged):
        pos, neg = merged[score]
        pairs_right += pos * (negatives_below + neg / 2)
        negatives_below += neg
        positives += pos
        negatives += neg
    if not positives or not negatives:
        return None
    return pairs_right / (positives * negatives)


@dataclass
class QualityCounts:
    """What the queries gave for one window (or the totals) of one model version."""

    labelled: int = 0
    correct: int = 0
    positives: int = 0
    true_positives: int = 0
    true_negatives: int = 0
    scored: int = 0
    brier_sum: float = 0.0
    #: bin -> [records, sum of P(positive), positives]
    calibration: dict[int, list[float]] | None = None
    #: score -> [positives, negatives]
    scores: dict[float, list[int]] | None = None

    def add_confusion(self, row: Sequence[Any]) -> None:
        labelled, correct, positives, tp, tn, scored, brier = row
        self.labelled += int(labelled)
        self.correct += int(correct)
        self.positives += int(positives)
        self.true_positives += int(tp)
        self.true_negatives += int(tn)
        self.scored += int(scored)
        self.brier_sum += float(brier)

    def add_bin(self, row: Sequence[Any]) -> None:
        bin_, records, predicted_sum, positives = row
        bins = self.calibration = self.calibration or {}
        entry = bins.setdefault(int(bin_), [0, 0.0, 0])
        entry[0] += int(records)
        entry[1] += float(predicted_sum)
        entry[2] += int(positives)

    def add_score(self, row: Sequence[Any]) -> None:
        score, positives, negatives = row
        scores = self.scores = self.scores or {}
        entry = scores.setdefault(float(score), [0, 0])
        entry[0] += int(positives)
        entry[1] += int(negatives)


def _ratio(part: float, whole: float) -> float | None:
    return part / whole if whole else None


def quality_figures(counts: QualityCounts) -> dict[str, Any]:
    """The figures of one window: ratios in [0, 1] (None where undefined), counts in records."""
    negatives = counts.labelled - counts.positives
    bins = counts.calibration or {}
    edges = (0.0, *CALIBRATION_EDGES, 1.0)
    return {
        "labelled_records": counts.labelled,
        "positive_records": counts.positives,
        "negative_records": negatives,
        "accuracy": _ratio(counts.correct, counts.labelled),
        "sensitivity": _ratio(counts.true_positives, counts.positives),
        "specificity": _ratio(counts.true_negatives, negatives),
        "roc_auc": roc_auc_from_counts(
            (score, pos, neg) for score, (pos, neg) in (counts.scores or {}).items()
        ),
        "brier_score": _ratio(counts.brier_sum, counts.scored),
        "calibration": [
            {
                "lower": edges[k],
                "upper": edges[k + 1],
                "records": int(bins[k][0]) if k in bins else 0,
                "mean_predicted": _ratio(bins[k][1], bins[k][0]) if k in bins else None,
                "observed_rate": _ratio(bins[k][2], bins[k][0]) if k in bins else None,
            }
            for k in range(len(edges) - 1)
        ],
    }


Key = tuple[int, str, str]


def gather(
    confusion: Iterable[Sequence[Any]],
    calibration: Iterable[Sequence[Any]],
    scores: Iterable[Sequence[Any]],
) -> dict[Key, QualityCounts]:
    """(window start, model, version) -> its counts, from the three queries' rows."""
    windows: dict[Key, QualityCounts] = {}

    def of(row: Sequence[Any]) -> QualityCounts:
        key = (int(row[0]), str(row[1]), str(row[2]))
        return windows.setdefault(key, QualityCounts())

    for row in confusion:
        of(row).add_confusion(row[3:])
    for row in calibration:
        of(row).add_bin(row[3:])
    for row in scores:
        of(row).add_score(row[3:])
    return windows


def totals(
    windows: Mapping[Key, QualityCounts],
) -> dict[tuple[str, str], QualityCounts]:
    """(model, version) -> the counts of all its windows added up."""
    summed: dict[tuple[str, str], QualityCounts] = {}
    for (_, model, version), counts in windows.items():
        total = summed.setdefault((model, version), QualityCounts())
        total.add_confusion(
            (
                counts.labelled,
                counts.correct,
                counts.positives,
                counts.true_positives,
                counts.true_negatives,
                counts.scored,
                counts.brier_sum,
            )
        )
        for bin_, (records, predicted_sum, positives) in (
            counts.calibration or {}
        ).items():
            total.add_bin((bin_, records, predicted_sum, positives))
        for score, (pos, neg) in (counts.scores or {}).items():
            total.add_score((score, pos, neg))
    return summed
