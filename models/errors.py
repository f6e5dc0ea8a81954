"""The one exception family of the ML side (data, training, PMML, repository).

Each failure the trainer or the repository can meet has its own subclass so
that callers (the CLI, the model server) can tell them apart, and every
message says what went wrong and what to do about it.
"""

from __future__ import annotations

__all__ = [
    "DatasetError",
    "ExportError",
    "ModelsError",
    "ParityError",
    "RepositoryError",
]


class ModelsError(Exception):
    """Base of every error raised by the ``models`` package."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class DatasetError(ModelsError):
    """A data set is unknown, unreadable or not in the expected layout."""


class ExportError(ModelsError):
    """sklearn2pmml could not convert a pipeline, or its PMML lacks what serving needs."""


class ParityError(ModelsError):
    """The exported PMML scores differently from the scikit-learn pipeline it came from."""


class RepositoryError(ModelsError):
    """An unknown model or version, an empty repository, or an unusable reference."""
