"""``riskstream stack up | down | status | start SERVICE | stop SERVICE``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from core.settings import get_settings
from stack import control
from stack.errors import StackError

__all__ = ["stack"]


T = TypeVar("T")

_SERVICE = click.Choice(control.SERVICE_NAMES)
_EXTRA = click.Choice(control.EXTRA_SERVICES)


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a stack coroutine; a StackError becomes a clean message and exit code 1."""
    try:
        return asyncio.run(coroutine)
    except StackError as error:
        raise click.ClickException(error.message) from None


@click.group()
def stack() -> None:
    """Start, stop and inspect the local Kafka + ClickHouse (+ PostgreSQL) stack.

    Everything (jars, data, logs, pid files) lives under RISKSTREAM_STACK_DIR
    (default .stack). Every command is safe to repeat.
    """


@stack.command()
@click.option(
    "--with",
    "extra",
    type=_EXTRA,
    multiple=True,
    help="Also start this service (repeatable); RISKSTREAM_STACK_SERVICES does the same.",
)
def up(extra: tuple[str, ...]) -> None:
    """Start Kafka and ClickHouse (and each --with service); return once all answer."""
    settings = get_settings()
    _run(control.up(settings, control.chosen_names(settings, extra)))


@stack.command()
def down() -> None:
    """Stop the processes this stack started, and wait for them to exit."""
    _run(control.down(get_settings()))


@stack.command()
def status() -> None:
    """Print each service, its address and whether it answers (exit 1 unless all do)."""
    statuses = _run(control.status(get_settings()))
    for service_status in statuses:
        click.echo(service_status.line())
    if not all(service_status.answers for service_status in statuses):
        sys.exit(1)


@stack.command()
@click.argument("service", type=_SERVICE)
def start(service: str) -> None:
    """Start one service (kafka, clickhouse or postgresql) and wait until it answers."""
    _run(control.up(get_settings(), [service]))


@stack.command()
@click.argument("service", type=_SERVICE)
def stop(service: str) -> None:
    """Stop one service (kafka, clickhouse or postgresql), e.g. to see how the pipeline copes."""
    _run(control.down(get_settings(), [service]))
