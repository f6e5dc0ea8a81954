"""Imports run one way, like the data: from the command down to the ground."""

from __future__ import annotations

from tests.layers import LAYERS, ROOT, upward_imports


def test_every_package_of_the_house_has_its_layer() -> None:
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")}
    layered = {package for layer in LAYERS for package in layer}
    assert packages - {"tests"} == layered


def test_no_import_runs_back_up() -> None:
    assert upward_imports() == []
