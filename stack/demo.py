"""``riskstream demo``: the README's ``make demo``.

Until the pipeline exists this brings the local stack up and names the
parts that are still missing; the stream work replaces the body with the
whole pipeline (train, serve, generate, score, store, stats).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging

import click

from app.settings import get_settings
from stack import control
from stack.errors import StackError

__all__ = ["demo"]

logger = logging.getLogger(__name__)

#: The pipeline's parts, in data-flow order: module that implements it -> what it does.
PIPELINE_PARTS: dict[str, str] = {
    "models.cli": "training a model and exporting PMML (riskstream train)",
    "serving.cli": "the PMML model-server pool (riskstream serve)",
    "datagen.cli": "the feature generator (riskstream datagen)",
    "app.application": "the Faust app and its workers",
}


@click.command()
def demo() -> None:
    """Run the whole local pipeline (for now: bring the stack up, say what is missing)."""
    try:
        asyncio.run(control.up(get_settings()))
    except StackError as error:
        raise click.ClickException(error.message) from None
    missing = [
        what
        for module, what in PIPELINE_PARTS.items()
        if importlib.util.find_spec(module) is None
    ]
    if missing:
        click.echo("The local stack is up. The pipeline cannot run yet; missing:")
        for what in missing:
            click.echo(f"  - {what}")
    else:
        click.echo(
            "The local stack is up and every part of the pipeline exists; the demo wiring is still to come."
        )
