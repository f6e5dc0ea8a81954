"""``riskstream bench``: benchmarks that print their figures.

Each benchmark is a sub-command in its own module (``bench/serving.py``, ...),
imported only when it runs.
"""

from __future__ import annotations

import logging
from pathlib import Path

import click

__all__ = ["bench"]

logger = logging.getLogger(__name__)


@click.group()
def bench() -> None:
    """Measure throughput and latency; every figure is printed with its unit."""


@bench.command("serving")
@click.option(
    "--model",
    "model_ref",
    metavar="NAME[:VERSION]",
    default=None,
    help="Repository model to measure [default: the repository's first model].",
)
@click.option(
    "--pmml",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Measure this PMML file instead of a repository model.",
)
@click.option(
    "--repository",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Model repository folder [default: RISKSTREAM_MODEL_REPOSITORY, else data/models].",
)
@click.option(
    "--port",
    type=click.IntRange(1, 65535),
    default=28501,
    show_default=True,
    help="Port of the server under test.",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=1),
    default=10.0,
    show_default=True,
    help="Seconds of each load phase.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=256,
    show_default=True,
    help="Rows per request in the throughput phase.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Requests in flight in the throughput phase.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=1),
    default=500.0,
    show_default=True,
    help="Single-row requests per second in the latency phase.",
)
@click.option(
    "--evaluator-rows",
    type=click.IntRange(min=100),
    default=20_000,
    show_default=True,
    help="Rows scored by each evaluator in the side-by-side run.",
)
def serving(
    model_ref: str | None,
    pmml: Path | None,
    repository: Path | None,
    port: int,
    duration: float,
    batch: int,
    concurrency: int,
    rate: float,
    evaluator_rows: int,
) -> None:
    """One model-server process under load, and the fast evaluator next to pypmml."""
    from bench.serving import ServingBenchmark, run

    if model_ref is not None and pmml is not None:
        raise click.UsageError("give --model or --pmml, not both")
    run(
        ServingBenchmark(
            model_ref=model_ref,
            pmml=pmml,
            repository=repository,
            port=port,
            duration_s=duration,
            batch_rows=batch,
            concurrency=concurrency,
            rate=rate,
            evaluator_rows=evaluator_rows,
        )
    )
