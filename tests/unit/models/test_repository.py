"""Versions, the atomic CURRENT pointer, references and their errors."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from models.errors import RepositoryError
from models.repository import CURRENT_FILE, SHADOW_FILE, ModelRepository, ModelVersion


def _save(
    repository: ModelRepository, name: str = "m", promote: bool = True
) -> ModelVersion:
    return repository.save(
        name,
        {"model.pmml": b"<PMML/>", "metrics.json": b"{}"},
        {"algorithm": "tree"},
        promote=promote,
    )


def test_save_numbers_versions_and_moves_the_pointer(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    first, second = _save(repository), _save(repository)
    assert (first.version, second.version) == (1, 2)
    assert repository.current("m") == second
    assert (tmp_path / "m" / CURRENT_FILE).read_text() == "2\n"
    assert second.pmml_path.read_bytes() == b"<PMML/>"
    assert second.card == {"name": "m", "version": 2, "algorithm": "tree"}


def test_no_promote_leaves_the_pointer_where_it_was(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    _save(repository)
    _save(repository, promote=False)
    assert repository.current_version("m") == 1
    assert [v.version for v in repository.versions("m")] == [1, 2]


def test_promote_and_resolve(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    _save(repository), _save(repository)
    repository.promote("m", 1)
    assert repository.resolve("m").version == 1
    assert repository.resolve("m:2").version == 2
    assert repository.resolve("m:2").ref == "m:2"


def test_promote_replaces_the_pointer_atomically_and_leaves_no_temp_files(
    tmp_path: Path,
) -> None:
    repository = ModelRepository(tmp_path)
    _save(repository), _save(repository)
    pointer = tmp_path / "m" / CURRENT_FILE
    inode_before = os.stat(pointer).st_ino
    repository.promote("m", 1)
    assert os.stat(pointer).st_ino != inode_before, "written in place, not replaced"
    assert pointer.read_text() == "1\n"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "1",
        "2",
        CURRENT_FILE,
    ]


def test_readers_never_see_a_partial_pointer_while_promoting(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    _save(repository), _save(repository)
    pointer = tmp_path / "m" / CURRENT_FILE
    seen: set[str] = set()
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            seen.add(pointer.read_text())

    reader = threading.Thread(target=read)
    reader.start()
    for number in range(200):
        repository.promote("m", 1 + number % 2)
    stop.set()
    reader.join()
    assert seen <= {"1\n", "2\n"}


def test_concurrent_saves_get_distinct_complete_versions(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    saved: list[ModelVersion] = []
    threads = [
        threading.Thread(target=lambda: saved.append(_save(repository)))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(v.version for v in saved) == list(range(1, 9))
    for version in repository.versions("m"):
        assert (
            json.loads((version.path / "card.json").read_text())["version"]
            == version.version
        )
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".")]


def test_names_and_default_name(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    _save(repository, "breast-cancer-diagnostic"), _save(repository, "breast-cancer")
    (tmp_path / ".incoming-x").mkdir()
    assert repository.names() == ["breast-cancer", "breast-cancer-diagnostic"]
    assert repository.default_name() == "breast-cancer"


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("nope", "unknown model 'nope'"),
        ("m:9", "unknown version 9 of model 'm'"),
        ("m:x", "invalid model reference 'm:x'"),
        ("../etc", "invalid model name"),
    ],
)
def test_bad_references_are_clear_errors(
    tmp_path: Path, ref: str, message: str
) -> None:
    repository = ModelRepository(tmp_path)
    _save(repository)
    with pytest.raises(RepositoryError, match=message.replace("(", r"\(")):
        repository.resolve(ref)


def test_empty_repository_is_a_clear_error(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path / "absent")
    assert repository.names() == []
    with pytest.raises(
        RepositoryError, match="empty model repository .* run `riskstream train`"
    ):
        repository.default_name()


def test_model_never_promoted_has_no_current_version(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    _save(repository, promote=False)
    with pytest.raises(RepositoryError, match="no current version"):
        repository.current("m")


def test_a_version_without_pmml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RepositoryError, match="needs model.pmml"):
        ModelRepository(tmp_path).save("m", {"metrics.json": b"{}"}, {})


def test_the_shadow_pointer_is_set_read_and_removed(tmp_path: Path) -> None:
    repository = ModelRepository(tmp_path)
    _save(repository), _save(repository, promote=False)
    assert repository.shadow_version("m") is None
    repository.set_shadow("m", 2)
    assert repository.shadow_version("m") == 2
    assert (tmp_path / "m" / SHADOW_FILE).read_text() == "2\n"
    assert repository.current_version("m") == 1  # the answer stays the current one's
    assert not [p for p in (tmp_path / "m").iterdir() if p.name.startswith(".")]
    assert repository.clear_shadow("m") == 2
    assert repository.shadow_version("m") is None
    assert repository.clear_shadow("m") is None


def test_a_shadow_must_be_a_saved_version_other_than_the_current_one(
    tmp_path: Path,
) -> None:
    repository = ModelRepository(tmp_path)
    _save(repository, promote=False)
    with pytest.raises(RepositoryError, match="no current version to shadow"):
        repository.set_shadow("m", 1)
    repository.promote("m", 1)
    with pytest.raises(RepositoryError, match="is the current one"):
        repository.set_shadow("m", 1)
    with pytest.raises(RepositoryError, match="unknown version 3"):
        repository.set_shadow("m", 3)
    with pytest.raises(RepositoryError, match="unknown model 'x'"):
        repository.set_shadow("x", 1)
    (tmp_path / "m" / SHADOW_FILE).write_text("two\n")
    with pytest.raises(RepositoryError, match="holds 'two', not a version number"):
        repository.shadow_version("m")


def test_promoting_the_shadow_ends_the_shadow_and_promoting_another_keeps_it(
    tmp_path: Path,
) -> None:
    repository = ModelRepository(tmp_path)
    (
        _save(repository),
        _save(repository, promote=False),
        _save(repository, promote=False),
    )
    repository.promote("m", 1)
    repository.set_shadow("m", 2)
    repository.promote("m", 3)
    assert repository.shadow_version("m") == 2
    repository.promote("m", 2)
    assert (repository.current_version("m"), repository.shadow_version("m")) == (
        2,
        None,
    )
