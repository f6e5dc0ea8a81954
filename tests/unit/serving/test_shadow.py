"""A shadow version: scored beside the current one, never failing or changing the answer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest
from aiohttp.test_utils import TestClient

from models.protocol import ModelStatus
from models.repository import ModelRepository
from serving.evaluator import Scores
from serving.loader import ModelRegistry, RepositorySource, ServedModel
from serving.model import ModelIdentity, load_model

from .conftest import REFERENCE_INSTANCE, Serve, predict

#: A row the tree and the logistic regression both score, and one neither can.
ROWS = [REFERENCE_INSTANCE, {**REFERENCE_INSTANCE, "_c0": 99}]


@pytest.fixture
def shadowed(tmp_path: Path, pmml_paths: dict[str, Path]) -> ModelRepository:
    """Model "bc": the decision tree current (1), the logistic regression its shadow (2)."""
    repo = ModelRepository(tmp_path / "repository")
    repo.save("bc", {"model.pmml": pmml_paths["breast-cancer"].read_bytes()}, {})
    repo.save(
        "bc",
        {"model.pmml": pmml_paths["bc-logistic"].read_bytes()},
        {},
        promote=False,
    )
    repo.set_shadow("bc", 2)
    return repo


async def started(
    serve: Serve, repository: ModelRepository
) -> tuple[ServedModel, ModelRegistry, TestClient]:
    served = ServedModel("m", RepositorySource(repository, "bc"))
    registry = ModelRegistry([served])
    await registry.load_all()
    return served, registry, await serve(registry)


async def status(client: TestClient) -> ModelStatus:
    response = await client.get("/v1/models/m")
    assert response.status == 200
    return ModelStatus.model_validate_json(await response.read())


async def test_every_request_is_scored_by_both_and_the_answer_stays_the_current_ones(
    serve: Serve, shadowed: ModelRepository, pmml_paths: dict[str, Path]
) -> None:
    _, _, client = await started(serve, shadowed)
    scored, refused = await predict(client, ROWS)
    tree = await load_model(ModelIdentity("bc", "1", pmml_paths["breast-cancer"]))
    logistic = await load_model(ModelIdentity("bc", "2", pmml_paths["bc-logistic"]))
    alone = tree.predictions(await tree.score(ROWS))
    shadow_alone = (await logistic.score(ROWS[:1])).scores
    assert shadow_alone is not None
    assert {k: v for k, v in scored.items() if not k.startswith("shadow_")} == alone[0]
    assert scored["model_version"] == "1" and scored["shadow_version"] == "2"
    assert scored["shadow_label"] == logistic.classes[int(shadow_alone.labels[0])]
    assert scored["shadow_probabilities"] == dict(
        zip(logistic.classes, shadow_alone.probabilities[0].tolist(), strict=True)
    )
    assert refused["error"] == alone[1]["error"]
    assert refused["shadow_version"] == "2" and "99" in refused["shadow_error"]
    assert (await status(client)).shadow.model_dump() == {  # type: ignore[union-attr]
        "version": "2",
        "state": "AVAILABLE",
        "reason": "",
        "scoring_failures": 0,
        "last_scoring_error": "",
    }

    response = await client.post(
        "/v2/models/m/infer",
        data=orjson.dumps(
            {
                "inputs": [
                    {
                        "name": "rows",
                        "shape": [1, 9],
                        "datatype": "FP64",
                        "data": [list(REFERENCE_INSTANCE.values())],
                    }
                ]
            }
        ),
    )
    assert response.status == 200
    answer = await response.json()
    assert answer["model_version"] == "1"
    assert answer["parameters"] == {"shadow_version": "2"}
    outputs = {o["name"]: o["data"] for o in answer["outputs"]}
    assert outputs["shadow_label"] == [scored["shadow_label"]]
    assert outputs["shadow_probability(1)"] == [scored["shadow_probabilities"]["1"]]
    assert outputs["label"] == [alone[0]["label"]]


async def test_a_shadow_that_fails_to_load_is_reported_and_the_current_one_serves_alone(
    serve: Serve, shadowed: ModelRepository
) -> None:
    (shadowed.root / "bc" / "2" / "model.pmml").write_bytes(b"<PMML broken")
    served, _, client = await started(serve, shadowed)
    (answer,) = await predict(client, ROWS[:1])
    assert answer["model_version"] == "1"
    assert not any(key.startswith("shadow_") for key in answer)
    shadow = (await status(client)).shadow
    assert shadow is not None and (shadow.version, shadow.state) == ("2", "FAILED")
    assert "model.pmml" in shadow.reason
    metrics = await (await client.get("/metrics")).text()
    assert 'riskstream_model_errors_total{kind="shadow_load_failed"} 1.0' in metrics
    # not retried (nor logged again) until the pointer moves
    await served.refresh()
    assert (
        'kind="shadow_load_failed"} 1.0' in await (await client.get("/metrics")).text()
    )
    shadowed.clear_shadow("bc")
    await served.refresh()
    assert (await status(client)).shadow is None


async def test_a_shadow_that_fails_to_score_leaves_the_answer_served_and_says_why(
    serve: Serve, shadowed: ModelRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    served, _, client = await started(serve, shadowed)
    shadow = served.shadow
    assert shadow is not None

    async def broken(values: np.ndarray, explain: bool = False) -> Scores:
        raise RuntimeError("the shadow's evaluator broke")

    monkeypatch.setattr(shadow.evaluator, "evaluate", broken)
    for _ in range(2):
        (answer,) = await predict(client, ROWS[:1])
        assert answer["model_version"] == "1" and "label" in answer
        assert answer["shadow_version"] == "2"
        assert answer["shadow_error"] == "RuntimeError: the shadow's evaluator broke"
    reported = (await status(client)).shadow
    assert reported is not None and reported.state == "AVAILABLE"
    assert reported.scoring_failures == 2
    assert reported.last_scoring_error == "RuntimeError: the shadow's evaluator broke"
    metrics = await (await client.get("/metrics")).text()
    assert 'riskstream_model_errors_total{kind="shadow_score_failed"} 2.0' in metrics
    assert 'riskstream_model_shadow_version{model="m"} 2.0' in metrics


async def test_the_watcher_follows_the_shadow_pointer_and_promoting_it_ends_the_shadow(
    serve: Serve, shadowed: ModelRepository
) -> None:
    shadowed.clear_shadow("bc")
    served, _, client = await started(serve, shadowed)
    assert served.shadow is None
    shadowed.set_shadow("bc", 2)
    await served.refresh()
    (answer,) = await predict(client, ROWS[:1])
    assert answer["shadow_version"] == "2"
    shadowed.promote("bc", 2)
    await served.refresh()
    (answer,) = await predict(client, ROWS[:1])
    assert answer["model_version"] == "2"
    assert not any(key.startswith("shadow_") for key in answer)
