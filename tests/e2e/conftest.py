"""Fixtures of the end-to-end tests: a trained model repository and one pipeline per test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from core.settings import Settings
from stack.launch import riskstream_argv, spawn
from tests.e2e.harness import Pipeline


@pytest.fixture(scope="session")
def model_repository(tmp_path_factory: pytest.TempPathFactory, stack: Settings) -> Path:
    """A repository holding one freshly trained breast-cancer model."""
    root = tmp_path_factory.mktemp("e2e-models")
    log = root.parent / "train.log"
    trainer = spawn(
        "trainer", riskstream_argv("train", "--repository", str(root)), {}, log
    )
    assert trainer.process.wait(300) == 0, (
        f"riskstream train failed:\n{trainer.log_tail()}"
    )
    return root


@pytest.fixture
def pipeline(
    request: pytest.FixtureRequest,
    stack: Settings,
    model_repository: Path,
    tmp_path: Path,
) -> Iterator[Pipeline]:
    """One test's pipeline; ``RISKSTREAM_SINKS`` by indirect parameter (default clickhouse).

    PostgreSQL is brought up (``stack up --with postgresql``) when a sink needs it.
    """
    sinks = tuple(getattr(request, "param", "clickhouse").split(","))
    if "postgresql" in sinks:
        request.getfixturevalue("postgresql_stack")
    run = Pipeline(stack, model_repository, tmp_path, sinks=sinks)
    try:
        yield run
    finally:
        run.stop_all()
        run.drop_databases()
