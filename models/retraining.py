"""Retraining on live ground truth: the loop the reference left to a scheduled script.

A retrain adds the stored, labelled records to the data set the current
version was trained on and fits the current version's recipe again. Whether
the new version replaces the current one is decided on rows neither model
has seen: the live-labelled rows that are new (not copies of training rows)
are split, stratified, into a hold-out part and cross-validation folds; the
candidate is fitted on the training data plus the other live rows, the
current version's PMML scores the same test rows as it is served. The
current version was fitted on the training data, so a test on those rows
would flatter it; on live rows both models meet the patients they will
score.

The ClickHouse side (which rows, read how) is :mod:`tables`'; this module
takes the rows as :class:`LabelledExample` values and the repository, so
that it runs the same from the command, a test or a notebook.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedKFold, train_test_split

from models.dataset import Dataset, load_dataset
from models.errors import ModelsError
from models.evaluation import Scores, score
from models.labelled import LabelledExample
from models.parity import score_pmml
from models.pmml_schema import read_schema
from models.repository import ModelRepository, ModelVersion
from models.training import TrainingParams, fit_pipeline
from models.workflow import CV_FOLDS, HOLDOUT_TEST_SIZE, train_model

__all__ = [
    "METRICS",
    "MIN_CLASS_SHARE",
    "Comparison",
    "Harvest",
    "RetrainOptions",
    "RetrainResult",
    "RetrainingError",
    "compare",
    "harvest",
    "parse_duration",
    "recipe_of",
    "retrain",
]


class RetrainingError(ModelsError):
    """A retrain cannot run: no recipe, unknown metric or duration, a changed data set."""


#: ``--metric`` choice -> its key in :meth:`models.evaluation.Scores.metrics`.
METRICS: dict[str, str] = {
    "roc_auc": "roc_auc",
    "accuracy": "accuracy",
    "sensitivity": "recall",
}

#: Below this share of the new rows, the rarer class makes the window imbalanced.
MIN_CLASS_SHARE = 0.05

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_duration(text: str) -> float:
    """Seconds in ``"45s"``, ``"90m"``, ``"12h"``, ``"30d"`` or ``"2w"``."""
    match = _DURATION.match(text)
    if not match or float(match.group(1)) <= 0:
        raise RetrainingError(
            f"invalid duration {text!r}: a positive number and a unit s, m, h, d or w "
            "(e.g. 30d, 12h)"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def recipe_of(version: ModelVersion) -> tuple[Dataset, TrainingParams]:
    """The data set and parameters ``version`` was trained with, read from its card.

    Refused for a model not trained by ``riskstream train`` (a PMML a team
    brought has no recipe to repeat) and when the vendored data set is no
    longer the file the card names (the retrain would not be the recipe).
    """
    card = version.card
    data = card.get("data") or {}
    if "algorithm" not in card or "dataset" not in data:
        raise RetrainingError(
            f"model {version.ref} was not trained by `riskstream train` (its card names "
            "no data set and algorithm): there is no recipe to retrain"
        )
    dataset = load_dataset(data["dataset"])
    if data.get("sha256") != dataset.sha256:
        raise RetrainingError(
            f"model {version.ref} was trained on {data['dataset']} with sha256 "
            f"{data.get('sha256')}, but that data set is now {dataset.sha256}: "
            "the recipe cannot be repeated"
        )
    params = card.get("params") or {}
    known = {f.name for f in dataclasses.fields(TrainingParams)}
    recipe = TrainingParams(
        algorithm=card["algorithm"],
        seed=int(card.get("seed", TrainingParams.seed)),
        invalid_values=card.get("invalid_values"),
        **{k: v for k, v in params.items() if k in known and k != "seed"},
    )
    return dataset, recipe


def _label_value(label: str) -> int | None:
    try:
        value = float(label)
    except ValueError:
        return None
    return int(value) if value in (0.0, 1.0) else None


def _row_key(values: Iterable[Any], label: int) -> tuple[Hashable, ...]:
    """A row as a hashable key; every missing value is the same (NaN != NaN)."""
    return (
        *(None if isinstance(v, float) and math.isnan(v) else v for v in values),
        label,
    )


@dataclass(frozen=True)
class Harvest:
    """The labelled rows a retrain can use, and what was set aside and why."""

    X: pd.DataFrame
    y: pd.Series
    read: int
    #: rows equal to a training row (inputs and label): the replay of the training data
    already_in_training_data: int
    #: reason -> rows
    unusable: dict[str, int]
    first_event_ms: int | None
    last_event_ms: int | None

    @property
    def class_counts(self) -> dict[str, int]:
        counts = self.y.value_counts()
        return {str(c): int(counts.get(c, 0)) for c in (0, 1)}

    @property
    def minority_share(self) -> float:
        return min(self.class_counts.values()) / len(self.y) if len(self.y) else 0.0

    @property
    def imbalanced(self) -> bool:
        return self.minority_share < MIN_CLASS_SHARE

    def sha256(self) -> str:
        """Of the rows added (CSV of inputs and label), for the card."""
        table = self.X.assign(**{self.y.name or "label": self.y.to_numpy()})
        return hashlib.sha256(table.to_csv(index=False).encode("utf-8")).hexdigest()


def harvest(dataset: Dataset, examples: Iterable[LabelledExample]) -> Harvest:
    """Turn stored rows into ``dataset``'s columns, keeping only rows it does not hold yet.

    A live row equal to a training row (every input and the label) counts
    against that one training row: a replay of the training data adds
    nothing, while two live patients alike are both kept, as two training
    rows alike would be.
    """
    in_training = Counter(
        _row_key(row, int(label))
        for row, label in zip(
            dataset.X.itertuples(index=False, name=None), dataset.y, strict=True
        )
    )
    names = dataset.feature_names
    rows: list[list[Any]] = []
    labels: list[int] = []
    unusable: Counter[str] = Counter()
    read = already = 0
    times: list[int] = []
    for example in examples:
        read += 1
        label = _label_value(example.label)
        if label is None:
            unusable[f"label {example.label!r} is not 0 or 1"] += 1
            continue
        values: list[Any] = [
            # the pipeline stores a missing text input as ''
            example.texts.get(f.name) or None
            if f.categorical
            else float(example.numbers.get(f.name, math.nan))
            for f in dataset.features
        ]
        if all(v is None or (isinstance(v, float) and math.isnan(v)) for v in values):
            unusable["no input of the model's stored"] += 1
            continue
        key = _row_key(values, label)
        if in_training[key] > 0:
            in_training[key] -= 1
            already += 1
            continue
        rows.append(values)
        labels.append(label)
        times.append(example.event_time_ms)
    X = pd.DataFrame(rows, columns=names)
    if len(X):
        X = X.astype(dataset.X.dtypes.to_dict())
    return Harvest(
        X=X,
        y=pd.Series(labels, name=dataset.y.name, dtype="int64"),
        read=read,
        already_in_training_data=already,
        unusable=dict(unusable),
        first_event_ms=min(times, default=None),
        last_event_ms=max(times, default=None),
    )


def _pmml_scores(pmml: bytes, X: pd.DataFrame, y: pd.Series) -> Scores:
    """The served model's answers on ``X``; a row it does not score counts as wrong."""
    schema = read_schema(pmml)
    label_field = schema.label_field()
    probability_field = schema.probability_fields().get("1")
    if label_field is None or probability_field is None:
        raise RetrainingError(
            "the current version's PMML has no predicted label or probability of class 1"
        )
    scored = score_pmml(pmml, X.reset_index(drop=True))
    y_true = y.to_numpy()
    p_positive = pd.to_numeric(scored[probability_field], errors="coerce").to_numpy()
    labels = pd.to_numeric(scored[label_field], errors="coerce").to_numpy()
    unscored = np.isnan(labels) | np.isnan(p_positive)
    y_pred = np.where(unscored, 1 - y_true, np.nan_to_num(labels)).astype("int64")
    p_positive = np.where(unscored, 1.0 - y_true, p_positive)
    return Scores(y_true=y_true, y_pred=y_pred, p_positive=p_positive)


@dataclass(frozen=True)
class Comparison:
    """Current version and candidate on the same live rows: hold-out and CV figures."""

    metric: str
    holdout_rows: int
    folds: int
    #: "current" / "candidate" -> metric -> value
    holdout: dict[str, dict[str, float]]
    cross_validation: dict[str, dict[str, float]]

    @property
    def current(self) -> float:
        return self.cross_validation["current"][METRICS[self.metric]]

    @property
    def candidate(self) -> float:
        return self.cross_validation["candidate"][METRICS[self.metric]]

    @property
    def gain(self) -> float:
        """Candidate minus current on ``metric``, cross-validation mean (what decides)."""
        return self.candidate - self.current

    def as_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "decided_on": f"{self.folds}-fold cross-validation mean over the new live rows",
            "holdout_rows": self.holdout_rows,
            "folds": self.folds,
            "holdout": self.holdout,
            "cross_validation_mean": self.cross_validation,
            "gain": self.gain,
        }


def _mean(scores: list[Scores]) -> dict[str, float]:
    per_fold = [s.metrics() for s in scores]
    return {m: float(np.mean([f[m] for f in per_fold])) for m in per_fold[0]}


def compare(
    dataset: Dataset,
    params: TrainingParams,
    current_pmml: bytes,
    new: Harvest,
    metric: str,
    on_step: Callable[[str], None] = lambda message: None,
) -> Comparison:
    """Score current and candidate on the new rows: a stratified hold-out, then k folds.

    For each test part the candidate is fitted on the training data plus
    the new rows outside it. ``k`` is at most ``CV_FOLDS`` and at most the
    rarer class's count, so that every fold holds both classes.
    """
    if metric not in METRICS:
        raise RetrainingError(
            f"unknown metric {metric!r}; choose one of {sorted(METRICS)}"
        )
    rarer = min(new.class_counts.values())
    folds = min(CV_FOLDS, rarer)
    if folds < 2:
        raise RetrainingError(
            f"the new labelled rows hold {new.class_counts} per class: comparing "
            "needs at least 2 of each"
        )

    def fitted_without(test: np.ndarray) -> Any:
        keep = np.setdiff1d(np.arange(len(new.y)), test)
        X = pd.concat([dataset.X, new.X.iloc[keep]], ignore_index=True)
        y = pd.concat([dataset.y, new.y.iloc[keep]], ignore_index=True)
        return fit_pipeline(dataset, params, X, y)

    # The current version answers each row alike whichever part it tests: scored once.
    served = _pmml_scores(current_pmml, new.X, new.y)

    def both_on(test: np.ndarray) -> tuple[Scores, Scores]:
        X, y = new.X.iloc[test], new.y.iloc[test]
        current = Scores(
            served.y_true[test], served.y_pred[test], served.p_positive[test]
        )
        return current, score(fitted_without(test), X, y)

    rows = np.arange(len(new.y))
    _, holdout_rows = train_test_split(
        rows, test_size=HOLDOUT_TEST_SIZE, stratify=new.y, random_state=params.seed
    )
    holdout = both_on(holdout_rows)
    on_step(f"comparison: hold-out of {len(holdout_rows)} new rows scored by both")
    current_folds: list[Scores] = []
    candidate_folds: list[Scores] = []
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=params.seed)
    for done, (_, test) in enumerate(splitter.split(new.X, new.y), start=1):
        current_scores, candidate_scores = both_on(test)
        current_folds.append(current_scores)
        candidate_folds.append(candidate_scores)
        on_step(f"comparison: fold {done}/{folds} scored by both")
    return Comparison(
        metric=metric,
        holdout_rows=len(holdout_rows),
        folds=folds,
        holdout={"current": holdout[0].metrics(), "candidate": holdout[1].metrics()},
        cross_validation={
            "current": _mean(current_folds),
            "candidate": _mean(candidate_folds),
        },
    )


@dataclass(frozen=True)
class RetrainOptions:
    """The command's flags: which rows, and what the candidate must show to be promoted."""

    since_s: float | None = None
    min_labelled: int = 100
    metric: str = "roc_auc"
    min_gain: float = 0.005
    promote: bool = True
    #: make a winning candidate the shadow instead of the current version
    shadow: bool = False
    #: promote from a window where the rarer class is under MIN_CLASS_SHARE
    allow_imbalanced: bool = False


@dataclass
class RetrainResult:
    """What one run read, compared, saved and decided; ``outcome`` is the one-line verdict."""

    name: str
    current: ModelVersion
    harvest: Harvest
    outcome: str
    comparison: Comparison | None = None
    saved: ModelVersion | None = None
    promoted: bool = False
    shadowed: bool = False
    notes: list[str] = field(default_factory=list)


def _verdict(
    comparison: Comparison, new: Harvest, options: RetrainOptions
) -> tuple[bool, str, list[str]]:
    """(candidate wins, the reason in words, notes that must be said)."""
    notes = []
    metric = (
        f"{comparison.metric} {comparison.candidate:.4f} vs {comparison.current:.4f}"
    )
    wins = comparison.gain > 0 and comparison.gain >= options.min_gain
    reason = (
        f"{metric}: gain {comparison.gain:+.4f} "
        f"{'>=' if wins else '<'} min gain {options.min_gain:.4f}"
    )
    if wins and new.imbalanced:
        note = (
            f"class-imbalanced window: class counts {new.class_counts}, the rarer "
            f"class is {new.minority_share:.1%} of the new rows (< {MIN_CLASS_SHARE:.0%})"
        )
        notes.append(note)
        if not options.allow_imbalanced:
            return False, f"{reason}, but {note}; --allow-imbalanced overrides", notes
    return wins, reason, notes


def retrain(
    repository: ModelRepository,
    name: str,
    examples: Iterable[LabelledExample],
    options: RetrainOptions,
    *,
    window: Mapping[str, Any],
    progress: Callable[[str], None] = lambda message: None,
) -> RetrainResult:
    """One retrain of ``name``'s current version on ``examples``; see the module's docstring.

    Nothing is trained from fewer than ``options.min_labelled`` new rows.
    A saved candidate that does not win stays saved and unpromoted, its
    card saying why. ``ParityError`` (nothing saved) if its PMML does not
    score like its pipeline. ``window`` (the rows' selection) goes into the card.
    """
    current = repository.current(name)
    dataset, params = recipe_of(current)
    new = harvest(dataset, examples)
    progress(
        f"data: {new.read} labelled rows read, {new.already_in_training_data} already "
        f"in the training data, {sum(new.unusable.values())} unusable, {len(new.y)} new "
        f"(class counts {new.class_counts})"
    )
    for reason, count in sorted(new.unusable.items()):
        progress(f"data: {count} rows set aside: {reason}")
    result = RetrainResult(name, current, new, outcome="")
    if len(new.y) < options.min_labelled:
        result.outcome = (
            f"not trained: {len(new.y)} new labelled rows < --min-labelled "
            f"{options.min_labelled}"
        )
        return result
    result.comparison = comparison = compare(
        dataset, params, current.pmml_path.read_bytes(), new, options.metric, progress
    )
    wins, reason, result.notes = _verdict(comparison, new, options)
    holdout = comparison.holdout
    key = METRICS[comparison.metric]
    progress(
        f"comparison: {reason} ({comparison.folds}-fold CV); hold-out of "
        f"{comparison.holdout_rows}: {holdout['candidate'][key]:.4f} vs "
        f"{holdout['current'][key]:.4f}"
    )
    for note in result.notes:
        progress(f"warning: {note}")

    combined = dataclasses.replace(
        dataset,
        title=f"{dataset.title} + {len(new.y)} live-labelled rows",
        X=pd.concat([dataset.X, new.X], ignore_index=True),
        y=pd.concat([dataset.y, new.y], ignore_index=True),
        source=f"{dataset.source} + ClickHouse labelled predictions of {name}",
    )
    action = (
        "shadow"
        if wins and options.promote and options.shadow
        else "promote"
        if wins and options.promote
        else "keep current"
    )
    card_section = {
        "from_version": current.ref,
        "window": {
            **window,
            "first_event_ms": new.first_event_ms,
            "last_event_ms": new.last_event_ms,
        },
        "rows": {
            "training_data": len(dataset.X),
            "labelled_read": new.read,
            "already_in_training_data": new.already_in_training_data,
            "unusable": new.unusable,
            "added": len(new.y),
            "added_class_counts": new.class_counts,
            "added_sha256": new.sha256(),
        },
        "comparison": comparison.as_dict(),
        "decision": {"action": action, "reason": reason, "notes": result.notes},
    }
    training = train_model(
        combined,
        params,
        repository,
        name=name,
        promote=False,
        progress=progress,
        card_extra={"retraining": card_section},
    )
    result.saved = training.saved
    if action == "promote":
        repository.promote(name, training.saved.version)
        result.promoted = True
        result.outcome = f"promoted {training.saved.ref} over {current.ref}: {reason}"
    elif action == "shadow":
        repository.set_shadow(name, training.saved.version)
        result.shadowed = True
        result.outcome = (
            f"{training.saved.ref} is the shadow of {current.ref}: {reason}"
        )
    else:
        why = f"--no-promote, though it would be: {reason}" if wins else reason
        result.outcome = (
            f"saved {training.saved.ref}, not promoted ({why}); "
            f"{current.ref} stays current"
        )
    return result
