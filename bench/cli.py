"""``riskstream bench``: benchmarks that print their figures.

``riskstream bench [--records N] [--quick] [--results DIR]`` runs every
part (:mod:`bench.suite`); ``riskstream bench [OPTIONS] PART`` runs one:
``throughput``, ``latency``, ``reference`` (the stream on the real local
stack, :mod:`bench.stream`), ``peers`` (the same pipeline on Flink and
Quix Streams, :mod:`bench.peers`) or ``serving`` (one model server,
:mod:`bench.serving`, with options of its own). ``soak`` (hours of steady
load, :mod:`bench.soak`) and ``profile`` (where a worker's CPU goes,
:mod:`bench.profile`) are not part of the full run. Modules are imported
only when they run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click

__all__ = ["bench"]


@click.group(invoke_without_command=True)
@click.option(
    "--records",
    type=click.IntRange(min=1000),
    default=None,
    help="Records preloaded for the throughput runs [default: 200,000; 50,000 with --quick].",
)
@click.option(
    "--quick",
    is_flag=True,
    help="Shorter phases (8 s instead of 20 s, fewer records): a quick look, not the figures.",
)
@click.option(
    "--results",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for bench.json, the plots and the children's logs "
    "[default: bench/results/<date-time>].",
)
@click.pass_context
def bench(
    context: click.Context, records: int | None, quick: bool, results: Path | None
) -> None:
    """Measure throughput and latency; every figure is printed with its unit.

    Without a sub-command, runs them all (about 7 minutes; 4 with --quick):
    the stack comes up if needed, a model is trained into the results
    folder and three model servers start from RISKSTREAM_MODEL_SERVER_PORT;
    workers listen from RISKSTREAM_WEB_PORT.
    """
    from bench.suite import PARTS, SuiteOptions, run_suite

    context.obj = SuiteOptions(records=records, quick=quick, results=results)
    if context.invoked_subcommand is None:
        run_suite(context.obj, PARTS)


def _run_part(context: click.Context, part: str) -> None:
    from bench.suite import run_suite

    run_suite(context.obj, (part,))


def _sink_set(text: str) -> tuple[str, ...]:
    from tables.sinks import SINKS

    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    unknown = [n for n in names if n not in SINKS]
    if not names or unknown:
        raise click.BadParameter(
            f"{text!r}: name sinks among {', '.join(SINKS)}, comma-separated"
        )
    return names


@bench.command()
@click.option(
    "--sinks",
    "sink_sets",
    multiple=True,
    metavar="NAME[,NAME]",
    help="Also measure with these sinks (RISKSTREAM_SINKS), beside ClickHouse alone in "
    "the same run; repeatable, e.g. --sinks postgresql --sinks clickhouse,postgresql.",
)
@click.option(
    "--topology",
    "topologies",
    type=click.Choice(["single", "cluster"]),
    multiple=True,
    help="The stack topologies to measure on, in one run (repeatable: --topology single "
    "--topology cluster); the cluster runs beside the single stack on its own ports "
    "(every base port + 20) and folder (<stack_dir>/cluster) [default: single].",
)
@click.pass_context
def throughput(
    context: click.Context, sink_sets: tuple[str, ...], topologies: tuple[str, ...]
) -> None:
    """Sustained records/s draining a preloaded topic: 1 and 2 workers x 1 and 3 model servers."""
    chosen: list[tuple[str, ...]] = [("clickhouse",)]
    for text in sink_sets:
        names = _sink_set(text)
        if names not in chosen:
            chosen.append(names)
    context.obj = dataclasses.replace(
        context.obj,
        sink_sets=tuple(chosen),
        topologies=tuple(dict.fromkeys(topologies)) or ("single",),
    )
    _run_part(context, "throughput")


@bench.command()
@click.pass_context
def latency(context: click.Context) -> None:
    """Event time -> row stored, p50/p95/p99, at 500, 2,000 and 5,000 records/s offered."""
    _run_part(context, "latency")


@bench.command()
@click.pass_context
def reference(context: click.Context) -> None:
    """The reference's design (bench/reference_job.py): one synchronous call per record."""
    _run_part(context, "reference")


@bench.command()
@click.pass_context
def peers(context: click.Context) -> None:
    """The peers (bench/peers): Quix Streams, the reference's job on Flink 1.20, Flink Async I/O."""
    _run_part(context, "peers")


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


@bench.command("soak")
@click.option(
    "--minutes",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Minutes of steady load (one sample a minute).",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=1),
    default=2000.0,
    show_default=True,
    help="Records per second the generator offers.",
)
@click.option(
    "--results",
    "soak_results",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for soak.json, soak.png and the children's logs "
    "[default: bench/results/soak-<date-time>].",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes (faust -A app worker).",
)
@click.option(
    "--servers",
    type=click.IntRange(1, 3),
    default=1,
    show_default=True,
    help="Model-server processes (riskstream serve --replicas N).",
)
@click.option(
    "--tracemalloc",
    is_flag=True,
    help="The workers write the allocation sites that grew, every minute, to "
    "<results>/tracemalloc (RISKSTREAM_TRACEMALLOC_DIR; slows them).",
)
def soak(
    minutes: int,
    rate: float,
    soak_results: Path | None,
    workers: int,
    servers: int,
    tracemalloc: bool,
) -> None:
    """Steady load for a long time: memory, fds, lag and p99 of every process, every minute."""
    from bench.soak import SoakOptions, run_soak

    run_soak(
        SoakOptions(
            minutes=minutes,
            rate=rate,
            results=soak_results,
            workers=workers,
            servers=servers,
            tracemalloc=tracemalloc,
        )
    )


@bench.command("profile")
@click.option(
    "--workers",
    type=click.IntRange(1, 4),
    default=1,
    show_default=True,
    help="Worker processes, each sampled by py-spy.",
)
@click.option(
    "--servers",
    type=click.IntRange(1, 3),
    default=3,
    show_default=True,
    help="Model-server processes (riskstream serve --replicas N).",
)
@click.option(
    "--rate",
    "rate_hz",
    type=click.IntRange(10, 1000),
    default=200,
    show_default=True,
    help="py-spy samples per second and worker.",
)
@click.option(
    "--results",
    "profile_results",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder for profile.json, the py-spy stacks and the children's logs "
    "[default: bench/results/profile-<date-time>].",
)
@click.pass_context
def profile(
    context: click.Context,
    workers: int,
    servers: int,
    rate_hz: int,
    profile_results: Path | None,
) -> None:
    """Where a worker's CPU goes: py-spy on every worker draining --records, per part in us/record."""
    from bench.profile import ProfileOptions, run_profile

    options = context.obj
    run_profile(
        ProfileOptions(
            records=options.records or (50_000 if options.quick else 200_000),
            workers=workers,
            servers=servers,
            rate_hz=rate_hz,
            results=profile_results,
        )
    )
