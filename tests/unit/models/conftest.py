"""Train once per test session; tests read the saved model or copy the repository."""

from __future__ import annotations

from pathlib import Path

import pytest
from sklearn2pmml.pipeline import PMMLPipeline

from models.dataset import Dataset, load_dataset
from models.repository import ModelRepository
from models.training import TrainingParams, fit_pipeline
from models.workflow import TrainingResult, train_model


@pytest.fixture(scope="session")
def original() -> Dataset:
    return load_dataset("wisconsin-original")


@pytest.fixture(scope="session")
def birthwt() -> Dataset:
    return load_dataset("birthwt")


@pytest.fixture(scope="session")
def trained_birthwt(
    tmp_path_factory: pytest.TempPathFactory, birthwt: Dataset
) -> TrainingResult:
    """The default recipe on birthwt (string categories), saved in its own repository."""
    root = tmp_path_factory.mktemp("birthwt-repository")
    return train_model(birthwt, TrainingParams(), ModelRepository(root))


@pytest.fixture(scope="session")
def trained(
    tmp_path_factory: pytest.TempPathFactory, original: Dataset
) -> TrainingResult:
    """The default recipe (decision tree, seed 42), saved in a session repository."""
    root = tmp_path_factory.mktemp("repository")
    return train_model(original, TrainingParams(), ModelRepository(root))


@pytest.fixture(scope="session")
def pmml(trained: TrainingResult) -> bytes:
    return trained.saved.pmml_path.read_bytes()


@pytest.fixture(scope="session")
def pipeline(original: Dataset) -> PMMLPipeline:
    """The same fit as the saved model's (same data, params and seed)."""
    return fit_pipeline(original, TrainingParams(), original.X, original.y)


@pytest.fixture
def session_root(trained: TrainingResult) -> Path:
    return trained.saved.path.parent.parent
