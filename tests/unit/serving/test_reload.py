"""Hot reload: new versions swap in under load, broken ones leave the old one serving."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import orjson
import pytest
from aiohttp.test_utils import TestClient

from models.repository import ModelRepository
from serving.loader import FileSource, ModelRegistry, RepositorySource, ServedModel

from .conftest import REFERENCE_INSTANCE, Serve


@pytest.fixture
def private_repository(tmp_path: Path, pmml_paths: dict[str, Path]) -> ModelRepository:
    """A private repository: model "bc", version 1 (the decision tree) current."""
    repo = ModelRepository(tmp_path / "repository")
    repo.save("bc", {"model.pmml": pmml_paths["breast-cancer"].read_bytes()}, {})
    return repo


async def started(
    serve: Serve, repository: ModelRepository, pinned: int | None = None
) -> tuple[ServedModel, ModelRegistry, TestClient]:
    served = ServedModel("m", RepositorySource(repository, "bc", pinned))
    registry = ModelRegistry([served])
    await registry.load_all()
    return served, registry, await serve(registry)


async def versions_answering(client: TestClient, rows: int = 4) -> set[str]:
    response = await client.post(
        "/v1/models/m:predict",
        data=orjson.dumps({"instances": [REFERENCE_INSTANCE] * rows}),
    )
    assert response.status == 200
    return {p["model_version"] for p in (await response.json())["predictions"]}


async def test_a_promoted_version_swaps_in_while_requests_keep_flowing(
    serve: Serve,
    private_repository: ModelRepository,
    pmml_paths: dict[str, Path],
) -> None:
    served, registry, client = await started(serve, private_repository)
    registry.start_watching(0.05)
    # a 100-tree forest takes about a second to load: long enough to be seen loading
    private_repository.save(
        "bc", {"model.pmml": pmml_paths["bc-forest"].read_bytes()}, {}, promote=False
    )
    answered: list[list[str]] = [[] for _ in range(3)]
    during_load = 0
    stop = asyncio.Event()

    async def client_loop(seen: list[str]) -> None:
        nonlocal during_load
        while not stop.is_set():
            (version,) = await versions_answering(client)
            seen.append(version)
            during_load += served.loading == "2"

    loops = [asyncio.create_task(client_loop(seen)) for seen in answered]
    await asyncio.sleep(0.2)
    private_repository.promote("bc", 2)
    for _ in range(600):
        if served.current.version == "2":
            break
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.2)
    stop.set()
    await asyncio.gather(*loops)  # any failed request would raise here

    assert served.current.version == "2" and served.failure is None
    assert during_load > 0, "requests were answered while version 2 was loading"
    for seen in answered:
        assert seen[0] == "1" and seen[-1] == "2"
        assert seen == sorted(seen), "a client never goes back to the old version"
    await registry.stop_watching()


async def test_a_broken_version_leaves_the_old_one_serving(
    serve: Serve,
    private_repository: ModelRepository,
) -> None:
    served, _registry, client = await started(serve, private_repository)
    private_repository.save(
        "bc", {"model.pmml": b"<PMML><broken"}, {}
    )  # version 2, current
    await served.refresh()
    await served.refresh()  # not retried until the pointer moves again

    assert await versions_answering(client) == {"1"}
    status = await (await client.get("/v1/models/m")).json()
    available, failed = status["model_version_status"]
    assert available == {
        "version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""},
    }  # fmt: skip
    assert failed["version"] == "2" and failed["state"] == "END"
    assert "unclosed token" in failed["status"]["error_message"]
    metrics = await (await client.get("/metrics")).text()
    assert 'riskstream_model_errors_total{kind="load_failed"} 1.0' in metrics


async def test_the_load_endpoint_loads_a_named_version(
    serve: Serve,
    private_repository: ModelRepository,
    pmml_paths: dict[str, Path],
) -> None:
    _served, _registry, client = await started(serve, private_repository)
    private_repository.save(
        "bc", {"model.pmml": pmml_paths["bc-logistic"].read_bytes()}, {}, promote=False
    )
    private_repository.save("bc", {"model.pmml": b"not xml"}, {}, promote=False)

    response = await client.post(
        "/v2/repository/models/m/load", json={"parameters": {"version": "2"}}
    )
    assert response.status == 200
    assert await response.json() == {"name": "m", "version": "2", "state": "READY"}
    assert await versions_answering(client) == {"2"}

    broken = await client.post(
        "/v2/repository/models/m/load", json={"parameters": {"version": 3}}
    )
    assert broken.status == 422
    assert "version 3 failed to load" in (await broken.json())["error"]
    assert await versions_answering(client) == {"2"}

    unknown = await client.post(
        "/v2/repository/models/m/load", json={"parameters": {"version": "9"}}
    )
    assert unknown.status == 404
    index = await (await client.post("/v2/repository/index")).json()
    assert index[0]["name"] == "m" and index[0]["version"] == "2"


async def test_a_pinned_version_ignores_the_pointer(
    serve: Serve,
    private_repository: ModelRepository,
    pmml_paths: dict[str, Path],
) -> None:
    _served, registry, client = await started(serve, private_repository, pinned=1)
    private_repository.save(
        "bc", {"model.pmml": pmml_paths["bc-logistic"].read_bytes()}, {}
    )
    registry.start_watching(0.01)
    await asyncio.sleep(0.1)
    assert await versions_answering(client) == {"1"}
    await registry.stop_watching()


async def test_a_pmml_file_reloads_as_its_next_version(
    serve: Serve,
    tmp_path: Path,
    pmml_paths: dict[str, Path],
) -> None:
    path = tmp_path / "model.pmml"
    shutil.copy(pmml_paths["breast-cancer"], path)
    served = ServedModel("m", FileSource(path))
    registry = ModelRegistry([served])
    await registry.load_all()
    client = await serve(registry)
    assert await versions_answering(client) == {"1"}
    shutil.copy(pmml_paths["bc-logistic"], path)
    assert (await client.post("/v2/repository/models/m/load")).status == 200
    assert await versions_answering(client) == {"2"}
    status = await (await client.get("/v1/models/m")).json()
    assert status["evaluator"]["description"] == "regression (logit)"
