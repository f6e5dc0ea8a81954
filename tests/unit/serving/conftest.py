"""Models trained by `riskstream train` once per session, and real servers on real ports.

Every serving test scores PMMLs the trainer produced (decision tree, random
forest, logistic regression on the 9-input data, and the 30-input
diagnostic tree), so nothing here assumes a feature list. Servers listen
on this suite's ports (28511-28520) and are stopped by their fixture.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
    Mapping,
    Sequence,
)
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from models.repository import ModelRepository
from serving.api import create_app
from serving.auth import TokenCheck
from serving.loader import FileSource, ModelRegistry, RepositorySource, ServedModel
from serving.metrics import ServerMetrics

RISKSTREAM = str(Path(sys.executable).with_name("riskstream"))

#: repository name -> `riskstream train` arguments
TRAINED = {
    "breast-cancer": ["--algorithm", "tree"],
    "bc-forest": ["--algorithm", "forest", "--name", "bc-forest"],
    "bc-logistic": ["--algorithm", "logistic", "--name", "bc-logistic"],
    "breast-cancer-diagnostic": ["--dataset", "wisconsin-diagnostic"],
}
MODEL_NAMES = list(TRAINED)

#: the reference article's request body (section 3.3.2), with valid values
REFERENCE_INSTANCE = {
    "_c0": 3, "_c1": 2, "_c2": 3, "_c3": 1, "_c4": 1, "_c5": 2, "_c6": 1, "_c7": 1, "_c8": 1,
}  # fmt: skip

TOKEN = "s3cret-token"

_ports = itertools.cycle(range(28511, 28521))


def suite_port() -> int:
    """The next port of this suite's range (28511-28520)."""
    return next(_ports)


@pytest.fixture(scope="session")
def repository_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository holding the four trained models, each at version 1 (current)."""
    root = tmp_path_factory.mktemp("serving-repository")
    for name, arguments in TRAINED.items():
        done = subprocess.run(
            [RISKSTREAM, "train", "--repository", str(root), *arguments],
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert (root / name / "1" / "model.pmml").is_file()
    return root


@pytest.fixture(scope="session")
def repository(repository_root: Path) -> ModelRepository:
    return ModelRepository(repository_root)


@pytest.fixture(scope="session")
def pmml_paths(repository: ModelRepository) -> dict[str, Path]:
    return {name: repository.current(name).pmml_path for name in MODEL_NAMES}


#: starts a server over a registry (keyword arguments: token, max_body_bytes, max_instances)
Serve = Callable[..., Awaitable[TestClient]]


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Start servers over given registries; all are stopped after the test."""
    clients: list[TestClient] = []

    async def start(
        registry: ModelRegistry,
        *,
        token: str = "",
        max_body_bytes: int = 4 * 1024 * 1024,
        max_instances: int = 10_000,
    ) -> TestClient:
        app = create_app(
            registry,
            token=TokenCheck(SecretStr(token)),
            metrics_=ServerMetrics(),
            max_body_bytes=max_body_bytes,
            max_instances=max_instances,
        )
        client = TestClient(TestServer(app, host="127.0.0.1", port=suite_port()))
        await client.start_server()
        clients.append(client)
        return client

    yield start
    for client in clients:
        await client.close()


@pytest.fixture
async def model_registry(repository: ModelRepository) -> AsyncIterator[ModelRegistry]:
    """Every trained model, served under its own name, plus the tree as ``m``."""
    served = [
        ServedModel(name, RepositorySource(repository, name)) for name in MODEL_NAMES
    ]
    served.append(ServedModel("m", RepositorySource(repository, "breast-cancer")))
    registry = ModelRegistry(served)
    await registry.load_all()
    yield registry
    await registry.stop_watching()


@pytest.fixture
async def client(serve: Serve, model_registry: ModelRegistry) -> TestClient:
    """A server with every trained model and a token."""
    return await serve(model_registry, token=TOKEN)


@pytest.fixture
def auth() -> dict[str, str]:
    return {"X-Auth-Token": TOKEN}


@pytest.fixture(scope="session")
def subprocess_env(repository_root: Path) -> dict[str, str]:
    """The environment of a `riskstream serve` process over the session repository."""
    return {**os.environ, "RISKSTREAM_MODEL_REPOSITORY": str(repository_root)}


class Served:
    """A `riskstream serve` process whose log is a file the test can read while it runs."""

    def __init__(self, log: Path, process: subprocess.Popen[bytes]) -> None:
        self.log_path = log
        self.process = process

    @property
    def log(self) -> str:
        return self.log_path.read_text()

    def wait_for(self, pattern: str, timeout_s: float = 60.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log)
            if found:
                return found
            assert self.process.poll() is None, (
                f"exited {self.process.returncode}:\n{self.log}"
            )
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in:\n{self.log}")

    def stop(self, timeout_s: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout_s)


@pytest.fixture
def start_serving(
    tmp_path: Path, subprocess_env: dict[str, str]
) -> Iterator[Callable[..., Served]]:
    started: list[Served] = []

    def start(*arguments: str, **environment: str) -> Served:
        log = tmp_path / f"serve-{len(started)}.log"
        process = subprocess.Popen(
            [RISKSTREAM, "serve", *arguments],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env={**subprocess_env, "RISKSTREAM_MODEL_TOKEN": TOKEN, **environment},
        )
        served = Served(log, process)
        started.append(served)
        return served

    yield start
    for served in started:
        if served.process.poll() is None:
            served.process.kill()
            served.process.wait()


async def served_file(serve: Serve, path: Path) -> tuple[ServedModel, TestClient]:
    """A server of the PMML file at ``path`` under the name m, and a client of it."""
    served = ServedModel("m", FileSource(path))
    registry = ModelRegistry([served])
    await registry.load_all()
    return served, await serve(registry)


async def predict(
    client: TestClient, instances: Sequence[Mapping[str, object]]
) -> list[dict[str, Any]]:
    """The predictions of ``instances`` on the reference's route (which must answer 200)."""
    response = await client.post(
        "/v1/models/m:predict", data=orjson.dumps({"instances": instances})
    )
    assert response.status == 200, await response.text()
    predictions: list[dict[str, Any]] = (await response.json())["predictions"]
    return predictions
