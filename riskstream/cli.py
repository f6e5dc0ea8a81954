"""The ``riskstream`` command: one entry point, one sub-command per component.

Sub-commands live with the code they drive (``stack/cli.py``,
``models/cli.py``, ...) and are imported only when invoked, so that
``riskstream --help`` stays fast and a broken optional part cannot break
the others.
"""

from __future__ import annotations

import importlib
import logging

import click

__all__ = ["main"]

#: sub-command name -> "module:attribute" of its click command.
SUBCOMMANDS: dict[str, str] = {
    "stack": "stack.cli:stack",
    "train": "models.cli:train",
    "models": "models.cli:models",
    "retrain": "retraining.cli:retrain_command",
    "serve": "serving.cli:serve",
    "datagen": "datagen.cli:datagen",
    "bench": "bench.cli:bench",
    "demo": "stack.demo:demo",
}

#: one-line help shown by ``riskstream --help`` without importing the command.
SUMMARIES: dict[str, str] = {
    "stack": "Start, stop and inspect the local Kafka + ClickHouse stack.",
    "train": "Train a model, evaluate it, export PMML, save it in the repository.",
    "models": "List, show and promote models in the repository.",
    "retrain": "Retrain a model on the labelled predictions stored in ClickHouse.",
    "serve": "Run the PMML model-server pool.",
    "datagen": "Produce feature records to the Kafka feature topic.",
    "bench": "Measure end-to-end throughput and latency on the local stack.",
    "demo": "Run the whole local pipeline (the README's main job).",
}


class LazyGroup(click.Group):
    """A click group whose sub-commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        command: click.Command = getattr(
            importlib.import_module(module_name), attribute
        )
        return command

    def format_commands(
        self, ctx: click.Context, formatter: click.HelpFormatter
    ) -> None:
        rows = [(name, SUMMARIES[name]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup)
@click.option("-v", "--verbose", is_flag=True, help="Log at DEBUG level.")
def main(verbose: bool) -> None:
    """riskstream: real-time disease-risk prediction on Kafka, Faust, PMML and ClickHouse.

    Configuration comes from RISKSTREAM_* environment variables (see README).
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
