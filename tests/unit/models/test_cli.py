"""`riskstream train` and `riskstream models list|show|promote` as a user runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from models.pmml_schema import read_schema
from models.repository import ModelRepository
from models.workflow import TrainingResult
from riskstream.cli import main


@pytest.fixture
def repo(tmp_path: Path, session_root: Path) -> Path:
    """A private copy of the session repository (breast-cancer:1, current)."""
    copy = tmp_path / "repository"
    shutil.copytree(session_root, copy)
    return copy


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_train_diagnostic_data_gives_a_30_input_model(repo: Path) -> None:
    code, output = run(
        "train", "--dataset", "wisconsin-diagnostic", "--repository", str(repo)
    )
    assert code == 0, output
    assert "evaluation: cross-validation fold 10/10" in output  # progress
    assert "parity: PMML == scikit-learn on all 569 rows" in output
    saved = ModelRepository(repo).current("breast-cancer-diagnostic")
    schema = read_schema(saved.pmml_path)
    assert len(schema.inputs) == 30
    assert schema.input_names[:2] == ["mean_radius", "mean_texture"]
    assert {f.invalid_value_treatment for f in schema.inputs} == {"asIs"}
    assert all(
        f.valid_min is not None
        and f.valid_max is not None
        and f.valid_min < f.valid_max
        for f in schema.inputs
    )


def test_list_marks_the_current_version(repo: Path) -> None:
    code, output = run("models", "--repository", str(repo), "list")
    assert code == 0, output
    assert "* breast-cancer:1" in output and "wisconsin-original" in output


def test_show_prints_the_card(repo: Path) -> None:
    code, output = run("models", "--repository", str(repo), "show", "breast-cancer")
    assert code == 0, output
    assert "breast-cancer:1 (current)" in output
    assert "bare_nuclei" in output and "asMedian" in output
    code, output = run(
        "models", "--repository", str(repo), "show", "breast-cancer:1", "--json"
    )
    assert json.loads(output)["version"] == 1


def test_promote_moves_current_and_unknown_version_fails_cleanly(repo: Path) -> None:
    shutil.copytree(repo / "breast-cancer" / "1", repo / "breast-cancer" / "2")
    code, output = run(
        "models", "--repository", str(repo), "promote", "breast-cancer:2"
    )
    assert code == 0, output
    assert ModelRepository(repo).current_version("breast-cancer") == 2
    code, output = run(
        "models", "--repository", str(repo), "promote", "breast-cancer:7"
    )
    assert code == 1
    assert "Error: unknown version 7 of model 'breast-cancer'" in output
    code, output = run("models", "--repository", str(repo), "promote", "breast-cancer")
    assert code == 2 and "expected NAME:VERSION" in output


def test_shadow_marks_a_version_and_off_removes_it_with_clear_errors(
    repo: Path,
) -> None:
    shutil.copytree(repo / "breast-cancer" / "1", repo / "breast-cancer" / "2")
    models = ("models", "--repository", str(repo))
    code, output = run(*models, "shadow", "breast-cancer:2")
    assert code == 0, output
    assert "breast-cancer: shadow version is now 2 (current version 1)" in output
    assert ModelRepository(repo).shadow_version("breast-cancer") == 2
    code, output = run(*models, "list")
    assert "s breast-cancer:2" in output and "* breast-cancer:1" in output
    code, output = run(*models, "shadow", "breast-cancer:1")
    assert code == 1
    assert "Error: version 1 of model 'breast-cancer' is the current one" in output
    code, output = run(*models, "shadow", "breast-cancer:9")
    assert code == 1 and "Error: unknown version 9 of model 'breast-cancer'" in output
    code, output = run(*models, "shadow", "nosuch:1")
    assert code == 1 and "Error: unknown model 'nosuch'" in output
    code, output = run(*models, "shadow", "breast-cancer")
    assert code == 2 and "expected NAME:VERSION" in output
    code, output = run(*models, "shadow", "breast-cancer:2", "--off")
    assert code == 2 and "--off takes the model NAME alone" in output
    code, output = run(*models, "shadow", "breast-cancer", "--off")
    assert code == 0 and "breast-cancer: no shadow version (was 2)" in output
    assert ModelRepository(repo).shadow_version("breast-cancer") is None
    code, output = run(*models, "shadow", "breast-cancer", "--off")
    assert code == 0 and "(there was none)" in output


def test_repository_comes_from_the_environment(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.settings import get_settings

    monkeypatch.setenv("RISKSTREAM_MODEL_REPOSITORY", str(repo))
    get_settings.cache_clear()
    try:
        code, output = run("models", "list")
    finally:
        get_settings.cache_clear()
    assert code == 0 and "breast-cancer:1" in output


def test_empty_repository_says_how_to_fill_it(tmp_path: Path) -> None:
    code, output = run("models", "--repository", str(tmp_path), "list")
    assert code == 0 and "run `riskstream train`" in output


def test_train_help_lists_every_data_set_and_invalid_value_choice() -> None:
    from models.cli import _DATASET_HELP
    from models.dataset import DATASETS

    assert _DATASET_HELP.keys() == DATASETS.keys()
    code, output = run("train", "--help")
    assert code == 0
    flat = " ".join(output.split())
    for key in DATASETS:
        assert f"{key}:" in flat
    assert "reject (returnInvalid" in flat and "as-missing (asMissing" in flat


def test_show_prints_categories_and_the_invalid_value_choice(
    trained_birthwt: TrainingResult,
) -> None:
    root = trained_birthwt.saved.path.parent.parent
    code, output = run("models", "--repository", str(root), "show", "birthwt")
    assert code == 0, output
    assert "invalid values: reject" in output
    assert "{white|black|other}" in output and "asMode white" in output
    assert "[14, 45]" in output  # age
