"""docs/architecture.md's import rules, checked against the code.

Every module of the package has a layer; a module may import only from its own
layer or a lower one, the local scheduler never imports the client side, and
only `asyncjob.divi` imports divi. A module missing from `LAYERS` fails the
test, so that the document is updated with the code.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "asyncjob"

VALUES, CIRCUITS, HTTP, JOURNAL, CLIENT, FACADE, EDGE = range(7)

LAYERS: dict[str, int] = {
    # values: errors, models, configuration, wire rules (import nothing above)
    "_errors": VALUES,
    "_models": VALUES,
    "_config": VALUES,
    "_retry": VALUES,
    "_wire": VALUES,
    "_secrets": VALUES,
    "_forksafe": VALUES,
    "_turns": VALUES,
    "_paths": VALUES,
    "_version": VALUES,
    "_outcome": VALUES,
    "_neterrors": VALUES,
    # circuits and results: what travels, checked and encoded
    "_qasm": CIRCUITS,
    "_histogram": CIRCUITS,
    "_histogram_np": CIRCUITS,
    "_parametric": CIRCUITS,
    "_template_chunks": CIRCUITS,
    "_batch": CIRCUITS,
    "_encode": CIRCUITS,
    "_gzip": CIRCUITS,
    "_ham_padding": CIRCUITS,
    # HTTP: one request in, one response out; retries above it
    "_transport": HTTP,
    "_sender": HTTP,
    # the journal
    "_journal": JOURNAL,
    "_journal_records": JOURNAL,
    "_journal_writer": JOURNAL,
    # the asyncio core
    "_cancel": CLIENT,
    "_cleanup": CLIENT,
    "_client": CLIENT,
    "_submit": CLIENT,
    "_status": CLIENT,
    "_results": CLIENT,
    "_completed": CLIENT,
    "_pollers": CLIENT,
    "_context": CLIENT,
    # the blocking facade and the protocol it implements
    "_protocol": FACADE,
    "_backend": FACADE,
    # the edges: integrations, the command line, the local scheduler, test helpers
    "divi": EDGE,
    "local": EDGE,
    "testing": EDGE,
    "_cli": EDGE,
    "_cli_jobs": EDGE,
    "_cliconfig": EDGE,
    "_commands": EDGE,
    "_display": EDGE,
    "__init__": EDGE,
    "__main__": EDGE,
}

CLIENT_SIDE = {"_transport", "_sender", "_journal", "_journal_records", "_journal_writer"} | {
    name for name, layer in LAYERS.items() if layer in (CLIENT, FACADE)
}
"""What the local scheduler must never import: it is the server, and shares only values."""


def top_module(path: Path) -> str:
    """`asyncjob/_qasm/_hot.py` -> `_qasm`; `asyncjob/_client.py` -> `_client`."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def imported_modules(path: Path) -> set[str]:
    """The package's top-level modules that `path` imports (relative or absolute)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    depth = len(path.relative_to(PACKAGE).parts) - 1  # 0 for asyncjob/x.py
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0:
                if node.module and node.module.split(".")[0] == "asyncjob":
                    rest = node.module.split(".")[1:]
                    found.update(rest[:1] or [alias.name for alias in node.names])
                continue
            if node.level - 1 > depth:
                continue
            if node.level - 1 < depth:  # inside a subpackage: its siblings are its own
                continue
            if node.module:
                found.add(node.module.split(".")[0])
            else:
                found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "asyncjob" and len(parts) > 1:
                    found.add(parts[1])
    return found


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_only_go_down_the_layers(path: Path) -> None:
    here = top_module(path)
    assert here in LAYERS, f"{here} has no layer: add it to docs/architecture.md and LAYERS"
    for other in imported_modules(path) - {here}:
        assert other in LAYERS, f"{here} imports {other}, which has no layer"
        assert LAYERS[other] <= LAYERS[here] or here in ("__init__", "__main__"), (
            f"{here} (layer {LAYERS[here]}) imports {other} (layer {LAYERS[other]})"
        )


def test_the_local_scheduler_shares_only_values_with_the_client() -> None:
    for path in (PACKAGE / "local").rglob("*.py"):
        assert not imported_modules(path) & CLIENT_SIDE, path


def test_only_the_divi_module_imports_divi() -> None:
    for path in modules():
        if path.name == "divi.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level == 0
                else []
            )
            assert not any(n.split(".")[0] == "divi" for n in names), path


def test_every_module_is_in_the_architecture_document() -> None:
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    missing = {
        top_module(p) for p in modules() if top_module(p) not in ("__init__", "__main__")
    } - {name for name in LAYERS if f"`{name}" in text}
    assert not missing, f"docs/architecture.md does not name {sorted(missing)}"
