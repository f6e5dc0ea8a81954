"""``riskstream stack up | down | status | start SERVICE | stop SERVICE``."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import click

from core.settings import Settings, get_settings
from stack import control
from stack.errors import StackError

__all__ = ["stack"]


T = TypeVar("T")

_SERVICE = click.Choice(control.SERVICE_NAMES)
_EXTRA = click.Choice(control.EXTRA_SERVICES)


def _topology_option(command: Callable[..., None]) -> Callable[..., None]:
    """``--topology single|cluster``: which stack the command is about (default RISKSTREAM_STACK_TOPOLOGY)."""
    return click.option(
        "--topology",
        type=click.Choice(["single", "cluster"]),
        default=None,
        help="single (one Kafka, one ClickHouse) or cluster (three brokers, ZooKeeper, "
        "2 shards x 2 ClickHouse replicas); default RISKSTREAM_STACK_TOPOLOGY (single).",
    )(command)


def _settings(topology: str | None) -> Settings:
    """The settings, with the topology the command was given."""
    if topology is None:
        return get_settings()
    return Settings(stack_topology="cluster" if topology == "cluster" else "single")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a stack coroutine; a StackError becomes a clean message and exit code 1."""
    try:
        return asyncio.run(coroutine)
    except StackError as error:
        raise click.ClickException(error.message) from None


@click.group()
def stack() -> None:
    """Start, stop and inspect the local Kafka + ClickHouse (+ PostgreSQL) stack, single or cluster.

    Everything (jars, data, logs, pid files) lives under RISKSTREAM_STACK_DIR
    (default .stack). Every command is safe to repeat.
    """


@stack.command()
@_topology_option
@click.option(
    "--with",
    "extra",
    type=_EXTRA,
    multiple=True,
    help="Also start this service (repeatable); RISKSTREAM_STACK_SERVICES does the same.",
)
def up(topology: str | None, extra: tuple[str, ...]) -> None:
    """Start Kafka and ClickHouse (and ZooKeeper, and each --with service); return once all answer."""
    settings = _settings(topology)
    _run(control.up(settings, control.chosen_names(settings, extra)))


@stack.command()
@_topology_option
def down(topology: str | None) -> None:
    """Stop the processes this stack started, and wait for them to exit."""
    _run(control.down(_settings(topology)))


@stack.command()
@_topology_option
def status(topology: str | None) -> None:
    """Print each service, its address and whether it answers (exit 1 unless all do)."""
    statuses = _run(control.status(_settings(topology)))
    for service_status in statuses:
        click.echo(service_status.line())
    if not all(service_status.answers for service_status in statuses):
        sys.exit(1)


@stack.command()
@_topology_option
@click.argument("service", type=_SERVICE)
def start(topology: str | None, service: str) -> None:
    """Start one service (e.g. kafka, clickhouse, postgresql; kafka-2, clickhouse-s1r2, zookeeper on the cluster) and wait until it answers."""
    _run(control.up(_settings(topology), [service]))


@stack.command()
@_topology_option
@click.argument("service", type=_SERVICE)
def stop(topology: str | None, service: str) -> None:
    """Stop one service (e.g. kafka, clickhouse-s1r2, zookeeper), to see how the pipeline copes."""
    _run(control.down(_settings(topology), [service]))
