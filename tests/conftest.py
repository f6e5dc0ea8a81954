"""Fixtures shared by the whole suite: the real local stack for integration and e2e tests.

``make test`` brings the stack up before pytest and down after it; the
``stack`` fixture makes a plain ``pytest`` run work too, by calling the
same code as ``riskstream stack up`` (a no-op when the stack answers
already) and stopping at the end only what it started itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from core.settings import Settings, get_settings
from stack import control as stack_control


@pytest.fixture(scope="session")
def stack() -> Iterator[Settings]:
    """The settings of a running local stack (Kafka and ClickHouse answering)."""
    settings = get_settings()
    started = asyncio.run(stack_control.up(settings))
    yield settings
    if started:
        asyncio.run(stack_control.down(settings, started))


@pytest.fixture(scope="session")
def postgresql_stack(stack: Settings) -> Iterator[Settings]:
    """The stack's settings with its PostgreSQL answering too (``stack up --with postgresql``)."""
    started = asyncio.run(stack_control.up(stack, ["postgresql"]))
    yield stack
    if started:
        asyncio.run(stack_control.down(stack, started))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses the stack, so ``-m "not stack"`` runs the rest alone."""
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.stack)
