"""The model repository: versioned model folders and a pointer to the current one.

Layout::

    <root>/<name>/<version>/model.pmml     the served model
                           /metrics.json   evaluation figures
                           /report.html    readable report (+ its *.png)
                           /card.json      model card
    <root>/<name>/CURRENT                  text: the current version number
    <root>/<name>/SHADOW                   text: the shadow version (optional)

Model servers watch ``CURRENT`` to hot-reload, and ``SHADOW`` to score every
request with a second version beside it (its answers are stored, never
returned as the answer). They may read a version folder while the trainer
writes the next one. So nothing is ever visible half written: a version is
assembled in a hidden temporary folder and renamed into place, and a
pointer is replaced with ``os.replace`` — both atomic on POSIX file systems.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.errors import RepositoryError

__all__ = [
    "CURRENT_FILE",
    "SHADOW_FILE",
    "ModelRepository",
    "ModelVersion",
    "RepositoryError",
    "check_name",
]

logger = logging.getLogger(__name__)

CURRENT_FILE = "CURRENT"
SHADOW_FILE = "SHADOW"
PMML_FILE = "model.pmml"
CARD_FILE = "card.json"

#: Model names become folder names and appear in "name:version" references.
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ModelVersion:
    """One saved version of a model (its folder is immutable once saved)."""

    name: str
    version: int
    path: Path

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"

    @property
    def pmml_path(self) -> Path:
        return self.path / PMML_FILE

    @property
    def card(self) -> dict[str, Any]:
        try:
            card: dict[str, Any] = json.loads(
                (self.path / CARD_FILE).read_text("utf-8")
            )
        except (OSError, ValueError) as exc:
            raise RepositoryError(
                f"model {self.ref}: unreadable {CARD_FILE}: {exc}"
            ) from exc
        return card


def check_name(name: str) -> str:
    """``name`` if it can name a model (a folder and part of "name:version"), else an error."""
    if not _NAME.match(name):
        raise RepositoryError(
            f"invalid model name {name!r}: use 1-64 lowercase letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_pointer(model_dir: Path, filename: str, version: int) -> None:
    """Replace ``model_dir/filename`` with ``version`` atomically (temp file + os.replace)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{filename}.", dir=model_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(f"{version}\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, model_dir / filename)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(model_dir)


class ModelRepository:
    """Versioned models under one root folder (``RISKSTREAM_MODEL_REPOSITORY``)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelRepository({str(self.root)!r})"

    # --- reading ----------------------------------------------------------
    def names(self) -> list[str]:
        """Models that have at least one saved version, sorted."""
        if not self.root.is_dir():
            return []
        return sorted(
            entry.name
            for entry in self.root.iterdir()
            if entry.is_dir()
            and _NAME.match(entry.name)
            and self._version_numbers(entry)
        )

    @staticmethod
    def _version_numbers(model_dir: Path) -> list[int]:
        return sorted(
            int(entry.name)
            for entry in model_dir.iterdir()
            if entry.is_dir() and entry.name.isdigit() and (entry / PMML_FILE).is_file()
        )

    def _model_dir(self, name: str) -> Path:
        model_dir = self.root / check_name(name)
        if not model_dir.is_dir() or not self._version_numbers(model_dir):
            known = ", ".join(self.names()) or "none"
            raise RepositoryError(
                f"unknown model {name!r} in {self.root} (known: {known})"
            )
        return model_dir

    def versions(self, name: str) -> list[ModelVersion]:
        """Every saved version of ``name``, oldest first."""
        model_dir = self._model_dir(name)
        return [
            ModelVersion(name, number, model_dir / str(number))
            for number in self._version_numbers(model_dir)
        ]

    def version(self, name: str, version: int) -> ModelVersion:
        """Version ``version`` of ``name``."""
        model_dir = self._model_dir(name)
        numbers = self._version_numbers(model_dir)
        if version not in numbers:
            raise RepositoryError(
                f"unknown version {version} of model {name!r} (versions: "
                f"{', '.join(map(str, numbers))})"
            )
        return ModelVersion(name, version, model_dir / str(version))

    def current_version(self, name: str) -> int | None:
        """The number in ``name``'s pointer, or None if no version was promoted yet."""
        return self._read_pointer(name, CURRENT_FILE)

    def shadow_version(self, name: str) -> int | None:
        """The number in ``name``'s ``SHADOW`` pointer, or None if it has no shadow."""
        return self._read_pointer(name, SHADOW_FILE)

    def _read_pointer(self, name: str, filename: str) -> int | None:
        pointer = self._model_dir(name) / filename
        try:
            text = pointer.read_text("utf-8").strip()
        except FileNotFoundError:
            return None
        if not text.isdigit():
            raise RepositoryError(f"{pointer} holds {text!r}, not a version number")
        return int(text)

    def current(self, name: str) -> ModelVersion:
        """The version ``name``'s pointer names."""
        number = self.current_version(name)
        if number is None:
            raise RepositoryError(
                f"model {name!r} has no current version: run `riskstream models promote "
                f"{name}:VERSION`"
            )
        return self.version(name, number)

    def resolve(self, ref: str) -> ModelVersion:
        """``"name"`` -> its current version; ``"name:3"`` -> version 3."""
        name, sep, version = ref.partition(":")
        if not sep:
            return self.current(name)
        if not version.isdigit():
            raise RepositoryError(
                f"invalid model reference {ref!r}: expected NAME or NAME:VERSION"
            )
        return self.version(name, int(version))

    def default_name(self) -> str:
        """The model served when none is named: the first (often the only) one."""
        names = self.names()
        if not names:
            raise RepositoryError(
                f"empty model repository {self.root}: run `riskstream train` first"
            )
        return names[0]

    # --- writing ----------------------------------------------------------
    def promote(self, name: str, version: int) -> None:
        """Point ``name``'s ``CURRENT`` at ``version`` (atomic: temp file + os.replace).

        A shadow of that very version has proved itself and stops being one:
        its ``SHADOW`` pointer is removed.
        """
        target = self.version(name, version)
        _write_pointer(target.path.parent, CURRENT_FILE, version)
        logger.info("model %s: current version is now %d", name, version)
        if self.shadow_version(name) == version:
            self.clear_shadow(name)

    def set_shadow(self, name: str, version: int) -> None:
        """Point ``name``'s ``SHADOW`` at ``version``: servers following it score with both.

        The shadow must be a saved version other than the current one (and
        there must be a current one to compare it with).
        """
        target = self.version(name, version)
        current = self.current_version(name)
        if current is None:
            raise RepositoryError(
                f"model {name!r} has no current version to shadow: run `riskstream "
                f"models promote {name}:VERSION` first"
            )
        if current == version:
            raise RepositoryError(
                f"version {version} of model {name!r} is the current one: a shadow "
                "must be another version"
            )
        _write_pointer(target.path.parent, SHADOW_FILE, version)
        logger.info("model %s: shadow version is now %d", name, version)

    def clear_shadow(self, name: str) -> int | None:
        """Remove ``name``'s ``SHADOW`` pointer; returns the version it named, if any."""
        model_dir = self._model_dir(name)
        previous = self.shadow_version(name)
        if previous is None:
            return None
        (model_dir / SHADOW_FILE).unlink(missing_ok=True)
        _fsync_dir(model_dir)
        logger.info("model %s: no shadow version (was %d)", name, previous)
        return previous

    def save(
        self,
        name: str,
        files: Mapping[str, bytes],
        card: Mapping[str, Any],
        *,
        promote: bool = True,
    ) -> ModelVersion:
        """Store ``files`` (+ ``card`` as card.json) as ``name``'s next version.

        The card gains ``name`` and ``version``. The folder is complete before
        it becomes visible; two concurrent saves get different versions.
        """
        check_name(name)
        if PMML_FILE not in files:
            raise RepositoryError(f"a model version needs {PMML_FILE}")
        for filename in files:
            if "/" in filename or filename.startswith(".") or filename == CARD_FILE:
                raise RepositoryError(
                    f"invalid file name {filename!r} for a model version"
                )
        model_dir = self.root / name
        model_dir.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=model_dir))
        try:
            for filename, content in files.items():
                (staging / filename).write_bytes(content)
            version = self._publish(model_dir, staging, dict(card), name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        saved = ModelVersion(name, version, model_dir / str(version))
        logger.info("saved model %s in %s", saved.ref, saved.path)
        if promote:
            self.promote(name, version)
        return saved

    def _publish(
        self, model_dir: Path, staging: Path, card: dict[str, Any], name: str
    ) -> int:
        """Rename ``staging`` to the next free version number; returns that number."""
        os.chmod(staging, 0o755)
        while True:
            taken = [
                int(entry.name) for entry in model_dir.iterdir() if entry.name.isdigit()
            ]
            version = max(taken, default=0) + 1
            (staging / CARD_FILE).write_text(
                json.dumps({"name": name, "version": version, **card}, indent=2) + "\n",
                encoding="utf-8",
            )
            try:
                # rename(2) refuses a non-empty target: a concurrent save that
                # took this number first makes us retry with the next one.
                os.rename(staging, model_dir / str(version))
            except OSError:
                if (model_dir / str(version)).exists():
                    continue
                raise
            _fsync_dir(model_dir)
            return version
