"""``riskstream retrain NAME``: read the ground truth from ClickHouse, retrain, compare, promote.

Thin, like the other commands: the rows come from the ClickHouse store
(:meth:`tables.clickhouse.ClickHouseSink.labelled_examples`), the work is
:func:`models.retraining.retrain`. ``--every`` repeats the run in the
foreground: a failed run (ClickHouse away, a parity failure) is logged and
the next one comes on schedule, because a scheduler's loop must outlive a
bad night.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any

import click

from core.settings import Settings, get_settings
from models.cli import progress_printer, repository_option
from models.errors import ModelsError
from models.labelled import LabelledExample
from models.repository import ModelRepository
from models.retraining import (
    METRICS,
    RetrainOptions,
    RetrainResult,
    parse_duration,
    retrain,
)
from tables.clickhouse import ClickHouseSink

__all__ = ["retrain_command"]

logger = logging.getLogger("riskstream.retrain")


class ReadError(Exception):
    """The labelled rows could not be read from ClickHouse."""


def _duration(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ModelsError as exc:
        raise click.BadParameter(exc.message) from exc


def _read(settings: Settings, name: str, since_ms: int | None) -> list[LabelledExample]:
    sink = ClickHouseSink.from_settings(settings)
    try:
        return asyncio.run(sink.labelled_examples(name, since_ms))
    except (*ClickHouseSink.transient, ValueError) as exc:
        raise ReadError(
            f"cannot read the labelled predictions of {name!r} from ClickHouse at "
            f"{sink.address} (database {sink.database}): {exc}"
        ) from exc


def _run_once(
    settings: Settings,
    repository: ModelRepository,
    name: str,
    options: RetrainOptions,
) -> RetrainResult:
    repository.current(name)  # an unknown model fails before the warehouse is asked
    now_ms = int(time.time() * 1000)
    since_ms = None if options.since_s is None else now_ms - int(options.since_s * 1000)
    examples = _read(settings, name, since_ms)
    window: dict[str, Any] = {
        "source": f"ClickHouse {settings.clickhouse_database}.labelled_predictions",
        "since_s": options.since_s,
        "event_time_from_ms": since_ms,
        "read_at_ms": now_ms,
    }
    return retrain(
        repository, name, examples, options, window=window, progress=progress_printer()
    )


def _summary(result: RetrainResult) -> str:
    """The run's one line: rows, the two figures, the verdict."""
    new = result.harvest
    rows = (
        f"{new.read} labelled rows read, {len(new.y)} new "
        f"({new.already_in_training_data} already in the training data"
        + (f", {sum(new.unusable.values())} unusable" if new.unusable else "")
        + ")"
    )
    return f"retrain {result.name}: {rows}; {result.outcome}"


@click.command("retrain")
@click.argument("name")
@click.option(
    "--since",
    "since_s",
    metavar="DURATION",
    callback=_duration,
    help="Only records whose event time lies within DURATION before now "
    "(e.g. 30d, 12h, 90m) [default: every labelled record].",
)
@click.option(
    "--min-labelled",
    type=click.IntRange(min=1),
    default=RetrainOptions.min_labelled,
    show_default=True,
    help="Train only from at least N new labelled rows (rows not already in the "
    "training data).",
)
@click.option(
    "--metric",
    type=click.Choice(sorted(METRICS)),
    default=RetrainOptions.metric,
    show_default=True,
    help="The figure the candidate must beat the current version on (cross-validation "
    "mean over the new rows).",
)
@click.option(
    "--min-gain",
    type=click.FloatRange(min=0.0),
    default=RetrainOptions.min_gain,
    show_default=True,
    help="How much higher the candidate's --metric must be to be promoted.",
)
@click.option(
    "--promote/--no-promote",
    default=True,
    show_default=True,
    help="Promote a winning candidate (servers hot-reload it); --no-promote only "
    "saves and compares.",
)
@click.option(
    "--shadow",
    is_flag=True,
    help="Make a winning candidate the shadow instead: servers score with it beside "
    "the current version until `riskstream models promote NAME:VERSION`.",
)
@click.option(
    "--allow-imbalanced",
    is_flag=True,
    help="Promote even when the rarer class is under 5 % of the new rows (said in the "
    "log and the card).",
)
@click.option(
    "--every",
    "every_s",
    metavar="DURATION",
    callback=_duration,
    help="Repeat in the foreground every DURATION (e.g. 1d), a log line per run; "
    "Ctrl-C stops.",
)
@repository_option
def retrain_command(
    name: str,
    since_s: float | None,
    min_labelled: int,
    metric: str,
    min_gain: float,
    promote: bool,
    shadow: bool,
    allow_imbalanced: bool,
    every_s: float | None,
    repository: Path | None,
) -> None:
    """Retrain model NAME on the labelled predictions stored in ClickHouse.

    Reads each labelled record once (inputs as stored, latest true label),
    adds the rows the training data does not hold to it, trains the current
    version's recipe, and scores the current version and the candidate on
    the same new rows (a stratified 25 % hold-out and up to 10 folds). The
    candidate is saved (parity gate included) and promoted only if it beats
    the current version by --min-gain on --metric. Exit status 0 when a run
    completes, promoted or not; 1 when it cannot run.
    """
    settings = get_settings()
    target = ModelRepository(repository or settings.repository_path)
    options = RetrainOptions(
        since_s=since_s,
        min_labelled=min_labelled,
        metric=metric,
        min_gain=min_gain,
        promote=promote,
        shadow=shadow,
        allow_imbalanced=allow_imbalanced,
    )
    if every_s is None:
        try:
            result = _run_once(settings, target, name, options)
        except (ModelsError, ReadError) as exc:
            raise click.ClickException(str(exc)) from exc
        click.echo(_summary(result))
        return
    _repeat(settings, target, name, options, every_s)


def _repeat(
    settings: Settings,
    repository: ModelRepository,
    name: str,
    options: RetrainOptions,
    every_s: float,
) -> None:
    """Run on schedule (start to start) until Ctrl-C; a failed run is logged, not fatal."""
    logger.info("retrain %s: every %.0f s, Ctrl-C stops", name, every_s)
    runs = 0
    try:
        while True:
            started = time.monotonic()
            runs += 1
            try:
                logger.info(
                    "run %d: %s",
                    runs,
                    _summary(_run_once(settings, repository, name, options)),
                )
            except (ModelsError, ReadError) as exc:
                logger.error("run %d failed: %s", runs, exc)
            wait_s = max(0.0, every_s - (time.monotonic() - started))
            logger.info("run %d: next run in %.0f s", runs, wait_s)
            time.sleep(wait_s)
    except KeyboardInterrupt:
        logger.info("retrain %s: stopped after %d runs", name, runs)
