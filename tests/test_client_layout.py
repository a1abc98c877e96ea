"""The client's modules import one way: client -> submit, completed -> pollers -> status."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import asyncjob

PACKAGE = Path(asyncjob.__file__).parent

MAY_IMPORT = {
    "_client": {"_completed", "_results", "_status", "_submit", "_context"},
    "_completed": {"_pollers", "_results", "_status", "_context"},
    "_pollers": {"_status", "_context"},
    "_results": {"_status", "_context"},
    "_status": {"_context"},
    "_submit": {"_context"},
    "_context": set(),
}
"""Which of the client's modules each of them may import (the others are free to use)."""


def imported(module: str) -> set[str]:
    """The package modules `module` imports with `from . import x` or `from .x import y`."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module is None:
                names.update(alias.name for alias in node.names)
            else:
                names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", sorted(MAY_IMPORT))
def test_client_modules_import_one_way(module: str) -> None:
    client_parts = set(MAY_IMPORT)
    assert imported(module) & client_parts == MAY_IMPORT[module]
