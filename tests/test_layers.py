"""Imports point one way: flows -> tasks -> models, schemas; schemas imports neither torch nor Prefect nor models."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# What each layer may not import (a prefix of the imported module's name).
FORBIDDEN = {
    "schemas": ("synthgate.models", "synthgate.tasks", "synthgate.flows", "torch", "prefect"),
    "models": ("synthgate.tasks", "synthgate.flows", "prefect"),
    "tasks": ("synthgate.flows",),
}


def _imported_modules(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_module_imports_against_the_layer_direction(layer):
    # Arrange
    banned = FORBIDDEN[layer]
    # Act
    offences = [
        f"{path.relative_to(ROOT)}:{line} imports {name}"
        for path in sorted((ROOT / layer).rglob("*.py"))
        for line, name in _imported_modules(path)
        if any(name == prefix or name.startswith(prefix + ".") for prefix in banned)
    ]
    # Assert
    assert offences == [], "\n".join(offences)
