"""The house's layers and the imports between its packages, read from the code.

``python -m tests.layers`` lists, per package, the packages it imports and
where; ``tests/unit/test_layers.py`` fails when an import runs back up.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

__all__ = ["LAYERS", "package_imports", "upward_imports"]

ROOT = Path(__file__).resolve().parents[1]

#: From the ground up: a package imports only packages of the layers below its own.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("core", "transport"),  # settings, retries, credentials; Faust's transport
    ("models",),  # record schemas, the wire protocol, PMML, training
    ("tables", "serving", "datagen"),  # stores and stats; model servers; generator
    ("agents", "stack", "retraining"),  # stream processors; the local stack; retraining
    ("app", "bench"),  # the Faust App and its views; the benchmarks
    ("riskstream",),  # the command (sub-commands imported by name, lazily)
)

PACKAGES = [package for layer in LAYERS for package in layer]


def package_imports() -> dict[str, dict[str, list[str]]]:
    """package -> imported package -> the ``file -> module`` lines that import it."""
    found: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    modules = [node.module or ""]
                else:
                    continue
                for module in modules:
                    target = module.split(".")[0]
                    if target in PACKAGES and target != package:
                        where = path.relative_to(ROOT).as_posix()
                        found[package][target].append(f"{where} -> {module}")
    return found


def upward_imports() -> list[str]:
    """Every import of a package from its own layer or one above it."""
    layer_of = {
        package: index for index, layer in enumerate(LAYERS) for package in layer
    }
    return [
        line
        for package, targets in package_imports().items()
        for target, lines in targets.items()
        if layer_of[target] >= layer_of[package]
        for line in lines
    ]


def main() -> None:
    imports = package_imports()
    for layer in reversed(LAYERS):
        for package in layer:
            targets = imports.get(package, {})
            print(f"{package}/ imports {', '.join(sorted(targets)) or 'none of ours'}")
            for target in sorted(targets):
                for line in sorted(set(targets[target])):
                    print(f"    {line}")


if __name__ == "__main__":
    main()
