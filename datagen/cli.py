"""``riskstream datagen``: produce feature records to the feature topic."""

from __future__ import annotations

import asyncio
import logging
import re
import signal

import click

from app.security import kafka_client_options, model_client_ssl
from app.settings import get_settings
from datagen.generator import (
    FieldRange,
    GeneratorConfig,
    GeneratorReport,
    as_row,
    field_ranges,
    generate,
    random_rows,
    replay_rows,
)
from datagen.schema import dataset_for, schema_from_repository, schema_from_servers
from models.errors import ModelsError
from models.records import FeatureSchema
from stack.progress import Progress

__all__ = ["datagen", "parse_field_options"]

logger = logging.getLogger(__name__)

_FIELD_OPTION = re.compile(r"^(?P<name>[^.=\s]+)\.(?P<bound>min|max)=(?P<value>\S+)$")


def parse_field_options(options: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """``("bare_nuclei.min=1", "mitoses.max=3")`` -> ``{"bare_nuclei": {"min": 1.0}, ...}``."""
    bounds: dict[str, dict[str, float]] = {}
    for option in options:
        match = _FIELD_OPTION.match(option)
        if match is None:
            raise click.BadParameter(
                f"{option!r}: expected NAME.min=VALUE or NAME.max=VALUE",
                param_hint="--field",
            )
        try:
            value = float(match["value"])
        except ValueError:
            raise click.BadParameter(
                f"{option!r}: {match['value']!r} is not a number", param_hint="--field"
            ) from None
        bounds.setdefault(match["name"], {})[match["bound"]] = value
    return bounds


async def _schema(source: str, model: str | None) -> FeatureSchema:
    settings = get_settings()
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


async def _run(
    *,
    count: int | None,
    rate: float | None,
    replay: bool,
    fmt: str,
    fields: tuple[str, ...],
    seed: int | None,
    schema_from: str,
    model: str | None,
) -> GeneratorReport:
    settings = get_settings()
    schema = await _schema(schema_from, model)
    config = GeneratorConfig(
        bootstrap=settings.kafka_bootstrap,
        topic=settings.feature_topic,
        partitions=settings.topic_partitions,
        schema=schema,
        count=count,
        rate=rate,
        format=fmt,
        seed=seed,
        client_options=kafka_client_options(settings),
        max_backoff_s=settings.retry_max_backoff_s,
    )
    if replay:
        if fields:
            raise click.UsageError("--field applies to random rows, not to --replay")
        try:
            dataset = dataset_for(schema)
        except ValueError as error:
            raise click.ClickException(str(error)) from None
        rows = replay_rows(
            [as_row(values) for values in dataset.X.to_numpy().tolist()],
            [str(label) for label in dataset.y.tolist()],
        )
        if count is None:
            config.count = len(dataset.X)
        click.echo(f"replaying {dataset.title}: {config.count} records", err=True)
    else:
        defaults = {spec.name: spec for spec in schema.fields}
        overrides: dict[str, FieldRange] = {}
        for name, bounds in parse_field_options(fields).items():
            spec = defaults.get(name)
            low = bounds.get(
                "min", spec.valid_min if spec and spec.valid_min is not None else 0.0
            )
            high = bounds.get(
                "max", spec.valid_max if spec and spec.valid_max is not None else 100.0
            )
            overrides[name] = FieldRange(low, high)
        try:
            rows = random_rows(field_ranges(schema, overrides), seed)
        except ValueError as error:
            raise click.BadParameter(str(error), param_hint="--field") from None
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
    help="Records to produce (default: forever; with --replay, the data set once).",
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
    "--format",
    "fmt",
    type=click.Choice(["csv", "json"]),
    default="csv",
    show_default=True,
    help="csv: the reference's feature line; json: record id, event time, named inputs.",
)
@click.option(
    "--field",
    "fields",
    multiple=True,
    metavar="NAME.min=V|NAME.max=V",
    help="Bound of one input's random values (repeatable), like datagen's fields.X.min/max.",
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
    fmt: str,
    fields: tuple[str, ...],
    seed: int | None,
    schema_from: str,
    model: str | None,
) -> None:
    """Produce feature records to the feature topic (RISKSTREAM_FEATURE_TOPIC).

    Random integers within each input's valid range (or --field bounds), or
    a replay of the data set. Ctrl-C (or SIGTERM) stops a run cleanly: what
    was sent is flushed and counted.
    """
    report = asyncio.run(
        _run(
            count=count,
            rate=rate,
            replay=replay,
            fmt=fmt,
            fields=fields,
            seed=seed,
            schema_from=schema_from,
            model=model,
        )
    )
    click.echo(
        f"produced {report.produced:,} records to {get_settings().feature_topic} in "
        f"{report.elapsed_s:.1f} s: {report.rate_per_s:,.0f} records/s (run id {report.run_id})"
        + (
            f"; {report.resent:,} sent again after Kafka did not acknowledge them"
            if report.resent
            else ""
        )
    )
