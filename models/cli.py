"""``riskstream train`` and ``riskstream models list|show|promote|shadow``.

Thin: flags in, progress and results out. The work is in ``models.workflow``
and ``models.repository``; every ``ModelsError`` becomes a one-line error
and exit status 1 instead of a traceback.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from core.settings import get_settings
from models.dataset import DATASETS, load_dataset
from models.errors import ModelsError
from models.repository import ModelRepository
from models.training import ALGORITHMS, INVALID_VALUES, TrainingParams

__all__ = [
    "models",
    "progress_printer",
    "repository_at",
    "repository_option",
    "train",
    "user_errors",
]


_DEFAULTS = TrainingParams()

repository_option = click.option(
    "--repository",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model repository folder [default: RISKSTREAM_MODEL_REPOSITORY, else data/models].",
)


def repository_at(path: Path | None) -> ModelRepository:
    return ModelRepository(path if path is not None else get_settings().repository_path)


@contextmanager
def user_errors() -> Iterator[None]:
    try:
        yield
    except ModelsError as exc:
        raise click.ClickException(exc.message) from exc


def progress_printer() -> Callable[[str], None]:
    started = time.perf_counter()

    def show(message: str) -> None:
        click.echo(f"[{time.perf_counter() - started:5.1f} s] {message}", err=True)

    return show


#: ``--dataset`` choice -> what it is (for --help); the keys are ``DATASETS``'.
_DATASET_HELP = {
    "wisconsin-original": "UCI's 699 rows x 9 cytology scores (1-10, 16 missing), "
    "model 'breast-cancer'",
    "wisconsin-diagnostic": "scikit-learn's 569 rows x 30 measurements, "
    "model 'breast-cancer-diagnostic'",
    "birthwt": "MASS's 189 births, low birth weight from 4 numeric and 4 categorical "
    "(string) inputs, model 'birthwt'",
}


@click.command(
    epilog="Defaults are a decision tree (max depth 5, min 6 rows per leaf, seed 42) on the "
    "original 9-input Wisconsin data, saved as model 'breast-cancer' and made current."
)
@click.option(
    "--dataset",
    type=click.Choice(list(DATASETS)),
    default="wisconsin-original",
    show_default=True,
    help="; ".join(f"{key}: {text}" for key, text in _DATASET_HELP.items()) + ".",
)
@click.option(
    "--algorithm",
    type=click.Choice(list(ALGORITHMS)),
    default=_DEFAULTS.algorithm,
    show_default=True,
    help="; ".join(f"{k}: {v}" for k, v in ALGORITHMS.items()) + ".",
)
@click.option(
    "--name",
    default=None,
    help="Model name in the repository [default: the data set's model name, see --dataset].",
)
@click.option(
    "--invalid-values",
    type=click.Choice(list(INVALID_VALUES)),
    default=None,
    help="What the model does with a value outside an input's valid range or values, "
    "written into every input's invalidValueTreatment: reject (returnInvalid: no "
    "prediction, the record is dead-lettered), as-is (asIs: scored as it is), as-missing "
    "(asMissing: scored as a missing value) [default: reject; as-is for "
    "wisconsin-diagnostic, whose ranges are only the observed min-max].",
)
@click.option(
    "--seed",
    type=int,
    default=_DEFAULTS.seed,
    show_default=True,
    help="Seed of the splits and the estimator: same data + flags + seed -> same PMML.",
)
@click.option(
    "--max-depth",
    type=click.IntRange(min=0),
    default=_DEFAULTS.max_depth,
    show_default=True,
    help="tree/forest: maximum depth; 0 = unlimited.",
)
@click.option(
    "--min-samples-leaf",
    type=click.IntRange(min=1),
    default=_DEFAULTS.min_samples_leaf,
    show_default=True,
    help="tree/forest: minimum training rows per leaf.",
)
@click.option(
    "--n-estimators",
    type=click.IntRange(min=1),
    default=_DEFAULTS.n_estimators,
    show_default=True,
    help="forest: number of trees.",
)
@click.option(
    "--C",
    "C",
    type=click.FloatRange(min=0, min_open=True),
    default=_DEFAULTS.C,
    show_default=True,
    help="logistic: inverse L2 regularisation strength.",
)
@click.option(
    "--promote/--no-promote",
    default=True,
    show_default=True,
    help="Make the new version current (servers hot-reload it).",
)
@repository_option
def train(
    dataset: str,
    algorithm: str,
    name: str | None,
    invalid_values: str | None,
    seed: int,
    max_depth: int,
    min_samples_leaf: int,
    n_estimators: int,
    C: float,
    promote: bool,
    repository: Path | None,
) -> None:
    """Train a model, evaluate it, export PMML, check parity, save it in the repository.

    Evaluation: stratified 25 % hold-out and stratified 10-fold cross-validation
    (accuracy, precision, recall, F1, ROC AUC, Brier score, confusion matrix),
    written to metrics.json and report.html with PNG pictures. The PMML is
    scored with pypmml on every row and must agree with scikit-learn (same
    label, probabilities within 1e-9), or nothing is saved.
    """
    from models.workflow import train_model

    params = TrainingParams(
        algorithm=algorithm,
        seed=seed,
        max_depth=max_depth or None,
        min_samples_leaf=min_samples_leaf,
        n_estimators=n_estimators,
        C=C,
        invalid_values=invalid_values,
    )
    with user_errors():
        target = repository_at(repository)
        result = train_model(
            load_dataset(dataset),
            params,
            target,
            name=name,
            promote=promote,
            progress=progress_printer(),
        )
    cv = result.evaluation.as_dict()["cross_validation"]["mean"]
    click.echo(
        f"{result.saved.ref}: 10-fold CV accuracy {cv['accuracy']:.4f}, ROC AUC "
        f"{cv['roc_auc']:.4f}, Brier {cv['brier']:.4f}; report {result.saved.path / 'report.html'}"
        f"{'' if promote else ' (not promoted)'}; {result.seconds:.1f} s"
    )


@click.group()
@repository_option
@click.pass_context
def models(ctx: click.Context, repository: Path | None) -> None:
    """List, show, promote and shadow models in the repository."""
    ctx.obj = repository_at(repository)


@models.command("list")
@click.pass_obj
def list_models(repository: ModelRepository) -> None:
    """Every model and version; '*' marks the current one, 's' the shadow."""
    with user_errors():
        names = repository.names()
        if not names:
            click.echo(f"no models in {repository.root} (run `riskstream train`)")
            return
        click.echo(
            f"{'':1} {'model':<28} {'algorithm':<9} {'dataset':<21} "
            f"{'CV acc':>7} {'CV AUC':>7}  created"
        )
        for name in names:
            marks = {
                repository.current_version(name): "*",
                repository.shadow_version(name): "s",
            }
            for saved in repository.versions(name):
                card = saved.card
                cv = card.get("metrics", {}).get("cross_validation_mean", {})
                click.echo(
                    f"{marks.get(saved.version, ' '):1} {saved.ref:<28} "
                    f"{card.get('algorithm', '?'):<9} {card.get('data', {}).get('dataset', '?'):<21} "
                    f"{cv.get('accuracy', float('nan')):>7.4f} {cv.get('roc_auc', float('nan')):>7.4f}"
                    f"  {card.get('created_at', '?')}"
                )


@models.command()
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the whole model card as JSON."
)
@click.pass_obj
def show(repository: ModelRepository, ref: str, as_json: bool) -> None:
    """Show a model's card; NAME alone means its current version."""
    with user_errors():
        saved = repository.resolve(ref)
        card = saved.card
        if as_json:
            click.echo(json.dumps(card, indent=2))
            return
        role = {
            repository.current_version(saved.name): " (current)",
            repository.shadow_version(saved.name): " (shadow)",
        }
        click.echo(f"{saved.ref}{role.get(saved.version, '')}")
        click.echo(f"  folder:    {saved.path}")
        click.echo(f"  created:   {card.get('created_at')}")
        click.echo(f"  algorithm: {card.get('algorithm')} {card.get('params')}")
        data = card.get("data", {})
        click.echo(
            f"  data:      {data.get('dataset')} ({data.get('rows')} rows), "
            f"sha256 {data.get('sha256')}"
        )
        for scope, figures in card.get("metrics", {}).items():
            if isinstance(figures, dict):
                shown = ", ".join(f"{k} {v:.4f}" for k, v in figures.items())
                click.echo(f"  {scope}: {shown}")
        click.echo(
            f"  invalid values: {card.get('invalid_values', '?')} "
            f"({card.get('invalid_values_meaning', 'not recorded')})"
        )
        click.echo(f"  inputs ({len(card.get('input_schema', []))}):")
        for field in card.get("input_schema", []):
            click.echo(
                f"    {field['name']:<28} {field['type']:<7} {_valid(field)} "
                f"missing: {field['missing_value_treatment']} "
                f"{field['missing_value_replacement']}, invalid: {field['invalid_value_treatment']}"
            )
        click.echo(f"  outputs:   {', '.join(card.get('outputs', []))}")


def _valid(field: dict[str, Any]) -> str:
    """An input's valid values ``{a|b}`` or interval ``[min, max]``, as the card records them."""
    if field.get("values"):
        return "{" + "|".join(field["values"]) + "}"
    return f"[{field['valid_min']:g}, {field['valid_max']:g}]"


def _name_and_version(ref: str) -> tuple[str, int]:
    """``"name:3"`` -> ("name", 3), else a usage error."""
    name, sep, version = ref.partition(":")
    if not sep or not version.isdigit():
        raise click.BadParameter(
            f"expected NAME:VERSION, got {ref!r}", param_hint="REF"
        )
    return name, int(version)


@models.command()
@click.argument("ref", metavar="NAME:VERSION")
@click.pass_obj
def promote(repository: ModelRepository, ref: str) -> None:
    """Make NAME:VERSION the current version of NAME (model servers hot-reload it).

    Promoting the shadow version ends the shadow (it is the current one now).
    """
    name, version = _name_and_version(ref)
    with user_errors():
        shadow = repository.shadow_version(name)
        repository.promote(name, version)
    click.echo(f"{name}: current version is now {version}")
    if shadow == version:
        click.echo(f"{name}: no shadow version any more (version {version} is current)")


@models.command()
@click.argument("ref", metavar="NAME[:VERSION]")
@click.option(
    "--off",
    is_flag=True,
    help="Stop shadowing: NAME alone, its SHADOW pointer removed.",
)
@click.pass_obj
def shadow(repository: ModelRepository, ref: str, off: bool) -> None:
    """Make NAME:VERSION the shadow of NAME's current version, or end it with NAME --off.

    Model servers following NAME load the shadow too (within
    RISKSTREAM_MODEL_POLL_INTERVAL_S) and score every request with both; the
    answer stays the current version's, the shadow's label and probabilities
    are stored beside it, and /stats shows how often the two agree. A shadow
    that fails to load or to score is reported and skipped: it never fails a
    request.
    """
    if off:
        if ":" in ref:
            raise click.BadParameter(
                f"--off takes the model NAME alone, got {ref!r}", param_hint="REF"
            )
        with user_errors():
            previous = repository.clear_shadow(ref)
        click.echo(
            f"{ref}: no shadow version"
            + (f" (was {previous})" if previous is not None else " (there was none)")
        )
        return
    name, version = _name_and_version(ref)
    with user_errors():
        repository.set_shadow(name, version)
        current = repository.current_version(name)
    click.echo(f"{name}: shadow version is now {version} (current version {current})")
