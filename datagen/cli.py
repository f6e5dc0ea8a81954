"""``riskstream datagen``: produce feature records to the feature topic."""

from __future__ import annotations

import asyncio
import re
import signal
from collections.abc import Iterator, Sequence
from pathlib import Path

import click

from core.progress import Progress
from core.security import model_client_ssl
from core.settings import Settings, get_settings
from datagen.generator import (
    Block,
    FieldOverride,
    FieldValues,
    GeneratorConfig,
    GeneratorReport,
    Row,
    as_row,
    check_csv_values,
    field_ranges,
    generate,
    random_rows,
    read_csv_records,
    replay_rows,
)
from datagen.schema import dataset_for, schema_from_repository, schema_from_servers
from models.errors import ModelsError
from models.records import FeatureSchema

__all__ = ["datagen", "parse_field_options"]


_FIELD_OPTION = re.compile(
    r"^(?P<name>[^.=\s]+)\.(?:(?P<bound>min|max)=(?P<number>\S+)|values=(?P<values>.+))$"
)


def parse_field_options(options: tuple[str, ...]) -> dict[str, FieldOverride]:
    """``("ptl.min=1", "ptl.max=3", "race.values=white|black")`` -> one override per input.

    Only the option's shape is checked here; whether the values suit the
    input's type is the schema's to say (``field_ranges``).
    """
    given: dict[str, dict[str, float | tuple[str, ...]]] = {}
    for option in options:
        match = _FIELD_OPTION.match(option)
        if match is None:
            raise click.BadParameter(
                f"{option!r}: expected NAME.min=VALUE, NAME.max=VALUE or NAME.values=A|B|C",
                param_hint="--field",
            )
        parts = given.setdefault(match["name"], {})
        if match["values"] is not None:
            values = tuple(match["values"].split("|"))
            if "" in values:
                raise click.BadParameter(
                    f"{option!r}: an empty value between the '|'", param_hint="--field"
                )
            parts["values"] = values
            continue
        try:
            parts[match["bound"]] = float(match["number"])
        except ValueError:
            raise click.BadParameter(
                f"{option!r}: {match['number']!r} is not a number", param_hint="--field"
            ) from None
    return {
        name: FieldOverride(
            low=_float(parts.get("min")),
            high=_float(parts.get("max")),
            values=_texts(parts.get("values")),
        )
        for name, parts in given.items()
    }


def _float(value: float | tuple[str, ...] | None) -> float | None:
    return value if isinstance(value, float) else None


def _texts(value: float | tuple[str, ...] | None) -> tuple[str, ...] | None:
    return value if isinstance(value, tuple) else None


async def _schema(settings: Settings, source: str, model: str | None) -> FeatureSchema:
    if model is None and source in ("auto", "server"):
        schema = await schema_from_servers(
            settings.model_server_urls,
            settings.model_name,
            settings.model_client_token,
            model_client_ssl(settings),
        )
        if schema is not None:
            return schema
        if source == "server":
            raise click.ClickException(
                f"no model server in RISKSTREAM_MODEL_SERVERS ({settings.model_servers}) "
                "gave the model's schema"
            )
    try:
        return schema_from_repository(settings.repository_path, model)
    except ModelsError as error:
        raise click.ClickException(error.message) from None


def _dataset_replay(schema: FeatureSchema, config: GeneratorConfig) -> Iterator[Block]:
    """``--replay``: the rows of the data set whose inputs are the model's."""
    try:
        dataset = dataset_for(schema)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    rows = [as_row(values) for values in dataset.X.to_numpy().tolist()]
    if config.format == "csv":
        _check_csv(schema, rows)
    if config.count is None:
        config.count = len(rows)
    click.echo(f"replaying {dataset.title}: {config.count} records", err=True)
    return replay_rows(rows, [str(label) for label in dataset.y.tolist()])


def _csv_replay(
    path: Path,
    label_column: str | None,
    id_column: str | None,
    schema: FeatureSchema,
    config: GeneratorConfig,
) -> Iterator[Block]:
    """``--from-csv``: the file's rows, typed by the model's schema."""
    try:
        table = read_csv_records(path, schema, label_column, id_column)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    if config.format == "csv":
        _check_csv(schema, table.rows)
    if config.count is None:
        config.count = len(table.rows)
    click.echo(f"replaying {path}: {config.count} records", err=True)
    return replay_rows(*table)


def _random(
    fields: tuple[str, ...], seed: int | None, schema: FeatureSchema, fmt: str
) -> Iterator[Block]:
    """Random rows within the model's ranges and values, or the --field overrides."""
    try:
        draws = field_ranges(schema, parse_field_options(fields))
        if fmt == "csv":
            for name, draw in zip(schema.names, draws, strict=True):
                if isinstance(draw, FieldValues):
                    check_csv_values(name, draw.values)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--field") from None
    return random_rows(draws, seed)


def _check_csv(schema: FeatureSchema, rows: Sequence[Row]) -> None:
    """Refuse, before anything is sent, a replay whose strings a CSV line cannot carry."""
    try:
        for index, name in enumerate(schema.names):
            check_csv_values(name, (row[index] for row in rows))
    except ValueError as error:
        raise click.ClickException(str(error)) from None


async def _produce(config: GeneratorConfig, rows: Iterator[Block]) -> GeneratorReport:
    """Send ``rows`` with a progress line until done, Ctrl-C or SIGTERM."""
    progress = Progress()

    def show(produced: int, elapsed_s: float) -> None:
        progress.update(
            f"produced {produced:,} records in {elapsed_s:.0f} s "
            f"({produced / max(elapsed_s, 1e-9):,.0f} records/s)"
        )

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        return await generate(config, rows, show, stop)
    finally:
        progress.done()


@click.command()
@click.option(
    "--count",
    type=click.IntRange(min=0),
    default=None,
    help="Records to produce (default: forever; in a replay, its rows once).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Records per second (default: as fast as possible).",
)
@click.option(
    "--replay",
    is_flag=True,
    help="Replay the data set's rows in order, with the true label (JSON).",
)
@click.option(
    "--from-csv",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    metavar="FILE",
    help="Replay the rows of a CSV file with a header row: the columns named as the "
    "model's inputs, typed by its schema (other columns ignored; an empty cell is a "
    "missing value).",
)
@click.option(
    "--label-column",
    default=None,
    metavar="NAME",
    help="--from-csv: the column holding the true label, sent with each record.",
)
@click.option(
    "--id-column",
    default=None,
    metavar="NAME",
    help="--from-csv: the column holding the record id [default: <run id>-<sequence>].",
)
@click.option(
    "--labels-delay",
    "labels_delay_s",
    type=click.FloatRange(min=0),
    default=None,
    metavar="SECONDS",
    help="Send each record without its true label, and the label to the labels topic "
    "(RISKSTREAM_LABELS_TOPIC) SECONDS later; with --replay, or --from-csv and "
    "--label-column.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default=None,
    help="csv: the reference's feature line; json: record id, event time, named inputs, "
    "label [default: csv; json with --from-csv].",
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="NAME.min=V|NAME.max=V|NAME.values=A|B",
    help="Bound of one numeric input's random values, or the values to draw one input's "
    "from (repeatable), like datagen's fields.X.min/max; a categorical input's values "
    "default to those the model declares.",
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="Seed of the random rows (reproducible runs).",
)
@click.option(
    "--schema-from",
    type=click.Choice(["auto", "server", "repository"]),
    default="auto",
    show_default=True,
    help="Where the model's inputs come from: a model server, the repository's PMML, or the first that answers.",
)
@click.option(
    "--model",
    default=None,
    metavar="NAME[:VERSION]",
    help="Take the inputs from this repository model's PMML.",
)
def datagen(
    count: int | None,
    rate: float | None,
    replay: bool,
    from_csv: Path | None,
    label_column: str | None,
    id_column: str | None,
    labels_delay_s: float | None,
    fmt: str | None,
    fields: tuple[str, ...],
    seed: int | None,
    schema_from: str,
    model: str | None,
) -> None:
    """Produce feature records to the feature topic (RISKSTREAM_FEATURE_TOPIC).

    Random integers within each numeric input's valid range and random
    declared values of each categorical one (or --field bounds and values),
    a replay of the data set (--replay), or of a CSV file (--from-csv).
    Ctrl-C (or SIGTERM) stops a run cleanly: what was sent is flushed and
    counted.
    """
    if replay and from_csv is not None:
        raise click.UsageError("--replay and --from-csv are two replays: choose one")
    if (label_column or id_column) and from_csv is None:
        raise click.UsageError("--label-column and --id-column go with --from-csv")
    if fields and (replay or from_csv is not None):
        raise click.UsageError("--field applies to random rows, not to a replay")
    if labels_delay_s is not None and not (replay or label_column):
        raise click.UsageError(
            "--labels-delay sends a replay's true labels: use it with --replay, "
            "or with --from-csv and --label-column"
        )
    settings = get_settings()
    schema = asyncio.run(_schema(settings, schema_from, model))
    config = GeneratorConfig.from_settings(
        settings,
        schema,
        count=count,
        rate=rate,
        format=fmt or ("json" if from_csv is not None else "csv"),
        seed=seed,
        labels_delay_s=labels_delay_s,
    )
    if from_csv is not None:
        rows = _csv_replay(from_csv, label_column, id_column, schema, config)
    elif replay:
        rows = _dataset_replay(schema, config)
    else:
        rows = _random(fields, seed, schema, config.format)
    report = asyncio.run(_produce(config, rows))
    click.echo(
        f"produced {report.produced:,} records to {settings.feature_topic} in "
        f"{report.elapsed_s:.1f} s: {report.rate_per_s:,.0f} records/s (run id {report.run_id})"
        + (
            f"; {report.resent:,} sent again after Kafka did not acknowledge them"
            if report.resent
            else ""
        )
        + (
            f"; {report.labels:,} labels to {settings.labels_topic}, "
            f"{labels_delay_s:g} s after their records"
            if labels_delay_s is not None
            else ""
        )
    )
